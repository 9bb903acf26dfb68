//! The saga orchestrator function: starts an order's saga from a `saga.start` command on the
//! front-door topic, cancels it from a `saga.cancel` there, and feeds every service event to
//! the saga of its order.

use std::sync::Arc;

use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::{EventStore, StoredEvent};
use sagaflow_lambda_kafka::{BoxFuture, InboundRecord, RecordHandler, RecordOutcome};
use sagaflow_orders::domain::{CreateOrder, Flow};
use sagaflow_orders::flow::sagas::{order_saga_with_timing, SagaRunner, StepTiming, ORDER_SAGA};
use sagaflow_records::{topology, Topics};

use crate::clock::{Clock, WallClock};
use crate::inbound::{parse_record, Inbound, Subscriptions};
use crate::intake::{HandlerSetupError, Intake};
use crate::log;
use crate::metrics::{self, MetricsSink, NoMetrics};
use crate::record_error::RecordError;
use crate::trace::RecordTrace;
use tracing::Instrument;

/// What the orchestrator function does with each record.
pub struct OrchestratorHandler<S> {
    sagas: SagaRunner<S>,
    intake: Intake,
    subscriptions: Arc<Subscriptions>,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn MetricsSink>,
}

impl<S> Clone for OrchestratorHandler<S> {
    fn clone(&self) -> Self {
        Self {
            sagas: self.sagas.clone(),
            intake: self.intake.clone(),
            subscriptions: self.subscriptions.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<S: EventStore + 'static> OrchestratorHandler<S> {
    /// The orchestrator of the order-processing saga over `store`.
    pub fn new(store: Arc<S>, topics: Topics) -> Result<Self, HandlerSetupError> {
        Self::with_step_timing(store, topics, StepTiming::default())
    }

    /// The orchestrator whose saga steps wait and retry as `timing` says, taking orders
    /// through intake over the default catalogue.
    pub fn with_step_timing(
        store: Arc<S>,
        topics: Topics,
        timing: StepTiming,
    ) -> Result<Self, HandlerSetupError> {
        Ok(Self {
            sagas: SagaRunner::new(store, vec![order_saga_with_timing(timing)?]),
            intake: Intake::with_default_catalog()?,
            subscriptions: Arc::new(Subscriptions::new(
                "the orchestrator",
                &topology::ORCHESTRATOR,
                &topics,
            )),
            clock: Arc::new(WallClock),
            metrics: Arc::new(NoMetrics),
        })
    }

    /// The same handler writing its saga outcome metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn MetricsSink>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Logs and measures the saga events one record made.
    fn recorded(&self, events: &[StoredEvent]) {
        log::saga_transitions(events);
        if let Some(line) = metrics::saga_line(events, self.clock.now().as_millis()) {
            self.metrics.emit(line);
        }
    }

    /// The same handler reading time from `clock` (the simulated clock of `make run`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same handler taking orders through `intake` (another catalogue).
    pub fn with_intake(mut self, intake: Intake) -> Self {
        self.intake = intake;
        self
    }

    /// The topics it reads: every service's events (replies to saga steps) and the front door.
    pub fn subscriptions(&self) -> Vec<String> {
        self.subscriptions.names()
    }

    /// The sagas, to start one at the front door.
    pub fn sagas(&self) -> &SagaRunner<S> {
        &self.sagas
    }

    /// Feeds one event to its saga.
    pub async fn handle_record(&self, record: &InboundRecord) -> RecordOutcome {
        let mut prepared = parse_record(record, &self.subscriptions);
        let trace = RecordTrace::begin(ORCHESTRATOR, record, &mut prepared);
        let work = async {
            match prepared {
                Ok(Inbound::Command(command)) => self.front_door(command).await,
                Ok(Inbound::Event(event)) => self
                    .sagas
                    .on_event(&event, self.clock.now())
                    .await
                    .map(|recorded| self.recorded(&recorded))
                    .map_err(RecordError::from),
                Err(error) => Err(error),
            }
        };
        let result = work.instrument(trace.span().clone()).await;
        trace.settle(ORCHESTRATOR, record, result)
    }
}

impl<S: EventStore + 'static> OrchestratorHandler<S> {
    /// A command on the front-door topic: `saga.start` or `saga.cancel`.
    async fn front_door(&self, command: CommandEnvelope) -> Result<(), RecordError> {
        match command.command_type.as_str() {
            SAGA_START => self.start_saga(command).await,
            SAGA_CANCEL => self.cancel_saga(command).await,
            other => Err(RecordError::dead_letter(format!(
                "command `{other}` is neither `{SAGA_START}` nor `{SAGA_CANCEL}`, the commands the orchestrator takes"
            ))),
        }
    }

    /// Cancels the running saga of the order a `saga.cancel` names: its completed steps are
    /// compensated in reverse. The same cancel again changes nothing; a cancel of an order
    /// that is finished, already being cancelled or not orchestrated is dead-lettered with why.
    async fn cancel_saga(&self, command: CommandEnvelope) -> Result<(), RecordError> {
        if command.target_id.trim().is_empty() || command.correlation_id != command.target_id {
            // Replies find their saga by correlation id, and the saga's id is the order's.
            return Err(RecordError::dead_letter(format!(
                "{SAGA_CANCEL}: target `{}` and correlation id `{}` must both be the order id",
                command.target_id, command.correlation_id
            )));
        }
        let reason = match command.payload.get("reason") {
            None | Some(serde_json::Value::Null) => "cancelled by the customer".to_string(),
            Some(serde_json::Value::String(reason)) if !reason.trim().is_empty() => reason.clone(),
            Some(other) => {
                return Err(RecordError::dead_letter(format!(
                    "{SAGA_CANCEL}: `reason` must be a non-empty string, not {other}"
                )))
            }
        };
        let recorded = self
            .sagas
            .cancel(
                &command.target_id,
                &command.command_id,
                &reason,
                self.clock.now(),
                command.trace_context.clone(),
            )
            .await
            .map_err(|e| RecordError::from(e).context(SAGA_CANCEL))?;
        self.recorded(&recorded);
        Ok(())
    }

    /// Starts the order saga a `saga.start` command asks for; a second start changes nothing.
    async fn start_saga(&self, command: CommandEnvelope) -> Result<(), RecordError> {
        let order: CreateOrder = serde_json::from_value(command.payload.clone()).map_err(|e| {
            RecordError::dead_letter(format!("{SAGA_START}: payload is not an order: {e}"))
        })?;
        order
            .validate()
            .map_err(|e| RecordError::dead_letter(e).context(SAGA_START))?;
        if order.order_id != command.target_id {
            return Err(RecordError::dead_letter(format!(
                "{SAGA_START}: target `{}` is not the order `{}`",
                command.target_id, order.order_id
            )));
        }
        if command.correlation_id != order.order_id {
            // Replies find their saga by correlation id, and the saga's id is the order's.
            return Err(RecordError::dead_letter(format!(
                "{SAGA_START}: correlation id `{}` must be the order id `{}`",
                command.correlation_id, order.order_id
            )));
        }
        if order.flow != Flow::Orchestrated {
            return Err(RecordError::dead_letter(format!(
                "{SAGA_START}: order {} is {}; only orchestrated orders have a saga (place the others with order.create)",
                order.order_id, order.flow
            )));
        }
        self.intake
            .check(&order)
            .await
            .map_err(|refusal| RecordError::dead_letter(refusal).context(SAGA_START))?;
        let recorded = self
            .sagas
            .start(
                ORDER_SAGA,
                &order.order_id,
                command.payload,
                &command.correlation_id,
                self.clock.now(),
                command.trace_context,
            )
            .await?;
        self.recorded(&recorded);
        Ok(())
    }
}

/// The command type that starts an order's saga.
pub const SAGA_START: &str = "saga.start";
/// The command type that cancels an order's running saga.
pub const SAGA_CANCEL: &str = "saga.cancel";

/// The front-door command that places `order`, as `docs/events.md` documents it: `saga.start`
/// to the orchestrator for an orchestrated order, `order.create` to the order service for the
/// others. Its id derives from the order id, so placing the same order twice is one order.
pub fn place_command(
    order: &CreateOrder,
    causation_id: &str,
    issued_at: sagaflow_eventsourcing::Timestamp,
) -> Result<CommandEnvelope, serde_json::Error> {
    let command_type = match order.flow {
        Flow::Orchestrated => SAGA_START,
        Flow::Choreographed | Flow::InProcess => "order.create",
    };
    Ok(CommandEnvelope {
        command_id: sagaflow_eventsourcing::command::command_id_for(
            &order.order_id,
            command_type,
            "front-door",
        ),
        command_type: command_type.into(),
        target_id: order.order_id.clone(),
        payload: serde_json::to_value(order)?,
        correlation_id: order.order_id.clone(),
        causation_id: causation_id.to_string(),
        issued_at,
        trace_context: None,
    })
}

/// The command type by which a customer asks to cancel a running choreographed order.
pub const ORDER_REQUEST_CANCEL: &str = "order.request_cancel";

/// The customer's cancel of order `order_id` of `flow` for `reason`, as `docs/events.md`
/// documents it: `saga.cancel` to the orchestrator, or for a choreographed order
/// `order.request_cancel` to the order service. `attempt` tells one cancel from another (the
/// same attempt again is the same command).
pub fn cancel_command(
    order_id: &str,
    flow: Flow,
    reason: &str,
    attempt: u32,
    issued_at: sagaflow_eventsourcing::Timestamp,
) -> CommandEnvelope {
    let command_type = match flow {
        Flow::Choreographed => ORDER_REQUEST_CANCEL,
        Flow::Orchestrated | Flow::InProcess => SAGA_CANCEL,
    };
    CommandEnvelope {
        trace_context: None,
        command_id: sagaflow_eventsourcing::command::command_id_for(
            order_id,
            command_type,
            &attempt.to_string(),
        ),
        command_type: command_type.into(),
        target_id: order_id.into(),
        payload: serde_json::json!({ "reason": reason }),
        correlation_id: order_id.into(),
        causation_id: format!("customer-{order_id}"),
        issued_at,
    }
}

/// The orchestrator's name in its log lines and dead-letter reasons.
const ORCHESTRATOR: &str = "orchestrator";

impl<S: EventStore + 'static> RecordHandler for OrchestratorHandler<S> {
    fn name(&self) -> &str {
        ORCHESTRATOR
    }

