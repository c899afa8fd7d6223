"""Answers that generate, over HTTP: server-sent events as the parts come, or all the parts as one answer.

A route that can stream gives each call an ``Events``: how its parts become
events, what follows the last one, how an error part-way through is said, and
what all the parts make as one answer when the client did not ask for a
stream. An error before the first part never gets here: it is answered with
its own status, as any request's is. Once the headers are out, an error is an
event, and the call's metrics and access line carry its status.

Each write is awaited before the next part is taken: a client that reads
slowly holds back its generation (``runtime.streams``), never the server's
memory. Parts that came while a write was under way go out together.
"""

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Optional, Protocol

import tornado.httputil
from tornado.iostream import StreamClosedError

from ..errors import ClientGone, ModelhostError
from ..protocol.generate import MEDIA_TYPE
from ..runtime.streams import PieceStream

if TYPE_CHECKING:
    from .exchange import Exchange

log = logging.getLogger("modelhost")


class Events(Protocol):
    """One call's answer as a route gives it, when the answer may come in parts."""

    streamed: bool  # as server-sent events; else the parts collected into one answer

    def part(self, part: Any) -> bytes:
        """A part as its event(s)."""

    def end(self) -> bytes:
        """What follows the last part (a usage event, OpenAI's ``[DONE]``)."""

    def failure(self, error: ModelhostError) -> bytes:
        """An error after the headers, as the stream's last event(s)."""

    def whole(self, parts: list) -> Any:
        """All the parts as one result, which the route's codec encodes."""


def answer(exchange: "Exchange", result: Any, events: Events) -> None:
    """Answer with the parts of ``result`` (a stream, or a model's one result) as ``events`` says."""
    task = asyncio.ensure_future(send(exchange, result, events) if events.streamed else collect(exchange, result, events))
    exchange.sending = task


async def collect(exchange: "Exchange", result: Any, events: Events) -> None:
    """All the parts as one answer, written once the last has come (or the error that ended them)."""
    try:
        parts = [result]
        if isinstance(result, PieceStream):
            parts = []
            while (part := await result.next()) is not None:
                parts.append(part)
        exchange.answer(events.whole(parts), None)  # encoded before anything is written: an error answers instead
    except Exception as error:  # noqa: BLE001 -- whatever it is, it is this request's answer
        if not isinstance(error, ClientGone):
            exchange.call.log_failure(error)
        exchange.answer(None, error)


async def send(exchange: "Exchange", result: Any, events: Events) -> None:
    connection = exchange.connection
    headers = tornado.httputil.HTTPHeaders({"Content-Type": MEDIA_TYPE, "Cache-Control": "no-cache",
                                            "X-Request-Id": exchange.request_id, "Date": exchange.route.http_date()})
    status = 200
    try:
        await connection.write_headers(tornado.httputil.ResponseStartLine("HTTP/1.1", 200, "OK"), headers)
        if not isinstance(result, PieceStream):
            await connection.write(events.part(result) + events.end())
        else:
            await stream_parts(connection, result, events)
    except (StreamClosedError, ClientGone):
        status = ClientGone.status
        exchange.closed = True
    except ModelhostError as error:
        status = error.status
        exchange.call.log_failure(error)
        await write_quietly(connection, events.failure(error))
    except Exception as error:  # noqa: BLE001 -- an event the route could not encode
        status = 500
        exchange.call.log_failure(error)
        await write_quietly(connection, events.failure(ModelhostError("Internal Server Error")))
    finally:
        if isinstance(result, PieceStream):
            result.close()  # when it ended early, its generator is closed
        exchange.finished_stream(status)


async def stream_parts(connection: Any, stream: PieceStream, events: Events) -> None:
    while (part := await stream.next()) is not None:
        chunks = [events.part(part)]
        while stream.parts:  # they came while the last write was under way: one write for all
            more = await stream.next()
            if more is not None:
                chunks.append(events.part(more))
        await connection.write(b"".join(chunks))
    await connection.write(events.end())


async def write_quietly(connection: Any, chunk: Optional[bytes]) -> None:
    try:
        if chunk:
            await connection.write(chunk)
    except StreamClosedError:
        pass
