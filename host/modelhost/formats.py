"""Model files served with no code: which model format's plugin serves the files in a ``--model_dir``.

A model format (KServe's ``modelFormat``: ``sklearn``, ``xgboost``, ``onnx``)
is declared through the ``modelhost.formats`` entry-point group, one entry
point per format, naming a :class:`ModelFormat`. The module holding it must
import nothing heavy: the server reads every installed format to pick one for
a folder, and only the worker that serves the model imports its ``plugin``.

A folder holding model files is one model; a folder holding only folders is
one model per folder, each named after its folder. A model's format is, in
order: ``--model_format``, the ``format`` of a ``modelhost.json`` beside the
files, or the one format whose ``files`` patterns match a file there. A format
whose files run code when loaded (a pickle) is used only when the command line
names it (``--model_format``, or ``--allow_format``): a folder's own files
cannot make the server unpickle them.
"""

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import PluginLoadError
from .plugins import PluginSpec, installed_distributions

FORMAT_GROUP = "modelhost.formats"
SETTINGS_FILE = "modelhost.json"  # beside a model's files: {"format": NAME}, and the format's own options


@dataclass(frozen=True)
class ModelFormat:
    """A kind of model file and the plugin that serves it.

    ``name`` is the format's name, as KServe's ``modelFormat`` spells it;
    ``plugin`` the import path (``module:attribute``) of the plugin that serves
    a folder of such files, which ``load`` receives as ``model_dir``; ``files``
    the file name patterns (``fnmatch``) by which a folder is known to hold
    this format; ``runs_code`` whether loading a file runs code from it, as
    unpickling does.
    """

    name: str
    plugin: str
    files: tuple[str, ...]
    runs_code: bool = False

    def matches(self, folder: Path) -> bool:
        return bool(matching_files(folder, self.files))


@dataclass(frozen=True)
class InstalledFormat:
    """A format as an installed distribution declares it."""

    format: ModelFormat
    distribution: str
    version: str


@dataclass(frozen=True)
class FormatChoice:
    """What the command line says of formats: ``named`` serves every model (``--model_format``); ``allowed``
    (``--allow_format``) may be picked by a model's files even when loading them runs code."""

    named: Optional[str] = None
    allowed: frozenset[str] = frozenset()


def installed_formats() -> dict[str, InstalledFormat]:
    """The model formats installed, by name; PluginLoadError names an entry point that is not a ModelFormat."""
    found: dict[str, InstalledFormat] = {}
    for dist in installed_distributions():
        for entry_point in dist.entry_points.select(group=FORMAT_GROUP):
            try:
                declared = entry_point.load()
            except Exception as exc:
                raise PluginLoadError(f"model format {entry_point.name!r} ({entry_point.value}) cannot be "
                                      f"imported: {type(exc).__name__}: {exc}") from exc
            if not isinstance(declared, ModelFormat):
                raise PluginLoadError(f"model format {entry_point.name!r}: {entry_point.value} is not a "
                                      "modelhost.ModelFormat")
            found.setdefault(declared.name, InstalledFormat(declared, dist.name, dist.version))
    return found


def model_dir_specs(model_dir: Path, model_name: Optional[str], choice: FormatChoice,
                    formats: Optional[dict[str, InstalledFormat]] = None) -> list[PluginSpec]:
    """The models a ``--model_dir`` holds, each with its format's plugin; PluginLoadError says why one cannot be
    served (no such folder, no format for its files, a pickle not allowed)."""
    formats = installed_formats() if formats is None else formats
    if not model_dir.is_dir():
        raise PluginLoadError(f"--model_dir {model_dir} is not a folder")
    folders = sorted(path for path in model_dir.iterdir() if path.is_dir() and not path.name.startswith("."))
    if any(path.is_file() for path in model_dir.iterdir()) or not folders:
        return [model_spec(model_name or "model", model_dir, choice, formats)]
    if model_name is not None and len(folders) > 1:
        raise PluginLoadError(f"--model_name names the one model served, and --model_dir {model_dir} holds "
                              f"{len(folders)} ({', '.join(path.name for path in folders)})")
    return [model_spec(model_name or folder.name, folder, choice, formats) for folder in folders]


