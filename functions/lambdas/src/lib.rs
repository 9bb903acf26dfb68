//! sagaflow's Lambda functions: one binary per function in `src/bin`, each handing the Lambda
//! runtime one of the entry points here, built over [`context::FunctionContext`] (the DynamoDB
//! tables, the rdkafka publisher and the dead-letter topic, built once in the background from
//! init on, [`starting::Starting`]).
//!
//! The entry points are the whole of what a binary adds to `sagaflow-handlers`: the same
//! handlers run behind the local triggers and in `make run`.

#![warn(missing_docs)]

pub mod context;
pub mod kafka_auth;
pub mod logging;
pub mod starting;
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

pub use context::{FunctionContext, FunctionSettings, InitError};
pub use starting::Starting;
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

/// A function's handler, once built, and the check of the tables it needs.
pub struct Started<H> {
    /// The check, begun with the build; every invocation waits for it to pass.
    pub tables: Arc<TableCheck>,
    /// What handles the invocations.
    pub handler: H,
}

/// A function's handler being built in the background since init.
pub type StartingFunction<H> = Starting<Started<H>, InitError>;

/// Builds the clients of `settings` in the background and `handler_of` over them: init awaits
/// none of it, and the first invocation waits for what is left ([`started`]).
pub fn start_function<H, F>(
    settings: FunctionSettings,
    analytics: bool,
    handler_of: F,
) -> StartingFunction<H>
where
    H: Send + Sync + 'static,
    F: Fn(&FunctionContext) -> Result<H, InitError> + Send + Sync + 'static,
{
    let handler_of = Arc::new(handler_of);
    Starting::start("function", move || {
        let (settings, handler_of) = (settings.clone(), handler_of.clone());
        async move {
            let context = FunctionContext::build(settings, analytics).await?;
            Ok(Started {
                handler: handler_of(&context)?,
                tables: context.tables,
            })
        }
    })
}

/// Under provisioned concurrency, waits in init for the start and the table check to end,
/// well or not (see [`starting::awaits_start_in_init`]; a failure is logged, and the first
/// invocation starts again); on demand, returns at once.
pub async fn settle_if_provisioned<H>(function: &StartingFunction<H>)
where
    H: Send + Sync + 'static,
{
    if starting::awaits_start_in_init(|name| std::env::var(name).ok()) {
        let _ = started(function).await;
    }
}

/// The function's handler once it is built and its tables are known to be there: the first
/// invocation waits for both; a start or a table check that fails fails that invocation with
/// its error (its work never runs), and the next invocation tries again.
pub async fn started<H>(function: &StartingFunction<H>) -> Result<&H, Error>
where
    H: Send + Sync + 'static,
{
    let started = function.ready().await?;
    started.tables.passed().await?;
    Ok(&started.handler)
}

/// Runs the Kafka-triggered function of `service` (`order`, `payment`, `inventory`, `shipment`).
pub async fn run_service(service: &'static str) -> Result<(), Error> {
    let tracing = logging::init(service);
    let settings = FunctionSettings::from_env()?;
    let function = start_function(settings, false, move |context| {
        context.service_function(service)
    });
    settle_if_provisioned(&function).await;
    let handler = service_fn(|event| async { kafka_batch(started(&function).await?, event).await });
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
    let settings = FunctionSettings::from_env()?;
    let function = start_function(settings, false, FunctionContext::orchestrator_function);
    settle_if_provisioned(&function).await;
    let handler = service_fn(|event| async { kafka_batch(started(&function).await?, event).await });
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
    let settings = FunctionSettings::from_env()?;
    let function = start_function(settings, true, FunctionContext::analytics_function);
    settle_if_provisioned(&function).await;
    let handler =
        service_fn(|event| async { analytics_invocation(started(&function).await?, event).await });
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
    let settings = FunctionSettings::from_env()?;
    let function = Starting::start("function", move || {
        let settings = settings.clone();
        async move {
            let (handler, tables) = FunctionContext::deadline_timer(settings).await?;
            Ok(Started { tables, handler })
        }
    });
    settle_if_provisioned(&function).await;
    let handler =
        service_fn(|event| async { scheduled_tick(started(&function).await?, event).await });
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
    let settings = FunctionSettings::from_env()?;
    let function = start_function(settings, false, |context| {
        Ok(Relay {
            publisher: Arc::new(context.publisher.clone()),
            topics: context.kafka.topics.clone(),
            dead_letters: context.dead_letters.clone(),
        })
    });
    settle_if_provisioned(&function).await;
    let handler =
        service_fn(|event| async { stream_batch(started(&function).await?, event).await });
    serve(
        Runtime::new(handler),
        OpenTelemetryFaasTrigger::Datasource,
        tracing,
    )
    .await
}
