//! What each sagaflow function does with a record, over small seams: an [`sagaflow_core::EventStore`],
//! an [`sagaflow_core::projection::AnalyticsStore`], a [`sagaflow_records::Publisher`], a
//! dead-letter sink and a [`clock::Clock`]. No AWS SDK and no Kafka client: the Lambda binaries
//! (through `sagaflow-aws`), the local triggers and `make run` (`sagaflow-embedded`) all run
//! these same handlers.

#![warn(missing_docs)]

pub mod analytics;
pub mod bad_input;
pub mod clock;
pub mod dead_letter;
pub mod deadline;
pub mod fixture_run;
pub mod function;
pub mod headers;
pub mod intake;
pub mod orchestrator;
pub mod relay;
pub mod service;

pub use analytics::{AnalyticsFunction, AnalyticsHandler, AnalyticsRequest, AnalyticsResponse};
pub use deadline::{DeadlineTimer, TickReport};
pub use function::{KafkaFunction, RecordedDeadLetters};
pub use intake::{HandlerSetupError, Intake};
pub use orchestrator::OrchestratorHandler;
pub use sagaflow_lambda_kafka::KafkaBatchResponse;
pub use service::{ServiceHandler, UnknownService, SERVICE_NAMES};
