//! The saga engine: one [`SagaDefinition`], two runtimes.
//!
//! - [`orchestrate`] is the one decision function: given the saga's state, an input (start, a
//!   reply, a tick) and the time, the events to record and the commands to send.
//!   [`SagaInstance`] is the event-sourced aggregate it drives, persisted through the
//!   repository like any other: the durable runtime.
//! - [`SagaExecutor`] runs a saga in process: a driver loop around the same `orchestrate` that
//!   calls the services directly and feeds their replies back.
//!
//! Steps are data-driven: a step builds a command for a service and recognises the service's
//! reply by the reply event's type, so the same definition works over any transport.

#![warn(missing_docs)]

use std::future::Future;
use std::pin::Pin;

pub mod definition;
pub mod executor;
pub mod instance;
pub mod orchestrator;

#[cfg(test)]
mod test_support;

pub use definition::{
    CommandBuildError, CommandBuilder, CommandMessage, Compensation, CompletionBuilder,
    RetryPolicy, SagaCommand, SagaData, SagaDefinition, SagaDefinitionBuilder, SagaDefinitionError,
    SagaFailure, SagaStep, StepKind, COMPLETION_STEP,
};
pub use executor::{
    CommandDispatcher, DispatchError, SagaExecutor, SagaOutcome, Sleeper, StepFailure,
};
pub use instance::{Awaiting, InstanceStatus, SagaEvent, SagaInstance};
pub use orchestrator::{
    commands_in, commands_in_stored, orchestrate, Reply, SagaDecision, SagaError, SagaInput,
    SagaTrigger,
};

/// A boxed, sendable future: what dispatchers and sleepers return.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
