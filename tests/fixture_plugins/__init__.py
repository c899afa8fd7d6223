"""Plugins the tests serve by import path (``--plugin plugins.NAME:Class``)."""
