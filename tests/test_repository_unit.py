"""The model repository on its own, with fake runners: load, upgrade, unload and their waiting, without processes."""

import asyncio

import pytest

from modelhost.errors import InvalidInput, ServerShuttingDown
from modelhost.inflight import InFlight
from modelhost.plugins import PluginSpec
from modelhost.repository import ModelLoadFailed, ModelRepository
from modelhost.runtime.messages import LoadFailed


class FakeRunner:
    made: list["FakeRunner"] = []
    fail_from = 99  # the runners made from this one on cannot load
    wanted = None  # the runner the fake plugin's settings ask for, when the command line names none

    def __init__(self, spec: PluginSpec, in_flight, runner=None):
        self.spec, self.in_flight, self.runner = spec, in_flight, runner
        self.index = len(FakeRunner.made)
        self.ready, self.reason, self.metadata, self.stopped = False, "loading", {}, False
        self.elsewhere, self.failed = None, None
        FakeRunner.made.append(self)

    async def start(self):
        if self.runner is None and FakeRunner.wanted:
            self.elsewhere = FakeRunner.wanted  # nothing loaded
            return
        self.ready = self.index < FakeRunner.fail_from
        self.reason = "" if self.ready else "load hook raised OSError: no weights"
        self.failed = None if self.ready else LoadFailed(self.reason, "")

    async def stop(self):
        self.ready, self.stopped = False, True


class Call:
    def expire(self):
        pass


@pytest.fixture
def repository():
    FakeRunner.made, FakeRunner.fail_from, FakeRunner.wanted = [], 99, None
    in_flight = InFlight()
    return ModelRepository([PluginSpec("m", "fake:M")], FakeRunner, in_flight, drain_timeout=5, changeable=True)


def test_an_upgrade_switches_to_the_new_runner_and_stops_the_old_once_its_calls_are_answered(repository):
    async def scenario():
        await repository.start()
        old = repository.runners["m"]
        call = Call()
        repository.in_flight.admit(call, "m")  # admitted before the upgrade: it may hold the old runner
        loading = asyncio.create_task(repository.load("m"))
        while repository.runners["m"] is old:
            await asyncio.sleep(0.005)
        assert not old.stopped  # the call it may hold is still in flight
        repository.in_flight.release(call)
        await loading
        return old, repository.runners["m"]

    old, new = asyncio.run(scenario())
    assert old.stopped and new.ready and new is not old


def test_a_failed_upgrade_keeps_the_old_runner_serving(repository):
    async def scenario():
        await repository.start()
        old = repository.runners["m"]
        FakeRunner.fail_from = 1
        with pytest.raises(ModelLoadFailed, match="no weights"):
            await repository.load("m")
        return old

    old = asyncio.run(scenario())
    assert repository.runners["m"] is old and old.ready and FakeRunner.made[1].stopped


def test_an_unload_takes_the_model_out_at_once_and_lists_it_unloaded(repository):
    async def scenario():
        await repository.start()
        runner = repository.runners["m"]
        await repository.unload("m")
        return runner, await repository.index()

    runner, index = asyncio.run(scenario())
    assert runner.stopped and "m" not in repository.runners
    assert [(entry["name"], entry["state"], entry["reason"]) for entry in index if entry["name"] == "m"] == [
        ("m", "UNAVAILABLE", "unloaded")]


def test_nothing_changes_while_the_server_drains_or_with_several_server_processes(repository):
    async def scenario():
        await repository.start()
        repository.in_flight.stopping = True
        with pytest.raises(ServerShuttingDown):
            await repository.load("m")
        several = ModelRepository([PluginSpec("m", "fake:M")], FakeRunner, InFlight(), 5, changeable=False)
        with pytest.raises(InvalidInput, match="several server processes"):
            await several.unload("m")

    asyncio.run(scenario())
    assert not repository.all_ready()


def test_a_plugin_whose_settings_ask_for_another_runner_is_served_by_that_one(repository):
    FakeRunner.wanted = "ray"

    async def scenario():
        await repository.start()
        started = repository.runners["m"]
        await repository.load("m")  # an upgrade goes the same way
        return started, repository.runners["m"]

    started, upgraded = asyncio.run(scenario())
    assert [runner.runner for runner in FakeRunner.made] == [None, "ray", None, "ray"]
    assert started is FakeRunner.made[1] and started.stopped and upgraded is FakeRunner.made[3] and upgraded.ready
