//! The whole flow on local servers: every function's handler behind its local trigger, the
//! relay tailing the events table's stream, and a front door that places orders.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use sagaflow_dynamodb::tables::{ensure_analytics_table, ensure_events_table};
use sagaflow_dynamodb::{dynamodb_client, DynamoAnalyticsStore, DynamoEventStore};
use sagaflow_eventsourcing::mediator::Mediator;
use sagaflow_handlers::dead_letter::DeadLetterTopic;
use sagaflow_handlers::dead_letter::REASON_HEADER;
use sagaflow_handlers::orchestrator::{cancel_command, place_command};
use sagaflow_handlers::{
    clock, AnalyticsHandler, DeadlineTimer, KafkaFunction, OrchestratorHandler, ServiceHandler,
    SERVICE_NAMES,
};
use sagaflow_kafka::admin::ensure_topics;
use sagaflow_kafka::{command_record, EventPublisher, KafkaConfig, Topics};
use sagaflow_lambda_kafka::BatchConfig;
use sagaflow_orders::domain::{CreateOrder, Flow, Order, OrderStatus};
use sagaflow_orders::flow::sagas::{SagaRunner, StepTiming};
use sagaflow_orders::flow::services::FlowServices;
use sagaflow_orders::projection::{AnalyticsProjection, AnalyticsSummary, GetAnalyticsSummary};
use tokio::task::JoinHandle;

use crate::faults::FaultPlan;
use crate::kafka_source::{KafkaTrigger, RunningTrigger, TriggerConfig, TriggerStats};
use crate::request_count::RequestCounter;
use crate::stream_source::{StreamError, StreamTrigger};

/// How the local system is laid out.
#[derive(Clone, Debug)]
pub struct LocalSystemConfig {
    /// Names this deployment: topic prefix, consumer groups and the events table.
    pub name: String,
    /// Overrides the consumer groups' prefix (default: `name`): new groups on the same topics
    /// read every record again from the beginning, as a full redelivery.
    pub consumer_groups: Option<String>,
    /// Partitions per topic.
    pub partitions: i32,
    /// Batching of every Kafka trigger.
    pub trigger: TriggerConfig,
    /// How long a saga step waits for its reply and how often a compensation is sent (the
    /// orchestrator's and the timer's setting).
    pub step_timing: StepTiming,
    /// Services whose function is not started (their commands are never answered), to show
    /// the deadline timer failing the step and the saga compensating.
    pub stopped_services: Vec<String>,
    /// How often the deadline timer runs (a schedule of one minute on AWS).
    pub timer_every: Duration,
    /// Faults to inject into the triggers, the relay and the functions' DynamoDB client (the
    /// chaos run). The system's own reads (`store`, `services`, `sagas`, the analytics query)
    /// use a client without faults.
    pub faults: Option<Arc<FaultPlan>>,
    /// Counts the functions' DynamoDB requests (the benchmarks' cost per order), if set.
    pub request_counter: Option<RequestCounter>,
}

impl LocalSystemConfig {
    /// A system named `name` with every function running and the defaults AWS would have.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            consumer_groups: None,
            partitions: 2,
            trigger: TriggerConfig::default(),
            step_timing: StepTiming::default(),
            stopped_services: Vec::new(),
            timer_every: Duration::from_millis(500),
            faults: None,
            request_counter: None,
        }
    }
}

/// The running local system.
pub struct LocalSystem {
    /// The event store (the same DynamoDB table the functions write).
    pub store: Arc<DynamoEventStore>,
    /// Services, for reading aggregates.
    pub services: FlowServices<DynamoEventStore>,
    /// The orchestrator's sagas, for starting and reading them.
    pub sagas: SagaRunner<DynamoEventStore>,
    /// The analytics read model (the table the analytics function writes).
    pub analytics: Arc<DynamoAnalyticsStore>,
    /// The analytics function's query bus.
    pub queries: Mediator,
    /// Topic names.
    pub topics: Topics,
    /// Kafka settings.
    pub kafka: KafkaConfig,
    partitions: i32,
    publisher: EventPublisher,
    triggers: Vec<RunningTrigger>,
    relay_stop: Arc<AtomicBool>,
    relay: JoinHandle<Result<u64, StreamError>>,
    timer: JoinHandle<TimerStats>,
}

/// What the local deadline timer did over a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TimerStats {
    /// Runs of the timer.
    pub runs: u64,
    /// Sagas its ticks moved on.
    pub advanced: u64,
    /// Failed runs or ticks, with their reasons.
    pub failures: Vec<String>,
}

