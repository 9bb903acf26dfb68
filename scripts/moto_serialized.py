"""moto_server, corrected for defects that DynamoDB itself does not have.

1. moto's TransactWriteItems deep-copies every table it touches, stream included, to roll back
   a cancelled transaction. That costs time in proportion to the table (a 2,000-order run slowed
   to 20 requests a second and kept slowing), races concurrent requests under the threaded
   server (a 500 "dictionary changed size during iteration", and a rollback to a copy taken
   before other requests' writes, silently losing them), and a rollback replaced the table
   object, so a stream reader holding the old one saw rolled-back records whose sequence numbers
   were later reused: phantom records, real ones skipped.
   Fix: tables are not copied; before a transaction, only the items it touches are saved, with
   the length of each touched table's stream; a cancelled transaction puts those items back and
   cuts the streams back to their length, in the same table and shard objects readers hold.
2. Requests are served one at a time, so no request sees a transaction half-applied.
3. A Query of a table (not of an index) filtered and sorted every item of the table, so each
   load of a stream cost time in proportion to the whole table. It now reads only the queried
   partition, as DynamoDB does. (Index queries still read every item; sagaflow's one index is
   queried once per timer run.)

    python moto_serialized.py HOST PORT
"""
import copy
import os
import sys
import threading
import time

from werkzeug.serving import run_simple

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.server import MotoRequestHandler


class _CopyWithoutTables:
    """The copy module as moto's DynamoDB backend sees it: a Table is "copied" as itself."""

    def __getattr__(self, name):
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value, memo=None):
        if isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)


dynamodb_models.copy = _CopyWithoutTables()
_transact_write_items = DynamoDBBackend.transact_write_items


def _touched_items(backend, transact_items):
    """(table, hash key, range key, saved copy or None) of every item the transaction names."""
    touched = []
    for entry in transact_items:
        if not isinstance(entry, dict) or len(entry) != 1:
            continue
        (_, op), = entry.items()
        table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
        if table is None:
            continue
        key = op.get("Item") if "Item" in op else op.get("Key")
        if not key or table.hash_key_attr not in key:
            continue
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = None
        if table.range_key_attr is not None:
            if table.range_key_attr not in key:
                continue
            range_key = DynamoType(key[table.range_key_attr])
        current = table.get_item(hash_key, range_key)
        touched.append((table, hash_key, range_key, copy.deepcopy(current)))
    return touched


def _transact_write_items_rolled_back_in_place(self, transact_items):
    """moto's TransactWriteItems with a rollback of only the items it touched."""
    touched = _touched_items(self, transact_items)
    streams = {}
    for table, _, _, _ in touched:
        if table.stream_shard is not None and id(table) not in streams:
            streams[id(table)] = (table.stream_shard, len(table.stream_shard.items))
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table, hash_key, range_key, saved in reversed(touched):
            if range_key is None:
                if saved is None:
                    table.items.pop(hash_key, None)
                else:
                    table.items[hash_key] = saved
            elif saved is None:
                partition = table.items.get(hash_key)
                if partition is not None:
                    partition.pop(range_key, None)
                    if not partition:
                        table.items.pop(hash_key, None)
            else:
                table.items[hash_key][range_key] = saved
        for shard, length in streams.values():
            del shard.items[length:]
        raise


DynamoDBBackend.transact_write_items = _transact_write_items_rolled_back_in_place

_query = Table.query
_all_items = Table.all_items


_UNSORTED = object()


def _query_reading_one_partition(self, hash_key, *args, **kwargs):
    """moto's Query, but a query of the table itself reads only its partition, and a query of
    an index reads the items unsorted (moto sorts the matches by the index's keys after)."""
    index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
    if index_name is None and hash_key is not None and self.range_key_attr:
        self._partition_only = hash_key
    elif index_name is not None:
        self._partition_only = _UNSORTED
    try:
        return _query(self, hash_key, *args, **kwargs)
    finally:
        self._partition_only = None


def _all_items_of_the_partition(self):
    """Every item (sorted, as moto's own), or only those of the partition a query reads."""
    partition = getattr(self, "_partition_only", None)
    if partition is None:
        return _all_items(self)
    if partition is _UNSORTED:
        if not self.range_key_attr:
            return list(self.items.values())
        return [item for items in self.items.values() for item in items.values()]
    return sorted(self.items.get(partition, {}).values(), key=lambda item: item.range_key)


Table.query = _query_reading_one_partition
Table.all_items = _all_items_of_the_partition


class Serialized:
    """Runs the wrapped WSGI app for one request at a time, its body fully read inside the lock.
    Counts requests per operation; with SAGAFLOW_MOTO_STATS=N it logs the counts every N seconds."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.counts = {}
        self.seconds = {}
        every = float(os.environ.get("SAGAFLOW_MOTO_STATS", "0") or 0)
        if every > 0:
            threading.Thread(target=self._report, args=(every,), daemon=True).start()

    def _report(self, every):
        while True:
            time.sleep(every)
            with self.lock:
                rows = sorted(self.counts.items(), key=lambda kv: -kv[1])
                print("moto requests: " + ", ".join(
                    f"{op} {n} ({self.seconds[op] / n * 1000:.1f} ms)" for op, n in rows), flush=True)

    def __call__(self, environ, start_response):
        op = environ.get("HTTP_X_AMZ_TARGET", "other").rsplit(".", 1)[-1]
        with self.lock:
            started = time.perf_counter()
            body = list(self.app(environ, start_response))
            self.counts[op] = self.counts.get(op, 0) + 1
            self.seconds[op] = self.seconds.get(op, 0.0) + time.perf_counter() - started
            return body


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, Serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
