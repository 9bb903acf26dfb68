//! The whole order flow in one process: the in-memory event store, an outbox relay, the
//! in-process bus, and the same consumers the Lambda functions run (services, saga orchestrator,
//! choreography, analytics), driven by one loop and a simulated clock.
//!
//! Every consumer sees at-least-once delivery (the bus drops a seeded share of commits), so the
//! run shows idempotency rather than assuming it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::bus::{BusMessage, Delivery, InMemoryBus};
use crate::command::{command_id_for, CommandEnvelope};
use crate::domain::inventory::DEFAULT_WAREHOUSE;
use crate::domain::order::order_upcasters;
use crate::domain::{Flow, Inventory, StockLevel};
use crate::event::{StoredEvent, Timestamp};
use crate::flow::choreography;
use crate::flow::clock::SimClock;
use crate::flow::intake::{intake_pipeline, run_intake, Catalog, IntakeOrder, PlaceOrder};
use crate::flow::sagas::{
    commands_from_saga_event, deadline_change, order_saga, DeadlineChange, SagaRunner,
    ServicesDispatcher, SimSleeper, ORDER_SAGA,
};
use crate::flow::services::FlowServices;
use crate::mediator::{Command, HandlerError, Mediator, MediatorError, Query};
use crate::pipeline::{Pipeline, StageStatus};
use crate::projection::{AnalyticsProjection, AnalyticsSummary, GetAnalyticsSummary};
use crate::repository::RepositoryError;
use crate::saga::{SagaDefinition, SagaDefinitionError, SagaExecutor, SagaOutcome};
use crate::store::InMemoryEventStore;
use crate::upcast::Upcasters;

/// The topic of every committed event.
pub const EVENTS_TOPIC: &str = "sagaflow.events";
/// The topic of every command for a service.
pub const COMMANDS_TOPIC: &str = "sagaflow.commands";

/// The consumer groups, in the order the loop serves them.
const GROUPS: [&str; 4] = ["services", "orchestrator", "choreography", "analytics"];

/// A payment method whose provider answers only after [`SLOW_PROVIDER_DELAY_MS`]: longer than
/// the saga's payment deadline, so an orchestrated order with it times out and compensates.
pub const SLOW_METHOD: &str = "card-slow";
/// How long the slow provider holds a charge.
pub const SLOW_PROVIDER_DELAY_MS: i64 = 90_000;

/// Why the in-process system could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// A handler could not be registered.
    #[error(transparent)]
    Mediator(#[from] MediatorError),
    /// The intake pipeline could not be built.
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    /// A saga definition is invalid.
    #[error(transparent)]
    Saga(#[from] SagaDefinitionError),
}

/// How the in-process system is set up.
#[derive(Clone, Debug)]
pub struct SystemConfig {
    /// Partitions per topic.
    pub partitions: usize,
    /// Share of commits the bus drops (redelivery), in percent.
    pub lost_commit_percent: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Snapshot the warehouse every this many events.
    pub snapshot_every: u64,
    /// Deliveries of one message before a failing one is dead-lettered.
    pub max_deliveries: u32,
    /// The clock's start.
    pub start: Timestamp,
    /// Simulated milliseconds each handled message takes.
    pub millis_per_message: i64,
}

impl Default for SystemConfig {
    fn default() -> Self {
        Self {
            partitions: 4,
            lost_commit_percent: 10,
            seed: 42,
            snapshot_every: 50,
            max_deliveries: 5,
            start: Timestamp(1_764_547_200_000),
            millis_per_message: 7,
        }
    }
}

/// A message that could not be handled, with the reason, kept instead of dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The consumer group that gave up.
    pub group: String,
    /// Why.
    pub reason: String,
    /// The message.
    pub message: BusMessage,
}

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Messages handled by any consumer.
    pub handled: u64,
    /// Deliveries whose effect had already been recorded (idempotency at work).
    pub duplicates: u64,
    /// Saga deadlines that fired.
    pub deadlines_fired: u64,
}

/// What placing an order did at the front door.
#[derive(Clone, Debug, PartialEq)]
pub enum Placement {
    /// Intake accepted the order and its flow started.
    Accepted {
        /// The intake stages that ran and those skipped.
        intake: Vec<(String, String)>,
        /// For the in-process flow, the finished saga.
        in_process: Option<Box<SagaOutcome>>,
    },
    /// Intake refused it; nothing was written.
    Rejected {
        /// The stage that refused.
        stage: String,
        /// Why.
        reason: String,
    },
}

