"""Serving a model from Ray Serve replicas: one Serve application per model, called through its handle.

Requests wait in one queue per model, as for the worker pool, so adaptive
batching happens before the hop and one call to a replica carries a whole
batch, its tensors as NumPy arrays. The replicas (``ray_replica``) run the
plugin's hooks through the host's pipeline. How many there are, what each
needs of the cluster (``ray_actor_options``) and Serve's autoscaling come from
the model's settings, which a Ray task reads from the plugin before anything is
placed. The model is ready while Serve reports a replica of it running; a
request whose replica dies gets 503, and Serve starts another.
"""

import asyncio
import logging
import secrets
import sys
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Union

from .. import tracing
from ..errors import ModelhostError, ModelNotReady, ModelTimeout, PluginError, PluginLoadError
from ..metrics import Metrics
from ..plugins import PluginSpec
from ..predictor import PredictorSettings
from ..request import InferenceRequest
from ..settings import ServingSettings
from .batching import Pending, RequestQueue, fail, run_batches, settle_answered, stop_taking
from .deadline import within
from .messages import Batch, Generated, LoadFailed, Ready, Serve
from .ray_cluster import PlacementError, RayCluster
from .runner import report_ready
from .streams import PieceStream, Producers, Streams

log = logging.getLogger("modelhost")

STATUS_INTERVAL_SECONDS = 1.0  # how often the replicas' states are read from Serve
DEFAULT_ACTOR_OPTIONS = {"num_cpus": 1}  # Serve's own default for a replica, made explicit for the placement check


@dataclass(frozen=True)
class Placing:
    """What deploying a model needs to know of its plugin first: its settings, whether it awaits, and whether it
    generates."""

    settings: ServingSettings
    awaits: bool
    generates: bool


