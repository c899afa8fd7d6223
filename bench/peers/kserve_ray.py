"""KServe 0.21's Ray integration, for ``ray_compare.py``: ``kserve.Model`` deployments on a local Ray Serve, served
by KServe's ModelServer through ``kserve.ray.RayModel``.

    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 python bench/peers/kserve_ray.py --http_port N --grpc_port M \\
        --enable_latency_logging False --num_replicas 2 --ray_actor_options '{"num_cpus": 0.5}'

Run with the ``kserve-ray`` virtual environment (``kserve[ray]==0.21.0``) and bench/peers on PYTHONPATH. As KServe's
Ray Serve guide has it: each model is a ``@serve.deployment`` class that subclasses a ``kserve.Model`` and loads it in
its ``__init__``; ``serve.run`` deploys it and gives its ``DeploymentHandle``; ``RayModel(name, handle)`` is what
``ModelServer().start`` serves. KServe's REST and gRPC servers then hand every request, parsed (a V1 dict, a V2
``InferRequest``), to ``handle.remote(body, headers=...)``, which runs ``Model.__call__`` (pre-, predict,
postprocess) in a replica. The models are compare.py's (``kserve_server.Echo``, ``kserve_server.AlexNet``).

What is set alike on both sides of the comparison, as modelhost's Ray runner sets it (``ray_cluster.py``,
``ray_runner.py``): a Ray of this process's own (``address="local"``) without the dashboard, Serve without its
HTTP proxy (requests reach the replicas through KServe's servers and the handles), the replicas' per-request
access log off, and the replicas' inter-deployment gRPC server bound to 127.0.0.1, where Serve binds it to
every interface. ``max_ongoing_requests`` is left at Serve's default: KServe's guide sets none. Per-request logs of
KServe itself are off as in ``kserve_server.py``. SIGTERM stops KServe's servers; Serve and Ray are shut down then.
"""

import argparse
import copy
import json
import os

import kserve
import ray
from kserve.logging import KSERVE_LOG_CONFIG, configure_logging
from kserve.ray import RayModel
from ray import serve

from kserve_server import AlexNet, Echo


def keep_serve_on_loopback() -> None:
    """Serve binds a replica's inter-deployment gRPC server to [::] whatever Ray's node address is."""
    try:
        from ray.serve._private import replica
    except ImportError:
        return
    bind = getattr(replica, "add_port_to_grpc_server", None)
    if bind is not None:
        replica.add_port_to_grpc_server = lambda server, address: bind(server, address.replace("[::]", "127.0.0.1"))


class Loaded:
    """A replica's ``__init__``, as in KServe's guide: the model, named, loaded where it runs."""

    def __init__(self, name: str):
        if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") == "0":
            keep_serve_on_loopback()
        super().__init__(name)
        self.load()


@serve.deployment(logging_config={"enable_access_log": False})
class EchoDeployment(Loaded, Echo):
    pass


@serve.deployment(logging_config={"enable_access_log": False})
class AlexNetDeployment(Loaded, AlexNet):
    pass


DEPLOYMENTS = {"echo": EchoDeployment, "custom-model": AlexNetDeployment}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num_replicas", type=int, default=2)
    parser.add_argument("--ray_actor_options", type=json.loads, default={"num_cpus": 0.5})
    ours = parser.parse_known_args()[0]  # KServe's own flags are parsed by kserve.model_server
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    if not os.environ.get("BENCH_ACCESS_LOGS"):
        for name in ("uvicorn.access", "kserve.trace", "kserve"):
            config["loggers"][name]["level"] = "WARNING"
    configure_logging(config)
    ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=True)
    try:
        serve.start(proxy_location="Disabled")
        models = []
        for name, deployment in DEPLOYMENTS.items():
            app = deployment.options(name=name, num_replicas=ours.num_replicas,
                                     ray_actor_options=ours.ray_actor_options).bind(name)
            handle = serve.run(app, name=name, route_prefix=None)
            model = RayModel(name, handle)
            model.load()
            models.append(model)
        kserve.ModelServer().start(models)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
