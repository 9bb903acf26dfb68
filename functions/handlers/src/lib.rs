//! What each sagaflow function does with a record, over small seams: an [`sagaflow_eventsourcing::EventStore`],
//! an [`sagaflow_orders::projection::AnalyticsStore`], a [`sagaflow_records::Publisher`], a
//! dead-letter sink and a [`clock::Clock`]. No AWS SDK and no Kafka client: the Lambda binaries
//! (`sagaflow-lambdas`), the local triggers and `make run` (`sagaflow-embedded`) all run
//! these same handlers.

#![warn(missing_docs)]

pub mod analytics;
pub mod clock;
pub mod dead_letter;
pub mod deadline;
pub mod function;
pub mod headers;
pub mod inbound;
pub mod intake;
pub mod log;
pub mod metrics;
pub mod orchestrator;
pub mod record_error;
pub mod relay;
pub mod service;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod trace;

pub use analytics::{AnalyticsFunction, AnalyticsHandler, AnalyticsRequest, AnalyticsResponse};
pub use deadline::{DeadlineTimer, TickReport};
pub use function::{KafkaFunction, RecordedDeadLetters};
pub use intake::{HandlerSetupError, Intake};
pub use orchestrator::OrchestratorHandler;
pub use record_error::RecordError;
pub use sagaflow_lambda_kafka::KafkaBatchResponse;
pub use service::{ServiceHandler, UnknownService, SERVICE_NAMES};
