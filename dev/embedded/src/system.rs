//! The whole order flow in one process, run by the deployed handlers: every function's
//! `KafkaFunction` (services, orchestrator, analytics) fed batches by the in-process broker,
//! the relay fed by the in-memory store's change feed, and the deadline timer, all on a
//! simulated clock. This file decides nothing about orders: it is the loop that moves records
//! between the handlers, as Lambda, the Kafka triggers and DynamoDB Streams do on AWS.

use std::sync::{Arc, Mutex, MutexGuard};

use sagaflow_eventsourcing::clock::SimClock;
use sagaflow_eventsourcing::mediator::{Mediator, MediatorError};
use sagaflow_eventsourcing::InMemoryEventStore;
use sagaflow_eventsourcing::StoreError;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_handlers::dead_letter::{DeadLetterTopic, REASON_HEADER};
use sagaflow_handlers::relay::{relay_changes, Change};
use sagaflow_handlers::{
    AnalyticsHandler, DeadlineTimer, HandlerSetupError, KafkaFunction, OrchestratorHandler,
    ServiceHandler, SERVICE_NAMES,
};
use sagaflow_lambda_kafka::{BatchConfig, DeadLetterSink, RecordHandler};
use sagaflow_orders::flow::sagas::{SagaRunner, StepTiming};
use sagaflow_orders::flow::services::FlowServices;
use sagaflow_orders::projection::{AnalyticsProjection, InMemoryAnalyticsStore};
use sagaflow_records::{Publisher, Topics};
use sagaflow_saga::SagaDefinitionError;
use serde_json::json;

use crate::broker::{BrokerConfig, BrokerError, BrokerStats, InProcessBroker, Latency};

/// How the embedded system is set up.
#[derive(Clone)]
pub struct EmbeddedConfig {
    /// Names the topics (their prefix), as a deployment's stack name does.
    pub name: String,
    /// The broker: partitions, batch size, lost commits and their seed.
    pub broker: BrokerConfig,
    /// How long a saga step waits for its reply and how often it is sent.
    pub step_timing: StepTiming,
    /// The clock's start.
    pub start: Timestamp,
    /// Simulated milliseconds one invocation takes.
    pub millis_per_invocation: i64,
    /// How long after its publication each record may be delivered (the simulated world's
    /// slow parts); none if `None`.
    pub latency: Option<Latency>,
    /// Invocations after which a run that has not gone idle is stopped as stuck.
    pub max_invocations: u64,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            name: "sagaflow".into(),
            broker: BrokerConfig::default(),
            step_timing: StepTiming::default(),
            start: Timestamp(1_764_547_200_000),
            millis_per_invocation: 7,
            latency: None,
            max_invocations: 1_000_000,
        }
    }
}

