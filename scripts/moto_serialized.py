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
   partition, as DynamoDB does.
4. Even one partition was sorted whole for every Query, so loading a hot stream (a SKU's stock,
   written by every order) cost time in proportion to its length, and more with every order of
   a long chaos run: the newest 2 items of a 5,000-item partition took 82 ms. DynamoDB reads a
   key range in time proportional to what it returns. Now each partition keeps its sort keys in
   order as they are written, and a Query of the table finds its first key by bisection and
   reads only up to its Limit: 16 ms, as for a short partition. (A key of the wrong type still
   takes moto's own path and answer.)
5. A Query of an index read every item of the table. Each table now keeps the items that carry
   an index's hash key attribute (the index's items, as DynamoDB's sparse index does), and an
   index Query reads only those.
6. A Scan sorted the whole table for every page, then walked to the page's start key: 11 s a
   page at 250,000 items, so checking a 10,000-order run, which reads its events back several
   times, would have taken over an hour.
   The table's items are now sorted once per change of the table, and a page starts by bisection.
7. moto serializes every response by walking the service model, and an AttributeValue (a
   structure of ten members) cost ten lookups per attribute: half of the time of each request.
   Values that are already in DynamoDB's wire form (strings, numbers, booleans, nulls, sets of
   strings or numbers, maps and lists of those) are written as they are; anything else, such as
   binary, still goes through moto's serializer. The per-request log line is not written.

    python moto_serialized.py HOST PORT
"""
import bisect
import copy
import logging
import os
import sys
import threading
import time
from collections import defaultdict

from werkzeug.serving import run_simple

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import RESULT_SIZE_LIMIT, Table
from moto.core.serialize import BaseJSONSerializer
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
        rest = getattr(self, "_scan_rest", None)
        return _all_items(self) if rest is None else rest
    if partition is _UNSORTED:
        if not self.range_key_attr:
            return list(self.items.values())
        if getattr(self, "_index_hash_attrs", None) is None:
            return [item for items in self.items.values() for item in items.values()]
        attrs = _index_hash_attrs(self)
        if attrs != self._index_hash_attrs:
            # An index added since the table was created (UpdateTable): index what it covers.
            self._index_hash_attrs = attrs
            self._index_items = {}
            for items in self.items.values():
                for item in items.values():
                    _index_item(self, item)
        return list(self._index_items.values())
    return sorted(self.items.get(partition, {}).values(), key=lambda item: item.range_key)


def _cast(key):
    """The Python value a key sorts by, as moto compares keys."""
    return key.cast_value


class _Partition(dict):
    """The items of one hash key, which also keeps their range keys in order (items are mostly
    written in increasing key order, so an append keeps it; anything else re-sorts on the next
    read) and tells its table which items belong to an index."""

    __slots__ = ("table", "_keys")

    def __init__(self, table):
        super().__init__()
        self.table = table
        self._keys = []

    def __setitem__(self, key, item):
        keys = self._keys
        if keys is not None and key not in self:
            if not keys or keys[-1] < key:
                keys.append(key)
            else:
                self._keys = None
        super().__setitem__(key, item)
        _index_item(self.table, item)
        self.table._scan_order = None

    def __delitem__(self, key):
        item = self[key]
        super().__delitem__(key)
        self._keys = None
        _unindex_item(self.table, item)
        self.table._scan_order = None

    def pop(self, key, *default):
        if key not in self:
            return super().pop(key, *default)
        item = super().pop(key)
        self._keys = None
        _unindex_item(self.table, item)
        self.table._scan_order = None
        return item

    def _dirty(*_args, **_kwargs):
        raise NotImplementedError("moto changed how it writes partitions; see moto_serialized.py")

    update = setdefault = popitem = clear = _dirty

    def sorted_keys(self):
        if self._keys is None:
            self._keys = sorted(self.keys(), key=_cast)
        return self._keys


def _index_hash_attrs(table):
    return {key["AttributeName"] for index in table.all_indexes() for key in index.schema
            if key["KeyType"] == "HASH"}


def _index_item(table, item):
    attrs = getattr(table, "_index_hash_attrs", None)
    if attrs is None:
        return
    identity = (item.hash_key, item.range_key)
    if any(attr in item.attrs for attr in attrs):
        table._index_items[identity] = item
    else:
        table._index_items.pop(identity, None)


def _unindex_item(table, item):
    if getattr(table, "_index_hash_attrs", None) is not None:
        table._index_items.pop((item.hash_key, item.range_key), None)


_table_init = Table.__init__


def _table_init_with_ordered_partitions(self, *args, **kwargs):
    _table_init(self, *args, **kwargs)
    if self.range_key_attr is not None:
        self._index_hash_attrs = _index_hash_attrs(self)
        self._index_items = {}
        self.items = defaultdict(lambda: _Partition(self))


Table.__init__ = _table_init_with_ordered_partitions

_update_item = DynamoDBBackend.update_item


def _update_item_indexed(self, table_name, key, *args, **kwargs):
    """moto's UpdateItem changes an item in place; look again at whether it is in an index."""
    item = _update_item(self, table_name, key, *args, **kwargs)
    if item is not None:
        _index_item(self.get_table(table_name), item)
    return item


