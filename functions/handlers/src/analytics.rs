//! The analytics function: applies every event to the analytics read model exactly once, and
//! answers the summary query through the mediator's query bus.

use std::sync::Arc;

use aws_lambda_events::event::kafka::KafkaEvent;
use sagaflow_eventsourcing::mediator::{Mediator, MediatorError};
use sagaflow_lambda_kafka::{
    parse_kafka_event, BatchConfig, BoxFuture, DeadLetterSink, InboundRecord, KafkaBatchResponse,
    PayloadError, RecordHandler, RecordOutcome,
};
use sagaflow_orders::projection::{
    AnalyticsStore, AnalyticsSummary, Applied, GetAnalyticsSummary, ReadModelError,
};
use sagaflow_records::{topology, Topics};
use serde::Serialize;
use serde_json::Value;

use crate::function::KafkaFunction;
use crate::inbound::{parse_record, Inbound, Subscriptions};
use crate::metrics::{self, MetricsSink, NoMetrics, PushBackSource};
use crate::record_error::RecordError;
use crate::trace::RecordTrace;
use tracing::Instrument;

/// What the analytics function does with each record, and the queries it answers.
pub struct AnalyticsHandler<A> {
    read_model: Arc<A>,
    subscriptions: Arc<Subscriptions>,
    metrics: Arc<dyn MetricsSink>,
}

