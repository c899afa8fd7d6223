"""The Ray cluster a server's Ray runners deploy to: one it starts on this machine for itself, or one it joins.

With no ``--ray_address`` the server starts a local Ray the first time a model
is placed on it, bound to 127.0.0.1, and stops it at exit. With ``auto`` or an
address it joins that cluster and leaves it running, deleting only the Serve
applications it deployed. Ray is imported here, and only once a model runs on
it, so a server without the ``ray`` extra never needs it. Serve runs without
its HTTP proxy: requests reach the deployments through the server's own front
ends and Serve's handles.
"""

import asyncio
import logging
import os
import threading
from typing import Any, Callable, Optional

from .ray_pickling import count_pickle_by_value

log = logging.getLogger("modelhost")

# Ray's switch for a Ray that is not a cluster: it then takes the loopback address as the node's and binds
# every server of it there. Ray binds them to every interface otherwise, even with --node-ip-address 127.0.0.1.
SINGLE_MACHINE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK = ("127.", "localhost", "[::1]")
# Three of the switches RAY_SERVE_THROUGHPUT_OPTIMIZED turns on (Ray's "high throughput" guide), without its
# direct ingress, which would open HTTP and gRPC ports on every replica: handles call replicas over Serve's
# gRPC channel instead of through Ray's object store, and router and replica code run on their processes'
# event loops, not on threads of their own. Measured with echo at c=8: 2.1x the requests/s of Serve's defaults.
# A replica's gRPC server takes what the handle's channel sends (2 GiB, gRPC's most): its 4 MiB default
# refuses a batch of eight images.
SERVE_DATA_PATH = {"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1", "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
                   "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
                   "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(2**31 - 1)}


class PlacementError(Exception):
    """A deployment that no node of the cluster can hold."""


class RayCluster:
    def __init__(self, address: Optional[str]):
        self.address = address  # None: a local Ray of this server's own
        self.connected = False
        self.connecting = asyncio.Lock()
        self.applications: set[str] = set()  # the Serve applications this server deployed and has not deleted
        # One deployment at a time, from its config to its replicas up: serve.run is Serve's driver API, made for
        # one caller, and this server's runners deploy from threads of their own.
        self.deploying = threading.Lock()

    @property
    def started_here(self) -> bool:
        return self.address is None

    async def connect(self) -> None:
        """Start or join Ray, and Serve on it, once; ConnectionError says why it cannot be reached."""
        async with self.connecting:
            if not self.connected:
                await asyncio.to_thread(self.connect_now)
                self.connected = True

    def connect_now(self) -> None:
        if self.address is None or self.address.startswith(LOOPBACK):
            os.environ.setdefault(SINGLE_MACHINE, "0")  # read when ray is imported, and by the processes it starts
        # The server drains on SIGTERM itself; Ray's handler would first print a stack trace for it.
        os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
        for name, value in SERVE_DATA_PATH.items():  # read when Serve is imported: the router's are this process's
            os.environ.setdefault(name, value)
        import ray
        from ray import serve

        count_pickle_by_value()
        # Replicas' output comes to the server's stderr (log_to_driver), where a worker process's would go.
        # "local": a Ray of its own, even where another runs on this machine (no address would join that one).
        ray.init(address=self.address or "local", include_dashboard=False, configure_logging=False,
                 log_to_driver=True)
        serve.start(proxy_location="Disabled")
        log.info("placing models on %s (Ray %s)", "a local Ray" if self.started_here else
                 f"the Ray cluster at {self.address}", ray.__version__)

    @staticmethod
    def replica_env(actor_options: dict) -> dict:
        """``actor_options`` with the data path's switches in its runtime environment: a cluster this server
        joined started its processes with environments of its own."""
        runtime_env = actor_options.get("runtime_env", {})
        env_vars = {name: os.environ.get(name, value) for name, value in SERVE_DATA_PATH.items()} | \
            runtime_env.get("env_vars", {})
        return {**actor_options, "runtime_env": {**runtime_env, "env_vars": env_vars}}

    def check_placement(self, needs: dict[str, float]) -> None:
        """PlacementError unless some node alive now has at least ``needs`` of each resource."""
        import ray

        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        if not any(all(resources.get(name, 0) >= amount for name, amount in needs.items()) for resources in nodes):
            raise PlacementError(f"no node of the Ray cluster can fulfil the resource request {needs} of each "
                                 f"replica (nodes: {nodes})")

    def deploy(self, application: str, make_app: Callable[[], Any]) -> Any:
        """Make a Serve application and run it, blocking until its replicas are up; its DeploymentHandle."""
        from ray import serve

        self.applications.add(application)
        with self.deploying:
            return serve.run(make_app(), name=application, route_prefix=None)

    def status(self, application: str, deployment: str) -> Optional[Any]:
        """Serve's word on a deployment now (its replica states): None once it is gone."""
        from ray import serve

        app = serve.status().applications.get(application)
        return app.deployments.get(deployment) if app else None

    def delete(self, application: str) -> None:
        from ray import serve

        if application in self.applications:
            self.applications.discard(application)
            serve.delete(application)

    async def stop(self) -> None:
        """Delete what this server deployed; stop the Ray it started, or leave the cluster it joined."""
        if not self.connected:
            return
        await asyncio.to_thread(self.delete_all)
        import ray

        # On the thread that runs the event loop: Ray aborts the process when another thread shuts it down.
        ray.shutdown()  # stops the processes of a Ray that ray.init started; leaves a cluster it joined
        self.connected = False

    def delete_all(self) -> None:
        from ray import serve

        for application in list(self.applications):
            try:
                self.delete(application)
            except Exception as error:  # the cluster may be gone already: nothing of it is left to delete then
                log.warning("could not delete Serve application %r: %s", application, error)
        if self.started_here:
            serve.shutdown()
