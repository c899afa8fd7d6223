"""modelhost plugins for ``streaming.py``: generators that yield fixed pieces and compute nothing.

Each request gets ``PIECES`` pieces of ``PIECE`` ("tok "), as the KServe and MLServer peers'
(``streaming_kserve.py``, ``streaming_mlserver.py``) yield them: the stream is all there is to measure.
Served on OpenAI's completions route (``max_tokens`` = ``PIECES``: the host's limit never cuts them short)
and on V2 ``infer_stream`` (each piece a ``text_output`` tensor).

- ``Pieces``: a plain generator, as most plugins write one: in the server process each step (``next``) goes
  to a hook thread; in a worker, likewise on the worker's hook thread.
- ``PiecesInline``: the same, ``inline``: each step in place on the event loop, no thread hop.
- ``AsyncPieces``: an ``async def`` generator, as the peers' are: awaited on the event loop, never a thread.
"""

from modelhost import hookimpl

PIECE = "tok "
PIECES = 200


class Pieces:
    @hookimpl
    def generate(self, inputs, request):
        for _ in range(PIECES):
            yield PIECE


class PiecesInline(Pieces):
    @hookimpl
    def settings(self):
        return {"inline": True}


class AsyncPieces:
    @hookimpl
    async def generate(self, inputs, request):
        for _ in range(PIECES):
            yield PIECE
