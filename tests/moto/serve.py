"""moto's server, single-threaded, on a free loopback port.

moto's stock `moto_server` is multi-threaded and was seen to let two writers win one
conditional update; one thread keeps DynamoDB's per-item atomicity. Prints the port on the
first line, and exits when its standard input closes (the test process that started it ended).
"""
import os
import sys
import threading

# S3 parts may be small, so that a test's multipart upload of a few hundred keys has several
# parts (S3 itself wants 5 MiB; the code's default is 8 MiB, lowered only by that test).
os.environ.setdefault("S3_UPLOAD_PART_MIN_SIZE", "1024")

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

# Race tests open hundreds of connections at once; one thread serves them in turn, so let
# them queue instead of timing out in the listen backlog.
BaseWSGIServer.request_queue_size = 2048


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


def watch_parent():
    sys.stdin.read()
    os._exit(0)


app = DomainDispatcherApplication(create_backend_app)
server = make_server("127.0.0.1", 0, app, threaded=False, request_handler=QuietHandler)
print(server.server_port, flush=True)
threading.Thread(target=watch_parent, daemon=True).start()
server.serve_forever()
