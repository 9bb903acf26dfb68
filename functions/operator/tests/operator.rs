//! `sagaflow` against the local servers after a seeded run: an order that compensated shows its
//! compensations in reverse order of its steps; a dead letter is listed, redriven once to its
//! topic and refused a second time; a redriven command applied before changes nothing; and bad
//! input (an unknown order, a malformed letter id, an unreachable endpoint) gives one line and a
//! non-zero exit, never a panic.

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use sagaflow_eventsourcing::command::{command_id_for, CommandEnvelope};
use sagaflow_eventsourcing::{EventStore, StreamId};
use sagaflow_handlers::dead_letter::DeadLetterTopic;
use sagaflow_lambda_kafka::{DeadLetter, DeadLetterSink, RawRecord, RecordId};
use sagaflow_local_trigger::{LocalSystem, LocalSystemConfig};
use sagaflow_orders::domain::{Address, CreateOrder, Flow, Money, OrderLine};
use sagaflow_records::{command_record, OutboundRecord};
use serde_json::Value;

fn require_servers() {
    for var in ["AWS_ENDPOINT_URL", "SAGAFLOW_KAFKA_BOOTSTRAP"] {
        assert!(
            std::env::var(var).is_ok_and(|v| !v.is_empty()),
            "{var} is not set: start the local servers with `make up` (or run `make test`)"
        );
    }
}

fn order(id: &str, flow: Flow, country: &str) -> CreateOrder {
    CreateOrder {
        order_id: id.into(),
        customer_id: "cust-ops".into(),
        lines: vec![OrderLine {
            sku: "MUG".into(),
            quantity: 1,
            unit_price: Money::eur(1_250),
        }],
        payment_method: "card-ok".into(),
        shipping_address: Address {
            name: "Ada".into(),
            line1: "1 Loop Road".into(),
            city: "Paris".into(),
            country: country.into(),
        },
        flow,
    }
}

