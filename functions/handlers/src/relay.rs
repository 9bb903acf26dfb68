//! The outbox relay: every event committed to the events table reaches Kafka from the table's
//! change feed, never from a second write after the commit. Saga events also carry the commands
//! the orchestrator decided, which go to the services' command topics.
//!
//! [`relay_changes`] is the relay, whatever feeds it: DynamoDB Streams on AWS and on the local
//! servers ([`relay_stream_batch`] reads a stream batch into [`Change`]s at the edge), the
//! in-memory store's change feed in `make run`.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use sagaflow_eventsourcing::DecodeError;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_orders::flow::sagas::commands_from_saga_event;
use sagaflow_records::{
    command_record, event_record, OutboundRecord, Publisher, Topics, TraceParent,
};
use sagaflow_telemetry::{continue_trace, traceparent_of};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::dead_letter::DeadLetterTopic;

/// The records published for one committed event: the event, then any commands it carries.
pub fn records_for(
    topics: &Topics,
    event: &StoredEvent,
) -> Result<Vec<OutboundRecord>, DecodeError> {
    let mut records = vec![event_record(topics, event)];
    if event.aggregate_type == "saga" {
        records.extend(
            commands_from_saga_event(event)?
                .iter()
                .map(|command| command_record(topics, command)),
        );
    }
    Ok(records)
}