class RayServeRunner:
    def __init__(self, spec: PluginSpec, options: dict, timeout: float, metrics: Metrics, in_flight: Callable[[], int],
                 cluster: RayCluster, predictor: Optional[PredictorSettings] = None):
        self.spec = spec
        self.name = spec.name
        self.serving = Serve(options, predictor, tracing.traced_here())
        self.timeout = timeout
        self.metrics = metrics
        self.cluster = cluster
        self.queue = RequestQueue(spec.name, metrics.batch_size.labels(spec.name).observe, in_flight)
        self.settings = ServingSettings.resolve({}, options)
        self.metadata: dict = {}
        self.hooks: list[str] = []
        self.verbs: list[str] = []
        self.reason = "loading"
        self.loaded = False
        self.elsewhere: Optional[str] = None  # the command line chose Ray, which the plugin's settings cannot undo
        self.failed: Optional[LoadFailed] = None
        self.running = 0  # replicas that Serve reports running
        # An upgrade deploys the new version beside the old: each runner's application has a name of its own.
        self.application = f"{spec.name}-{secrets.token_hex(4)}"
        self.handle: Any = None  # the deployment's, once deployed
        self.infer_batch = None  # the deployment's handle to ModelReplica.infer_batch, made once
        self.streams = Streams(spec.name, timeout, self.start_generation)
        self.producers = Producers(spec.name)
        self.tasks: list[asyncio.Task] = []

    @property
    def ready(self) -> bool:
        return self.loaded and self.running > 0

    def require_ready(self) -> None:
        if not self.ready:
            raise ModelNotReady(f"model {self.name!r} is not ready: {self.reason}")

    async def start(self) -> None:
        try:
            await self.cluster.connect()
            placing = await asyncio.to_thread(read_placing, self.spec, self.serving.command_line)
            self.settings = placing.settings
            handle = self.handle = await asyncio.to_thread(deploy, self, placing.awaits or placing.generates)
            self.infer_batch = handle.infer_batch
            started = await handle.describe.remote()
        except (PlacementError, PluginLoadError) as error:
            self.fail_to_start(str(error))
            return
        except Exception as error:  # Ray's: the cluster cannot be reached, or Serve could not deploy
            self.fail_to_start(f"Ray could not serve it: {type(error).__name__}: {error}")
            await asyncio.to_thread(self.cluster.delete, self.application)
            return
        if isinstance(started, LoadFailed):
            self.fail_to_start(started.reason, started.where)
            await asyncio.to_thread(self.cluster.delete, self.application)
            return
        assert isinstance(started, Ready)  # the command line chose "ray": no plugin's settings send it elsewhere
        self.metadata = started.metadata
        self.hooks = started.hooks
        self.verbs = started.verbs
        self.loaded = True
        self.running = self.settings.replicas
        self.count_up()
        at_once = most_replicas(self.settings) * (self.settings.max_concurrency if started.awaits else 1)
        self.queue.configure(self.settings, at_once, shares=not started.awaits)
        self.streams.configure(most_replicas(self.settings) * self.settings.max_concurrency,
                               self.settings.max_queue_size)
        self.tasks = [asyncio.create_task(run_batches(self.queue.next_batch, self.run_batch, at_once)),
                      asyncio.create_task(self.follow_replicas())]
        report_ready(self.spec, f"{self.settings.replicas} Ray Serve replica(s)", started.hooks)

    def fail_to_start(self, reason: str, where: str = "") -> None:
        self.reason = reason
        self.failed = LoadFailed(reason, where)

    async def follow_replicas(self) -> None:
        """Readiness and ``replicas_up`` as Serve reports the replicas' states."""
        while True:
            await asyncio.sleep(STATUS_INTERVAL_SECONDS)
            try:
                status = await asyncio.to_thread(self.cluster.status, self.application, self.name)
            except Exception as error:  # Ray itself is gone: nothing serves
                status, why = None, f"Ray cannot be reached: {error}"
            else:
                why = "its Serve application is gone"
            running = status.replica_states.get("RUNNING", 0) if status else 0
            if running != self.running:
                log.info("model %r: %d of its Ray Serve replicas running", self.name, running)
                self.running = running
                self.count_up()
            if running == 0:
                self.reason = f"no Ray Serve replica of it is running ({status.status.value if status else why})"
                self.queue.fail_all(ModelNotReady(f"model {self.name!r} is not ready: {self.reason}"))

    def count_up(self) -> None:
        self.metrics.replicas_up.labels(self.name).set(self.running)

    def submit(self, request: InferenceRequest) -> asyncio.Future:
        self.require_ready()
        if request.verb == "generate":
            return self.streams.open(request)
        return self.queue.submit(request)

    def start_generation(self, request: InferenceRequest, stream: PieceStream) -> None:
        self.producers.start(stream, lambda put: relay(self.handle, self.name, request, put))

    async def run_batch(self, batch: list[Pending]) -> None:
        from ray.exceptions import RayActorError

        assert self.infer_batch is not None  # consumers start once deployed
        response = self.infer_batch.remote(Batch(0, [pending.request for pending in batch]))
        try:
            outcomes = await within(self.timeout, response)
        except asyncio.TimeoutError:
            response.cancel()
            fail(batch, ModelTimeout(f"model {self.name!r} did not answer within {self.timeout:g}s"))
            return
        except asyncio.CancelledError:
            response.cancel()
            fail(batch, ModelNotReady(f"model {self.name!r} is shutting down"))
            raise
        except RayActorError as error:  # the replica died: Serve replaces it, the next batch goes to another
            fail(batch, ModelNotReady(f"model {self.name!r}: its Ray Serve replica died during this request "
                                      f"({type(error).__name__})"))
            log.error("model %r: a Ray Serve replica died: %s", self.name, error)
            return
        except Exception as error:  # Ray's own (serialization, the handle, its gRPC): the hooks' errors are outcomes
            log.error("model %r: Ray failed the call: %s", self.name, error)
            fail(batch, PluginError(f"model {self.name!r}: Ray failed the call ({type(error).__name__})"))
            return
        settle_answered(batch, outcomes)

    async def stop(self) -> None:
        self.streams.fail_all(ModelNotReady(f"model {self.name!r} is shutting down"))
        await self.producers.stop()
        await stop_taking(self.tasks, self.queue, self.name)
        self.reason = "stopped"
        self.running = 0
        if self.cluster.connected:
            await asyncio.to_thread(self.cluster.delete, self.application)


