//! The dead-letter topic, read whole (from each partition's start to its end when asked),
//! each letter with its place (`PARTITION:OFFSET`), reason, source and ids; and the redrive
//! of a letter: its original record (key, value, headers) published again to the topic it came
//! from, and the redrive recorded in the events table, so that a second redrive of the same
//! letter is refused. A redriven command that was applied already changes nothing: its effect
//! is recorded once under its command id.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sagaflow_handlers::dead_letter::REASON_HEADER;
use sagaflow_kafka::producer::AuthContext;
use sagaflow_kafka::{EventPublisher, KafkaConfig};
use sagaflow_records::records::CORRELATION_ID_HEADER;
use sagaflow_records::OutboundRecord;
use serde::Serialize;
use serde_json::Value;

use crate::error::OperatorError;
use crate::time::iso;

/// Where a letter's record came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The topic.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// The record a letter holds, decoded, ready to be published again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Original {
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub value: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// One dead letter.
#[derive(Clone, Debug, Serialize)]
pub struct Letter {
    /// `PARTITION:OFFSET` on the dead-letter topic.
    pub id: String,
    /// When it was dead-lettered, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// When, as ISO time.
    pub at: String,
    /// Why.
    pub reason: String,
    /// The record it holds, for a letter of a Kafka-triggered function; `None` for the relay's
    /// letters (a change of the events table it could not read).
    pub source: Option<Source>,
    /// The order, when the record's headers name it.
    pub correlation_id: Option<String>,
    /// Why it cannot be redriven, if it cannot.
    pub not_redrivable: Option<&'static str>,
    /// The letter's JSON value, as the function wrote it.
    pub value: Value,
    /// The original record, decoded.
    #[serde(skip)]
    pub original: Option<Original>,
}

/// What `dead-letters list` keeps.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Letters no older than this, by the time they were written.
    pub since: Option<Duration>,
    /// Letters whose reason contains this, ignoring case.
    pub reason: Option<String>,
    /// Letters from this source topic.
    pub topic: Option<String>,
}

impl Filter {
    /// Whether `letter` passes, at `now_ms`.
    pub fn keeps(&self, letter: &Letter, now_ms: i64) -> bool {
        let recent = self
            .since
            .is_none_or(|since| letter.at_ms >= now_ms - since.as_millis() as i64);
        let reason = self.reason.as_ref().is_none_or(|text| {
            letter
                .reason
                .to_ascii_lowercase()
                .contains(&text.to_ascii_lowercase())
        });
        let topic = self
            .topic
            .as_ref()
            .is_none_or(|topic| letter.source.as_ref().is_some_and(|s| &s.topic == topic));
        recent && reason && topic
    }
}

/// `PARTITION:OFFSET`.
pub fn parse_id(id: &str) -> Result<(i32, i64), OperatorError> {
    let bad = || OperatorError::MalformedLetterId(id.to_string());
    let (partition, offset) = id.split_once(':').ok_or_else(bad)?;
    let partition = partition.parse::<i32>().map_err(|_| bad())?;
    let offset = offset.parse::<i64>().map_err(|_| bad())?;
    if partition < 0 || offset < 0 {
        return Err(bad());
    }
    Ok((partition, offset))
}

/// A letter from one record of the dead-letter topic.
pub fn letter(
    partition: i32,
    offset: i64,
    timestamp_ms: i64,
    reason_header: Option<String>,
    value: &[u8],
) -> Letter {
    let value: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
    let reason = reason_header
        .or_else(|| value["reason"].as_str().map(str::to_string))
        .unwrap_or_default();
    let source = (|| {
        let source = value.get("source")?;
        Some(Source {
            topic: source["topic"].as_str()?.to_string(),
            partition: i32::try_from(source["partition"].as_i64()?).ok()?,
            offset: source["offset"].as_i64()?,
        })
    })();
    let original = source.as_ref().and_then(|_| original(&value["raw"]));
    let not_redrivable = if source.is_none() {
        Some("it holds a change of the events table the relay could not read, not a Kafka record")
    } else if value
        .get("value_truncated_from")
        .is_some_and(|v| !v.is_null())
    {
        Some("its value was cut to fit in the letter")
    } else if original.is_none() {
        Some("its record's key, value or headers cannot be decoded")
    } else {
        None
    };
    let correlation_id = original.as_ref().and_then(|o| {
        o.headers
            .iter()
            .find(|(name, _)| name == CORRELATION_ID_HEADER)
            .and_then(|(_, v)| String::from_utf8(v.clone()).ok())
    });
    let at_ms = value["failed_at_ms"].as_i64().unwrap_or(timestamp_ms);
    Letter {
        id: format!("{partition}:{offset}"),
        at_ms,
        at: iso(at_ms),
        reason,
        source,
        correlation_id,
        not_redrivable,
        value,
        original,
    }
}