/// The front door's command: place an order (intake, then its flow).
#[derive(Clone, Debug)]
pub struct PlaceOrderCommand(pub PlaceOrder);

impl Command for PlaceOrderCommand {
    type Output = Result<Placement, String>;
}

/// A query for the warehouse's stock levels.
#[derive(Clone, Copy, Debug, Default)]
pub struct GetStockLevels;

impl Query for GetStockLevels {
    type Output = Result<BTreeMap<String, StockLevel>, String>;
}

struct Shared {
    bus: Mutex<InMemoryBus>,
    dead_letters: Mutex<Vec<DeadLetter>>,
    analytics: Mutex<AnalyticsProjection>,
    deadlines: Mutex<BTreeMap<String, Timestamp>>,
    parked: Mutex<Vec<(Timestamp, CommandEnvelope)>>,
    stats: Mutex<RunStats>,
    relayed: Mutex<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few field updates that cannot leave the data half
    // written, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The order flow running in this process.
pub struct InProcessSystem {
    config: SystemConfig,
    store: Arc<InMemoryEventStore>,
    services: FlowServices<InMemoryEventStore>,
    sagas: SagaRunner<InMemoryEventStore>,
    upcasters: Arc<Upcasters>,
    clock: SimClock,
    shared: Arc<Shared>,
    mediator: Arc<Mediator>,
}

impl InProcessSystem {
    /// A system with an empty store and an empty bus.
    pub fn new(config: SystemConfig) -> Result<Self, SystemError> {
        let store = Arc::new(InMemoryEventStore::new());
        let services = FlowServices::new(store.clone(), config.snapshot_every);
        let order_definition = order_saga()?;
        let sagas = SagaRunner::new(store.clone(), vec![order_definition.clone()]);
        let upcasters = Arc::new(order_upcasters());
        let clock = SimClock::starting_at(config.start);
        let mut bus = InMemoryBus::new(config.partitions, config.lost_commit_percent, config.seed);
        bus.subscribe("services", &[COMMANDS_TOPIC]);
        for group in ["orchestrator", "choreography", "analytics"] {
            bus.subscribe(group, &[EVENTS_TOPIC]);
        }
        let shared = Arc::new(Shared {
            bus: Mutex::new(bus),
            dead_letters: Mutex::new(Vec::new()),
            analytics: Mutex::new(AnalyticsProjection::new()),
            deadlines: Mutex::new(BTreeMap::new()),
            parked: Mutex::new(Vec::new()),
            stats: Mutex::new(RunStats::default()),
            relayed: Mutex::new(0),
        });
        let mediator = Arc::new(build_mediator(
            &services,
            &sagas,
            &order_definition,
            &shared,
            &upcasters,
            &clock,
        )?);
        Ok(Self {
            config,
            store,
            services,
            sagas,
            upcasters,
            clock,
            shared,
            mediator,
        })
    }

    /// The mediator: `send(PlaceOrderCommand)`, `query(GetAnalyticsSummary)`, `query(GetStockLevels)`.
    pub fn mediator(&self) -> &Mediator {
        &self.mediator
    }

    /// The event store.
    pub fn store(&self) -> &Arc<InMemoryEventStore> {
        &self.store
    }

    /// The services.
    pub fn services(&self) -> &FlowServices<InMemoryEventStore> {
        &self.services
    }

    /// The saga orchestrator.
    pub fn sagas(&self) -> &SagaRunner<InMemoryEventStore> {
        &self.sagas
    }

    /// The simulated clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// The upcasters every reader uses.
    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    /// Puts `quantity` units of `sku` into the warehouse.
    pub async fn restock(&self, sku: &str, quantity: u32) -> Result<(), String> {
        self.services
            .restock(sku, quantity, self.clock.now())
            .await
            .map_err(|e| e.to_string())
    }

