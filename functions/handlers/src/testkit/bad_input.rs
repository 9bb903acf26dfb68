//! A catalogue of records that can never succeed, each with the service whose function gets
//! it and the text its dead-letter reason must contain. The bad-input suites send it through
//! the handlers (`functions/handlers/tests/bad_input.rs`) and through the real broker
//! (`tests/bad_input_broker.rs`).

use sagaflow_records::Topics;
use serde_json::{json, Value};

/// What a bad record carries as its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadValue {
    /// These bytes (a real broker can carry them).
    Bytes(Vec<u8>),
    /// Text that is not base64, as only a Lambda trigger payload can carry it.
    InvalidBase64(String),
}

/// One record that can never succeed.
#[derive(Clone, Debug)]
pub struct BadRecord {
    /// What is wrong with it.
    pub name: &'static str,
    /// The service whose function gets it.
    pub service: &'static str,
    /// Its topic under `topics`.
    pub topic: fn(&Topics) -> String,
    /// A key unique to the case, to find its dead letter.
    pub key: String,
    /// Its value.
    pub value: BadValue,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Text its dead letter's reason must contain.
    pub reason: &'static str,
}

fn command(command_type: &str, target: &str, payload: Value) -> Value {
    json!({
        "command_id": format!("bad-input/{command_type}/{target}"),
        "command_type": command_type, "target_id": target, "payload": payload,
        "correlation_id": target, "causation_id": "bad-input-suite", "issued_at": 1_764_547_200_000_i64
    })
}

fn charge(order_id: &str, amount_minor: Value) -> Value {
    command(
        "payment.charge",
        order_id,
        json!({ "order_id": order_id, "amount": { "amount_minor": amount_minor, "currency": "EUR" }, "method": "card-ok" }),
    )
}

fn order_event(event_type: &str, schema_version: u32) -> Value {
    json!({
        "event_id": format!("bad-input/{event_type}/{schema_version}"),
        "aggregate_type": "order", "aggregate_id": "ord-ev", "sequence": 1,
        "event_type": event_type, "schema_version": schema_version,
        "occurred_at": 1_764_547_200_000_i64, "correlation_id": "ord-ev", "causation_id": "x",
        "payload": { "order_id": "ord-ev" }
    })
}

fn create_order(order_id: &str, unit_minor: i64, quantity: u64) -> Value {
    command(
        "order.create",
        order_id,
        json!({
            "order_id": order_id, "customer_id": "cust-1",
            "lines": [{ "sku": "MUG", "quantity": quantity, "unit_price": { "amount_minor": unit_minor, "currency": "EUR" } }],
            "payment_method": "card-ok", "flow": "choreographed",
            "shipping_address": { "name": "Ada", "line1": "1 Loop Road", "city": "Paris", "country": "FR" }
        }),
    )
}

fn bytes(value: &Value) -> BadValue {
    BadValue::Bytes(serde_json::to_vec(value).unwrap_or_default())
}

fn commands_of(service: &'static str) -> fn(&Topics) -> String {
    match service {
        "order" => |t: &Topics| t.commands("order"),
        _ => |t: &Topics| t.commands("payment"),
    }
}

/// A good command for `service` (`payment` or `order`) about `order_id`, which must take
/// effect beside the bad records: its command type and JSON value.
pub fn good_command(service: &str, order_id: &str) -> (&'static str, Vec<u8>) {
    match service {
        "payment" => (
            "payment.charge",
            serde_json::to_vec(&charge(order_id, json!(2_500))).unwrap_or_default(),
        ),
        _ => (
            "order.create",
            serde_json::to_vec(&create_order(order_id, 1_250, 1)).unwrap_or_default(),
        ),
    }
}

