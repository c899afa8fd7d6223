"""Models that generate, end to end: real servers (the server process, and worker processes), real sockets, real
clients: the ``openai`` SDK, Triton's generate extension and MLServer's ``infer_stream`` over raw HTTP,
``tritonclient.grpc``'s streams; and what happens to a generation when its client leaves, reads slowly, its
generator fails, its worker dies or the server is told to stop.

The fixture plugins (fixture_plugins/generating.py) write what their generators do to the file named by
``GENERATING_RECORD``: "start PROMPT", "yielded N", "closed PROMPT" (from the generator's ``finally``, in whichever
process runs it). Each test uses prompts of its own; "yielded N" names no prompt, so the tests that count it run
no other generator that writes it (Words, Wide) at the same time.
"""

import contextlib
import json
import os
import queue
import re
import signal
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import openai
import pytest
import requests
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from modelhost.runtime.streams import WINDOW
from support import ServerProcess, alive, children_of, plugin_env, running_server

GENERATING = "fixture_plugins.generating"
MODELS = {"words": f"{GENERATING}:Words", "wide": f"{GENERATING}:Wide", "async_words": f"{GENERATING}:AsyncWords",
          "stalls": f"{GENERATING}:Stalls", "failing": f"{GENERATING}:Failing",
          "repeat_int32": f"{GENERATING}:Repeat", "doomed": f"{GENERATING}:Words",  # doomed: its worker is killed
          "embedder": f"{GENERATING}:Embedder",
          "doubler": "fixture_plugins.behaving:Doubler"}  # predicts, never generates
PLUGINS = [argument for name, target in MODELS.items() for argument in ("--plugin", f"{name}={target}")]
FINAL = "triton_final_response"


class Record:
    """The generators' record file."""

    def __init__(self, path: Path):
        self.path = path

    def lines(self) -> list[str]:
        return self.path.read_text().splitlines()

    def since_start(self, prompt: str) -> list[str]:
        """The lines from the last "start PROMPT" on; none if it never started."""
        lines = self.lines()
        starts = [index for index, line in enumerate(lines) if line == f"start {prompt}"]
        return lines[starts[-1]:] if starts else []

    def started(self, prompt: str) -> bool:
        return f"start {prompt}" in self.lines()

    def closed(self, prompt: str) -> bool:
        return f"closed {prompt}" in self.lines()

    def yielded(self, prompt: str) -> int:
        """How many "yielded" lines follow PROMPT's start, up to its close (or to now)."""
        count = 0
        for line in self.since_start(prompt):
            if line == f"closed {prompt}":
                break
            count += line.startswith("yielded ")
        return count

    def steady_yielded(self, prompt: str, settle: float = 0.3, timeout: float = 10) -> int:
        """PROMPT's count of "yielded" lines once it has not grown for ``settle`` seconds (within ``timeout``)."""
        deadline = time.monotonic() + timeout
        last = self.yielded(prompt)
        while True:
            time.sleep(settle)
            now = self.yielded(prompt)
            if now == last:
                return now
            assert time.monotonic() < deadline, f"{prompt!r}'s generator kept yielding for {timeout}s: {now} pieces"
            last = now


@dataclass
class Served:
    server: ServerProcess
    record: Record

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])

    def openai(self, **options) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/openai/v1", api_key="unused",
                             **{"max_retries": 0, "timeout": 30, **options})


@contextlib.contextmanager
def own_server(tmp_path: Path, *args: str) -> Iterator[Served]:
    """A server of the test's own, its generators recording into ``tmp_path``."""
    record = Record(tmp_path / "record")
    record.path.touch()
    with running_server(*args, env={**plugin_env(), "GENERATING_RECORD": str(record.path)}, timeout=120) as server:
        yield Served(server, record)


@pytest.fixture(scope="module")
def served(mode, tmp_path_factory):
    """One server per mode for the module, serving every model at once. A short graceful timeout: a generation
    the host failed to close (the tests of a known bug) must not hold up the server's exit."""
    with own_server(tmp_path_factory.mktemp("generating"), *mode, "--graceful_timeout", "5", *PLUGINS) as served:
        yield served


@pytest.fixture
def client(served):
    with served.openai() as client:
        yield client


def eventually(condition, timeout: float) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ---------------------------------------------------------------- server-sent events over raw HTTP


def post_stream(served: Served, path: str, body: dict, timeout=(5, 30)) -> requests.Response:
    return requests.post(served.url + path, json=body, stream=True, timeout=timeout)


