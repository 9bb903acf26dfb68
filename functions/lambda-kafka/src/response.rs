//! The partial batch failure response for Kafka event sources with `ReportBatchItemFailures`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::RecordId;

/// What the function returns so Lambda retries only the failed part of a batch.
///
/// Lambda retries each reported partition from the offset reported for it, so a
/// partition appears at most once, at its lowest failed offset; a higher offset would
/// skip the lower failure. An empty list means the whole batch succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchResponse {
    /// One entry per partition to retry; empty when every record succeeded.
    pub batch_item_failures: Vec<KafkaBatchItemFailure>,
}

/// One partition Lambda must retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KafkaBatchItemFailure {
    /// The partition and offset to retry from.
    pub item_identifier: KafkaItemIdentifier,
}

/// The composite identifier AWS uses for Kafka records: partition name plus offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaItemIdentifier {
    /// `"<topic>-<partition>"`, as in the event's `records` map.
    pub partition: String,
    /// The offset Lambda resumes that partition from.
    pub offset: i64,
}

impl KafkaBatchResponse {
    /// A response telling Lambda the whole batch succeeded.
    pub fn success() -> Self {
        Self::default()
    }

    /// Builds the response from the records to retry, keeping each partition's lowest offset.
    pub fn from_failures<'a>(failed: impl IntoIterator<Item = &'a RecordId>) -> Self {
        let mut lowest: BTreeMap<(&str, i64), i64> = BTreeMap::new();
        for id in failed {
            lowest
                .entry((id.topic.as_str(), id.partition))
                .and_modify(|offset| *offset = (*offset).min(id.offset))
                .or_insert(id.offset);
        }
        let batch_item_failures = lowest
            .into_iter()
            .map(|((topic, partition), offset)| KafkaBatchItemFailure {
                item_identifier: KafkaItemIdentifier {
                    partition: format!("{topic}-{partition}"),
                    offset,
                },
            })
            .collect();
        Self {
            batch_item_failures,
        }
    }

    /// Whether the response reports no failure at all.
    pub fn is_success(&self) -> bool {
        self.batch_item_failures.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(topic: &str, partition: i64, offset: i64) -> RecordId {
        RecordId {
            topic: topic.into(),
            partition,
            offset,
        }
    }

    #[tokio::test]
    async fn serializes_to_documented_shape() {
        let response = KafkaBatchResponse::from_failures(&[id("orders", 0, 15)]);
        assert_eq!(
            serde_json::to_string(&response).expect("serializes"),
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-0","offset":15}}]}"#
        );
    }

    #[tokio::test]
    async fn success_is_empty_list() {
        let response = KafkaBatchResponse::success();
        assert!(response.is_success());
        assert_eq!(
            serde_json::to_value(&response).expect("serializes"),
            json!({"batchItemFailures": []})
        );
    }

    #[tokio::test]
    async fn keeps_lowest_offset_once_per_partition() {
        let failed = [
            id("orders", 0, 20),
            id("orders", 10, 3),
            id("orders", 0, 15),
            id("orders", 2, 8),
            id("orders", 0, 17),
        ];
        let response = KafkaBatchResponse::from_failures(&failed);
        assert_eq!(
            serde_json::to_value(&response).expect("serializes"),
            json!({"batchItemFailures": [
                {"itemIdentifier": {"partition": "orders-0", "offset": 15}},
                {"itemIdentifier": {"partition": "orders-2", "offset": 8}},
                {"itemIdentifier": {"partition": "orders-10", "offset": 3}}
            ]})
        );
    }

    #[tokio::test]
    async fn parses_back_from_documented_json() {
        let parsed: KafkaBatchResponse = serde_json::from_str(
            r#"{"batchItemFailures":[{"itemIdentifier":{"partition":"orders-0","offset":15}}]}"#,
        )
        .expect("parses");
        assert_eq!(
            parsed,
            KafkaBatchResponse::from_failures(&[id("orders", 0, 15)])
        );
    }
}
