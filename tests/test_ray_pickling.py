"""Ray Serve's pickle-by-value registrations from two threads at once, as a server with several models on Ray
makes them (host/modelhost/runtime/ray_pickling.py)."""

import sys
import threading
import types

from modelhost.runtime.ray_pickling import count_pickle_by_value


def test_threads_registering_one_module_do_not_unregister_it_under_each_other():
    from ray import cloudpickle

    count_pickle_by_value()
    module = types.ModuleType("modelhost_pickled_by_value")
    exec("class Router:\n    pass", module.__dict__)
    sys.modules[module.__name__] = module
    cloudpickle.register_pickle_by_value(module)
    by_value = cloudpickle.dumps(module.Router)
    cloudpickle.unregister_pickle_by_value(module)
    errors, blobs = [], []

    def serialize_as_serve_does():  # serve/config.py's RequestRouterConfig._serialize_request_router_cls
        try:
            for _ in range(3000):
                cloudpickle.register_pickle_by_value(module)
                blobs.append(cloudpickle.dumps(module.Router))
                cloudpickle.unregister_pickle_by_value(module)
        except ValueError as error:
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can, so that their turns overlap
    try:
        threads = [threading.Thread(target=serialize_as_serve_does) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        del sys.modules[module.__name__]
    assert not errors
    assert set(blobs) == {by_value}  # each pickled by value, though the other thread had unregistered it
    assert module.__name__ not in cloudpickle.list_registry_pickle_by_value()
