//! CloudWatch metrics as Embedded Metric Format lines: one JSON object per line whose `_aws`
//! block tells CloudWatch which members are metrics (with their units) and which are
//! dimensions. Every function writes them in one namespace with the function as a dimension:
//! each batch's records processed, retried and dead-lettered (also per topic) and its duration,
//! and the orchestrator's saga outcomes. Where the lines go is the runtime's choice
//! ([`MetricsSink`]): standard output on Lambda, nowhere in `make run`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::kafka::KafkaEvent;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_lambda_kafka::BatchReport;
use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every sagaflow metric.
pub const NAMESPACE: &str = "sagaflow";

/// A batch's records, all of them.
pub const RECORDS_PROCESSED: &str = "RecordsProcessed";
/// A batch's records that will be delivered again.
pub const RECORDS_RETRIED: &str = "RecordsRetried";
/// A batch's records sent to the dead-letter topic.
pub const RECORDS_DEAD_LETTERED: &str = "RecordsDeadLettered";
/// How long a batch took, in milliseconds.
pub const BATCH_DURATION: &str = "BatchDuration";
/// The saga outcome metrics, in the order the saga line writes them.
pub const SAGA_METRICS: [&str; 6] = [
    "SagasStarted",
    "SagasCompleted",
    "SagasCompensated",
    "SagasCompensationFailed",
    "SagasCancelled",
    "SagaStepsFailed",
];
/// Every metric a function writes.
pub fn metric_names() -> Vec<&'static str> {
    [
        RECORDS_PROCESSED,
        RECORDS_RETRIED,
        RECORDS_DEAD_LETTERED,
        BATCH_DURATION,
    ]
    .into_iter()
    .chain(SAGA_METRICS)
    .collect()
}

/// A metric's unit, as EMF names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A count of things.
    Count,
    /// A duration.
    Milliseconds,
}

impl Unit {
    /// The unit's name in an EMF directive.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One value of one metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// The metric's name.
    pub name: &'static str,
    /// Its unit.
    pub unit: Unit,
    /// Its value.
    pub value: f64,
}

impl Metric {
    /// A count.
    pub fn count(name: &'static str, value: usize) -> Self {
        Self {
            name,
            unit: Unit::Count,
            value: value as f64,
        }
    }
}

/// One EMF line: `metrics` under the dimensions `dimensions` (name and value), at
/// `timestamp_ms`.
pub fn emf_line(timestamp_ms: i64, dimensions: &[(&str, &str)], metrics: &[Metric]) -> Value {
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(name, _)| *name).collect::<Vec<_>>()],
                "Metrics": metrics
                    .iter()
                    .map(|m| json!({ "Name": m.name, "Unit": m.unit.as_str() }))
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    for (name, value) in dimensions {
        root.insert((*name).into(), json!(value));
    }
    for metric in metrics {
        root.insert(metric.name.into(), json!(metric.value));
    }
    Value::Object(root)
}

/// Where a function's metric lines go.
pub trait MetricsSink: Send + Sync {
    /// Writes one EMF line.
    fn emit(&self, line: Value);
}

/// Metrics dropped: for runtimes with no CloudWatch behind them.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoMetrics;

impl MetricsSink for NoMetrics {
    fn emit(&self, _line: Value) {}
}

/// Metric lines kept in memory, for tests.
#[derive(Clone, Debug, Default)]
pub struct RecordedMetrics {
    lines: Arc<Mutex<Vec<Value>>>,
}

impl RecordedMetrics {
    /// The lines emitted so far.
    pub fn lines(&self) -> Vec<Value> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl MetricsSink for RecordedMetrics {
    fn emit(&self, line: Value) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }
}

/// The lines one Kafka batch is measured by: the function's totals and duration, then the
/// records, retries and dead letters of each topic it came from.
pub fn batch_lines(
    function: &str,
    event: &KafkaEvent,
    report: &BatchReport,
    duration: Duration,
    timestamp_ms: i64,
) -> Vec<Value> {
    let mut lines = vec![emf_line(
        timestamp_ms,
        &[("function", function)],
        &[
            Metric::count(RECORDS_PROCESSED, report.records),
            Metric::count(RECORDS_RETRIED, report.retried.len()),
            Metric::count(RECORDS_DEAD_LETTERED, report.dead_lettered.len()),
            Metric {
                name: BATCH_DURATION,
                unit: Unit::Milliseconds,
                value: duration.as_secs_f64() * 1e3,
            },
        ],
    )];
    let mut per_topic: std::collections::BTreeMap<&str, (usize, usize, usize)> = Default::default();
    for records in event.records.values() {
        for record in records {
            if let Some(topic) = record.topic.as_deref() {
                per_topic.entry(topic).or_default().0 += 1;
            }
        }
    }
    for (id, _) in &report.retried {
        per_topic.entry(id.topic.as_str()).or_default().1 += 1;
    }
    for (id, _) in &report.dead_lettered {
        per_topic.entry(id.topic.as_str()).or_default().2 += 1;
    }
    for (topic, (records, retried, dead)) in per_topic {
        lines.push(emf_line(
            timestamp_ms,
            &[("function", function), ("topic", topic)],
            &[
                Metric::count(RECORDS_PROCESSED, records),
                Metric::count(RECORDS_RETRIED, retried),
                Metric::count(RECORDS_DEAD_LETTERED, dead),
            ],
        ));
    }
    lines
}

