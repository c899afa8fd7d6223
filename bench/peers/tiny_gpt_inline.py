"""The generative sample's tiny-gpt, ``inline``: its step scheduler's iterations on the server's event loop.

For ``streaming.py``'s part 3 only: the served row beside the sample as shipped, to tell the cost of running each
iteration of the step scheduler (``begin``, ``step`` and ``end``, ``modelhost/sequences.py``) on a hook thread
(and of the event loop and that thread taking turns with the GIL) from the cost of the HTTP stream itself. Not
how to serve it: ``inline`` blocks the event loop for each step (about a millisecond for one sequence, more
for many), and every other request, health checks included, waits meanwhile.
"""

from modelhost import hookimpl
from modelhost_generative.plugin import TinyGPT


class TinyGPTInline(TinyGPT):
    @hookimpl
    def settings(self):
        return {**super().settings(), "inline": True}
