"""Finding model plugins and building the plugin manager that drives each one.

Plugins are found through the ``modelhost.models`` entry-point group, one
entry point per model, named after the model. Finding a plugin imports
nothing: a :class:`PluginSpec` is only a name and an import path, so it can
be handed to another process that does the importing.
"""

import difflib
import importlib
import inspect
import logging
import os
import re
import traceback
import types
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

import importlib_metadata
import pluggy

from . import hookspecs
from .defaults import DefaultHooks
from .errors import PluginLoadError
from .hookcallers import DEFAULTS, ROLE, unrunnable

ENTRY_POINT_GROUP = "modelhost.models"
# The contract's hooks, in the order hookspecs.py states them.
HOOK_NAMES = tuple(name for name, value in vars(hookspecs).items() if hasattr(value, "modelhost_spec"))

# The hooks that answer requests: a plugin implements at least one.
ANSWERING = {"predict", "generate", "embed", "step"}
# Hooks that make sense only with one another: each needs the other.
PAIRED = {"begin": "step", "step": "begin"}

log = logging.getLogger("modelhost")
# Where frames of the host's and importlib's own code are: a plugin's failure is never located there.
NOT_THE_PLUGINS = (os.path.dirname(__file__) + os.sep, os.path.dirname(importlib.__file__) + os.sep)


@dataclass(frozen=True)
class PluginSpec:
    """Where a model's plugin lives: ``target`` is ``module`` or ``module:attribute``.

    ``instance`` is a plugin object already made, for a model served in this
    process only (``modelhost.testing``); ``target`` then only names it.
    ``model_dir`` is the folder of model files a model format's plugin serves
    (``--model_dir``, ``formats``); None for a plugin that brings its own model.
    """

    name: str
    target: str
    distribution: Optional[str] = None
    version: Optional[str] = None
    model_dir: Optional[str] = None
    instance: Optional[object] = field(default=None, compare=False)

    @classmethod
    def from_import_path(cls, text: str) -> "PluginSpec":
        """Parse ``--plugin`` values: ``[NAME=]module[:attribute]``.

        Without NAME the model is named after the attribute, or the module's last part.
        """
        name, _, target = text.rpartition("=")
        if not name:
            name = target.rpartition(":")[2] if ":" in target else target.rpartition(".")[2]
        return cls(name=name, target=target)


def discover(group: str = ENTRY_POINT_GROUP) -> list[PluginSpec]:
    """The installed model plugins, one per entry point, without importing any of them.

    Each call looks afresh, so a plugin installed while the server runs is found.
    """
    importlib.invalidate_caches()
    specs: dict[str, PluginSpec] = {}
    for dist in installed_distributions():
        for entry_point in dist.entry_points.select(group=group):
            spec = PluginSpec(name=entry_point.name, target=entry_point.value, distribution=dist.name,
                              version=dist.version)
            if spec.name in specs:
                log.warning(
                    "model %r is declared by both %s and %s; serving the first",
                    spec.name, specs[spec.name].distribution, spec.distribution,
                )
                continue
            specs[spec.name] = spec
    return sorted(specs.values(), key=lambda spec: spec.name)


def installed_distributions() -> list[importlib_metadata.Distribution]:
    """Each installed distribution once: from the first directory on sys.path that has it, as imports see it.

    ``pip install --target DIR --upgrade`` leaves the old version's metadata beside the new one's
    (pip issue 13763): of several copies in one directory, the one installed last describes the files there.
    """
    copies: dict[str, list] = {}
    for dist in importlib_metadata.distributions():
        found = copies.setdefault(re.sub(r"[-_.]+", "-", dist.name).lower(), [])  # PEP 503's normal form
        if not found or found[0].locate_file("") == dist.locate_file(""):
            found.append(dist)
    return [found[0] if len(found) == 1 else max(found, key=installed_at) for found in copies.values()]