/// A record read back from the dead-letter topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// The record key (the source record's coordinates).
    pub key: String,
    /// The reason header.
    pub reason: String,
    /// The letter's JSON value, as text.
    pub value: String,
}

/// Counters of a stopped system.
#[derive(Clone, Debug, Default)]
pub struct LocalStats {
    /// Per function: its trigger's counters.
    pub triggers: Vec<(String, TriggerStats)>,
    /// Records the relay published.
    pub relayed: u64,
    /// What the deadline timer did.
    pub timer: TimerStats,
}

impl LocalSystem {
    /// Creates the table and topics, then starts every trigger and the relay.
    pub async fn start(config: LocalSystemConfig) -> Result<Self, String> {
        let mut kafka = KafkaConfig::from_env().map_err(|e| e.to_string())?;
        kafka.topics = Topics::new(config.name.clone());
        let topics = kafka.topics.clone();
        let table = format!("{}-events", config.name);
        let client = dynamodb_client().await;
        ensure_events_table(&client, &table)
            .await
            .map_err(|e| e.to_string())?;
        let analytics_table = format!("{}-analytics", config.name);
        ensure_analytics_table(&client, &analytics_table)
            .await
            .map_err(|e| e.to_string())?;
        ensure_topics(&kafka, &topics.all(), config.partitions)
            .await
            .map_err(|e| e.to_string())?;
        let store = Arc::new(DynamoEventStore::new(client.clone(), table.clone()));
        // What the functions write through: the same table, with the chaos run's faults.
        let function_client = if config.faults.is_none() && config.request_counter.is_none() {
            client.clone()
        } else {
            let mut builder = client.config().to_builder();
            if let Some(counter) = &config.request_counter {
                builder = builder.interceptor(counter.interceptor());
            }
            if let Some(plan) = &config.faults {
                builder = builder.interceptor(plan.dynamodb_interceptor());
            }
            aws_sdk_dynamodb::Client::from_conf(builder.build())
        };
        let function_store = Arc::new(DynamoEventStore::new(
            function_client.clone(),
            table.clone(),
        ));
        let mut trigger_config = config.trigger.clone();
        trigger_config.faults = config.faults.clone();
        let publisher = EventPublisher::new(&kafka).map_err(|e| e.to_string())?;
        publisher.warm().await.map_err(|e| e.to_string())?;
        let dead_letters = DeadLetterTopic::new(Arc::new(publisher.clone()), topics.clone());
        let runtime = tokio::runtime::Handle::current();
        let groups = config
            .consumer_groups
            .clone()
            .unwrap_or_else(|| config.name.clone());

        let mut triggers = Vec::new();
        for service in SERVICE_NAMES {
            if config.stopped_services.iter().any(|s| s == service) {
                continue;
            }
            let handler = ServiceHandler::new(service, function_store.clone(), topics.clone())
                .map_err(|e| e.to_string())?;
            let subscriptions = handler.subscriptions();
            let function = KafkaFunction::new(
                Arc::new(handler),
                Arc::new(dead_letters.clone()),
                BatchConfig::default(),
            );
            let trigger = KafkaTrigger::new(
                &format!("{groups}-{service}"),
                subscriptions,
                function,
                kafka.clone(),
                trigger_config.clone(),
            );
            triggers.push(trigger.start(runtime.clone())?);
        }
        let orchestrator = OrchestratorHandler::with_step_timing(
            function_store.clone(),
            topics.clone(),
            config.step_timing,
        )
        .map_err(|e| e.to_string())?;
        let function_sagas = orchestrator.sagas().clone();
        let sagas = OrchestratorHandler::with_step_timing(
            store.clone(),
            topics.clone(),
            config.step_timing,
        )
        .map_err(|e| e.to_string())?
        .sagas()
        .clone();
        let subscriptions = orchestrator.subscriptions();
        let function = KafkaFunction::new(
            Arc::new(orchestrator),
            Arc::new(dead_letters.clone()),
            BatchConfig::default(),
        );
        triggers.push(
            KafkaTrigger::new(
                &format!("{groups}-orchestrator"),
                subscriptions,
                function,
                kafka.clone(),
                trigger_config.clone(),
            )
            .start(runtime.clone())?,
        );

        let analytics = Arc::new(DynamoAnalyticsStore::new(
            client.clone(),
            analytics_table.clone(),
        ));
        let queries = AnalyticsHandler::new(analytics.clone(), topics.clone())
            .query_bus()
            .map_err(|e| e.to_string())?;
        let analytics_handler = AnalyticsHandler::new(
            Arc::new(DynamoAnalyticsStore::new(
                function_client.clone(),
                analytics_table,
            )),
            topics.clone(),
        );
        let subscriptions = analytics_handler.subscriptions();
        let function = KafkaFunction::new(
            Arc::new(analytics_handler),
            Arc::new(dead_letters.clone()),
            BatchConfig::default(),
        );
        triggers.push(
            KafkaTrigger::new(
                &format!("{groups}-analytics"),
                subscriptions,
                function,
                kafka.clone(),
                trigger_config.clone(),
            )
            .start(runtime.clone())?,
        );

        let relay_stop = Arc::new(AtomicBool::new(false));
        let stream = StreamTrigger {
            table,
            dynamodb: client,
            streams: aws_sdk_dynamodbstreams::Client::new(
                &aws_config::defaults(aws_config::BehaviorVersion::latest())
                    .load()
                    .await,
            ),
            publisher: publisher.clone(),
            dead_letters,
            topics: topics.clone(),
            faults: config.faults.clone(),
        };
        let relay = {
            let stop = relay_stop.clone();
            tokio::spawn(async move { stream.run(stop).await })
        };
        let timer = {
            let stop = relay_stop.clone();
            let timer = DeadlineTimer::new(function_store.clone(), function_sagas);
            let every = config.timer_every;
            tokio::spawn(async move {
                let mut stats = TimerStats::default();
                while !stop.load(Ordering::SeqCst) {
                    stats.runs += 1;
                    match timer.tick_due(clock::now()).await {
                        Ok(report) => {
                            stats.advanced += report.advanced as u64;
                            stats.failures.extend(report.failed);
                        }
                        Err(e) => stats.failures.push(e.to_string()),
                    }
                    tokio::time::sleep(every).await;
                }
                stats
            })
        };
        Ok(Self {
            services: FlowServices::new(store.clone(), 50),
            sagas,
            store,
            analytics,
            queries,
            topics,
            kafka,
            partitions: config.partitions,
            publisher,
            triggers,
            relay_stop,
            relay,
            timer,
        })
    }

