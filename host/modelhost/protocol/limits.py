"""What one inference request may hold beyond its size in bytes, and quoting what a client wrote.

``--max_buffer_size`` bounds a request's bytes; these bound the shapes whose
cost grows faster than their bytes: every input, every parameter and every
BYTES element becomes Python objects of its own (tens of bytes each, and time
on the event loop), where numeric tensors are viewed as their bytes. A request
past a limit is refused (400, INVALID_ARGUMENT over gRPC) with the limit's
name and its flag, before anything is built from it. Pure: no I/O.
"""

from dataclasses import dataclass, field

from ..errors import InvalidInput, quoted

@dataclass(frozen=True)
class RequestLimits:
    """Each field is a ``modelhost serve`` flag of its name, its ``help`` said there."""

    max_inputs: int = field(default=10_000, metadata={
        "help": "inputs, or requested outputs, one V2 request may name (default: 10000)"})
    max_parameters: int = field(default=100, metadata={
        "help": "entries one parameter map may hold: a V2 request's, or one input's or output's (default: 100)"})
    max_bytes_elements: int = field(default=262_144, metadata={
        "help": "elements one BYTES tensor may hold, each of which is an object of its own (default: 262144)"})

    def check_inputs(self, count: int, what: str = "inputs") -> None:
        if count > self.max_inputs:
            raise InvalidInput(f"the request has {count} {what}, more than this server takes "
                               f"({self.max_inputs}, --max_inputs)")

    def check_parameters(self, count: int, whose: str) -> None:
        if count > self.max_parameters:
            raise InvalidInput(f"{whose} has {count} parameters, more than this server takes "
                               f"({self.max_parameters}, --max_parameters)")

    def check_bytes_elements(self, name: str, count: int) -> None:
        if count > self.max_bytes_elements:
            raise InvalidInput(f"input {quoted(name)}: {count} BYTES elements, more than this server takes "
                               f"({self.max_bytes_elements}, --max_bytes_elements)")


DEFAULT_LIMITS = RequestLimits()
