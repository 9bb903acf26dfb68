"""Checks that moto_serialized.py answers exactly as moto does: the same random writes go to a
plain moto_server and to the corrected one, and every Query (of the table and of an index, any
key condition, either direction, with limits and paging; an index added half-way too) and every
GetItem and every paged Scan must return the same items, attributes of every type included. (moto
also hands out a LastEvaluatedKey when only items outside the key condition follow, so the
caller reads one more, empty, page; DynamoDB may do the same. Empty pages are not compared.)

    python moto_serialized_check.py [ROUNDS]

Starts both servers on free ports of 127.0.0.1 and stops them; exits 1 on the first difference.
"""
import os
import random
import socket
import subprocess
import sys
import time

from decimal import Decimal

import boto3
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import Binary

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command, port):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            if process.poll() is not None:
                sys.exit(f"moto check: {command} exited while starting")
            time.sleep(0.1)
    process.kill()
    sys.exit(f"moto check: {command} did not open port {port}")


def resource(port):
    return boto3.resource(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="eu-west-1",
        aws_access_key_id="test", aws_secret_access_key="test")


def create_tables(db):
    numeric = db.create_table(
        TableName="numeric",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"},
                              {"AttributeName": "shard", "AttributeType": "S"},
                              {"AttributeName": "at", "AttributeType": "N"}],
        GlobalSecondaryIndexes=[{
            "IndexName": "sparse",
            "KeySchema": [{"AttributeName": "shard", "KeyType": "HASH"},
                          {"AttributeName": "at", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}],
        BillingMode="PAY_PER_REQUEST")
    text = db.create_table(
        TableName="text",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST")
    return numeric, text


def random_value(rng, depth):
    """An attribute of any DynamoDB type, nested maps and lists included (binary too, which the
    corrected serializer leaves to moto)."""
    kinds = ["S", "N", "BOOL", "NULL", "SS", "NS", "B"] + (["M", "L"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "S":
        return rng.choice(["", "x", "ünï", "a b"]) + str(rng.randrange(9))
    if kind == "N":
        return Decimal(rng.randrange(-10**6, 10**6)) / 100
    if kind == "BOOL":
        return rng.random() < 0.5
    if kind == "NULL":
        return None
    if kind == "SS":
        return {f"s{i}" for i in range(1, 2 + rng.randrange(3))}
    if kind == "NS":
        return {Decimal(i) for i in range(1, 2 + rng.randrange(3))}
    if kind == "B":
        return Binary(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6))))
    if kind == "M":
        return {f"k{i}": random_value(rng, depth + 1) for i in range(rng.randrange(4))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def random_write(rng, numeric, text):
    pk = f"p{rng.randrange(4)}"
    choice = rng.random()
    if choice < 0.55:
        item = {"pk": pk, "sk": rng.randrange(-20, 200), "v": rng.randrange(1000),
                "doc": random_value(rng, 0)}
        if rng.random() < 0.3:
            item.update(shard=f"s{rng.randrange(2)}", at=rng.randrange(50))
        return ("put", numeric, item)
    if choice < 0.65:
        return ("delete", numeric, {"pk": pk, "sk": rng.randrange(-20, 200)})
    if choice < 0.75:
        key = {"pk": pk, "sk": rng.randrange(-20, 200)}
        if rng.random() < 0.5:
            return ("update", numeric, key, "SET #s = :s, #a = :a",
                    {":s": f"s{rng.randrange(2)}", ":a": rng.randrange(50)})
        return ("update", numeric, key, "REMOVE #s, #a", None)
    if choice < 0.95:
        sk = rng.choice(["a", "ab", "abc", "b", "ba", "order#", "stream#"]) + str(rng.randrange(30))
        return ("put", text, {"pk": pk, "sk": sk, "v": "x" * rng.randrange(50)})
    return ("delete", text, {"pk": pk, "sk": rng.choice(["a", "ab", "b"]) + str(rng.randrange(30))})


def apply(op, tables):
    kind, table = op[0], tables[op[1].name]
    if kind == "put":
        table.put_item(Item=op[2])
    elif kind == "delete":
        table.delete_item(Key=op[2])
    else:
        kwargs = {"Key": op[2], "UpdateExpression": op[3],
                  "ExpressionAttributeNames": {"#s": "shard", "#a": "at"}}
        if op[4]:
            kwargs["ExpressionAttributeValues"] = op[4]
        table.update_item(**kwargs)


def add_index(table):
    """A second index, added once items exist (UpdateTable), keyed on an attribute items
    already carry."""
    table.meta.client.update_table(
        TableName=table.name,
        AttributeDefinitions=[{"AttributeName": "at", "AttributeType": "N"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
        GlobalSecondaryIndexUpdates=[{"Create": {
            "IndexName": "late",
            "KeySchema": [{"AttributeName": "at", "KeyType": "HASH"},
                          {"AttributeName": "sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"}}}])


def random_query(rng, late_index):
    if late_index and rng.random() < 0.1:
        return "numeric", {"IndexName": "late", "KeyConditionExpression": Key("at").eq(
            rng.randrange(50))}
    if rng.random() < 0.2:
        condition = Key("shard").eq(f"s{rng.randrange(2)}")
        if rng.random() < 0.5:
            condition = condition & Key("at").lte(rng.randrange(50))
        return "numeric", {"IndexName": "sparse", "KeyConditionExpression": condition}
    if rng.random() < 0.6:
        key = Key("pk").eq(f"p{rng.randrange(5)}")
        low, high = sorted(rng.randrange(-30, 210) for _ in range(2))
        condition = rng.choice([
            None, Key("sk").eq(low), Key("sk").lt(low), Key("sk").lte(low), Key("sk").gt(low),
            Key("sk").gte(low), Key("sk").between(low, high)])
        table = "numeric"
    else:
        key = Key("pk").eq(f"p{rng.randrange(5)}")
        prefix = rng.choice(["a", "ab", "b", "order#", "stream#1", "z", "0"])
        condition = rng.choice([
            None, Key("sk").begins_with(prefix), Key("sk").gt(prefix), Key("sk").lte(prefix),
            Key("sk").between(prefix, prefix + "~")])
        table = "text"
    query = {"KeyConditionExpression": key if condition is None else key & condition,
             "ScanIndexForward": rng.random() < 0.5}
    return table, query


def scanned(table, limit, only_events):
    """Every page of a Scan of the table, paged by `limit` (and 1 MB)."""
    query = {"FilterExpression": Attr("v").lt(500)} if only_events else {}
    return pages(table, query, limit, table.scan)


def pages(table, query, limit, read=None):
    read = read or table.query
    found, start = [], None
    for _ in range(2000):
        kwargs = dict(query)
        if limit:
            kwargs["Limit"] = limit
        if start:
            kwargs["ExclusiveStartKey"] = start
        page = read(**kwargs)
        if page["Items"]:
            found.append(page["Items"])
        start = page.get("LastEvaluatedKey")
        if not start:
            return found
    raise RuntimeError("paging did not end")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    venv_bin = os.path.dirname(sys.executable)
    plain_port, fixed_port = free_port(), free_port()
    servers = [
        start([os.path.join(venv_bin, "moto_server"), "-H", "127.0.0.1", "-p", str(plain_port)],
              plain_port),
        start([sys.executable, os.path.join(HERE, "moto_serialized.py"), "127.0.0.1",
               str(fixed_port)], fixed_port),
    ]
    try:
        plain, fixed = create_tables(resource(plain_port)), create_tables(resource(fixed_port))
        plain = {t.name: t for t in plain}
        fixed = {t.name: t for t in fixed}
        rng = random.Random(int(os.environ.get("SEED", "7")))
        queries = 0
        late_index = False
        for round_ in range(rounds):
            if round_ == rounds // 2:
                add_index(plain["numeric"])
                add_index(fixed["numeric"])
                late_index = True
            op = random_write(rng, plain["numeric"], plain["text"])
            apply(op, plain)
            apply(op, fixed)
            if round_ % 5 == 0:
                name, query = random_query(rng, late_index)
                limit = rng.choice([None, 1, 2, 3, 7, 52])
                want = pages(plain[name], query, limit)
                got = pages(fixed[name], query, limit)
                queries += 1
                if round_ % 50 == 0:
                    limit, only = rng.choice([None, 3, 25]), rng.random() < 0.5
                    for name in ("numeric", "text"):
                        want.append(scanned(plain[name], limit, only and name == "numeric"))
                        got.append(scanned(fixed[name], limit, only and name == "numeric"))
                key = {"pk": f"p{rng.randrange(4)}", "sk": rng.randrange(-20, 200)}
                want.append(plain["numeric"].get_item(Key=key).get("Item"))
                got.append(fixed["numeric"].get_item(Key=key).get("Item"))
                if want != got:
                    print(f"moto check: round {round_}: {name} {query} limit {limit}\n"
                          f"  moto:      {want}\n  corrected: {got}")
                    return 1
        print(f"moto check: {rounds} writes, {queries} queries, every page the same as moto's")
        return 0
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
