//! What the functions log, captured from the subscriber they install: one JSON line per batch
//! and one per retried or dead-lettered record, with the ids that find the message again; and
//! never a payload or a secret.

use std::io::Write;
use std::sync::{Arc, Mutex};

use lambda_runtime::tracing::{self, Instrument};
use lambda_runtime::{Context, LambdaEvent};
use sagaflow_dynamodb::AdapterConfig;
use sagaflow_handlers::testkit::fixture_run::{load_kafka_fixture, MemoryFunction};
use sagaflow_kafka::config::{ScramCredentials, AUTH_VAR, SECRET_ARN_VAR};
use sagaflow_kafka::KafkaConfig;
use sagaflow_lambdas::{context::log_ready, kafka_batch, logging};
use serde_json::Value;

/// Every byte the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Each line, which must be a JSON object.
    fn lines(&self) -> Vec<Value> {
        self.text()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect()
    }
}

const REQUEST_ID: &str = "8476a536-e9f4-11e8-9739-2dfe598c3fcd";
const XRAY_TRACE_ID: &str =
    "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1";

/// Runs the order function on its committed MSK payload with the functions' subscriber.
async fn order_function_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    let dispatch = logging::dispatch(|_| None, move || writer.clone());
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let f = MemoryFunction::service("order").unwrap();
    let payload = load_kafka_fixture("order", "msk-event.json").unwrap();
    // The span the runtime's TracingLayer opens around each invocation.
    let invocation = tracing::info_span!(
        "Lambda runtime invoke",
        requestId = REQUEST_ID,
        xrayTraceId = XRAY_TRACE_ID
    );
    kafka_batch(
        &f.function,
        LambdaEvent {
            payload,
            context: Context::default(),
        },
    )
    .instrument(invocation)
    .await
    .unwrap();
    captured
}

/// One test for what a batch logs, so no other test of this binary runs the handlers at the
/// same time: `tracing` caches, per call site, whether anyone listens, across threads.
#[tokio::test]
async fn a_batch_logs_json_lines_with_the_ids_of_each_dead_letter_and_no_payload() {
    let captured = order_function_logs().await;
    let text = captured.text();
    // Fields of the fixture's command and event payloads: an address, a destination, a reason.
    for payload_text in ["Ada Lovelace", "1 Loop Road", "the moon", "changed my mind"] {
        assert!(
            !text.contains(payload_text),
            "`{payload_text}` was logged:\n{text}"
        );
    }
    let lines = captured.lines();
    let batch: Vec<&Value> = lines.iter().filter(|l| l["message"] == "batch").collect();
    assert_eq!(batch.len(), 1, "{lines:#?}");
    let batch = batch[0];
    assert_eq!(batch["function"], "order");
    assert_eq!(batch["level"], "INFO");
    for field in [
        "records",
        "done",
        "retried",
        "dead_lettered",
        "partitions",
        "duration_ms",
    ] {
        assert!(batch[field].is_number(), "{field}: {batch}");
    }
    let dead: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "record dead-lettered")
        .collect();
    assert_eq!(
        dead.len() as u64,
        batch["dead_lettered"].as_u64().unwrap(),
        "one line per dead letter: {lines:#?}"
    );
    let teleport = dead
        .iter()
        .find(|l| l["reason"].as_str().unwrap().contains("order.teleport"))
        .expect("the unknown command's line");
    assert_eq!(teleport["function"], "order");
    assert_eq!(teleport["level"], "ERROR");
    assert_eq!(teleport["topic"], "sagaflow.commands.order");
    assert!(teleport["partition"].is_number() && teleport["offset"].is_number());
    assert_eq!(teleport["correlation_id"], "ord-2002");
    assert_eq!(teleport["causation_id"], "fixture-ord-2002");
    assert!(
        !teleport["message_id"].as_str().unwrap().is_empty(),
        "the command id: {teleport}"
    );
    // Every line names the invocation; a record's line also its span, with the trace id.
    for line in &lines {
        let spans = line["spans"]
            .as_array()
            .unwrap_or_else(|| panic!("no spans: {line}"));
        assert_eq!(spans[0]["name"], "Lambda runtime invoke", "{line}");
        assert_eq!(spans[0]["requestId"], REQUEST_ID, "{line}");
        assert_eq!(spans[0]["xrayTraceId"], XRAY_TRACE_ID, "{line}");
    }
    let record = &teleport["spans"][1];
    assert_eq!(record["name"], "record", "{teleport}");
    assert_eq!(record["correlation_id"], "ord-2002");
    let trace_id = record["trace_id"].as_str().unwrap();
    assert!(
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{teleport}"
    );
}

#[test]
fn the_ready_line_hides_the_kafka_password() {
    let captured = Captured::default();
    let writer = captured.clone();
    let dispatch = logging::dispatch(|_| None, move || writer.clone());
    let kafka = KafkaConfig::from_lookup(|name| match name {
        AUTH_VAR => Some("scram".to_string()),
        SECRET_ARN_VAR => Some("AmazonMSK_sagaflow".to_string()),
        _ => None,
    })
    .unwrap()
    .with_scram(ScramCredentials {
        username: "app".into(),
        password: "correct-horse-battery".into(),
    });
    tracing::dispatcher::with_default(&dispatch, || log_ready(&AdapterConfig::default(), &kafka));
    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let ready = &lines[0];
    assert_eq!(ready["message"], "function ready");
    let kafka = ready["kafka"].as_str().unwrap();
    assert!(
        kafka.contains("\"app\"") && kafka.contains("<redacted>"),
        "{kafka}"
    );
    assert!(!captured.text().contains("correct-horse-battery"));
}

#[test]
fn lambdas_advanced_logging_controls_set_the_level_and_the_format() {
    let captured = Captured::default();
    let writer = captured.clone();
    let warn_only = logging::dispatch(
        |name| (name == "AWS_LAMBDA_LOG_LEVEL").then(|| "WARN".to_string()),
        move || writer.clone(),
    );
    tracing::dispatcher::with_default(&warn_only, || {
        tracing::info!("hidden");
        tracing::warn!("shown");
    });
    let lines = captured.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["message"], "shown");

    let text = Captured::default();
    let writer = text.clone();
    let plain = logging::dispatch(
        |name| (name == "AWS_LAMBDA_LOG_FORMAT").then(|| "Text".to_string()),
        move || writer.clone(),
    );
    tracing::dispatcher::with_default(&plain, || tracing::info!("plain"));
    assert!(text.text().contains("plain") && !text.text().starts_with('{'));
}
