//! The sagas that need a person. Running and compensating sagas wait on a deadline, so the
//! events table's wake-up index lists them without a scan; finished sagas (compensated,
//! compensation failed, cancelled) have left that index, so finding them scans the table's
//! saga streams, with a count on standard error as it goes.

use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use sagaflow_dynamodb::DynamoEventStore;
use sagaflow_eventsourcing::{EventStore, Repository, StreamId, Timestamp};
use sagaflow_saga::{InstanceStatus, SagaInstance};
use serde::Serialize;

use crate::error::OperatorError;
use crate::time::iso;

/// The statuses `saga list --status` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SagaStatus {
    /// Running its forward steps.
    Running,
    /// Undoing the steps before a failure.
    Compensating,
    /// At least one compensation was given up: money or stock may need a person.
    CompensationFailed,
    /// Cancelled by its customer (and compensated, or compensating).
    Cancelled,
}

impl SagaStatus {
    /// Whether the wake-up index lists sagas of this status.
    fn in_flight(self) -> bool {
        matches!(self, SagaStatus::Running | SagaStatus::Compensating)
    }
}

/// One saga found.
#[derive(Clone, Debug, Serialize)]
pub struct SagaRow {
    /// The saga (its order's id).
    pub saga_id: String,
    /// Its status, as `InstanceStatus` names it.
    pub status: String,
    /// Whether its customer cancelled it.
    pub cancelled: bool,
    /// The step it waits on, if any.
    pub awaiting: Option<String>,
    /// When it started, as ISO time.
    pub started: Option<String>,
    /// How long ago it started, in seconds.
    pub age_secs: Option<i64>,
}

/// The sagas with `status` (all that need a person when `None`) that started before
/// `older_than_ms` ago, at `now_ms`.
pub async fn list(
    store: Arc<DynamoEventStore>,
    client: &aws_sdk_dynamodb::Client,
    status: Option<SagaStatus>,
    older_than_ms: i64,
    now_ms: i64,
) -> Result<Vec<SagaRow>, OperatorError> {
    let ids = match status {
        Some(s) if s.in_flight() => store
            .due("saga", Timestamp(i64::MAX), 100_000)
            .await?
            .into_iter()
            .map(|d| d.stream.aggregate_id)
            .collect(),
        _ => scan_saga_ids(client, store.table()).await?,
    };
    let sagas = Repository::<SagaInstance, DynamoEventStore>::new(store.clone());
    let mut rows = Vec::new();
    for id in ids {
        let loaded = sagas
            .load(&id)
            .await
            .map_err(|e| OperatorError::Settings(e.to_string()))?;
        let saga = loaded.state;
        let started = saga.started_at().map(|t| t.as_millis());
        if started.is_some_and(|s| now_ms - s < older_than_ms) {
            continue;
        }
        let needs_look = status.is_some_and(|s| s == SagaStatus::Cancelled) || status.is_none();
        let cancelled = needs_look
            && store
                .load(&StreamId::new("saga", &id), 0)
                .await?
                .iter()
                .any(|e| e.event_type == "saga.cancelled");
        let wanted = match status {
            Some(SagaStatus::Running) => saga.status() == InstanceStatus::Running,
            Some(SagaStatus::Compensating) => saga.status() == InstanceStatus::Compensating,
            Some(SagaStatus::CompensationFailed) => {
                saga.status() == InstanceStatus::CompensationFailed
            }
            Some(SagaStatus::Cancelled) => cancelled,
            // What needs a person: not finished well.
            None => !matches!(
                saga.status(),
                InstanceStatus::Completed
                    | InstanceStatus::Compensated
                    | InstanceStatus::NotStarted
            ),
        };
        if !wanted {
            continue;
        }
        rows.push(SagaRow {
            saga_id: id,
            status: format!("{:?}", saga.status()),
            cancelled,
            awaiting: saga
                .awaiting()
                .map(|(step, kind, _)| format!("{step} ({kind:?})")),
            started: started.map(iso),
            age_secs: started.map(|s| (now_ms - s) / 1_000),
        });
    }
    rows.sort_by(|a, b| a.started.cmp(&b.started));
    Ok(rows)
}

/// The ids of every saga in the table: the streams whose first event is `saga.started`.
async fn scan_saga_ids(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Vec<String>, OperatorError> {
    let mut ids = Vec::new();
    let mut start = None;
    let mut scanned = 0usize;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .filter_expression("begins_with(pk, :saga) AND sk = :first AND kind = :event")
            .expression_attribute_values(":saga", AttributeValue::S("saga#".into()))
            .expression_attribute_values(":first", AttributeValue::N("1".into()))
            .expression_attribute_values(":event", AttributeValue::S("event".into()))
            .projection_expression("pk")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| OperatorError::dynamo("Scan", &e))?;
        scanned += page.scanned_count() as usize;
        eprint!("\rscanned {scanned} items, {} sagas", ids.len());
        for item in page.items() {
            if let Some(id) = item
                .get("pk")
                .and_then(|v| v.as_s().ok())
                .and_then(|pk| pk.strip_prefix("saga#"))
            {
                ids.push(id.to_string());
            }
        }
        match page.last_evaluated_key() {
            Some(key) if !key.is_empty() => start = Some(key.clone()),
            _ => break,
        }
    }
    eprintln!("\rscanned {scanned} items, {} sagas", ids.len());
    Ok(ids)
}
