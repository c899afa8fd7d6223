"""Pass-through transformer plugins for ``transformer_hop.py``: trivial pre- and postprocess, no predict.

Served with ``--predictor_host``, the host's own ``predict`` sends each batch to the predictor's model of
the same name. The hooks do what the host's defaults do (V1 instances as one array, V2 inputs as they
are; outputs unchanged), as KServe's transformer in ``kserve_hop.py`` keeps its defaults: the hop is what
is measured. ``inline`` runs the pipeline on the server's event loop, at once, without a queue: the
host's ``predict`` awaits the predictor there anyway, and the trivial hooks would cost more as a trip to
a hook thread than they do in place.
"""

from modelhost import hookimpl
from modelhost.defaults import instances_as_array


def pass_through(request):
    return instances_as_array(request.instances) if request.protocol == "v1" else request.inputs


class PassThrough:
    """Synchronous hooks, run on the event loop (``inline``) in the server process."""

    @hookimpl
    def settings(self):
        return {"inline": True}

    @hookimpl
    def preprocess(self, request):
        return pass_through(request)

    @hookimpl
    def postprocess(self, outputs):
        return outputs


class PassThroughQueued(PassThrough):
    """The same hooks without ``inline``: requests wait in the model's queue, the hooks go to hook threads."""

    @hookimpl
    def settings(self):
        return {}


class PassThroughAsync:
    """``async def`` hooks: never sent to a thread, in the server process (``inline``) or a worker."""

    @hookimpl
    def settings(self):
        return {"inline": True}

    @hookimpl
    async def preprocess(self, request):
        return pass_through(request)

    @hookimpl
    async def postprocess(self, outputs):
        return outputs
