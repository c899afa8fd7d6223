"""The ceiling of candidate gRPC transports for a small unary ModelInfer echo, beside REST's, on this machine.

    PYTHONPATH=host python bench/grpc_ceiling.py [--runs 2] [--seconds 3] [--no-pin]

Each candidate is a bare server in a subprocess (this file, ``--serve KIND``) on
127.0.0.1 answering /inference.GRPCInferenceService/ModelInfer with a prebuilt
ModelInferResponse (bytes in, bytes out; "+parse" rows parse the request and
serialize its echo): grpc.aio with a generic handler (default options, tuned
options, GRPC_POLL_STRATEGY=poll, uvloop), grpc's sync server (1, 4, 16 workers;
and 64 workers handing each call to an event loop, "+loop", as modelhost's
pipeline would need), grpclib, and gRPC by hand over the ``h2`` package on
asyncio. Against them: a bare Tornado handler POSTed V2 JSON, answering prebuilt bytes (the REST ceiling), and
modelhost itself (echo plugin, --replicas 0) over gRPC and REST V2, and KServe 0.21's gRPC (compare.py's
peer and its environment, installed on first use), which issue 39 asks modelhost to beat by 1.3x. gRPC rows run
under h2load, REST rows under wrk, as compare.py does (peers/h2load.py, peers/wrk.py),
at c = 1, 8, 64, round-robin over candidates. Each server is pinned to CPU 1 and
the loader to CPU 0 (--no-pin: neither). Each candidate first answers one real
call (grpc's client via peers/grpc_infer.infer, or urllib), checked to echo X.
Needs modelhost's dependencies, h2load and wrk (apt-get install -y nghttp2-client
wrk); grpclib, h2 and uvloop rows are skipped when the package is missing.
"""

import argparse
import asyncio
import importlib.util
import json
import os
import shlex
import statistics
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from peers import cpu, environment, grpc_infer, h2load, raw_ort, servers, wrk  # noqa: E402
from peers.servers import ECHO_PLUGIN, Server, free_port  # noqa: E402

SERVICE, METHOD = "inference.GRPCInferenceService", "ModelInfer"
X = (np.arange(16, dtype=np.float32) / 4 - 2).reshape(1, 16)  # compare.py's echo input
JSON = {"Content-Type": "application/json"}


def echo(message: bytes) -> bytes:
    """The "+parse" answer: parse the ModelInferRequest, serialize a ModelInferResponse echoing it."""
    from modelhost.protocol import grpc_v2
    messages = grpc_v2.messages()
    request = messages.ModelInferRequest.FromString(message)
    response = messages.ModelInferResponse(model_name=request.model_name, id=request.id)
    for tensor in request.inputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
    response.raw_output_contents.extend(request.raw_input_contents)
    return response.SerializeToString()


# ---- the servers: `grpc_ceiling.py --serve KIND PORT ANSWER_FILE [parse] [uvloop] [tuned] [workers=N]`

