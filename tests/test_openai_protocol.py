"""The OpenAI-compatible codec on its own: what it refuses, what it decodes, and that its bodies are what the
``openai`` SDK reads, checked by the SDK's own types and by the SDK itself over an in-memory transport."""

import base64
import pickle

import httpx
import numpy as np
import openai
import orjson
import pytest
from openai._models import construct_type
from openai.lib._parsing._embeddings import parse_embedding_response
from openai.types import Completion, CreateEmbeddingResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from modelhost.errors import InvalidInput
from modelhost.protocol import openai as oa
from modelhost.protocol import openai_responses as responses
from modelhost.request import Generation

CHAT = "chat/completions"
COMPLETIONS = "completions"


def body(**fields) -> bytes:
    return orjson.dumps(fields)


def chat_body(**fields) -> bytes:
    return body(model="m", messages=[{"role": "user", "content": "hi"}], **fields)


def completion_body(**fields) -> bytes:
    return body(model="m", prompt="once", **fields)


def refused(call, *args) -> oa.InvalidField:
    with pytest.raises(oa.InvalidField) as caught:
        call(*args)
    assert caught.value.status == 400
    return caught.value


# ---------------------------------------------------------------- decoding completions and chats


def test_a_completion_decodes_with_openai_defaults():
    model, generation = oa.decode_completion(completion_body(), COMPLETIONS)
    assert model == "m"
    assert generation == Generation(route=COMPLETIONS, prompt="once")


def test_a_chat_decodes_every_field_the_host_acts_on():
    sent = chat_body(max_tokens=7, temperature=0, top_p=0.5, stop="\n", n=3, seed=-4, user="u", stream=True,
                     stream_options={"include_usage": True})
    model, generation = oa.decode_completion(bytearray(sent), CHAT)
    assert model == "m"
    assert generation == Generation(
        route=CHAT, messages=[{"role": "user", "content": "hi"}], max_tokens=7, temperature=0.0, top_p=0.5,
        stop=["\n"], n=3, seed=-4, user="u", stream=True, include_usage=True)


def test_every_role_and_text_parts_joined():
    messages = [{"role": role, "content": role} for role in oa.ROLES]
    messages.append({"role": "user", "name": "x", "content": [{"type": "text", "text": "a"},
                                                              {"type": "text", "text": "b"}]})
    _, generation = oa.decode_completion(body(model="m", messages=messages), CHAT)
    assert generation.messages[:5] == [{"role": role, "content": role} for role in oa.ROLES]
    assert generation.messages[5] == {"role": "user", "content": "a\nb"}


def test_max_completion_tokens_wins_over_max_tokens_in_chat():
    _, generation = oa.decode_completion(chat_body(max_tokens=9, max_completion_tokens=3), CHAT)
    assert generation.max_tokens == 3
    _, generation = oa.decode_completion(chat_body(max_tokens=9), CHAT)
    assert generation.max_tokens == 9


def test_prompt_as_a_list_of_one_string_and_an_empty_prompt():
    assert oa.decode_completion(body(model="m", prompt=["only"]), COMPLETIONS)[1].prompt == "only"
    assert oa.decode_completion(body(model="m", prompt=""), COMPLETIONS)[1].prompt == ""


def test_nulls_unknown_and_ignored_fields_are_accepted():
    sent = completion_body(temperature=None, stop=None, stream_options=None, logprobs=2, echo=False,
                           logit_bias={"1": 3}, presence_penalty=-2, frequency_penalty=1.5, best_of=1,
                           suffix="", guided_json={"anything": 1}, tools=[], response_format={"type": "text"})
    assert oa.decode_completion(sent, COMPLETIONS)[1] == Generation(route=COMPLETIONS, prompt="once")
    sent = chat_body(logprobs=True, top_logprobs=2, tool_choice="none", parallel_tool_calls=False,
                     stop=[], n=128, top_p=1, temperature=2)
    assert oa.decode_completion(sent, CHAT)[1].n == 128


def test_a_boolean_is_no_integer():
    assert refused(oa.decode_completion, chat_body(max_tokens=True), CHAT).param == "max_tokens"


