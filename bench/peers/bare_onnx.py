"""The least a Tornado server can do for AlexNet's V2 binary body: a bare handler, in one of three ways.

    python bench/peers/bare_onnx.py PORT none|loop|thread [--whole-bodies]

``none`` reads the body and answers without a model: the HTTP exchange alone.
``loop`` runs ``session.run`` on the event loop, which no server that answers
other requests meanwhile can do; ``thread`` hands it to a thread, as such a
server must. Both answer the top-5 as JSON. The session is opened as every
server in the comparison opens it (``sessions.py``, ``$BENCH_ALEXNET_ONNX``).
``--whole-bodies`` serves it on modelhost's HTTP/1.1 server, which gathers a
body whole (modelhost.http.connection), rather than on Tornado's, which reads
it in 64 KB pieces: the handler stays bare, the body's way in is modelhost's.
"""

import asyncio
import sys

import numpy as np
import orjson
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web
from modelhost.http.httpserver import HTTPServer

import sessions


class Infer(tornado.web.RequestHandler):
    def initialize(self, mode: str, session) -> None:
        self.mode, self.session = mode, session

    async def post(self):
        if self.mode == "none":
            self.write(orjson.dumps({"bytes": len(self.request.body)}))
            return
        offset = int(self.request.headers["Inference-Header-Content-Length"])
        image = np.frombuffer(self.request.body, np.float32, offset=offset).reshape(1, *sessions.IMAGE_SHAPE)
        if self.mode == "loop":
            logits = sessions.run(self.session, image)
        else:
            logits = await tornado.ioloop.IOLoop.current().run_in_executor(None, sessions.run, self.session, image)
        scores, indices = sessions.top5(logits)
        self.write(orjson.dumps({"scores": scores, "indices": indices}, option=orjson.OPT_SERIALIZE_NUMPY))


def main() -> None:
    port, mode, options = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    if mode not in ("none", "loop", "thread") or options not in ([], ["--whole-bodies"]):
        raise SystemExit(__doc__)
    session = None if mode == "none" else sessions.alexnet_session()
    app = tornado.web.Application([(r"/v2/models/custom-model/infer", Infer, {"mode": mode, "session": session})])
    if options:
        asyncio.run(serve_whole_bodies(app, port))
    else:
        tornado.httpserver.HTTPServer(app).listen(port, address="127.0.0.1")
        tornado.ioloop.IOLoop.current().start()


async def serve_whole_bodies(app: tornado.web.Application, port: int) -> None:
    await HTTPServer(app, max_body_size=2**30).listen(tornado.netutil.bind_sockets(port, "127.0.0.1"))
    await asyncio.Event().wait()


if __name__ == "__main__":
    main()