/// Every bad record, keys prefixed with `key_prefix`.
pub fn bad_records(key_prefix: &str) -> Vec<BadRecord> {
    let header = |name: &str, value: &str| vec![(name.to_string(), value.to_string())];
    let command_header = |t: &str| header("command_type", t);
    let event_header = |t: &str| header("event_type", t);
    let case = |name: &'static str,
                service: &'static str,
                topic: fn(&Topics) -> String,
                value: BadValue,
                headers: Vec<(String, String)>,
                reason: &'static str| BadRecord {
        name,
        service,
        topic,
        key: format!("{key_prefix}-{}", name.replace(' ', "-")),
        value,
        headers,
        reason,
    };
    let payment = commands_of("payment");
    let order = commands_of("order");
    let order_events = |t: &Topics| t.events("order");
    vec![
        case(
            "invalid base64",
            "payment",
            payment,
            BadValue::InvalidBase64("%%% not base64 %%%".into()),
            command_header("payment.charge"),
            "record value is not valid base64",
        ),
        case(
            "value not JSON",
            "payment",
            payment,
            BadValue::Bytes(b"{not json".to_vec()),
            command_header("payment.charge"),
            "not a command envelope",
        ),
        case(
            "JSON of the wrong shape",
            "payment",
            payment,
            bytes(&json!({ "command_id": 5, "hello": [] })),
            command_header("payment.charge"),
            "not a command envelope",
        ),
        case(
            "unknown event type",
            "payment",
            order_events,
            bytes(&order_event("order.exploded", 1)),
            event_header("order.exploded"),
            "unknown event type `order.exploded`",
        ),
        case(
            "unknown schema version",
            "payment",
            order_events,
            bytes(&order_event("order.completed", 9)),
            event_header("order.completed"),
            "schema version 9",
        ),
        case(
            "wrong headers",
            "payment",
            payment,
            bytes(&charge("ord-liar", json!(1_000))),
            command_header("payment.refund"),
            "header `command_type` says `payment.refund`",
        ),
        case(
            "lying event header",
            "payment",
            order_events,
            bytes(&order_event("order.completed", 1)),
            event_header("order.cancelled"),
            "header `event_type` says `order.cancelled` but the envelope says `order.completed`",
        ),
        case(
            "empty value",
            "payment",
            payment,
            BadValue::Bytes(Vec::new()),
            command_header("payment.charge"),
            "record has no value",
        ),
        case(
            "record over the size limit",
            "payment",
            payment,
            BadValue::Bytes(vec![b'x'; 300 * 1024]),
            command_header("payment.charge"),
            "over the 262144-byte limit",
        ),
        case(
            "negative amount",
            "payment",
            payment,
            bytes(&charge("ord-negative", json!(-500))),
            command_header("payment.charge"),
            "invalid field `amount`: must be above zero",
        ),
        case(
            "amount beyond 64 bits",
            "payment",
            payment,
            bytes(&charge("ord-huge", json!(1e30))),
            command_header("payment.charge"),
            "expected i64",
        ),
        case(
            "order quoting another price than the catalogue",
            "order",
            order,
            bytes(&create_order("ord-overflow", i64::MAX / 2, 3)),
            command_header("order.create"),
            "intake refused the order at stage `price`: invalid field `lines[0].unit_price`",
        ),
        case(
            "order of an unknown SKU",
            "order",
            order,
            bytes(&command(
                "order.create",
                "ord-unknown-sku",
                json!({
                    "order_id": "ord-unknown-sku", "customer_id": "cust-1",
                    "lines": [{ "sku": "UFO", "quantity": 1, "unit_price": { "amount_minor": 100, "currency": "EUR" } }],
                    "payment_method": "card-ok", "flow": "choreographed",
                    "shipping_address": { "name": "Ada", "line1": "1 Loop Road", "city": "Paris", "country": "FR" }
                }),
            )),
            command_header("order.create"),
            "intake refused the order at stage `price`: invalid field `lines[0].sku`: unknown SKU `UFO`",
        ),
        case(
            "id of the wrong form",
            "payment",
            payment,
            bytes(&charge("ord 1/../../etc", json!(1_000))),
            command_header("payment.charge"),
            "order_id",
        ),
        case(
            "aggregate that does not exist",
            "order",
            order,
            bytes(&command("order.complete", "ord-nowhere", json!({}))),
            command_header("order.complete"),
            "order does not exist",
        ),
    ]
}
