"""The plugin contract: the hooks a model plugin implements.

A plugin is a module, a class (instantiated once with no arguments) or an
object whose functions are marked with ``@modelhost.hookimpl``. Each model has
its own plugin manager holding that plugin and the host's defaults, so two
models can never answer for each other. Only ``predict`` is required.

One request flows ``preprocess`` -> ``predict`` -> ``postprocess``. ``predict``
always works on a batch whose leading dimension is the number of instances,
while pre- and post-processing see one request at a time; that is what lets the
host gather several requests into one ``predict`` call. Every argument and
return value must be picklable (NumPy arrays, lists, dicts, strings), because
the hooks may run in another process than the HTTP server.

A hook may be a plain function or ``async def``, and a plugin may mix them.
The host calls a plain one from a thread pool, never on the event loop, and
may call it from several threads at once. It awaits an ``async def`` one on
the event loop of the process that serves the model (the server's, or its
worker's), up to ``max_concurrency`` batches at once, so it must never block:
await I/O, and hand heavy computation to a thread. Only ``generate`` may
be a generator (or an async generator); the other hooks' are refused.
An implementation may accept any subset of a hook's arguments. The type
hints say what the host passes and takes; ``Any`` is whatever the plugin's
own hooks agree on (arrays, dicts of arrays, lists). ``preprocess``,
``predict``, ``explain`` and ``postprocess`` must return their value: None
from a plugin's own is a forgotten ``return``, answered 500 naming the hook
and logged once with the file and line of its definition, never handed to
the host's default as pluggy would.
"""

from typing import Any, Optional

import pluggy

from .predictor import PredictorClient
from .request import InferenceRequest

hookspec = pluggy.HookspecMarker("modelhost")
hookimpl = pluggy.HookimplMarker("modelhost")


@hookspec
def load(name: str, settings: dict[str, Any], model_dir: Optional[str]) -> None:
    """Prepare the model before it serves any request: read weights, build sessions.

    Receives ``name``, the model's name as served, ``settings``, how the
    host serves it: the plugin's own ``settings`` overridden by the command
    line, with every key of ``settings`` filled in (``replicas`` is 0 when the
    model runs in the server process), and ``model_dir``: for a model format's
    plugin (``modelhost.formats``), the absolute path of the folder holding the
    model's files (``--model_dir``), else None. A plugin can size its thread
    pools from ``replicas`` so that replicas do not fight over cores. Returns nothing.
    Called once in each process that serves the model, before its first
    request; an exception here marks the model not ready and is reported with
    its cause. Default: nothing to do.
    """


@hookspec
def unload(name: str) -> None:
    """Release what ``load`` took (sessions, GPU memory, files) once the model stops serving here.

    Receives ``name``, the model's name as served. Returns nothing. Called once
    in each process that loaded the model, when it stops serving it: a
    repository unload, the old version after an upgrade, the server's
    shutdown. It has 5 seconds (a worker process is then killed; in the server
    process the host stops waiting); an exception is logged, never fatal. A
    worker that died or was killed for a stuck hook is not called.
    Default: nothing to do.
    """


@hookspec(firstresult=True)
def healthy(name: str) -> Optional[bool]:
    """Whether the model can serve now: its own health, beyond having loaded.

    Receives ``name``. Returns True when it can. Asked every
    ``health_interval_s`` (5 by default) in each process that serves the
    model, and once before it first serves; False, anything else that is not
    true, an exception, or no answer within ``--timeout`` makes it not ready
    (``/v2/models/NAME/ready``, ``/v1/models/NAME`` and ``/v2/health/ready``
    answer 503, and requests get 503) until it answers True again; each change
    is logged once, with the reason. In worker mode each replica answers for
    itself, and one that is not healthy gets no requests.
    Default: none; a model without it is healthy while it is loaded.
    """


@hookspec(firstresult=True)
def metadata(name: str) -> Optional[dict[str, Any]]:
    """Describe the model for ``GET /v2/models/NAME``.

    Receives ``name``. Returns a dict with any of ``inputs`` and ``outputs``
    (lists of ``{"name", "datatype", "shape"}``: a datatype of the protocol's,
    the shape with its batch dimension, -1 for a dimension of any size; an
    input may add ``"optional": true``, as in Triton's model configuration),
    ``platform`` and ``versions``. When a plugin declares exactly one output,
    a bare array returned by ``postprocess`` is served under that output's name.
    Called once, after ``load``; a declaration that is not one (no name, an
    unknown datatype, a name twice) keeps the model from serving, with the reason.

    Declared inputs are a contract, as Triton holds a model's configuration
    to one: a model with no ``preprocess`` of its own, whose ``predict`` gets
    a V2 request's tensors as sent, has each V2 request checked against them
    before any hook runs. An input it does not declare, a declared one
    missing (not optional), another datatype (FP64 for FP32 too), or a shape
    that does not fit is answered 400 naming the input. A model with its own
    ``preprocess`` takes requests as that hook chooses (converting
    datatypes, one input of two), so it checks them there (with
    ``modelhost.protocol.declared.DeclaredInputs``, to check as the host
    does, as the ONNX format's plugin does); V1 requests carry
    no tensors to check. Outputs are not refused: one other than declared is
    answered as it is, and logged once. Nothing is checked for a model that
    declares nothing.
    Default: ``{}``, the model declares nothing.
    """


