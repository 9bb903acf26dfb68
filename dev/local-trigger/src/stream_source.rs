//! A DynamoDB stream event source mapping, run locally: tails the events table's stream and
//! hands each batch, as the same `DynamoDbEvent` payload AWS sends, to the outbox relay. A batch
//! the relay could not finish is read again from the failed record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sagaflow_handlers::dead_letter::DeadLetterTopic;
use sagaflow_handlers::relay::relay_stream_batch;
use sagaflow_kafka::{EventPublisher, Topics};
use serde_json::{json, Map, Value};

use crate::faults::FaultPlan;

/// Why the stream could not be tailed.
#[derive(Debug, thiserror::Error)]
#[error("stream of {table}: {reason}")]
pub struct StreamError {
    /// The table.
    pub table: String,
    /// What failed.
    pub reason: String,
}

/// The DynamoDB JSON form of one attribute value, as stream events carry it.
fn attribute_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": STANDARD.encode(b.as_ref()) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(n) => json!({ "NULL": n }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => {
            json!({ "BS": v.iter().map(|b| STANDARD.encode(b.as_ref())).collect::<Vec<_>>() })
        }
        AttributeValue::L(items) => {
            json!({ "L": items.iter().map(attribute_json).collect::<Vec<_>>() })
        }
        AttributeValue::M(map) => json!({ "M": item_json(map) }),
        _ => json!({ "NULL": true }),
    }
}

fn item_json(item: &std::collections::HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attribute_json(v)))
            .collect::<Map<String, Value>>(),
    )
}