def installed_at(dist: importlib_metadata.Distribution) -> float:
    """When the install wrote this copy's METADATA file (0 when its RECORD does not list it)."""
    metadata = next((path for path in dist.files or [] if path.name == "METADATA"), None)
    return os.stat(str(dist.locate_file(metadata))).st_mtime if metadata else 0.0


def import_plugin(spec: PluginSpec) -> object:
    """Import a plugin; a class is instantiated once, a module or object is used as is.

    PluginLoadError says why not: with what the import path may have meant, when it names nothing the module
    has, or names a module whose hooks are all in its classes.
    """
    if spec.instance is not None:
        return spec.instance
    module_name, _, attribute = spec.target.partition(":")
    try:
        plugin = module = importlib.import_module(module_name)
        if getattr(module, "__file__", None) is None:  # a folder with no __init__.py: a namespace package
            raise PluginLoadError(f"cannot import {spec.target}: {namespace_folder(module)}")
        for part in filter(None, attribute.split(".")):
            if not hasattr(plugin, part):
                raise PluginLoadError(f"cannot import {spec.target}: {no_attribute(plugin, part)}")
            plugin = getattr(plugin, part)
        if plugin is module and not has_hooks(module) and hook_classes(module):
            raise PluginLoadError(f"cannot import {spec.target}: {hooks_in_classes(module)}")
        return plugin() if inspect.isclass(plugin) else plugin
    except PluginLoadError:
        raise
    except Exception as exc:
        raise PluginLoadError(f"cannot import {spec.target}: {summarize(exc)}", where=origin(exc)) from exc


def has_hooks(plugin: object) -> bool:
    return any(hasattr(getattr(plugin, hook, None), "modelhost_impl") for hook in HOOK_NAMES)


def hook_classes(module: types.ModuleType) -> list[str]:
    """The classes a module defines that implement hooks: the plugins it holds."""
    return [name for name, value in vars(module).items()
            if inspect.isclass(value) and value.__module__ == module.__name__ and has_hooks(value)]


def no_attribute(plugin: object, part: str) -> str:
    """What ``plugin`` lacks, and the class (any case) it may have meant."""
    what = f"module {plugin.__name__!r}" if inspect.ismodule(plugin) else repr(plugin)
    classes = {name.lower(): name for name, value in getattr(plugin, "__dict__", {}).items() if inspect.isclass(value)}
    close = difflib.get_close_matches(part.lower(), list(classes), n=1)
    return f"{what} has no attribute {part!r}" + (f" (did you mean {classes[close[0]]!r}?)" if close else "")


def namespace_folder(module: types.ModuleType) -> str:
    folders = ", ".join(getattr(module, "__path__", []))
    return (f"{module.__name__!r} is imported as the folder {folders}, which has no __init__.py (a namespace "
            "package): a folder named as the plugin's package in the current one may hide the installed package; "
            "run from another folder, or add __init__.py if the folder is the plugin")


def hooks_in_classes(module: types.ModuleType) -> str:
    classes = hook_classes(module)
    others = f" (its classes with hooks: {', '.join(classes)})" if len(classes) > 1 else ""
    return f"the module has no hooks of its own: name its plugin class, as {module.__name__}:{classes[0]}{others}"


