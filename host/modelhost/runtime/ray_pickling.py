"""cloudpickle's pickle-by-value registry, counted, so that Ray Serve can use it from two threads at once.

Serve makes a ``RequestRouterConfig`` whenever it builds a deployment's
config, and each one registers a module for pickling by value, pickles a
class with it and unregisters it. That happens on the thread that deploys a
model and on others of the same process: with several models on Ray, a
deployment failed now and then as another model's came up. cloudpickle keeps
a set, so when two overlap, one unregisters the module under the other,
whose own unregister then raises ("... is not registered for pickle by
value"). Counted, a module stays registered until the last one that
registered it is done.
"""

import threading
from collections import Counter


def count_pickle_by_value() -> None:
    """Replace ``ray.cloudpickle``'s register and unregister functions with counting ones, once a process."""
    from ray import cloudpickle

    if getattr(cloudpickle.register_pickle_by_value, "counted", False):
        return
    register, unregister = cloudpickle.register_pickle_by_value, cloudpickle.unregister_pickle_by_value
    holders: Counter = Counter()  # module name -> registrations not yet unregistered
    lock = threading.Lock()

    def counted_register(module) -> None:
        with lock:
            register(module)  # a set's add: registering again changes nothing, and raises as before
            holders[module.__name__] += 1

    def counted_unregister(module) -> None:
        with lock:
            holders[module.__name__] -= 1
            if holders[module.__name__] <= 0:
                del holders[module.__name__]
                unregister(module)  # raises as before for a module never registered

    counted_register.counted = True  # type: ignore[attr-defined]
    cloudpickle.register_pickle_by_value = counted_register
    cloudpickle.unregister_pickle_by_value = counted_unregister
