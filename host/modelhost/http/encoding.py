"""Content codings over HTTP, as Triton's HTTP server takes and gives them: gzip and deflate.

A request body may come compressed (tritonclient's ``request_compression_algorithm``);
``handling.Body`` decodes it whole, once it has arrived, bounded by ``--max_buffer_size``
as a plain body is: its decoded size is counted as it inflates, so that a
small body that inflates to gigabytes is refused with 413 having held no more
than the limit. Another coding is refused from the headers with 415, which
names the ones taken in ``Accept-Encoding`` (RFC 7694), as Triton does.

An inference answer is compressed when the client's ``Accept-Encoding`` prefers
gzip or deflate (tritonclient's ``response_compression_algorithm``), as Triton
compresses its inference answers, and unlike Triton only from
``SMALLEST_COMPRESSED`` bytes: HTTP libraries (requests, httpx, aiohttp, so
KServe's client and a transformer's calls to its predictor) accept gzip
unasked, and compressing a small answer makes it larger and costs more than
the rest of its encoding. Errors are never compressed: tritonclient reads an
error's body without decoding it.

"deflate" is zlib's format (RFC 9110, section 8.4.1.2), which tritonclient
sends and reads.
"""

import functools
import zlib
from dataclasses import dataclass
from typing import Mapping, Optional

from ..errors import InvalidInput, ModelhostError

WINDOW_BITS = {"gzip": 31, "deflate": 15}  # zlib's: 16 + 15 for a gzip header and trailer, 15 for zlib's own
ALIASES = {"x-gzip": "gzip"}  # RFC 9110, section 8.4.1.3: the same coding
TAKEN = "gzip, deflate"
INPUT_PIECE = 1 << 16  # zlib copies what it has not read yet on every call: fed in pieces, that copy stays small
OUTPUT_PIECE = 1 << 20
# The most deflate can inflate: a 258-byte match in as little as 2 bits (zlib's technical notes).
MOST_INFLATED = 1032
# Below this an answer goes as it is: one TCP segment either way, and gzip's header and trailer alone are 18 bytes
# (Tornado's own GZipContentEncoding waits for as many).
SMALLEST_COMPRESSED = 1024
LEVEL = 1  # nginx's default: the event loop compresses, and level 6 costs it three times as much for a little less


class UnsupportedEncoding(ModelhostError):
    status = 415
    headers = {"Accept-Encoding": TAKEN}


@dataclass(frozen=True)
class Coding:
    """A content coding a request body can come in."""

    name: str

    def decode(self, body: bytearray, limit: int) -> Optional[bytearray]:
        """The body decoded; None once it grows past ``limit`` bytes, which it never holds more than one byte past.
        InvalidInput when it is not this coding's data, whole and alone."""
        if not body:  # nothing was sent: there is nothing to decode
            return body
        decoder = zlib.decompressobj(WINDOW_BITS[self.name])
        decoded = bytearray()
        try:
            with memoryview(body) as view:
                for start in range(0, len(view), INPUT_PIECE):
                    pending: bytes | memoryview = view[start:start + INPUT_PIECE]
                    while True:
                        room = min(OUTPUT_PIECE, limit + 1 - len(decoded))
                        piece = decoder.decompress(pending, room)
                        decoded += piece
                        if len(decoded) > limit:
                            return None
                        pending = decoder.unconsumed_tail
                        if not pending and len(piece) < room:  # this input is read, and its output all out
                            break
        except zlib.error as error:
            raise InvalidInput(f"the request body is not {self.name} data, as its Content-Encoding says: {error}") \
                from None
        if not decoder.eof:
            raise InvalidInput(f"the request body's {self.name} data is cut short")
        if decoder.unused_data:
            raise InvalidInput(f"the request body goes on after the end of its {self.name} data")
        return decoded

    def most_decoded(self, size: int, limit: int) -> int:
        """The most bytes ``size`` bytes of this coding decode to, within ``limit``."""
        return min(size * MOST_INFLATED, limit)


CODINGS = {name: Coding(name) for name in WINDOW_BITS}


def request_coding(headers: Mapping[str, str]) -> Optional[Coding]:
    """The coding the request's body comes in, or None (no ``Content-Encoding``, or ``identity``);
    UnsupportedEncoding for another, or for codings applied one over another."""
    if "Content-Encoding" not in headers:  # nearly every request: one lookup
        return None
    names = [name for name in (item.strip().lower() for item in headers["Content-Encoding"].split(","))
             if name and name != "identity"]
    if not names:
        return None
    if len(names) > 1:
        raise UnsupportedEncoding(f"the request body is in more than one content coding ({', '.join(names)}); "
                                  f"this server takes one of {TAKEN}")
    name = ALIASES.get(names[0], names[0])
    if name not in CODINGS:
        raise UnsupportedEncoding(f"the request body's content coding {names[0]!r} is not one this server takes "
                                  f"({TAKEN} or identity)")
    return CODINGS[name]


def encoded_answer(body: bytes, headers: dict, accept_encoding: str) -> tuple[bytes, dict]:
    """A successful answer of ``SMALLEST_COMPRESSED`` bytes or more, its body and headers as the client's
    ``Accept-Encoding`` asks them."""
    # It varies with Accept-Encoding, whether this client takes a coding or not, so a cache must be told.
    headers = dict(headers)
    vary = next((name for name in headers if name.lower() == "vary"), "Vary")  # a plugin's Vary, kept
    headers[vary] = f"{headers[vary]}, Accept-Encoding" if vary in headers else "Accept-Encoding"
    coding = answer_coding(accept_encoding)
    if coding is None or has_header(headers, "content-encoding"):
        return body, headers
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, WINDOW_BITS[coding])
    headers["Content-Encoding"] = coding
    return compressor.compress(body) + compressor.flush(), headers


def has_header(headers: dict, lowered: str) -> bool:
    """Whether a plugin's answer already says the header (``Response.headers``: its names in any case)."""
    return any(name.lower() == lowered for name in headers)


@functools.lru_cache(maxsize=256)  # a client sends the same value each time: parsed once
def answer_coding(accept_encoding: str) -> Optional[str]:
    """gzip or deflate, whichever the client prefers by q-value, the first it lists on a tie (as Triton chooses);
    None when it takes neither, or prefers ``identity`` to both. ``*`` stands for each one it does not list."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, parameters = item.partition(";")
        name = name.strip().lower()
        weight = quality(parameters)
        if weight is not None:
            weights.setdefault(ALIASES.get(name, name), weight)
    anything = weights.pop("*", 0.0)
    for name in WINDOW_BITS:
        weights.setdefault(name, anything)
    candidates = {name: weight for name, weight in weights.items() if name in WINDOW_BITS or name == "identity"}
    best = max(candidates, key=candidates.__getitem__)  # the first of equals: dicts keep the client's order
    return best if best != "identity" and candidates[best] > 0 else None


def quality(parameters: str) -> Optional[float]:
    """An Accept-Encoding item's q-value (1 when it has none); None when it is not a number from 0 to 1."""
    for parameter in parameters.split(";"):
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                return None
            return weight if 0 <= weight <= 1 else None  # NaN fails both
    return 1.0
