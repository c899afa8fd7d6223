"""A batch of requests through one model, as adaptive batching hands it over: each request's outcome.

Runs where the model runs (a hook thread, a worker process, a Ray replica),
after the runner's queue has gathered the batch (``runtime.batching``).
"""

import logging

from .errors import ModelhostError, PluginError
from .model import Model, arguments
from .request import InferenceRequest
from .rows import check_rows, concatenate, groups_that_concatenate, rows, split

log = logging.getLogger("modelhost")


async def infer_batch(model: Model, requests: list[InferenceRequest]) -> list:
    """Each request's result, or the error that is its answer alone.

    With batching off (``max_batch_size`` 1), each request goes through
    ``infer`` on its own. With it on, preprocess runs per request, the
    inputs are concatenated along the leading dimension so that predict
    runs once, and its outputs are split back by each request's rows for
    postprocess; inputs that cannot be concatenated (shapes that differ
    beyond the first dimension) are predicted apart. Each request's
    ``timings`` get the seconds of each stage; a batch's predict counts for
    each of its requests.
    """
    if model.settings.max_batch_size <= 1:
        return [await outcome(model, request) for request in requests]
    outcomes: list = [None] * len(requests)
    prepared = {}
    for index, request in enumerate(requests):
        try:
            inputs = await model.prepare(request)
            prepared[index] = (inputs, rows(inputs), model.verb(request))
        except ModelhostError as error:
            outcomes[index] = error
    for group in groups_that_concatenate(prepared):
        try:
            parts = await predict_together(model, [prepared[index] for index in group], [requests[i] for i in group])
        except ModelhostError as error:
            parts = [error] * len(group)
        for index, part in zip(group, parts):
            try:
                outcomes[index] = part if isinstance(part, ModelhostError) else model.respond(await model.timed(
                    [requests[index]], "postprocess", outputs=part, request=requests[index]
                ), requests[index])
            except ModelhostError as error:
                outcomes[index] = error
    return outcomes


async def outcome(model: Model, request: InferenceRequest):
    """The request's result, or the error that answers it."""
    try:
        return await model.infer(request)
    except ModelhostError as error:
        return error


async def predict_together(model: Model, prepared: list, requests: list[InferenceRequest]) -> list:
    """Run the group's verb (each group has one) once for all its requests' inputs."""
    hook = prepared[0][2]
    if len(prepared) == 1:
        outputs = await model.timed(requests, hook, **arguments(prepared[0][0], model.predictor))
        check_rows(outputs, prepared[0][1], model.name, hook)
        return [outputs]
    sizes = [size for _, size, _ in prepared]
    log.debug("model %r: predicting a batch of %d requests, %d rows", model.name, len(prepared), sum(sizes))
    try:
        batch = concatenate([inputs for inputs, _, _ in prepared])
    except (ValueError, KeyError, TypeError) as exc:
        raise PluginError(f"model {model.name!r}: preprocess returned inputs that do not batch: {exc}") from None
    outputs = await model.timed(requests, hook, **arguments(batch, model.predictor))
    check_rows(outputs, sum(sizes), model.name, hook)
    return split(outputs, sizes)
