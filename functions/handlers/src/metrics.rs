//! CloudWatch metrics as Embedded Metric Format lines: one JSON object per line whose `_aws`
//! block tells CloudWatch which members are metrics (with their units) and which are
//! dimensions. Every function writes them in one namespace with the function as a dimension:
//! each batch's records processed, retried and dead-lettered (also per topic), its duration and
//! how often DynamoDB pushed back during it; the orchestrator's saga outcomes; each service's
//! step latencies; and the analytics function's order and saga durations. Where the lines go
//! is the runtime's choice ([`MetricsSink`]): standard output on Lambda, nowhere in `make run`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::kafka::KafkaEvent;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_lambda_kafka::BatchReport;
use sagaflow_orders::projection::{DurationMetric, DurationSample};
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
/// Requests DynamoDB refused for throughput during a batch, retried or not.
pub const DYNAMODB_THROTTLES: &str = "DynamoDbThrottles";
/// Writes DynamoDB refused during a batch because another writer got there first.
pub const DYNAMODB_CONFLICTS: &str = "DynamoDbConflicts";
/// From a command being issued (by a saga step, or the event a reaction answers) to its effect
/// being recorded by the service, in milliseconds, by command type.
pub const STEP_LATENCY: &str = "StepLatency";
/// From an order's creation to its completion or cancellation, in milliseconds, by outcome.
pub const ORDER_DURATION: &str = "OrderDuration";
/// From a saga's start to its end, in milliseconds, by outcome.
pub const SAGA_DURATION: &str = "SagaDuration";
/// The most values one EMF member may hold.
const MAX_VALUES: usize = 100;

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
        DYNAMODB_THROTTLES,
        DYNAMODB_CONFLICTS,
        STEP_LATENCY,
        ORDER_DURATION,
        SAGA_DURATION,
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

/// One line of many values of one metric under `dimensions` (EMF takes up to 100 values per
/// member, which CloudWatch counts as that many samples).
pub fn emf_values_line(
    timestamp_ms: i64,
    dimensions: &[(&str, &str)],
    name: &'static str,
    unit: Unit,
    values: &[f64],
) -> Value {
    let mut line = emf_line(
        timestamp_ms,
        dimensions,
        &[Metric {
            name,
            unit,
            value: 0.0,
        }],
    );
    if let Value::Object(members) = &mut line {
        members.insert(name.into(), json!(values));
    }
    line
}

/// How often DynamoDB pushed back during a batch (counted by the store's client).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorePushBack {
    /// Throttled requests, retried or not.
    pub throttled: u64,
    /// Writes that lost to another writer.
    pub conflicts: u64,
}

/// Reads and resets a function's push-back counts, once per batch.
pub type PushBackSource = Arc<dyn Fn() -> StorePushBack + Send + Sync>;

