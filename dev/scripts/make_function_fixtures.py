#!/usr/bin/env python3
"""Writes the Kafka trigger payloads the function tests use, in the shape AWS sends them:
an MSK event (aws:kafka) and a self-managed one (SelfManagedKafka), records grouped by
"topic-partition", base64 keys and values, headers as byte arrays.

    python3 dev/scripts/make_function_fixtures.py   # rewrites functions/lambdas/fixtures/*/*.json
"""
import base64, json, pathlib, uuid

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
NS = uuid.UUID("0c0de5a9-4f1b-4e7e-8c2a-9d3f6b5e2a02")
ADDRESS = {"name": "Ada Lovelace", "line1": "1 Loop Road", "city": "Paris", "country": "FR"}
EUR = lambda cents: {"amount_minor": cents, "currency": "EUR"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def command(command_type, target, payload, order):
    return {
        "command_id": str(uuid.uuid5(NS, f"fixture/{command_type}/{target}/{order}")),
        "command_type": command_type, "target_id": target, "payload": payload,
        "correlation_id": order, "causation_id": f"fixture-{order}", "issued_at": 1764547200000,
    }


def event(aggregate, agg_id, seq, event_type, payload, order):
    return {
        "event_id": str(uuid.uuid5(NS, f"{aggregate}#{agg_id}/{seq}")),
        "aggregate_type": aggregate, "aggregate_id": agg_id, "sequence": seq,
        "event_type": event_type, "schema_version": 2 if event_type == "order.created" else 1,
        "occurred_at": 1764547200000, "correlation_id": order, "causation_id": f"fixture-{order}",
        "payload": payload,
    }


def record(topic, partition, offset, key, value, headers=None, raw_value=None):
    return {
        "topic": topic, "partition": partition, "offset": offset,
        "timestamp": 1764547200000 + offset, "timestampType": "CREATE_TIME",
        "key": b64(key.encode()),
        "value": raw_value if raw_value is not None else b64(json.dumps(value).encode()),
        "headers": [{k: list(v.encode())} for k, v in (headers or {}).items()],
    }


def kafka_event(source, records):
    grouped = {}
    for r in records:
        grouped.setdefault(f"{r['topic']}-{r['partition']}", []).append(r)
    body = {"eventSource": source, "bootstrapServers": "b-1.sagaflow.kafka.example:9092,b-2.sagaflow.kafka.example:9092", "records": grouped}
    if source == "aws:kafka":
        body["eventSourceArn"] = "arn:aws:kafka:eu-west-1:123456789012:cluster/sagaflow/8a1c2b3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d-1"
    return body


def order_created(order, flow):
    lines = [{"sku": "MUG", "quantity": 2, "unit_price": EUR(1250)}]
    return event("order", order, 1, "order.created", {
        "order_id": order, "customer_id": "cust-7", "lines": lines, "total": EUR(2500),
        "payment_method": "card-ok", "shipping_address": ADDRESS, "flow": flow}, order)


def payment_records():
    charge = command("payment.charge", "ord-1001", {"order_id": "ord-1001", "amount": EUR(2500), "method": "card-ok"}, "ord-1001")
    refund = command("payment.refund", "ord-1001", {"order_id": "ord-1001", "reason": "out_of_stock: LAMP"}, "ord-1001")
    return [
        record("sagaflow.commands.payment", 0, 10, "ord-1001", charge, {"command_type": "payment.charge"}),
        record("sagaflow.commands.payment", 0, 11, "ord-1001", refund, {"command_type": "payment.refund"}),
        record("sagaflow.events.order", 1, 5, "ord-1002", order_created("ord-1002", "choreographed"), {"event_type": "order.created"}),
        record("sagaflow.commands.payment", 1, 3, "ord-1003", None, raw_value="not base64!!"),
    ]


def order_records():
    create = command("order.create", "ord-2001", {
        "order_id": "ord-2001", "customer_id": "cust-7",
        "lines": [{"sku": "MUG", "quantity": 2, "unit_price": EUR(1250)}],
        "payment_method": "card-ok", "shipping_address": ADDRESS, "flow": "choreographed"}, "ord-2001")
    complete = command("order.complete", "ord-2001", {}, "ord-2001")
    teleport = command("order.teleport", "ord-2002", {"order_id": "ord-2002", "to": "the moon"}, "ord-2002")
    running = command("order.create", "ord-2003", {
        "order_id": "ord-2003", "customer_id": "cust-7",
        "lines": [{"sku": "MUG", "quantity": 1, "unit_price": EUR(1250)}],
        "payment_method": "card-ok", "shipping_address": ADDRESS, "flow": "choreographed"}, "ord-2003")
    cancel = lambda order: command("order.request_cancel", order, {"reason": "changed my mind"}, order)
    return [
        record("sagaflow.commands.order", 0, 20, "ord-2001", create, {"command_type": "order.create"}),
        record("sagaflow.commands.order", 0, 21, "ord-2001", complete, {"command_type": "order.complete"}),
        # The customer cancels a completed order (refused) and a running one, with no headers.
        record("sagaflow.commands.order", 0, 22, "ord-2001", cancel("ord-2001")),
        record("sagaflow.commands.order", 2, 7, "ord-2003", running, {"command_type": "order.create"}),
        record("sagaflow.commands.order", 2, 8, "ord-2003", cancel("ord-2003")),
        record("sagaflow.commands.order", 1, 4, "ord-2002", {"hello": 1}),
        record("sagaflow.commands.order", 1, 5, "ord-2002", teleport, {"command_type": "order.teleport"}),
    ]


def inventory_records():
    restock = command("inventory.restock", "main", {"sku": "MUG", "quantity": 10}, "restock-3001")
    reserve = command("inventory.reserve", "main", {"order_id": "ord-3001", "lines": [{"sku": "MUG", "quantity": 2}]}, "ord-3001")
    release = command("inventory.release", "main", {"order_id": "ord-3001", "reason": "payment_declined: card declined by issuer"}, "ord-3001")
    misrouted = command("payment.charge", "ord-3002", {"order_id": "ord-3002", "amount": EUR(2500), "method": "card-ok"}, "ord-3002")
    return [
        record("sagaflow.commands.inventory", 0, 40, "main", restock, {"command_type": "inventory.restock"}),
        record("sagaflow.commands.inventory", 0, 41, "main", reserve, {"command_type": "inventory.reserve"}),
        record("sagaflow.commands.inventory", 0, 42, "main", release, {"command_type": "inventory.release"}),
        record("sagaflow.commands.inventory", 1, 9, "ord-3002", misrouted, {"command_type": "payment.charge"}),
    ]


def shipment_records():
    to = lambda country: {**ADDRESS, "country": country}
    france = command("shipment.schedule", "ord-4001", {"order_id": "ord-4001", "address": to("FR")}, "ord-4001")
    antarctica = command("shipment.schedule", "ord-4002", {"order_id": "ord-4002", "address": to("AQ")}, "ord-4002")
    nowhere = command("shipment.schedule", "ord-4003", {"order_id": "ord-4003"}, "ord-4003")
    return [
        record("sagaflow.commands.shipment", 0, 50, "ord-4001", france, {"command_type": "shipment.schedule"}),
        record("sagaflow.commands.shipment", 0, 51, "ord-4002", antarctica, {"command_type": "shipment.schedule"}),
        record("sagaflow.commands.shipment", 1, 12, "ord-4003", nowhere, {"command_type": "shipment.schedule"}),
    ]


def orchestrator_records():
    def start(order, flow):
        created = order_created(order, flow)["payload"]
        payload = {k: v for k, v in created.items() if k != "total"}
        return command("saga.start", order, payload, order)
    def cancel(order):
        return command("saga.cancel", order, {"reason": "changed my mind"}, order)
    return [
        record("sagaflow.commands.saga", 0, 2, "ord-5004", start("ord-5004", "orchestrated"), {"command_type": "saga.start"}),
        record("sagaflow.commands.saga", 0, 3, "ord-5005", start("ord-5005", "choreographed"), {"command_type": "saga.start"}),
        # The documented envelope with no headers: the customer cancels ord-5004 while it runs,
        # and ord-5005, which has no saga.
        record("sagaflow.commands.saga", 0, 4, "ord-5004", cancel("ord-5004")),
        record("sagaflow.commands.saga", 0, 5, "ord-5005", cancel("ord-5005")),
        record("sagaflow.events.order", 0, 30, "ord-5001", order_created("ord-5001", "orchestrated"), {"event_type": "order.created"}),
        record("sagaflow.events.order", 0, 31, "ord-5002", order_created("ord-5002", "choreographed"), {"event_type": "order.created"}),
        record("sagaflow.events.order", 1, 7, "ord-5003", None, raw_value=b64(b"not json {")),
    ]


def analytics_records():
    created = order_created("ord-6001", "choreographed")
    paid = event("payment", "ord-6001", 1, "payment.processed", {"order_id": "ord-6001", "amount": EUR(2500)}, "ord-6001")
    completed = event("order", "ord-6001", 2, "order.completed", {"order_id": "ord-6001"}, "ord-6001")
    misshapen = event("order", "ord-6002", 1, "order.created", {"order_id": 7}, "ord-6002")
    return [
        record("sagaflow.events.order", 0, 60, "ord-6001", created, {"event_type": "order.created"}),
        record("sagaflow.events.payment", 2, 15, "ord-6001", paid, {"event_type": "payment.processed"}),
        record("sagaflow.events.order", 0, 61, "ord-6001", completed, {"event_type": "order.completed"}),
        record("sagaflow.events.order", 0, 62, "ord-6001", created, {"event_type": "order.created"}),
        record("sagaflow.events.order", 1, 8, "ord-6002", misshapen, {"event_type": "order.created"}),
    ]


def write(function, records):
    folder = ROOT / "functions" / "lambdas" / "fixtures" / function
    folder.mkdir(parents=True, exist_ok=True)
    for name, source in (("msk-event.json", "aws:kafka"), ("self-managed-event.json", "SelfManagedKafka")):
        (folder / name).write_text(json.dumps(kafka_event(source, records), indent=2) + "\n")


if __name__ == "__main__":
    write("payment", payment_records())
    write("order", order_records())
    write("inventory", inventory_records())
    write("shipment", shipment_records())
    write("orchestrator", orchestrator_records())
    write("analytics", analytics_records())
