//! The order flow's sagas, and the glue that runs them: durably (a saga instance per order,
//! advanced by reply events) or in process (the executor calling the services directly).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::domain::{inventory_target, CancelReason, RefundStatus, StockLine};
use crate::flow::services::FlowServices;
use crate::flow::{FlowEnvelope, FlowEvent};
use sagaflow_eventsourcing::clock::SimClock;
use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::event::{CommandMeta, DecodeError, StoredEvent, Timestamp};
use sagaflow_eventsourcing::repository::{Repository, RepositoryError};
use sagaflow_eventsourcing::store::EventStore;
use sagaflow_eventsourcing::{Classified, Transience};
use sagaflow_saga::{
    commands_in, BoxFuture, CommandBuildError, CommandDispatcher, CommandMessage, DispatchError,
    Reply, RetryPolicy, SagaCommand, SagaData, SagaDefinition, SagaDefinitionError, SagaError,
    SagaEvent, SagaInput, SagaInstance, SagaStep, SagaTrigger, Sleeper,
};

/// The type name of the order-processing saga.
pub const ORDER_SAGA: &str = "order-processing";
/// The type name of the shipping saga.
pub const SHIPPING_SAGA: &str = "shipping";
/// How long a step may wait for its reply before it counts as failed.
pub const STEP_TIMEOUT_MS: i64 = 30_000;
/// Sends of each step's compensation before the saga records it as failed, awaited 1, 2, 4, 8,
/// 8 and 8 step timeouts (31 in all, 15.5 minutes at the default timeout): an unconfirmed
/// refund or release must be pressed for, not dropped.
pub const STEP_ATTEMPTS: u32 = 6;
/// Sends of each forward step's command before the step fails and the saga compensates,
/// awaited 1 and 2 step timeouts (90 s at the default timeout): one more try for a command
/// that was lost, without keeping a customer waiting for long.
pub const FORWARD_ATTEMPTS: u32 = 2;

fn text(data: &SagaData, field: &str) -> Result<String, CommandBuildError> {
    data.input
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| CommandBuildError::MissingText(field.to_string()))
}

fn input(data: &SagaData, field: &str) -> Result<Value, CommandBuildError> {
    data.input
        .get(field)
        .cloned()
        .ok_or_else(|| CommandBuildError::MissingInput(field.to_string()))
}

fn stock_lines(data: &SagaData) -> Result<Vec<StockLine>, CommandBuildError> {
    serde_json::from_value(input(data, "lines")?).map_err(|e| CommandBuildError::InvalidInput {
        field: "lines".into(),
        reason: e.to_string(),
    })
}

/// The target of the order's inventory commands ([`inventory_target`]).
fn stock_target(data: &SagaData) -> Result<String, CommandBuildError> {
    Ok(inventory_target(
        &text(data, "order_id")?,
        &stock_lines(data)?,
    ))
}

/// Why the saga is being compensated, as a cancel reason with a stable code.
fn cancel_reason(data: &SagaData) -> CancelReason {
    match &data.failure {
        Some(failure) if failure.cancelled => {
            CancelReason::new("customer_cancelled", failure.reason.clone())
        }
        Some(failure) if failure.timed_out => CancelReason::new(
            "timeout",
            format!("{} did not answer in time", failure.step),
        ),
        Some(failure) => {
            let code = match failure.step.as_str() {
                "process_payment" => "payment_declined",
                "reserve_inventory" => "out_of_stock",
                "schedule_shipment" | "create_shipment" | "confirm_shipment" => "shipment_failed",
                _ => "saga_failed",
            };
            CancelReason::new(code, failure.reason.clone())
        }
        None => CancelReason::new("saga_failed", "no failure recorded"),
    }
}

/// How patiently the durable order saga waits on its services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepTiming {
    /// How long a step's first attempt is awaited, in milliseconds (each retry twice as long).
    pub timeout_ms: i64,
    /// Sends of each forward step's command (see [`FORWARD_ATTEMPTS`]).
    pub forward_attempts: u32,
    /// Sends of each step's compensation (see [`STEP_ATTEMPTS`]).
    pub compensation_attempts: u32,
}

impl StepTiming {
    fn apply(self, step: SagaStep) -> SagaStep {
        step.timeout_ms(self.timeout_ms)
            .retry(RetryPolicy::attempts(self.forward_attempts))
            .compensation_retry(RetryPolicy::attempts(self.compensation_attempts))
    }
}

