"""KServe 0.21 in both roles of the transformer hop, for ``transformer_hop.py``.

    python bench/peers/kserve_hop.py --role predictor --http_port N --grpc_port M --enable_latency_logging False
    python bench/peers/kserve_hop.py --role transformer --http_port N --grpc_port M --enable_latency_logging False \\
        --predictor_host 127.0.0.1:P --predictor_protocol v1

Run with KServe's virtual environment and bench/peers on PYTHONPATH. The predictor is compare.py's
echo (``kserve_server.Echo``: a plain ``predict`` that returns the V1 instances as the predictions).
The transformer is a ``kserve.Model`` named ``echo`` with trivial ``preprocess`` and ``postprocess`` and
KServe's own ``predict``, which sends the request to ``--predictor_host`` (``ModelServer`` reads the
``--predictor_*`` flags itself). Per-request logs are off as in ``kserve_server.py``.
"""

import argparse
import copy
import os

import kserve
from kserve.logging import KSERVE_LOG_CONFIG, configure_logging

from kserve_server import Echo


class PassThrough(kserve.Model):
    """A transformer that changes nothing: the hop to the predictor is all it does."""

    def load(self):
        self.ready = True

    async def preprocess(self, payload, headers=None):
        return payload

    async def postprocess(self, result, headers=None, response_headers=None):
        return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["predictor", "transformer"], required=True)
    role = parser.parse_known_args()[0].role  # KServe's own flags are parsed by kserve.model_server
    config = copy.deepcopy(KSERVE_LOG_CONFIG)
    if not os.environ.get("BENCH_ACCESS_LOGS"):
        for name in ("uvicorn.access", "kserve.trace", "kserve"):
            config["loggers"][name]["level"] = "WARNING"
    configure_logging(config)
    model = (Echo if role == "predictor" else PassThrough)("echo")
    model.load()
    kserve.ModelServer().start([model])


if __name__ == "__main__":
    main()
