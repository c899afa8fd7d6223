"""The generative sample's tiny-gpt, ``inline``: its generator stepped on the server's event loop, not on a hook thread.

For ``streaming.py``'s part 3 only: the served row beside the sample as shipped, to tell the cost of stepping a
synchronous generator on a hook thread (and of the event loop and the generating thread taking turns with the
GIL) from the cost of the HTTP stream itself. Not how to serve it: ``inline`` blocks the event loop for each
token step (about a millisecond), and every other request, health checks included, waits meanwhile.
"""

from modelhost import hookimpl
from modelhost_generative.plugin import TinyGPT


class TinyGPTInline(TinyGPT):
    @hookimpl
    def settings(self):
        return {**super().settings(), "inline": True}