/// Step latencies (command type, milliseconds) as lines of `function`, one per command type
/// and at most 100 values each.
pub fn step_latency_lines(
    function: &str,
    samples: &[(String, f64)],
    timestamp_ms: i64,
) -> Vec<Value> {
    let mut by_command: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for (command, ms) in samples {
        by_command.entry(command.as_str()).or_default().push(*ms);
    }
    by_command
        .into_iter()
        .flat_map(|(command, values)| {
            values
                .chunks(MAX_VALUES)
                .map(|chunk| {
                    emf_values_line(
                        timestamp_ms,
                        &[("function", function), ("command", command)],
                        STEP_LATENCY,
                        Unit::Milliseconds,
                        chunk,
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The order and saga durations an analytics event completed, one line each, by outcome.
pub fn duration_lines(samples: &[DurationSample], timestamp_ms: i64) -> Vec<Value> {
    samples
        .iter()
        .map(|sample| {
            let name = match sample.metric {
                DurationMetric::Order => ORDER_DURATION,
                DurationMetric::Saga => SAGA_DURATION,
            };
            emf_line(
                timestamp_ms,
                &[
                    ("function", "analytics"),
                    ("outcome", sample.outcome.as_str()),
                ],
                &[Metric {
                    name,
                    unit: Unit::Milliseconds,
                    value: sample.ms as f64,
                }],
            )
        })
        .collect()
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

/// The lines one Kafka batch is measured by: the function's totals, duration and DynamoDB
/// push-back (when its store counts it), then the records, retries and dead letters of each
/// topic it came from.
pub fn batch_lines(
    function: &str,
    event: &KafkaEvent,
    report: &BatchReport,
    duration: Duration,
    push_back: Option<StorePushBack>,
    timestamp_ms: i64,
) -> Vec<Value> {
    let mut totals = vec![
        Metric::count(RECORDS_PROCESSED, report.records),
        Metric::count(RECORDS_RETRIED, report.retried.len()),
        Metric::count(RECORDS_DEAD_LETTERED, report.dead_lettered.len()),
        Metric {
            name: BATCH_DURATION,
            unit: Unit::Milliseconds,
            value: duration.as_secs_f64() * 1e3,
        },
    ];
    if let Some(push_back) = push_back {
        totals.push(Metric::count(
            DYNAMODB_THROTTLES,
            push_back.throttled as usize,
        ));
        totals.push(Metric::count(
            DYNAMODB_CONFLICTS,
            push_back.conflicts as usize,
        ));
    }
    let mut lines = vec![emf_line(timestamp_ms, &[("function", function)], &totals)];
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
        let lines = batch_lines(
            "order",
            &event,
            &report,
            Duration::from_millis(12),
            Some(StorePushBack {
                throttled: 2,
                conflicts: 1,
            }),
            1_000,
        );
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for line in &lines {
            check_emf_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
        assert_eq!(lines[0]["function"], "order");
        assert_eq!(lines[0]["RecordsProcessed"], 3.0);
        assert_eq!(lines[0]["BatchDuration"], 12.0);
        assert_eq!(lines[0]["DynamoDbThrottles"], 2.0);
        assert_eq!(lines[0]["DynamoDbConflicts"], 1.0);
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
    fn step_latencies_are_one_line_per_command_type_of_at_most_a_hundred_values() {
        let mut samples: Vec<(String, f64)> = (0..150)
            .map(|i| ("payment.charge".to_string(), f64::from(i)))
            .collect();
        samples.push(("payment.refund".into(), 7.5));
        let lines = step_latency_lines("payment", &samples, 1_000);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        for line in &lines {
            check_emf_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(line["function"], "payment");
            assert_eq!(
                line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0],
                json!({ "Name": "StepLatency", "Unit": "Milliseconds" })
            );
        }
        let counts: Vec<(String, usize)> = lines
            .iter()
            .map(|l| {
                (
                    l["command"].as_str().unwrap().to_string(),
                    l["StepLatency"].as_array().unwrap().len(),
                )
            })
            .collect();
        assert_eq!(
            counts,
            [
                ("payment.charge".to_string(), 100),
                ("payment.charge".to_string(), 50),
                ("payment.refund".to_string(), 1)
            ]
        );
        assert!(step_latency_lines("payment", &[], 1_000).is_empty());
    }

    #[test]
    fn order_and_saga_durations_are_lines_by_outcome() {
        let samples = [
            DurationSample {
                metric: DurationMetric::Order,
                outcome: "completed".into(),
                ms: 840,
            },
            DurationSample {
                metric: DurationMetric::Saga,
                outcome: "aborted".into(),
                ms: 1_200,
            },
        ];
        let lines = duration_lines(&samples, 1_000);
        for line in &lines {
            check_emf_line(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        }
        assert_eq!(lines[0]["OrderDuration"], 840.0);
        assert_eq!(lines[0]["outcome"], "completed");
        assert_eq!(lines[1]["SagaDuration"], 1_200.0);
        assert_eq!(
            lines[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["function", "outcome"]])
        );
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
