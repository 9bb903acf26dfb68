#!/usr/bin/env python3
"""moto_server, corrected for two defects that DynamoDB itself does not have.

1. moto's TransactWriteItems deep-copies the whole table (its stream included) to roll back a
   cancelled transaction. Under moto's threaded server a concurrent request can change the table
   during that copy (a 500 "dictionary changed size during iteration"), and a rollback restores
   a copy taken before other requests' writes, silently losing them. Fix: one request at a time.
2. The rollback replaces the table object with the copy. A stream reader that took its shard
   iterator before the cancelled transaction keeps reading the old table's stream, which still
   holds the rolled-back records; their sequence numbers are then reused by later writes, so the
   reader sees phantom records and skips real ones. Fix: after a rollback, put the restored state
   back into the original table object and its stream shard, so every iterator sees it.

    python moto_serialized.py HOST PORT
"""
import os
import sys
import threading

from werkzeug.serving import run_simple

from moto.dynamodb.models import DynamoDBBackend
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler

_transact_write_items = DynamoDBBackend.transact_write_items


def _transact_write_items_rolled_back_in_place(self, transact_items):
    """moto's TransactWriteItems, but a rollback keeps the table and stream objects readers hold."""
    before = dict(self.tables)
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for name, original in before.items():
            restored = self.tables.get(name)
            if restored is None or restored is original:
                continue
            shard = original.stream_shard
            original.__dict__.update(restored.__dict__)
            if shard is not None and restored.stream_shard is not None:
                shard.items[:] = restored.stream_shard.items
                original.stream_shard = shard
            self.tables[name] = original
        raise


DynamoDBBackend.transact_write_items = _transact_write_items_rolled_back_in_place


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
