//! Bad input, table-driven: every kind of record that can never succeed, each sent to a
//! Kafka-triggered function's handler in one batch with a good record. Each must be
//! dead-lettered with a reason that names its problem, the good record must take effect, the
//! batch must report no failure (the partition moves on), and nothing may panic.
//!
//! `tests/bad_input_broker.rs` in `tests/` sends the same records through the real broker.

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sagaflow_core::domain::{Order, OrderStatus, Payment, PaymentStatus};
use sagaflow_core::InMemoryEventStore;
use sagaflow_handlers::fixture_run::MemoryFunction;
use sagaflow_handlers::ServiceHandler;
use serde_json::{json, Value};

/// One bad record and what its dead letter must say.
struct Case {
    name: &'static str,
    /// The service whose function gets it.
    service: &'static str,
    topic: &'static str,
    /// The value as the trigger sends it (base64 text, possibly invalid).
    value: String,
    headers: Vec<(&'static str, String)>,
    /// Text the dead letter's reason must contain.
    reason: &'static str,
}

fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
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

fn json_value(value: &Value) -> String {
    b64(&serde_json::to_vec(value).unwrap())
}

fn cases() -> Vec<Case> {
    let command_header = |t: &str| vec![("command_type", t.to_string())];
    let event_header = |t: &str| vec![("event_type", t.to_string())];
    let lines = |unit: i64, quantity: u64| json!([{ "sku": "MUG", "quantity": quantity, "unit_price": { "amount_minor": unit, "currency": "EUR" } }]);
    let create = |order_id: &str, lines: Value| {
        command(
            "order.create",
            order_id,
            json!({
                "order_id": order_id, "customer_id": "cust-1", "lines": lines,
                "payment_method": "card-ok", "flow": "choreographed",
                "shipping_address": { "name": "Ada", "line1": "1 Loop Road", "city": "Paris", "country": "FR" }
            }),
        )
    };
    vec![
        Case {
            name: "invalid base64",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: "%%% not base64 %%%".into(),
            headers: command_header("payment.charge"),
            reason: "record value is not valid base64",
        },
        Case {
            name: "value not JSON",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: b64(b"{not json"),
            headers: command_header("payment.charge"),
            reason: "not a command envelope",
        },
        Case {
            name: "JSON of the wrong shape",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: json_value(&json!({ "command_id": 5, "hello": [] })),
            headers: command_header("payment.charge"),
            reason: "not a command envelope",
        },
        Case {
            name: "unknown event type",
            service: "payment",
            topic: "sagaflow.events.order",
            value: json_value(&order_event("order.exploded", 1)),
            headers: event_header("order.exploded"),
            reason: "unknown event type `order.exploded`",
        },
        Case {
            name: "unknown schema version",
            service: "payment",
            topic: "sagaflow.events.order",
            value: json_value(&order_event("order.completed", 9)),
            headers: event_header("order.completed"),
            reason: "schema version 9",
        },
        Case {
            name: "missing headers",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: json_value(&charge("ord-nohead", json!(1_000))),
            headers: vec![],
            reason: "missing header `command_type`",
        },
        Case {
            name: "wrong headers",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: json_value(&charge("ord-liar", json!(1_000))),
            headers: command_header("payment.refund"),
            reason: "header `command_type` says `payment.refund`",
        },
        Case {
            name: "empty value",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: String::new(),
            headers: command_header("payment.charge"),
            reason: "record has no value",
        },
        Case {
            name: "record over the size limit",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: b64(&vec![b'x'; 300 * 1024]),
            headers: command_header("payment.charge"),
            reason: "over the 262144-byte limit",
        },
        Case {
            name: "negative amount",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: json_value(&charge("ord-negative", json!(-500))),
            headers: command_header("payment.charge"),
            reason: "invalid field `amount`: must be above zero",
        },
        Case {
            name: "amount beyond 64 bits",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: json_value(&charge("ord-huge", json!(1e30))),
            headers: command_header("payment.charge"),
            reason: "expected i64",
        },
        Case {
            name: "order total that overflows",
            service: "order",
            topic: "sagaflow.commands.order",
            value: json_value(&create("ord-overflow", lines(i64::MAX / 2, 3))),
            headers: command_header("order.create"),
            reason: "overflows",
        },
        Case {
            name: "id of the wrong form",
            service: "payment",
            topic: "sagaflow.commands.payment",
            value: json_value(&charge("ord 1/../../etc", json!(1_000))),
            headers: command_header("payment.charge"),
            reason: "order_id",
        },
        Case {
            name: "aggregate that does not exist",
            service: "order",
            topic: "sagaflow.commands.order",
            value: json_value(&command("order.complete", "ord-nowhere", json!({}))),
            headers: command_header("order.complete"),
            reason: "order does not exist",
        },
    ]
}

/// A good record for `service` that must take effect in the same batch.
fn good_record(service: &str) -> (&'static str, Value, &'static str) {
    match service {
        "payment" => (
            "sagaflow.commands.payment",
            charge("ord-good", json!(2_500)),
            "payment.charge",
        ),
        _ => (
            "sagaflow.commands.order",
            command(
                "order.create",
                "ord-good",
                json!({
                    "order_id": "ord-good", "customer_id": "cust-1",
                    "lines": [{ "sku": "MUG", "quantity": 1, "unit_price": { "amount_minor": 1250, "currency": "EUR" } }],
                    "payment_method": "card-ok", "flow": "choreographed",
                    "shipping_address": { "name": "Ada", "line1": "1 Loop Road", "city": "Paris", "country": "FR" }
                }),
            ),
            "order.create",
        ),
    }
}

fn record(
    topic: &str,
    partition: i64,
    offset: i64,
    value: &str,
    headers: &[(&str, String)],
) -> Value {
    json!({
        "topic": topic, "partition": partition, "offset": offset,
        "timestamp": 1_764_547_200_000_i64, "timestampType": "CREATE_TIME",
        "key": b64(b"key"), "value": value,
        "headers": headers.iter().map(|(k, v)| json!({ *k: v.as_bytes() })).collect::<Vec<_>>(),
    })
}

fn batch(case: &Case) -> KafkaEvent {
    let (good_topic, good, good_type) = good_record(case.service);
    let mut records = serde_json::Map::new();
    let bad = record(case.topic, 0, 40, &case.value, &case.headers);
    let good = record(
        good_topic,
        1,
        41,
        &json_value(&good),
        &[("command_type", good_type.to_string())],
    );
    records
        .entry(format!("{}-0", case.topic))
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .unwrap()
        .push(bad);
    records
        .entry(format!("{good_topic}-1"))
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .unwrap()
        .push(good);
    serde_json::from_value(json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "127.0.0.1:9092",
        "records": records,
    }))
    .unwrap()
}

