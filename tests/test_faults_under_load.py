"""Faults under load: plugins that die, raise, hang, return what cannot be sent or write garbage.

Six models share one server, each in its worker process, under 16 concurrent
connections. Every request gets an answer with the status its model's fault
calls for, the well-behaved model never sees an error, and the killed model
is back once its worker has restarted.
"""

import asyncio
import json
import os
import signal
import time
from collections import Counter

import requests

from loadgen import Call, run
from support import running_server

MODELS = {
    "Doubler": "fixture_plugins.behaving:Doubler",
    "Fragile": "fixture_plugins.workers:Fragile",
    "Flaky": "fixture_plugins.workers:Flaky",
    "Hangs": "fixture_plugins.workers:Hangs",
    "Complex": "fixture_plugins.behaving:Complex",
    "Noisy": "fixture_plugins.workers:Noisy",
}
CALLS = 2_400
HANGING = {603, 1803}  # calls that go to Hangs (index % 6 == 3) and hang it
KILL_AFTER = 800  # answers, then Fragile's worker is SIGKILLed


def calls():
    for index in range(CALLS):
        model = list(MODELS)[index % len(MODELS)]
        instance = {"Fragile": 0, "Hangs": "hang" if index in HANGING else "ok",
                    "Flaky": index // len(MODELS)}.get(model, index)
        yield Call("POST", f"/v1/models/{model}:predict", json.dumps({"instances": [instance]}).encode(), kind=model)


def expected_statuses(call: Call) -> set[int]:
    instance = json.loads(call.body)["instances"][0]
    return {
        "Doubler": {200},
        "Noisy": {200},
        "Complex": {500},
        "Flaky": {500} if isinstance(instance, int) and instance % 3 == 0 else {200},
        # While a killed or stuck worker is replaced, its model answers 503; a request that went to
        # the worker in one trip with a hanging one shares its 504.
        "Fragile": {200, 503},
        "Hangs": {200, 503, 504},
    }[call.kind]


def test_every_request_gets_its_status_and_the_healthy_model_never_fails():
    plugins = [arg for name, target in MODELS.items() for arg in ("--plugin", f"{name}={target}")]
    with running_server("--replicas", "1", "--timeout", "3", *plugins) as server:
        fragile_pid = requests.post(server.url + "/v1/models/Fragile:predict", json={"instances": [0]}).json()
        fragile_pid = fragile_pid["predictions"][0]
        killed_at = []
        answered = 0

        def kill_fragile_midway(answer):
            nonlocal answered
            answered += 1
            if answered == KILL_AFTER:
                os.kill(fragile_pid, signal.SIGKILL)
                killed_at.append(time.monotonic())

        answers = asyncio.run(run(int(server.url.rsplit(":", 1)[1]), calls(), 16, on_answer=kill_fragile_midway))

        unexpected = [(a.call.kind, a.call.body, a.status, a.body[:200]) for a in answers
                      if a.status not in expected_statuses(a.call)]
        assert len(answers) == CALLS
        assert not unexpected, unexpected[:5]
        doubled = [json.loads(a.body) == {"predictions": [2 * json.loads(a.call.body)["instances"][0]]}
                   for a in answers if a.call.kind == "Doubler"]
        assert all(doubled)
        assert any(a.status == 504 for a in answers)  # a later hang may find the model restarting: 503

        fragile = [a for a in answers if a.call.kind == "Fragile" and a.received >= killed_at[0]]
        first_503 = next(a for a in fragile if a.status == 503)
        back = next((a for a in fragile if a.status == 200 and a.sent > first_503.received), None)
        server.wait_until_ready(30, "/v2/models/Fragile/ready")
        again = requests.post(server.url + "/v1/models/Fragile:predict", json={"instances": [0]})
        assert again.status_code == 200 and again.json()["predictions"][0] != fragile_pid
        print(f"\nfaults: {len(answers)} requests, by model and status "
              f"{dict(Counter((a.call.kind, a.status) for a in answers))}; Fragile's worker killed at t=0, "
              f"first 503 at t={1000 * (first_503.received - killed_at[0]):.0f} ms, "
              + (f"first 200 again at t={1000 * (back.received - killed_at[0]):.0f} ms" if back else
                 "no request came back during the load"))