def serve(kind: str, port: str, answer_file: str, *options: str) -> None:
    prebuilt = Path(answer_file).read_bytes()
    answer = echo if "parse" in options else (lambda message: prebuilt)
    answer(b"")  # "+parse": builds the message classes before the first call
    if "uvloop" in options:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    if kind == "sync":
        import grpc
        from concurrent.futures import ThreadPoolExecutor
        workers = int(next(option for option in options if option.startswith("workers=")).split("=")[1])
        server = grpc.server(ThreadPoolExecutor(max_workers=workers))
        loop = asyncio.new_event_loop() if "loop" in options else None
        server.add_generic_rpc_handlers((generic_handler(
            (lambda request, context: on_loop(loop, answer, request)) if loop
            else (lambda request, context: answer(request))),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        loop.run_forever() if loop else server.wait_for_termination()
    elif kind == "tornado":
        import tornado.ioloop
        import tornado.web

        class Infer(tornado.web.RequestHandler):
            def post(self, _):
                self.set_header("Content-Type", "application/json")
                self.write(prebuilt)

        tornado.web.Application([(r"/v2/models/([^/]+)/infer", Infer)]).listen(int(port), address="127.0.0.1")
        tornado.ioloop.IOLoop.current().start()
    else:
        asyncio.run({"aio": serve_aio, "grpclib": serve_grpclib, "h2": serve_h2}[kind](int(port), answer, options))


def on_loop(loop, answer, request: bytes) -> bytes:
    """The "+loop" rows: a sync server's thread hands the call to an event loop and waits for its answer, as
    modelhost's pipeline, which lives on its event loop, would need of that server."""
    from concurrent.futures import Future
    answered = Future()
    loop.call_soon_threadsafe(lambda: answered.set_result(answer(request)))
    return answered.result()


def generic_handler(behaviour):
    import grpc
    return grpc.method_handlers_generic_handler(SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(behaviour)})


async def serve_aio(port, answer, options):
    import grpc
    tuned = [("grpc.so_reuseport", 0), ("grpc.max_concurrent_streams", 100), ("grpc.http2.bdp_probe", 0),
             ("grpc.optimization_target", "throughput")]

    async def infer(request, context):
        return answer(request)

    server = grpc.aio.server(options=tuned if "tuned" in options else [])
    server.add_generic_rpc_handlers((generic_handler(infer),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def serve_grpclib(port, answer, options):
    from grpclib.const import Cardinality, Handler
    from grpclib.encoding.base import CodecBase
    from grpclib.server import Server as GrpclibServer

    class Raw(CodecBase):  # bytes in, bytes out
        __content_subtype__ = "proto"
        encode = decode = staticmethod(lambda data, message_type: data)

    class Service:
        async def infer(self, stream):
            await stream.send_message(answer(await stream.recv_message()))

        def __mapping__(self):
            return {f"/{SERVICE}/{METHOD}": Handler(self.infer, Cardinality.UNARY_UNARY, bytes, bytes)}

    server = GrpclibServer([Service()], codec=Raw())
    await server.start("127.0.0.1", port)
    await server.wait_closed()


async def serve_h2(port, answer, options):
    """gRPC by hand: an asyncio Protocol per connection, the h2 package for HTTP/2's framing and HPACK."""
    import h2.config
    import h2.connection
    import h2.events
    path = f"/{SERVICE}/{METHOD}".encode()
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    ok, unimplemented = [(b"grpc-status", b"0")], [(b"grpc-status", b"12")]

    class GRPC(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.bodies, self.paths = transport, {}, {}
            self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
            self.h2.initiate_connection()
            transport.write(self.h2.data_to_send())

        def data_received(self, data):
            events = self.h2.receive_data(data)
            if any(isinstance(event, h2.events.ConnectionTerminated) for event in events):
                self.transport.close()  # the client's GOAWAY: its calls still open are given up
                return
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    self.paths[event.stream_id], self.bodies[event.stream_id] = dict(event.headers)[b":path"], b""
                elif isinstance(event, h2.events.DataReceived):
                    self.bodies[event.stream_id] += event.data
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    self.respond(event.stream_id)
            self.transport.write(self.h2.data_to_send())

        def respond(self, stream):
            body, called = self.bodies.pop(stream), self.paths.pop(stream)
            self.h2.send_headers(stream, headers)
            if called != path:
                return self.h2.send_headers(stream, unimplemented, end_stream=True)
            message = answer(body[5:])  # past the 5-byte gRPC frame prefix
            self.h2.send_data(stream, b"\0" + len(message).to_bytes(4, "big") + message)
            self.h2.send_headers(stream, ok, end_stream=True)

    server = await asyncio.get_running_loop().create_server(GRPC, "127.0.0.1", port)
    await server.serve_forever()


# ---- the measurement

ROWS = [  # label, --serve kind and options (None: modelhost), extra environment, the Python package it needs
    ("grpc.aio", ["aio"], {}, None), ("grpc.aio +parse", ["aio", "parse"], {}, None),
    ("grpc.aio tuned options", ["aio", "tuned"], {}, None),
    ("grpc.aio GRPC_POLL_STRATEGY=poll", ["aio"], {"GRPC_POLL_STRATEGY": "poll"}, None),
    ("grpc.aio on uvloop", ["aio", "uvloop"], {}, "uvloop"),
    *((f"grpc sync, {n} worker(s)", ["sync", f"workers={n}"], {}, None) for n in (1, 4, 16)),
    # What modelhost could move to: every call handed to the event loop, and a worker per call that may wait
    # there at once (batching gathers up to 64; a worker process's replica has many out).
    ("grpc sync, 64 workers +parse +loop", ["sync", "workers=64", "parse", "loop"], {}, None),
    ("grpclib", ["grpclib"], {}, "grpclib"), ("h2 on asyncio", ["h2"], {}, "h2"),
    ("h2 on asyncio +parse", ["h2", "parse"], {}, "h2"), ("h2 on uvloop", ["h2", "uvloop"], {}, "uvloop"),
    ("Tornado, prebuilt V2 JSON (wrk)", ["tornado"], {}, None), ("modelhost gRPC", None, {}, None),
    ("KServe 0.21 gRPC (compare.py's)", ["kserve"], {}, None),
]
KSERVE = ROWS[-1][0]


def start(folder: Path, pin: bool) -> list:
    """[(label, Server, gRPC address or REST URL)], the modelhost server twice: its gRPC row and its REST V2 one."""
    pythonpath = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ECHO_PLUGIN)]))
    targets = []
    for label, flags, env, package in ROWS:
        if package and importlib.util.find_spec(package) is None:
            print(f"!! {label}: skipped, {package} is not installed")
            continue
        port, grpc_port = free_port(), free_port()
        if flags is None:
            program = [sys.executable, "-m", "modelhost", "serve", "--host", "127.0.0.1", "--http_port", str(port),
                       "--grpc_port", str(grpc_port), "--replicas", "0", "--log-level", "WARNING", "--plugin",
                       "echo=modelhost_echo:Echo"]
        elif flags == ["kserve"]:
            kserve = servers.kserve(kserve_python(), access_logs=False)
            program, port, grpc_port = kserve.command, kserve.port, kserve.grpc_port
            env = {**env, **kserve.env}
        else:
            answer = folder / ("answer.json" if flags[0] == "tornado" else "answer.bin")
            program = [sys.executable, __file__, "--serve", flags[0], str(port), str(answer), *flags[1:]]
            grpc_port = port
        server = Server(label, (["taskset", "-c", "1"] if pin else []) + program,
                        {**os.environ, "PYTHONPATH": pythonpath, **env}, port, grpc_port)
        server.start(folder / "logs" / f"{len(targets)}.log")
        rest = f"http://127.0.0.1:{port}/v2/models/echo/infer"
        targets.append((label, server, rest if flags == ["tornado"] else f"127.0.0.1:{grpc_port}"))
        if flags is None:
            targets.append(("modelhost REST V2 (wrk)", server, rest))
    return targets


