//! The outbox relay: every event committed to the events table reaches Kafka from the table's
//! stream, never from a second write after the commit. Saga events also carry the commands the
//! orchestrator decided, which go to the services' command topics.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use sagaflow_core::flow::sagas::commands_from_saga_event;
use sagaflow_core::{DecodeError, StoredEvent, Upcasters};
use sagaflow_kafka::{
    command_record, event_record, EventPublisher, OutboundRecord, PublishError, Topics,
};
use serde::Deserialize;
use serde_json::json;

use crate::dead_letter::KafkaDeadLetterSink;

/// The records published for one committed event: the event, then any commands it carries.
pub fn records_for(
    topics: &Topics,
    event: &StoredEvent,
    upcasters: &Upcasters,
) -> Result<Vec<OutboundRecord>, DecodeError> {
    let mut records = vec![event_record(topics, event)];
    if event.aggregate_type == "saga" {
        records.extend(
            commands_from_saga_event(event, upcasters)?
                .iter()
                .map(|command| command_record(topics, command)),
        );
    }
    Ok(records)
}

#[derive(Deserialize)]
struct ItemImage {
    kind: Option<String>,
    envelope: Option<String>,
}

/// The event in one stream record's new image; `None` for items that are not events
/// (idempotency records, snapshots) and for removals (TTL expiry).
pub fn event_in_stream_record(record: &EventRecord) -> Result<Option<StoredEvent>, String> {
    if record.event_name != "INSERT" && record.event_name != "MODIFY" {
        return Ok(None);
    }
    let image: ItemImage = serde_dynamo::from_item(record.change.new_image.clone())
        .map_err(|e| format!("stream image is not an item of the events table: {e}"))?;
    if image.kind.as_deref() != Some("event") {
        return Ok(None);
    }
    let envelope = image
        .envelope
        .ok_or("event item has no `envelope` attribute")?;
    StoredEvent::from_json(envelope.as_bytes())
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Marks the stream record `sequence` as failed: the trigger retries from it.
fn report_failure(response: &mut DynamoDbEventResponse, sequence: String) {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = Some(sequence);
    response.batch_item_failures.push(failure);
}

/// What relaying one stream batch did.
#[derive(Debug, Default)]
pub struct RelayOutcome {
    /// The partial batch response for the DynamoDB stream trigger.
    pub response: DynamoDbEventResponse,
    /// Records published to Kafka.
    pub published: usize,
    /// Stream records sent to the dead-letter topic, with the reason.
    pub dead_lettered: Vec<(String, String)>,
}

/// Publishes every event of a stream batch in order; stops at the first record that cannot be
/// published now and reports it, so the trigger retries from there (records before it were
/// published; consumers are idempotent, so a retry that repeats some is harmless). A record
/// that can never be published (not an event of ours) is dead-lettered with its reason.
pub async fn relay_stream_batch(
    publisher: &EventPublisher,
    dead_letters: &KafkaDeadLetterSink,
    topics: &Topics,
    upcasters: &Upcasters,
    batch: &StreamEvent,
) -> RelayOutcome {
    let mut outcome = RelayOutcome::default();
    // The records of consecutive good stream records go out in one publish (one round trip
    // for the batch, not one per record); each notes which stream record it came from.
    let mut queued = Queued::default();
    for record in &batch.records {
        let sequence = record.change.sequence_number.clone().unwrap_or_default();
        let records = match event_in_stream_record(record).and_then(|event| match event {
            Some(event) => records_for(topics, &event, upcasters).map_err(|e| e.to_string()),
            None => Ok(Vec::new()),
        }) {
            Ok(records) => records,
            Err(reason) => {
                // What came before it goes out first, so the stream's order holds.
                if !queued.flush(publisher, &mut outcome).await {
                    return outcome;
                }
                let letter = json!({
                    "source": "dynamodb-stream",
                    "sequence_number": sequence,
                    "event_source_arn": record.event_source_arn,
                    "reason": reason,
                });
                match dead_letters.send_json(&sequence, &reason, &letter).await {
                    Ok(()) => {
                        outcome.dead_lettered.push((sequence, reason));
                        continue;
                    }
                    Err(_) => {
                        report_failure(&mut outcome.response, sequence);
                        return outcome;
                    }
                }
            }
        };
        queued.push(sequence, records);
    }
    queued.flush(publisher, &mut outcome).await;
    outcome
}

/// Records waiting to be published, each with the stream record it came from.
#[derive(Default)]
struct Queued {
    records: Vec<OutboundRecord>,
    sequences: Vec<String>,
}

impl Queued {
    fn push(&mut self, sequence: String, records: Vec<OutboundRecord>) {
        self.sequences
            .extend(std::iter::repeat_n(sequence, records.len()));
        self.records.extend(records);
    }

    /// Publishes what is queued; on a failure reports the stream record of the first record
    /// not acknowledged and returns false.
    async fn flush(&mut self, publisher: &EventPublisher, outcome: &mut RelayOutcome) -> bool {
        let records = std::mem::take(&mut self.records);
        let sequences = std::mem::take(&mut self.sequences);
        if records.is_empty() {
            return true;
        }
        match publisher.publish(&records).await {
            Ok(()) => {
                outcome.published += records.len();
                true
            }
            Err(error) => {
                let index = match &error {
                    PublishError::Delivery { index, .. } => *index,
                    PublishError::Setup(_) | PublishError::Unreachable(_) => 0,
                };
                // Records before the failed one were acknowledged, but those of its own
                // stream record may be only partly: the retry starts at that stream record.
                let failed = &sequences[index.min(sequences.len() - 1)];
                let first_of_failed = sequences.iter().position(|s| s == failed).unwrap_or(0);
                outcome.published += first_of_failed;
                report_failure(&mut outcome.response, failed.clone());
                false
            }
        }
    }
}
