//! A service function (order, payment, inventory, shipment): executes the commands on its
//! topic, and reacts to the other services' events with the choreography policies, executing
//! the reactions that are its own. Every effect is recorded once under its command id.

use std::sync::Arc;

use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_orders::flow::FlowEnvelope;

use crate::inbound::{parse_record, Inbound, Subscriptions};
use crate::intake::{HandlerSetupError, Intake};
use crate::record_error::RecordError;
use crate::trace::RecordTrace;
use sagaflow_eventsourcing::EventStore;
use sagaflow_lambda_kafka::{BoxFuture, InboundRecord, RecordHandler, RecordOutcome};
use sagaflow_orders::domain::CreateOrder;
use sagaflow_orders::flow::choreography::{needs_order, react, PolicyError};
use sagaflow_orders::flow::services::{FlowServices, HandledCommand};
use sagaflow_records::{topology, Topics};
use tracing::Instrument;

use crate::clock::{Clock, WallClock};
use crate::metrics::{self, MetricsSink, NoMetrics};

/// The command that places a choreographed order (and creates an orchestrated one's order).
const ORDER_CREATE: &str = "order.create";

/// The services whose functions exist, by the aggregate type they own (each is also its
/// function's name in [`topology`]).
pub const SERVICE_NAMES: [&str; 4] = ["order", "payment", "inventory", "shipment"];

/// What one service's function does with each record.
pub struct ServiceHandler<S> {
    service: String,
    subscriptions: Arc<Subscriptions>,
    services: FlowServices<S>,
    intake: Intake,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn MetricsSink>,
}

