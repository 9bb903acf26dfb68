//! Decoding the records a Kafka event source mapping hands to Lambda.

use std::collections::BTreeMap;
use std::fmt;

use aws_lambda_events::event::kafka::{KafkaEvent, KafkaRecord};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Where a record lives in Kafka: the coordinates Lambda uses to retry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordId {
    /// Topic the record was read from.
    pub topic: String,
    /// Partition of that topic.
    pub partition: i64,
    /// Offset of the record within its partition.
    pub offset: i64,
}

impl RecordId {
    /// The `"<topic>-<partition>"` name Lambda uses for this record's partition.
    pub fn partition_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}@{}", self.topic, self.partition, self.offset)
    }
}

/// A record with its key, value and headers decoded to bytes, ready for a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRecord {
    /// Where the record lives in Kafka.
    pub id: RecordId,
    /// The record's Kafka timestamp in milliseconds since the Unix epoch.
    ///
    /// aws_lambda_events 1.2 parses the timestamp through an `f64` and truncates, so this
    /// can read 1 ms below the value Kafka sent; do not use it for exact comparisons.
    pub timestamp_ms: i64,
    /// The record key, `None` when the producer sent none.
    pub key: Option<Vec<u8>>,
    /// The record value, `None` for a tombstone or a record without a value.
    pub value: Option<Vec<u8>>,
    /// Every header in producer order; a name may repeat.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl InboundRecord {
    /// The first value of header `name`, if the record has it.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Every value of header `name`, in producer order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of header `name` as text; `None` if absent or not UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// The key as text; `None` if absent or not UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }

    /// The value as text; `None` if absent or not UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        self.value
            .as_deref()
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
    }
}

/// A record exactly as it arrived, kept so an undecodable record can be dead-lettered verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawRecord {
    /// The `"<topic>-<partition>"` key of the event's `records` map the record was listed under.
    pub batch_key: String,
    /// The record's Kafka timestamp in milliseconds since the Unix epoch (may read 1 ms low, see [`InboundRecord::timestamp_ms`]).
    pub timestamp_ms: i64,
    /// `CREATE_TIME` or `LOG_APPEND_TIME`, when the trigger sent it.
    pub timestamp_type: Option<String>,
    /// The key as the trigger sent it: base64, possibly invalid.
    pub key: Option<String>,
    /// The value as the trigger sent it: base64, possibly invalid.
    pub value: Option<String>,
    /// The headers as the trigger sent them: signed byte arrays, one map per header entry.
    pub headers: Vec<BTreeMap<String, Vec<i8>>>,
}

/// The base64-encoded part of a record that failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodedField {
    /// The record key.
    Key,
    /// The record value.
    Value,
}

impl fmt::Display for EncodedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodedField::Key => "key",
            EncodedField::Value => "value",
        })
    }
}

/// Why a record could not be decoded; its message becomes the dead-letter reason.
///
/// There is no variant for a header byte out of range: the event type already holds
/// header bytes as `i8`, so every value maps to exactly one byte, and a number that
/// fits no `i8` fails deserialization of the whole event before it reaches this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordDecodeError {
    /// The key or value is not canonical standard (padded) base64.
    #[error("record {field} is not valid base64: {detail}")]
    InvalidBase64 {
        /// Which part failed.
        field: EncodedField,
        /// The decoder's description of the first problem.
        detail: String,
    },
    /// The value is larger than any sagaflow message can be.
    #[error("record value is {bytes} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The decoded value's size.
        bytes: usize,
        /// [`MAX_VALUE_BYTES`].
        limit: usize,
    },
    /// The record's own topic and partition disagree with the batch key it was listed under.
    #[error("record says it belongs to partition '{claimed}' but was listed under '{batch_key}'")]
    PartitionMismatch {
        /// The `"<topic>-<partition>"` key of the `records` map.
        batch_key: String,
        /// `"<topic>-<partition>"` built from the record's own fields.
        claimed: String,
    },
}

/// One input record after decoding: its coordinates, the decoded record or why not, and the original.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Where the record lives in Kafka, taken from the record's own fields.
    pub id: RecordId,
    /// The decoded record, or the reason it cannot be processed.
    pub result: Result<InboundRecord, RecordDecodeError>,
    /// The record as it arrived.
    pub raw: RawRecord,
}

/// Decodes every record of `event`, one output per input record, ordered by topic, partition, offset.
pub fn decode_batch(event: &KafkaEvent) -> Vec<DecodedRecord> {
    let mut decoded: Vec<DecodedRecord> = event
        .records
        .iter()
        .flat_map(|(batch_key, records)| {
            records
                .iter()
                .map(move |record| decode_record(batch_key, record))
        })
        .collect();
    // The trigger sends each partition in offset order, but the map iterates in no
    // fixed order and nothing guarantees the lists, so order explicitly; the batch key
    // only breaks ties between records that claim the same coordinates.
    decoded.sort_by(|a, b| {
        a.id.cmp(&b.id)
            .then_with(|| a.raw.batch_key.cmp(&b.raw.batch_key))
    });
    decoded
}

