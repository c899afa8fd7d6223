"""How the host serves one model: its defaults, the plugin's own ``settings``, the command line, in that order.

Every setting's range lives here once: the command line's flags take their
argparse types from it, and a plugin's ``settings`` hook is checked against it
when the model loads.
"""

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from .errors import PluginLoadError


@dataclass(frozen=True)
class Bounded:
    """A number of ``kind`` from ``low`` to ``high``; called on text or a value, it returns the number or raises
    ValueError saying what it must be."""

    kind: type
    low: float
    high: float = math.inf
    low_included: bool = True

    def __call__(self, value):
        try:
            if self.kind is int and isinstance(value, float):  # int() would drop the fraction unsaid
                raise ValueError
            number = self.kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected {self.noun()}, got {value!r}") from None
        below = number < self.low if self.low_included else number <= self.low
        if below or number > self.high or not math.isfinite(number):
            raise ValueError(f"must be {self.noun()} {self.range()}, got {value}")
        return number

    def noun(self) -> str:
        return "an integer" if self.kind is int else "a number"

    def range(self) -> str:
        if self.high < math.inf:
            return f"from {self.low:g} to {self.high:g}"
        return f"of at least {self.low:g}" if self.low_included else f"above {self.low:g}"


COUNT = Bounded(int, 1)


@dataclass(frozen=True)
class ServingSettings:
    """How one model is served. The defaults are the host's; ``resolve`` lays the plugin's and the command line's
    over them. ``replicas`` 0 serves the model in the server process; ``inline`` runs its hooks on the event loop
    there. ``max_concurrency`` is how many batches a model with ``async def`` hooks runs at once in each process
    that serves it, and how many generations any model runs at once there; ``health_interval_s`` how often a
    model with a ``healthy`` hook is asked. A model that steps (``begin`` and ``step``) has as many sequences active as
    fit in ``memory_budget`` at ``sequence_memory`` each (0: no budget), and at most ``max_batch_size`` of them in
    a step."""

    replicas: int = 1
    max_batch_size: int = 1
    max_batch_wait_ms: float = 5.0
    max_queue_size: int = 256
    inline: bool = False
    max_concurrency: int = 64
    health_interval_s: float = 5.0
    sequence_memory: int = 0
    memory_budget: int = 0
    runner: str = "workers"
    ray_actor_options: dict = field(default_factory=dict)
    autoscaling_config: dict = field(default_factory=dict)

    @classmethod
    def resolve(cls, plugin: dict, command_line: dict) -> "ServingSettings":
        """The plugin's ``settings`` over the defaults, the command line's over both.

        PluginLoadError names a setting the plugin gives that does not exist or is out of its range.
        """
        unknown = sorted(set(plugin) - set(RANGES))
        if unknown:
            raise PluginLoadError(f"the settings hook returned unknown settings {', '.join(map(repr, unknown))} "
                                  f"(known: {', '.join(RANGES)})")
        checked = {}
        for name, value in plugin.items():
            try:
                checked[name] = RANGES[name](value)
            except ValueError as error:
                raise PluginLoadError(f"the settings hook's {name!r} {error}") from None
        resolved = cls(**{**checked, **command_line})
        if resolved.memory_budget and resolved.sequence_memory > resolved.memory_budget:
            raise PluginLoadError(f"a sequence_memory of {resolved.sequence_memory} does not fit in the memory_budget "
                                  f"of {resolved.memory_budget}: no sequence could ever begin")
        return resolved

    def as_dict(self) -> dict:
        """What a plugin's ``load`` hook receives."""
        return asdict(self)


def boolean(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


RUNNERS = ("workers", "ray")


def runner(value) -> str:
    if value not in RUNNERS:
        raise ValueError(f"must be one of {', '.join(RUNNERS)}, got {value!r}")
    return value


def json_object(value) -> dict:
    """A dict, given as one or as JSON text (on the command line)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"must be a JSON object, got {value!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"must be an object of names and values, got {value!r}")
    return value


# What each setting may be, from the command line or a plugin.
RANGES: dict[str, Callable[[object], object]] = {
    "replicas": Bounded(int, 0), "max_batch_size": COUNT, "max_batch_wait_ms": Bounded(float, 0),
    "max_queue_size": Bounded(int, 0), "inline": boolean, "max_concurrency": COUNT,
    "health_interval_s": Bounded(float, 0, low_included=False), "runner": runner,
    "sequence_memory": Bounded(int, 0), "memory_budget": Bounded(int, 0),
    "ray_actor_options": json_object, "autoscaling_config": json_object,
}
# The settings the command line gives, every model's (None) or one model's by name: setting -> {name: value}.
CommandLineSettings = dict[str, dict[Optional[str], object]]


def command_line_for(given: CommandLineSettings, name: str) -> dict:
    """The command line's settings for one model; its own value beats the one for every model."""
    return {
        setting: values[name] if name in values else values[None]
        for setting, values in given.items()
        if name in values or None in values
    }
