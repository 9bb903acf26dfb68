//! The deadline timer: finds the sagas whose step deadline has passed (the event store's
//! wake-up index) and lets each act on it, so a step whose reply never comes fails and its saga
//! compensates. On AWS a schedule runs it every minute; locally the local system ticks it.

use std::sync::Arc;

use sagaflow_eventsourcing::EventStore;
use sagaflow_eventsourcing::StoreError;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_orders::flow::sagas::SagaRunner;
use serde::Serialize;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::trace::tick_span;

/// How many sagas one run ticks at most; the rest wait for the next run.
pub const MAX_SAGAS_PER_RUN: usize = 500;
/// How many ticks run at once.
const CONCURRENT_TICKS: usize = 16;

/// What one run of the timer did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Sagas whose wake-up time had come.
    pub due: usize,
    /// Sagas a tick moved on (a step failed, a compensation was requested, the saga ended).
    pub advanced: usize,
    /// Sagas a tick left as they were (already answered; the index lagged).
    pub unchanged: usize,
    /// Sagas whose tick failed, with the reason; they stay due and are tried again next run.
    pub failed: Vec<String>,
}

/// Ticks the sagas that are due.
pub struct DeadlineTimer<S> {
    store: Arc<S>,
    sagas: SagaRunner<S>,
}

impl<S> Clone for DeadlineTimer<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            sagas: self.sagas.clone(),
        }
    }
}

impl<S: EventStore + 'static> DeadlineTimer<S> {
    /// A timer over `store` for the sagas `sagas` runs.
    pub fn new(store: Arc<S>, sagas: SagaRunner<S>) -> Self {
        Self { store, sagas }
    }

    /// Ticks every saga due at `now` (up to [`MAX_SAGAS_PER_RUN`]).
    pub async fn tick_due(&self, now: Timestamp) -> Result<TickReport, StoreError> {
        let due = self.store.due("saga", now, MAX_SAGAS_PER_RUN).await?;
        let mut report = TickReport {
            due: due.len(),
            ..TickReport::default()
        };
        let mut running = JoinSet::new();
        let mut pending = due.into_iter();
        loop {
            while running.len() < CONCURRENT_TICKS {
                let Some(next) = pending.next() else { break };
                let sagas = self.sagas.clone();
                let id = next.stream.aggregate_id;
                // Made here, so its log lines also name the invocation they ran in.
                let (span, trace_context) = tick_span(&id);
                running.spawn(
                    async move {
                        let result = sagas.tick(&id, now, trace_context).await;
                        (id, result)
                    }
                    .instrument(span),
                );
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            match joined {
                Ok((_, Ok(events))) if events.is_empty() => report.unchanged += 1,
                Ok((_, Ok(_))) => report.advanced += 1,
                Ok((id, Err(e))) => {
                    tracing::warn!(function = "deadline", saga_id = %id, reason = %e, "tick failed; the saga stays due");
                    report.failed.push(format!("saga {id}: {e}"))
                }
                Err(e) => {
                    tracing::error!(function = "deadline", reason = %e, "a tick panicked");
                    report.failed.push(format!("a tick panicked: {e}"))
                }
            }
        }
        tracing::info!(
            function = "deadline",
            due = report.due,
            advanced = report.advanced,
            unchanged = report.unchanged,
            failed = report.failed.len(),
            "scheduled run"
        );
        Ok(report)
    }
}
