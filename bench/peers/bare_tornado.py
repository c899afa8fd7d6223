"""The ceiling: a bare Tornado handler that parses the V1 body and writes the instances back.

    python bench/peers/bare_tornado.py PORT

One process, no model, no thread pool, no validation: what one Python process
with Tornado can answer at best. It uses orjson, as modelhost does, so the gap
to modelhost's echo V1 is the host's own work, not the JSON library.
"""

import logging
import os
import sys

import orjson
import tornado.ioloop
import tornado.web


class Predict(tornado.web.RequestHandler):
    def post(self):
        body = orjson.loads(self.request.body)
        self.set_header("Content-Type", "application/json")
        self.write(orjson.dumps({"predictions": body["instances"]}))


class Alive(tornado.web.RequestHandler):
    def get(self):
        self.write({"status": "alive"})


def main() -> None:
    if os.environ.get("BENCH_ACCESS_LOGS"):  # Tornado's own access log, one line per request
        logging.basicConfig(level=logging.INFO)
    app = tornado.web.Application([(r"/", Alive), (r"/v1/models/echo:predict", Predict)])
    app.listen(int(sys.argv[1]), address="127.0.0.1")
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
