"""The comparison's helpers (imported by compare.py as ``peers.*``) and the servers' model code.

The server-side modules (bare_tornado, bare_httptools, modelhost_gemm, kserve_server,
mlserver_models, sessions) run in other processes, some in the peers' own
virtual environments, with this folder on PYTHONPATH: they import each other
as top-level modules and nothing from modelhost's environment but what they name.
"""