impl Default for StepTiming {
    fn default() -> Self {
        Self {
            timeout_ms: STEP_TIMEOUT_MS,
            forward_attempts: FORWARD_ATTEMPTS,
            compensation_attempts: STEP_ATTEMPTS,
        }
    }
}

/// The order-processing saga: create order, process payment, reserve inventory, schedule
/// shipment; on success complete the order and ship the stock. Its input is a `CreateOrder`.
pub fn order_saga() -> Result<SagaDefinition, SagaDefinitionError> {
    order_saga_with_timing(StepTiming::default())
}

/// The order-processing saga with its own [`StepTiming`] (a deployment whose services answer
/// slower, or a test that wants deadlines to fire soon).
pub fn order_saga_with_timing(timing: StepTiming) -> Result<SagaDefinition, SagaDefinitionError> {
    SagaDefinition::new(ORDER_SAGA)
        .step(timing.apply(
            SagaStep::new("create_order", |d: &SagaData| {
                Ok(SagaCommand::new("order.create", text(d, "order_id")?, d.input.clone()))
            })
            .succeeds_on(&["order.created"])
            .compensate_with(
                |d: &SagaData| {
                    // The refund's reply says whether money went back: only a refund has an amount.
                    let refunded = d
                        .compensation_replies
                        .get("process_payment")
                        .is_some_and(|reply| reply.get("amount").is_some());
                    let refund_status = if refunded {
                        RefundStatus::Refunded
                    } else {
                        RefundStatus::NotCharged
                    };
                    Ok(SagaCommand::new(
                        "order.cancel",
                        text(d, "order_id")?,
                        json!({ "reason": cancel_reason(d), "refund_status": refund_status }),
                    ))
                },
                &["order.cancelled"],
            )
        ))
        .step(timing.apply(
            SagaStep::new("process_payment", |d: &SagaData| {
                let order_id = text(d, "order_id")?;
                let total = d
                    .reply("create_order")
                    .and_then(|reply| reply.get("total"))
                    .cloned()
                    .ok_or(CommandBuildError::MissingReply {
                        step: "create_order",
                        field: "total",
                    })?;
                Ok(SagaCommand::new(
                    "payment.charge",
                    order_id.clone(),
                    json!({ "order_id": order_id, "amount": total, "method": input(d, "payment_method")? }),
                ))
            })
            .succeeds_on(&["payment.processed"])
            .fails_on(&["payment.declined"])
            .compensate_with(
                |d: &SagaData| {
                    let order_id = text(d, "order_id")?;
                    Ok(SagaCommand::new(
                        "payment.refund",
                        order_id.clone(),
                        json!({ "order_id": order_id, "reason": cancel_reason(d).to_string() }),
                    ))
                },
                &["payment.refunded", "payment.voided"],
            )
        ))
        .step(timing.apply(reserve_inventory_step()))
        .step(timing.apply(schedule_shipment_step("schedule_shipment")))
        .on_completed(|d: &SagaData| {
            let order_id = text(d, "order_id")?;
            Ok(vec![
                SagaCommand::new("order.complete", order_id.clone(), json!({})),
                SagaCommand::new(
                    "inventory.ship",
                    stock_target(d)?,
                    json!({ "order_id": order_id }),
                ),
            ])
        })
        .build()
}

fn reserve_inventory_step() -> SagaStep {
    SagaStep::new("reserve_inventory", |d: &SagaData| {
        let order_id = text(d, "order_id")?;
        Ok(SagaCommand::new(
            "inventory.reserve",
            stock_target(d)?,
            json!({ "order_id": order_id, "lines": stock_lines(d)? }),
        ))
    })
    .succeeds_on(&["inventory.reserved"])
    .fails_on(&["inventory.reservation_failed"])
    .compensate_with(
        |d: &SagaData| {
            let order_id = text(d, "order_id")?;
            Ok(SagaCommand::new(
                "inventory.release",
                stock_target(d)?,
                json!({ "order_id": order_id, "reason": cancel_reason(d).to_string() }),
            ))
        },
        &["inventory.released"],
    )
}

