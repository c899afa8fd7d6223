"""Prometheus metrics for ``GET /metrics``, summed over every process that serves.

With ``--workers N`` a scrape reaches one server process of several. In
prometheus-client's multiprocess mode each process writes its samples to files
in one shared directory and any process's scrape reads them all, so one scrape
shows the whole server. The mode is chosen when prometheus-client is first
imported, from ``PROMETHEUS_MULTIPROC_DIR``: ``share_between_processes`` sets
it before the server forks, and this module imports prometheus-client only
inside its functions, so that importing modelhost never decides it too early.
A single server process keeps its metrics in memory, which costs less.
"""

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
MODEL = ["model_name"]
# Prometheus's default buckets start at 5 ms; a small model answers in well under one.
SECONDS_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
# Stages of a request as ``InferenceRequest.timings`` names them, and the histogram of each.
STAGE_HISTOGRAMS = {
    "queue": ("modelhost_request_queue_seconds", "time a request waited for a free replica or thread"),
    "preprocess": ("request_preprocess_seconds", "pre-process request latency"),
    "predict": ("request_predict_seconds", "predict request latency (of the batch the request was in)"),
    "postprocess": ("request_postprocess_seconds", "post-process request latency"),
    "predictor": ("modelhost_request_predictor_seconds",
                  "time the request's batch waited for the predictor, in the transformer role (--predictor_host)"),
}


def share_between_processes() -> Optional[str]:
    """Make every process started from here on write its metrics to one directory.

    Returns the directory when this call made it (the caller removes it at
    exit), None when ``PROMETHEUS_MULTIPROC_DIR`` was already set.
    """
    if os.environ.get(MULTIPROCESS_DIR):
        return None
    path = tempfile.mkdtemp(prefix="modelhost-metrics-")
    os.environ[MULTIPROCESS_DIR] = path
    return path