async fn good_took_effect(
    f: &MemoryFunction<ServiceHandler<InMemoryEventStore>>,
    service: &str,
) -> bool {
    let services = f.handler.services();
    match service {
        "payment" => {
            let payment: Payment = services.payments().load("ord-good").await.unwrap().state;
            payment.status == PaymentStatus::Captured
        }
        _ => {
            let order: Order = services.orders().load("ord-good").await.unwrap().state;
            order.status == OrderStatus::Created
        }
    }
}

#[tokio::test]
async fn every_bad_record_is_dead_lettered_with_its_reason_and_the_batch_goes_on() {
    let mut failures = Vec::new();
    for case in cases() {
        let f = MemoryFunction::service(case.service).unwrap();
        let result = f.function.handle_batch(&batch(&case)).await;
        let letters = f.dead_letters.letters();
        let problem = if !result.response.batch_item_failures.is_empty() {
            Some(format!("the batch reported failures {:?}", result.response))
        } else if letters.len() != 1 {
            Some(format!("{} dead letters: {letters:?}", letters.len()))
        } else if letters[0].source.offset != 40 {
            Some(format!(
                "the wrong record was dead-lettered: {:?}",
                letters[0].source
            ))
        } else if !letters[0].reason.contains(case.reason) {
            Some(format!(
                "reason `{}` does not contain `{}`",
                letters[0].reason, case.reason
            ))
        } else if !good_took_effect(&f, case.service).await {
            Some("the good record of the same batch took no effect".into())
        } else {
            None
        };
        if let Some(problem) = problem {
            failures.push(format!("{}: {problem}", case.name));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[tokio::test]
async fn an_oversized_record_is_dead_lettered_with_its_value_cut_to_fit() {
    let case = cases()
        .into_iter()
        .find(|c| c.name == "record over the size limit")
        .unwrap();
    let f = MemoryFunction::service(case.service).unwrap();
    f.function.handle_batch(&batch(&case)).await;
    let letter = f.dead_letters.letters().remove(0);
    assert_eq!(letter.value_truncated_from, Some(case.value.len()));
    let kept = letter.raw.value.unwrap();
    assert_eq!(
        kept.len(),
        sagaflow_lambda_kafka::batch::MAX_DEAD_LETTER_VALUE_CHARS
    );
    assert!(
        STANDARD.decode(&kept).is_ok(),
        "the kept prefix is still base64"
    );
    assert!(serde_json::to_vec(&json!({ "raw": kept })).unwrap().len() < 100 * 1024);
}