def kserve_python() -> Path:
    """compare.py's KServe environment, and the model files its server loads (it serves all of compare.py's)."""
    cache = BENCH / ".cache"
    raw_ort.point_servers_at(cache / "models")
    return environment.venv_python(cache, "kserve")


def check(label, server, address, bodies) -> int:
    """One real call, its answer checked; returns a gRPC answer's frame length, by which h2load.py counts answers."""
    deadline = time.monotonic() + 60
    while True:
        try:
            if address.startswith("http"):
                request = urllib.request.Request(address, data=bodies["rest"].read_bytes(), headers=JSON)
                with urllib.request.urlopen(request, timeout=10) as response:
                    document, length = json.loads(response.read()), 0
            else:
                document, length = grpc_infer.infer(address, bodies["grpc"])
            [got] = [output["data"] for output in document["outputs"] if output["name"] == "x"]
            if not np.allclose(np.ravel(got), X.ravel()):
                raise SystemExit(f"{label} answered, but not the echo of its input: {got}")
            return length
        except OSError:  # not listening yet, or modelhost's 503 until the model is ready
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{label} did not come up; see {server.log}")
            time.sleep(0.3)


def load(address: str, length: int, bodies: dict, clients: int, seconds: int) -> wrk.Result:
    if address.startswith("http"):
        return wrk.run(address, bodies["rest"], JSON, clients, seconds)
    return h2load.run(f"http://{address}{grpc_infer.MODEL_INFER}", bodies["grpc"], grpc_infer.HEADERS, length,
                      clients, seconds)


