"""Continuous batching, end to end: a model with ``begin`` and ``step`` hooks (fixture_plugins/stepping.py) served in
the server process and in a worker, its sequences stepped together while real clients stream.

The fixture writes "begin PROMPT", "step P1,P2,..." and "end PROMPT" to the record file, from whichever process
runs it: what each step took is read from there. Each test uses prompts of its own.
"""

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from modelhost.errors import PluginLoadError
from modelhost.runtime.streams import WINDOW
from modelhost_generative import generate_text, load_network, load_tokenizer
from modelhost.plugins import make_plugin_manager
from modelhost.settings import ServingSettings
from fixture_plugins.stepping import StepWithoutBegin
from test_generation import (Served, eventually, events, is_event_stream, open_raw_stream, own_server, post_stream,
                             worker_of)

STEPPING = "fixture_plugins.stepping"
PLUGINS = ["--plugin", f"counting={STEPPING}:Counting", "--plugin", f"budgeted={STEPPING}:Budgeted",
           "--plugin", f"pairs={STEPPING}:Pairs"]


@pytest.fixture(scope="module")
def served(mode, tmp_path_factory):
    with own_server(tmp_path_factory.mktemp("stepping"), *mode, "--graceful_timeout", "5", *PLUGINS) as served:
        yield served


def steps(served: Served) -> list[list[str]]:
    """The prompts of each step so far, in order."""
    return [line[len("step "):].split(",") for line in served.record.lines() if line.startswith("step ")]


def stream_text(served: Served, model: str, prompt: str, count: int, delay: float = 0.02) -> str:
    """A V2 generate_stream's pieces joined."""
    response = post_stream(served, f"/v2/models/{model}/generate_stream",
                           {"text_input": prompt, "count": count, "delay": delay})
    assert response.status_code == 200, response.text
    return "".join(event["text_output"] for event in events(response))


def counted(prompt: str, count: int) -> str:
    return "".join(f"{prompt}:{index} " for index in range(count))


def stream_together(served: Served, model: str, asked: dict[str, int]) -> list[list[str]]:
    """A stream for each prompt at once, each checked to get its own count: the prompts of the steps that had any."""
    with ThreadPoolExecutor(len(asked)) as pool:
        texts = dict(zip(asked, pool.map(lambda prompt: stream_text(served, model, prompt, asked[prompt]), asked)))
    assert texts == {prompt: counted(prompt, count) for prompt, count in asked.items()}
    ours = [[prompt for prompt in step if prompt in asked] for step in steps(served)]
    return [step for step in ours if step]


def test_concurrent_streams_share_steps_join_and_leave_between_them_and_get_only_their_own_pieces(served):
    asked = {"share a": 3, "share b": 8, "share c": 12}
    ours = stream_together(served, "counting", asked)
    assert max(len(step) for step in ours) == 3, ours  # all three advanced in one call
    # "share a" left after its pieces and its end step; the others went on without it.
    last_a = max(index for index, step in enumerate(ours) if "share a" in step)
    assert any(sorted(step) == ["share b", "share c"] for step in ours[last_a + 1:]), ours
    assert ["share c"] in ours, ours
    assert eventually(lambda: all(f"end {prompt}" in served.record.lines() for prompt in asked), 5)


def test_a_new_stream_joins_the_steps_of_one_under_way(served):
    with ThreadPoolExecutor(1) as pool:
        long = pool.submit(stream_text, served, "counting", "join long", 30)
        assert eventually(lambda: any("join long" in step for step in steps(served)), 10)
        assert stream_text(served, "counting", "join short", 3) == counted("join short", 3)
        assert long.result(30) == counted("join long", 30)
    assert any(sorted(step) == ["join long", "join short"] for step in steps(served)), steps(served)


def test_a_cancelled_stream_leaves_at_once_and_its_end_runs(served):
    response = post_stream(served, "/v2/models/counting/generate_stream",
                           {"text_input": "cancel me", "count": 100000, "delay": 0.01})
    assert next(events(response)) == {"model_name": "counting", "text_output": "cancel me:0 "}
    response.close()
    assert eventually(lambda: "end cancel me" in served.record.lines(), 5), served.record.lines()[-5:]
    after = served.record.lines().index("end cancel me")
    time.sleep(0.3)
    assert not any(line.startswith("step ") and "cancel me" in line for line in served.record.lines()[after:])


def stepped_times(served: Served, prompt: str) -> int:
    return sum(prompt in step for step in steps(served))