/// Books a carrier for the order's address; cancelling the shipment undoes it.
fn schedule_shipment_step(name: &str) -> SagaStep {
    SagaStep::new(name, |d: &SagaData| {
        let order_id = text(d, "order_id")?;
        Ok(SagaCommand::new(
            "shipment.schedule",
            order_id.clone(),
            json!({ "order_id": order_id, "address": input(d, "shipping_address")? }),
        ))
    })
    .succeeds_on(&["shipment.scheduled"])
    .fails_on(&["shipment.failed"])
    .compensate_with(cancel_shipment, &["shipment.cancelled"])
}

fn cancel_shipment(d: &SagaData) -> Result<SagaCommand, CommandBuildError> {
    let order_id = text(d, "order_id")?;
    Ok(SagaCommand::new(
        "shipment.cancel",
        order_id.clone(),
        json!({ "order_id": order_id, "reason": cancel_reason(d).to_string() }),
    ))
}

/// The shipping saga: reserve inventory, create the shipment, confirm it with the carrier; on
/// success the stock ships. Its input has `order_id`, `lines` (SKU and quantity) and `shipping_address`.
pub fn shipping_saga() -> Result<SagaDefinition, SagaDefinitionError> {
    let timing = StepTiming::default();
    SagaDefinition::new(SHIPPING_SAGA)
        .step(timing.apply(reserve_inventory_step()))
        .step(timing.apply(schedule_shipment_step("create_shipment")))
        .step(
            timing.apply(
                SagaStep::new("confirm_shipment", |d: &SagaData| {
                    let order_id = text(d, "order_id")?;
                    Ok(SagaCommand::new(
                        "shipment.confirm",
                        order_id.clone(),
                        json!({ "order_id": order_id }),
                    ))
                })
                .succeeds_on(&["shipment.confirmed"]),
            ),
        )
        .on_completed(|d: &SagaData| {
            let order_id = text(d, "order_id")?;
            Ok(vec![SagaCommand::new(
                "inventory.ship",
                stock_target(d)?,
                json!({ "order_id": order_id }),
            )])
        })
        .build()
}

/// Why the orchestrator could not advance a saga.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SagaRunError {
    /// No definition has this saga type.
    #[error("unknown saga type `{0}`")]
    UnknownSaga(String),
    /// A cancel named a saga that was never started (no orchestrated order has this id).
    #[error("cannot cancel saga `{0}`: no orchestrated order has this id")]
    NoSuchSaga(String),
    /// Loading, deciding or saving the saga failed.
    #[error(transparent)]
    Repository(#[from] RepositoryError<SagaError>),
}

impl Classified for SagaRunError {
    /// A saga that does not exist never will; the repository says for its own failures.
    fn transience(&self) -> Transience {
        match self {
            SagaRunError::UnknownSaga(_) | SagaRunError::NoSuchSaga(_) => Transience::Permanent,
            SagaRunError::Repository(e) => e.transience(),
        }
    }
}

/// The durable orchestrator: saga instances in an event store, advanced by reply events.
pub struct SagaRunner<S> {
    sagas: Repository<SagaInstance, S>,
    definitions: Arc<BTreeMap<String, SagaDefinition>>,
}

impl<S> Clone for SagaRunner<S> {
    fn clone(&self) -> Self {
        Self {
            sagas: self.sagas.clone(),
            definitions: self.definitions.clone(),
        }
    }
}

/// Sagas whose state one orchestrator keeps between replies (see
/// [`Repository::with_state_cache`]): more than the sagas in flight at once.
pub const STATE_CACHE_ENTRIES: usize = 4_096;

impl<S: EventStore> SagaRunner<S> {
    /// An orchestrator over `store` that knows `definitions`.
    pub fn new(store: Arc<S>, definitions: Vec<SagaDefinition>) -> Self {
        Self {
            sagas: Repository::new(store).with_state_cache(STATE_CACHE_ENTRIES),
            definitions: Arc::new(
                definitions
                    .into_iter()
                    .map(|d| (d.name().to_string(), d))
                    .collect(),
            ),
        }
    }

    /// The saga repository, for reading instances.
    pub fn repository(&self) -> &Repository<SagaInstance, S> {
        &self.sagas
    }