def events(response: requests.Response) -> Iterator:
    """The response's server-sent events, parsed by hand: ``data:`` lines, events separated by a blank line; each
    event's data as JSON (OpenAI's ``[DONE]`` as that string)."""
    buffer = b""
    for chunk in response.iter_content(chunk_size=None):
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            data = [line[len(b"data:"):].strip() for line in block.split(b"\n") if line.startswith(b"data:")]
            assert data, f"an event without data: {block!r}"
            payload = b"\n".join(data)
            yield "[DONE]" if payload == b"[DONE]" else json.loads(payload)
    assert not buffer.strip(), f"the stream ended part-way through an event: {buffer[:200]!r}"


def is_event_stream(response: requests.Response) -> bool:
    return response.headers.get("Content-Type", "").startswith("text/event-stream")


# ---------------------------------------------------------------- the openai SDK


def test_openai_completions_whole_with_usage_and_finish_reasons(client):
    cut = client.completions.create(model="words", prompt="say three words", max_tokens=3)
    assert [(choice.index, choice.text, choice.finish_reason) for choice in cut.choices] == \
        [(0, "word0 word1 word2 ", "length")]
    assert (cut.usage.prompt_tokens, cut.usage.completion_tokens, cut.usage.total_tokens) == (3, 3, 6)
    assert cut.model == "words" and cut.object == "text_completion"
    ended = client.completions.create(model="words", prompt="say words")  # Words' own 5, no max_tokens to cut it
    assert (ended.choices[0].text, ended.choices[0].finish_reason) == ("word0 word1 word2 word3 word4 ", "stop")
    assert ended.usage.completion_tokens == 5
    awaited = client.completions.create(model="async_words", prompt="say words", max_tokens=4)
    assert (awaited.choices[0].text, awaited.choices[0].finish_reason) == ("word0 word1 word2 word3 ", "length")


def test_openai_completions_streamed_with_the_usage_chunk_last(client):
    chunks = list(client.completions.create(model="words", prompt="say three words", max_tokens=3, stream=True,
                                            stream_options={"include_usage": True}))
    *pieces, usage = chunks
    assert usage.choices == [] and usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens, usage.usage.total_tokens) == (3, 3, 6)
    assert all(chunk.usage is None for chunk in pieces)
    assert "".join(choice.text for chunk in pieces for choice in chunk.choices) == "word0 word1 word2 "
    assert [choice.finish_reason for chunk in pieces for choice in chunk.choices] == [None] * 3 + ["length"]
    assert len({chunk.id for chunk in chunks}) == 1
    ended = list(client.completions.create(model="words", prompt="say words", stream=True))
    assert all(chunk.usage is None for chunk in ended), "usage came without include_usage"
    assert "".join(chunk.choices[0].text for chunk in ended) == "word0 word1 word2 word3 word4 "
    assert ended[-1].choices[0].finish_reason == "stop"


def test_openai_chat_completions_whole_and_streamed(client):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "four words please"}]
    whole = client.chat.completions.create(model="words", messages=messages, max_tokens=4)
    (choice,) = whole.choices
    assert (choice.message.role, choice.message.content, choice.finish_reason) == \
        ("assistant", "word0 word1 word2 word3 ", "length")
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (3, 4) and whole.object == "chat.completion"

    chunks = list(client.chat.completions.create(model="words", messages=messages, max_tokens=4, stream=True,
                                                 stream_options={"include_usage": True}))
    *pieces, usage = chunks
    assert usage.choices == [] and (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (3, 4)
    assert pieces[0].choices[0].delta.role == "assistant"
    assert "".join(chunk.choices[0].delta.content or "" for chunk in pieces) == "word0 word1 word2 word3 "
    assert [chunk.choices[0].finish_reason for chunk in pieces][-1] == "length"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)

    ended = list(client.chat.completions.create(model="words", messages=messages, stream=True))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in ended) == "word0 word1 word2 word3 word4 "
    assert ended[-1].choices[0].finish_reason == "stop"


def test_openai_stop_sequence_cuts_before_it_is_never_sent_and_closes_the_generator(served, client):
    whole = client.completions.create(model="words", prompt="stop whole", max_tokens=30, stop=["word2"])
    assert (whole.choices[0].text, whole.choices[0].finish_reason) == ("word0 word1 ", "stop")
    streamed = list(client.completions.create(model="words", prompt="stop streamed", max_tokens=30, stop=["word2"],
                                              stream=True))
    texts = [chunk.choices[0].text for chunk in streamed]
    assert "".join(texts) == "word0 word1 " and not any("2" in text for text in texts), texts
    assert streamed[-1].choices[0].finish_reason == "stop"
    chat = client.chat.completions.create(model="words", messages=[{"role": "user", "content": "stop chat"}],
                                          max_tokens=30, stop="word2")
    assert (chat.choices[0].message.content, chat.choices[0].finish_reason) == ("word0 word1 ", "stop")
    # The host stopped it: its finally ran, a few cheap pieces past word2 at most (stepping.MAX_AHEAD).
    for prompt in ("stop whole", "stop streamed", "stop chat"):
        assert eventually(lambda: served.record.closed(prompt), 10), f"{prompt!r}'s generator was never closed"
        assert served.record.yielded(prompt) < 30


