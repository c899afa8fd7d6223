"""One loaded model: its plugin manager and the request pipeline through its hooks.

The pipeline is written once, as coroutines, and runs where the plugin runs.
A model whose hooks are all synchronous never waits, so its pipeline runs to
its end in one thread (``hookcallers.run_sync``): a hook thread of the server,
or a worker process. A model with an ``async def`` hook (``awaits``) runs it on
an event loop, the server's or its worker's, its synchronous hooks sent to
threads through ``offload``. Nothing here knows about HTTP.
"""

import contextlib
import logging
import time
from enum import Enum
from typing import Any, Optional, Union

from . import logs, tracing
from .errors import InvalidInput, ModelhostError, NotImplementedByModel, PluginError, PluginLoadError
from .hookcallers import NEEDS_A_VALUE, HookCaller, Offload, ReturnedNone
from .predictor import PredictorClient, PredictorSettings, make_client
from .predictor.client import calls_took
from .predictor.hooks import PredictorHooks
from .plugins import HOOK_NAMES, PluginSpec, import_plugin, implemented_hooks, make_plugin_manager, summarize
from .protocol.declared import DeclaredInputs, DeclaredOutputs
from .replies import Reply, carried
from .request import InferenceRequest
from .rows import check_rows, rows
from .runtime.shared_memory import read_inputs, written
from .settings import ServingSettings

log = logging.getLogger("modelhost")
VERBS = ("predict", "explain", "generate", "embed")  # what a request may ask of a model (InferenceRequest.verb)


class Own(Enum):
    OFFLOAD = "the model's own offload"


OWN = Own.OFFLOAD  # a call's offload that is the model's own (``Model.offload``)


class ServedElsewhere(Exception):
    """The plugin's own settings ask for another runner than the one loading it: nothing was loaded."""

    def __init__(self, runner: str):
        super().__init__(runner)
        self.runner = runner


