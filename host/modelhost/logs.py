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


@dataclass(frozen=True)
class AccessStyle:
    """How the access line is written: with each stage's time (``--enable_latency_logging``), and in the
    default layout or a ``--access_log_format`` of gunicorn's atoms, as KServe's access log takes them."""

    stages: bool = True
    layout: Optional[str] = None

    # The atoms a layout may name: gunicorn's, as uvicorn's access loggers take them, and modelhost's own.
    ATOMS = {"h": "the client's address", "m": "the method (over gRPC, the RPC)", "U": "the path (the model)",
             "r": "method and path", "s": "the status", "T": "seconds, whole", "L": "seconds, decimal",
             "M": "milliseconds", "D": "microseconds", "p": "the server process's id", "model": "the model",
             "request_id": "the request's id"}

    @staticmethod
    def atoms(origin: "Origin", status: int, seconds: float, model: Optional[str]) -> dict:
        return {"h": origin.peer, "m": origin.method, "U": origin.path, "r": f"{origin.method} {origin.path}",
                "s": status, "T": int(seconds), "L": f"{seconds:.6f}", "M": int(1000 * seconds),
                "D": int(seconds * 1e6), "p": os.getpid(), "model": model or "-", "request_id": origin.request_id}

    def check(self) -> "AccessStyle":
        """Itself, once its layout names only known atoms; ValueError says which it does not know."""
        if self.layout is not None:
            try:
                self.layout % self.atoms(Origin("POST", "/v2/models/m/infer", "127.0.0.1", "id"), 200, 0.001, "m")
            except KeyError as unknown:
                raise ValueError(f"--access_log_format names {unknown}, which is not one of "
                                 f"{', '.join(self.ATOMS)}") from None
            except (TypeError, ValueError) as error:
                raise ValueError(f"--access_log_format {self.layout!r} is not a %-format: {error}") from None
        return self


access_style = AccessStyle()  # the command line's, set once by configure_access


def configure_access(style: AccessStyle) -> None:
    global access_style
    access_style = style.check()


def access(origin: Origin, status: int, seconds: float, model: Optional[str] = None,
           timings: Optional[dict] = None, pieces: Optional[int] = None) -> None:
    """The access line: status, request, model, latency and the time each stage took, with the request's id;
    for a generation, the pieces sent (its ``first_piece`` stage is the time to the first)."""
    if not access_log.isEnabledFor(logging.INFO):  # the arguments cost more than the check
        return
    style = access_style
    milliseconds = 1000 * seconds
    stages = {stage: round(1000 * spent, 3) for stage, spent in (timings or {}).items()} if style.stages else {}
    fields = {"status": status, "method": origin.method, "path": origin.path,
              "remote_ip": origin.peer, "latency_ms": round(milliseconds, 3)}
    if model:
        fields.update(model=model, **({"stages_ms": stages} if style.stages else {}))
    if pieces is not None:
        fields["pieces"] = pieces
    arguments: tuple
    if style.layout is None:
        message, arguments = "%d %s%s%s %.2fms%s", (
            status, origin, f" model={model}" if model else "", "" if pieces is None else f" pieces={pieces}",
            milliseconds,
            "".join(f" {stage}={spent:.2f}ms" for stage, spent in stages.items()))
    else:
        message, arguments = "%s", (style.layout % style.atoms(origin, status, seconds, model),)
    # Logger.info would also look up its caller's file and line, which say nothing here: the record is made directly.
    access_log.handle(access_log.makeRecord(
        access_log.name, logging.INFO, "", 0, message, arguments,
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