COMPLETION_REFUSALS = [
    (b"{", None),
    (b"[1]", None),
    (body(prompt="x"), "model"),
    (body(model="", prompt="x"), "model"),
    (body(model=3, prompt="x"), "model"),
    (body(model="m"), "prompt"),
    (body(model="m", prompt=["a", "b"]), "prompt"),
    (body(model="m", prompt=[1, 2, 3]), "prompt"),
    (body(model="m", prompt=[[1, 2], [3]]), "prompt"),
    (body(model="m", prompt=[]), "prompt"),
    (body(model="m", prompt=7), "prompt"),
    (completion_body(max_tokens=0), "max_tokens"),
    (completion_body(max_tokens=1.5), "max_tokens"),
    (completion_body(max_tokens="4"), "max_tokens"),
    (completion_body(temperature=2.01), "temperature"),
    (completion_body(temperature=-0.1), "temperature"),
    (completion_body(temperature="hot"), "temperature"),
    (completion_body(temperature=True), "temperature"),
    (completion_body(top_p=1.5), "top_p"),
    (completion_body(top_p=-1), "top_p"),
    (completion_body(stop=["a", "b", "c", "d", "e"]), "stop"),
    (completion_body(stop=""), "stop"),
    (completion_body(stop=["a", ""]), "stop"),
    (completion_body(stop=["a", 1]), "stop"),
    (completion_body(stop=5), "stop"),
    (completion_body(n=0), "n"),
    (completion_body(n=129), "n"),
    (completion_body(n=True), "n"),
    (completion_body(seed=1.5), "seed"),
    (completion_body(seed="1"), "seed"),
    (completion_body(user=5), "user"),
    (completion_body(stream="yes"), "stream"),
    (completion_body(stream=1), "stream"),
    (completion_body(stream_options={"include_usage": True}), "stream_options"),
    (completion_body(stream=False, stream_options={}), "stream_options"),
    (completion_body(stream=True, stream_options=[]), "stream_options"),
    (completion_body(stream=True, stream_options={"include_usage": 1}), "stream_options.include_usage"),
    (completion_body(presence_penalty=2.5), "presence_penalty"),
    (completion_body(frequency_penalty=-3), "frequency_penalty"),
    (completion_body(frequency_penalty="0"), "frequency_penalty"),
    (completion_body(logprobs=True), "logprobs"),
    (completion_body(logit_bias=[1]), "logit_bias"),
    (completion_body(response_format="json"), "response_format"),
    (completion_body(tools={}), "tools"),
    (completion_body(echo="no"), "echo"),
]


@pytest.mark.parametrize("sent, param", COMPLETION_REFUSALS)
def test_completions_refuse_with_the_param(sent, param):
    assert refused(oa.decode_completion, sent, COMPLETIONS).param == param