/// The record in a letter's `raw` (base64 key and value, headers as signed bytes).
fn original(raw: &Value) -> Option<Original> {
    let bytes = |field: &str| -> Option<Option<Vec<u8>>> {
        match &raw[field] {
            Value::Null => Some(None),
            Value::String(text) => STANDARD.decode(text).ok().map(Some),
            _ => None,
        }
    };
    let mut headers = Vec::new();
    for entry in raw["headers"].as_array()? {
        let entry: BTreeMap<String, Vec<i8>> = serde_json::from_value(entry.clone()).ok()?;
        for (name, value) in entry {
            headers.push((name, value.into_iter().map(|b| b as u8).collect()));
        }
    }
    Some(Original {
        key: bytes("key")?,
        value: bytes("value")?,
        headers,
    })
}

fn kafka_error(kafka: &KafkaConfig, reason: impl std::fmt::Display) -> OperatorError {
    OperatorError::Kafka {
        servers: kafka.bootstrap_servers.clone(),
        reason: reason.to_string(),
    }
}

/// Every letter on `topic`, oldest first per partition. Blocking: run it off the runtime.
pub fn read_letters(
    kafka: &KafkaConfig,
    context: AuthContext,
    topic: &str,
) -> Result<Vec<Letter>, OperatorError> {
    let mut config = kafka.client_config();
    config
        .set("group.id", format!("sagaflow-cli-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000");
    let consumer: BaseConsumer<AuthContext> = config
        .create_with_context(context)
        .map_err(|e| kafka_error(kafka, e))?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| kafka_error(kafka, format!("cannot read the metadata of {topic}: {e}")))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(kafka_error(kafka, format!("no topic {topic}")));
    }
    let mut assignment = TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(|e| kafka_error(kafka, e))?;
        if high > low {
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(low))
                .map_err(|e| kafka_error(kafka, e))?;
            remaining.insert(partition, high);
        }
    }
    let mut letters = Vec::new();
    if remaining.is_empty() {
        return Ok(letters);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| kafka_error(kafka, e))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !remaining.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(kafka_error(
                kafka,
                format!("{topic} was not read to its end in 60 s"),
            ));
        }
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.map_err(|e| kafka_error(kafka, e))?;
        let reason = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == REASON_HEADER)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        });
        letters.push(letter(
            message.partition(),
            message.offset(),
            message.timestamp().to_millis().unwrap_or(0),
            reason,
            message.payload().unwrap_or_default(),
        ));
        if remaining
            .get(&message.partition())
            .is_some_and(|high| message.offset() + 1 >= *high)
        {
            remaining.remove(&message.partition());
        }
    }
    letters.sort_by_key(|l| (l.at_ms, l.id.clone()));
    Ok(letters)
}

/// The key of a letter's redrive record in the events table.
fn redrive_key(dead_letter_topic: &str, id: &str) -> String {
    format!("redrive#{dead_letter_topic}#{id}")
}