impl<S> Clone for ServiceHandler<S> {
    fn clone(&self) -> Self {
        Self {
            service: self.service.clone(),
            subscriptions: self.subscriptions.clone(),
            services: self.services.clone(),
            intake: self.intake.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The step latencies of the commands one call executed: (command type, milliseconds).
type Latencies = Vec<(String, f64)>;

/// A service name that is not one of [`SERVICE_NAMES`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown service `{0}`; the services are order, payment, inventory and shipment")]
pub struct UnknownService(pub String);

impl<S: EventStore + 'static> ServiceHandler<S> {
    /// The handler of `service` (one of [`SERVICE_NAMES`]) over `store`; the order service
    /// takes new orders through intake over the default catalogue.
    pub fn new(service: &str, store: Arc<S>, topics: Topics) -> Result<Self, HandlerSetupError> {
        let function = topology::function(service)
            .filter(|_| SERVICE_NAMES.contains(&service))
            .ok_or_else(|| UnknownService(service.to_string()))?;
        Ok(Self {
            service: service.to_string(),
            subscriptions: Arc::new(Subscriptions::new(
                format!("the {service} service"),
                function,
                &topics,
            )),
            services: FlowServices::new(store, 50),
            intake: Intake::with_default_catalog()?,
            clock: Arc::new(WallClock),
            metrics: Arc::new(NoMetrics),
        })
    }

    /// The same handler writing its step latencies to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn MetricsSink>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same handler reading time from `clock` (the simulated clock of `make run`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The same handler taking new orders through `intake` (another catalogue).
    pub fn with_intake(mut self, intake: Intake) -> Self {
        self.intake = intake;
        self
    }

    /// The topics this function reads, as the topology has them: its commands and the events
    /// it may react to.
    pub fn subscriptions(&self) -> Vec<String> {
        self.subscriptions.names()
    }

    /// Handles one record: a command of this service, or another service's event.
    pub async fn handle_record(&self, record: &InboundRecord) -> RecordOutcome {
        let mut prepared = self.prepare(record).await;
        let trace = RecordTrace::begin(&self.service, record, &mut prepared);
        let mut latencies = Latencies::new();
        let result = match prepared {
            Ok(Inbound::Command(command)) => {
                self.execute(&command, &mut latencies)
                    .instrument(trace.span().clone())
                    .await
            }
            Ok(Inbound::Event(event)) => {
                self.react_to(&event, &mut latencies)
                    .instrument(trace.span().clone())
                    .await
            }
            Err(error) => Err(error),
        };
        self.measure(&latencies);
        trace.settle(&self.service, record, result)
    }

    /// Handles one key group's records in order, stopping at the first to retry. Consecutive
    /// commands to the same aggregate are executed together: one load and one append for all.
    pub async fn handle_records(&self, records: &[InboundRecord]) -> Vec<RecordOutcome> {
        let mut latencies = Latencies::new();
        let outcomes = self.run_records(records, &mut latencies).await;
        self.measure(&latencies);
        outcomes
    }

    /// Writes the step latency lines of what was executed.
    fn measure(&self, latencies: &Latencies) {
        let now = self.clock.now().as_millis();
        for line in metrics::step_latency_lines(&self.service, latencies, now) {
            self.metrics.emit(line);
        }
    }

    /// Notes how long `command` took from being issued to its effect being recorded; a
    /// command already applied (a redelivery) says nothing about latency.
    fn note(&self, latencies: &mut Latencies, command: &CommandEnvelope, handled: &HandledCommand) {
        if !handled.duplicate {
            let ms = self.clock.now().millis_since(command.issued_at).max(0);
            latencies.push((command.command_type.clone(), ms as f64));
        }
    }

    async fn run_records(
        &self,
        records: &[InboundRecord],
        latencies: &mut Latencies,
    ) -> Vec<RecordOutcome> {
        let mut prepared: Vec<Option<Result<Inbound, RecordError>>> =
            Vec::with_capacity(records.len());
        let mut traces = Vec::with_capacity(records.len());
        for record in records {
            let mut read = self.prepare(record).await;
            traces.push(RecordTrace::begin(&self.service, record, &mut read));
            prepared.push(Some(read));
        }
        let settle = |i: usize, result| traces[i].settle(&self.service, &records[i], result);
        let mut outcomes = Vec::with_capacity(records.len());
        let mut i = 0;
        while i < records.len() {
            let mut run_end = i + 1;
            if let Some(first) = command_target(&prepared[i]) {
                while prepared
                    .get(run_end)
                    .and_then(command_target)
                    .is_some_and(|next| next == first)
                {
                    run_end += 1;
                }
            }
            let step = match prepared[i].take() {
                Some(Ok(Inbound::Command(first))) => {
                    let mut run = vec![first];
                    run.extend(prepared[i + 1..run_end].iter_mut().filter_map(
                        |p| match p.take() {
                            Some(Ok(Inbound::Command(command))) => Some(command),
                            _ => None,
                        },
                    ));
                    let handled = self.services.handle_all(&run, self.clock.now()).await;
                    for (command, result) in run.iter().zip(&handled) {
                        if let Ok(handled) = result {
                            self.note(latencies, command, handled);
                        }
                    }
                    handled
                        .into_iter()
                        .enumerate()
                        .map(|(k, handled)| {
                            settle(i + k, handled.map(drop).map_err(RecordError::from))
                        })
                        .collect()
                }
                Some(Ok(Inbound::Event(event))) => {
                    let reacted = self
                        .react_to(&event, latencies)
                        .instrument(traces[i].span().clone())
                        .await;
                    vec![settle(i, reacted)]
                }
                Some(Err(error)) => vec![settle(i, Err(error))],
                None => vec![],
            };
            for outcome in step {
                let retry = matches!(outcome, RecordOutcome::Retry(_));
                outcomes.push(outcome);
                if retry {
                    return outcomes;
                }
            }
            i = run_end;
        }
        outcomes
    }

    /// The record read once, a command also checked as this service takes it: its own, and a
    /// new order through intake.
    async fn prepare(&self, record: &InboundRecord) -> Result<Inbound, RecordError> {
        match parse_record(record, &self.subscriptions)? {
            Inbound::Command(command) => Ok(Inbound::Command(self.accept(command).await?)),
            event => Ok(event),
        }
    }

    async fn accept(&self, command: CommandEnvelope) -> Result<CommandEnvelope, RecordError> {
        if command.aggregate_type() != self.service {
            return Err(RecordError::dead_letter(format!(
                "command `{}` does not belong to the {} service",
                command.command_type, self.service
            )));
        }
        self.through_intake(command).await
    }

    /// A new order goes through intake before the order service takes it; an `order.create`
    /// whose payload is not an order is left to the service, which says why.
    async fn through_intake(
        &self,
        command: CommandEnvelope,
    ) -> Result<CommandEnvelope, RecordError> {
        if command.command_type != ORDER_CREATE {
            return Ok(command);
        }
        let Ok(order) = serde_json::from_value::<CreateOrder>(command.payload.clone()) else {
            return Ok(command);
        };
        match self.intake.check(&order).await {
            Ok(_) => Ok(command),
            Err(refusal) => Err(RecordError::dead_letter(refusal).context(ORDER_CREATE)),
        }
    }

    async fn react_to(
        &self,
        event: &FlowEnvelope,
        latencies: &mut Latencies,
    ) -> Result<(), RecordError> {
        let order = if needs_order(&event.event_type) {
            // Reactions read only the order's details, fixed when it was created, so the
            // state this function saw last serves as well as a fresh read.
            let loaded = self
                .services
                .orders()
                .load_recent(&event.correlation_id)
                .await?;
            (loaded.version > 0).then_some(loaded.state)
        } else {
            None
        };
        match react(event, order.as_ref()) {
            Ok(commands) => {
                // Every service sees the same event and derives the same commands with the
                // same ids; each executes only its own, so each reaction happens once.
                for command in commands
                    .iter()
                    .filter(|c| c.aggregate_type() == self.service)
                {
                    self.execute(command, latencies).await?;
                }
                Ok(())
            }
            // An event with no order behind it (restocking, say) has nothing to choreograph.
            Err(PolicyError::MissingOrder(_)) => Ok(()),
        }
    }

    async fn execute(
        &self,
        command: &CommandEnvelope,
        latencies: &mut Latencies,
    ) -> Result<(), RecordError> {
        let handled = self.services.handle(command, self.clock.now()).await?;
        self.note(latencies, command, &handled);
        Ok(())
    }

    /// The services underneath, for reads.
    pub fn services(&self) -> &FlowServices<S> {
        &self.services
    }
}

/// The aggregate a prepared command is for: consecutive commands to it run as one batch.
fn command_target(prepared: &Option<Result<Inbound, RecordError>>) -> Option<(&str, &str)> {
    match prepared {
        Some(Ok(Inbound::Command(command))) => {
            Some((command.aggregate_type(), command.target_id.as_str()))
        }
        _ => None,
    }
}

impl<S: EventStore + 'static> RecordHandler for ServiceHandler<S> {
    fn name(&self) -> &str {
        &self.service
    }

    fn handle(&self, record: InboundRecord) -> BoxFuture<RecordOutcome> {
        let this = self.clone();
        Box::pin(async move { this.handle_record(&record).await })
    }

    fn handle_group(&self, records: Vec<InboundRecord>) -> BoxFuture<Vec<RecordOutcome>> {
        let this = self.clone();
        Box::pin(async move { this.handle_records(&records).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_eventsourcing::testkit::CountingStore;
    use sagaflow_eventsourcing::InMemoryEventStore;
    use sagaflow_eventsourcing::Timestamp;
    use sagaflow_lambda_kafka::RecordId;
    use sagaflow_records::records::command_record;
    use serde_json::json;

    fn reserve(order: &str, quantity: u32) -> CommandEnvelope {
        CommandEnvelope {
            trace_context: None,
            command_id: format!("reserve-{order}"),
            command_type: "inventory.reserve".into(),
            target_id: order.into(),
            payload: json!({ "order_id": order, "lines": [{ "sku": "MUG", "quantity": quantity }] }),
            correlation_id: order.into(),
            causation_id: format!("cause-{order}"),
            issued_at: Timestamp(5),
        }
    }

    fn inbound(offset: i64, command: &CommandEnvelope) -> InboundRecord {
        let record = command_record(&Topics::default(), command);
        InboundRecord {
            id: RecordId {
                topic: record.topic,
                partition: 0,
                offset,
            },
            timestamp_ms: 5,
            key: Some(record.key.into_bytes()),
            value: Some(record.value),
            headers: record.headers,
        }
    }

    #[tokio::test]
    async fn each_reservation_of_a_group_is_one_append_on_its_order_and_its_skus() {
        let store = Arc::new(CountingStore::new(InMemoryEventStore::new()));
        let handler = ServiceHandler::new("inventory", store.clone(), Topics::default()).unwrap();
        handler
            .services()
            .restock("MUG", 4, Timestamp(1))
            .await
            .unwrap();
        let mut bad = inbound(3, &reserve("ord-3", 1));
        bad.headers.push((
            sagaflow_records::records::COMMAND_TYPE_HEADER.to_string(),
            b"inventory.release".to_vec(),
        ));
        let group = vec![
            inbound(1, &reserve("ord-1", 2)),
            inbound(2, &reserve("ord-2", 0)),
            bad,
            inbound(4, &reserve("ord-4", 2)),
            inbound(5, &reserve("ord-5", 1)),
        ];
        let (reads, appends) = (store.reads(), store.appends());
        let outcomes = handler.handle_records(&group).await;
        assert!(matches!(outcomes[0], RecordOutcome::Done));
        assert!(
            matches!(&outcomes[1], RecordOutcome::DeadLetter(r) if r.contains("quantity")),
            "{:?}",
            outcomes[1]
        );
        assert!(
            matches!(&outcomes[2], RecordOutcome::DeadLetter(r) if r.contains("command_type")),
            "{:?}",
            outcomes[2]
        );
        assert!(matches!(outcomes[3], RecordOutcome::Done));
        assert!(
            matches!(outcomes[4], RecordOutcome::Done),
            "ord-5 fails for stock, a reply"
        );
        // One append per reservation (ord-1, ord-4, and ord-5's failure), each on its order's
        // stream and MUG's stock together. MUG's stock comes from the function's cache; each
        // new order's reservation is one read, and the refused ord-2 costs a fresh load of
        // both streams it is decided again on and its key lookup.
        assert_eq!(store.appends() - appends, 3);
        assert_eq!(store.reads() - reads, 4 + 2 + 1);
        let mug = || async { handler.services().stock().load("MUG").await.unwrap().state };
        let stock = mug().await;
        assert_eq!((stock.level.available, stock.level.reserved), (0, 4));
        let failed = handler.services().inventory().load("ord-5").await.unwrap();
        assert_eq!(failed.version, 1);

        // Redelivered, the group appends nothing new.
        let again = handler.handle_records(&group).await;
        assert_eq!(again, outcomes);
        assert_eq!(mug().await, stock);
        let reloaded = handler.services().inventory().load("ord-5").await.unwrap();
        assert_eq!(reloaded.version, 1);
    }

    #[tokio::test]
    async fn each_command_executed_is_measured_once_from_issue_to_effect_and_a_redelivery_is_not() {
        let store = Arc::new(InMemoryEventStore::new());
        let clock = sagaflow_eventsourcing::clock::SimClock::starting_at(Timestamp(905));
        let metrics = crate::metrics::RecordedMetrics::default();
        let handler = ServiceHandler::new("inventory", store, Topics::default())
            .unwrap()
            .with_clock(Arc::new(clock))
            .with_metrics(Arc::new(metrics.clone()));
        handler
            .services()
            .restock("MUG", 4, Timestamp(1))
            .await
            .unwrap();
        let group = vec![
            inbound(1, &reserve("ord-1", 1)),
            inbound(2, &reserve("ord-2", 1)),
        ];
        handler.handle_records(&group).await;
        handler.handle_records(&group).await;
        assert_eq!(
            handler
                .handle_record(&inbound(3, &reserve("ord-3", 1)))
                .await,
            RecordOutcome::Done
        );
        let values: Vec<Vec<f64>> = metrics
            .lines()
            .iter()
            .inspect(|l| crate::testkit::emf::check_emf_line(l).unwrap())
            .map(|l| {
                assert_eq!(l["command"], "inventory.reserve");
                serde_json::from_value(l["StepLatency"].clone()).unwrap()
            })
            .collect();
        assert_eq!(
            values,
            [vec![900.0, 900.0], vec![900.0]],
            "the redelivered group says nothing"
        );
    }

    #[test]
    fn only_the_four_services_have_handlers() {
        let store = Arc::new(InMemoryEventStore::new());
        assert!(ServiceHandler::new("shipment", store.clone(), Topics::default()).is_ok());
        assert!(matches!(
            ServiceHandler::new("shipping", store, Topics::default()),
            Err(HandlerSetupError::Service(UnknownService(name))) if name == "shipping"
        ));
    }
}
