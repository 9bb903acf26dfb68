//! A record the function asks to retry comes again, on the real broker: the partition is moved
//! back to it and nothing after it is committed first. On tansu 0.6.0 a fetch from an offset
//! inside a record batch starts at the next batch (Kafka returns the batch holding the offset),
//! so a plain seek back skipped the failed record and its successors for good once the
//! producer sent several records in one batch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sagaflow_handlers::{KafkaFunction, RecordedDeadLetters};
use sagaflow_kafka::admin::ensure_topics;
use sagaflow_kafka::{EventPublisher, KafkaConfig, OutboundRecord};
use sagaflow_lambda_kafka::{BatchConfig, BoxFuture, InboundRecord, RecordHandler, RecordOutcome};
use sagaflow_local_trigger::{KafkaTrigger, TriggerConfig};

/// Counts each offset it handles and refuses `refuse` the first time it sees it.
struct RefusesOnce {
    refuse: i64,
    seen: Arc<Mutex<BTreeMap<i64, u32>>>,
}

impl RecordHandler for RefusesOnce {
    fn handle(&self, record: InboundRecord) -> BoxFuture<RecordOutcome> {
        let offset = record.id.offset;
        let times = {
            let mut seen = self.seen.lock().unwrap();
            let times = seen.entry(offset).or_default();
            *times += 1;
            *times
        };
        let refuse = self.refuse;
        Box::pin(async move {
            if offset == refuse && times == 1 {
                RecordOutcome::Retry("refused once on purpose".into())
            } else {
                RecordOutcome::Done
            }
        })
    }
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_record_inside_a_producer_batch_comes_again_with_its_successors() {
    let kafka = KafkaConfig::from_env().unwrap();
    assert!(
        std::env::var("SAGAFLOW_KAFKA_BOOTSTRAP").is_ok(),
        "SAGAFLOW_KAFKA_BOOTSTRAP is not set: start the local servers with `make up` (or run `make test`)"
    );
    let topic = format!("redelivery-{}", std::process::id());
    ensure_topics(&kafka, std::slice::from_ref(&topic), 1)
        .await
        .unwrap();
    // One publish of twelve records of one key: they travel in one or a few record batches.
    let records: Vec<OutboundRecord> = (0..12)
        .map(|n| OutboundRecord {
            topic: topic.clone(),
            key: "one-key".into(),
            value: format!("{{\"n\":{n}}}").into_bytes(),
            headers: Vec::new(),
        })
        .collect();
    EventPublisher::new(&kafka)
        .unwrap()
        .publish(&records)
        .await
        .unwrap();

    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let handler = RefusesOnce {
        refuse: 5,
        seen: seen.clone(),
    };
    let function = KafkaFunction::new(
        Arc::new(handler),
        Arc::new(RecordedDeadLetters::default()),
        BatchConfig::default(),
    );
    let trigger = KafkaTrigger::new(
        &format!("{topic}-group"),
        vec![topic.clone()],
        function,
        kafka,
        TriggerConfig::default(),
    )
    .start(tokio::runtime::Handle::current())
    .unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let counts = loop {
        let counts = seen.lock().unwrap().clone();
        // Offsets 5 to 11 are handled again behind the refused one (one key, in order).
        if counts.len() == 12 && (5..12).all(|o| counts[&o] >= 2) || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::task::spawn_blocking(move || trigger.stop(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(counts.len(), 12, "every offset was handled: {counts:?}");
    for offset in 5..12 {
        assert!(
            counts[&offset] >= 2,
            "offset {offset} came again after offset 5 was refused: {counts:?}"
        );
    }
}
