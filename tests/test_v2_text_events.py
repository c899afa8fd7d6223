"""A generation's text pieces on the V2 streaming routes (``infer_stream``, ``generate_stream``): each event byte for
byte the one the protocol's encoders make of the piece's tensors, though most of it is written once per stream; and
the pieces' comparison with the model's declared outputs, logged once."""

import logging

import numpy as np
import pytest

from modelhost import hookimpl
from modelhost.errors import PluginError
from modelhost.generation import carried
from modelhost.hookcallers import run_sync
from modelhost.http.v2_events import V2Events
from modelhost.model import Model
from modelhost.protocol import generate, jsonio, v2
from modelhost.request import InferenceRequest

ROUTES = ["infer_stream", "generate_stream"]
TEXTS = ["word0 ", "", 'quotes "data":[""], a backslash \\ and a\nnewline', "ünïcödé ✓", b"bytes \xe2\x9c\x93"]


class Call:
    """What V2Events reads of an InferenceCall."""

    def __init__(self, request: InferenceRequest, name: str, version):
        self.request, self.name, self.version = request, name, version

    def model_version(self):
        return self.version


class DeclaresOutputs:
    def __init__(self, outputs: list):
        self.outputs = outputs

    @hookimpl
    def metadata(self):
        return {"outputs": self.outputs}

    @hookimpl
    def generate(self, request):
        yield "unused"


def v2_request(**fields) -> InferenceRequest:
    return InferenceRequest(protocol="v2", verb="generate", inputs={"text_input": np.array([b"p"], dtype=object)},
                            **fields)


def events_for(route: str, request: InferenceRequest, name: str = "words", version="1") -> V2Events:
    return V2Events(Call(request, name, version), streamed=True, generate_route=route == "generate_stream")


def encoded(route: str, outputs: dict, request: InferenceRequest, name: str = "words", version="1") -> bytes:
    """The event the protocol's encoders make of the outputs."""
    if route == "generate_stream":
        return generate.event(jsonio.dumps(generate.generate_response(v2.requested(outputs, request, name), name,
                                                                      version)))
    return generate.event(v2.encode_response(outputs, request, name, version)[0])


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name, version, request_id", [
    ("words", "1", "request-1"),
    ("words", None, None),
    # Names, versions and ids that hold the JSON the text is found by, and an empty version.
    ('a "data":[""] model', "", '"text_output":"" id'),
])
def test_a_text_piece_is_the_event_the_encoders_make(route, name, version, request_id):
    request = v2_request(id=request_id, parameters={"count": 5})
    events = events_for(route, request, name, version)
    model = Model(name, DeclaresOutputs([]))
    for text in TEXTS:
        part = carried(model, text, request, 0)
        assert events.part(part) == encoded(route, part.outputs, request, name, version), text
    assert events.text_frame is not None, "the pieces were not written from the stream's frame"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("asks", [
    {"parameters": {"binary_data_output": True}},
    {"requested_outputs": {"text_output": {"binary_data": True}}},
    {"requested_outputs": {"text_output": {}}},
])
def test_a_request_that_asks_for_more_than_text_is_answered_as_it_asks(route, asks):
    request = v2_request(id="request-2", **asks)
    events = events_for(route, request)
    part = carried(Model("words", DeclaresOutputs([])), "word0 ", request, 0)
    assert events.part(part) == encoded(route, part.outputs, request)


def test_text_that_is_not_utf8_is_the_plugins_error_on_infer_stream_and_replaced_on_generate_stream():
    request = v2_request(id="request-3")
    part = carried(Model("words", DeclaresOutputs([])), b"\xff broken", request, 0)
    with pytest.raises(PluginError, match="model 'words': output 'text_output' holds BYTES that are not UTF-8"):
        events_for("infer_stream", request).part(part)
    assert events_for("generate_stream", request).part(part) == b'data: {"model_name":"words","model_version":"1",' \
                                                                b'"text_output":"\xef\xbf\xbd broken"}\n\n'


@pytest.mark.parametrize("declared, logged", [
    ([{"name": "text_output", "datatype": "BYTES", "shape": [1]}], []),
    ([{"name": "text_output", "datatype": "BYTES", "shape": [2]}],
     ["model 'words' answers other outputs than its metadata tells clients: output 'text_output' has shape [1]; its "
      "metadata declares [2] (logged once)"]),
    ([{"name": "out", "datatype": "BYTES"}],
     ["model 'words' answers other outputs than its metadata tells clients: output 'text_output' is not declared "
      "(its metadata declares 'out') (logged once)"]),
])
def test_text_pieces_other_than_declared_are_logged_once(caplog, declared, logged):
    caplog.set_level(logging.WARNING, "modelhost")
    model = Model("words", DeclaresOutputs(declared))
    run_sync(model.load({}))
    request = v2_request()
    parts = [carried(model, f"word{index} ", request, 0) for index in range(3)]
    assert [record.getMessage() for record in caplog.records] == logged
    assert [part.outputs["text_output"].tolist() for part in parts] == [[f"word{i} ".encode()] for i in range(3)]