CHAT_REFUSALS = [
    (body(model="m"), "messages"),
    (body(model="m", messages=[]), "messages"),
    (body(model="m", messages={"role": "user"}), "messages"),
    (body(model="m", messages=["hi"]), "messages[0]"),
    (body(model="m", messages=[{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]),
     "messages[1].role"),
    (body(model="m", messages=[{"content": "b"}]), "messages[0].role"),
    (body(model="m", messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": None}]),
     "messages[1].content"),
    (body(model="m", messages=[{"role": "user"}]), "messages[0].content"),
    (body(model="m", messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (body(model="m", messages=[{"role": "user", "content": []}]), "messages[0].content"),
    (body(model="m", messages=[{"role": "user", "content": [
        {"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": "x"}}]}]),
     "messages[0].content[1]"),
    (body(model="m", messages=[{"role": "user", "content": ["a"]}]), "messages[0].content[0]"),
    (body(model="m", messages=[{"role": "user", "content": [{"type": "text", "text": 3}]}]),
     "messages[0].content[0].text"),
    (chat_body(max_completion_tokens=0), "max_completion_tokens"),
    (chat_body(max_completion_tokens=False), "max_completion_tokens"),
    (chat_body(max_tokens=-1), "max_tokens"),
    (chat_body(logprobs=3), "logprobs"),
    (chat_body(top_logprobs="2"), "top_logprobs"),
    (chat_body(tool_choice=1), "tool_choice"),
    (chat_body(stream_options={"include_usage": True}), "stream_options"),
]


@pytest.mark.parametrize("sent, param", CHAT_REFUSALS)
def test_chats_refuse_with_the_param(sent, param):
    assert refused(oa.decode_completion, sent, CHAT).param == param


def test_refusals_say_what_was_sent_and_carry_a_code():
    error = refused(oa.decode_completion, completion_body(temperature=3), COMPLETIONS)
    assert "temperature" in error.message and "3" in error.message and error.code == "invalid_value"
    error = refused(oa.decode_completion, body(prompt="x"), COMPLETIONS)
    assert error.code == "missing_required_parameter"
    error = refused(oa.decode_completion, body(model="m", prompt=["a", "b"]), COMPLETIONS)
    assert "one per request" in error.message
    error = refused(oa.decode_completion, body(model="m", prompt=[1, 2]), COMPLETIONS)
    assert "token ids" in error.message
    error = refused(oa.decode_completion, body(model="m", prompt="x" * 10_000, n="x" * 10_000), COMPLETIONS)
    assert len(error.message) < 400  # a client's long value is quoted short


def test_an_unknown_route_is_a_programming_error():
    with pytest.raises(ValueError):
        oa.decode_completion(completion_body(), "embeddings")


def test_invalid_field_pickles_with_its_param_and_code():
    error = pickle.loads(pickle.dumps(oa.InvalidField("bad", "messages[1].content", "invalid_type")))
    assert isinstance(error, InvalidInput)
    assert (error.message, error.param, error.code, error.status) == ("bad", "messages[1].content",
                                                                      "invalid_type", 400)


# ---------------------------------------------------------------- decoding embeddings


def test_embeddings_decode():
    model, request = oa.decode_embeddings(body(model="e", input="one"))
    assert (model, request) == ("e", oa.EmbeddingsRequest(texts=["one"]))
    _, request = oa.decode_embeddings(body(model="e", input=["a", "b"], encoding_format="base64", dimensions=8,
                                           user="u", unknown=1))
    assert request == oa.EmbeddingsRequest(["a", "b"], "base64", 8, "u")
    assert oa.decode_embeddings(body(model="e", input=["x"] * 2048, encoding_format=None))[1].encoding_format \
        == "float"


@pytest.mark.parametrize("sent, param", [
    (body(input="x"), "model"),
    (body(model="e"), "input"),
    (body(model="e", input=""), "input"),
    (body(model="e", input=[]), "input"),
    (body(model="e", input=["a", ""]), "input[1]"),
    (body(model="e", input=["a", None]), "input[1]"),
    (body(model="e", input=[1, 2, 3]), "input"),
    (body(model="e", input=[[1, 2], [3]]), "input"),
    (body(model="e", input=["x"] * 2049), "input"),
    (body(model="e", input={"text": "x"}), "input"),
    (body(model="e", input="x", encoding_format="binary"), "encoding_format"),
    (body(model="e", input="x", dimensions=0), "dimensions"),
    (body(model="e", input="x", dimensions=True), "dimensions"),
    (body(model="e", input="x", user=[]), "user"),
])
def test_embeddings_refuse_with_the_param(sent, param):
    assert refused(oa.decode_embeddings, sent).param == param


# ---------------------------------------------------------------- encoding, checked by the SDK's own types


def test_a_completion_response_is_the_sdks_completion():
    usage = responses.Usage(prompt_tokens=3, completion_tokens=5)
    sent = responses.completion_response(COMPLETIONS, "cmpl-1", 17, "m", [("a", "stop"), ("b", "length")], usage)
    parsed = Completion.model_validate(orjson.loads(sent))
    assert parsed.object == "text_completion" and parsed.id == "cmpl-1" and parsed.created == 17
    assert [(c.index, c.text, c.finish_reason) for c in parsed.choices] == [(0, "a", "stop"), (1, "b", "length")]
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.total_tokens) == (3, 5, 8)


def test_a_chat_response_is_the_sdks_chat_completion():
    sent = responses.completion_response(CHAT, "chatcmpl-1", 17, "m", [("héllo", "stop")], responses.Usage(1, 2))
    parsed = ChatCompletion.model_validate(orjson.loads(sent))
    assert parsed.object == "chat.completion"
    assert parsed.choices[0].message.role == "assistant" and parsed.choices[0].message.content == "héllo"
    assert parsed.choices[0].finish_reason == "stop" and parsed.usage.total_tokens == 3


def events(stream: bytes) -> list[dict]:
    assert stream.endswith(b"\n\n")
    parts = stream.split(b"\n\n")[:-1]
    assert all(part.startswith(b"data: ") for part in parts)
    return [orjson.loads(part[len(b"data: "):]) for part in parts]


def test_chat_chunks_are_the_sdks_chunks():
    stream = b"".join([
        responses.chunk(CHAT, "chatcmpl-1", 5, "m", 0, "", first=True),
        responses.chunk(CHAT, "chatcmpl-1", 5, "m", 0, "Hel"),
        responses.chunk(CHAT, "chatcmpl-1", 5, "m", 0, "lo"),
        responses.chunk(CHAT, "chatcmpl-1", 5, "m", 0, "", "length"),
        responses.usage_chunk(CHAT, "chatcmpl-1", 5, "m", responses.Usage(2, 3)),
    ])
    chunks = [ChatCompletionChunk.model_validate(event) for event in events(stream)]
    assert all(c.object == "chat.completion.chunk" and c.id == "chatcmpl-1" for c in chunks)
    deltas = [c.choices[0].delta for c in chunks[:4]]
    assert (deltas[0].role, deltas[0].content) == ("assistant", "")
    assert [d.content for d in deltas[1:3]] == ["Hel", "lo"] and deltas[1].role is None
    assert events(stream)[3]["choices"][0]["delta"] == {}
    assert chunks[3].choices[0].finish_reason == "length"
    assert chunks[4].choices == [] and chunks[4].usage.total_tokens == 5


def test_a_first_chat_chunk_may_carry_text():
    event = events(responses.chunk(CHAT, "c", 5, "m", 2, "Hi", first=True))[0]
    assert event["choices"][0]["delta"] == {"role": "assistant", "content": "Hi"}
    assert event["choices"][0]["index"] == 2


def test_completion_chunks_are_the_sdks_completions():
    stream = responses.chunk(COMPLETIONS, "cmpl-1", 5, "m", 1, "Hel") + responses.chunk(COMPLETIONS, "cmpl-1", 5, "m", 1, "",
                                                                          "stop")
    stream += responses.usage_chunk(COMPLETIONS, "cmpl-1", 5, "m", responses.Usage(1, 1))
    # The SDK reads chunks unvalidated: its Completion type has no null finish_reason, which OpenAI streams.
    chunks = [construct_type(type_=Completion, value=event) for event in events(stream)]
    Completion.model_validate(events(stream)[1])
    assert [(c.choices[0].index, c.choices[0].text, c.choices[0].finish_reason) for c in chunks[:2]] \
        == [(1, "Hel", None), (1, "", "stop")]
    assert chunks[2].choices == [] and chunks[2].usage.total_tokens == 2
    assert responses.DONE == b"data: [DONE]\n\n"


def test_completion_ids():
    assert responses.completion_id(COMPLETIONS).startswith("cmpl-")
    assert responses.completion_id(CHAT).startswith("chatcmpl-")
    assert responses.completion_id(CHAT) != responses.completion_id(CHAT)
    int(responses.completion_id(CHAT)[len("chatcmpl-"):], 16)


@pytest.mark.parametrize("status, kind", [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (408, "timeout_error"), (409, "conflict_error"), (413, "invalid_request_error"),
    (422, "unprocessable_entity_error"), (429, "rate_limit_error"), (500, "internal_server_error"),
    (503, "service_unavailable_error"), (504, "timeout_error"), (499, "invalid_request_error"),
])
def test_error_bodies(status, kind):
    sent = orjson.loads(responses.error_body(status, "why", "temperature", "invalid_value"))
    assert sent == {"error": {"message": "why", "type": kind, "param": "temperature", "code": "invalid_value"}}
    assert orjson.loads(responses.error_body(status, "why"))["error"]["param"] is None
    assert events(responses.error_event(status, "why"))[0]["error"]["type"] == kind


def vectors_for(rows=3, width=4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((rows, width)).astype(np.float32)


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings_responses_are_the_sdks_and_give_the_vectors_back(encoding):
    vectors = vectors_for()
    sent = orjson.loads(responses.embeddings_response("e", vectors, encoding, 11))
    # As the SDK reads it, unvalidated (a base64 string is no list of floats), then decodes base64 as float32.
    parsed = parse_embedding_response(construct_type(type_=CreateEmbeddingResponse, value=sent),
                                      encoding_format=openai.omit)
    assert parsed.model == "e" and parsed.object == "list"
    assert (parsed.usage.prompt_tokens, parsed.usage.total_tokens) == (11, 11)
    assert [item.index for item in parsed.data] == [0, 1, 2]
    np.testing.assert_array_equal(np.array([item.embedding for item in parsed.data], dtype=np.float32), vectors)
    if encoding == "base64":
        raw = base64.b64decode(sent["data"][1]["embedding"])
        np.testing.assert_array_equal(np.frombuffer(raw, dtype="<f4"), vectors[1])
    else:
        CreateEmbeddingResponse.model_validate(sent)


def test_checked_vectors():
    vectors = responses.checked_vectors([[1, 2], [3, 4]], 2)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_array_equal(vectors, [[1, 2], [3, 4]])
    for result, rows, why in [
        ([[1, 2], [3]], 2, "different lengths"),
        ([[1, 2]], 2, "shape"),
        ([1.0, 2.0], 2, "shape"),
        (np.zeros((2, 0)), 2, "shape"),
        (np.zeros((2, 3, 1)), 2, "shape"),
        ([["a", "b"]], 1, "numbers"),
        ([[1.0, np.nan]], 1, "finite"),
        ([[1e300]], 1, "finite"),
    ]:
        with pytest.raises(ValueError, match=why):
            responses.checked_vectors(result, rows)


def test_shortened_vectors_are_renormalised():
    vectors = np.array([[3, 4, 12], [0, 0, 5]], dtype=np.float32)
    np.testing.assert_allclose(oa.shortened(vectors, 2), [[0.6, 0.8], [0, 0]])
    np.testing.assert_allclose(np.linalg.norm(oa.shortened(vectors_for(5, 16), 4), axis=1), 1, rtol=1e-6)
    assert refused(oa.shortened, vectors, 4).param == "dimensions"


def test_models_are_the_sdks():
    listed = orjson.loads(responses.models_list(["a", "b"], 9))
    assert listed["object"] == "list"
    assert [Model.model_validate(item).id for item in listed["data"]] == ["a", "b"]
    one = Model.model_validate(orjson.loads(responses.model_object("a", 9)))
    assert (one.id, one.object, one.created, one.owned_by) == ("a", "model", 9, "modelhost")


# ---------------------------------------------------------------- the SDK itself, over an in-memory transport


def sdk_client(answer) -> openai.OpenAI:
    """An OpenAI client whose requests ``answer(path, body)`` takes and answers as (status, bytes)."""
    def handle(request: httpx.Request) -> httpx.Response:
        status, content = answer(request.url.path.removeprefix("/v1/"), request.content)
        kind = "text/event-stream" if content.startswith(b"data: ") else "application/json"
        return httpx.Response(status, content=content, headers={"content-type": kind})
    return openai.OpenAI(api_key="k", base_url="http://modelhost/v1", max_retries=0,
                         http_client=httpx.Client(transport=httpx.MockTransport(handle)))


def echo_server(path: str, sent: bytes) -> tuple[int, bytes]:
    """A stand-in for the HTTP layer: decodes as the host would and answers with the last message or prompt."""
    try:
        if path == "embeddings":
            model, request = oa.decode_embeddings(sent)
            vectors = np.arange(len(request.texts) * 3, dtype=np.float32).reshape(-1, 3)
            return 200, responses.embeddings_response(model, vectors, request.encoding_format, len(request.texts))
        if path == "models":
            return 200, responses.models_list(["m"], 1)
        model, generation = oa.decode_completion(sent, path)
    except oa.InvalidField as error:
        return error.status, responses.error_body(error.status, error.message, error.param, error.code)
    text = generation.prompt if generation.prompt is not None else generation.messages[-1]["content"]
    ident, usage = responses.completion_id(path), responses.Usage(1, 2)
    if not generation.stream:
        return 200, responses.completion_response(path, ident, 1, model, [(text, "stop")] * generation.n, usage)
    stream = responses.chunk(path, ident, 1, model, 0, "", first=True) + responses.chunk(path, ident, 1, model, 0, text)
    stream += responses.chunk(path, ident, 1, model, 0, "", "stop")
    if generation.include_usage:
        stream += responses.usage_chunk(path, ident, 1, model, usage)
    if text == "fail":
        stream += responses.error_event(500, "the model failed")
    return 200, stream + responses.DONE


def test_the_sdk_completes_and_chats():
    client = sdk_client(echo_server)
    completion = client.completions.create(model="m", prompt="hello", max_tokens=3, n=2)
    assert [choice.text for choice in completion.choices] == ["hello", "hello"]
    chat = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], seed=1)
    assert chat.choices[0].message.content == "hi" and chat.usage.total_tokens == 3


def test_the_sdk_streams_with_usage():
    client = sdk_client(echo_server)
    chunks = list(client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "hi"
    assert chunks[-1].usage.completion_tokens == 2
    pieces = list(client.completions.create(model="m", prompt="yo", stream=True))
    assert "".join(c.choices[0].text for c in pieces) == "yo"


def test_the_sdk_raises_a_streamed_error():
    client = sdk_client(echo_server)
    with pytest.raises(openai.APIError, match="the model failed"):
        list(client.completions.create(model="m", prompt="fail", stream=True))


def test_the_sdk_raises_bad_request_naming_the_param():
    client = sdk_client(echo_server)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], temperature=5)
    assert caught.value.param == "temperature" and caught.value.code == "invalid_value"
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="m", prompt="x", stream_options={"include_usage": True})