def test_openai_n_2_gives_two_choices(client):
    whole = client.completions.create(model="words", prompt="two of them", max_tokens=3, n=2)
    assert [(choice.index, choice.text, choice.finish_reason) for choice in whole.choices] == \
        [(0, "word0 word1 word2 ", "length"), (1, "word0 word1 word2 ", "length")]
    assert whole.usage.completion_tokens == 6
    texts: dict[int, str] = {}
    for chunk in client.chat.completions.create(model="words", messages=[{"role": "user", "content": "two"}],
                                                max_tokens=2, n=2, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: "word0 word1 ", 1: "word0 word1 "}


def test_openai_embeddings_in_base64_by_default_and_in_floats(client):
    texts = ["a b c", "single"]
    expected = [[5.0, 2.0, 1.0, 0.0], [6.0, 0.0, 1.0, 0.0]]  # Words.embed: length, spaces, 1, 0
    raw = client.embeddings.with_raw_response.create(model="words", input=texts)  # the SDK asks for base64
    sent = raw.http_response.json()
    assert all(isinstance(item["embedding"], str) for item in sent["data"]), "not base64 on the wire"
    parsed = raw.parse()
    assert [item.embedding for item in parsed.data] == expected
    assert [item.index for item in parsed.data] == [0, 1] and parsed.model == "words"
    floats = client.embeddings.with_raw_response.create(model="words", input=texts, encoding_format="float")
    assert [item["embedding"] for item in floats.http_response.json()["data"]] == expected
    assert [item.embedding for item in floats.parse().data] == expected
    one = client.embeddings.create(model="words", input="x y", encoding_format="float")
    assert one.data[0].embedding == [3.0, 1.0, 1.0, 0.0]


def test_openai_embeddings_shortened_to_dimensions_only_where_the_model_allows_it(client):
    [short] = client.embeddings.create(model="embedder", input=["abc"], dimensions=2, encoding_format="float").data
    assert np.allclose(short.embedding, np.array([3, 1]) / np.sqrt(10)), short.embedding
    assert len(client.embeddings.create(model="embedder", input=["abc"], dimensions=4).data[0].embedding) == 4
    for model, dimensions in [("words", 2), ("embedder", 5)]:  # words' vectors cannot be shortened; none lengthened
        with pytest.raises(openai.BadRequestError) as refused:
            client.embeddings.create(model=model, input=["abc"], dimensions=dimensions)
        assert refused.value.body["param"] == "dimensions", refused.value.body


def test_openai_models_list_and_retrieve(client):
    listed = client.models.list()
    assert {model.id for model in listed.data} == set(MODELS)
    assert all(model.object == "model" for model in listed.data)
    words = client.models.retrieve("words")
    assert (words.id, words.object) == ("words", "model")


def test_openai_errors_are_the_sdks_own_exceptions(client):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.completions.create(model="nobody", prompt="hi")
    assert unknown.value.status_code == 404 and "nobody" in unknown.value.message
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nobody", messages=[{"role": "user", "content": "hi"}], stream=True)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nobody")
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model="words", prompt="hi", temperature=5)
    assert bad.value.param == "temperature" and bad.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as streamed_bad:
        client.chat.completions.create(model="words", messages=[{"role": "user", "content": "hi"}], temperature=5,
                                       stream=True)
    assert streamed_bad.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as no_embed:
        client.embeddings.create(model="async_words", input=["hi"])
    assert "embed" in no_embed.value.message


def test_openai_error_part_way_through_a_stream_raises_while_iterating(client):
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.completions.create(model="failing", prompt="break", stream=True):
            received.append(chunk.choices[0].text)
    assert received == ["one ", "two "], "the chunks before the error did not arrive first"
    assert "the generator broke" in caught.value.message
    assert [model.id for model in client.models.list().data], "the server stopped serving"
    assert client.completions.create(model="words", prompt="after", max_tokens=1).choices[0].text == "word0 "


# ---------------------------------------------------------------- Triton's generate extension, MLServer's infer_stream


