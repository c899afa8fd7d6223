"""Adaptive batching: one predict for several requests, and every request gets exactly its own rows."""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import pytest
import requests

from fixture_plugins.batching import Batches, MiscountsRows
from modelhost import InferenceRequest, InvalidInput
from modelhost.batched import infer_batch
from modelhost.runtime.batching import RequestQueue
from modelhost.cli import build_parser
from modelhost.errors import PluginError
from modelhost.hookcallers import run_sync
from modelhost.model import Model
from modelhost.settings import ServingSettings
from support import running_server


def v1(instances):
    return InferenceRequest(protocol="v1", instances=instances)


def batching(plugin, max_batch_size=8) -> Model:
    model = Model("batches", plugin)
    run_sync(model.load({"max_batch_size": max_batch_size}))
    return model


def columns(outcome: bytes) -> dict[str, list]:
    """A V1 answer's predictions (one object per row) as the columns Batches returned."""
    rows = orjson.loads(outcome)["predictions"]
    return {name: [row[name] for row in rows] for name in rows[0]}


def test_requests_of_different_sizes_share_one_predict_and_get_their_own_rows():
    sizes = [2, 1, 3, 1]
    requests_ = [v1([[float(f"{i}.{row}")] for row in range(size)]) for i, size in enumerate(sizes)]
    outcomes = [columns(outcome) for outcome in run_sync(infer_batch(batching(Batches()), requests_))]
    for request, outcome in zip(requests_, outcomes):
        np.testing.assert_array_equal(outcome["y"], np.asarray(request.instances) * 10)
        assert outcome["rows_in_batch"] == [sum(sizes)] * len(request.instances)


def test_a_request_whose_preprocess_fails_fails_alone():
    outcomes = run_sync(infer_batch(batching(Batches()), [v1([[1.0]]), v1(["bad"]), v1([[2.0], [3.0]])]))
    assert isinstance(outcomes[1], InvalidInput)
    assert columns(outcomes[0])["y"] == [[10.0]]
    assert columns(outcomes[2]) == {"y": [[20.0], [30.0]], "rows_in_batch": [3, 3]}


def test_without_batching_each_request_is_predicted_on_its_own():
    outcomes = [columns(o) for o in run_sync(infer_batch(batching(Batches(), max_batch_size=1), [v1([[1.0], [2.0]]), v1([[3.0]])]))]
    assert [o["rows_in_batch"] for o in outcomes] == [[2, 2], [1]]
    assert outcomes[1]["y"] == [[30.0]]


def test_inputs_that_do_not_concatenate_are_predicted_apart():
    outcomes = [columns(o) for o in run_sync(infer_batch(batching(Batches()), [v1([[1.0, 2.0]]), v1([[3.0]]), v1([[4.0, 5.0]])]))]
    assert [o["rows_in_batch"] for o in outcomes] == [[2], [1], [2]]
    assert outcomes[1]["y"] == [[30.0]]


def test_v2_tensors_batch_by_name():
    def v2(x, z):
        return InferenceRequest(protocol="v2", inputs={"x": np.asarray(x), "z": np.asarray(z)})

    first, second = run_sync(infer_batch(batching(Batches()), [v2([[1]], [7]), v2([[2], [3]], [8, 9])]))
    np.testing.assert_array_equal(second["x"], [[20], [30]])
    np.testing.assert_array_equal(second["z"], [80, 90])
    assert list(first["rows_in_batch"]) == [3]


def test_predict_returning_the_wrong_number_of_rows_fails_its_batch():
    outcomes = run_sync(infer_batch(batching(MiscountsRows()), [v1([[1.0]]), v1([[2.0]])]))
    assert all(isinstance(o, PluginError) and "predict returned 1 rows for 2 inputs" in o.message for o in outcomes)


def concurrently(server, bodies):
    def send(body):
        return requests.post(f"{server.url}/v1/models/BatchesByDefault:predict", data=json.dumps(body), timeout=60)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_concurrent_requests_are_batched_over_http_and_each_gets_its_rows(mode):
    bodies = [{"instances": [[i * 10 + row] for row in range(1 + i % 3)]} for i in range(12)]
    bodies[5] = {"instances": ["bad"]}
    with running_server(*mode, "--log-level", "DEBUG", "--plugin", "fixture_plugins.batching:BatchesByDefault") as server:
        answers = concurrently(server, bodies)
        batched = 0
        for body, answer in zip(bodies, answers):
            if body["instances"] == ["bad"]:
                assert answer.status_code == 400 and "'bad' cannot be batched" in answer.json()["error"]
                continue
            assert answer.status_code == 200, answer.text
            rows = answer.json()["predictions"]
            assert [row["y"] for row in rows] == [[value * 10] for [value] in body["instances"]]
            batched += rows[0]["rows_in_batch"] > len(rows)
        assert batched, "no request shared its predict call with another"
        server.wait_for_log("predicting a batch of")