    /// Places an order through the mediator's front door.
    pub async fn place_order(&self, request: PlaceOrder) -> Result<Placement, String> {
        self.mediator
            .send(PlaceOrderCommand(request))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Delivers messages until every group is idle and no saga deadline or parked command is
    /// left; returns the run's counters.
    pub async fn run_until_idle(&self) -> RunStats {
        loop {
            self.relay();
            let mut progressed = false;
            for group in GROUPS {
                let delivery = lock(&self.shared.bus).poll(group);
                if let Some(delivery) = delivery {
                    self.clock.advance(self.config.millis_per_message);
                    self.deliver(group, delivery).await;
                    progressed = true;
                }
            }
            if !progressed && !self.advance_time().await {
                break;
            }
        }
        *lock(&self.shared.stats)
    }

    /// Dead-lettered messages with their reasons.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.shared.dead_letters).clone()
    }

    /// The live analytics read model.
    pub fn analytics(&self) -> AnalyticsProjection {
        lock(&self.shared.analytics).clone()
    }

    /// The bus's counters.
    pub fn bus_stats(&self) -> crate::bus::BusStats {
        lock(&self.shared.bus).stats()
    }

    /// The outbox relay: every newly committed event goes to the events topic, and the commands
    /// recorded in saga events go to the commands topic; deadlines are noted for the timer.
    fn relay(&self) {
        let events = self.store.all_events();
        let mut relayed = lock(&self.shared.relayed);
        let mut bus = lock(&self.shared.bus);
        for event in events.iter().skip(*relayed) {
            if event.aggregate_type == "saga" {
                match commands_from_saga_event(event, &self.upcasters) {
                    Ok(commands) => {
                        for command in commands {
                            bus.publish(COMMANDS_TOPIC, BusMessage::Command(command));
                        }
                    }
                    Err(e) => lock(&self.shared.dead_letters).push(DeadLetter {
                        group: "relay".into(),
                        reason: e.to_string(),
                        message: BusMessage::Event(event.clone()),
                    }),
                }
                let mut deadlines = lock(&self.shared.deadlines);
                match deadline_change(event) {
                    DeadlineChange::Set(at) => {
                        deadlines.insert(event.aggregate_id.clone(), at);
                    }
                    DeadlineChange::Clear => {
                        deadlines.remove(&event.aggregate_id);
                    }
                    DeadlineChange::Keep => {}
                }
            }
            bus.publish(EVENTS_TOPIC, BusMessage::Event(event.clone()));
        }
        *relayed = events.len();
    }

    /// When the bus is idle: moves the clock to the next parked command or saga deadline and
    /// acts on it. Returns false when there is nothing left to wait for.
    async fn advance_time(&self) -> bool {
        let next_parked = lock(&self.shared.parked).iter().map(|(at, _)| *at).min();
        let next_deadline = lock(&self.shared.deadlines).values().copied().min();
        let Some(next) = [next_parked, next_deadline].into_iter().flatten().min() else {
            return false;
        };
        self.clock.advance_to(next);
        let now = self.clock.now();
        let due: Vec<CommandEnvelope> = {
            let mut parked = lock(&self.shared.parked);
            let (due, later): (Vec<_>, Vec<_>) = parked.drain(..).partition(|(at, _)| *at <= now);
            *parked = later;
            due.into_iter().map(|(_, c)| c).collect()
        };
        for command in due {
            self.handle_command(command, now, true).await;
        }
        let expired: Vec<String> = lock(&self.shared.deadlines)
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for saga_id in expired {
            lock(&self.shared.stats).deadlines_fired += 1;
            match self.sagas.tick(&saga_id, now).await {
                // A tick that changes nothing means the saga no longer waits on that deadline.
                Ok(events) if events.is_empty() => {
                    lock(&self.shared.deadlines).remove(&saga_id);
                }
                Ok(_) => {}
                Err(e) => {
                    lock(&self.shared.deadlines).remove(&saga_id);
                    lock(&self.shared.dead_letters).push(DeadLetter {
                        group: "orchestrator-timer".into(),
                        reason: format!("tick of saga {saga_id} failed: {e}"),
                        message: BusMessage::Command(CommandEnvelope {
                            command_id: command_id_for(&saga_id, "saga.tick", &now.to_string()),
                            command_type: "saga.tick".into(),
                            target_id: saga_id.clone(),
                            payload: Value::Null,
                            correlation_id: saga_id.clone(),
                            causation_id: saga_id,
                            issued_at: now,
                        }),
                    });
                }
            }
        }
        true
    }

