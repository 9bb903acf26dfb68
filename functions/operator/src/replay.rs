//! The analytics read model rebuilt from the events table and held against the live one: every
//! counter and duration that differs is printed. With a target table, the rebuild is written
//! there too, each stream by one of several tasks at once; applying is exactly-once per stream
//! position, so a rebuild that stops half-way is run again and resumes.

use std::collections::BTreeMap;
use std::sync::Arc;

use sagaflow_dynamodb::DynamoAnalyticsStore;
use sagaflow_dynamodb::DynamoEventStore;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_orders::flow::FlowEvent;
use sagaflow_orders::projection::{AnalyticsProjection, AnalyticsStore, AnalyticsSummary};
use serde_json::Value;

use crate::error::OperatorError;

/// Streams written at once into a target table.
const WRITERS: usize = 8;

/// One counter or duration that the live table and the replay disagree on.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Difference {
    /// `family.key`, such as `orders_by_status.completed`.
    pub field: String,
    /// In the live table.
    pub live: Value,
    /// In the replay.
    pub replayed: Value,
}

/// The events of `store` the read model reads (no SKU's stock), and their replay.
pub async fn replayed(
    store: &DynamoEventStore,
) -> Result<(Vec<StoredEvent>, AnalyticsSummary), OperatorError> {
    let mut events = store.all_events().await?;
    events.retain(AnalyticsProjection::reads);
    let projection = AnalyticsProjection::replay(&events)
        .map_err(|e| OperatorError::Settings(format!("an event cannot be read: {e}")))?;
    Ok((events, projection.summary().clone()))
}

/// The differences between two summaries, field by field.
pub fn differences(live: &AnalyticsSummary, replayed: &AnalyticsSummary) -> Vec<Difference> {
    let flat = |summary: &AnalyticsSummary| -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        if let Ok(Value::Object(families)) = serde_json::to_value(summary) {
            for (family, entries) in families {
                if let Value::Object(entries) = entries {
                    for (key, value) in entries {
                        out.insert(format!("{family}.{key}"), value);
                    }
                }
            }
        }
        out
    };
    let (live, replayed) = (flat(live), flat(replayed));
    let fields: std::collections::BTreeSet<&String> = live.keys().chain(replayed.keys()).collect();
    fields
        .into_iter()
        .filter_map(|field| {
            let a = live.get(field).cloned().unwrap_or(Value::Null);
            let b = replayed.get(field).cloned().unwrap_or(Value::Null);
            (a != b).then(|| Difference {
                field: field.clone(),
                live: a,
                replayed: b,
            })
        })
        .collect()
}

/// Writes every event into `target`, each stream in order, several streams at once; prints
/// progress on standard error.
pub async fn write_into(
    events: Vec<StoredEvent>,
    target: Arc<DynamoAnalyticsStore>,
) -> Result<usize, OperatorError> {
    let mut streams: BTreeMap<String, Vec<StoredEvent>> = BTreeMap::new();
    for event in events {
        streams
            .entry(event.stream_id().to_string())
            .or_default()
            .push(event);
    }
    let total: usize = streams.values().map(Vec::len).sum();
    let queue = Arc::new(std::sync::Mutex::new(
        streams.into_values().collect::<Vec<_>>(),
    ));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (queue, target, done) = (queue.clone(), target.clone(), done.clone());
        writers.spawn(async move {
            loop {
                let next = queue.lock().map(|mut q| q.pop()).unwrap_or(None);
                let Some(stream) = next else {
                    return Ok::<_, OperatorError>(());
                };
                for event in &stream {
                    let typed = FlowEvent::decode(event).map_err(|e| {
                        OperatorError::Settings(format!("an event cannot be read: {e}"))
                    })?;
                    target
                        .apply(&typed)
                        .await
                        .map_err(|e| OperatorError::Settings(e.to_string()))?;
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n % 500 == 0 {
                        eprint!("\rreplayed {n} of {total} events");
                    }
                }
            }
        });
    }
    while let Some(joined) = writers.join_next().await {
        joined.map_err(|e| OperatorError::Settings(format!("a writer stopped: {e}")))??;
    }
    eprintln!("\rreplayed {total} of {total} events");
    Ok(total)
}

/// The live summary of `live`.
pub async fn live_summary(live: &DynamoAnalyticsStore) -> Result<AnalyticsSummary, OperatorError> {
    live.summary()
        .await
        .map_err(|e| OperatorError::Settings(e.to_string()))
}