    fn handle(&self, record: InboundRecord) -> BoxFuture<RecordOutcome> {
        let this = self.clone();
        Box::pin(async move { this.handle_record(&record).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::fixture_run::MemoryFunction;
    use sagaflow_lambda_kafka::RecordId;
    use sagaflow_orders::domain::{Address, Money, OrderLine};
    use sagaflow_records::command_record;

    fn start(order: &CreateOrder) -> InboundRecord {
        let command = CommandEnvelope {
            trace_context: None,
            command_id: format!("start-{}", order.order_id),
            command_type: SAGA_START.into(),
            target_id: order.order_id.clone(),
            payload: serde_json::to_value(order).unwrap(),
            correlation_id: order.order_id.clone(),
            causation_id: "web".into(),
            issued_at: sagaflow_eventsourcing::Timestamp(1),
        };
        let record = command_record(&Topics::default(), &command);
        InboundRecord {
            id: RecordId {
                topic: record.topic,
                partition: 0,
                offset: 1,
            },
            timestamp_ms: 1,
            key: Some(record.key.into_bytes()),
            value: Some(record.value),
            headers: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_order_that_intake_refuses_is_dead_lettered_with_the_stage_and_field_and_starts_nothing(
    ) {
        let f = MemoryFunction::orchestrator().unwrap();
        let mut order = CreateOrder {
            order_id: "ord-1".into(),
            customer_id: "cust-1".into(),
            lines: vec![OrderLine {
                sku: "LAMP".into(),
                quantity: 1,
                unit_price: Money::eur(7_900),
            }],
            payment_method: "card-ok".into(),
            shipping_address: Address {
                name: "Ada".into(),
                line1: "1 Loop Road".into(),
                city: "Paris".into(),
                country: "FR".into(),
            },
            flow: Flow::Orchestrated,
        };
        order.lines[0].quantity = 200;
        let outcome = f.handler.handle_record(&start(&order)).await;
        assert_eq!(
            outcome,
            RecordOutcome::DeadLetter(
                "saga.start: intake refused the order at stage `online_order_limit`: invalid field `lines`: total 15800.00 EUR is over the online order limit".into()
            )
        );
        assert_eq!(f.store.event_count(), 0, "no saga was started");
        order.lines[0].quantity = 1;
        assert_eq!(
            f.handler.handle_record(&start(&order)).await,
            RecordOutcome::Done
        );
        assert_eq!(f.store.event_count(), 2, "started, first step requested");
    }
}
