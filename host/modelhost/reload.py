"""``--reload``: while a plugin is developed, serve its changed code as soon as its files change.

Each served model's source folder is watched (watchfiles, the file watcher
uvicorn and others use: inotify on Linux, no polling). A change to a Python
file in it loads the model again through the repository's upgrade: new worker
processes import the new code, and only once they are ready do they take the
requests, while the old ones finish theirs. Code that fails to import or load
leaves the old code serving, and the error is logged.
"""

import asyncio
import importlib.util
import logging
from pathlib import Path
from typing import Optional

from .errors import ModelhostError
from .plugins import PluginSpec
from .repository import ModelLoadFailed, ModelRepository

log = logging.getLogger("modelhost")


def source_folder(spec: PluginSpec) -> Optional[Path]:
    """The folder of a plugin's top-level module or package, found without importing it."""
    top_level = spec.target.partition(":")[0].split(".")[0]
    found = importlib.util.find_spec(top_level)
    if found is None or not found.origin or not found.has_location:
        return None
    return Path(found.origin).resolve().parent


async def reload_on_change(repository: ModelRepository, specs: list[PluginSpec], stop: asyncio.Event) -> None:
    from watchfiles import PythonFilter, awatch

    folders = {spec.name: folder for spec in specs if (folder := source_folder(spec)) is not None}
    if not folders:
        return
    log.info("reloading models when their source changes: %s",
             ", ".join(f"{name} ({folder})" for name, folder in folders.items()))
    try:
        async for changes in awatch(*set(folders.values()), stop_event=stop, watch_filter=PythonFilter()):
            changed = [Path(path).resolve() for _, path in changes]
            for name, folder in folders.items():
                if any(folder in path.parents for path in changed):
                    await reload(repository, name)
    except Exception:
        log.exception("--reload stopped watching; the models serve on as they are")
        raise


async def reload(repository: ModelRepository, name: str) -> None:
    log.info("model %r: its source changed; loading it again", name)
    try:
        await repository.load(name)
    except ModelhostError as error:
        where = error.where if isinstance(error, ModelLoadFailed) else ""
        log.error("model %r: its changed code cannot serve, so the code before it serves on: %s%s", name,
                  error.message, where)
    else:
        log.info("model %r: its changed code serves", name)
