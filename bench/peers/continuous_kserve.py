"""continuous.py's peer: tiny-gpt (the generative sample's network) on KServe 0.21, an ``OpenAIGenerativeModel``.

    python bench/peers/continuous_kserve.py --http_port N --grpc_port M --enable_latency_logging False

Run with the ``kserve-generative`` environment (peers/environment.py: KServe 0.21 on this machine's NumPy and
tokenizers), with bench/peers, bench/peers/vllm_stub (streaming_kserve.py says why) and sample_generative_plugin
on PYTHONPATH, and ``MODELHOST_CACHE_DIR`` where the sample's weights are.

Written as a KServe user would serve a model of their own on KServe's OpenAI route: the network and tokenizer
loaded in the constructor (KServe's ``OpenAIModel`` has no ``load``), and ``create_completion`` returning, for a
streamed request, an async generator of server-sent events that runs the sample's plain generation loop
(``modelhost_generative.generation.pieces``) for that request alone, one sequence per request: no batching
across requests, which KServe leaves to the engine behind its own runtimes (vLLM's), not to its model server.
Two ways, as a KServe user might write it, one model each:
- ``tiny-gpt``: each ``next()`` of that synchronous generator (a token step, prefill first) through ``await
  asyncio.to_thread(...)``, so that the event loop goes on serving the other requests meanwhile, the streams
  taking turns a token at a time (on the default executor's threads);
- ``tiny-gpt-direct``: each ``next()`` called directly in the async generator, which never awaits: each stream
  holds the event loop from its first token to its last (Starlette's ``send`` does not yield while the socket
  takes the bytes), so the streams are served one after another, whole, and a request waits for those before
  it to its first piece (and so do health checks).

Each piece is
a ``CompletionStreamResponse`` of one choice, ``model_dump_json(exclude_unset=True)``, as streaming_kserve.py
writes them; then a last chunk with ``finish_reason`` ("length" when the answer fills ``max_tokens``, else
"stop") and ``data: [DONE]``. ``stream_options`` (usage) is not honoured: continuous.py does not ask for it.
KServe serves it on ``POST /openai/v1/completions``; logging and addresses as in streaming_kserve.py.
"""

import asyncio
import importlib.util
import sys
import time
import uuid

from kserve.protocol.rest.openai import OpenAIGenerativeModel
from kserve.protocol.rest.openai.types import (Completion, CompletionChoice, CompletionChunk, CompletionChunkChoice,
                                               UsageInfo)

from streaming_kserve import serve

MODELS = {"tiny-gpt": False, "tiny-gpt-direct": True}  # name: each step called directly, on the event loop


def sample_loop():
    """The sample's ``generation``, ``network`` and ``tokenizer`` modules, without its package's ``__init__``,
    which imports its modelhost plugin: modelhost is not installed in KServe's environment."""
    spec = importlib.util.find_spec("modelhost_generative")
    if spec is None:
        raise SystemExit("modelhost_generative not found: put sample_generative_plugin on PYTHONPATH")
    sys.modules["modelhost_generative"] = importlib.util.module_from_spec(spec)  # its __path__, not its code
    from modelhost_generative import generation, network, tokenizer
    return generation, network, tokenizer


generation, network, tokenizer = sample_loop()


class TinyGPT(OpenAIGenerativeModel):
    def __init__(self, name: str, direct: bool):
        super().__init__(name)
        self.direct = direct
        self.codec = tokenizer.load_tokenizer()
        self.network = network.load_network(self.codec.vocab_size)

    async def create_completion(self, request, raw_request=None, context=None):
        prompt = request.prompt[0] if isinstance(request.prompt, list) else request.prompt
        ids = generation.prompt_ids(self.codec, prompt)
        max_tokens = request.max_tokens if request.max_tokens is not None else 16  # OpenAI's default
        temperature = 1.0 if request.temperature is None else request.temperature
        top_p = 1.0 if request.top_p is None else request.top_p
        made = generation.pieces(self.network, self.codec, ids, max_tokens, temperature, top_p, request.seed)
        identity, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        limit = min(max_tokens, self.network.config.context - len(ids))
        if request.stream:
            return self.stream(made, identity, created, limit)
        whole = await asyncio.to_thread(list, made)
        tokens = sum(count for _, count in whole)
        return Completion(id=identity, created=created, model=self.name,
                          choices=[CompletionChoice(index=0, text="".join(text for text, _ in whole),
                                                    finish_reason="length" if tokens >= limit else "stop")],
                          usage=UsageInfo(prompt_tokens=len(ids), completion_tokens=tokens,
                                          total_tokens=len(ids) + tokens))

    async def stream(self, made, identity: str, created: int, limit: int):
        tokens = 0
        while (piece := next(made, None) if self.direct else await asyncio.to_thread(next, made, None)) is not None:
            text, count = piece
            tokens += count
            chunk = CompletionChunk(id=identity, created=created, model=self.name,
                                    choices=[CompletionChunkChoice(index=0, text=text)])
            yield f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"
        finish = "length" if tokens >= limit else "stop"
        chunk = CompletionChunk(id=identity, created=created, model=self.name,
                                choices=[CompletionChunkChoice(index=0, text="", finish_reason=finish)])
        yield f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"
        yield "data: [DONE]\n\n"

    async def create_chat_completion(self, request, raw_request=None, context=None):
        raise NotImplementedError("continuous.py asks for completions only")


if __name__ == "__main__":
    serve([TinyGPT(name, direct) for name, direct in MODELS.items()])
