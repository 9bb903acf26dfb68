//! A Kafka-triggered function as the Lambda runtime sees it: one batch in, the partial batch
//! response out.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lambda_events::event::kafka::KafkaEvent;
use sagaflow_lambda_kafka::{
    parse_kafka_event, process_batch, BatchConfig, BatchResult, BoxFuture, DeadLetter,
    DeadLetterSink, PayloadError, RecordHandler, SinkError,
};
use serde_json::Value;

use crate::clock::{Clock, WallClock};
use crate::log;
use crate::metrics::{self, MetricsSink, NoMetrics, PushBackSource};

/// One record handler, the dead-letter path and the batch settings of a function.
#[derive(Clone)]
pub struct KafkaFunction {
    handler: Arc<dyn RecordHandler>,
    dead_letters: Arc<dyn DeadLetterSink>,
    config: BatchConfig,
    clock: Arc<dyn Clock>,
    metrics: Arc<dyn MetricsSink>,
    push_back: Option<PushBackSource>,
}

impl KafkaFunction {
    /// A function running `handler` on every record, dead-lettering through `dead_letters`.
    pub fn new(
        handler: Arc<dyn RecordHandler>,
        dead_letters: Arc<dyn DeadLetterSink>,
        config: BatchConfig,
    ) -> Self {
        Self {
            handler,
            dead_letters,
            config,
            clock: Arc::new(WallClock),
            metrics: Arc::new(NoMetrics),
            push_back: None,
        }
    }

    /// The same function measuring, after each batch, how often its store was pushed back
    /// (`push_back` reads and resets the counts).
    pub fn with_push_back(mut self, push_back: PushBackSource) -> Self {
        self.push_back = Some(push_back);
        self
    }

    /// The same function writing its batch metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<dyn MetricsSink>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same function reading time from `clock` (the simulated clock of `make run`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reads one invocation's payload as a Kafka batch ([`parse_kafka_event`]: never a panic)
    /// and processes it.
    pub async fn handle_payload(&self, payload: Value) -> Result<BatchResult, PayloadError> {
        Ok(self.handle_batch(&parse_kafka_event(payload)?).await)
    }

    /// Processes one invocation's batch, and logs what it came to.
    pub async fn handle_batch(&self, event: &KafkaEvent) -> BatchResult {
        let started = Instant::now();
        let result = process_batch(
            event,
            self.handler.clone(),
            self.dead_letters.clone(),
            &self.config,
            self.clock.now().as_millis(),
        )
        .await;
        let duration = started.elapsed();
        log::batch_done(
            self.handler.name(),
            &result.report,
            duration,
            event.records.len(),
        );
        let now = self.clock.now().as_millis();
        let push_back = self.push_back.as_ref().map(|take| take());
        for line in metrics::batch_lines(
            self.handler.name(),
            event,
            &result.report,
            duration,
            push_back,
            now,
        ) {
            self.metrics.emit(line);
        }
        result
    }
}

/// A dead-letter sink that keeps letters in memory, for handler tests that need no broker.
#[derive(Clone, Default)]
pub struct RecordedDeadLetters {
    letters: Arc<Mutex<Vec<DeadLetter>>>,
}

impl RecordedDeadLetters {
    /// The letters received so far.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.letters
            .lock()
            .map(|letters| letters.clone())
            .unwrap_or_default()
    }
}

impl DeadLetterSink for RecordedDeadLetters {
    fn send(&self, letter: DeadLetter) -> BoxFuture<Result<(), SinkError>> {
        let result = self
            .letters
            .lock()
            .map(|mut letters| letters.push(letter))
            .map_err(|e| SinkError::from(e.to_string()));
        Box::pin(async move { result })
    }
}
