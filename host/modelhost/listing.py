"""``modelhost list``: the installed model plugins with the hooks each implements, then the installed model formats."""

import argparse
import logging

from .errors import PluginLoadError
from .formats import installed_formats
from .model import Model
from .plugins import discover, import_plugin

log = logging.getLogger("modelhost")


def list_command(args: argparse.Namespace) -> int:
    """Exits 1 when a plugin or a format cannot be imported or breaks the contract, naming each."""
    plugins = [("NAME", "DISTRIBUTION", "VERSION", "HOOKS")]
    broken = []
    for spec in discover():
        try:
            hooks = ", ".join(Model(spec.name, import_plugin(spec)).hooks)
        except PluginLoadError as exc:
            hooks = f"error: {exc.for_log()}"
            broken.append(spec.name)
        plugins.append((spec.name, spec.distribution or "-", spec.version or "-", hooks))
    print_table(plugins)
    try:
        formats = installed_formats()
    except PluginLoadError as exc:
        log.error("%s", exc)
        return 1
    if formats:
        print()
        print_table([("FORMAT", "DISTRIBUTION", "VERSION", "FILES"),
                     *((name, installed.distribution, installed.version, ", ".join(installed.format.files))
                       for name, installed in sorted(formats.items()))])
    if broken:
        log.error("%d plugin(s) cannot be served: %s", len(broken), ", ".join(broken))
        return 1
    return 0


def print_table(rows: list[tuple[str, str, str, str]]) -> None:
    """Rows in aligned columns; the last column, which may be long, unpadded."""
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)), row[3], sep="  ")