    /// Starts saga `saga_type` as `saga_id`, its events continuing the trace `trace_context`;
    /// starting it again changes nothing.
    pub async fn start(
        &self,
        saga_type: &str,
        saga_id: &str,
        input: Value,
        correlation_id: &str,
        now: Timestamp,
        trace_context: Option<String>,
    ) -> Result<Vec<StoredEvent>, SagaRunError> {
        let definition = self.definition(saga_type)?;
        let trigger = SagaTrigger {
            definition,
            input: SagaInput::Start {
                saga_id: saga_id.to_string(),
                input,
                correlation_id: correlation_id.to_string(),
            },
            now,
        };
        let meta = CommandMeta::new(correlation_id, format!("start:{saga_id}"), now)
            .with_idempotency_key(format!("saga:{saga_id}:start"))
            .with_trace_context(trace_context);
        Ok(self.sagas.execute(saga_id, &trigger, &meta).await?.events)
    }

    /// Feeds a committed event to the saga of its correlation id, if there is one.
    pub async fn on_event(
        &self,
        event: &FlowEnvelope,
        now: Timestamp,
    ) -> Result<Vec<StoredEvent>, SagaRunError> {
        if let FlowEvent::Saga(_) = event.payload {
            return Ok(vec![]);
        }
        // The reply as the code writes it now: a step reads an old event's fields upcast.
        let input = SagaInput::Reply(Reply {
            event_id: event.event_id.clone(),
            event_type: event.event_type.clone(),
            payload: event.payload.to_payload(),
        });
        let meta = CommandMeta::caused_by(event, now)
            .with_idempotency_key(format!("saga:{}:{}", event.correlation_id, event.event_id));
        self.advance(&event.correlation_id, input, &meta).await
    }

    /// Cancels saga `saga_id` for `reason` as the command `cancel_id` asks; the same cancel
    /// again changes nothing, a cancel of a finished or compensating saga is refused
    /// ([`SagaError::CancelRefused`]), and so is one of a saga that was never started. Its
    /// events continue the trace `trace_context`.
    pub async fn cancel(
        &self,
        saga_id: &str,
        cancel_id: &str,
        reason: &str,
        now: Timestamp,
        trace_context: Option<String>,
    ) -> Result<Vec<StoredEvent>, SagaRunError> {
        let loaded = self.sagas.load(saga_id).await?;
        if loaded.version == 0 {
            return Err(SagaRunError::NoSuchSaga(saga_id.to_string()));
        }
        let input = SagaInput::Cancel {
            cancel_id: cancel_id.to_string(),
            reason: reason.to_string(),
        };
        let meta = CommandMeta::new(saga_id, cancel_id, now)
            .with_idempotency_key(format!("saga:{saga_id}:cancel:{cancel_id}"))
            .with_trace_context(trace_context);
        self.advance(saga_id, input, &meta).await
    }

    /// Lets saga `saga_id` act on deadlines that passed by `now`, its events continuing the
    /// trace `trace_context`.
    pub async fn tick(
        &self,
        saga_id: &str,
        now: Timestamp,
        trace_context: Option<String>,
    ) -> Result<Vec<StoredEvent>, SagaRunError> {
        let meta = CommandMeta::new(saga_id, format!("tick:{saga_id}:{}", now.as_millis()), now)
            .with_trace_context(trace_context);
        self.advance(saga_id, SagaInput::Tick, &meta).await
    }

    /// Feeds `input` to the existing saga `saga_id` under its own definition; a saga that was
    /// never started (an order of another flow) is left alone.
    async fn advance(
        &self,
        saga_id: &str,
        input: SagaInput,
        meta: &CommandMeta,
    ) -> Result<Vec<StoredEvent>, SagaRunError> {
        let loaded = self.sagas.load(saga_id).await?;
        if loaded.version == 0 {
            return Ok(vec![]);
        }
        let trigger = SagaTrigger {
            definition: self.definition(loaded.state.saga_type())?,
            input,
            now: meta.now,
        };
        Ok(self.sagas.execute(saga_id, &trigger, meta).await?.events)
    }

    fn definition(&self, saga_type: &str) -> Result<SagaDefinition, SagaRunError> {
        self.definitions
            .get(saga_type)
            .cloned()
            .ok_or_else(|| SagaRunError::UnknownSaga(saga_type.to_string()))
    }
}

/// The command envelope for a saga's command message, caused by the saga event that recorded it
/// and continuing its trace.
pub fn envelope_for(
    message: &CommandMessage,
    cause: &str,
    issued_at: Timestamp,
    trace_context: Option<String>,
) -> CommandEnvelope {
    CommandEnvelope {
        command_id: message.command_id.clone(),
        command_type: message.command.command_type.clone(),
        target_id: message.command.target_id.clone(),
        payload: message.command.payload.clone(),
        correlation_id: message.correlation_id.clone(),
        causation_id: cause.to_string(),
        issued_at,
        trace_context,
    }
}