impl<A> Clone for AnalyticsHandler<A> {
    fn clone(&self) -> Self {
        Self {
            read_model: self.read_model.clone(),
            subscriptions: self.subscriptions.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<A: AnalyticsStore + 'static> AnalyticsHandler<A> {
    /// The handler feeding `read_model` from the events topics of `topics`.
    pub fn new(read_model: Arc<A>, topics: Topics) -> Self {
        let subscriptions =
            Subscriptions::new("the analytics function", &topology::ANALYTICS, &topics);
        Self {
            read_model,
            subscriptions: Arc::new(subscriptions),
            metrics: Arc::new(NoMetrics),
        }
    }

    /// The same handler writing the order and saga durations it measures to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn MetricsSink>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The topics it reads: every aggregate's events.
    pub fn subscriptions(&self) -> Vec<String> {
        self.subscriptions.names()
    }

    /// The read model.
    pub fn read_model(&self) -> &Arc<A> {
        &self.read_model
    }

    /// A mediator whose query bus answers [`GetAnalyticsSummary`] from the read model.
    pub fn query_bus(&self) -> Result<Mediator, MediatorError> {
        let mut mediator = Mediator::new();
        let read_model = self.read_model.clone();
        mediator.register_query_handler(move |GetAnalyticsSummary| {
            let read_model = read_model.clone();
            async move { read_model.summary().await }
        })?;
        Ok(mediator)
    }

    /// Applies one event record to the read model.
    pub async fn handle_record(&self, record: &InboundRecord) -> RecordOutcome {
        self.handle_records(std::slice::from_ref(record))
            .await
            .pop()
            .unwrap_or_else(|| RecordOutcome::Retry("no outcome for the record".into()))
    }

    /// Applies the event records of one key group: each run of consecutive events in one
    /// write per stream ([`AnalyticsStore::apply_run`]), so a stream's events of one batch
    /// cost one transaction instead of one each. A record that is no event is dead-lettered
    /// on its own; after a failed write the rest of the group is retried behind it.
    pub async fn handle_records(&self, records: &[InboundRecord]) -> Vec<RecordOutcome> {
        let mut traces = Vec::with_capacity(records.len());
        let mut reads = Vec::with_capacity(records.len());
        for record in records {
            let mut read = parse_record(record, &self.subscriptions);
            traces.push(RecordTrace::begin(ANALYTICS, record, &mut read));
            reads.push(match read {
                Ok(Inbound::Event(event)) => Ok(*event),
                Ok(Inbound::Command(command)) => Err(RecordError::dead_letter(format!(
                    "command `{}` on an events topic",
                    command.command_type
                ))),
                Err(error) => Err(error),
            });
        }
        let settle = |i: usize, result| traces[i].settle(ANALYTICS, &records[i], result);
        let mut outcomes = Vec::with_capacity(records.len());
        let mut pending = reads.into_iter().enumerate().peekable();
        while let Some((first, read)) = pending.next() {
            let event = match read {
                Ok(event) => event,
                Err(error) => {
                    outcomes.push(settle(first, Err(error)));
                    continue;
                }
            };
            let mut run = vec![event];
            while let Some((_, Ok(next))) = pending.next_if(|(_, read)| read.is_ok()) {
                run.push(next);
            }
            let applied = self
                .read_model
                .apply_run(&run)
                .instrument(traces[first].span().clone())
                .await;
            match applied {
                Ok(applied) => {
                    for (k, applied) in applied.into_iter().enumerate() {
                        self.measure(applied);
                        outcomes.push(settle(first + k, Ok(())));
                    }
                }
                Err(error) => {
                    outcomes.push(settle(first, Err(RecordError::from(error))));
                    return outcomes;
                }
            }
        }
        outcomes
    }
}

impl<A> AnalyticsHandler<A> {
    /// Writes the durations an applied event completed; a redelivery completes none.
    fn measure(&self, applied: Applied) {
        if let Applied::New(durations) = applied {
            let now = crate::clock::now().as_millis();
            for line in metrics::duration_lines(&durations, now) {
                self.metrics.emit(line);
            }
        }
    }
}

/// The analytics function's name in its log lines.
const ANALYTICS: &str = "analytics";

impl<A: AnalyticsStore + 'static> RecordHandler for AnalyticsHandler<A> {
    fn name(&self) -> &str {
        ANALYTICS
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

/// What the analytics function is invoked with: a batch from its Kafka trigger, or a query
/// (`{"query": "summary"}`) from anyone allowed to invoke it.
#[derive(Clone, Debug)]
pub enum AnalyticsRequest {
    /// A Kafka trigger batch.
    Batch(Box<KafkaEvent>),
    /// The analytics summary query.
    Summary,
}

/// Why an invocation of the analytics function was refused.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsInvocationError {
    /// A query other than the one it answers.
    #[error("unknown analytics query {0}: the one query is {{\"query\": \"summary\"}}")]
    UnknownQuery(Value),
    /// A payload that is no query and no Kafka batch either.
    #[error("payload is neither a query nor a Kafka batch ({0})")]
    NotABatch(#[source] PayloadError),
    /// The query bus has no handler for the query.
    #[error(transparent)]
    QueryBus(#[from] MediatorError),
    /// The read model could not answer.
    #[error(transparent)]
    ReadModel(#[from] ReadModelError),
}

impl AnalyticsRequest {
    /// Reads an invocation payload; a payload with a `query` field is a query, any other a batch.
    pub fn from_value(payload: Value) -> Result<Self, AnalyticsInvocationError> {
        match payload.get("query") {
            Some(Value::String(name)) if name == "summary" => Ok(AnalyticsRequest::Summary),
            Some(other) => Err(AnalyticsInvocationError::UnknownQuery(other.clone())),
            None => parse_kafka_event(payload)
                .map(|batch| AnalyticsRequest::Batch(Box::new(batch)))
                .map_err(AnalyticsInvocationError::NotABatch),
        }
    }
}

/// What the analytics function returns: the partial batch response, or the summary.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum AnalyticsResponse {
    /// The response to a Kafka batch.
    Batch(KafkaBatchResponse),
    /// The answer to the summary query.
    Summary(AnalyticsSummary),
}

/// The analytics function as the Lambda runtime calls it: batches in, queries answered.
pub struct AnalyticsFunction {
    /// Applies Kafka batches.
    pub function: KafkaFunction,
    /// Answers [`GetAnalyticsSummary`].
    pub queries: Mediator,
}

impl AnalyticsFunction {
    /// The function over `handler`, dead-lettering to `dead_letters`.
    pub fn new<A: AnalyticsStore + 'static>(
        handler: AnalyticsHandler<A>,
        dead_letters: Arc<dyn DeadLetterSink>,
    ) -> Result<Self, MediatorError> {
        let queries = handler.query_bus()?;
        Ok(Self {
            function: KafkaFunction::new(Arc::new(handler), dead_letters, BatchConfig::default()),
            queries,
        })
    }

    /// The same function writing its batch metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn MetricsSink>) -> Self {
        self.function = self.function.with_metrics(metrics);
        self
    }

    /// The same function measuring its store's push-back after each batch.
    pub fn with_push_back(mut self, push_back: PushBackSource) -> Self {
        self.function = self.function.with_push_back(push_back);
        self
    }

    /// Handles one invocation.
    pub async fn invoke(
        &self,
        payload: Value,
    ) -> Result<AnalyticsResponse, AnalyticsInvocationError> {
        match AnalyticsRequest::from_value(payload)? {
            AnalyticsRequest::Batch(batch) => Ok(AnalyticsResponse::Batch(
                self.function.handle_batch(&batch).await.response,
            )),
            AnalyticsRequest::Summary => {
                let summary = self.queries.query(GetAnalyticsSummary).await??;
                Ok(AnalyticsResponse::Summary(summary))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::RecordedMetrics;
    use sagaflow_lambda_kafka::RecordId;
    use sagaflow_orders::projection::InMemoryAnalyticsStore;
    use sagaflow_orders::testkit::analytics_scenarios::order_history;
    use sagaflow_records::event_record;

    #[tokio::test]
    async fn an_orders_duration_is_measured_once_however_often_its_last_event_comes() {
        let metrics = RecordedMetrics::default();
        let handler =
            AnalyticsHandler::new(Arc::new(InMemoryAnalyticsStore::new()), Topics::default())
                .with_metrics(Arc::new(metrics.clone()));
        let history = order_history("ord-m", 3);
        for delivery in 0..2 {
            for (offset, event) in history.iter().enumerate() {
                let record = event_record(&Topics::default(), event);
                let inbound = InboundRecord {
                    id: RecordId {
                        topic: record.topic,
                        partition: 0,
                        offset: offset as i64,
                    },
                    timestamp_ms: 0,
                    key: Some(record.key.into_bytes()),
                    value: Some(record.value),
                    headers: record.headers,
                };
                let outcome = handler.handle_record(&inbound).await;
                assert_eq!(outcome, RecordOutcome::Done, "delivery {delivery}");
            }
        }
        let lines = metrics.lines();
        for line in &lines {
            crate::testkit::emf::check_emf_line(line).unwrap();
        }
        let named = |name: &str| lines.iter().filter(|l| l.get(name).is_some()).count();
        assert_eq!(named("OrderDuration"), 3, "{lines:#?}");
        assert_eq!(named("SagaDuration"), 3, "{lines:#?}");
        let completed = lines
            .iter()
            .filter(|l| l.get("OrderDuration").is_some() && l["outcome"] == "completed")
            .count();
        assert_eq!(completed, 2, "every third order is cancelled");
    }

    /// The in-memory read model, counting the writes it is asked for.
    #[derive(Default)]
    struct CountingReadModel {
        inner: InMemoryAnalyticsStore,
        writes: std::sync::atomic::AtomicUsize,
    }

    impl AnalyticsStore for CountingReadModel {
        async fn apply(
            &self,
            event: &sagaflow_orders::flow::FlowEnvelope,
        ) -> Result<Applied, ReadModelError> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.apply(event).await
        }

        async fn apply_run(
            &self,
            run: &[sagaflow_orders::flow::FlowEnvelope],
        ) -> Result<Vec<Applied>, ReadModelError> {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.apply_run(run).await
        }

        async fn summary(&self) -> Result<AnalyticsSummary, ReadModelError> {
            self.inner.summary().await
        }
    }

    #[tokio::test]
    async fn a_groups_events_are_written_together_and_a_command_among_them_is_dead_lettered_alone()
    {
        let read_model = Arc::new(CountingReadModel::default());
        let handler = AnalyticsHandler::new(read_model.clone(), Topics::default());
        let topics = Topics::default();
        let history = order_history("ord-g", 1);
        let inbound = |offset: i64, record: sagaflow_records::OutboundRecord| InboundRecord {
            id: RecordId {
                topic: topics.events("order"),
                partition: 0,
                offset,
            },
            timestamp_ms: 0,
            key: Some(record.key.into_bytes()),
            value: Some(record.value),
            headers: record.headers,
        };
        let order_events: Vec<_> = history
            .iter()
            .filter(|e| e.aggregate_type == "order")
            .collect();
        assert_eq!(order_events.len(), 2, "created and completed");
        let command = sagaflow_eventsourcing::command::CommandEnvelope {
            trace_context: None,
            command_id: "cmd-g".into(),
            command_type: "order.complete".into(),
            target_id: "ord-g-0".into(),
            payload: serde_json::json!({}),
            correlation_id: "ord-g-0".into(),
            causation_id: "cause".into(),
            issued_at: sagaflow_eventsourcing::Timestamp(1),
        };
        let group = vec![
            inbound(1, event_record(&topics, order_events[0])),
            inbound(2, event_record(&topics, order_events[0])),
            inbound(3, sagaflow_records::command_record(&topics, &command)),
            inbound(4, event_record(&topics, order_events[1])),
        ];
        let outcomes = handler.handle_records(&group).await;
        assert_eq!(outcomes.len(), 4, "{outcomes:?}");
        assert_eq!(outcomes[0], RecordOutcome::Done);
        assert_eq!(outcomes[1], RecordOutcome::Done, "a redelivery in the run");
        assert!(
            matches!(&outcomes[2], RecordOutcome::DeadLetter(r) if r.contains("event envelope")),
            "{:?}",
            outcomes[2]
        );
        assert_eq!(outcomes[3], RecordOutcome::Done);
        assert_eq!(
            read_model.writes.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "the run before the command in one write, the event after it in another"
        );
        let summary = read_model.summary().await.unwrap();
        assert_eq!(summary.orders_by_status.get("completed"), Some(&1));
        assert_eq!(summary.events_by_type.get("order.created"), Some(&1));
    }
}
