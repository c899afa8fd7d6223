"""A load generator for streamed answers (server-sent events): N streams open at once, again and again, for S s.

    python bench/peers/sse_load.py --url URL --body FILE -c 8 -d 3 --pieces 200 --events 202 [--processes 2]
                                   [--stagger 2.5]

Each of the ``-c`` streams holds one keep-alive HTTP/1.1 connection and POSTs the body over it, again as soon
as the answer has ended. The answer is read by an ``asyncio.Protocol`` as its bytes arrive, undoing the chunked
transfer coding (every server here streams chunked) and counting the ``data:`` events in what it carries, with
no line splitting, no JSON parsing and no task per read: a client in Python costs about as much per byte as
the servers it loads, and an aiohttp client (``iter_any``, the same counting) took 1.3 to 1.8 times this one's
CPU per piece on the same streams. The answers' contents are checked apart, once, before the load
(streaming.py's preflight).

The first ``--pieces`` events of an answer are its pieces (what follows them, such as OpenAI's finishing chunk
and ``[DONE]``, is not), and an answer must hold exactly ``--events`` events (0: any), or it counts as an
error. Pieces are counted as their bytes arrive, and only those that arrive within the ``-d`` seconds; then
no new stream starts, and those open are read to their end (``pieces_total`` counts them too, for the CPU a
piece costs). A stream's time to its first piece (TTFT) runs from just before its request is written to the
arrival of the bytes that hold its first event. ``--processes P`` splits the streams over P forked processes,
all starting at the same instant; one JSON object gives the figures of all of them, on stdout or in ``--out``.

``--stagger S`` spreads the streams' starts: stream i of c sends its first request i*S/c after the common start,
and the ``-d`` seconds begin once the last has started, S*(c-1)/c after it. Closed-loop streams that all start at
once and whose answers are all as long stay in step: they end together and their next requests arrive together,
in waves, which a server that batches the streams' steps (continuous batching) cannot answer without their
first pieces waiting for one another's; real streams come and go at any time. With S about one stream's duration
under the load, their starts stay spread over it. Pieces count only within the ``-d`` seconds, and the TTFTs,
durations and streams reported are those of the requests sent within them: the ramp, when fewer streams are
open, is left out of every figure but ``pieces_total``. 0 (the default): all start at once, as before.
"""

import argparse
import asyncio
import json
import multiprocessing
import socket
import time
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

try:
    import uvloop
except ImportError:  # the plain loop serves as well, a little slower
    uvloop = None

MARK = b"data:"
TAIL = len(MARK) - 1  # bytes of the body kept from one read for the next: a mark split between reads counts once
HEAD, CHUNKED, SIZED = range(3)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", type=Path, required=True)
    parser.add_argument("--header", action="append", default=[], help="NAME: VALUE, more than once")
    parser.add_argument("-c", "--connections", type=int, default=1, help="streams open at once")
    parser.add_argument("-d", "--seconds", type=float, default=3.0)
    parser.add_argument("--pieces", type=int, required=True, help="the pieces of one answer: its first events")
    parser.add_argument("--events", type=int, default=0, help="the events one answer must hold (0: any)")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--stagger", type=float, default=0.0,
                        help="stream i of c starts i*S/c s after the others' common start; the -d s begin once all "
                             "have (default 0: all at once)")
    parser.add_argument("--out", type=Path, help="write the JSON here, not to stdout")
    return parser.parse_args(argv)


class Stream(asyncio.Protocol):
    """One keep-alive connection's answers, read as they arrive; ``done`` is set when one ends."""

    def __init__(self, pieces: int, totals: dict, begin: float, end: float):
        self.pieces, self.totals, self.begin, self.end = pieces, totals, begin, end
        self.transport = None
        self.done: Optional[asyncio.Future] = None
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.lost = True
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError(f"closed mid-answer: {exc}"))

    def send(self, request: bytes) -> asyncio.Future:
        self.done = asyncio.get_running_loop().create_future()
        self.state, self.head, self.line = HEAD, b"", b""
        self.left, self.crlf, self.last = 0, 0, False  # of the chunk being read; its CRLF; the zero chunk seen
        self.events, self.counted, self.first, self.tail, self.status = 0, 0, None, b"", 0
        self.sent = time.monotonic()
        self.transport.write(request)
        return self.done

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self.state == HEAD:
            data = self.head + data
            split = data.find(b"\r\n\r\n")
            if split < 0:
                self.head = data
                return
            head, data = data[:split].lower(), data[split + 4:]
            self.status = int(head[9:12])
            if b"transfer-encoding: chunked" in head:
                self.state = CHUNKED
            else:
                self.state = SIZED
                found = head.find(b"content-length:")
                self.left = int(head[found + 15:].split(b"\r\n", 1)[0]) if found >= 0 else 0
            if not data and self.left:
                return
        if self.state == SIZED:
            self.left -= len(data)
            if self.left <= 0:
                self.finish()
            return
        if self.line:
            data, self.line = self.line + data, b""
        position, size = 0, len(data)
        while position < size:
            if self.left:
                taken = min(self.left, size - position)
                self.carried(data[position:position + taken], now)
                position += taken
                self.left -= taken
                if not self.left:
                    self.crlf = 2
                continue
            if self.crlf:
                taken = min(self.crlf, size - position)
                position += taken
                self.crlf -= taken
                if not self.crlf and self.last:
                    self.finish()
                    return
                continue
            found = data.find(b"\r\n", position)
            if found < 0:
                self.line = data[position:]
                return
            length = int(data[position:found].split(b";")[0], 16)
            position = found + 2
            if length:
                self.left = length
            else:  # the last chunk; no trailers: its blank line ends the answer
                self.last, self.crlf = True, 2

    def carried(self, payload: bytes, now: float) -> None:
        found = (self.tail + payload).count(MARK) if self.tail else payload.count(MARK)
        self.tail = payload[-TAIL:] if len(payload) >= TAIL else (self.tail + payload)[-TAIL:]
        if not found:
            return
        self.events += found
        if self.first is None:
            self.first = now - self.sent
        pieces = min(self.events, self.pieces) - self.counted
        if pieces > 0:
            self.counted += pieces
            self.totals["pieces_total"] += pieces
            if self.begin <= now < self.end:
                self.totals["pieces"] += pieces

    def finish(self) -> None:
        self.state = HEAD
        if not self.done.done():
            self.done.set_result(time.monotonic())