fn decode_record(batch_key: &str, record: &KafkaRecord) -> DecodedRecord {
    let topic = record
        .topic
        .clone()
        .unwrap_or_else(|| topic_from_batch_key(batch_key, record.partition));
    let id = RecordId {
        topic,
        partition: record.partition,
        offset: record.offset,
    };
    let raw = RawRecord {
        batch_key: batch_key.to_owned(),
        timestamp_ms: record.timestamp.timestamp_millis(),
        timestamp_type: record.timestamp_type.clone(),
        key: record.key.clone(),
        value: record.value.clone(),
        headers: record
            .headers
            .iter()
            .map(|entry| entry.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .collect(),
    };
    let result = decode_inbound(&id, &raw);
    DecodedRecord { id, result, raw }
}

/// Recovers the topic from `"<topic>-<partition>"` when a record omits its own topic field.
fn topic_from_batch_key(batch_key: &str, partition: i64) -> String {
    let suffix = format!("-{partition}");
    batch_key
        .strip_suffix(&suffix)
        .unwrap_or(batch_key)
        .to_owned()
}

/// The largest record value accepted: envelopes are stored as one DynamoDB item (400 KB at
/// most, see the event store), so a bigger record could never be processed.
pub const MAX_VALUE_BYTES: usize = 256 * 1024;

fn decode_inbound(id: &RecordId, raw: &RawRecord) -> Result<InboundRecord, RecordDecodeError> {
    let claimed = id.partition_name();
    if claimed != raw.batch_key {
        return Err(RecordDecodeError::PartitionMismatch {
            batch_key: raw.batch_key.clone(),
            claimed,
        });
    }
    let value = decode_base64(raw.value.as_deref(), EncodedField::Value)?;
    if let Some(bytes) = value
        .as_ref()
        .map(Vec::len)
        .filter(|n| *n > MAX_VALUE_BYTES)
    {
        return Err(RecordDecodeError::TooLarge {
            bytes,
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(InboundRecord {
        id: id.clone(),
        timestamp_ms: raw.timestamp_ms,
        key: decode_base64(raw.key.as_deref(), EncodedField::Key)?,
        value,
        headers: decode_headers(&raw.headers),
    })
}

fn decode_base64(
    encoded: Option<&str>,
    field: EncodedField,
) -> Result<Option<Vec<u8>>, RecordDecodeError> {
    encoded
        .map(|text| {
            STANDARD
                .decode(text)
                .map_err(|err| RecordDecodeError::InvalidBase64 {
                    field,
                    detail: err.to_string(),
                })
        })
        .transpose()
}

fn decode_headers(headers: &[BTreeMap<String, Vec<i8>>]) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .flat_map(|entry| entry.iter())
        .map(|(name, bytes)| {
            // Kafka header values are Java `byte[]`, serialized as signed bytes; the
            // two's-complement bit pattern is the original byte.
            let bytes = bytes
                .iter()
                .map(|b| u8::from_ne_bytes(b.to_ne_bytes()))
                .collect();
            (name.clone(), bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{b64, event, event_under, record};
    use serde_json::json;

    fn only(decoded: &[DecodedRecord]) -> &InboundRecord {
        assert_eq!(decoded.len(), 1, "expected exactly one record");
        decoded[0].result.as_ref().expect("record decodes")
    }

    #[tokio::test]
    async fn decodes_good_record_with_key_value_headers() {
        let rec = json!({
            "topic": "orders", "partition": 2, "offset": 41, "timestamp": 1_700_000_000_123_i64,
            "timestampType": "CREATE_TIME",
            "key": b64("order-7"), "value": b64("{\"total\":12}"),
            "headers": [
                {"trace-id": [97, 98, 99]},
                {"trace-id": [100]},
                {"binary": [-1, 0, 127, -128]}
            ]
        });
        let decoded = decode_batch(&event(vec![rec]));
        let inbound = only(&decoded);

        assert_eq!(
            inbound.id,
            RecordId {
                topic: "orders".into(),
                partition: 2,
                offset: 41
            }
        );
        assert_eq!(inbound.id.to_string(), "orders-2@41");
        // Upstream parses milliseconds through f64 and may truncate by one.
        assert!(
            (1_700_000_000_122..=1_700_000_000_123).contains(&inbound.timestamp_ms),
            "timestamp was {}",
            inbound.timestamp_ms
        );
        assert_eq!(inbound.key_str(), Some("order-7"));
        assert_eq!(inbound.value_str(), Some("{\"total\":12}"));
        assert_eq!(inbound.header_str("trace-id"), Some("abc"));
        assert_eq!(
            inbound.header_values("trace-id").collect::<Vec<_>>(),
            vec![b"abc".as_slice(), b"d".as_slice()]
        );
        assert_eq!(
            inbound.header("binary"),
            Some([255, 0, 127, 128].as_slice())
        );
        assert_eq!(inbound.header_str("binary"), None, "0xFF is not UTF-8");
        assert_eq!(inbound.header("missing"), None);
    }

    #[tokio::test]
    async fn invalid_base64_value_is_typed_error_naming_value() {
        let mut rec = record("orders", 0, 1, Some("k"), Some("v"));
        rec["value"] = json!("not base64!");
        let decoded = decode_batch(&event(vec![rec]));

        let err = decoded[0].result.clone().expect_err("value is invalid");
        assert!(matches!(
            err,
            RecordDecodeError::InvalidBase64 {
                field: EncodedField::Value,
                ..
            }
        ));
        assert!(err
            .to_string()
            .starts_with("record value is not valid base64: "));
        assert_eq!(decoded[0].raw.value.as_deref(), Some("not base64!"));
        assert_eq!(decoded[0].id.offset, 1);
    }

    #[tokio::test]
    async fn invalid_base64_key_is_typed_error_naming_key() {
        let mut rec = record("orders", 0, 1, Some("k"), Some("v"));
        rec["key"] = json!("@@@@");
        let decoded = decode_batch(&event(vec![rec]));

        let err = decoded[0].result.clone().expect_err("key is invalid");
        assert!(matches!(
            err,
            RecordDecodeError::InvalidBase64 {
                field: EncodedField::Key,
                ..
            }
        ));
        assert!(err
            .to_string()
            .starts_with("record key is not valid base64: "));
    }

    #[tokio::test]
    async fn non_canonical_base64_is_rejected() {
        // The key of AWS's documentation sample has non-zero trailing bits.
        let mut rec = record("orders", 0, 1, None, Some("v"));
        rec["key"] = json!("abcDEFghiJKLmnoPQRstuVWXyz1234==");
        let decoded = decode_batch(&event(vec![rec]));
        assert!(matches!(
            decoded[0].result,
            Err(RecordDecodeError::InvalidBase64 {
                field: EncodedField::Key,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn missing_key_and_value_are_none_not_errors() {
        let decoded = decode_batch(&event(vec![record("orders", 0, 3, None, None)]));
        let inbound = only(&decoded);
        assert_eq!(inbound.key, None);
        assert_eq!(inbound.value, None);
        assert_eq!(inbound.key_str(), None);
    }

    #[tokio::test]
    async fn empty_value_is_some_empty() {
        let decoded = decode_batch(&event(vec![record("orders", 0, 3, None, Some(""))]));
        assert_eq!(only(&decoded).value, Some(Vec::new()));
    }

    #[tokio::test]
    async fn partition_mismatch_with_batch_key_is_typed_error() {
        let decoded = decode_batch(&event_under(vec![(
            "orders-1",
            vec![record("orders", 0, 9, Some("k"), Some("v"))],
        )]));
        assert_eq!(
            decoded[0].result,
            Err(RecordDecodeError::PartitionMismatch {
                batch_key: "orders-1".into(),
                claimed: "orders-0".into(),
            })
        );
        assert_eq!(
            decoded[0].result.clone().err().map(|e| e.to_string()),
            Some(
                "record says it belongs to partition 'orders-0' but was listed under 'orders-1'"
                    .into()
            )
        );
    }

    #[tokio::test]
    async fn missing_topic_is_taken_from_batch_key() {
        let mut rec = record("my-topic", 4, 9, None, Some("v"));
        rec["topic"] = serde_json::Value::Null;
        let decoded = decode_batch(&event_under(vec![("my-topic-4", vec![rec])]));
        assert_eq!(only(&decoded).id.topic, "my-topic");
    }

    #[tokio::test]
    async fn output_is_sorted_by_topic_partition_offset_and_drops_nothing() {
        let decoded = decode_batch(&event_under(vec![
            ("orders-10", vec![record("orders", 10, 1, None, Some("a"))]),
            (
                "orders-2",
                vec![
                    record("orders", 2, 7, None, Some("b")),
                    record("orders", 2, 5, None, Some("c")),
                    record("orders", 2, 6, None, Some("d")),
                ],
            ),
            (
                "billing-0",
                vec![record("billing", 0, 100, None, Some("e"))],
            ),
        ]));
        let ids: Vec<String> = decoded.iter().map(|d| d.id.to_string()).collect();
        assert_eq!(
            ids,
            vec![
                "billing-0@100",
                "orders-2@5",
                "orders-2@6",
                "orders-2@7",
                "orders-10@1"
            ]
        );
    }

    #[tokio::test]
    async fn raw_record_serializes_verbatim() {
        let mut rec = record("orders", 0, 1, Some("k"), None);
        rec["value"] = json!("%%%");
        rec["headers"] = json!([{"h": [-2, 3]}]);
        let decoded = decode_batch(&event(vec![rec]));
        let json = serde_json::to_value(&decoded[0].raw).expect("serializes");
        assert_eq!(
            json,
            json!({
                "batchKey": "orders-0",
                "timestampMs": decoded[0].raw.timestamp_ms,
                "timestampType": "CREATE_TIME",
                "key": b64("k"),
                "value": "%%%",
                "headers": [{"h": [-2, 3]}]
            })
        );
    }
}