def test_triton_generate_answers_once_with_the_text_joined(served):
    answer = requests.post(f"{served.url}/v2/models/words/generate", json={"text_input": "whole", "count": 4},
                           timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    assert answer.json() == {"model_name": "words", "text_output": "word0 word1 word2 word3 "}
    plain = requests.post(f"{served.url}/v2/models/async_words/generate",
                          json={"text_input": "whole", "parameters": {"count": 2}}, timeout=30)
    assert plain.json() == {"model_name": "async_words", "text_output": "word0 word1 "}


def test_triton_generate_stream_sends_an_event_per_piece(served):
    with post_stream(served, "/v2/models/words/generate_stream", {"text_input": "streamed", "count": 3}) as response:
        assert response.status_code == 200 and is_event_stream(response), response.headers
        assert list(events(response)) == [{"model_name": "words", "text_output": f"word{index} "}
                                          for index in range(3)]
    # Extra keys are parameters: delay too (between pieces), and "parameters" itself.
    with post_stream(served, "/v2/models/words/generate_stream",
                     {"text_input": "streamed", "delay": 0.01, "parameters": {"count": 2}}) as response:
        assert [event["text_output"] for event in events(response)] == ["word0 ", "word1 "]


def test_mlserver_infer_stream_answers_v2_inference_responses(served):
    body = {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["v2 prompt"]}],
            "parameters": {"count": 3}}
    with post_stream(served, "/v2/models/words/infer_stream", body) as response:
        assert response.status_code == 200 and is_event_stream(response)
        got = list(events(response))
    assert [event["model_name"] for event in got] == ["words"] * 3
    assert [event["outputs"] for event in got] == [
        [{"name": "text_output", "datatype": "BYTES", "shape": [1], "data": [f"word{index} "]}] for index in range(3)]
    # infer on a model that generates: every piece in one answer
    whole = requests.post(f"{served.url}/v2/models/words/infer", json=body, timeout=30).json()
    assert whole["outputs"][0]["data"] == ["word0 word1 word2 "]


def test_a_model_that_only_predicts_answers_a_stream_with_exactly_one_event(served):
    with post_stream(served, "/v2/models/doubler/generate_stream", {"text_input": "ab"}) as response:
        assert response.status_code == 200 and is_event_stream(response)
        assert list(events(response)) == [{"model_name": "doubler", "text_input": "abab"}]
    body = {"inputs": [{"name": "x", "datatype": "INT32", "shape": [2], "data": [1, 2]}]}
    with post_stream(served, "/v2/models/doubler/infer_stream", body) as response:
        (event,) = list(events(response))
    assert event["outputs"] == [{"name": "x", "datatype": "INT32", "shape": [2], "data": [2, 4]}]


# ---------------------------------------------------------------- tritonclient.grpc streams


@contextmanager
def grpc_stream(served: Served) -> Iterator[tuple[triton.InferenceServerClient, queue.Queue]]:
    """A tritonclient stream; each (result, error) its callback gets, in a queue."""
    answers: queue.Queue = queue.Queue()
    with triton.InferenceServerClient(served.server.grpc_address) as grpc_client:
        grpc_client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            yield grpc_client, answers
        finally:
            grpc_client.stop_stream(cancel_requests=True)


def repeat_inputs(values, delays_ms=None) -> list[triton.InferInput]:
    arrays = {"IN": np.array(values, np.int32), "DELAY": np.array(delays_ms or [0] * len(values), np.uint32),
              "WAIT": np.array([0], np.uint32)}
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(name, list(array.shape), "INT32" if name == "IN" else "UINT32")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def text_inputs(prompt: str) -> list[triton.InferInput]:
    tensor = triton.InferInput("text_input", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([prompt.encode()], dtype=object))
    return [tensor]


def take(answers: queue.Queue, timeout: float = 30):
    """The stream's next (result, error), within ``timeout``."""
    try:
        return answers.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no response on the stream within {timeout}s") from None


def take_result(answers: queue.Queue, timeout: float = 30):
    result, error = take(answers, timeout)
    assert error is None, error
    return result


def summary(result) -> tuple:
    """(request id, OUT, IDX, triton_final_response) of a response; OUT and IDX None in an empty one."""
    response = result.get_response()
    out, index = result.as_numpy("OUT"), result.as_numpy("IDX")
    return (response.id, None if out is None else out.tolist(), None if index is None else index.tolist(),
            response.parameters[FINAL].bool_param)


def test_grpc_stream_answers_repeat_int32_with_one_response_per_value_in_order(served):
    with grpc_stream(served) as (grpc_client, answers):
        grpc_client.async_stream_infer("repeat_int32", repeat_inputs([4, 5, 6, 7], [5, 5, 5, 5]), request_id="plain")
        got = [summary(take_result(answers)) for _ in range(4)]
        assert got == [("plain", [value], [index], False) for index, value in enumerate([4, 5, 6, 7])]
        grpc_client.async_stream_infer("repeat_int32", repeat_inputs([9, 8]), request_id="final",
                                       enable_empty_final_response=True)
        got = [summary(take_result(answers)) for _ in range(3)]
        # Nothing more came for "plain" (its responses end at its last value), and "final" ends with an empty one.
        assert got == [("final", [9], [0], False), ("final", [8], [1], False), ("final", None, None, True)]
        assert answers.empty()