def make_plugin_manager(name: str, plugin: object, role: Optional[object] = None) -> pluggy.PluginManager:
    """A plugin manager holding one model's plugin on top of the host's defaults and ``role``'s hooks (the
    transformer's, whose ``predict`` calls the predictor).

    Raises PluginLoadError when the plugin does not keep the contract: an
    unknown (misspelled) hook, a hook-named function without ``@hookimpl``,
    arguments a hook does not have, no ``predict``, or a hook the host cannot call (``hookcallers``).
    """
    pm = pluggy.PluginManager("modelhost")
    pm.add_hookspecs(hookspecs)
    pm.register(DefaultHooks(), name=DEFAULTS)
    if role is not None:
        pm.register(role, name=ROLE)
    try:
        pm.register(plugin, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginLoadError(f"model {name!r}: {explain_validation_error(exc)}") from exc
    implemented = set(implemented_hooks(pm, plugin))
    unmarked = [hook for hook in HOOK_NAMES if callable(getattr(plugin, hook, None)) and hook not in implemented]
    if unmarked:
        raise PluginLoadError(
            f"model {name!r}: {', '.join(unmarked)} not marked with @modelhost.hookimpl"
        )
    if not implemented & ANSWERING and role is None:
        raise PluginLoadError(f"model {name!r}: the plugin implements no predict hook, nor generate, begin and step, "
                              "or embed (and has no --predictor_host to send its inputs to)")
    unpaired = [f"{hook} without {other}" for hook, other in PAIRED.items() if hook in implemented and other not in implemented]
    if unpaired:
        raise PluginLoadError(f"model {name!r}: the plugin implements {unpaired[0]}; continuous batching needs both")
    problems = [problem for problem in (unrunnable(getattr(pm.hook, hook)) for hook in HOOK_NAMES) if problem]
    if problems:
        raise PluginLoadError(f"model {name!r}: {'; '.join(problems)}")
    return pm


def implemented_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """The hooks this plugin implements itself, in the contract's order."""
    own = {caller.name for caller in pm.get_hookcallers(plugin) or ()}
    return [hook for hook in HOOK_NAMES if hook in own]


def explain_validation_error(exc: pluggy.PluginValidationError) -> str:
    message = " ".join(str(exc).split())
    unknown = re.match(r"unknown hook '(\w+)'", message)
    if unknown is not None:
        close = difflib.get_close_matches(unknown[1], HOOK_NAMES, n=1)
        return f"unknown hook {unknown[1]!r} (did you mean {close[0]!r}?)" if close else message
    arguments = re.search(r"for hook '(\w+)'.*Argument\(s\) \{(.*)\} are declared in the hookimpl", message)
    if arguments is not None and arguments[1] in HOOK_NAMES:
        hook, taken = arguments[1], re.findall(r"'(\w+)'", arguments[2])
        *others, last = inspect.signature(getattr(hookspecs, hook)).parameters
        passed = f"{', '.join(others)} and {last}" if others else last
        return (f"{hook} takes {', '.join(map(repr, taken))}, which its hook does not pass ({hook} is passed "
                f"{passed}, and may take any of them)")
    return message


def summarize(exc: BaseException) -> str:
    """An exception on one line, for a client: its type and message, not where the server's files are."""
    return f"{type(exc).__name__}: {exc}"


def origin(exc: BaseException) -> str:
    """Where an exception was raised, for the log: `` (at FILE:LINE)``, the innermost frame in the plugin's code
    (or what it calls); "" when it was raised by the import machinery or the host itself, which is no help to
    the plugin's author."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not frame.filename.startswith("<") and not frame.filename.startswith(NOT_THE_PLUGINS)]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def select(specs: Iterable[PluginSpec], names: Iterable[str]) -> list[PluginSpec]:
    """Only the named specs; an unknown name is an error that lists the known ones."""
    by_name = {spec.name: spec for spec in specs}
    missing = [name for name in names if name not in by_name]
    if missing:
        known = ", ".join(sorted(by_name)) or "none"
        raise PluginLoadError(f"no installed model named {', '.join(missing)} (installed: {known})")
    return [by_name[name] for name in names]


def chosen_specs(models: list[str], plugins: list[str], model_files: Sequence[PluginSpec] = ()) -> list[PluginSpec]:
    """--model's installed plugins (all without --plugin or --model_dir), --plugin's, and --model_dir's."""
    installed = discover()
    if models:
        specs = select(installed, models)
    else:
        specs = [] if plugins or model_files else installed
    specs += [PluginSpec.from_import_path(text) for text in plugins] + list(model_files)
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise PluginLoadError(f"more than one plugin is named {', '.join(twice)}")
    return specs