    /// Puts `quantity` units of `sku` into the warehouse.
    pub async fn restock(&self, sku: &str, quantity: u32) -> Result<(), String> {
        self.services
            .restock(sku, quantity, clock::now())
            .await
            .map_err(|e| e.to_string())
    }

    /// The front door, over Kafka as on AWS: an orchestrated order is a `saga.start` command to
    /// the orchestrator, a choreographed one an `order.create` command to the order service.
    pub async fn place_order(&self, create: &CreateOrder) -> Result<(), String> {
        let causation = format!("request-{}", create.order_id);
        let command = place_command(create, &causation, clock::now()).map_err(|e| e.to_string())?;
        self.publisher
            .publish(&[command_record(&self.topics, &command)])
            .await
            .map_err(|e| e.to_string())
    }

    /// The customer's cancel of a running order of `flow`, over Kafka as on AWS (`saga.cancel`
    /// to the orchestrator, `order.request_cancel` to the order service); `attempt` tells one
    /// cancel from another (the same attempt again is the same command).
    pub async fn cancel_order(
        &self,
        order_id: &str,
        flow: Flow,
        reason: &str,
        attempt: u32,
    ) -> Result<(), String> {
        let command = cancel_command(order_id, flow, reason, attempt, clock::now());
        self.publisher
            .publish(&[command_record(&self.topics, &command)])
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits until `order_id` is completed or cancelled, or `limit` passes.
    pub async fn wait_for_terminal(
        &self,
        order_id: &str,
        limit: Duration,
    ) -> Result<Order, String> {
        let deadline = Instant::now() + limit;
        loop {
            let order = self
                .services
                .orders()
                .load(order_id)
                .await
                .map_err(|e| e.to_string())?
                .state;
            if matches!(
                order.status,
                OrderStatus::Completed | OrderStatus::Cancelled
            ) {
                return Ok(order);
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "order {order_id} is still {:?} after {limit:?}",
                    order.status
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Orders the analytics read model counts as completed or cancelled.
    pub async fn finished_orders(&self) -> Result<usize, String> {
        let summary = self.analytics_summary().await?;
        Ok(["completed", "cancelled"]
            .iter()
            .map(|s| summary.orders_by_status.get(*s).copied().unwrap_or(0) as usize)
            .sum())
    }

    /// The analytics summary, asked through the analytics function's query bus.
    pub async fn analytics_summary(&self) -> Result<AnalyticsSummary, String> {
        self.queries
            .query(GetAnalyticsSummary)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// The summary a fresh replay of every stored event gives.
    pub async fn replayed_analytics(&self) -> Result<AnalyticsSummary, String> {
        let events = self.store.all_events().await.map_err(|e| e.to_string())?;
        AnalyticsProjection::replay(&events)
            .map(|projection| projection.summary().clone())
            .map_err(|e| e.to_string())
    }

    /// Waits until the analytics table equals a fresh replay of the events table (the
    /// analytics function has caught up), or `limit` passes; returns the summary. A read that
    /// fails (the endpoint restarting) is tried again until then.
    pub async fn wait_for_analytics(&self, limit: Duration) -> Result<AnalyticsSummary, String> {
        let deadline = Instant::now() + limit;
        loop {
            let compared = match (
                self.analytics_summary().await,
                self.replayed_analytics().await,
            ) {
                (Ok(live), Ok(replayed)) if live == replayed => return Ok(live),
                (Ok(live), Ok(replayed)) => format!(
                    "the analytics table does not match the events after {limit:?}:\n  table:  {live:?}\n  replay: {replayed:?}"
                ),
                (Err(e), _) | (_, Err(e)) => {
                    format!("the analytics could not be read for {limit:?}: {e}")
                }
            };
            if Instant::now() >= deadline {
                return Err(compared);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reads the dead-letter topic from its beginning until at least `want` letters arrived and
    /// the topic went quiet, or `limit` passed.
    pub async fn read_dead_letters(&self, want: usize, limit: Duration) -> Vec<DeadLetterRecord> {
        let kafka = self.kafka.clone();
        let topic = self.topics.dead_letter();
        let partitions = self.partitions;
        tokio::task::spawn_blocking(move || {
            read_dead_letters(&kafka, &topic, partitions, want, limit)
        })
        .await
        .unwrap_or_else(|e| {
            vec![DeadLetterRecord {
                key: String::new(),
                reason: format!("the reader failed: {e}"),
                value: String::new(),
            }]
        })
    }

    /// Stops every trigger and the relay.
    pub async fn stop(self) -> LocalStats {
        self.relay_stop.store(true, Ordering::SeqCst);
        let relayed = match tokio::time::timeout(Duration::from_secs(10), self.relay).await {
            Ok(Ok(Ok(published))) => published,
            _ => 0,
        };
        let timer = match tokio::time::timeout(Duration::from_secs(10), self.timer).await {
            Ok(Ok(stats)) => stats,
            Ok(Err(e)) => TimerStats {
                failures: vec![format!("the timer task failed: {e}")],
                ..TimerStats::default()
            },
            Err(_) => TimerStats {
                failures: vec!["the timer did not stop within 10 s".into()],
                ..TimerStats::default()
            },
        };
        let triggers = tokio::task::spawn_blocking(move || {
            self.triggers
                .into_iter()
                .map(|t| {
                    let name = t.name.clone();
                    (name, t.stop(Duration::from_secs(10)))
                })
                .collect()
        })
        .await
        .unwrap_or_default();
        LocalStats {
            triggers,
            relayed,
            timer,
        }
    }
}

fn read_dead_letters(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
    want: usize,
    limit: Duration,
) -> Vec<DeadLetterRecord> {
    let failed = |reason: String| {
        vec![DeadLetterRecord {
            key: String::new(),
            reason,
            value: String::new(),
        }]
    };
    let consumer: BaseConsumer = match kafka
        .client_config()
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50")
        .create()
    {
        Ok(consumer) => consumer,
        Err(e) => return failed(format!("cannot create a consumer: {e}")),
    };
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        if let Err(e) = assignment.add_partition_offset(topic, partition, Offset::Beginning) {
            return failed(e.to_string());
        }
    }
    if let Err(e) = consumer.assign(&assignment) {
        return failed(e.to_string());
    }
    let mut letters = Vec::new();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let reason = message
                    .headers()
                    .and_then(|h| {
                        h.iter()
                            .find(|h| h.key == REASON_HEADER)
                            .and_then(|h| h.value)
                    })
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                letters.push(DeadLetterRecord {
                    key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                    reason,
                    value: String::from_utf8_lossy(message.payload().unwrap_or_default())
                        .into_owned(),
                });
            }
            // Quiet after enough letters: the topic has been read to its end.
            _ if letters.len() >= want => break,
            _ => {}
        }
    }
    letters
}