/// Why the embedded system could not be assembled or could not finish a run.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    /// A handler could not be built.
    #[error(transparent)]
    Setup(#[from] HandlerSetupError),
    /// A saga definition is invalid.
    #[error(transparent)]
    Saga(#[from] SagaDefinitionError),
    /// The broker refused a topic, a group or a payload.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The intake pipeline could not be built.
    #[error(transparent)]
    Pipeline(#[from] sagaflow_eventsourcing::pipeline::PipelineError),
    /// A query handler could not be registered.
    #[error(transparent)]
    Mediator(#[from] MediatorError),
    /// The deadline timer could not read the wake-up index.
    #[error("the deadline timer failed: {0}")]
    Timer(#[source] StoreError),
    /// The run did not go idle.
    #[error("no end after {invocations} invocations: {detail}")]
    Stuck {
        /// Invocations made.
        invocations: u64,
        /// What was still pending.
        detail: String,
    },
}

/// Counters of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Function invocations (batches).
    pub invocations: u64,
    /// Records the functions handled, redeliveries included.
    pub records: u64,
    /// Records a function asked to have again (its partition resumed there).
    pub retried: u64,
    /// Records dead-lettered by a function or the relay.
    pub dead_lettered: u64,
    /// Records the relay published.
    pub relayed: u64,
    /// Runs of the deadline timer.
    pub timer_runs: u64,
    /// Sagas the timer moved on (a step timed out, a compensation was sent again).
    pub deadlines_fired: u64,
}

/// A dead letter read back from the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// The record key: where the letter came from.
    pub key: String,
    /// Its reason header.
    pub reason: String,
}

/// One function as a trigger drives it: its consumer group and the function.
struct Function {
    name: String,
    function: KafkaFunction,
}

/// The order flow in this process.
pub struct EmbeddedSystem {
    config: EmbeddedConfig,
    clock: SimClock,
    store: Arc<InMemoryEventStore>,
    analytics: Arc<InMemoryAnalyticsStore>,
    broker: Arc<InProcessBroker>,
    topics: Topics,
    functions: Vec<Function>,
    dead_letters: DeadLetterTopic,
    timer: DeadlineTimer<InMemoryEventStore>,
    services: FlowServices<InMemoryEventStore>,
    sagas: SagaRunner<InMemoryEventStore>,
    queries: Mediator,
    relayed_up_to: Mutex<usize>,
    stats: Mutex<RunStats>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section sets a counter or a cursor whole, so a poisoned lock is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EmbeddedSystem {
    /// Creates the topics and every function's consumer group, over an empty store.
    pub fn new(config: EmbeddedConfig) -> Result<Self, EmbeddedError> {
        let clock = SimClock::starting_at(config.start);
        let store = Arc::new(InMemoryEventStore::new());
        let analytics = Arc::new(InMemoryAnalyticsStore::new());
        let broker = Arc::new(InProcessBroker::new(
            config.broker.clone(),
            Arc::new(clock.clone()),
            config.latency.clone(),
        ));
        let topics = Topics::new(config.name.clone());
        broker.create_topics(&topics.all());
        let publisher: Arc<dyn Publisher> = broker.clone();
        let dead_letters = DeadLetterTopic::new(publisher, topics.clone());
        let sink: Arc<dyn DeadLetterSink> = Arc::new(dead_letters.clone());

        let mut handlers: Vec<(String, Vec<String>, Arc<dyn RecordHandler>)> = Vec::new();
        for service in SERVICE_NAMES {
            let handler = ServiceHandler::new(service, store.clone(), topics.clone())?
                .with_clock(Arc::new(clock.clone()));
            handlers.push((service.into(), handler.subscriptions(), Arc::new(handler)));
        }
        let orchestrator = OrchestratorHandler::with_step_timing(
            store.clone(),
            topics.clone(),
            config.step_timing,
        )?
        .with_clock(Arc::new(clock.clone()));
        let sagas = orchestrator.sagas().clone();
        handlers.push((
            "orchestrator".into(),
            orchestrator.subscriptions(),
            Arc::new(orchestrator),
        ));
        let analytics_handler = AnalyticsHandler::new(analytics.clone(), topics.clone());
        let queries = analytics_handler.query_bus()?;
        handlers.push((
            "analytics".into(),
            analytics_handler.subscriptions(),
            Arc::new(analytics_handler),
        ));

        let mut functions = Vec::new();
        for (name, subscriptions, handler) in handlers {
            broker.subscribe(&name, &subscriptions)?;
            let function = KafkaFunction::new(handler, sink.clone(), BatchConfig::default())
                .with_clock(Arc::new(clock.clone()));
            functions.push(Function { name, function });
        }
        Ok(Self {
            timer: DeadlineTimer::new(store.clone(), sagas.clone()),
            services: FlowServices::new(store.clone(), 50),
            config,
            clock,
            store,
            analytics,
            broker,
            topics,
            functions,
            dead_letters,
            sagas,
            queries,
            relayed_up_to: Mutex::new(0),
            stats: Mutex::new(RunStats::default()),
        })
    }

    /// Runs until every record is handled, every event relayed and no saga waits for a
    /// deadline: delivers what may be delivered, and when nothing may, moves the clock to the
    /// next deadline or the next delayed record. Returns the counters so far.
    pub async fn run_until_idle(&self) -> Result<RunStats, EmbeddedError> {
        self.run(None).await
    }

    /// Runs as [`Self::run_until_idle`] does, but stops once the clock reaches `at` (when
    /// idle, the clock moves to `at` at most): what a customer waiting that long would see.
    pub async fn run_until(&self, at: Timestamp) -> Result<RunStats, EmbeddedError> {
        self.run(Some(at)).await
    }

    async fn run(&self, until: Option<Timestamp>) -> Result<RunStats, EmbeddedError> {
        loop {
            if until.is_some_and(|at| self.clock.now() >= at) {
                return Ok(*lock(&self.stats));
            }
            let relayed = self.relay().await;
            let mut invoked = false;
            for function in &self.functions {
                if let Some(polled) = self.broker.poll(&function.name)? {
                    self.clock.advance(self.config.millis_per_invocation);
                    let result = function.function.handle_batch(&polled.event).await;
                    self.broker.complete(&polled, &result.response);
                    let mut stats = lock(&self.stats);
                    stats.invocations += 1;
                    stats.records += result.report.records as u64;
                    stats.retried += result.report.retried.len() as u64;
                    stats.dead_lettered += result.report.dead_lettered.len() as u64;
                    invoked = true;
                }
            }
            self.check_progress()?;
            if invoked || relayed {
                continue;
            }
            // Idle: the next thing to happen is a deadline or a delayed record.
            let next = [
                self.store.next_wake_at("saga"),
                self.broker.next_delivery_at(),
            ]
            .into_iter()
            .flatten()
            .min();
            let next = match (next, until) {
                (Some(next), Some(at)) => next.min(at),
                (None, Some(at)) => at,
                (Some(next), None) => next,
                (None, None) => return Ok(*lock(&self.stats)),
            };
            self.clock.advance_to(next);
            let advanced = self.tick_timer().await?;
            if advanced == 0 && !self.broker.has_deliverable() && self.pending_relay() == 0 {
                let due = self.store.next_wake_at("saga");
                if due.is_some_and(|at| at <= self.clock.now()) {
                    return Err(EmbeddedError::Stuck {
                        invocations: lock(&self.stats).invocations,
                        detail: format!("a saga is due at {due:?} and its tick changes nothing"),
                    });
                }
            }
        }
    }

    /// The relay: the events committed since the last call, read from the store's change
    /// feed, through the same relay code as the Lambda relay. Returns whether it published.
    async fn relay(&self) -> bool {
        let from = *lock(&self.relayed_up_to);
        let events = self.store.events_since(from);
        if events.is_empty() {
            return false;
        }
        let count = events.len();
        let changes = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| Change {
                position: (from + i).to_string(),
                origin: json!({ "source": "in-memory-store", "position": from + i }),
                event: Ok(Some(event)),
            })
            .collect();
        let outcome = relay_changes(
            self.broker.as_ref(),
            &self.dead_letters,
            &self.topics,
            changes,
        )
        .await;
        let next = match &outcome.failed_at {
            Some(position) => position.parse().unwrap_or(from),
            None => from + count,
        };
        *lock(&self.relayed_up_to) = next;
        let mut stats = lock(&self.stats);
        stats.relayed += outcome.published as u64;
        stats.dead_lettered += outcome.dead_lettered.len() as u64;
        next > from
    }

    fn pending_relay(&self) -> usize {
        self.store.event_count() - *lock(&self.relayed_up_to)
    }

    /// One run of the deadline timer at the current time; returns the sagas it moved on.
    async fn tick_timer(&self) -> Result<usize, EmbeddedError> {
        let report = self
            .timer
            .tick_due(self.clock.now())
            .await
            .map_err(EmbeddedError::Timer)?;
        let mut stats = lock(&self.stats);
        stats.timer_runs += 1;
        stats.deadlines_fired += report.advanced as u64;
        Ok(report.advanced)
    }

    fn check_progress(&self) -> Result<(), EmbeddedError> {
        let invocations = lock(&self.stats).invocations;
        if invocations > self.config.max_invocations {
            return Err(EmbeddedError::Stuck {
                invocations,
                detail: format!(
                    "{} events not relayed; records deliverable: {}",
                    self.pending_relay(),
                    self.broker.has_deliverable()
                ),
            });
        }
        Ok(())
    }

    /// The event store.
    pub fn store(&self) -> &Arc<InMemoryEventStore> {
        &self.store
    }

    /// The services over the store, for reads and for the in-process flow.
    pub fn services(&self) -> &FlowServices<InMemoryEventStore> {
        &self.services
    }

    /// The orchestrator's sagas, for reads.
    pub fn sagas(&self) -> &SagaRunner<InMemoryEventStore> {
        &self.sagas
    }

    /// The broker every function reads from and publishes to.
    pub fn broker(&self) -> &Arc<InProcessBroker> {
        &self.broker
    }

    /// The topic names.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The simulated clock.
    pub fn clock(&self) -> &SimClock {
        &self.clock
    }

    /// The analytics function's query bus: `query(GetAnalyticsSummary)`.
    pub fn analytics_queries(&self) -> &Mediator {
        &self.queries
    }

    /// The analytics read model as the analytics function left it.
    pub fn analytics(&self) -> AnalyticsProjection {
        self.analytics.projection()
    }

    /// The broker's counters.
    pub fn broker_stats(&self) -> BrokerStats {
        self.broker.stats()
    }

    /// Every letter on the dead-letter topic.
    pub fn dead_letters(&self) -> Vec<DeadLetterRecord> {
        self.broker
            .records(&self.topics.dead_letter())
            .into_iter()
            .map(|record| DeadLetterRecord {
                reason: record
                    .headers
                    .iter()
                    .find(|(name, _)| name == REASON_HEADER)
                    .map(|(_, value)| String::from_utf8_lossy(value).into_owned())
                    .unwrap_or_default(),
                key: record.key,
            })
            .collect()
    }
}
