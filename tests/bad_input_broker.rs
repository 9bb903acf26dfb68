//! Bad input through the real broker: every record of the catalogue that a Kafka broker can
//! carry (all but invalid base64, which only a trigger payload can hold) is produced to the
//! topic its function reads, beside good orders. Each must reach the dead-letter topic once
//! with a reason naming its problem, and the good orders must complete: no partition blocks.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sagaflow_handlers::testkit::bad_input::{bad_records, BadValue};
use sagaflow_kafka::{EventPublisher, OutboundRecord};
use sagaflow_local_trigger::{LocalSystem, LocalSystemConfig};
use sagaflow_orders::domain::fixtures::address;
use sagaflow_orders::domain::{CreateOrder, Flow, Money, OrderLine, OrderStatus};

const WAIT: Duration = Duration::from_secs(90);

fn good_order(id: &str, flow: Flow) -> CreateOrder {
    CreateOrder {
        order_id: id.into(),
        customer_id: "cust-bad-input".into(),
        lines: vec![OrderLine {
            sku: "MUG".into(),
            quantity: 1,
            unit_price: Money::eur(1_250),
        }],
        payment_method: "card-ok".into(),
        shipping_address: address(),
        flow,
    }
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread")]
async fn bad_records_reach_the_dead_letter_topic_with_their_reason_and_block_nothing() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: start the local servers with `make up` (or run `make test`)"
    );
    let system = LocalSystem::start(LocalSystemConfig::named(format!(
        "badinput{}",
        std::process::id()
    )))
    .await
    .expect("local system starts");
    system.restock("MUG", 10).await.unwrap();

    let cases: Vec<_> = bad_records("broker")
        .into_iter()
        .filter(|c| matches!(c.value, BadValue::Bytes(_)))
        .collect();
    let records: Vec<OutboundRecord> = cases
        .iter()
        .map(|case| OutboundRecord {
            topic: (case.topic)(&system.topics),
            key: case.key.clone(),
            value: match &case.value {
                BadValue::Bytes(bytes) => bytes.clone(),
                BadValue::InvalidBase64(_) => unreachable!("filtered out above"),
            },
            headers: case
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
                .collect(),
        })
        .collect();
    EventPublisher::new(&system.kafka)
        .unwrap()
        .publish(&records)
        .await
        .unwrap();
    // Good orders on the same topics and partitions after the bad records.
    for (id, flow) in [
        ("ord-bi-o", Flow::Orchestrated),
        ("ord-bi-c", Flow::Choreographed),
    ] {
        system.place_order(&good_order(id, flow)).await.unwrap();
    }
    for id in ["ord-bi-o", "ord-bi-c"] {
        let order = system.wait_for_terminal(id, WAIT).await.unwrap();
        assert_eq!(order.status, OrderStatus::Completed, "{id}");
    }

    let letters = system
        .read_dead_letters(cases.len(), Duration::from_secs(30))
        .await;
    let mut failures = Vec::new();
    for case in &cases {
        // The letter's raw record holds the key as the trigger encoded it.
        let key = STANDARD.encode(&case.key);
        let mine: Vec<_> = letters.iter().filter(|l| l.value.contains(&key)).collect();
        // Several functions read the order events topic (payment, inventory, shipping, the
        // orchestrator, analytics); each dead-letters what it cannot read, with its reason.
        if mine.is_empty() {
            failures.push(format!("{}: no dead letter", case.name));
        } else if let Some(wrong) = mine.iter().find(|l| !l.reason.contains(case.reason)) {
            failures.push(format!(
                "{}: reason `{}` does not contain `{}`",
                case.name, wrong.reason, case.reason
            ));
        }
    }
    let stats = system.stop().await;
    assert!(failures.is_empty(), "\n{}\n{stats:?}", failures.join("\n"));
}