def test_the_command_line_beats_the_plugins_batch_settings(mode):
    with running_server(*mode, "--max_batch_size", "1", "--plugin", "fixture_plugins.batching:BatchesByDefault") as server:
        answers = concurrently(server, [{"instances": [[1], [2]]}] * 6)
        assert all(row["rows_in_batch"] == 2 for answer in answers for row in answer.json()["predictions"])


@pytest.mark.parametrize("flag", ["--max_batch_size", "--max_batch_wait_ms", "--replicas"])
def test_per_model_flags_refuse_what_is_not_a_count(flag):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", flag, "model=lots"])
    args = build_parser().parse_args(["serve", flag, "3", flag, "model=2"])
    assert getattr(args, flag.lstrip("-")) == [(None, 3), ("model", 2)]


def test_a_lone_request_does_not_sit_out_the_batch_window(mode):
    # With a one-minute window, a request that waited for company would outlast the client's 30 s timeout.
    with running_server(*mode, "--max_batch_size", "8", "--max_batch_wait_ms", "60000",
                        "--plugin", "fixture_plugins.batching:Batches") as server:
        for _ in range(3):
            answer = requests.post(f"{server.url}/v1/models/Batches:predict", data=b'{"instances": [[1]]}', timeout=30)
            assert answer.json()["predictions"] == [{"y": [10.0], "rows_in_batch": 1}]


def test_requests_arriving_together_go_one_to_each_idle_consumer_and_share_out_under_load():
    async def scenario():
        queue = RequestQueue("batches")
        queue.configure(ServingSettings(), consumers=2)
        takers = [asyncio.ensure_future(queue.next_batch()) for _ in range(2)]
        await asyncio.sleep(0)  # both consumers now wait for work
        submitted = [asyncio.ensure_future(queue.submit(v1([index]))) for index in range(2)]
        together = [len(batch) for batch in await asyncio.wait_for(asyncio.gather(*takers), 10)]
        # Five waiting and no consumer idle: the free one takes its half, rounded up.
        submitted += [asyncio.ensure_future(queue.submit(v1([index]))) for index in range(5)]
        await asyncio.sleep(0)
        under_load = len(await queue.next_batch())
        for submission in submitted:
            submission.cancel()
        return together, under_load

    assert asyncio.run(scenario()) == ([1, 1], 3)


def test_a_batch_waits_for_requests_still_arriving_and_no_longer_than_its_window():
    async def scenario(in_flight: int, window_ms: float = 2000):
        queue = RequestQueue("batches", in_flight=lambda: in_flight)
        queue.configure(ServingSettings(max_batch_size=8, max_batch_wait_ms=window_ms), consumers=1)
        first = asyncio.ensure_future(queue.submit(v1([0])))
        taker = asyncio.ensure_future(queue.next_batch())
        await asyncio.sleep(0.05)  # the server has three requests; two are still sending their bodies
        later = [asyncio.ensure_future(queue.submit(v1([index]))) for index in (1, 2)]
        batch = await asyncio.wait_for(taker, 10)
        for submission in [first, *later]:
            submission.cancel()
        return len(batch)

    assert asyncio.run(scenario(in_flight=3)) == 3
    assert asyncio.run(scenario(in_flight=1)) == 1  # nobody else is coming: it goes at once
    assert asyncio.run(scenario(in_flight=5, window_ms=200)) == 3  # two never come: the window ends the wait


def test_a_batch_waits_for_as_many_as_the_batch_before_it_held_within_its_window():
    async def scenario(before: int, window_ms: float = 2000):
        queue = RequestQueue("batches")
        queue.configure(ServingSettings(max_batch_size=8, max_batch_wait_ms=window_ms), consumers=1)
        earlier = [queue.submit(v1([index])) for index in range(before)]
        for pending in await queue.next_batch():
            pending.outcome.set_result(None)
        await asyncio.sleep(0)  # all answered: nothing is out, nothing arriving
        # The clients answered together come back, the first one's body a moment before the next one's headers.
        first = queue.submit(v1([0]))
        taker = asyncio.ensure_future(queue.next_batch())
        await asyncio.sleep(0.05)
        later = [queue.submit(v1([index])) for index in (1, 2)]
        batch = await asyncio.wait_for(taker, 10)
        for answer in [*earlier, first, *later]:
            answer.cancel()
        return len(batch)

    assert asyncio.run(scenario(before=3)) == 3
    assert asyncio.run(scenario(before=1)) == 1  # the last batch was a lone request: this one goes at once
    assert asyncio.run(scenario(before=8, window_ms=200)) == 3  # five never come: the window ends the wait