/// The payload AWS sends for these stream records.
pub fn stream_event(records: &[Record], stream_arn: &str) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            let change = r.dynamodb();
            json!({
                "eventID": r.event_id(),
                "eventName": r.event_name().map(|n| n.as_str().to_string()),
                "eventVersion": r.event_version(),
                "eventSource": "aws:dynamodb",
                "awsRegion": r.aws_region().unwrap_or("us-east-1"),
                "eventSourceARN": stream_arn,
                "dynamodb": {
                    "Keys": change.and_then(|c| c.keys()).map(item_json).unwrap_or(json!({})),
                    "NewImage": change.and_then(|c| c.new_image()).map(item_json).unwrap_or(json!({})),
                    "SequenceNumber": change.and_then(|c| c.sequence_number()),
                    "SizeBytes": change.and_then(|c| c.size_bytes()).unwrap_or(0),
                    "StreamViewType": "NEW_IMAGE",
                },
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Tails `table`'s stream and relays every event to Kafka until `stop` is set.
pub struct StreamTrigger {
    /// The events table.
    pub table: String,
    /// DynamoDB, to find the stream.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// DynamoDB Streams.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// The relay's producer.
    pub publisher: EventPublisher,
    /// The relay's dead-letter path.
    pub dead_letters: DeadLetterTopic,
    /// Topic names.
    pub topics: Topics,
    /// Faults to inject (the chaos run): crashes after publishing, before the checkpoint.
    pub faults: Option<Arc<FaultPlan>>,
}

impl StreamTrigger {
    async fn stream_arn(&self) -> Result<String, StreamError> {
        let err = |reason: String| StreamError {
            table: self.table.clone(),
            reason,
        };
        let table = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| err(format!("{e:?}")))?;
        table
            .table()
            .and_then(|t| t.latest_stream_arn())
            .map(str::to_string)
            .ok_or_else(|| err("the table has no stream".into()))
    }

    /// Relays from the start of the stream; returns how many records were published.
    pub async fn run(&self, stop: Arc<AtomicBool>) -> Result<u64, StreamError> {
        let err = |reason: String| StreamError {
            table: self.table.clone(),
            reason,
        };
        // The endpoint may be down (an outage, or still starting): wait for it as the event
        // source mapping would, instead of ending the relay.
        let arn = loop {
            match self.stream_arn().await {
                Ok(arn) => break arn,
                Err(e) if stop.load(Ordering::SeqCst) => return Err(e),
                Err(e) => {
                    eprintln!(
                        "relay {}: cannot find the stream, retrying: {e}",
                        self.table
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        // Per shard: the last sequence number relayed, and the iterator GetRecords handed back.
        // The iterator is dropped (and a fresh one asked for after the last sequence) whenever
        // a poll fails or a batch must be retried, and iterators expire after 15 minutes.
        let mut shards: Vec<(String, Option<String>)> = Vec::new();
        let mut iterators: std::collections::HashMap<String, String> = Default::default();
        let mut described_at: Option<std::time::Instant> = None;
        let mut published = 0u64;
        let mut batches = 0u64;
        while !stop.load(Ordering::SeqCst) {
            // New shards appear rarely (a split); look for them every few seconds.
            if described_at.is_none_or(|at| at.elapsed() > Duration::from_secs(5)) {
                let described = match self.streams.describe_stream().stream_arn(&arn).send().await {
                    Ok(described) => described,
                    Err(e) => {
                        eprintln!(
                            "relay {}: DescribeStream failed, retrying: {e:?}",
                            self.table
                        );
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                for shard in described
                    .stream_description()
                    .map(|d| d.shards())
                    .unwrap_or_default()
                {
                    if let Some(id) = shard.shard_id() {
                        if !shards.iter().any(|(known, _)| known == id) {
                            shards.push((id.to_string(), None));
                        }
                    }
                }
                described_at = Some(std::time::Instant::now());
            }
            let mut idle = true;
            for (shard_id, last) in shards.iter_mut() {
                let kept = iterators.remove(shard_id.as_str());
                let request = self
                    .streams
                    .get_shard_iterator()
                    .stream_arn(&arn)
                    .shard_id(shard_id.as_str());
                let request = match last.as_deref() {
                    Some(sequence) => request
                        .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                        .sequence_number(sequence),
                    None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
                };
                let iterator = match kept {
                    Some(iterator) => Some(iterator),
                    None => match request.send().await {
                        Ok(out) => out.shard_iterator().map(str::to_string),
                        Err(e) => {
                            eprintln!(
                                "relay {}: GetShardIterator failed, retrying: {e:?}",
                                self.table
                            );
                            None
                        }
                    },
                };
                let Some(iterator) = iterator else { continue };
                let page = match self
                    .streams
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(100)
                    .send()
                    .await
                {
                    Ok(page) => page,
                    // Throttling or a moment of unavailability: try the same position again.
                    Err(e) => {
                        eprintln!("relay {}: GetRecords failed, retrying: {e:?}", self.table);
                        continue;
                    }
                };
                let records = page.records();
                let next = page.next_shard_iterator().map(str::to_string);
                if records.is_empty() {
                    if let Some(next) = next {
                        iterators.insert(shard_id.clone(), next);
                    }
                    continue;
                }
                idle = false;
                let payload = stream_event(records, &arn);
                let batch: StreamEvent = serde_json::from_value(payload)
                    .map_err(|e| err(format!("cannot build the stream payload: {e}")))?;
                let outcome =
                    relay_stream_batch(&self.publisher, &self.dead_letters, &self.topics, &batch)
                        .await;
                published += outcome.published as u64;
                for (sequence, reason) in &outcome.dead_lettered {
                    eprintln!(
                        "relay {}: stream record {sequence} dead-lettered: {reason}",
                        self.table
                    );
                }
                batches += 1;
                if self
                    .faults
                    .as_ref()
                    .is_some_and(|plan| plan.relay_crashes(batches))
                {
                    // Published, then died before the checkpoint: the next run starts from the
                    // old position and publishes the same records again.
                    continue;
                }
                match outcome.failed_at.clone() {
                    None => {
                        if let Some(next) = next {
                            iterators.insert(shard_id.clone(), next);
                        }
                        *last = records
                            .last()
                            .and_then(|r| r.dynamodb())
                            .and_then(|c| c.sequence_number())
                            .map(str::to_string)
                            .or(last.take());
                    }
                    Some(failed) => {
                        // Resume at the failed record, as AWS retries a batch from there.
                        let position = records
                            .iter()
                            .filter_map(|r| r.dynamodb().and_then(|c| c.sequence_number()))
                            .position(|s| s == failed);
                        if let Some(i) = position.filter(|i| *i > 0) {
                            *last = records
                                .get(i - 1)
                                .and_then(|r| r.dynamodb())
                                .and_then(|c| c.sequence_number())
                                .map(str::to_string);
                        }
                        eprintln!("relay {}: batch failed at {failed}; retrying", self.table);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            if idle {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(published)
    }
}