def test_the_sdks_embeddings_default_to_base64_and_decode():
    client = sdk_client(echo_server)
    default = client.embeddings.create(model="e", input=["a", "b"])
    assert [item.embedding for item in default.data] == [[0, 1, 2], [3, 4, 5]]
    floats = client.embeddings.create(model="e", input="a", encoding_format="float")
    assert floats.data[0].embedding == [0, 1, 2]
    assert [model.id for model in client.models.list()] == ["m"]


# ---------------------------------------------------------------- stop sequences


def scan(stops, pieces) -> tuple[list[str], bool, str]:
    scanner = responses.StopScanner(stops)
    sent, stopped = [], False
    for piece in pieces:
        text, stopped = scanner.feed(piece)
        sent.append(text)
        if stopped:
            break
    return sent, stopped, scanner.flush()


def test_no_stops_pass_text_unchanged():
    scanner = responses.StopScanner([])
    piece = "any text at all"
    assert scanner.feed(piece)[0] is piece and scanner.feed("x") == ("x", False) and scanner.flush() == ""


def test_a_stop_within_one_piece():
    assert scan(["END"], ["abcENDdef"]) == (["abc"], True, "")


def test_a_stop_split_across_pieces_is_never_sent():
    assert scan(["END"], ["abcE", "N", "Dxyz"]) == (["abc", "", ""], True, "")


