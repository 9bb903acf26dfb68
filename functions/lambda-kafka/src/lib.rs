//! Kafka-triggered Lambda glue: decode `KafkaEvent` batches, process records in per-key
//! order, dead-letter what can never succeed, and report partial batch failures.
#![warn(missing_docs)]

pub mod batch;
mod groups;
mod isolate;
pub mod payload;
pub mod record;
pub mod response;
pub mod trigger_payload;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod test_support;

pub use batch::{
    process_batch, BatchConfig, BatchReport, BatchResult, BoxFuture, DeadLetter, DeadLetterSink,
    RecordHandler, RecordOutcome, SinkError,
};
pub use payload::{parse_kafka_event, PayloadError};
pub use record::{
    decode_batch, DecodedRecord, EncodedField, InboundRecord, RawRecord, RecordDecodeError,
    RecordId,
};
pub use response::{KafkaBatchItemFailure, KafkaBatchResponse, KafkaItemIdentifier};
