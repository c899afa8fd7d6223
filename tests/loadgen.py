"""A small HTTP/1.1 load generator for the soak and fault tests: keep-alive connections to 127.0.0.1.

Written on asyncio streams rather than a client library so that one test
process can keep 32 connections busy on a 2-core machine. A connection the
server drops is recorded as status 0 and opened again.
"""

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional


@dataclass
class Call:
    method: str
    path: str
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    kind: str = ""  # what the test calls it, to check its answer

    def encode(self) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(self.body)}",
                 *(f"{name}: {value}" for name, value in self.headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class Answer:
    call: Call
    status: int  # 0: the connection failed
    headers: dict
    body: bytes
    sent: float
    received: float


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, call: Call) -> tuple[int, dict, bytes]:
    writer.write(call.encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in header_lines if line)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return int(status_line.split(" ", 2)[1]), headers, body


async def run(port: int, calls: Iterable[Call], concurrency: int,
              on_answer: Optional[Callable[[Answer], None]] = None) -> list[Answer]:
    """Send ``calls`` over ``concurrency`` connections, each taking the next call when it has its answer."""
    pending = iter(calls)
    answers: list[Answer] = []

    async def connection():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for call in pending:  # shared by every connection: each call is sent once
            sent = time.monotonic()
            try:
                status, headers, body = await exchange(reader, writer, call)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                status, headers, body = 0, {}, repr(exc).encode()
            answer = Answer(call, status, headers, body, sent, time.monotonic())
            answers.append(answer)
            if on_answer:
                on_answer(answer)
            if status == 0 or headers.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    await asyncio.gather(*(connection() for _ in range(concurrency)))
    return answers


def rss_kib(pids: Iterable[int]) -> int:
    """Resident memory of these processes together, from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return total