/// The commands a stored saga event asks the relay to send (none for most saga events).
pub fn commands_from_saga_event(event: &StoredEvent) -> Result<Vec<CommandEnvelope>, DecodeError> {
    let decoded = event.decode::<SagaEvent>()?;
    Ok(commands_in(std::slice::from_ref(&decoded.payload))
        .iter()
        .map(|message| {
            envelope_for(
                message,
                &event.event_id,
                event.occurred_at,
                event.trace_context.clone(),
            )
        })
        .collect())
}

/// Sends in-process saga commands straight to the services.
pub struct ServicesDispatcher<S> {
    services: FlowServices<S>,
    clock: SimClock,
}

impl<S> ServicesDispatcher<S> {
    /// A dispatcher over `services`, stamping events with `clock`.
    pub fn new(services: FlowServices<S>, clock: SimClock) -> Self {
        Self { services, clock }
    }
}

impl<S: EventStore + 'static> CommandDispatcher for ServicesDispatcher<S> {
    fn dispatch(&self, message: CommandMessage) -> BoxFuture<Result<Vec<Reply>, DispatchError>> {
        let services = self.services.clone();
        let now = self.clock.now();
        Box::pin(async move {
            let envelope = envelope_for(&message, &message.causation_id, now, None);
            match services.handle(&envelope, now).await {
                // Every event the command produced reaches the saga, as on Kafka.
                Ok(handled) => Ok(handled
                    .events
                    .iter()
                    .map(|event| {
                        Reply::new(
                            event.event_id.clone(),
                            event.event_type.clone(),
                            event.payload.clone(),
                        )
                    })
                    .collect()),
                Err(e) if e.is_transient() => Err(DispatchError::Transient(e.to_string())),
                Err(e) => Err(DispatchError::Permanent(e.to_string())),
            }
        })
    }
}

/// Waits by moving the simulated clock, so retries take simulated time and no real time.
pub struct SimSleeper {
    clock: SimClock,
}

impl SimSleeper {
    /// A sleeper over `clock`.
    pub fn new(clock: SimClock) -> Self {
        Self { clock }
    }
}

impl Sleeper for SimSleeper {
    fn sleep(&self, millis: u64) -> BoxFuture<()> {
        self.clock
            .advance(i64::try_from(millis).unwrap_or(i64::MAX));
        Box::pin(async {})
    }
}

#[cfg(test)]
mod wake_tests {
    use super::*;
    use crate::domain::fixtures::create_order;
    use crate::domain::Flow;
    use sagaflow_eventsourcing::{DueStream, EventStore, InMemoryEventStore, StreamId};

    #[tokio::test]
    async fn given_a_waiting_saga_then_it_is_due_at_its_deadline_and_a_tick_moves_its_wake_up() {
        let store = Arc::new(InMemoryEventStore::new());
        let runner = SagaRunner::new(store.clone(), vec![order_saga().unwrap()]);
        let input = serde_json::to_value(create_order("ord-1", Flow::Orchestrated)).unwrap();
        runner
            .start(ORDER_SAGA, "ord-1", input, "ord-1", Timestamp(1_000), None)
            .await
            .unwrap();
        let deadline = Timestamp(1_000 + STEP_TIMEOUT_MS);
        let due = |at: Timestamp| {
            let store = store.clone();
            async move { store.due("saga", at, 10).await.unwrap() }
        };
        assert!(due(Timestamp(deadline.0 - 1)).await.is_empty());
        assert_eq!(
            due(deadline).await,
            vec![DueStream {
                stream: StreamId::new("saga", "ord-1"),
                wake_at: deadline,
            }]
        );

        let ticked = runner.tick("ord-1", deadline, None).await.unwrap();
        assert!(!ticked.is_empty(), "the timed-out step fails the saga");
        assert!(due(deadline).await.is_empty(), "the old deadline is gone");
        let saga = runner.repository().load("ord-1").await.unwrap().state;
        let next = saga.awaiting().map(|(_, _, at)| at);
        let woken: Vec<_> = due(Timestamp(i64::MAX)).await;
        assert_eq!(woken.first().map(|d| d.wake_at), next);
    }
}