def test_grpc_requests_on_one_stream_run_side_by_side(served):
    with grpc_stream(served) as (grpc_client, answers):
        # "slow" waits 2 s before its second value; "quick", sent after slow's first response, answers meanwhile.
        grpc_client.async_stream_infer("repeat_int32", repeat_inputs([1, 2, 3], [0, 2000, 0]), request_id="slow",
                                       enable_empty_final_response=True)
        assert summary(take_result(answers)) == ("slow", [1], [0], False)
        grpc_client.async_stream_infer("repeat_int32", repeat_inputs([7, 8]), request_id="quick",
                                       enable_empty_final_response=True)
        got = []
        while sum(final for *_, final in got) < 2:
            got.append(summary(take_result(answers)))
        assert [item[0] for item in got] == ["quick"] * 3 + ["slow"] * 3, got
        assert got == [("quick", [7], [0], False), ("quick", [8], [1], False), ("quick", None, None, True),
                       ("slow", [2], [1], False), ("slow", [3], [2], False), ("slow", None, None, True)]


def test_grpc_stream_answers_errors_and_predictions_and_goes_on(served):
    with grpc_stream(served) as (grpc_client, answers):
        grpc_client.async_stream_infer("nobody", repeat_inputs([1]), request_id="unknown")
        result, error = take(answers)
        assert result is None and isinstance(error, InferenceServerException)
        assert "'nobody' is not served here" in error.message()

        grpc_client.async_stream_infer("doubler", repeat_inputs([21]), request_id="predicted")
        (result, error) = take(answers)
        assert error is None
        response = result.get_response()
        assert (response.id, response.parameters[FINAL].bool_param) == ("predicted", True)
        assert result.as_numpy("IN").tolist() == [42]

        grpc_client.async_stream_infer("failing", text_inputs("fails"), request_id="failing")
        texts = [take_result(answers).as_numpy("text_output").tolist() for _ in range(2)]
        assert texts == [[b"one "], [b"two "]]
        result, error = take(answers)
        assert result is None and "the generator broke" in error.message()

        grpc_client.async_stream_infer("repeat_int32", repeat_inputs([5]), request_id="after",
                                       enable_empty_final_response=True)
        assert [summary(take_result(answers)) for _ in range(2)] == \
            [("after", [5], [0], False), ("after", None, None, True)]


# ---------------------------------------------------------------- a client that leaves


def expect_closed_and_stopped(served: Served, prompt: str, asked: int, timeout: float = 10) -> None:
    """PROMPT's generator was closed (its finally ran) within ``timeout``, and yields no more."""
    assert eventually(lambda: served.record.closed(prompt), timeout), \
        f"{prompt!r}'s generator was not closed within {timeout}s of its client leaving: " \
        f"{served.record.since_start(prompt)[-3:]}"
    stopped_at = served.record.steady_yielded(prompt)
    assert stopped_at < asked, f"{prompt!r}'s generator ran to its end ({stopped_at} of {asked})"
    time.sleep(0.3)
    assert served.record.yielded(prompt) == stopped_at


def test_an_http_client_leaving_mid_stream_closes_the_generator(served):
    response = post_stream(served, "/v2/models/words/generate_stream",
                           {"text_input": "http leaves", "count": 1000, "delay": 0.02})
    first = next(events(response))
    assert first == {"model_name": "words", "text_output": "word0 "}
    response.close()
    expect_closed_and_stopped(served, "http leaves", 1000)


def test_an_openai_stream_closed_by_the_sdk_closes_the_generator(served, client):
    stream = client.completions.create(model="words", prompt="sdk leaves", max_tokens=100000, stream=True)
    assert next(iter(stream)).choices[0].text == "word0 "
    stream.close()
    expect_closed_and_stopped(served, "sdk leaves", 100000)


def test_a_grpc_stream_cancelled_closes_its_generator(served):
    with grpc_stream(served) as (grpc_client, answers):
        grpc_client.async_stream_infer("words", text_inputs("grpc leaves"), request_id="leaving",
                                       parameters={"count": 1000, "delay": "0.02"})
        assert take_result(answers).as_numpy("text_output").tolist() == [b"word0 "]
    # grpc_stream's exit: stop_stream(cancel_requests=True)
    expect_closed_and_stopped(served, "grpc leaves", 1000)


