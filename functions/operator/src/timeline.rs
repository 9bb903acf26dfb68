//! One order's timeline: every event of its streams (order, payment, inventory, shipment,
//! saga) in time order with its stream, sequence, type and cause, and its saga's steps with
//! their attempts, durations and outcomes. Each is one stream keyed by the order id; the
//! stock streams (one per SKU, shared by every order for it) are left out: the order's
//! reservation names every line it held, released or shipped.

use sagaflow_dynamodb::DynamoEventStore;
use sagaflow_eventsourcing::{EventStore, StoredEvent, StreamId};
use sagaflow_saga::SagaEvent;
use serde::Serialize;

use crate::error::OperatorError;
use crate::time::iso;

/// An order's history.
#[derive(Clone, Debug, Serialize)]
pub struct Timeline {
    /// The order.
    pub order: String,
    /// Where it ended up: `completed`, `cancelled`, or `running`.
    pub status: String,
    /// Every event of the order, oldest first.
    pub events: Vec<TimelineEvent>,
    /// Its saga's steps, in the order they were requested (none for a choreographed order).
    pub steps: Vec<StepRun>,
}

/// One event of the order.
#[derive(Clone, Debug, Serialize)]
pub struct TimelineEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// When, as ISO time.
    pub at: String,
    /// The stream, `type#id`.
    pub stream: String,
    /// Its place in the stream.
    pub sequence: u64,
    /// Its type.
    pub event_type: String,
    /// Its id.
    pub event_id: String,
    /// What caused it.
    pub causation_id: String,
    /// For a saga event, the step it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// For a saga's request, which attempt it is, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// For a saga's request, the id of the command it sent (the service's event names it as
    /// its cause).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// One attempt at a saga step or its compensation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepRun {
    /// The step.
    pub step: String,
    /// `forward` or `compensation`.
    pub kind: &'static str,
    /// Which attempt, from 1.
    pub attempt: u32,
    /// When it was requested, in milliseconds since the Unix epoch.
    pub requested_ms: i64,
    /// How long its answer took, if one came.
    pub duration_ms: Option<i64>,
    /// `succeeded`, `failed`, `timed out`, `compensated`, `compensation failed`, `cancelled`,
    /// `resent` (a later attempt was sent before an answer came) or `waiting`.
    pub outcome: String,
}

/// Whether `order` can be an order id.
pub fn check_order_id(order: &str) -> Result<(), OperatorError> {
    let fine = (1..=64).contains(&order.len())
        && order
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fine {
        Ok(())
    } else {
        Err(OperatorError::MalformedOrderId(order.to_string()))
    }
}

/// The timeline of `order` in `store`.
pub async fn timeline(store: &DynamoEventStore, order: &str) -> Result<Timeline, OperatorError> {
    check_order_id(order)?;
    let mut events: Vec<StoredEvent> = Vec::new();
    for aggregate in ["order", "payment", "inventory", "shipment", "saga"] {
        events.extend(store.load(&StreamId::new(aggregate, order), 0).await?);
    }
    if events.is_empty() {
        return Err(OperatorError::UnknownOrder {
            order: order.to_string(),
            table: store.table().to_string(),
        });
    }
    events.sort_by(|a, b| {
        (
            a.occurred_at.as_millis(),
            a.stream_id().to_string(),
            a.sequence,
        )
            .cmp(&(
                b.occurred_at.as_millis(),
                b.stream_id().to_string(),
                b.sequence,
            ))
    });
    let status = events
        .iter()
        .rev()
        .find_map(|e| match e.event_type.as_str() {
            "order.completed" => Some("completed"),
            "order.cancelled" => Some("cancelled"),
            _ => None,
        })
        .unwrap_or("running")
        .to_string();
    let saga: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| e.aggregate_type == "saga")
        .collect();
    Ok(Timeline {
        order: order.to_string(),
        status,
        steps: steps(&saga),
        events: events.iter().map(timeline_event).collect(),
    })
}