def write_files(folder: Path) -> dict:
    """The request bodies, and the answers the bare servers send (the "+parse" rows compute the very same)."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    request, tensor = grpc_infer.frame("echo", "x", X), {"name": "x", "shape": [1, 16], "datatype": "FP32"}
    (folder / "answer.bin").write_bytes(echo(request[grpc_infer.PREFIX:]))
    (folder / "answer.json").write_text(json.dumps({"model_name": "echo", "outputs": [{**tensor, "data": X.ravel().tolist()}]}))
    (folder / "echo-grpc.bin").write_bytes(request)
    (folder / "x-v2.json").write_text(json.dumps({"inputs": [{**tensor, "data": X.ravel().tolist()}]}))
    return {"grpc": folder / "echo-grpc.bin", "rest": folder / "x-v2.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="interleaved runs per row (default 2)")
    parser.add_argument("--seconds", type=int, default=3, help="seconds per load run (default 3)")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no taskset: server and loader float")
    parser.add_argument("--serve", nargs="+", help="(internal) KIND PORT ANSWER_FILE [OPTION...]: run one server")
    args = parser.parse_args()
    if args.serve:
        return serve(*args.serve)

    import grpc
    import modelhost
    print("command:", shlex.join([f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}", sys.executable, *sys.argv]))
    print(f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, grpcio "
          f"{grpc.__version__}, modelhost from {Path(modelhost.__file__).parent}, pinning: "
          f"{'server CPU 1, loader CPU 0' if args.pin else 'none'}", flush=True)
    folder = BENCH / ".cache" / "ceiling"
    bodies = write_files(folder)
    targets = start(folder, args.pin)
    results = {}
    try:
        lengths = [check(*target, bodies) for target in targets]
        if args.pin:
            os.sched_setaffinity(0, {0})  # h2load and wrk inherit it
        for (_, _, address), length in zip(targets, lengths):
            load(address, length, bodies, 8, 1)  # warm-up
        for run in range(args.runs):
            for clients in (1, 8, 64):
                print(f"run {run + 1}/{args.runs}, c={clients}", flush=True)
                shift = (run * 5 + clients) % len(targets)  # another order each time
                for index in [*range(shift, len(targets)), *range(shift)]:
                    label, server, address = targets[index]
                    time.sleep(0.5)
                    server_before, busy_before = server.cpu_seconds(), cpu.machine_busy_seconds()
                    try:
                        result = load(address, lengths[index], bodies, clients, args.seconds)
                    except RuntimeError as exc:
                        print(f"!! {label} c={clients}: {str(exc)[:300]}")
                        continue
                    server_cpu = server.cpu_seconds() - server_before
                    others = cpu.machine_busy_seconds() - busy_before - server_cpu - result.loader_cpu_s
                    results.setdefault((index, clients), []).append((result, server_cpu, max(others, 0.0)))
    finally:
        for _, server, _ in targets:
            server.stop()
    report([label for label, _, _ in targets], results, args)


def report(labels: list, results: dict, args) -> None:
    print(f"\nmedians of {args.runs} interleaved run(s) of {args.seconds} s (each run's calls/s in brackets); gRPC: "
          "h2load -t1 -cN -m1, REST: wrk -t1 -cN\nCPU: the server's process tree per call; others: CPU s that other "
          "processes used during the run (the worst run)\n")
    print(f"{'candidate':<34}{'c':>3}{'calls/s':>8} {'(runs)':<14}{'p50 ms':>7}{'p99 ms':>7}{'CPU µs':>7}{'errors':>7}"
          f"{'others':>7}")
    rates = {}
    for index, label in enumerate(labels):
        for clients in (1, 8, 64):
            runs = results.get((index, clients), [])
            if not runs:
                print(f"{label:<34}{clients:>3}  failed")
                continue
            rates[index, clients] = statistics.median(result.requests_per_s for result, _, _ in runs)
            median = lambda values: statistics.median(list(values))  # noqa: E731
            print(f"{label if clients == 1 else '':<34}{clients:>3}{rates[index, clients]:>8.0f} "
                  f"{'(' + ' '.join(f'{r.requests_per_s:.0f}' for r, _, _ in runs) + ')':<14}"
                  f"{median(r.p50_ms for r, _, _ in runs):>7.2f}{median(r.p99_ms for r, _, _ in runs):>7.2f}"
                  f"{median(s / max(r.requests - r.errors, 1) * 1e6 for r, s, _ in runs):>7.0f}"
                  f"{sum(r.errors for r, _, _ in runs):>7}{max(o for _, _, o in runs):>7.2f}")
    names = [base for base in ("grpc.aio", "modelhost REST V2 (wrk)", KSERVE) if base in labels]
    bases = [labels.index(base) for base in names]
    print("\ncalls/s over another row's, c = 1, 8, 64:" + "".join(f"{'/ ' + name.split(' (')[0]:>24}" for name in names))
    for index, label in enumerate(labels):
        cells = [f"{rates[index, c] / rates[base, c]:>6.2f}" if (index, c) in rates and (base, c) in rates else f"{'-':>6}"
                 for base in bases for c in (1, 8, 64)]
        print(f"  {label:<36}" + "     ".join("".join(cells[at:at + 3]) for at in range(0, len(cells), 3)))


if __name__ == "__main__":
    main()