@hookspec(firstresult=True)
def settings(name: str, model_dir: Optional[str]) -> Optional[dict[str, Any]]:
    """The plugin's own defaults for how the host serves it; the command line wins.

    Receives ``name`` and ``model_dir``, as ``load`` does. Returns a dict with any of ``replicas`` (worker
    processes, at least 1), ``max_batch_size`` (requests gathered into one
    ``predict``), ``max_batch_wait_ms`` (how long a batch may wait for
    more), ``max_queue_size`` (requests that may wait; more get 503) and
    ``inline`` (true: in the server process, run the hooks on the event
    loop itself, for a model whose hooks take microseconds; a slow hook
    then holds up every request and health check), ``max_concurrency``
    (batches a model with ``async def`` hooks runs at once in each process,
    and generations every model does; ``max_queue_size`` more may wait),
    ``health_interval_s`` (seconds between ``healthy`` checks), ``runner``
    (``"workers"``, or ``"ray"``: Ray Serve replicas) and, on Ray,
    ``ray_actor_options`` and ``autoscaling_config`` (dicts, as Ray Serve
    takes them). Called before ``load``, where the plugin runs: in worker
    mode, in the first worker, so the server never imports the plugin
    itself; on Ray, in a Ray task first, to place the replicas.
    Default: ``{}``: one worker, no batching, 256 requests may wait.
    """


@hookspec(firstresult=True)
def preprocess(request: InferenceRequest) -> Any:
    """Turn one request into the model's input batch.

    Receives ``request``, a :class:`modelhost.InferenceRequest`:
    ``request.protocol`` is ``"v1"`` or ``"v2"``; V1 requests carry
    ``request.instances`` (the JSON list as sent), V2 requests carry
    ``request.inputs`` (input name -> ``numpy.ndarray``, BYTES as an object
    array of ``bytes``); ``request.headers`` its HTTP headers, names lower-cased.
    Returns an array, or a dict of arrays, whose leading
    dimension counts the instances in this request. Raise
    :class:`modelhost.InvalidInput` for input the model cannot take (answered
    with 400). Default: V1 instances as one array (an object array when they
    are not rectangular); V2 inputs as the dict of arrays, checked against the
    declared inputs (``metadata``).
    """


@hookspec(firstresult=True)
def predict(inputs: Any, predictor: Optional[PredictorClient]) -> Any:
    """Run the model on a batch. The one hook every plugin must implement, unless it is a transformer.

    Receives ``inputs``, what ``preprocess`` returned, possibly several
    requests' worth concatenated along the leading dimension, and
    ``predictor``: with ``--predictor_host`` (the transformer role), a
    :class:`modelhost.PredictorClient` whose ``await predictor.infer(inputs)``
    runs the predictor on a batch, else None. Returns an array or a dict of
    arrays with the same leading dimension, one row per instance.
    Default: none; in the transformer role, ``await predictor.infer(inputs)``.
    """


@hookspec(firstresult=True)
def explain(inputs: Any) -> Any:
    """Explain the model's predictions for a batch: KServe V1's ``:explain`` verb.

    Receives ``inputs``, what ``preprocess`` returned, as ``predict`` does. Returns
    the explanations, one row per instance, which ``postprocess`` then sees as
    its ``outputs`` (``request.verb`` is ``"explain"``); the answer carries them as
    ``{"explanations": [...]}``. Default: none; a model without it answers
    ``POST /v1/models/NAME:explain`` with 501, as KServe does.
    """