def deploy(runner: RayServeRunner, side_by_side: bool) -> Any:  # a DeploymentHandle: Ray is imported once a model runs
    """Place the runner's replicas and wait until they are up; the application's handle."""
    from ray import serve

    from .ray_replica import ModelReplica

    settings = runner.settings
    actor_options = {**DEFAULT_ACTOR_OPTIONS, **settings.ray_actor_options}
    runner.cluster.check_placement(needs(actor_options))
    log_level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
    return runner.cluster.deploy(runner.application, lambda: serve.deployment(
        name=runner.name, ray_actor_options=runner.cluster.replica_env(actor_options),
        num_replicas=None if settings.autoscaling_config else settings.replicas,
        autoscaling_config=settings.autoscaling_config or None,
        health_check_period_s=settings.health_interval_s, health_check_timeout_s=runner.timeout,
        # A synchronous model's replica runs one batch at a time, as a worker process does; one that awaits, or
        # generates (its generations run side by side, as in a worker), up to max_concurrency calls at once.
        max_ongoing_requests=settings.max_concurrency if side_by_side else 1,
        # The server writes each request's access line; a replica's would be a second, per batch.
        logging_config={"enable_access_log": False},
    )(ModelReplica).bind(runner.spec, runner.serving, sys.path, log_level))


async def relay(handle: Any, name: str, request: InferenceRequest, put: Callable[[Any], Awaitable[None]]) -> None:
    """A generation on a replica, through Serve's streaming handle (``ModelReplica.generate``), its parts read as
    the client takes them; raises the error that ended it."""
    from ray.exceptions import RayActorError

    response = handle.options(stream=True).generate.remote(request)
    try:
        async for part in response:
            if not isinstance(part, Generated):
                await put(part)
                continue
            if part.spans:
                tracing.take(part.spans)
            request.timings.update(part.timings)
            if part.error is not None:
                raise part.error
            return
    except asyncio.CancelledError:
        response.cancel()  # the replica's generator is closed
        raise
    except RayActorError as error:
        raise ModelNotReady(f"model {name!r}: its Ray Serve replica died during this generation "
                            f"({type(error).__name__})") from None
    except ModelhostError:
        raise
    except Exception as error:  # Ray's own: the hooks' errors come in the Generated
        log.error("model %r: Ray failed the generation: %s", name, error)
        raise PluginError(f"model {name!r}: Ray failed the generation ({type(error).__name__})") from None
    raise PluginError(f"model {name!r}: its Ray Serve replica ended the generation without saying how")


def most_replicas(settings: ServingSettings) -> int:
    return int(settings.autoscaling_config.get("max_replicas", settings.replicas)) if settings.autoscaling_config \
        else settings.replicas


def read_placing(spec: PluginSpec, command_line: dict) -> Placing:
    """The plugin's settings under the command line's, read by a Ray task where the plugin is installed (in a
    process of its own, so that an upgrade's are the new code's)."""
    import ray

    placing = ray.get(ray.remote(num_cpus=0, max_calls=1)(describe_plugin).remote(spec, command_line, sys.path))
    if isinstance(placing, LoadFailed):
        raise PluginLoadError(placing.reason)
    return placing


def needs(actor_options: dict) -> dict[str, float]:
    """The resources a replica asks for, named as ``ray.nodes()`` names them."""
    wanted = {"CPU": actor_options.get("num_cpus", 0), "GPU": actor_options.get("num_gpus", 0),
              "memory": actor_options.get("memory", 0), **actor_options.get("resources", {})}
    return {name: amount for name, amount in wanted.items() if amount}


def describe_plugin(spec: PluginSpec, command_line: dict, search_path: list[str]) -> Union[Placing, LoadFailed]:
    """(In a Ray task.) The plugin's ``settings`` hook under the command line's, or why it cannot load."""
    from ..model import import_model

    sys.path[:0] = [entry for entry in search_path if entry not in sys.path]
    try:
        model = import_model(spec)
        own = asyncio.run(model.call("settings", name=spec.name, model_dir=spec.model_dir)) or {}
        return Placing(ServingSettings.resolve(own, command_line), model.awaits, "generate" in model.verbs)
    except (PluginLoadError, ModelhostError) as exc:
        return LoadFailed(str(exc), getattr(exc, "where", ""))
