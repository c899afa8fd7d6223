"""Plugins that step (continuous batching): sequences that count, a record of every begin, step and end.

Each sequence of ``Counting`` yields "PROMPT:0 ", "PROMPT:1 ", ... as many as asked (``max_tokens``, or
parameter ``count``), tagged with its prompt, so a piece that reached another stream would show. Each step
sleeps parameter ``delay`` seconds (the most any of its sequences asks; default 0.02), so that requests sent
together meet in steps; parameter ``width`` pads each piece with dots to that many characters. A prompt says
how a sequence misbehaves: "bad begin" (InvalidInput), "broken" (its own
entry an exception at its second step), "crash" (the whole step raises at its second step).
"""

import time

from modelhost import END, InvalidInput, hookimpl

from .generating import options, record


class Counting:
    @hookimpl
    def settings(self):
        return {"max_batch_size": 16}

    @hookimpl
    def begin(self, inputs, request):
        asked = options(request)
        if asked["prompt"] == "bad begin":
            raise InvalidInput("this prompt cannot begin")
        record(f"begin {asked['prompt']}")
        parameters = request.parameters if request.generation is None else {}
        return {"prompt": asked["prompt"], "count": asked["count"], "at": 0,
                "delay": float(parameters.get("delay", 0.02)), "width": int(parameters.get("width", 0))}

    @hookimpl
    def step(self, states):
        record("step " + ",".join(state["prompt"] for state in states))
        time.sleep(max(state["delay"] for state in states))
        pieces = []
        for state in states:
            if state["at"] == 1 and state["prompt"] == "crash":
                raise RuntimeError("the step broke")
            if state["at"] == 1 and state["prompt"] == "broken":
                pieces.append(RuntimeError("this sequence broke"))
            elif state["at"] >= state["count"]:
                pieces.append(END)
            else:
                pieces.append(f"{state['prompt']}:{state['at']} ".ljust(state["width"], "."))
            state["at"] += 1
        return pieces

    @hookimpl
    def end(self, state):
        record(f"end {state['prompt']}")


class Budgeted(Counting):
    """Counting with room for two sequences at once: each declares 10 units of a budget of 20."""

    @hookimpl
    def settings(self):
        return {"max_batch_size": 8, "sequence_memory": 10, "memory_budget": 20}


class Pairs(Counting):
    """Counting two sequences a step at most, however many are active."""

    @hookimpl
    def settings(self):
        return {"max_batch_size": 2}


class StepWithoutBegin:
    @hookimpl
    def step(self, states):
        return [END for _ in states]
