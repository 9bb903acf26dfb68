//! What each sagaflow Lambda function does with a record. The binaries under `functions/` are
//! thin shells: build a [`context::FunctionContext`] at init, then hand each batch to one of
//! these handlers.

#![warn(missing_docs)]

pub mod analytics;
pub mod bad_input;
pub mod clock;
pub mod context;
pub mod dead_letter;
pub mod deadline;
pub mod fixture_run;
pub mod function;
pub mod headers;
pub mod orchestrator;
pub mod relay;
pub mod service;

pub use analytics::{AnalyticsFunction, AnalyticsHandler, AnalyticsRequest, AnalyticsResponse};
pub use context::{FunctionContext, InitError};
pub use deadline::{DeadlineTimer, TickReport};
pub use function::{KafkaFunction, RecordedDeadLetters};
pub use orchestrator::OrchestratorHandler;
pub use sagaflow_lambda_kafka::KafkaBatchResponse;
pub use service::{ServiceHandler, UnknownService, SERVICE_NAMES};