def test_a_client_leaving_while_the_generator_waits_for_its_next_piece_closes_it(served):
    """Known bug (see the assertion): the host notices an HTTP client that left only when it writes the next
    piece, so a generator between pieces (an LLM waiting for a batch, a tool call) runs on until then."""
    response = post_stream(served, "/v2/models/stalls/generate_stream", {"text_input": "leaves in a stall", "count": 3})
    assert next(events(response)) == {"model_name": "stalls", "text_output": "word0 "}
    response.close()  # Stalls now waits 20 s before its next piece
    assert eventually(lambda: served.record.closed("leaves in a stall"), 5), (
        "BUG: an HTTP client that left a stream while the generator waited between pieces was not noticed: the "
        "generator was not closed within 5 s (it runs on until its next piece, 20 s later, fails to be written). "
        "http/exchange.py's on_connection_close does nothing once the call has responded, and Tornado reads "
        "nothing while an answer is written, so streaming.send learns of the close only from a failed write")


def test_a_client_giving_up_on_a_whole_completion_closes_the_generator(served):
    """Known bug (see the assertion): a client that stops waiting for a completion it did not stream is not
    noticed at all; the generator runs to its end for nobody."""
    with served.openai(timeout=1) as impatient, pytest.raises(openai.APITimeoutError):
        impatient.completions.create(model="stalls", prompt="gives up whole", max_tokens=3)
    assert served.record.started("gives up whole")
    assert eventually(lambda: served.record.closed("gives up whole"), 5), (
        "BUG: a client that closed its connection while waiting for a whole (not streamed) completion was not "
        "noticed: the generator was not closed within 5 s of it leaving (it runs on to its end, 40 s later). "
        "streaming.collect reads the PieceStream to its end and nothing closes it when the connection closes "
        "(http/exchange.py's on_connection_close withdraws only a call that has not responded)")


# ---------------------------------------------------------------- a client that reads slowly