DynamoDBBackend.update_item = _update_item_indexed

_RANGE = {
    "EQ": "EQ", "=": "EQ", "LT": "LT", "<": "LT", "LE": "LE", "<=": "LE", "GT": "GT", ">": "GT",
    "GE": "GE", ">=": "GE", "BETWEEN": "BETWEEN", "BEGINS_WITH": "BEGINS_WITH",
}


def _key_span(keys, comparison, values):
    """The slice [lo, hi) of the ordered keys that the range condition selects."""
    cast = _cast
    if comparison is None:
        return 0, len(keys)
    first = values[0].cast_value
    if comparison == "EQ":
        return bisect.bisect_left(keys, first, key=cast), bisect.bisect_right(keys, first, key=cast)
    if comparison == "LT":
        return 0, bisect.bisect_left(keys, first, key=cast)
    if comparison == "LE":
        return 0, bisect.bisect_right(keys, first, key=cast)
    if comparison == "GT":
        return bisect.bisect_right(keys, first, key=cast), len(keys)
    if comparison == "GE":
        return bisect.bisect_left(keys, first, key=cast), len(keys)
    if comparison == "BETWEEN":
        last = values[1].cast_value
        return bisect.bisect_left(keys, first, key=cast), bisect.bisect_right(keys, last, key=cast)
    lo = hi = bisect.bisect_left(keys, first, key=cast)
    while hi < len(keys) and isinstance(keys[hi].cast_value, str) and keys[hi].cast_value.startswith(first):
        hi += 1
    return lo, hi


def _query_table_by_key_range(self, hash_key, range_comparison, range_objs, limit,
                              exclusive_start_key, scan_index_forward, projection_expressions,
                              filter_expression):
    partition = self.items.get(hash_key)
    if partition is None:
        return [], 0, None
    keys = partition.sorted_keys()
    lo, hi = _key_span(keys, _RANGE[range_comparison] if range_comparison else None, range_objs)
    if exclusive_start_key is not None:
        start = DynamoType(exclusive_start_key[self.range_key_attr]).cast_value
        cast = _cast
        if scan_index_forward is False:
            hi = min(hi, bisect.bisect_left(keys, start, key=cast))
        else:
            lo = max(lo, bisect.bisect_right(keys, start, key=cast))
    span = range(hi - 1, lo - 1, -1) if scan_index_forward is False else range(lo, hi)
    results, size, last_evaluated_key = [], 0, None
    for position in span:
        item = partition[keys[position]]
        if len(results) == limit or size + item.size() > RESULT_SIZE_LIMIT:
            last_evaluated_key = self._get_last_evaluated_key(results[-1], None)
            break
        results.append(item)
        size += item.size()
    scanned_count = len(results)
    results = copy.deepcopy(results)
    if filter_expression is not None:
        results = [item for item in results if filter_expression.expr(item)]
    if projection_expressions:
        results = [item.project(projection_expressions) for item in results]
    return results, scanned_count, last_evaluated_key


