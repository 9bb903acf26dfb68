//! Sagas: one [`SagaDefinition`], two runtimes.
//!
//! - [`SagaExecutor`] runs a saga in process, dispatching commands and retrying with backoff.
//! - [`orchestrate`] is the durable runtime's pure decision function; [`SagaInstance`] is the
//!   event-sourced aggregate it drives, persisted through the repository like any other.
//!
//! Steps are data-driven: a step builds a command for a service and recognises the service's
//! reply by the reply event's type, so the same definition works over any transport.

use std::future::Future;
use std::pin::Pin;

pub mod definition;
pub mod executor;
pub mod instance;
pub mod orchestrator;

#[cfg(test)]
mod test_support;

pub use definition::{
    CommandBuilder, CommandMessage, Compensation, CompletionBuilder, RetryPolicy, SagaCommand,
    SagaData, SagaDefinition, SagaDefinitionBuilder, SagaDefinitionError, SagaFailure, SagaStep,
    StepKind, COMPLETION_STEP,
};
pub use executor::{
    CommandDispatcher, DispatchError, DispatchOutcome, Reply, SagaExecutor, SagaOutcome,
    SagaStatus, Sleeper, StepFailure,
};
pub use instance::{Awaiting, InstanceStatus, SagaEvent, SagaInstance};
pub use orchestrator::{
    commands_in, commands_in_stored, orchestrate, SagaDecision, SagaError, SagaInput, SagaTrigger,
};

/// A boxed, sendable future: what dispatchers and sleepers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
