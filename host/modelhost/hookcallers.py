"""How the host calls one model's hooks: each implementation as pluggy would, sync or async, without its per-call work.

pluggy checks the arguments and copies the implementation list on every call:
microseconds that a request pays three times (preprocess, predict,
postprocess). A model's implementations do not change once it is loaded, so
they are resolved here, once: called last-registered first (tryfirst ahead,
trylast behind, as ``get_hookimpls`` orders them in reverse), each with the
arguments it names. A ``firstresult`` hook stops at the first result other
than None; any other hook returns every result, as pluggy does.

An implementation may be ``async def``; it is awaited. A synchronous one is
called in place, or, when the call runs on an event loop, through ``offload``
(to a thread), so that it never blocks the loop; the host's own defaults take
microseconds and always run in place, as do generator functions, whose call
runs none of their code (``generation`` steps what they make). A hook with pluggy's wrappers keeps
pluggy's own call, which is synchronous. Whatever of this a plugin gets wrong
(an async wrapper, a generator where a hook returns) is found by ``unrunnable`` before it serves.

Unlike pluggy, a plugin's own implementation of a hook whose value the
pipeline goes on with (``NEEDS_A_VALUE``) does not pass to the host's default
by returning None: that is a forgotten ``return``, which the default would
answer with the wrong result and a 200. It raises ``ReturnedNone``.
"""

import asyncio
import contextvars
import functools
import inspect
from concurrent.futures import Executor
from typing import Any, Awaitable, Callable, Coroutine, NamedTuple, Optional

import pluggy

from .defaults import DefaultHooks

# Runs a synchronous function with these positional arguments off the event loop.
Offload = Callable[[Callable[..., Any], list], Awaitable[Any]]
# The names the host registers its own implementations under (DefaultHooks; the transformer role's), beside the plugin.
DEFAULTS, ROLE = "modelhost-defaults", "modelhost-role"
# The hooks whose implementations yield their results (``generation`` steps them).
YIELDS = {"generate"}
# The hooks whose result the next stage takes, and what it must be.
NEEDS_A_VALUE = {"preprocess": "predict's inputs", "predict": "one row per instance",
                 "explain": "one explanation per instance", "postprocess": "the response's outputs"}


class ReturnedNone(Exception):
    """A plugin's own implementation of a hook in ``NEEDS_A_VALUE`` returned None. ``first``: the first time for
    this hook of this model, which is when it is worth a line in the log."""

    def __init__(self, hook: str, function: Callable[..., Any], first: bool):
        code = getattr(inspect.unwrap(function), "__code__", None)
        super().__init__(f"{hook} returned None, where it must return {NEEDS_A_VALUE[hook]} (a forgotten return?)")
        self.hook = hook
        self.where = f"{code.co_filename}:{code.co_firstlineno}" if code else repr(function)
        self.first = first


class Implementation(NamedTuple):  # a tuple: unpacked on every call, faster than attributes
    function: Callable[..., Any]
    argnames: tuple[str, ...]
    awaited: bool  # async def
    in_place: bool  # the host's own default: never worth a trip to a thread
    last_word: bool  # the plugin's own that answers last: its None is no answer (NEEDS_A_VALUE)


class HookCaller:
    def __init__(self, hook: pluggy.HookCaller):
        self.hook = hook
        self.first_only = bool(hook.spec and hook.spec.opts.get("firstresult"))
        implementations = hook.get_hookimpls()
        self.pluggys_own = any(impl.hookwrapper or impl.wrapper for impl in implementations)
        in_order = list(reversed(implementations))
        own = [impl for impl in in_order if impl.plugin_name not in (DEFAULTS, ROLE)]
        last_word = own[-1] if own and hook.name in NEEDS_A_VALUE else None
        self.implementations = [
            Implementation(impl.function, tuple(impl.argnames), inspect.iscoroutinefunction(impl.function),
                           isinstance(impl.plugin, DefaultHooks) or makes_generator(impl.function), impl is last_word)
            for impl in in_order
        ]
        self.awaits = any(impl.awaited for impl in self.implementations)
        self.returned_none = False

    async def __call__(self, kwargs: dict[str, Any], offload: Optional[Offload] = None) -> Any:
        if self.pluggys_own:
            return await offload(functools.partial(self.hook, **kwargs), []) if offload else self.hook(**kwargs)
        results = []
        for function, argnames, awaited, in_place, last_word in self.implementations:
            args = [kwargs[name] for name in argnames]
            if awaited:
                result = await function(*args)
            elif offload is None or in_place:
                result = function(*args)
            else:
                result = await offload(function, args)
            if result is not None:
                if self.first_only:
                    return result
                results.append(result)
            elif last_word:
                first, self.returned_none = not self.returned_none, True
                raise ReturnedNone(self.hook.name, function, first)
        return None if self.first_only else results


def unrunnable(hook: pluggy.HookCaller) -> Optional[str]:
    """Why the host cannot call this hook's implementations, or None when it can."""
    implementations = hook.get_hookimpls()
    wrapped = any(impl.hookwrapper or impl.wrapper for impl in implementations)
    for impl in implementations:
        where = f"{hook.name} ({getattr(impl.function, '__qualname__', impl.function)!r})"
        if hook.name in YIELDS:
            continue
        if inspect.isasyncgenfunction(impl.function):
            return f"{where} is an async generator; a hook returns its result, it does not yield"
        if inspect.isgeneratorfunction(impl.function) and not (impl.hookwrapper or impl.wrapper):
            return f"{where} is a generator; a hook returns its result, it does not yield"
        if wrapped and inspect.iscoroutinefunction(impl.function):
            return f"{where} is async in a hook with a wrapper, which pluggy calls synchronously"
    return None


def makes_generator(function: Callable[..., Any]) -> bool:
    """Whether calling it only makes a generator: nothing of the plugin's runs until it is stepped."""
    return inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)


def offload_to(executor: Optional[Executor]) -> Offload:
    """Run synchronous hooks on ``executor`` (None: the event loop's default), in the caller's context, so
    that their log lines still name their requests."""

    def offload(function: Callable[..., Any], args: list) -> Awaitable[Any]:
        context = contextvars.copy_context()
        return asyncio.get_running_loop().run_in_executor(executor, functools.partial(context.run, function, *args))

    return offload


def run_sync(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run to its end, in this thread and with no event loop, a coroutine that never waits: the pipeline of a
    model whose hooks are all synchronous. It may let others go first (``asyncio.sleep(0)``, a bare yield): here
    there are none."""
    try:
        while coroutine.send(None) is None:
            pass
    except StopIteration as finished:
        return finished.value
    coroutine.close()
    raise RuntimeError("a model whose hooks are all synchronous waited for something")
