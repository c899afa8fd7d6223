"""Log lines as text or JSON, each tagged with the request it is about.

The request's id lives in a context variable while the request is handled,
and while its hooks run (in a hook thread or a worker process), so every line
logged meanwhile carries it, the plugin's own lines included.
"""

import contextvars
import logging
import sys
import time

import orjson

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

TEXT_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s%(request_tag)s"
FORMATS = ("text", "json")


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record: ``request_id``, and ``request_tag`` for text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):  # an access line names its request itself
            record.request_id = request_id.get()
        record.request_tag = f" request_id={record.request_id}" if record.request_id else ""
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
        if record.request_id:
            line["request_id"] = record.request_id
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class StderrHandler(logging.StreamHandler):
    """modelhost's own handler, told apart from others (a test's capture) when configured again."""


def configure(level: str, log_format: str = "text", text_format: str = TEXT_FORMAT) -> None:
    """Send every log line to stderr, as ``log_format`` says, at ``level`` and above."""
    handler = StderrHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JSONFormatter() if log_format == "json" else logging.Formatter(text_format))
    root = logging.getLogger()
    root.handlers[:] = [other for other in root.handlers if not isinstance(other, StderrHandler)] + [handler]
    root.setLevel(level.upper())