@hookspec(firstresult=True)
def generate(inputs: Any, request: InferenceRequest) -> Any:
    """Generate one request's answer piece by piece: each piece goes to the client as soon as it is yielded.

    A generator (``def`` with ``yield``) or an async generator (``async def``
    with ``yield``). Receives ``inputs``, what ``preprocess`` returned for this
    one request (never batched with others; the default preprocess gives an
    OpenAI completion's ``prompt``, a chat's ``messages``, a V2 request's
    tensors), and the ``request``: ``request.generation`` holds an OpenAI
    request's ``max_tokens``, ``temperature``, ``top_p``, ``stop``, ``seed``
    (:class:`modelhost.Generation`), ``request.parameters`` a V2 request's.
    Returns the pieces as it yields them: text (``str``, or a :class:`modelhost.Piece` that counts its
    tokens), ``bytes``, or a dict of output name -> array (a V2 response's
    tensors, as ``predict`` returns for one row). ``postprocess``, when the
    plugin has one, sees each piece as its ``outputs``.

    The host reads it as the client does: a slow client pauses it between
    pieces (at most 16 wait for the client), ``--timeout`` bounds the wait
    for each piece, and a client that leaves, the host's own limits
    (``max_tokens``, a ``stop`` sequence) and the server's shutdown close it,
    so its ``finally`` runs, in whichever process runs it. A synchronous one
    runs each step on a hook thread. Served on the OpenAI-compatible
    completions routes, Triton's ``generate`` and ``generate_stream``,
    ``infer_stream``, and gRPC ``ModelStreamInfer``; a model with
    ``generate`` and no ``predict`` answers ``infer`` with all its pieces as
    one response. Default: none.
    """


@hookspec(firstresult=True)
def begin(inputs: Any, request: InferenceRequest) -> Any:
    """Start one sequence that the host steps together with others: continuous batching, with ``step``.

    A plugin that implements ``begin`` and ``step`` generates through them
    instead of ``generate``: the host keeps every active sequence of the model
    and advances them all at once, one ``step`` at a time; a new request's
    sequence joins at the next step, one that ends or whose client leaves is
    out before the next. Receives what ``generate`` would (``inputs``, what
    ``preprocess`` returned for this request, and the ``request``). Does what
    a sequence needs before its first step (a language model's prefill: the
    prompt read into its KV cache). Returns the sequence's state, anything
    the plugin likes: ``step`` and ``end`` get it back. Raise
    :class:`modelhost.InvalidInput` for input the model cannot take (400).
    When the settings give a ``memory_budget``, as many sequences are active
    as fit in it at ``sequence_memory`` each (the most one sequence holds, in
    the plugin's own units, a KV cache's bytes say), and the rest wait in
    order of arrival; a step takes at most ``max_batch_size`` of them.
    Default: none.
    """


@hookspec(firstresult=True)
def step(states: list[Any]) -> Any:
    """Advance every active sequence one step, in one call (one batched forward pass of a language model).

    Receives ``states``, the states ``begin`` returned, one for each sequence
    in this step (the sequences and their order change from step to step).
    Returns a list as long, in the same order, one entry for each: its next
    piece (as ``generate`` yields them: ``str``, a :class:`modelhost.Piece`,
    ``bytes``, or a dict of arrays), ``None`` for nothing this step (a token
    held back until its character is whole), ``modelhost.END`` once the
    sequence has ended, or an exception, which fails that sequence alone with
    its error (raising fails every sequence of the step). The host's
    ``max_tokens``, ``stop``, ``postprocess``, windows for slow clients and
    ``--timeout`` apply as for ``generate``. Default: none.
    """


@hookspec
def end(state: Any) -> None:
    """Release a sequence's resources (its KV cache): it ended, was stopped by the host, failed, or its client left.

    Receives the ``state`` that ``begin`` returned. Runs before the next
    step, once for every sequence that ``begin`` started. Returns nothing;
    an exception is logged, and the others go on. Default: none.
    """


@hookspec(firstresult=True)
def embed(texts: list[str]) -> Any:
    """Embed texts: one vector per text, for OpenAI-compatible ``embeddings``.

    Receives ``texts``, a list of strings, from one request or, with adaptive
    batching (``max_batch_size``), several requests' together: what
    ``preprocess`` returned for each (the default returns the request's texts;
    a plugin's own sees ``request.verb == "embed"``). Returns a 2-D
    array (or a list of vectors) with one row per text. OpenAI's
    ``dimensions`` is honoured where the model's ``metadata`` says its vectors
    can be shortened (``"embeddings": {"shortenable": true}``, as a
    Matryoshka-trained model's can): the host keeps each vector's first
    ``dimensions`` components, scaled back to unit length; elsewhere a
    ``dimensions`` other than the vectors' own is a 400. Default: none; a
    model without it answers the embeddings route with 400.
    """


@hookspec(firstresult=True)
def postprocess(outputs: Any, request: InferenceRequest) -> Any:
    """Turn the model's outputs for one request into the response.

    Receives ``outputs``, this request's rows of what ``predict`` returned, and
    the ``request`` as ``preprocess`` saw it. Returns what the protocol sends:
    an array or list (V1 ``predictions``; one V2 output tensor) or a dict of
    output name -> array (V2 output tensors; V1 rows of objects).
    Or a :class:`modelhost.Response` holding that with V2 response and
    per-output parameters and HTTP headers for the answer.
    Default: ``outputs`` unchanged.
    """
