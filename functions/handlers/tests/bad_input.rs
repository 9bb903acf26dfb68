//! Bad input, table-driven: every record of the catalogue in `sagaflow_handlers::testkit::bad_input`,
//! each sent to its function's handler in one batch with a good record. Each must be
//! dead-lettered with a reason that names its problem, the good record must take effect, the
//! batch must report no failure (the partition moves on), and nothing may panic.
//! `tests/bad_input_broker.rs` sends the same records through the real broker.

use aws_lambda_events::event::kafka::KafkaEvent;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sagaflow_eventsourcing::InMemoryEventStore;
use sagaflow_handlers::testkit::bad_input::{bad_records, good_command, BadRecord, BadValue};
use sagaflow_handlers::testkit::fixture_run::MemoryFunction;
use sagaflow_handlers::ServiceHandler;
use sagaflow_orders::domain::{OrderStatus, PaymentStatus};
use sagaflow_records::Topics;
use serde_json::{json, Value};

fn record(
    topic: &str,
    partition: i64,
    offset: i64,
    key: &str,
    value: &str,
    headers: &[(String, String)],
) -> Value {
    json!({
        "topic": topic, "partition": partition, "offset": offset,
        "timestamp": 1_764_547_200_000_i64, "timestampType": "CREATE_TIME",
        "key": STANDARD.encode(key), "value": value,
        "headers": headers.iter().map(|(k, v)| json!({ k.as_str(): v.as_bytes() })).collect::<Vec<_>>(),
    })
}

/// A trigger payload of the bad record (partition 0) and a good command (partition 1).
fn batch(case: &BadRecord) -> KafkaEvent {
    let topics = Topics::default();
    let bad_topic = (case.topic)(&topics);
    let value = match &case.value {
        BadValue::Bytes(bytes) => STANDARD.encode(bytes),
        BadValue::InvalidBase64(text) => text.clone(),
    };
    let (good_type, good) = good_command(case.service, "ord-good");
    let good_topic = topics.commands(case.service);
    let headers = [("command_type".to_string(), good_type.to_string())];
    serde_json::from_value(json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "127.0.0.1:9092",
        "records": {
            format!("{bad_topic}-0"): [record(&bad_topic, 0, 40, &case.key, &value, &case.headers)],
            format!("{good_topic}-1"): [record(&good_topic, 1, 41, "ord-good", &STANDARD.encode(good), &headers)],
        },
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
            services
                .payments()
                .load("ord-good")
                .await
                .unwrap()
                .state
                .status
                == PaymentStatus::Captured
        }
        _ => {
            services
                .orders()
                .load("ord-good")
                .await
                .unwrap()
                .state
                .status
                == OrderStatus::Created
        }
    }
}

#[tokio::test]
async fn every_bad_record_is_dead_lettered_with_its_reason_and_the_batch_goes_on() {
    let mut failures = Vec::new();
    let cases = bad_records("suite");
    assert!(cases.len() >= 14);
    for case in &cases {
        let f = MemoryFunction::service(case.service).unwrap();
        let result = f.function.handle_batch(&batch(case)).await;
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
    let case = bad_records("cut")
        .into_iter()
        .find(|c| c.name == "record over the size limit")
        .unwrap();
    let f = MemoryFunction::service(case.service).unwrap();
    f.function.handle_batch(&batch(&case)).await;
    let letter = f.dead_letters.letters().remove(0);
    let BadValue::Bytes(sent) = &case.value else {
        unreachable!("the oversized case carries bytes")
    };
    assert_eq!(
        letter.value_truncated_from,
        Some(STANDARD.encode(sent).len())
    );
    let kept = letter.raw.value.unwrap();
    assert_eq!(
        kept.len(),
        sagaflow_lambda_kafka::batch::MAX_DEAD_LETTER_VALUE_CHARS
    );
    assert!(
        STANDARD.decode(&kept).is_ok(),
        "the kept prefix is still base64"
    );
}
