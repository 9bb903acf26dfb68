//! The local trigger: runs the Lambda handlers on local servers exactly as AWS event source
//! mappings would feed them — Kafka consumer groups building `KafkaEvent` batches, and the
//! events table's stream feeding the outbox relay. Only the trigger differs from AWS.

#![warn(missing_docs)]

pub mod faults;
pub mod function_logs;
pub mod kafka_source;
pub mod request_count;
pub mod stream_source;
pub mod system;

pub use faults::{FaultPlan, FaultRates};
pub use kafka_source::{KafkaTrigger, TriggerConfig, TriggerStats};
pub use request_count::{OperationCount, RequestCounter};
pub use sagaflow_lambda_kafka::trigger_payload::EventSource;
pub use system::{DeadLetterRecord, LocalStats, LocalSystem, LocalSystemConfig};