def test_a_slow_reader_sits_out_steps_while_the_others_go_on(served):
    width, count, receive_buffer = 65536, 10000, 4096
    sock, head = open_raw_stream(served, "/v2/models/counting/generate_stream",
                                 {"text_input": "slow", "count": count, "width": width, "delay": 0.005},
                                 receive_buffer)
    try:
        assert head.startswith(b"HTTP/1.1 200"), head
        # What may be stepped while the client reads nothing: what the kernel's buffers hold, the window's parts,
        # a worker's window more on their way, and the two a sequence may leave unread; twice that.
        send_buffer_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        bound = 2 * ((send_buffer_max + 2 * receive_buffer) // width + 2 * WINDOW + 4)
        deadline = time.monotonic() + 10
        held = stepped_times(served, "slow")
        while time.monotonic() < deadline:  # until it sits out
            time.sleep(0.3)
            if stepped_times(served, "slow") == held:
                break
            held = stepped_times(served, "slow")
        assert held < bound, f"a client that reads nothing had its sequence stepped {held} times"
        assert stream_text(served, "counting", "not slow", 5, delay=0.005) == counted("not slow", 5)
        assert stepped_times(served, "slow") == held
    finally:
        sock.close()
    assert eventually(lambda: "end slow" in served.record.lines(), 10)


def test_the_memory_budget_admits_two_sequences_at_once_and_the_rest_wait_their_turn(served):
    ours = stream_together(served, "budgeted", {f"budget {index}": 4 for index in range(5)})
    assert max(len(step) for step in ours) == 2, ours
    metrics = requests.get(served.url + "/metrics", timeout=5).text
    assert 'modelhost_step_sequences_count{model_name="budgeted"}' in metrics
    assert 'modelhost_sequences_queued{model_name="budgeted"}' in metrics
    assert 'modelhost_steps_total{model_name="budgeted"}' in metrics


def test_steps_of_at_most_max_batch_size_take_the_active_sequences_in_turn(served):
    prompts = [f"turn {index}" for index in range(4)]
    ours = stream_together(served, "pairs", {prompt: 10 for prompt in prompts})
    assert max(len(step) for step in ours) == 2, ours
    # While all four were active, each two steps stepped all four: none waited for the others to end.
    first_end = min(max(index for index, step in enumerate(ours) if prompt in step) for prompt in prompts)
    last_start = max(min(index for index, step in enumerate(ours) if prompt in step) for prompt in prompts)
    together = ours[last_start + 1:first_end]
    assert len(together) >= 4, ours
    for first, second in zip(together[::2], together[1::2]):
        assert sorted(first + second) == sorted(prompts), ours


def test_a_sequence_that_fails_alone_ends_its_stream_with_an_error_and_the_others_go_on(served):
    with ThreadPoolExecutor(2) as pool:
        bystander = pool.submit(stream_text, served, "counting", "beside broken", 6)
        assert eventually(lambda: any("beside broken" in step for step in steps(served)), 10)
        response = post_stream(served, "/v2/models/counting/generate_stream", {"text_input": "broken", "count": 6})
        answers = list(events(response))
        assert answers[0] == {"model_name": "counting", "text_output": "broken:0 "}
        assert "this sequence broke" in answers[-1]["error"]
        assert bystander.result(30) == counted("beside broken", 6)
    assert eventually(lambda: "end broken" in served.record.lines(), 5)


def test_a_step_that_raises_fails_each_of_its_sequences_and_the_model_goes_on(served):
    with ThreadPoolExecutor(1) as pool:
        beside_crash = {"text_input": "crash bystander", "count": 20, "delay": 0.05}
        bystander = pool.submit(lambda: list(events(post_stream(served, "/v2/models/counting/generate_stream",
                                                                beside_crash))))
        assert eventually(lambda: any("crash bystander" in step for step in steps(served)), 10)
        crashed = list(events(post_stream(served, "/v2/models/counting/generate_stream",
                                          {"text_input": "crash", "count": 6, "delay": 0.05})))
        beside = bystander.result(30)
    assert crashed[0]["text_output"] == "crash:0 " and "the step broke" in crashed[-1]["error"]
    assert beside[0]["text_output"] == "crash bystander:0 " and "the step broke" in beside[-1]["error"]
    assert stream_text(served, "counting", "after crash", 2) == counted("after crash", 2)


def test_a_begin_that_refuses_its_input_is_a_400_before_any_event(served):
    response = post_stream(served, "/v2/models/counting/generate_stream", {"text_input": "bad begin"})
    assert response.status_code == 400
    assert "cannot begin" in response.json()["error"]


def test_the_openai_sdk_streams_from_a_model_that_steps_with_the_hosts_max_tokens(served):
    with served.openai() as client:
        chunks = list(client.completions.create(model="counting", prompt="sdk steps", max_tokens=3, stream=True))
        whole = client.completions.create(model="counting", prompt="sdk whole", max_tokens=4)
    assert "".join(chunk.choices[0].text for chunk in chunks) == counted("sdk steps", 3)
    assert whole.choices[0].text == counted("sdk whole", 4) and whole.usage.completion_tokens == 4


@pytest.fixture(scope="module")
def in_a_worker(tmp_path_factory):
    with own_server(tmp_path_factory.mktemp("stepping"), "--replicas", "1", "--graceful_timeout", "5",
                    *PLUGINS) as served:
        yield served


def test_a_worker_killed_mid_step_ends_its_streams_with_an_error_and_the_model_comes_back(in_a_worker):
    served = in_a_worker
    response = post_stream(served, "/v2/models/counting/generate_stream",
                           {"text_input": "killed", "count": 100000, "delay": 0.01})
    answers = events(response)
    assert next(answers)["text_output"] == "killed:0 "
    os.kill(worker_of(served, "counting"), signal.SIGKILL)
    rest = list(answers)
    assert "error" in rest[-1], rest[-1:]
    assert eventually(lambda: requests.get(served.url + "/v2/models/counting/ready", timeout=5).status_code == 200,
                      30)
    assert stream_text(served, "counting", "after kill", 2) == counted("after kill", 2)


def test_a_model_must_have_begin_with_step_and_a_budget_one_sequence_fits_in():
    with pytest.raises(PluginLoadError, match="step without begin"):
        make_plugin_manager("lone", StepWithoutBegin())
    with pytest.raises(PluginLoadError, match="does not fit"):
        ServingSettings.resolve({"sequence_memory": 10, "memory_budget": 5}, {})


def test_a_step_past_the_timeout_and_a_sigterm_as_for_generate(tmp_path):
    with own_server(tmp_path, "--replicas", "1", "--timeout", "1", "--graceful_timeout", "60", *PLUGINS) as served:
        late = requests.post(f"{served.url}/v2/models/counting/generate_stream", timeout=30,
                             json={"text_input": "asleep", "count": 3, "delay": 1.5})
        assert (late.status_code, late.json()) == (504, {"error": "model 'counting' did not yield its next piece "
                                                                  "within 1s"})
        assert eventually(lambda: "end asleep" in served.record.lines(), 10)  # once its step returned
        response = post_stream(served, "/v2/models/counting/generate_stream",
                               {"text_input": "draining", "count": 8, "delay": 0.15})
        got = events(response)
        first = next(got)
        served.server.process.send_signal(signal.SIGTERM)
        served.server.wait_for_log("shutting down: waiting up to 60s for 1 request(s) in flight")
        refused = requests.post(f"{served.url}/v2/models/counting/generate_stream", json={"text_input": "too late"},
                                timeout=10)
        assert (refused.status_code, refused.json()) == (503, {"error": "the server is shutting down"})
        assert not is_event_stream(refused)
        assert "".join(event["text_output"] for event in [first, *got]) == counted("draining", 8)
        assert served.server.process.wait(30) == 0


def test_the_sample_stepping_concurrent_streams_in_a_worker_writes_what_each_prompt_gets_alone(tmp_path):
    prompts = {"The model server": 40, "Once upon a time": 64, "": 12, "Zürich, 日本語": 30}
    codec = load_tokenizer()
    network = load_network(codec.vocab_size)
    alone = {prompt: "".join(generate_text(network, codec, prompt, count, temperature=0))
             for prompt, count in prompts.items()}
    with own_server(tmp_path, "--replicas", "1", "--model", "tiny-gpt") as served, served.openai() as client:
        def streamed(prompt: str) -> str:
            chunks = client.completions.create(model="tiny-gpt", prompt=prompt, max_tokens=prompts[prompt],
                                               temperature=0, stream=True)
            return "".join(chunk.choices[0].text for chunk in chunks)

        with ThreadPoolExecutor(len(prompts)) as pool:
            together = dict(zip(prompts, pool.map(streamed, prompts)))
        metrics = requests.get(served.url + "/metrics", timeout=5).text
    assert together == alone

    def sample(name: str) -> float:
        line = next(line for line in metrics.splitlines() if line.startswith(f'{name}{{model_name="tiny-gpt"}}'))
        return float(line.rsplit(" ", 1)[1])

    # More sequences stepped than steps taken: they shared steps.
    assert sample("modelhost_step_sequences_sum") > sample("modelhost_step_sequences_count") > 0
