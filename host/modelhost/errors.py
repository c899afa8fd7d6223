"""Errors that carry the HTTP status they answer with.

They hold only a status and a message, so they pickle cleanly: an error raised
where a plugin runs, in this process or in a worker, reaches the HTTP layer
unchanged.
"""

LONGEST_QUOTE = 200  # characters of a client's string that a message or a log line quotes


def shortened(text: str) -> str:
    """A client's string cut to ``LONGEST_QUOTE`` characters, its length said: a long name can neither swell an
    answer past a client's limit on headers (gRPC's messages travel in them) nor flood the log."""
    return text if len(text) <= LONGEST_QUOTE else f"{text[:LONGEST_QUOTE]}... ({len(text)} characters)"


def quoted(text: object) -> str:
    """A client's value as a message quotes it: its repr, ``shortened``."""
    return shortened(repr(text))


def quoted_names(names: list[str], most: int = 3) -> str:
    """The first ``most`` names, ``quoted``, and how many more: names a client made (an echo's outputs are its
    inputs) may be as many and as long as it likes."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(map(quoted, names[:most])) + more


class ModelhostError(Exception):
    """Base for every error the host turns into ``{"error": message}``."""

    status = 500
    headers: dict[str, str] = {}  # sent with the answer

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __reduce__(self):
        return (type(self), (self.message,))


class InvalidInput(ModelhostError):
    """The request cannot be served as sent. Plugins raise it for bad input (400)."""

    status = 400


class Unauthorized(ModelhostError):
    """The request lacks the server's bearer token (401)."""

    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="modelhost"'}


class ModelNotFound(ModelhostError):
    status = 404


class MethodNotAllowed(ModelhostError):
    """A path does not take the request's method (405); ``Allow`` names those it takes, as RFC 9110 asks."""

    status = 405

    def __init__(self, allowed: list[str]):
        super().__init__("Method Not Allowed")
        self.allowed = allowed
        self.headers = {"Allow": ", ".join(allowed)}

    def __reduce__(self):
        return (type(self), (self.allowed,))


class PayloadTooLarge(ModelhostError):
    status = 413


class PluginError(ModelhostError):
    """A plugin's hook raised something other than InvalidInput (500)."""

    status = 500


class NotImplementedByModel(ModelhostError):
    """The model does not do what the request asks (an explanation, say): 501, as KServe answers."""

    status = 501


class ModelNotReady(ModelhostError):
    status = 503


class ServerShuttingDown(ModelhostError):
    """The server is draining after SIGTERM: it takes no new requests (503)."""

    status = 503


class ModelBusy(ModelhostError):
    """The model's queue is full: the client should come back shortly (503 with Retry-After)."""

    status = 503
    headers = {"Retry-After": "1"}


class BodyTimeout(ModelhostError):
    """The request's body did not arrive within ``--body_timeout``: 408, and its connection closed."""

    status = 408


class ClientGone(ModelhostError):
    """The client closed its connection before its request was run: 499, nginx's status for it."""

    status = 499


class ModelTimeout(ModelhostError):
    """A hook ran past the per-request timeout (504)."""

    status = 504


class PredictorError(ModelhostError):
    """The transformer role's predictor failed this request: its own error status when it answered with one,
    502 when it answered something that is no answer, 503 when it cannot be reached, 504 when it took too long."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status

    def __reduce__(self):
        return (type(self), (self.message, self.status))


class PluginLoadError(Exception):
    """A plugin could not be imported, validated or loaded; the model is not served.

    Its message says why, for anyone to read; ``where`` adds the file and line that raised it, for the log.
    """

    def __init__(self, message: str, where: str = ""):
        super().__init__(message)
        self.where = where

    def for_log(self) -> str:
        return f"{self}{self.where}"


class CannotServe(Exception):
    """The server cannot start at all (its port is taken, say): the message says why."""
