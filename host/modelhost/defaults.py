"""The host's default hooks, registered in every model's plugin manager.

They are ``trylast``: a plugin's own implementation always answers first.
"""

import numpy as np

from .hookspecs import hookimpl


class DefaultHooks:
    @hookimpl(trylast=True)
    def preprocess(self, request):
        if request.protocol == "v1":
            return instances_as_array(request.instances)
        if request.protocol == "openai":  # a completion's prompt, a chat's messages, embeddings' texts
            generation = request.generation
            if generation is None:
                return request.instances
            return generation.prompt if generation.messages is None else generation.messages
        return request.inputs

    @hookimpl(trylast=True)
    def postprocess(self, outputs):
        return outputs


def instances_as_array(instances: list) -> np.ndarray:
    """V1 instances as one array, one row per instance.

    Instances that do not form a rectangular array of scalars (objects,
    ragged lists) become a one-dimensional object array, so the leading
    dimension still counts the instances.
    """
    try:
        array = np.asarray(instances)
        if array.dtype != object:
            return array
    except ValueError:
        pass
    array = np.empty(len(instances), dtype=object)
    for row, instance in enumerate(instances):
        array[row] = instance
    return array
