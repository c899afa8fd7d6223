"""Soak: 10,000 mixed requests at concurrency 32, every one answered right, memory flat."""

import asyncio
import json
import struct
from collections import Counter

from loadgen import Call, run, rss_kib
from support import children_of, running_server

WARM_UP = 1_000
SOAKED = 10_000
CONCURRENCY = 32


def mixed_calls(count: int, start: int = 0):
    """V1, V2 JSON, V2 binary, metadata and health, in turn; each inference call carries its own number."""
    for index in range(start, start + count):
        kind = ("v1", "v2-json", "v2-binary", "metadata", "health")[index % 5]
        if kind == "v1":
            yield Call("POST", "/v1/models/Doubler:predict", json.dumps({"instances": [index]}).encode(), kind=kind)
        elif kind == "v2-json":
            body = {"id": str(index), "inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [index, 0.5]}]}
            yield Call("POST", "/v2/models/Doubler/infer", json.dumps(body).encode(), kind=kind)
        elif kind == "v2-binary":
            header = json.dumps({"id": str(index), "inputs": [{"name": "x", "shape": [2], "datatype": "FP32",
                                                               "parameters": {"binary_data_size": 8}}]}).encode()
            yield Call("POST", "/v2/models/Doubler/infer", header + struct.pack("<2f", index, 0.5),
                       {"Inference-Header-Content-Length": len(header)}, kind=kind)
        elif kind == "metadata":
            yield Call("GET", "/v2/models/Doubler", kind=kind)
        else:
            yield Call("GET", "/v2/health/ready", kind=kind)


def answered_right(answer) -> bool:
    if answer.status != 200:
        return False
    payload = json.loads(answer.body)
    call = answer.call
    if call.kind == "v1":
        return payload == {"predictions": [2 * json.loads(call.body)["instances"][0]]}
    if call.kind.startswith("v2-"):
        index = int(payload["id"])
        return payload["outputs"][0]["data"] == [2 * index, 1.0]
    if call.kind == "metadata":
        return payload["name"] == "Doubler"
    return payload == {"ready": True}


def test_ten_thousand_mixed_requests_all_answered_right_with_flat_memory(mode):
    with running_server(*mode, "--plugin", "fixture_plugins.behaving:Doubler") as server:
        port = int(server.url.rsplit(":", 1)[1])
        processes = lambda: [server.process.pid, *children_of(server.process.pid)]  # noqa: E731
        asyncio.run(run(port, mixed_calls(WARM_UP), CONCURRENCY))
        warm = rss_kib(processes())
        answers = asyncio.run(run(port, mixed_calls(SOAKED, start=WARM_UP), CONCURRENCY))
        end = rss_kib(processes())
        statuses = Counter(answer.status for answer in answers)
        wrong = [answer for answer in answers if not answered_right(answer)]
        print(f"\nsoak ({' '.join(mode)}): {len(answers)} requests after {WARM_UP} to warm up, "
              f"answered {dict(statuses)}, server RSS {warm} KiB after warm-up, {end} KiB at the end "
              f"({100 * (end - warm) / warm:+.1f}%)")
        assert len(answers) == SOAKED
        assert not wrong, f"{len(wrong)} wrong answers, the first: {wrong[0]}"
        assert end < 1.10 * warm
