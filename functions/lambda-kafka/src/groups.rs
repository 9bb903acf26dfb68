//! Splitting a decoded batch into key groups: the runs of records that must stay in order.

use std::collections::HashMap;

use crate::record::DecodedRecord;

/// Which key group a record belongs to: its partition and its key as sent.
///
/// The key is compared in its base64 form so that records whose key cannot be decoded
/// still land in the right group; strict base64 has exactly one encoding per byte
/// string, so this groups exactly as the decoded bytes would.
type GroupKey = (String, i64, Option<String>);

/// Splits records into per-partition, per-key groups, each in input order, groups
/// ordered by their first record; records without a key form one group per partition.
pub(crate) fn group_by_key(records: Vec<DecodedRecord>) -> Vec<Vec<DecodedRecord>> {
    let mut groups: Vec<Vec<DecodedRecord>> = Vec::new();
    let mut index: HashMap<GroupKey, usize> = HashMap::new();
    for record in records {
        let key = (
            record.id.topic.clone(),
            record.id.partition,
            record.raw.key.clone(),
        );
        match index.get(&key).and_then(|&i| groups.get_mut(i)) {
            Some(group) => group.push(record),
            None => {
                index.insert(key, groups.len());
                groups.push(vec![record]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::decode_batch;
    use crate::test_support::{event, record};
    use serde_json::json;

    fn shape(groups: &[Vec<DecodedRecord>]) -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| g.iter().map(|r| r.id.to_string()).collect())
            .collect()
    }

    #[tokio::test]
    async fn groups_by_partition_and_key_keeping_offset_order() {
        let records = decode_batch(&event(vec![
            record("orders", 0, 1, Some("a"), Some("v")),
            record("orders", 0, 2, Some("b"), Some("v")),
            record("orders", 0, 3, None, Some("v")),
            record("orders", 0, 4, Some("a"), Some("v")),
            record("orders", 0, 5, None, Some("v")),
            record("orders", 1, 1, Some("a"), Some("v")),
        ]));
        assert_eq!(
            shape(&group_by_key(records)),
            vec![
                vec!["orders-0@1", "orders-0@4"],
                vec!["orders-0@2"],
                vec!["orders-0@3", "orders-0@5"],
                vec!["orders-1@1"],
            ]
        );
    }

    #[tokio::test]
    async fn undecodable_key_still_groups_with_its_own_kind() {
        let mut bad1 = record("orders", 0, 1, None, Some("v"));
        bad1["key"] = json!("!!");
        let mut bad2 = record("orders", 0, 2, None, Some("v"));
        bad2["key"] = json!("!!");
        let good = record("orders", 0, 3, None, Some("v"));
        let groups = group_by_key(decode_batch(&event(vec![bad1, bad2, good])));
        assert_eq!(
            shape(&groups),
            vec![vec!["orders-0@1", "orders-0@2"], vec!["orders-0@3"]]
        );
    }
}