class Model:
    def __init__(self, name: str, plugin: object, predictor: Optional[PredictorSettings] = None,
                 model_dir: Optional[str] = None):
        self.name = name
        self.plugin = plugin
        self.model_dir = model_dir
        # The transformer role's: where predict sends its inputs, and the predictor argument of a plugin's own.
        self.predictor: Optional[PredictorClient] = make_client(predictor, name) if predictor else None
        self.pm = make_plugin_manager(name, plugin, PredictorHooks(self.predictor) if self.predictor else None)
        self.hooks = implemented_hooks(self.pm, plugin)
        # What it answers: its hooks', generate when it steps, and the transformer role's predict and generate.
        also = {"predict", "generate"} if self.predictor else {"generate"} if "step" in self.hooks else set()
        self.verbs = [verb for verb in VERBS if verb in self.hooks or verb in also]
        self.callers = {hook: HookCaller(getattr(self.pm.hook, hook)) for hook in HOOK_NAMES}
        self.awaits = any(caller.awaits for caller in self.callers.values())
        # How a synchronous hook leaves the event loop that an awaiting model's pipeline runs on; None: in place.
        self.offload: Optional[Offload] = None
        self.scheduler: Optional[Any] = None  # a model that steps: its sequences' (sequences.attach)
        self.metadata: dict = {}
        self.settings = ServingSettings()
        # Once loaded, from the metadata: what V2 inputs are checked and answers compared with (None: nothing to).
        self.checked_inputs: Optional[DeclaredInputs] = None
        self.compared_outputs: Optional[DeclaredOutputs] = None

    async def load(self, command_line: dict, runner: str = "workers") -> None:
        """Resolve the plugin's ``settings`` under the command line's, then ``load`` and read its ``metadata``.

        PluginLoadError says why it cannot serve; ServedElsewhere that the settings ask for a runner other than
        the ``runner`` loading it.
        """
        try:
            own = await self.call("settings", name=self.name, model_dir=self.model_dir) or {}
            self.settings = ServingSettings.resolve(own, command_line)
            if self.settings.runner != runner:
                raise ServedElsewhere(self.settings.runner)
            await self.call("load", name=self.name, settings=self.settings.as_dict(), model_dir=self.model_dir)
            self.metadata = await self.call("metadata", name=self.name) or {}
            # Read either way, so that a declaration that is not one keeps the model from serving; checked only
            # where predict takes what was sent: a plugin's own preprocess takes requests as it chooses.
            inputs = DeclaredInputs.of(self.metadata)
            self.checked_inputs = inputs if "preprocess" not in self.hooks else None
            self.compared_outputs = DeclaredOutputs.of(self.metadata)
        except ModelhostError as exc:
            raise PluginLoadError(exc.message) from None
        except PluginLoadError as exc:
            raise PluginLoadError(f"model {self.name!r}: {exc}") from None

    async def unload(self) -> None:
        """Call the plugin's ``unload``; its exception is logged (by ``call``), never raised."""
        with contextlib.suppress(ModelhostError):
            await self.call("unload", name=self.name)

    @property
    def watched(self) -> bool:
        """Whether its health can change while it serves: its ``healthy`` hook, or a predictor it depends on."""
        return "healthy" in self.hooks or bool(self.predictor and self.predictor.settings.health_check)

    async def health(self) -> str:
        """Why the model is not healthy now, as its ``healthy`` hook (and, with --enable_predictor_health_check,
        its predictor) says; "" when it is, or has nothing to say.

        Not logged here: it is polled, and its callers log each change once.
        """
        if self.predictor and self.predictor.settings.health_check and not await self.predictor.ready():
            return f"its predictor at {self.predictor.address} is not ready"
        if "healthy" not in self.hooks:
            return ""
        try:
            healthy = await self.callers["healthy"]({"name": self.name}, self.offload)
        except Exception as exc:
            return f"its healthy hook raised {summarize(exc)}"
        return "" if healthy else f"its healthy hook returned {healthy!r}"

    async def infer(self, request: InferenceRequest):
        """preprocess -> predict -> postprocess for one request, timed, as ``respond`` makes it; an error raises."""
        inputs = await self.prepare(request)
        outputs = await self.timed([request], self.verb(request), **arguments(inputs, self.predictor))
        check_rows(outputs, rows(inputs), self.name, request.verb)
        return self.respond(await self.timed([request], "postprocess", outputs=outputs, request=request), request)

    async def prepare(self, request: InferenceRequest, offload: Union[Offload, None, Own] = OWN):
        """The request's inputs for predict: those in shared memory read, all checked against the declared ones
        (``protocol.declared``), then ``preprocess``."""
        request.inputs = read_inputs(request.inputs)
        if self.checked_inputs is not None and request.protocol == "v2":
            self.checked_inputs.check(request.inputs)
        return await self.timed([request], "preprocess", offload, request=request)

    def verb(self, request: InferenceRequest) -> str:
        """The hook that answers the request's verb: ``predict``, or ``explain`` when the plugin has it."""
        if request.verb == "explain" and "explain" not in self.hooks:
            raise NotImplementedByModel(f"model {self.name!r} does not explain its predictions (no explain hook)")
        if request.verb == "predict" and "predict" not in self.verbs:
            raise NotImplementedByModel(f"model {self.name!r} does not predict (no predict hook): it answers "
                                        f"{' and '.join(self.verbs)}")
        if request.verb == "embed" and "embed" not in self.hooks:
            raise InvalidInput(f"model {self.name!r} does not embed texts (it has no embed hook)")
        return request.verb

    def respond(self, result, request: InferenceRequest):
        """The result as the request's protocol carries it (``replies.carried``); V2 outputs other than declared
        are logged, the first time."""
        answer = carried(result, request, self.name, self.metadata, self.hooks)
        if self.compared_outputs is not None and request.protocol == "v2":
            difference = self.compared_outputs.difference(answer.payload if isinstance(answer, Reply) else answer)
            if difference:
                self.compared_outputs = None  # once: the plugin's code will not change while it serves
                log.warning("model %r answers other outputs than its metadata tells clients: %s (logged once)",
                            self.name, difference)
        return written(answer, request.output_places)  # here, where the model runs: they cross no other process

    async def timed(self, requests: list[InferenceRequest], hook: str, offload: Union[Offload, None, Own] = OWN,
                    **kwargs):
        """Call a hook for these requests: its time goes into their timings, their ids onto its log lines, and
        when they are traced, its span around it."""
        ids = requests[0].request_id if len(requests) == 1 else ",".join(r.request_id for r in requests if r.request_id)
        tag = logs.request_id.set(ids)
        predictor_calls: list[float] = []
        calls_tag = calls_took.set(predictor_calls) if self.predictor else None
        started = time.perf_counter()
        try:
            with tracing.stage(hook, self.name, requests) if requests[0].trace_context else tracing.NO_SPAN:
                return await self.call_on(hook, kwargs, offload)
        finally:
            spent = time.perf_counter() - started
            for request in requests:
                request.timings[hook] = spent
                if predictor_calls:
                    request.timings["predictor"] = sum(predictor_calls)
            logs.request_id.reset(tag)
            if calls_tag:
                calls_took.reset(calls_tag)

    async def call(self, hook: str, **kwargs):
        """Call one hook, turning a plugin's own exception into an error that names the hook."""
        return await self.call_on(hook, kwargs, OWN)

    async def call_on(self, hook: str, kwargs: dict, offload: Union[Offload, None, Own]):
        """``call``, its synchronous implementations sent through ``offload`` (``OWN``: the model's own).

        A generation in the server process steps a synchronous model's hooks on threads, where its batches
        run each one whole on a thread of their own (``generation``).
        """
        try:
            return await self.callers[hook](kwargs, self.offload if offload is OWN else offload)
        except ModelhostError:
            raise
        except Exception as exc:
            raise failure(self.name, hook, exc) from None


def arguments(inputs, predictor: Optional[PredictorClient]) -> dict:
    """What the verb's hook is passed: ``inputs`` (``texts`` for ``embed``), and the transformer role's predictor."""
    return {"inputs": inputs, "texts": inputs, "predictor": predictor}


def failure(name: str, hook: str, exc: Exception) -> ModelhostError:
    """The error that answers a plugin's own exception in model ``name``'s ``hook``, logged."""
    if isinstance(exc, ReturnedNone):
        if exc.first:  # each request answers it; the log needs it once
            log.error("model %r: %s returned None (defined at %s), so each request it handles is answered 500: "
                      "it must return %s", name, hook, exc.where, NEEDS_A_VALUE[hook])
        return PluginError(f"model {name!r}: {exc}")
    log.error("model %r: %s hook raised", name, hook, exc_info=exc)
    return PluginError(f"model {name!r}: {hook} hook raised {summarize(exc)}")


def served_versions(spec: PluginSpec, declared: dict) -> list[str]:
    """The versions a model answers to: the plugin's own (its metadata's ``versions``), else its distribution's."""
    return [str(version) for version in declared.get("versions") or []] or ([spec.version] if spec.version else [])


def served_version(spec: PluginSpec, declared: dict) -> Optional[str]:
    """The version that answers a request that names none."""
    return next(iter(served_versions(spec, declared)), None)


def import_model(spec: PluginSpec, predictor: Optional[PredictorSettings] = None) -> Model:
    """Import a plugin and check that it keeps the contract; PluginLoadError says why it cannot serve."""
    return Model(spec.name, import_plugin(spec), predictor, spec.model_dir)