def test_held_text_is_released_once_it_cannot_be_a_stop():
    assert scan(["END"], ["abcE", "Nx", "yz"]) == (["abc", "ENx", "yz"], False, "")


def test_held_text_is_flushed_at_the_end():
    assert scan(["END"], ["abcEN"]) == (["abc"], False, "EN")


def test_overlapping_prefixes():
    # "aa" held as the start of "aabc"; "aaab" must still find the stop at its second "a".
    assert scan(["aabc"], ["aa", "ab", "c!"]) == (["", "a", ""], True, "")
    assert scan(["abab"], ["ab", "a", "b"]) == (["", "", ""], True, "")
    assert scan(["abab"], ["aba", "c"]) == (["", "abac"], False, "")
    assert scan(["abac"], ["abab", "ac"]) == (["ab", ""], True, "")  # "ab" held again, the stop's start


def test_the_earliest_of_several_stops_wins():
    assert scan(["world", "lo"], ["hello world"]) == (["hel"], True, "")
    assert scan(["xyz", "\n\n"], ["line\n", "\nmore"]) == (["line", ""], True, "")
    # A longer stop's start is held, and a shorter stop found within it.
    assert scan(["abcd", "cx"], ["ab", "c", "x"]) == (["", "", "ab"], True, "")


def test_after_a_stop_nothing_more_is_sent():
    scanner = responses.StopScanner(["."])
    assert scanner.feed("a.b") == ("a", True)
    assert scanner.feed("more") == ("", True)
    assert scanner.flush() == ""


def test_a_long_piece_with_a_long_stop_is_cheap():
    scanner = responses.StopScanner(["a" * 1000])
    sent, stopped = scanner.feed("b" + "a" * 999)
    assert (sent, stopped) == ("b", False)
    assert scanner.feed("a") == ("", True)