    async fn deliver(&self, group: &str, delivery: Delivery) {
        let now = self.clock.now();
        let outcome: Result<bool, Failure> = match (&delivery.message, group) {
            (BusMessage::Command(command), "services") => {
                Ok(self.handle_command(command.clone(), now, false).await)
            }
            (BusMessage::Event(event), "orchestrator") => {
                if event.aggregate_type == "saga" {
                    Ok(false)
                } else {
                    self.sagas
                        .on_event(event, now)
                        .await
                        .map(|events| events.is_empty())
                        .map_err(|e| Failure::new(e.is_permanent(), e.to_string()))
                }
            }
            (BusMessage::Event(event), "choreography") => self.react(event, now).await,
            (BusMessage::Event(event), "analytics") => self
                .mediator
                .publish(event.clone())
                .await
                .map(|_| false)
                .map_err(|e| Failure::new(true, e.to_string())),
            (message, group) => Err(Failure::new(
                true,
                format!("group {group} does not take {message:?}"),
            )),
        };
        let mut stats = lock(&self.shared.stats);
        stats.handled += 1;
        match outcome {
            Ok(duplicate) => {
                if duplicate && delivery.delivery_count > 1 {
                    stats.duplicates += 1;
                }
                drop(stats);
                lock(&self.shared.bus).commit(group, &delivery);
            }
            Err(failure)
                if failure.permanent || delivery.delivery_count >= self.config.max_deliveries =>
            {
                drop(stats);
                lock(&self.shared.dead_letters).push(DeadLetter {
                    group: group.to_string(),
                    reason: failure.reason,
                    message: delivery.message.clone(),
                });
                // The message is kept on the dead-letter path, so committing past it loses
                // nothing and unblocks the partition.
                while !lock(&self.shared.bus).commit(group, &delivery) {}
            }
            // Not committed: the bus hands the same message out again.
            Err(_) => {}
        }
    }

    /// Runs one command through the services; returns whether it was a duplicate.
    async fn handle_command(
        &self,
        command: CommandEnvelope,
        now: Timestamp,
        released: bool,
    ) -> bool {
        if !released && is_slow_charge(&command) {
            lock(&self.shared.parked).push((now.plus_millis(SLOW_PROVIDER_DELAY_MS), command));
            return false;
        }
        match self.services.handle(&command, now).await {
            Ok(handled) => handled.duplicate,
            Err(e) => {
                lock(&self.shared.dead_letters).push(DeadLetter {
                    group: "services".into(),
                    reason: e.to_string(),
                    message: BusMessage::Command(command),
                });
                false
            }
        }
    }