/// When `id` was redriven, if it was.
pub async fn redriven_at(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    dead_letter_topic: &str,
    id: &str,
) -> Result<Option<i64>, OperatorError> {
    let item = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(redrive_key(dead_letter_topic, id)))
        .key("sk", AttributeValue::N("0".into()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| OperatorError::dynamo("GetItem", &e))?;
    Ok(item
        .item()
        .and_then(|item| item.get("redriven_at"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok()))
}

/// Which of `ids` were redriven: one `BatchGetItem` per hundred letters, unprocessed keys asked
/// again.
pub async fn redriven_of(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    dead_letter_topic: &str,
    ids: &[String],
) -> Result<std::collections::HashSet<String>, OperatorError> {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    let mut done = std::collections::HashSet::new();
    for chunk in ids.chunks(100) {
        let keys = chunk
            .iter()
            .map(|id| {
                std::collections::HashMap::from([
                    (
                        "pk".to_string(),
                        AttributeValue::S(redrive_key(dead_letter_topic, id)),
                    ),
                    ("sk".to_string(), AttributeValue::N("0".into())),
                ])
            })
            .collect::<Vec<_>>();
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression("pk")
                .consistent_read(true)
                .build()
                .map_err(|e| OperatorError::Dynamo {
                    operation: "BatchGetItem",
                    reason: e.to_string(),
                })?,
        );
        while let Some(keys) = request.take() {
            let out = client
                .batch_get_item()
                .request_items(table, keys)
                .send()
                .await
                .map_err(|e| OperatorError::dynamo("BatchGetItem", &e))?;
            let prefix = redrive_key(dead_letter_topic, "");
            for item in out
                .responses()
                .and_then(|r| r.get(table))
                .into_iter()
                .flatten()
            {
                if let Some(id) = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|pk| pk.strip_prefix(&prefix))
                {
                    done.insert(id.to_string());
                }
            }
            request = out
                .unprocessed_keys()
                .and_then(|u| u.get(table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
        }
    }
    Ok(done)
}

/// Publishes `letter`'s record again to its source topic and records the redrive; refuses a
/// letter that cannot be redriven or was redriven before.
pub async fn redrive(
    letter: &Letter,
    dead_letter_topic: &str,
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    publisher: &EventPublisher,
    now_ms: i64,
) -> Result<Source, OperatorError> {
    let refused = |why| OperatorError::NotRedrivable {
        id: letter.id.clone(),
        why,
    };
    if let Some(why) = letter.not_redrivable {
        return Err(refused(why));
    }
    let (Some(source), Some(original)) = (&letter.source, &letter.original) else {
        return Err(refused("it holds no record"));
    };
    if let Some(at) = redriven_at(client, table, dead_letter_topic, &letter.id).await? {
        return Err(OperatorError::AlreadyRedriven {
            id: letter.id.clone(),
            at: iso(at),
        });
    }
    let record = OutboundRecord {
        topic: source.topic.clone(),
        key: original
            .key
            .as_ref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        value: original.value.clone().unwrap_or_default(),
        headers: original.headers.clone(),
    };
    publisher
        .publish(std::slice::from_ref(&record))
        .await
        .map_err(|e| OperatorError::Kafka {
            servers: String::new(),
            reason: e.to_string(),
        })?;
    // Published first, recorded second: a redrive that fails in between can be run again, and
    // a record published twice is applied once (its command id is its idempotency key).
    client
        .put_item()
        .table_name(table)
        .item(
            "pk",
            AttributeValue::S(redrive_key(dead_letter_topic, &letter.id)),
        )
        .item("sk", AttributeValue::N("0".into()))
        .item("kind", AttributeValue::S("redrive".into()))
        .item("redriven_at", AttributeValue::N(now_ms.to_string()))
        .item(
            "source",
            AttributeValue::S(format!(
                "{}-{}@{}",
                source.topic, source.partition, source.offset
            )),
        )
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map_err(|e| OperatorError::dynamo("PutItem", &e))?;
    Ok(source.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_partition_colon_offset() {
        assert_eq!(parse_id("2:41").unwrap(), (2, 41));
        for bad in ["", "2", "2:", ":4", "a:1", "1:b", "-1:3", "1:2:3"] {
            assert!(parse_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_relay_letter_or_a_cut_one_cannot_be_redriven() {
        let relay = letter(
            0,
            1,
            5,
            Some("unreadable".into()),
            br#"{"source":"dynamodb-stream","reason":"x"}"#,
        );
        assert!(relay.not_redrivable.is_some());
        let cut = letter(
            0,
            2,
            5,
            None,
            br#"{"source":{"topic":"t","partition":0,"offset":3},"reason":"bad","raw":{"batch_key":"t-0","timestamp_ms":1,"key":"azE=","value":"e30=","headers":[]},"value_truncated_from":99999,"failed_at_ms":7}"#,
        );
        assert_eq!(
            cut.not_redrivable,
            Some("its value was cut to fit in the letter")
        );
        assert_eq!(cut.reason, "bad");
        assert_eq!(cut.at_ms, 7);
    }
}
