//! sagaflow's Lambda functions: one binary per function in `src/bin`, each handing the Lambda
//! runtime one of the entry points here, built over [`context::FunctionContext`] (the DynamoDB
//! tables, the rdkafka publisher and the dead-letter topic, opened once at init).
//!
//! The entry points are the whole of what a binary adds to `sagaflow-handlers`: the same
//! handlers run behind the local triggers and in `make run`.

#![warn(missing_docs)]

pub mod context;
pub mod kafka_auth;
pub mod logging;
pub mod table_check;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::layers::{OpenTelemetryFaasTrigger, OpenTelemetryLayer, TracingLayer};
use lambda_runtime::{service_fn, Error, LambdaEvent, LambdaInvocation, Runtime, Service};
use sagaflow_eventsourcing::EventStore;
use sagaflow_handlers::clock;
use sagaflow_handlers::dead_letter::DeadLetterTopic;
use sagaflow_handlers::relay::relay_stream_batch;
use sagaflow_handlers::{
    AnalyticsFunction, AnalyticsResponse, DeadlineTimer, KafkaBatchResponse, KafkaFunction,
    TickReport,
};
use sagaflow_records::{Publisher, Topics};
use sagaflow_telemetry::export::Tracing;
use serde_json::Value;
use std::sync::Arc;

pub use context::{FunctionContext, InitError};
pub use table_check::TableCheck;

/// Handles one batch from a Kafka trigger: a service's or the orchestrator's.
pub async fn kafka_batch(
    function: &KafkaFunction,
    event: LambdaEvent<Value>,
) -> Result<KafkaBatchResponse, Error> {
    Ok(function.handle_payload(event.payload).await?.response)
}

/// Handles one invocation of the analytics function: a Kafka batch or a query.
pub async fn analytics_invocation(
    function: &AnalyticsFunction,
    event: LambdaEvent<Value>,
) -> Result<AnalyticsResponse, Error> {
    Ok(function.invoke(event.payload).await?)
}

/// Some due sagas could not be ticked; they stay due, so the next scheduled run tries again.
#[derive(Debug, thiserror::Error)]
#[error("{} of {due} due sagas could not be ticked: {}", failed.len(), failed.join("; "))]
pub struct TicksFailed {
    /// How many sagas were due.
    pub due: usize,
    /// Each saga that failed, with why.
    pub failed: Vec<String>,
}

/// Handles one scheduled run of the deadline timer; the schedule's payload carries nothing it
/// needs. A run in which any tick failed is reported as an error.
pub async fn scheduled_tick<S: EventStore + 'static>(
    timer: &DeadlineTimer<S>,
    _event: LambdaEvent<Value>,
) -> Result<TickReport, Error> {
    let report = timer.tick_due(clock::now()).await?;
    if report.failed.is_empty() {
        Ok(report)
    } else {
        Err(TicksFailed {
            due: report.due,
            failed: report.failed,
        }
        .into())
    }
}

/// What the relay needs for every batch.
pub struct Relay {
    /// Where events and commands are published.
    pub publisher: Arc<dyn Publisher>,
    /// The topic names.
    pub topics: Topics,
    /// Where unreadable stream records go.
    pub dead_letters: DeadLetterTopic,
}

/// Handles one batch from the events table's stream.
pub async fn stream_batch(
    relay: &Relay,
    event: LambdaEvent<StreamEvent>,
) -> Result<DynamoDbEventResponse, Error> {
    let outcome = relay_stream_batch(
        relay.publisher.as_ref(),
        &relay.dead_letters,
        &relay.topics,
        &event.payload,
    )
    .await;
    Ok(outcome.stream_response())
}

/// Runs `runtime` (a handler the Lambda runtime wraps): the runtime's span around each
/// invocation (the request id and X-Ray trace id on every log line), and inside it an
/// OpenTelemetry span for the invocation whose end flushes `tracing`'s spans, before the
/// sandbox may be frozen.
pub async fn serve<S>(
    runtime: Runtime<S>,
    trigger: OpenTelemetryFaasTrigger,
    tracing: Tracing,
) -> Result<(), Error>
where
    S: Service<LambdaInvocation, Response = (), Error = Error>,
{
    runtime
        .layer(OpenTelemetryLayer::new(move || tracing.flush()).with_trigger(trigger))
        .layer(TracingLayer::new())
        .run()
        .await
}

/// Runs `work` once the function's tables are known to be there: the first invocation waits
/// for the check begun at init, and fails with its error when a table is missing.
pub async fn checked<T>(
    tables: &TableCheck,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tables.passed().await?;
    work.await
}

/// Runs the Kafka-triggered function of `service` (`order`, `payment`, `inventory`, `shipment`).
pub async fn run_service(service: &str) -> Result<(), Error> {
    let tracing = logging::init(service);
    let context = FunctionContext::from_env(false).await?;
    let function = context.service_function(service)?;
    let handler = service_fn(|event| checked(&context.tables, kafka_batch(&function, event)));
    serve(
        Runtime::new(handler),
        OpenTelemetryFaasTrigger::PubSub,
        tracing,
    )
    .await
}

/// Runs the saga orchestrator.
pub async fn run_orchestrator() -> Result<(), Error> {
    let tracing = logging::init("orchestrator");
    let context = FunctionContext::from_env(false).await?;
    let function = context.orchestrator_function()?;
    let handler = service_fn(|event| checked(&context.tables, kafka_batch(&function, event)));
    serve(
        Runtime::new(handler),
        OpenTelemetryFaasTrigger::PubSub,
        tracing,
    )
    .await
}

/// Runs the analytics function.
pub async fn run_analytics() -> Result<(), Error> {
    let tracing = logging::init("analytics");
    let context = FunctionContext::from_env(true).await?;
    let function = context.analytics_function()?;
    let handler =
        service_fn(|event| checked(&context.tables, analytics_invocation(&function, event)));
    serve(
        Runtime::new(handler),
        OpenTelemetryFaasTrigger::PubSub,
        tracing,
    )
    .await
}

/// Runs the scheduled deadline timer.
pub async fn run_deadline() -> Result<(), Error> {
    let tracing = logging::init("deadline");
    let (timer, tables) = FunctionContext::deadline_timer_from_env().await?;
    let handler = service_fn(|event| checked(&tables, scheduled_tick(&timer, event)));
    // Boxed: the timer's tick nests deep enough to pass the compiler's layout depth otherwise.
    Box::pin(serve(
        Runtime::new(handler),
        OpenTelemetryFaasTrigger::Timer,
        tracing,
    ))
    .await
}

/// Runs the outbox relay.
pub async fn run_relay() -> Result<(), Error> {
    let tracing = logging::init("relay");
    let context = FunctionContext::from_env(false).await?;
    let relay = Relay {
        publisher: Arc::new(context.publisher.clone()),
        topics: context.kafka.topics.clone(),
        dead_letters: context.dead_letters.clone(),
    };
    let handler = service_fn(|event| checked(&context.tables, stream_batch(&relay, event)));
    serve(
        Runtime::new(handler),
        OpenTelemetryFaasTrigger::Datasource,
        tracing,
    )
    .await
}
