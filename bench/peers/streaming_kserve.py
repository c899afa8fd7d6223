"""streaming.py's generator on KServe 0.21: an ``OpenAIGenerativeModel`` whose completions stream fixed pieces.

    python bench/peers/streaming_kserve.py --http_port N --grpc_port M --enable_latency_logging False

Run with KServe's virtual environment, bench/peers and bench/peers/vllm_stub on PYTHONPATH (KServe 0.21 takes
its OpenAI types from vLLM: vllm_stub/README.md). ``create_completion`` returns, for a streamed request, an
async generator of server-sent events, as KServe's own vLLM-backed runtime does (vLLM's
``OpenAIServingCompletion``): each piece a ``CompletionStreamResponse`` of one choice, ``model_dump_json
(exclude_unset=True)``; then a last chunk with ``finish_reason`` "length" (the pieces fill ``max_tokens``)
and ``data: [DONE]``. KServe serves it on ``POST /openai/v1/completions`` (Starlette's StreamingResponse).
Logging as in kserve_server.py: per-request loggers at WARNING. KServe binds its REST server to 0.0.0.0 and
its gRPC server to [::], whatever it is asked; ``main`` has them bind 127.0.0.1, as every server here does.
"""

import copy
import time
import uuid

import grpc.aio
import kserve
import uvicorn
from kserve.logging import KSERVE_LOG_CONFIG, configure_logging
from kserve.protocol.rest.openai import OpenAIGenerativeModel
from kserve.protocol.rest.openai.types import (Completion, CompletionChoice, CompletionChunk, CompletionChunkChoice,
                                               UsageInfo)

PIECE = "tok "
PIECES = 200


class Pieces(OpenAIGenerativeModel):
    async def create_completion(self, request, raw_request=None, context=None):
        limit = min(request.max_tokens or PIECES, PIECES)
        if not request.stream:
            return Completion(id=f"cmpl-{uuid.uuid4().hex}", created=int(time.time()), model=self.name,
                              choices=[CompletionChoice(index=0, text=PIECE * limit, finish_reason="length")],
                              usage=UsageInfo(prompt_tokens=1, completion_tokens=limit, total_tokens=limit + 1))
        return self.stream(limit)

    async def stream(self, limit: int):
        identity, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        for _ in range(limit):
            chunk = CompletionChunk(id=identity, created=created, model=self.name,
                                    choices=[CompletionChunkChoice(index=0, text=PIECE)])
            yield f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"
        chunk = CompletionChunk(id=identity, created=created, model=self.name,
                                choices=[CompletionChunkChoice(index=0, text="", finish_reason="length")])
        yield f"data: {chunk.model_dump_json(exclude_unset=True)}\n\n"
        yield "data: [DONE]\n\n"

    async def create_chat_completion(self, request, raw_request=None, context=None):
        raise NotImplementedError("streaming.py asks for completions only")


def loopback_only() -> None:
    """uvicorn's Config and grpc.aio's server bind 127.0.0.1 where KServe names every interface."""
    config_init = uvicorn.Config.__init__

    def config(self, app, *args, **kwargs):
        config_init(self, app, *args, **{**kwargs, "host": "127.0.0.1"})

    uvicorn.Config.__init__ = config
    make_server = grpc.aio.server

    def server(*args, **kwargs):
        made = make_server(*args, **kwargs)
        add_port = made.add_insecure_port
        made.add_insecure_port = lambda address: add_port(address.replace("[::]", "127.0.0.1"))
        return made

    grpc.aio.server = server


def serve(models: list) -> None:
    """KServe's ModelServer on 127.0.0.1 with its per-request loggers at WARNING (continuous_kserve.py's too)."""
    loopback_only()
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    for name in ("uvicorn.access", "kserve.trace", "kserve"):
        config["loggers"][name]["level"] = "WARNING"
    configure_logging(config)
    kserve.ModelServer().start(models)


def main() -> None:
    serve([Pieces("pieces")])


if __name__ == "__main__":
    main()