def open_raw_stream(served: Served, path: str, body: dict, receive_buffer: int) -> tuple[socket.socket, bytes]:
    """A stream over a raw socket with a small receive buffer; its response head, once its first event is in."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # before connect: the window it offers
    sock.settimeout(30)
    sock.connect(("127.0.0.1", served.port))
    payload = json.dumps(body).encode()
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                 % (path.encode(), len(payload)) + payload)
    received = b""
    while b"\r\n\r\n" not in received or b"\n\n" not in received.split(b"\r\n\r\n", 1)[1]:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before the first event: {received[:300]!r}"
        received += chunk
    return sock, received.split(b"\r\n\r\n", 1)[0]


def test_a_slow_reader_holds_back_its_generator_and_the_server_serves_others_meanwhile(served, client):
    # Wide's pieces are 64 KiB each. Words' pieces (an event of about 60 bytes) would not do: all 10000 of them
    # (about 600 KB) fit into the server's kernel send buffer (tcp_wmem's largest, 4 MiB here), so a slow
    # client would not hold back a single one.
    width, count = 65536, 10000
    receive_buffer = 4096
    sock, head = open_raw_stream(served, "/v2/models/wide/generate_stream",
                                 {"text_input": "slow reader", "count": count, "width": width}, receive_buffer)
    try:
        assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head.lower(), head
        # What may be yielded while the client reads nothing: what the kernel holds (the server's send buffer, at
        # most tcp_wmem's largest, and the client's receive buffer, which the kernel doubles), one write in
        # Tornado's buffer, the WINDOW parts waiting in the PieceStream, and, with a worker, up to WINDOW parts
        # more on their way over its channel (the worker hears of taken parts every WINDOW // 4). Twice that, to
        # allow for each kernel's accounting.
        send_buffer_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        bound = 2 * ((send_buffer_max + 2 * receive_buffer) // width + 2 * WINDOW + 2)
        assert bound < count / 2, f"this kernel's socket buffers ({send_buffer_max} bytes) hold most of the pieces"
        held = served.record.steady_yielded("slow reader")
        assert held < bound, f"the generator ran ahead of a client that reads nothing: {held} pieces of {count}"

        # Meanwhile the server serves others, on other models and on this one.
        doubled = requests.post(f"{served.url}/v2/models/doubler/infer", timeout=30, json={
            "inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [3]}]})
        assert doubled.json()["outputs"][0]["data"] == [6]
        assert client.completions.create(model="async_words", prompt="meanwhile", max_tokens=2).choices[0].text == \
            "word0 word1 "
        # (a generator that writes no "yielded" lines, which would count as the slow reader's)
        with post_stream(served, "/v2/models/async_words/generate_stream",
                         {"text_input": "meanwhile streamed", "count": 2}) as other:
            assert [event["text_output"] for event in events(other)] == ["word0 ", "word1 "]
        assert served.record.closed("meanwhile streamed")
        assert served.record.yielded("slow reader") == held, "the slow reader's generator went on while it read nothing"
    finally:
        sock.close()
    expect_closed_and_stopped(served, "slow reader", count)
    assert served.record.yielded("slow reader") < bound


# ---------------------------------------------------------------- errors


def test_a_generator_failing_part_way_ends_the_stream_with_an_error_event(served):
    for path, body in [("/v2/models/failing/generate_stream", {"text_input": "x"}),
                       ("/v2/models/failing/infer_stream",
                        {"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["x"]}]})]:
        with post_stream(served, path, body) as response:
            assert response.status_code == 200 and is_event_stream(response)
            got = list(events(response))
        assert len(got) == 3, got
        assert got[-1] == {"error": "model 'failing': generate hook raised RuntimeError: the generator broke"}
        assert "one " in json.dumps(got[0]) and "two " in json.dumps(got[1])
    whole = requests.post(f"{served.url}/v2/models/failing/generate", json={"text_input": "x"}, timeout=30)
    assert whole.status_code == 500 and "the generator broke" in whole.json()["error"]
    # the server goes on serving, the failing model included
    with post_stream(served, "/v2/models/words/generate_stream", {"text_input": "after failing", "count": 2}) as ok:
        assert len(list(events(ok))) == 2
    with post_stream(served, "/v2/models/failing/generate_stream", {"text_input": "x"}) as again:
        assert len(list(events(again))) == 3


def test_bad_requests_get_their_status_and_a_json_body_before_any_event(served):
    cases = [
        ("/v2/models/nobody/generate_stream", json.dumps({"text_input": "x"}), 404, "not served here"),
        ("/v2/models/nobody/infer_stream", json.dumps({"inputs": []}), 404, "not served here"),
        ("/v2/models/words/generate_stream", '{"text_input": ', 400, "malformed JSON"),
        ("/v2/models/words/infer_stream", '{"inputs": [', 400, "malformed JSON"),
        ("/v2/models/words/generate_stream", json.dumps({"text_input": "x", "bad": {"nested": 1}}), 400,
         "not a parameter"),
        ("/v2/models/repeat_int32/generate_stream", json.dumps({"IN": ["not a number"]}), 400, "INT32"),
    ]
    for path, body, status, message in cases:
        answer = requests.post(served.url + path, data=body, timeout=30)
        assert answer.status_code == status, (path, body, answer.status_code, answer.text)
        assert answer.headers["Content-Type"].startswith("application/json") and not is_event_stream(answer)
        assert message in answer.json()["error"], (path, answer.text)
    unknown = requests.post(f"{served.url}/openai/v1/completions", timeout=30,
                            json={"model": "nobody", "prompt": "x", "stream": True})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    malformed = requests.post(f"{served.url}/openai/v1/chat/completions", data=b"{", timeout=30)
    assert malformed.status_code == 400 and "error" in malformed.json()


# ---------------------------------------------------------------- a worker killed, the server stopped


def worker_of(served: Served, model: str) -> int:
    """The pid of the worker serving ``model`` (its command line names it)."""
    for pid in children_of(served.server.process.pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"--name" in argv and argv[argv.index(b"--name") + 1] == model.encode() and alive(pid):
            return pid
    raise AssertionError(f"no worker serves {model!r} among {children_of(served.server.process.pid)}")


@pytest.fixture(scope="module")
def in_workers(tmp_path_factory):
    """A server whose models run in worker processes: a worker's death has no twin in the server process."""
    with own_server(tmp_path_factory.mktemp("generating"), "--replicas", "1", "--graceful_timeout", "5",
                    *PLUGINS) as served:
        yield served


def test_a_worker_killed_mid_stream_ends_it_with_an_error_event_and_its_model_comes_back(in_workers):
    served = in_workers
    victim = worker_of(served, "doomed")
    # A read timeout: a stream that hangs fails the test rather than the suite.
    response = post_stream(served, "/v2/models/doomed/generate_stream",
                           {"text_input": "doomed", "count": 1000, "delay": 0.05}, timeout=(5, 20))
    got = events(response)
    assert next(got) == {"model_name": "doomed", "text_output": "word0 "}
    signal_sent = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    rest = list(got)  # to the stream's end
    assert rest, "the stream ended without a word"
    assert rest[-1] == {"error": "model 'doomed': its worker was killed by SIGKILL during this generation"}, rest[-3:]
    assert all("text_output" in event for event in rest[:-1])
    assert time.monotonic() - signal_sent < 20
    assert not served.record.closed("doomed")  # killed: its finally never ran

    def serves_again() -> bool:
        answer = requests.post(f"{served.url}/v2/models/doomed/generate", json={"text_input": "back", "count": 2},
                               timeout=30)
        assert answer.status_code in (200, 503), answer.text
        return answer.status_code == 200 and answer.json()["text_output"] == "word0 word1 "

    assert eventually(serves_again, 60), served.server.log[-2000:]
    assert worker_of(served, "doomed") != victim and not alive(victim)
    # the other models never noticed
    with post_stream(served, "/v2/models/words/generate_stream", {"text_input": "unharmed", "count": 2}) as other:
        assert len(list(events(other))) == 2