def model_spec(name: str, folder: Path, choice: FormatChoice, formats: dict[str, InstalledFormat]) -> PluginSpec:
    chosen = pick_format(name, folder, choice, formats)
    return PluginSpec(name=name, target=chosen.format.plugin, distribution=chosen.distribution,
                      version=chosen.version, model_dir=str(folder.resolve()))


def pick_format(name: str, folder: Path, choice: FormatChoice,
                formats: dict[str, InstalledFormat]) -> InstalledFormat:
    """The format that serves a model's folder: named on the command line, in its settings file, or by its files."""
    named = choice.named or folder_settings(folder).get("format")
    if named is not None:
        if named not in formats:
            raise PluginLoadError(f"model {name!r}: no model format {named!r} is installed ({known(formats)})")
        chosen = formats[named]
    else:
        matching = [installed for installed in formats.values() if installed.format.matches(folder)]
        if len(matching) != 1:
            files = ", ".join(sorted(path.name for path in folder.iterdir())) or "nothing"
            which = "no installed format serves them" if not matching else \
                f"formats {', '.join(m.format.name for m in matching)} all match"
            raise PluginLoadError(f"model {name!r}: {folder} holds {files}, and {which} ({known(formats)}); name "
                                  f"the format with --model_format or {SETTINGS_FILE}'s \"format\"")
        chosen = matching[0]
    if chosen.format.runs_code and chosen.format.name not in {choice.named, *choice.allowed}:
        raise PluginLoadError(
            f"model {name!r}: loading {chosen.format.name} files runs code from them, and a folder's files cannot "
            f"choose that: if {folder} is trusted, start the server with --model_format {chosen.format.name} or "
            f"--allow_format {chosen.format.name}")
    return chosen


def folder_settings(folder: Path) -> dict:
    """A model folder's ``modelhost.json``, or {} when it has none."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        return {}
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PluginLoadError(f"{path} cannot be read: {error}") from None
    if not isinstance(settings, dict):
        raise PluginLoadError(f"{path} must hold a JSON object, such as {{\"format\": \"sklearn\"}}")
    return settings


def known(formats: dict[str, InstalledFormat]) -> str:
    if not formats:
        return f"none is installed: pip install a format's plugin, such as ./plugins/onnx (entry points {FORMAT_GROUP!r})"
    return "installed: " + ", ".join(f"{name} ({', '.join(installed.format.files)})"
                                     for name, installed in sorted(formats.items()))


def format_options(model_dir: str) -> dict:
    """(For a format's plugin.) The options its ``modelhost.json`` gives beside ``format``."""
    return {key: value for key, value in folder_settings(Path(model_dir)).items() if key != "format"}


def model_file(model_dir: str, patterns: tuple[str, ...]) -> Path:
    """(For a format's plugin.) The one file in ``model_dir`` that matches its patterns; ValueError otherwise."""
    found = matching_files(Path(model_dir), patterns)
    if len(found) != 1:
        held = ", ".join(path.name for path in found) if found else "none"
        raise ValueError(f"{model_dir} must hold one model file ({' or '.join(patterns)}); it holds {held}")
    return found[0]


def replica_threads(replicas: int) -> int:
    """(For a format's plugin.) The threads a library may run for one replica: its share of the cores, because
    replicas whose libraries each spin a thread per core run slower than one."""
    return max(1, (os.cpu_count() or 1) // max(1, replicas))


def matching_files(folder: Path, patterns: tuple[str, ...]) -> list[Path]:
    """The model files in ``folder`` that match the patterns; its settings file is never one."""
    return sorted(path for path in folder.iterdir() if path.is_file() and path.name != SETTINGS_FILE
                  and any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns))