    async fn react(&self, event: &StoredEvent, _now: Timestamp) -> Result<bool, Failure> {
        let order = if choreography::needs_order(&event.event_type) {
            match self.services.orders().load(&event.correlation_id).await {
                Ok(loaded) => Some(loaded.state),
                Err(RepositoryError::Decode { source, .. }) => {
                    return Err(Failure::new(true, source.to_string()))
                }
                Err(e) => return Err(Failure::new(!e.is_transient(), e.to_string())),
            }
        } else {
            None
        };
        let commands = match choreography::react(event, order.as_ref(), &self.upcasters) {
            Ok(commands) => commands,
            // Events of restocking and of sagas have no order to look up: nothing to react to.
            Err(choreography::PolicyError::MissingOrder(_))
                if event.correlation_id == "restock" =>
            {
                return Ok(false)
            }
            Err(e) => return Err(Failure::new(true, e.to_string())),
        };
        let mut bus = lock(&self.shared.bus);
        for command in commands {
            bus.publish(COMMANDS_TOPIC, BusMessage::Command(command));
        }
        Ok(false)
    }
}

fn is_slow_charge(command: &CommandEnvelope) -> bool {
    command.command_type == "payment.charge"
        && command.payload.get("method").and_then(Value::as_str) == Some(SLOW_METHOD)
}

struct Failure {
    permanent: bool,
    reason: String,
}

impl Failure {
    fn new(permanent: bool, reason: String) -> Self {
        Self { permanent, reason }
    }
}

fn build_mediator(
    services: &FlowServices<InMemoryEventStore>,
    sagas: &SagaRunner<InMemoryEventStore>,
    order_definition: &SagaDefinition,
    shared: &Arc<Shared>,
    upcasters: &Arc<Upcasters>,
    clock: &SimClock,
) -> Result<Mediator, SystemError> {
    let mut mediator = Mediator::new();
    let intake: Arc<Pipeline<IntakeOrder>> = Arc::new(intake_pipeline(Arc::new(Catalog::demo()))?);
    {
        let services = services.clone();
        let sagas = sagas.clone();
        let clock = clock.clone();
        let definition = order_definition.clone();
        mediator.register_command_handler(move |PlaceOrderCommand(request)| {
            let services = services.clone();
            let sagas = sagas.clone();
            let clock = clock.clone();
            let intake = intake.clone();
            let definition = definition.clone();
            async move { place(&intake, &services, &sagas, &definition, &clock, request).await }
        })?;
    }
    {
        let shared = shared.clone();
        mediator.register_query_handler(move |GetAnalyticsSummary| {
            let summary: AnalyticsSummary = lock(&shared.analytics).summary().clone();
            async move { Ok(summary) }
        })?;
    }
    {
        let services = services.clone();
        mediator.register_query_handler(move |GetStockLevels| {
            let services = services.clone();
            async move {
                services
                    .inventory()
                    .load(DEFAULT_WAREHOUSE)
                    .await
                    .map(|loaded: crate::repository::Loaded<Inventory>| loaded.state.stock)
                    .map_err(|e| e.to_string())
            }
        })?;
    }
    {
        let shared = shared.clone();
        let upcasters = upcasters.clone();
        mediator.register_event_handler("analytics", move |event: StoredEvent| {
            let result = lock(&shared.analytics)
                .apply(&event, &upcasters)
                .map(|_| ())
                .map_err(|e| HandlerError::new(e.to_string()));
            async move { result }
        })?;
    }
    Ok(mediator)
}

async fn place(
    intake: &Pipeline<IntakeOrder>,
    services: &FlowServices<InMemoryEventStore>,
    sagas: &SagaRunner<InMemoryEventStore>,
    order_definition: &SagaDefinition,
    clock: &SimClock,
    request: PlaceOrder,
) -> Result<Placement, String> {
    let run = run_intake(intake, request).await;
    let trace = run
        .trace
        .iter()
        .map(|t| {
            let status = match &t.status {
                StageStatus::Ran => "ran",
                StageStatus::Skipped => "skipped",
                StageStatus::Failed { .. } => "failed",
                StageStatus::NotReached => "not reached",
            };
            (t.stage.clone(), status.to_string())
        })
        .collect();
    let order = match run.output {
        Ok(order) => order,
        Err(failure) => {
            return Ok(Placement::Rejected {
                stage: failure.stage,
                reason: failure.error.to_string(),
            })
        }
    };
    let Some(create) = order.priced else {
        return Err("intake finished without pricing the order".into());
    };
    let now = clock.now();
    let order_id = create.order_id.clone();
    let input = serde_json::to_value(&create).map_err(|e| e.to_string())?;
    let mut in_process = None;
    match create.flow {
        Flow::Orchestrated => {
            sagas
                .start(ORDER_SAGA, &order_id, input, &order_id, now)
                .await
                .map_err(|e| e.to_string())?;
        }
        Flow::Choreographed => {
            let command = CommandEnvelope {
                command_id: command_id_for(&order_id, "order.create", "front-door"),
                command_type: "order.create".into(),
                target_id: order_id.clone(),
                payload: input,
                correlation_id: order_id.clone(),
                causation_id: format!("request-{order_id}"),
                issued_at: now,
            };
            services
                .handle(&command, now)
                .await
                .map_err(|e| e.to_string())?;
        }
        Flow::InProcess => {
            let dispatcher = Arc::new(ServicesDispatcher::new(services.clone(), clock.clone()));
            let executor = SagaExecutor::new(dispatcher, Arc::new(SimSleeper::new(clock.clone())));
            in_process = Some(Box::new(
                executor
                    .execute(order_definition, &order_id, input, &order_id)
                    .await,
            ));
        }
    }
    Ok(Placement::Accepted {
        intake: trace,
        in_process,
    })
}