def _query_by_key_range(self, hash_key, range_comparison, range_objs, limit,
                        exclusive_start_key, scan_index_forward, projection_expressions,
                        index_name=None, consistent_read=False, filter_expression=None,
                        hash_key_conditions=None, range_key_conditions=None, **filter_kwargs):
    """A Query of the table reads only the key range it asks for; anything else is moto's."""
    if (index_name is None and not filter_kwargs and hash_key is not None
            and getattr(self, "_index_items", None) is not None
            and hash_key.type == self.hash_key_type
            and (range_comparison is None or range_comparison in _RANGE)
            and (not range_key_conditions or len(range_key_conditions) == 1)):
        return _query_table_by_key_range(self, hash_key, range_comparison, range_objs, limit,
                                         exclusive_start_key, scan_index_forward,
                                         projection_expressions, filter_expression)
    return _query_reading_one_partition(
        self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
        scan_index_forward, projection_expressions, index_name=index_name,
        consistent_read=consistent_read, filter_expression=filter_expression,
        hash_key_conditions=hash_key_conditions, range_key_conditions=range_key_conditions,
        **filter_kwargs)


def _items_in_scan_order(table):
    """Every item of the table sorted by (hash key, range key), with those keys; kept until the
    table changes."""
    if getattr(table, "_scan_order", None) is None:
        items = [item for partition in table.items.values() for item in partition.values()]
        items.sort(key=lambda item: (item.hash_key.cast_value, item.range_key.cast_value))
        keys = [(item.hash_key.cast_value, item.range_key.cast_value) for item in items]
        table._scan_order = (items, keys)
    return table._scan_order


_scan = Table.scan


def _scan_from_start_key(self, filters, limit, exclusive_start_key, filter_expression=None,
                         index_name=None, consistent_read=False, projection_expression=None,
                         segments=(None, None)):
    """moto's Scan of a table, but a page starts at its start key by bisection, not by walking
    the sorted table from its first item."""
    if index_name or segments != (None, None) or getattr(self, "_index_items", None) is None:
        return _scan(self, filters, limit, exclusive_start_key, filter_expression, index_name,
                     consistent_read, projection_expression, segments)
    items, keys = _items_in_scan_order(self)
    start = 0
    if exclusive_start_key:
        start = bisect.bisect_right(keys, (
            DynamoType(exclusive_start_key[self.hash_key_attr]).cast_value,
            DynamoType(exclusive_start_key[self.range_key_attr]).cast_value))
    self._scan_rest = items[start:]
    try:
        return _scan(self, filters, limit, None, filter_expression, index_name, consistent_read,
                     projection_expression, segments)
    finally:
        self._scan_rest = None


Table.query = _query_by_key_range
Table.all_items = _all_items_of_the_partition
Table.scan = _scan_from_start_key


def _wire_form(value, depth=0):
    """Whether an AttributeValue is already what DynamoDB sends (no binary, which moto encodes)."""
    if not isinstance(value, dict) or len(value) != 1 or depth > 32:
        return False
    (kind, inner), = value.items()
    if kind in ("S", "N"):
        return isinstance(inner, str)
    if kind in ("BOOL", "NULL"):
        return isinstance(inner, bool)
    if kind in ("SS", "NS"):
        return isinstance(inner, list) and all(isinstance(v, str) for v in inner)
    if kind == "M":
        return isinstance(inner, dict) and all(_wire_form(v, depth + 1) for v in inner.values())
    if kind == "L":
        return isinstance(inner, list) and all(_wire_form(v, depth + 1) for v in inner)
    return False


_serialize_structure = BaseJSONSerializer._serialize_type_structure


def _serialize_structure_in_wire_form(self, serialized, value, shape, key):
    if key and shape.name == "AttributeValue" and _wire_form(value):
        self._default_serialize(serialized, value, shape, key)
        return
    _serialize_structure(self, serialized, value, shape, key)


BaseJSONSerializer._serialize_type_structure = _serialize_structure_in_wire_form


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
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, Serialized(app), threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
