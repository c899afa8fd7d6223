"""The inference call and the in-flight tracker on their own, with a fake runner: what any front end relies on."""

import asyncio

import pytest

from modelhost import InferenceRequest, logs
from modelhost.errors import ClientGone, InvalidInput, ModelNotFound, ServerShuttingDown
from modelhost.inference import Inference
from modelhost.inflight import InFlight
from modelhost.metrics import Metrics
from modelhost.plugins import PluginSpec
from modelhost.repository import ModelRepository


class FakeRunner:
    """Answers when the test says: ``outcomes`` holds the future of each request submitted."""

    def __init__(self, spec: PluginSpec, in_flight, inline=False):
        self.spec, self.in_flight, self.inline = spec, in_flight, inline
        self.reason, self.ready, self.metadata = "", True, {"versions": ["2"]}
        self.elsewhere = None
        self.outcomes: list[asyncio.Future] = []

    async def start(self):
        pass

    def require_ready(self):
        pass

    def submit(self, request):
        outcome = asyncio.get_running_loop().create_future()
        if self.inline:
            outcome.set_result(f"answered {request.instances}")
        self.outcomes.append(outcome)
        return outcome

    async def stop(self):
        pass


class Responses:
    """A front end's side of calls: what each was told, and the status it finished with."""

    def __init__(self):
        self.told: list[tuple] = []

    def respond_to(self, call_box: list):
        def respond(result, error):
            self.told.append((result, error))
            call_box[0].finish(200 if error is None else getattr(error, "status", 500))
        return respond


def serving(inline=False):
    in_flight = InFlight()
    repository = ModelRepository([PluginSpec("m", "fake:M")], lambda spec, count, runner: FakeRunner(spec, count, inline),
                                 in_flight, drain_timeout=0.05, changeable=True)
    return Inference(repository, in_flight, Metrics()), repository.runners["m"]


def begin(inference: Inference, responses: Responses):
    box = [None]
    box[0] = inference.begin("v1", logs.Origin("POST", "/v1/models/m:predict", "test", "r-1"), responses.respond_to(box))
    return box[0]


def v1(instances) -> InferenceRequest:
    return InferenceRequest(protocol="v1", instances=instances)


def running_call(inline=False):
    """A call admitted for model 'm' and handed to its (fake) runner: (inference, runner, responses, call)."""
    inference, runner = serving(inline)
    responses = Responses()
    call = begin(inference, responses)
    call.admit("m")
    call.run(None, lambda: v1([1]))
    return inference, runner, responses, call


def test_a_call_is_in_flight_from_admission_to_its_answer_and_answered_with_the_served_version():
    async def scenario():
        inference, runner = serving()
        responses = Responses()
        call = begin(inference, responses)
        call.admit("m")
        assert inference.in_flight.count("m") == 1
        call.run(None, lambda: v1([1]))
        assert responses.told == [] and call.model_version() == "2"
        runner.outcomes[0].set_result("done")
        await asyncio.sleep(0)
        return inference, responses

    inference, responses = asyncio.run(scenario())
    assert responses.told == [("done", None)] and inference.in_flight.count("m") == 0


def test_an_inline_model_is_answered_in_the_same_turn():
    async def scenario():
        _, _, responses, _ = running_call(inline=True)
        return responses.told  # told before the loop has turned once

    assert asyncio.run(scenario()) == [("answered [1]", None)]


def test_an_unknown_model_is_404_before_its_body_is_decoded():
    async def scenario():
        inference, _ = serving()
        call = begin(inference, Responses())
        call.admit("nobody")
        decoded = []
        with pytest.raises(ModelNotFound):
            call.run(None, lambda: decoded.append(True))
        return decoded, inference.metrics

    decoded, _ = asyncio.run(scenario())
    assert decoded == []


def test_a_client_that_leaves_withdraws_its_request_which_is_answered_499_once():
    async def scenario():
        inference, runner, responses, call = running_call()
        call.withdraw()
        await asyncio.sleep(0)
        assert runner.outcomes[0].cancelled()
        return responses.told, inference

    told, inference = asyncio.run(scenario())
    assert len(told) == 1 and isinstance(told[0][1], ClientGone) and inference.in_flight.calls == {}


def test_a_drain_answers_what_is_left_with_503_and_the_late_outcome_is_dropped():
    async def scenario():
        inference, runner, responses, call = running_call()
        await inference.in_flight.drain(timeout=0.05)
        runner.outcomes[0].set_result("too late")
        await asyncio.sleep(0)
        with pytest.raises(ServerShuttingDown):
            begin(inference, Responses()).admit("m")  # nothing new once draining
        return responses.told

    told = asyncio.run(scenario())
    assert len(told) == 1 and isinstance(told[0][1], ServerShuttingDown)


def test_an_answer_the_front_end_cannot_encode_is_answered_with_the_encoding_error():
    async def scenario():
        inference, runner = serving(inline=True)
        told = []
        box = [None]

        def respond(result, error):
            told.append(error)
            if error is None:
                raise InvalidInput("model 'm' has no output 'y'")
            box[0].finish(error.status)

        box[0] = inference.begin("v2", logs.Origin("POST", "/v2/models/m/infer", "test", "r-2"), respond)
        box[0].admit("m")
        box[0].run(None, lambda: v1([1]))
        return told

    told = asyncio.run(scenario())
    assert told[0] is None and isinstance(told[1], InvalidInput)