/// The saga outcomes among `events` (the saga events one record made), as one line; `None`
/// when there were none.
pub fn saga_line(events: &[StoredEvent], timestamp_ms: i64) -> Option<Value> {
    let count = |event_type: &str| events.iter().filter(|e| e.event_type == event_type).count();
    let compensation_failed = events
        .iter()
        .filter(|e| e.event_type == "saga.aborted")
        .filter(|e| {
            e.payload
                .get("compensation_failed")
                .and_then(Value::as_array)
                .is_some_and(|steps| !steps.is_empty())
        })
        .count();
    let aborted = count("saga.aborted");
    let values = [
        count("saga.started"),
        count("saga.completed"),
        aborted - compensation_failed,
        compensation_failed,
        count("saga.cancelled"),
        count("saga.step_failed"),
    ];
    let metrics: Vec<Metric> = SAGA_METRICS
        .iter()
        .zip(values)
        .map(|(name, value)| Metric::count(name, value))
        .collect();
    if metrics.iter().all(|m| m.value == 0.0) {
        return None;
    }
    Some(emf_line(
        timestamp_ms,
        &[("function", "orchestrator")],
        &metrics,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::emf::check_emf_line;
    use sagaflow_eventsourcing::event::{envelope_events, CommandMeta, StreamId, Timestamp};
    use sagaflow_lambda_kafka::trigger_payload::{kafka_event, ConsumedRecord, EventSource};
    use sagaflow_lambda_kafka::RecordId;
    use sagaflow_saga::SagaEvent;

    fn record(topic: &str, offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            topic: topic.into(),
            partition: 0,
            offset,
            timestamp_ms: 0,
            key: None,
            value: Some(b"{}".to_vec()),
            headers: vec![],
        }
    }

    #[test]
    fn a_batch_is_measured_per_function_and_per_topic_in_lines_the_specification_accepts() {
        let event = sagaflow_lambda_kafka::parse_kafka_event(kafka_event(
            &[
                record("p.commands.order", 1),
                record("p.commands.order", 2),
                record("p.events.payment", 7),
            ],
            EventSource::SelfManaged,
            "127.0.0.1:9092",
        ))
        .unwrap();
        let id = |topic: &str, offset| RecordId {
            topic: topic.into(),
            partition: 0,
            offset,
        };
        let report = BatchReport {
            records: 3,
            done: 1,
            dead_lettered: vec![(id("p.commands.order", 2), "bad".into())],
            retried: vec![(id("p.events.payment", 7), "throttled".into())],
            skipped_after_failure: 0,
        };
        let lines = batch_lines("order", &event, &report, Duration::from_millis(12), 1_000);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for line in &lines {
            check_emf_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
        assert_eq!(lines[0]["function"], "order");
        assert_eq!(lines[0]["RecordsProcessed"], 3.0);
        assert_eq!(lines[0]["BatchDuration"], 12.0);
        let orders = lines
            .iter()
            .find(|l| l["topic"] == "p.commands.order")
            .unwrap();
        assert_eq!(
            (
                orders["RecordsProcessed"].as_f64(),
                orders["RecordsDeadLettered"].as_f64()
            ),
            (Some(2.0), Some(1.0))
        );
        assert_eq!(
            orders["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function", "topic"]])
        );
    }

    #[test]
    fn saga_outcomes_are_counted_and_a_failed_compensation_is_not_a_compensated_saga() {
        let meta = CommandMeta::new("ord-1", "cause", Timestamp(5));
        let events = envelope_events(
            &StreamId::new("saga", "ord-1"),
            0,
            &[
                SagaEvent::Aborted {
                    reason: "declined".into(),
                    compensation_failed: vec!["reserve".into()],
                    finished_at: Timestamp(5),
                },
                SagaEvent::Aborted {
                    reason: "declined".into(),
                    compensation_failed: vec![],
                    finished_at: Timestamp(5),
                },
            ],
            &meta,
        );
        let line = saga_line(&events, 1_000).expect("outcomes");
        check_emf_line(&line).unwrap();
        assert_eq!(line["SagasCompensationFailed"], 1.0);
        assert_eq!(line["SagasCompensated"], 1.0);
        assert_eq!(saga_line(&[], 1_000), None);
    }

    #[test]
    fn the_check_refuses_lines_that_break_the_specification() {
        let good = emf_line(1, &[("function", "x")], &[Metric::count("N", 1)]);
        check_emf_line(&good).unwrap();
        let mut no_member = good.clone();
        no_member.as_object_mut().unwrap().remove("N");
        assert!(check_emf_line(&no_member).is_err());
        let mut bad_unit = good.clone();
        bad_unit["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = json!("Apples");
        assert!(check_emf_line(&bad_unit).is_err());
        let mut number_dimension = good.clone();
        number_dimension["function"] = json!(3);
        assert!(check_emf_line(&number_dimension).is_err());
        let mut no_time = good;
        no_time["_aws"].as_object_mut().unwrap().remove("Timestamp");
        assert!(check_emf_line(&no_time).is_err());
    }
}