@pytest.mark.parametrize("replicas", ["0", "1"], ids=["in-process", "workers"])
def test_sigterm_lets_a_stream_in_flight_finish_and_refuses_new_ones(replicas, tmp_path):
    with own_server(tmp_path, "--replicas", replicas, "--graceful_timeout", "60",
                    "--plugin", f"words={MODELS['words']}") as served:
        server, record = served.server, served.record
        response = post_stream(served, "/v2/models/words/generate_stream",
                               {"text_input": "draining", "count": 8, "delay": 0.2})
        got = events(response)
        first = next(got)
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_log("shutting down: waiting up to 60s for 1 request(s) in flight")
        late = requests.post(f"{server.url}/v2/models/words/generate_stream", json={"text_input": "too late"},
                             timeout=10)
        assert (late.status_code, late.json()) == (503, {"error": "the server is shutting down"})
        assert not is_event_stream(late)
        with served.openai() as client, pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model="words", messages=[{"role": "user", "content": "too late"}],
                                           stream=True)
        assert refused.value.status_code == 503
        rest = list(got)
        assert [event["text_output"] for event in [first, *rest]] == [f"word{index} " for index in range(8)]
        assert server.process.wait(30) == 0
        assert record.closed("draining") and not record.started("too late")
        server.wait_for_log("drained: every request answered, 0 of them with 503")


# ---------------------------------------------------------------- limits and what the server counts


@pytest.mark.parametrize("replicas", ["0", "1"], ids=["in-process", "workers"])
def test_timeout_bounds_the_wait_for_each_piece(replicas, tmp_path):
    with own_server(tmp_path, "--replicas", replicas, "--timeout", "1", "--plugin", f"stalls={MODELS['stalls']}",
                    "--plugin", f"words={MODELS['words']}") as served:
        # An async generator waiting 5 s after its first piece: the stream ends with the error as its last event.
        with post_stream(served, "/v2/models/stalls/generate_stream",
                         {"text_input": "stalled", "count": 100, "stall": 5}) as response:
            assert list(events(response)) == [{"model_name": "stalls", "text_output": "word0 "},
                                              {"error": "model 'stalls' did not yield its next piece within 1s"}]
        # A synchronous one sleeping 3 s before its first piece: answered 504 before any event, as any request.
        late = requests.post(f"{served.url}/v2/models/words/generate_stream", timeout=30,
                             json={"text_input": "asleep", "count": 100, "delay": 3})
        assert (late.status_code, late.json()) == (504, {"error": "model 'words' did not yield its next piece "
                                                                  "within 1s"})
        # Each piece of a slow generation within the limit is fine, however long the whole takes.
        with post_stream(served, "/v2/models/words/generate_stream",
                         {"text_input": "steady", "count": 4, "delay": 0.5}) as response:
            assert [event["text_output"] for event in events(response)] == [f"word{i} " for i in range(4)]
        assert eventually(lambda: served.record.closed("stalled"), 10)
        # The late step returns in its own time; its generator is closed then, and nothing else was held up.
        assert eventually(lambda: served.record.closed("asleep"), 10)


def test_streams_are_counted_in_the_metrics_and_the_access_line(served):
    with post_stream(served, "/v2/models/async_words/generate_stream", {"text_input": "counted", "count": 3}) as sent:
        assert len(list(events(sent))) == 3
    served.server.wait_for_log(re.compile(r"200 POST /v2/models/async_words/generate_stream .* pieces=3 .*"
                                          r"first_piece=\d"))
    metrics = requests.get(f"{served.url}/metrics", timeout=10).text
    model = 'model_name="async_words"'
    assert re.search(rf"modelhost_stream_pieces_total\{{{model}\}} ([3-9]|\d\d+)\.0", metrics), metrics
    assert re.search(rf"modelhost_stream_first_piece_seconds_count\{{{model}\}} [1-9]", metrics)
    assert re.search(rf"modelhost_stream_between_pieces_seconds_count\{{{model}\}} (?:[2-9]|\d\d+)\.0", metrics)
    assert f"modelhost_streams_in_flight{{{model}}} 0.0" in metrics
