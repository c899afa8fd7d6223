"""The worker pool and its replicas without processes: a fake worker, its channel in memory."""

import asyncio

import numpy as np
import pytest

from modelhost import InferenceRequest
from modelhost.errors import ModelNotReady, ModelTimeout
from modelhost.metrics import Metrics
from modelhost.plugins import PluginSpec
from modelhost.runtime.messages import LoadFailed, Outcomes, Ready, Serve
from modelhost.runtime.pool import WorkerPoolRunner
from modelhost.runtime.process import Exit
from modelhost.settings import ServingSettings


class FakeChannel:
    def __init__(self, worker: "FakeWorker"):
        self.worker = worker
        self.replies: asyncio.Queue = asyncio.Queue()

    async def send(self, batch) -> None:
        self.worker.batches.append(batch)
        behaviour = self.worker.behaviour
        if behaviour == "answers":
            self.replies.put_nowait(Outcomes(batch.id, [r.inputs["x"] * 2 for r in batch.requests],
                                             [{"predict": 0.001}] * len(batch.requests)))
        elif behaviour == "dies":
            self.worker.died.set()
        # "hangs": no reply at all

    async def receive(self):
        receiving = asyncio.ensure_future(self.replies.get())
        dying = asyncio.ensure_future(self.worker.died.wait())
        await asyncio.wait({receiving, dying}, return_when=asyncio.FIRST_COMPLETED)
        if receiving.done():
            dying.cancel()
            return receiving.result()
        receiving.cancel()
        raise EOFError("the worker closed its channel")


class FakeWorker:
    """A worker process as a replica sees it; ``behaviour`` says what it does with a batch."""

    started: list["FakeWorker"] = []
    behaviour = "answers"
    start_with: object = None

    def __init__(self, spec: PluginSpec, replica: int):
        self.spec, self.replica = spec, replica
        self.batches: list = []
        self.died = asyncio.Event()
        self.killed = False
        self.channel = FakeChannel(self)
        self.label = f"{spec.name}[{replica}] fake"
        type(self).started.append(self)

    async def start(self, serve: Serve):
        settings = ServingSettings.resolve({}, serve.command_line)
        return self.start_with or Ready(settings, {"versions": ["3"]}, hooks=["predict"], verbs=["predict"])

    async def exit_cause(self) -> Exit:
        return Exit("SIGKILL", "was killed by SIGKILL") if self.killed else Exit("status 1", "exited with status 1")

    def kill(self) -> None:
        self.killed = True
        self.died.set()

    async def stop(self) -> None:
        self.died.set()


@pytest.fixture
def pool_of():
    def make(behaviour="answers", replicas=1, timeout=5.0, start_with=None):
        worker = type("Worker", (FakeWorker,), {"behaviour": behaviour, "start_with": start_with})
        worker.started = []
        pool = WorkerPoolRunner(PluginSpec("m", "fake:M"), {"replicas": replicas}, timeout, Metrics(), lambda: 0)
        pool.new_worker = worker
        return pool, worker

    return make


def request(value: float) -> InferenceRequest:
    return InferenceRequest(protocol="v2", inputs={"x": np.array([value])})


def test_a_batch_goes_to_the_worker_and_each_request_gets_its_outcome_and_timings(pool_of):
    async def scenario():
        pool, worker = pool_of()
        await pool.start()
        assert pool.ready and pool.metadata == {"versions": ["3"]}
        requests = [request(1.0), request(2.0)]
        outcomes = await asyncio.gather(*(pool.submit(r) for r in requests))
        await pool.stop()
        return outcomes, requests, worker

    outcomes, requests, worker = asyncio.run(scenario())
    np.testing.assert_array_equal(np.concatenate(outcomes), [2.0, 4.0])
    assert all(r.timings["predict"] == 0.001 for r in requests)
    assert sum(len(batch.requests) for batch in worker.started[0].batches) == 2


def test_a_worker_that_dies_during_a_batch_fails_it_with_503_and_is_started_again(pool_of):
    async def scenario():
        pool, worker = pool_of("dies")
        await pool.start()
        with pytest.raises(ModelNotReady, match="its worker exited with status 1 during this request"):
            await pool.submit(request(1.0))
        while len(worker.started) < 2:  # the replica starts another worker after its backoff
            await asyncio.sleep(0.01)
        await pool.stop()
        return pool

    pool = asyncio.run(scenario())
    assert pool.reason == "stopped"


def test_a_worker_stuck_past_the_timeout_is_killed_and_its_batch_gets_504(pool_of):
    async def scenario():
        pool, worker = pool_of("hangs", timeout=0.05)
        await pool.start()
        with pytest.raises(ModelTimeout, match="did not answer within 0.05s; its worker is being replaced"):
            await pool.submit(request(1.0))
        killed = worker.started[0].killed
        await pool.stop()
        return killed

    assert asyncio.run(scenario())


def test_a_plugin_that_cannot_load_leaves_the_pool_not_ready_with_the_reason(pool_of):
    async def scenario():
        pool, worker = pool_of(start_with=LoadFailed("model 'm': load hook raised OSError: no weights", ""))
        await pool.start()
        return pool, worker

    pool, worker = asyncio.run(scenario())
    assert not pool.ready and len(worker.started) == 1
    with pytest.raises(ModelNotReady, match="no weights"):
        pool.require_ready()


def test_the_pool_starts_as_many_replicas_as_its_settings_say(pool_of):
    async def scenario():
        pool, worker = pool_of(replicas=3)
        await pool.start()
        up = len(pool.up)
        await pool.stop()
        return up, worker

    up, worker = asyncio.run(scenario())
    assert up == 3 and [w.replica for w in worker.started] == [0, 1, 2]