def remove_shared(path: Optional[str]) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def forget_process(pid: int) -> None:
    """A server process has exited: its live gauges (in flight, replicas up) no longer count."""
    if os.environ.get(MULTIPROCESS_DIR):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class Metrics:
    """The server's metrics; each process builds one."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.bound_labels: dict[tuple, tuple] = {}
        self.in_flight_by_model: dict = {}
        register = {"registry": self.registry}
        self.requests = Counter("modelhost_requests", "inference requests answered, by protocol and status",
                                [*MODEL, "protocol", "status"], **register)
        self.latency = Histogram("modelhost_request_seconds", "inference request latency, end to end in the server",
                                 [*MODEL, "protocol"], buckets=SECONDS_BUCKETS, **register)
        # Triton's statistics tell the time of failed requests from that of successful ones.
        self.failed_seconds = Counter("modelhost_failed_request_seconds", "latency of the inference requests "
                                      "answered with an error, summed", MODEL, **register)
        self.stages = {
            stage: Histogram(name, documentation, MODEL, buckets=SECONDS_BUCKETS, **register)
            for stage, (name, documentation) in STAGE_HISTOGRAMS.items()
        }
        self.in_flight = Gauge("modelhost_requests_in_flight", "inference requests received and not yet answered",
                               MODEL, multiprocess_mode="livesum", **register)
        self.batch_size = Histogram("modelhost_batch_size", "requests in one predict call (1 with batching "
                                    "off)", MODEL, buckets=BATCH_BUCKETS, **register)
        self.replicas_up = Gauge("modelhost_replicas_up", "worker processes of a model ready to serve",
                                 MODEL, multiprocess_mode="livesum", **register)
        self.restarts = Counter("modelhost_replica_restarts", "worker processes started again after one was lost",
                                MODEL, **register)
        self.exits = Counter("modelhost_replica_exits", "worker processes lost, by cause", [*MODEL, "cause"],
                             **register)
        self.last_inference = Gauge("modelhost_last_inference_timestamp_seconds", "when the model last answered an "
                                    "inference request", MODEL, multiprocess_mode="max", **register)
        self.streams = Gauge("modelhost_streams_in_flight", "generations being answered piece by piece",
                             MODEL, multiprocess_mode="livesum", **register)
        self.first_piece = Histogram("modelhost_stream_first_piece_seconds", "time from a generation's request to "
                                     "its first piece, taken for its client", MODEL, buckets=SECONDS_BUCKETS, **register)
        self.between_pieces = Histogram("modelhost_stream_between_pieces_seconds", "time between a generation's "
                                        "pieces, as its client takes them", MODEL, buckets=SECONDS_BUCKETS, **register)
        self.pieces = Counter("modelhost_stream_pieces", "pieces of generations sent to clients", MODEL, **register)
        self.step_sequences = Histogram("modelhost_step_sequences", "sequences advanced together by a step of a "
                                        "model that steps", MODEL, buckets=BATCH_BUCKETS, **register)
        self.steps = Counter("modelhost_steps", "steps of a model that steps", MODEL, **register)
        self.sequences_queued = Gauge("modelhost_sequences_queued", "sequences waiting to join a model's steps (its "
                                      "max_batch_size or memory_budget is taken)", MODEL, multiprocess_mode="livesum",
                                      **register)
        self.shared_memory_tensors = Counter(
            "modelhost_shared_memory_tensors", "tensors of requests read from or written to clients' shared-memory "
            "regions (Triton's extension), by direction (input, output)", [*MODEL, "direction"], **register)
        self.shared_memory_bytes = Counter("modelhost_shared_memory_input_bytes", "bytes of inputs read from "
                                           "clients' shared-memory regions", MODEL, **register)
        self.last_exit = Gauge("modelhost_replica_last_exit_timestamp_seconds", "when a worker process was last "
                               "lost, by cause: the latest series is the last cause", [*MODEL, "cause"],
                               multiprocess_mode="max", **register)

    def request_started(self, model: str) -> None:
        self.in_flight_of(model).inc()

    def request_done(self, model: str, protocol: str, status: int, seconds: float, timings: dict) -> None:
        self.in_flight_of(model).dec()
        count, latency, stages, last_inference = self.bound(model, protocol, status)
        last_inference.set(time.time())
        count.inc()
        latency.observe(seconds)
        if status != 200:
            self.failed_seconds.labels(model).inc(seconds)
        for stage, spent in timings.items():
            if stage in stages:
                stages[stage].observe(spent)

    def stream_started(self, model: str) -> None:
        self.streams.labels(model).inc()

    def stream_done(self, model: str, started: float, taken_at: list[float]) -> None:
        """A generation's pieces were taken at ``taken_at`` (``time.perf_counter``), its request came at ``started``."""
        self.streams.labels(model).dec()
        if not taken_at:
            return
        self.first_piece.labels(model).observe(taken_at[0] - started)
        between = self.between_pieces.labels(model)
        for before, after in zip(taken_at, taken_at[1:]):
            between.observe(after - before)
        self.pieces.labels(model).inc(len(taken_at))

    def shared_memory_used(self, model: str, inputs: int, input_bytes: int, outputs: int) -> None:
        self.shared_memory_tensors.labels(model, "input").inc(inputs)
        self.shared_memory_tensors.labels(model, "output").inc(outputs)
        self.shared_memory_bytes.labels(model).inc(input_bytes)

    def stepped(self, model: str, sizes: tuple[int, ...], queued: int) -> None:
        """Steps of ``sizes`` sequences each; ``queued`` wait after them, in all the processes serving the model."""
        for size in sizes:
            self.step_sequences.labels(model).observe(size)
        self.steps.labels(model).inc(len(sizes))
        self.sequences_queued.labels(model).set(queued)

    # Binding labels takes a lock and lookups that would cost every request several microseconds;
    # the combinations are few (served models, protocols, statuses), so each is bound once.
    def bound(self, model: str, protocol: str, status: int) -> tuple:
        key = (model, protocol, status)
        if key not in self.bound_labels:
            self.bound_labels[key] = (self.requests.labels(model, protocol, str(status)),
                                      self.latency.labels(model, protocol),
                                      {stage: histogram.labels(model) for stage, histogram in self.stages.items()},
                                      self.last_inference.labels(model))
        return self.bound_labels[key]

    def in_flight_of(self, model: str):
        if model not in self.in_flight_by_model:
            self.in_flight_by_model[model] = self.in_flight.labels(model)
        return self.in_flight_by_model[model]

    def replica_lost(self, model: str, cause: str) -> None:
        self.exits.labels(model, cause).inc()
        self.last_exit.labels(model, cause).set_to_current_time()

    def every_process(self):
        """The registry to read: this process's, or every process's when they share a directory."""
        from prometheus_client import CollectorRegistry, multiprocess

        if not os.environ.get(MULTIPROCESS_DIR):
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry

    def render(self) -> tuple[bytes, str]:
        """The text exposition, of every process when they share a directory; and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.every_process()), CONTENT_TYPE_LATEST


def statistics_of(metrics: Metrics, model: str) -> "ModelStatistics":
    """Triton's statistics of a model, from ``metrics`` (of every process)."""
    totals: dict[str, float] = {}
    success = fail = 0.0
    for family in metrics.every_process().collect():
        for sample in family.samples:
            if sample.labels.get("model_name") != model:
                continue
            if sample.name == "modelhost_requests_total":
                if sample.labels["status"] == "200":
                    success += sample.value
                else:
                    fail += sample.value
            else:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value

    def duration(histogram: str) -> Duration:
        return Duration(int(totals.get(f"{histogram}_count", 0)), int(1e9 * totals.get(f"{histogram}_sum", 0)))

    failed_ns = int(1e9 * totals.get("modelhost_failed_request_seconds_total", 0))
    stage = {name: duration(STAGE_HISTOGRAMS[name][0]) for name in STAGE_HISTOGRAMS}
    return ModelStatistics(
        success=Duration(int(success), duration("modelhost_request_seconds").ns - failed_ns),
        fail=Duration(int(fail), failed_ns), queue=stage["queue"], compute_input=stage["preprocess"],
        compute_infer=stage["predict"], compute_output=stage["postprocess"],
        execution_count=duration("modelhost_batch_size").count,
        last_inference_ms=int(1000 * totals.get("modelhost_last_inference_timestamp_seconds", 0)),
    )



@dataclass(frozen=True)
class Duration:
    """How many, and how long in all: Triton's StatisticDuration."""

    count: int
    ns: int


@dataclass(frozen=True)
class ModelStatistics:
    """Triton's statistics extension's figures of one model (its InferStatistics, and executions)."""

    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration  # preprocess
    compute_infer: Duration  # predict, once for each request of a batch
    compute_output: Duration  # postprocess
    execution_count: int  # batches run
    last_inference_ms: int  # when the model last answered, in milliseconds since the epoch; 0: never