/// Runs `sagaflow ARGS` against `system`'s table and topics.
fn sagaflow(system: &LocalSystem, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(args)
        .env("SAGAFLOW_EVENTS_TABLE", system.store.table())
        .env("SAGAFLOW_ANALYTICS_TABLE", system.analytics.table())
        .env("SAGAFLOW_TOPIC_PREFIX", system.topics.prefix())
        .output()
        .expect("sagaflow runs")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// The one line a failing command prints, checked for being one clear line.
fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "it should fail");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_follows_an_order_and_redrives_its_dead_letters() {
    require_servers();
    let name = format!("ops{}", std::process::id());
    let system = LocalSystem::start(LocalSystemConfig::named(name))
        .await
        .expect("local system starts");
    system.restock("MUG", 10).await.unwrap();
    // Shipping to Antarctica fails: the saga compensates every step before it.
    let compensated = order("ord-ops-aq", Flow::Orchestrated, "AQ");
    let choreographed = order("ord-ops-ok", Flow::Choreographed, "FR");
    system.place_order(&compensated).await.unwrap();
    system.place_order(&choreographed).await.unwrap();
    for id in ["ord-ops-aq", "ord-ops-ok"] {
        system
            .wait_for_terminal(id, Duration::from_secs(90))
            .await
            .unwrap();
    }
    // A command no service knows: the order service dead-letters it.
    let teleport = CommandEnvelope {
        command_id: command_id_for("ord-ops-ok", "order.teleport", "ops"),
        command_type: "order.teleport".into(),
        target_id: "ord-ops-ok".into(),
        payload: serde_json::json!({ "order_id": "ord-ops-ok" }),
        correlation_id: "ord-ops-ok".into(),
        causation_id: "ops-test".into(),
        issued_at: sagaflow_eventsourcing::Timestamp(1),
        trace_context: None,
    };
    let publisher = sagaflow_kafka::EventPublisher::new(&system.kafka).unwrap();
    publisher
        .publish(&[command_record(&system.topics, &teleport)])
        .await
        .unwrap();
    let letters = system.read_dead_letters(1, Duration::from_secs(30)).await;
    assert_eq!(letters.len(), 1, "{letters:?}");

    // The timeline.
    let shown = json(&sagaflow(
        &system,
        &["order", "show", "ord-ops-aq", "--json"],
    ));
    let timeline = &shown["timeline"];
    assert_eq!(timeline["status"], "cancelled");
    let events = timeline["events"].as_array().unwrap();
    let times: Vec<i64> = events
        .iter()
        .map(|e| e["at_ms"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    for stream in [
        "order#ord-ops-aq",
        "payment#ord-ops-aq",
        "inventory#ord-ops-aq",
        "shipment#ord-ops-aq",
        "saga#ord-ops-aq",
    ] {
        assert!(events.iter().any(|e| e["stream"] == stream), "{stream}");
    }
    let steps = timeline["steps"].as_array().unwrap();
    let forward: Vec<&str> = steps
        .iter()
        .filter(|s| s["kind"] == "forward" && s["outcome"] == "succeeded")
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    let compensations: Vec<&str> = steps
        .iter()
        .filter(|s| s["kind"] == "compensation")
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    let mut reversed = forward.clone();
    reversed.reverse();
    assert!(!forward.is_empty());
    assert_eq!(
        compensations, reversed,
        "compensated in reverse: {steps:#?}"
    );
    assert!(
        steps.iter().any(|s| s["outcome"] == "failed"),
        "the shipment step failed"
    );
    let text = sagaflow(&system, &["order", "show", "ord-ops-aq"]);
    let text = String::from_utf8_lossy(&text.stdout);
    println!("{text}");
    assert!(text.starts_with("order ord-ops-aq: cancelled"), "{text}");
    assert!(
        text.contains("saga steps") && text.contains("compensated"),
        "{text}"
    );

    // The dead letter: listed, with its order, then redriven once.
    let listed = json(&sagaflow(
        &system,
        &["dead-letters", "list", "--reason", "TELEPORT", "--json"],
    ));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["correlation_id"], "ord-ops-ok");
    assert_eq!(
        listed[0]["source"]["topic"],
        system.topics.commands("order")
    );
    let ok_letters = json(&sagaflow(
        &system,
        &["order", "show", "ord-ops-ok", "--json"],
    ));
    assert_eq!(
        ok_letters["dead_letters"].as_array().unwrap().len(),
        1,
        "the order's letter"
    );
    let redriven = sagaflow(&system, &["dead-letters", "redrive", &id]);
    assert!(
        redriven.status.success(),
        "{}",
        String::from_utf8_lossy(&redriven.stderr)
    );
    // Still unknown: the order service dead-letters it again, from its new offset, once.
    let again = system.read_dead_letters(2, Duration::from_secs(30)).await;
    assert_eq!(
        again.len(),
        2,
        "the record reached its topic once more: {again:?}"
    );
    let refused = failure(&sagaflow(&system, &["dead-letters", "redrive", &id]));
    assert!(refused.contains("redriven already"), "{refused}");
    let shown = json(&sagaflow(&system, &["dead-letters", "show", &id, "--json"]));
    assert!(shown["redriven_at_ms"].as_i64().is_some());

    // A letter of a command applied before (the choreographed order's creation): redriven, it
    // changes nothing.
    let create = CommandEnvelope {
        command_id: command_id_for("ord-ops-ok", "order.create", "front-door"),
        command_type: "order.create".into(),
        target_id: "ord-ops-ok".into(),
        payload: serde_json::to_value(&choreographed).unwrap(),
        correlation_id: "ord-ops-ok".into(),
        causation_id: "request-ord-ops-ok".into(),
        issued_at: sagaflow_eventsourcing::Timestamp(1),
        trace_context: None,
    };
    let record = command_record(&system.topics, &create);
    let before = system
        .store
        .load(&StreamId::new("order", "ord-ops-ok"), 0)
        .await
        .unwrap()
        .len();
    let letters_topic = DeadLetterTopic::new(Arc::new(publisher.clone()), system.topics.clone());
    letters_topic
        .send(DeadLetter::new(
            RecordId {
                topic: record.topic.clone(),
                partition: 0,
                offset: 0,
            },
            "redrive test: an applied command".into(),
            raw(&record),
            1,
        ))
        .await
        .unwrap();
    let listed = json(&sagaflow(
        &system,
        &[
            "dead-letters",
            "list",
            "--reason",
            "applied command",
            "--json",
        ],
    ));
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let redriven = sagaflow(&system, &["dead-letters", "redrive", &id]);
    assert!(
        redriven.status.success(),
        "{}",
        String::from_utf8_lossy(&redriven.stderr)
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = system
        .store
        .load(&StreamId::new("order", "ord-ops-ok"), 0)
        .await
        .unwrap()
        .len();
    assert_eq!(after, before, "the idempotency key: applied once");

    // The front door, then the analytics: rebuilt, compared, and written into a table of its own.
    let file = std::env::temp_dir().join(format!("ops-order-{}.json", std::process::id()));
    std::fs::write(
        &file,
        serde_json::to_vec(&order("ord-ops-cli", Flow::Choreographed, "FR")).unwrap(),
    )
    .unwrap();
    let placed = sagaflow(
        &system,
        &[
            "order",
            "place",
            "--file",
            file.to_str().unwrap(),
            "--flow",
            "orchestrated",
        ],
    );
    assert!(
        placed.status.success(),
        "{}",
        String::from_utf8_lossy(&placed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&placed.stdout).trim(),
        "ord-ops-cli"
    );
    std::fs::remove_file(&file).ok();
    let placed = system
        .wait_for_terminal("ord-ops-cli", Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(
        placed.details.unwrap().flow,
        Flow::Orchestrated,
        "--flow wins over the file"
    );
    system
        .wait_for_analytics(Duration::from_secs(60))
        .await
        .unwrap();
    let replay = json(&sagaflow(&system, &["replay", "analytics", "--json"]));
    assert_eq!(replay["differences"], serde_json::json!([]), "{replay}");
    let events = replay["events"].as_u64().unwrap();
    assert!(events > 20, "{replay}");
    let rebuilt = format!("{}-rebuilt", system.analytics.table());
    let into = json(&sagaflow(
        &system,
        &["replay", "analytics", "--into", &rebuilt, "--json"],
    ));
    assert_eq!(into["written"].as_u64(), Some(events));
    let again = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["replay", "analytics", "--json"])
        .env("SAGAFLOW_EVENTS_TABLE", system.store.table())
        .env("SAGAFLOW_ANALYTICS_TABLE", &rebuilt)
        .output()
        .unwrap();
    assert_eq!(
        json(&again)["differences"],
        serde_json::json!([]),
        "the rebuilt table equals the replay"
    );
    let sagas = json(&sagaflow(&system, &["saga", "list", "--json"]));
    assert_eq!(sagas, serde_json::json!([]), "every saga finished well");

    // Bad input: one clear line each.
    let unknown = failure(&sagaflow(&system, &["order", "show", "ord-nobody"]));
    assert!(unknown.contains("no order `ord-nobody`"), "{unknown}");
    let malformed = failure(&sagaflow(&system, &["dead-letters", "show", "seven"]));
    assert!(malformed.contains("not a dead-letter id"), "{malformed}");
    let bad_id = failure(&sagaflow(&system, &["order", "show", "ord/../x"]));
    assert!(bad_id.contains("not an order id"), "{bad_id}");
    let unreachable = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["order", "show", "ord-ops-aq"])
        .env("SAGAFLOW_EVENTS_TABLE", system.store.table())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    let unreachable = failure(&unreachable);
    assert!(unreachable.contains("DynamoDB"), "{unreachable}");
    let no_kafka = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["order", "show", "ord-ops-aq", "--json"])
        .env("SAGAFLOW_EVENTS_TABLE", system.store.table())
        .env("SAGAFLOW_TOPIC_PREFIX", system.topics.prefix())
        .env("SAGAFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9")
        .output()
        .unwrap();
    let no_kafka = json(&no_kafka);
    assert_eq!(
        no_kafka["timeline"]["status"], "cancelled",
        "the timeline without Kafka"
    );
    assert!(no_kafka["dead_letters_unread"]
        .as_str()
        .unwrap()
        .contains("Kafka at 127.0.0.1:9"));
    system.stop().await;
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_saga_whose_step_is_never_answered_is_listed_as_running_with_its_step() {
    require_servers();
    let name = format!("opsw{}", std::process::id());
    let system = LocalSystem::start(LocalSystemConfig {
        stopped_services: vec!["shipment".into()],
        step_timing: sagaflow_orders::flow::sagas::StepTiming {
            timeout_ms: 600_000,
            ..Default::default()
        },
        ..LocalSystemConfig::named(name)
    })
    .await
    .expect("local system starts");
    system.restock("MUG", 10).await.unwrap();
    system
        .place_order(&order("ord-ops-wait", Flow::Orchestrated, "FR"))
        .await
        .unwrap();
    let mut rows = serde_json::json!([]);
    for _ in 0..100 {
        rows = json(&sagaflow(
            &system,
            &["saga", "list", "--status", "running", "--json"],
        ));
        if rows.as_array().is_some_and(|r| !r.is_empty())
            && rows[0]["awaiting"]
                .as_str()
                .is_some_and(|a| a.starts_with("schedule_shipment"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(rows[0]["saga_id"], "ord-ops-wait", "{rows}");
    assert_eq!(rows[0]["status"], "Running");
    assert!(
        rows[0]["awaiting"]
            .as_str()
            .unwrap()
            .starts_with("schedule_shipment"),
        "{rows}"
    );
    let older = json(&sagaflow(
        &system,
        &[
            "saga",
            "list",
            "--status",
            "running",
            "--older-than",
            "1h",
            "--json",
        ],
    ));
    assert_eq!(older, serde_json::json!([]), "it started moments ago");
    let failed = json(&sagaflow(
        &system,
        &["saga", "list", "--status", "compensation-failed", "--json"],
    ));
    assert_eq!(failed, serde_json::json!([]));
    system.stop().await;
}

/// The raw form a Kafka trigger would have sent `record` in.
fn raw(record: &OutboundRecord) -> RawRecord {
    use base64::Engine;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    RawRecord {
        batch_key: format!("{}-0", record.topic),
        timestamp_ms: 1,
        timestamp_type: None,
        key: Some(b64(record.key.as_bytes())),
        value: Some(b64(&record.value)),
        headers: record
            .headers
            .iter()
            .map(|(name, value)| {
                std::iter::once((name.clone(), value.iter().map(|b| *b as i8).collect())).collect()
            })
            .collect(),
    }
}