def failed(totals: dict, why: str) -> None:
    totals["errors"] += 1
    totals["statuses"][why] = totals["statuses"].get(why, 0) + 1


async def stream_loop(args, host: str, port: int, request: bytes, first: float, begin: float, end: float,
                      totals: dict) -> None:
    """One stream: its first request at ``first``, the next as each answer ends, until ``end``; the figures count
    from ``begin``."""
    loop = asyncio.get_running_loop()
    stream = None
    delay = first - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    while time.monotonic() < end:
        try:
            if stream is None or stream.lost:
                _, stream = await loop.create_connection(lambda: Stream(args.pieces, totals, begin, end), host, port)
            ended = await asyncio.wait_for(stream.send(request), 120)
        except (OSError, asyncio.TimeoutError) as exc:
            failed(totals, type(exc).__name__)
            if stream is not None:
                stream.transport.close()
            stream = None
            continue
        if stream.status != 200:
            failed(totals, str(stream.status))
            continue
        if args.events and stream.events != args.events:
            failed(totals, f"{stream.events} events")
            continue
        if stream.sent < begin:  # sent in the ramp (--stagger): fewer streams were open
            continue
        totals["streams"] += 1
        if stream.first is not None:
            totals["ttft"].append(stream.first)
            totals["durations"].append(ended - stream.sent)
    if stream is not None:
        stream.transport.close()


async def run(args, connections: int, start: float, index: int = 0) -> dict:
    """``connections`` streams, the first of them stream ``index`` of all the processes' ``args.connections``."""
    url = urlsplit(args.url)
    body = args.body.read_bytes()
    headers = {"Host": url.netloc, "Content-Type": "application/json", "Content-Length": str(len(body))}
    for header in args.header:
        name, _, value = header.partition(":")
        headers[name.strip()] = value.strip()
    request = (f"POST {url.path}{'?' + url.query if url.query else ''} HTTP/1.1\r\n"
               + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n").encode() + body
    totals = {"pieces": 0, "pieces_total": 0, "streams": 0, "errors": 0, "statuses": {}, "ttft": [], "durations": []}
    spacing = args.stagger / args.connections
    begin = start + spacing * (args.connections - 1)  # the last stream's start
    end = begin + args.seconds
    await asyncio.gather(*(stream_loop(args, url.hostname, url.port or 80, request, start + spacing * (index + n),
                                       begin, end, totals) for n in range(connections)))
    totals["drained_s"] = max(time.monotonic() - end, 0.0)
    return totals


def one_process(args, connections: int, start: float, index: int = 0) -> dict:
    if uvloop is not None:
        return uvloop.run(run(args, connections, start, index))
    return asyncio.run(run(args, connections, start, index))


def child(args, connections: int, start: float, index: int, sink) -> None:
    sink.send(one_process(args, connections, start, index))
    sink.close()


def merged(results: list) -> dict:
    out = {"pieces": 0, "pieces_total": 0, "streams": 0, "errors": 0, "statuses": {}, "ttft": [], "durations": [],
           "drained_s": 0.0}
    for result in results:
        for key in ("pieces", "pieces_total", "streams", "errors"):
            out[key] += result[key]
        for key, count in result["statuses"].items():
            out["statuses"][key] = out["statuses"].get(key, 0) + count
        out["ttft"] += result["ttft"]
        out["durations"] += result["durations"]
        out["drained_s"] = max(out["drained_s"], result["drained_s"])
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    processes = max(1, min(args.processes, args.connections))
    start = time.monotonic() + 0.2  # CLOCK_MONOTONIC is the machine's: every process starts at this instant
    if processes == 1:
        result = one_process(args, args.connections, start)
    else:
        shares = [args.connections // processes + (index < args.connections % processes) for index in range(processes)]
        context = multiprocessing.get_context("fork")
        pipes, workers = [], []
        for number, share in enumerate(shares):
            receiver, sender = context.Pipe(duplex=False)
            worker = context.Process(target=child, args=(args, share, start, sum(shares[:number]), sender))
            worker.start()
            sender.close()
            pipes.append(receiver)
            workers.append(worker)
        results = [receiver.recv() for receiver in pipes]
        for worker in workers:
            worker.join()
        result = merged(results)
    result.update(seconds=args.seconds, connections=args.connections, processes=processes, stagger=args.stagger)
    if args.out:
        args.out.write_text(json.dumps(result))
    else:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