/// One event as the timeline shows it; a saga event also says its step, attempt and command.
fn timeline_event(e: &StoredEvent) -> TimelineEvent {
    let (step, attempt, command_id) = if e.aggregate_type == "saga" {
        match e.decode::<SagaEvent>().map(|d| d.payload) {
            Ok(
                SagaEvent::StepRequested {
                    step,
                    attempt,
                    command,
                    ..
                }
                | SagaEvent::CompensationRequested {
                    step,
                    attempt,
                    command,
                    ..
                },
            ) => (Some(step), Some(attempt), Some(command.command_id)),
            Ok(
                SagaEvent::StepSucceeded { step, .. }
                | SagaEvent::StepFailed { step, .. }
                | SagaEvent::StepCompensated { step, .. }
                | SagaEvent::CompensationFailed { step, .. }
                | SagaEvent::Cancelled { step, .. },
            ) => (Some(step), None, None),
            _ => (None, None, None),
        }
    } else {
        (None, None, None)
    };
    TimelineEvent {
        at_ms: e.occurred_at.as_millis(),
        at: iso(e.occurred_at.as_millis()),
        stream: e.stream_id().to_string(),
        sequence: e.sequence,
        event_type: e.event_type.clone(),
        event_id: e.event_id.clone(),
        causation_id: e.causation_id.clone(),
        step,
        attempt,
        command_id,
    }
}

/// The saga's step runs, read from its events in sequence order.
pub fn steps(saga: &[&StoredEvent]) -> Vec<StepRun> {
    let mut runs: Vec<StepRun> = Vec::new();
    for event in saga {
        let at = event.occurred_at.as_millis();
        let Ok(decoded) = event.decode::<SagaEvent>() else {
            continue;
        };
        match decoded.payload {
            SagaEvent::StepRequested { step, attempt, .. } => {
                open(&mut runs, step, "forward", attempt, at)
            }
            SagaEvent::CompensationRequested { step, attempt, .. } => {
                open(&mut runs, step, "compensation", attempt, at)
            }
            SagaEvent::StepSucceeded { step, .. } => {
                close(&mut runs, &step, "forward", at, "succeeded")
            }
            SagaEvent::StepFailed {
                step, timed_out, ..
            } => {
                let outcome = if timed_out { "timed out" } else { "failed" };
                close(&mut runs, &step, "forward", at, outcome)
            }
            SagaEvent::Cancelled { step, .. } => {
                close(&mut runs, &step, "forward", at, "cancelled")
            }
            SagaEvent::StepCompensated { step, .. } => {
                close(&mut runs, &step, "compensation", at, "compensated")
            }
            SagaEvent::CompensationFailed { step, .. } => {
                close(&mut runs, &step, "compensation", at, "compensation failed")
            }
            _ => {}
        }
    }
    runs
}

/// A new attempt; one still waiting for the same step was resent by this one.
fn open(runs: &mut Vec<StepRun>, step: String, kind: &'static str, attempt: u32, at: i64) {
    for waiting in runs
        .iter_mut()
        .filter(|r| r.step == step && r.kind == kind && r.outcome == "waiting")
    {
        waiting.duration_ms = Some(at - waiting.requested_ms);
        waiting.outcome = "resent".into();
    }
    runs.push(StepRun {
        step,
        kind,
        attempt,
        requested_ms: at,
        duration_ms: None,
        outcome: "waiting".into(),
    });
}

/// The answer to the latest waiting attempt of `step`.
fn close(runs: &mut [StepRun], step: &str, kind: &str, at: i64, outcome: &str) {
    if let Some(run) = runs
        .iter_mut()
        .rev()
        .find(|r| r.step == step && r.kind == kind && r.outcome == "waiting")
    {
        run.duration_ms = Some(at - run.requested_ms);
        run.outcome = outcome.to_string();
    }
}
