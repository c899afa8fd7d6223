"""Log lines as text or JSON, each tagged with the request it is about.

The request's id lives in a context variable while the request is handled,
and while its hooks run (in a hook thread or a worker process), so every line
logged meanwhile carries it, the plugin's own lines included.
"""

import asyncio
import contextvars
import itertools
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Iterator, Optional

import orjson

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
access_log = logging.getLogger("modelhost.access")
log = logging.getLogger("modelhost")

TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s%(request_tag)s"
FORMATS = ("text", "json")


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record: ``request_id``, and ``request_tag`` for text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # an access line names its request itself
            setattr(record, "request_id", request_id.get())
        tagged = getattr(record, "request_id")
        setattr(record, "request_tag", f" request_id={tagged}" if tagged else "")
        return True


class JSONFormatter(logging.Formatter):
    """One JSON object per line; an access line's fields (``extra={"fields": {...}}``) become keys."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", ""):
            line["request_id"] = getattr(record, "request_id")
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class StderrHandler(logging.StreamHandler):
    """modelhost's own handler (told apart from others, a test's capture, when configured again).

    Lines logged on an event loop are written out together at the loop's next
    turn: with access lines on, a write per line would be a system call per
    request, and a loop turn under load answers many. Lines from any other
    thread (hooks, start-up, exit) are written at once.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self.flush_pending = False

    def flush(self):
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().flush()
            return
        if not self.flush_pending:
            self.flush_pending = True
            loop.call_soon(self.flush_now)

    def flush_now(self):
        self.flush_pending = False
        super().flush()


class TextFormatter(logging.Formatter):
    """The text format, its time formatted once per second rather than once per line."""

    second, formatted = -1, ""

    def formatTime(self, record: logging.LogRecord, datefmt=None) -> str:
        second = int(record.created)
        if second != self.second:
            self.second, self.formatted = second, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(second))
        return f"{self.formatted},{int(record.msecs):03d}"


def buffered(stream):
    """``stream``'s file, written through a buffer of its own: sys.stderr writes out every line as it comes."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): as it is
        return stream
    return open(fd, "w", buffering=1 << 16, encoding=stream.encoding, errors="backslashreplace", closefd=False)


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs each request a microsecond more
class Origin:
    """A request as the lines logged about it name it, whatever front end it came by."""

    method: str  # "POST", or over gRPC the method's name
    path: str
    peer: str
    request_id: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.peer})"


def request_id_source() -> Iterator[str]:
    """Ids for requests that bring none: random for this process, then counted, with no system call per request."""
    prefix = os.urandom(8).hex()
    return (f"{prefix}{count:016x}" for count in itertools.count())


def refused(status: int, message: str, origin: Origin) -> None:
    """A request answered with an error of its own (4xx, or a 5xx the host understands): why, and to whom."""
    log.warning("%d %s: %s", status, origin, message, extra={"request_id": origin.request_id})


def access(origin: Origin, status: int, seconds: float, model: Optional[str] = None,
           timings: Optional[dict] = None) -> None:
    """The access line: status, request, model, latency and the time each stage took, with the request's id."""
    if not access_log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
        return
    milliseconds = 1000 * seconds
    stages = {stage: round(1000 * spent, 3) for stage, spent in (timings or {}).items()}
    fields = {"status": status, "method": origin.method, "path": origin.path,
              "remote_ip": origin.peer, "latency_ms": round(milliseconds, 3)}
    if model:
        fields.update(model=model, stages_ms=stages)
    # Logger.info would also look up its caller's file and line, which say nothing here: the record is made directly.
    access_log.handle(access_log.makeRecord(
        access_log.name, logging.INFO, "", 0, "%d %s%s %.2fms%s",
        (status, origin, f" model={model}" if model else "", milliseconds,
         "".join(f" {stage}={spent:.2f}ms" for stage, spent in stages.items())),
        None, extra={"fields": fields, "request_id": origin.request_id},
    ))


def configure(level: str, log_format: str = "text", text_format: str = TEXT_FORMAT) -> None:
    """Send every log line to stderr, as ``log_format`` says, at ``level`` and above."""
    handler = StderrHandler(buffered(sys.stderr))
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter(text_format))
    root = logging.getLogger()
    replaced = [other for other in root.handlers if isinstance(other, StderrHandler)]
    for other in replaced:
        other.flush_now()
    root.handlers[:] = [other for other in root.handlers if other not in replaced] + [handler]
    root.setLevel(level.upper())
