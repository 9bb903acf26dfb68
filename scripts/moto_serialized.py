#!/usr/bin/env python3
"""moto_server, handling one request at a time.

moto's TransactWriteItems deep-copies the whole table (its stream included) to roll back a
cancelled transaction. Under moto's threaded server, a concurrent request can change the table
during that copy (a 500 "dictionary changed size during iteration"), and a rollback restores a
copy taken before other requests' writes, silently losing them and their stream records.
DynamoDB never does that, so sagaflow's tests serialize requests: one lock around the app.

    python moto_serialized.py HOST PORT
"""
import os
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler


class Serialized:
    """Runs the wrapped WSGI app for one request at a time, its body fully read inside the lock."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        with self.lock:
            return list(self.app(environ, start_response))


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, Serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