/// Why a change of the events table cannot be relayed, ever: it is dead-lettered.
#[derive(Debug, thiserror::Error)]
pub enum UnreadableChange {
    /// The stream record's image is not an item of the events table.
    #[error("stream image is not an item of the events table: {0}")]
    Image(#[source] serde_dynamo::Error),
    /// An event item without its envelope.
    #[error("event item has no `envelope` attribute")]
    NoEnvelope,
    /// The envelope, or the commands a saga event carries, cannot be read.
    #[error(transparent)]
    Event(#[from] DecodeError),
}

/// One change of the events table, as the relay sees it.
#[derive(Debug)]
pub struct Change {
    /// Where it is in its feed (a stream record's sequence number): a failed relay resumes here.
    pub position: String,
    /// The event it committed; `None` for items that are not events (idempotency records,
    /// snapshots) and for removals.
    pub event: Result<Option<StoredEvent>, UnreadableChange>,
    /// Where it came from, for its dead letter (source, position, stream).
    pub origin: Value,
}

/// What relaying one batch of changes did.
#[derive(Debug, Default)]
pub struct RelayOutcome {
    /// The first change not relayed (its records were not all acknowledged, or its dead letter
    /// was not): the feed must deliver it and everything after it again.
    pub failed_at: Option<String>,
    /// Records published to Kafka.
    pub published: usize,
    /// Changes sent to the dead-letter topic, with the reason.
    pub dead_lettered: Vec<(String, String)>,
}

impl RelayOutcome {
    /// The partial batch response for the DynamoDB stream trigger.
    pub fn stream_response(&self) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        if let Some(position) = &self.failed_at {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(position.clone());
            response.batch_item_failures.push(failure);
        }
        response
    }
}

/// Publishes every change's records in order; stops at the first change that cannot be
/// published now and reports it, so the feed resumes from there (records before it were
/// published; consumers are idempotent, so a retry that repeats some is harmless). A change
/// that can never be published (not an event of ours) is dead-lettered with its reason.
pub async fn relay_changes(
    publisher: &dyn Publisher,
    dead_letters: &DeadLetterTopic,
    topics: &Topics,
    changes: Vec<Change>,
) -> RelayOutcome {
    let started = std::time::Instant::now();
    let count = changes.len();
    let outcome = relay_in_order(publisher, dead_letters, topics, changes).await;
    log_batch(count, &outcome, started);
    outcome
}

async fn relay_in_order(
    publisher: &dyn Publisher,
    dead_letters: &DeadLetterTopic,
    topics: &Topics,
    changes: Vec<Change>,
) -> RelayOutcome {
    let mut outcome = RelayOutcome::default();
    // The records of consecutive good changes go out in one publish (one round trip for the
    // batch, not one per record); each notes which change it came from.
    let mut queued = Queued::default();
    for change in changes {
        let records = change.event.and_then(|event| match event {
            Some(event) => {
                let (span, event) = publish_span(event);
                Ok((records_for(topics, &event)?, Some(span)))
            }
            None => Ok((Vec::new(), None)),
        });
        match records {
            Ok((records, span)) => queued.push(change.position, records, span),
            Err(unreadable) => {
                // What came before it goes out first, so the feed's order holds.
                if !queued.flush(publisher, &mut outcome).await {
                    return outcome;
                }
                let reason = unreadable.to_string();
                let mut letter = change.origin;
                if let Value::Object(fields) = &mut letter {
                    fields.insert("reason".into(), json!(reason));
                }
                match dead_letters
                    .send_json(&change.position, &reason, &letter)
                    .await
                {
                    Ok(()) => {
                        tracing::error!(
                            function = "relay",
                            position = %change.position,
                            reason = %reason,
                            "change dead-lettered"
                        );
                        outcome.dead_lettered.push((change.position, reason))
                    }
                    Err(error) => {
                        tracing::warn!(
                            function = "relay",
                            position = %change.position,
                            reason = %reason,
                            error = %error,
                            "change retried: its dead letter could not be written"
                        );
                        outcome.failed_at = Some(change.position);
                        return outcome;
                    }
                }
            }
        }
    }
    queued.flush(publisher, &mut outcome).await;
    outcome
}

/// The span that publishes `event` (and the commands it carries): a child of the span that
/// recorded it, or of its order's derived trace; the records carry this span's context, so
/// the consumer's span is its child. It ends when the publish is acknowledged.
fn publish_span(mut event: StoredEvent) -> (tracing::Span, StoredEvent) {
    let span = tracing::info_span!(
        "publish",
        otel.name = %format_args!("relay {}", event.event_type),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        function = "relay",
        event_id = %event.event_id,
        event_type = %event.event_type,
        correlation_id = %event.correlation_id,
        causation_id = %event.causation_id,
    );
    let recorded_in = TraceParent::stored_or_derived(
        event.trace_context.as_deref(),
        &event.correlation_id,
        &event.event_id,
    );
    if continue_trace(&span, &recorded_in) {
        if let Some(context) = traceparent_of(&span) {
            event.trace_context = Some(context.to_string());
        }
    }
    (span, event)
}

/// Logs what one relayed batch came to.
fn log_batch(changes: usize, outcome: &RelayOutcome, started: std::time::Instant) {
    let failed_at = outcome.failed_at.as_deref().unwrap_or("");
    tracing::info!(
        function = "relay",
        changes,
        published = outcome.published,
        dead_lettered = outcome.dead_lettered.len(),
        failed_at,
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        "batch"
    );
}

#[derive(Deserialize)]
struct ItemImage {
    kind: Option<String>,
    envelope: Option<String>,
}

/// The event in one stream record's new image; `None` for items that are not events
/// (idempotency records, snapshots) and for removals (TTL expiry).
pub fn event_in_stream_record(
    record: &EventRecord,
) -> Result<Option<StoredEvent>, UnreadableChange> {
    if record.event_name != "INSERT" && record.event_name != "MODIFY" {
        return Ok(None);
    }
    let image: ItemImage = serde_dynamo::from_item(record.change.new_image.clone())
        .map_err(UnreadableChange::Image)?;
    if image.kind.as_deref() != Some("event") {
        return Ok(None);
    }
    let envelope = image.envelope.ok_or(UnreadableChange::NoEnvelope)?;
    Ok(Some(StoredEvent::from_json(envelope.as_bytes())?))
}

/// The relay on a DynamoDB stream batch: each stream record read into a [`Change`] here, at
/// the edge, then [`relay_changes`].
pub async fn relay_stream_batch(
    publisher: &dyn Publisher,
    dead_letters: &DeadLetterTopic,
    topics: &Topics,
    batch: &StreamEvent,
) -> RelayOutcome {
    let changes = batch
        .records
        .iter()
        .map(|record| {
            let sequence = record.change.sequence_number.clone().unwrap_or_default();
            Change {
                origin: json!({
                    "source": "dynamodb-stream",
                    "sequence_number": sequence,
                    "event_source_arn": record.event_source_arn,
                }),
                event: event_in_stream_record(record),
                position: sequence,
            }
        })
        .collect();
    relay_changes(publisher, dead_letters, topics, changes).await
}

/// Records waiting to be published, each with the change it came from, and the span of each
/// change's publish.
#[derive(Default)]
struct Queued {
    records: Vec<OutboundRecord>,
    positions: Vec<String>,
    spans: Vec<(String, tracing::Span)>,
}

impl Queued {
    fn push(
        &mut self,
        position: String,
        records: Vec<OutboundRecord>,
        span: Option<tracing::Span>,
    ) {
        if let Some(span) = span {
            self.spans.push((position.clone(), span));
        }
        self.positions
            .extend(std::iter::repeat_n(position, records.len()));
        self.records.extend(records);
    }

    /// Publishes what is queued; on a failure reports the change of the first record not
    /// acknowledged and returns false.
    async fn flush(&mut self, publisher: &dyn Publisher, outcome: &mut RelayOutcome) -> bool {
        let records = std::mem::take(&mut self.records);
        let positions = std::mem::take(&mut self.positions);
        // The spans end when this returns: after the broker's answer.
        let spans = std::mem::take(&mut self.spans);
        if records.is_empty() {
            return true;
        }
        match publisher.publish(&records).await {
            Ok(()) => {
                outcome.published += records.len();
                true
            }
            Err(failure) => {
                // Records before the failed one were acknowledged, but those of its own change
                // may be only partly: the retry starts at that change.
                let failed = &positions[failure.index.min(positions.len() - 1)];
                let first_of_failed = positions.iter().position(|p| p == failed).unwrap_or(0);
                outcome.published += first_of_failed;
                let unsent = spans.iter().position(|(p, _)| p == failed).unwrap_or(0);
                for (_, span) in &spans[unsent..] {
                    span.record("otel.status_code", "ERROR");
                }
                outcome.failed_at = Some(failed.clone());
                false
            }
        }
    }
}
