"""Hooks read the request's HTTP headers: a read-only mapping, names lower-cased, in both modes."""

import pickle

import pytest
import requests

from modelhost import Headers
from support import running_server


def test_headers_are_read_only_lower_cased_and_join_a_name_sent_twice():
    headers = Headers([("X-Hint", "a"), ("Accept", "json"), ("x-hint", "b")])
    assert dict(headers) == {"x-hint": "a, b", "accept": "json"}
    with pytest.raises(TypeError):
        headers["x-hint"] = "c"  # type: ignore[index]
    assert dict(pickle.loads(pickle.dumps(headers))) == dict(headers)


def test_a_hook_reads_the_requests_headers_over_v1_and_v2(mode):
    with running_server(*mode, "--plugin", "fixture_plugins.behaving:ReadsHeaders") as server:
        v1 = requests.post(server.url + "/v1/models/ReadsHeaders:predict", json={"instances": [1, 2]},
                           headers={"X-Hint": "fast"}, timeout=30)
        assert v1.json() == {"predictions": ["fast", "fast"]}
        v2 = requests.post(server.url + "/v2/models/ReadsHeaders/infer", headers={"X-HINT": "exact"}, timeout=30,
                           json={"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]})
        assert v2.json()["outputs"][0]["data"] == ["exact"]
        without = requests.post(server.url + "/v1/models/ReadsHeaders:predict", json={"instances": [1]}, timeout=30)
        assert without.json() == {"predictions": ["none"]}
