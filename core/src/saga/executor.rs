//! The in-process runtime: runs a saga to its end in one call, dispatching each command through
//! an injected [`CommandDispatcher`] and waiting between retries through an injected [`Sleeper`].
//!
//! Nothing is persisted: a crash loses the run. Sagas that must survive crashes use the
//! event-sourced orchestrator over the same [`SagaDefinition`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::definition::{
    CommandMessage, Compensation, MessageContext, RetryPolicy, SagaCommand, SagaData,
    SagaDefinition, SagaFailure, SagaStep, StepKind, COMPLETION_STEP,
};
use super::BoxFuture;

/// A service's reply to a dispatched command: the event its command produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The reply event's id.
    pub event_id: String,
    /// The reply event's type, which decides what the reply means to the step.
    pub event_type: String,
    /// The reply event's payload.
    pub payload: Value,
}

impl Reply {
    /// A reply event of `event_type` with id `event_id` and `payload`.
    pub fn new(event_id: impl Into<String>, event_type: impl Into<String>, payload: Value) -> Self {
        Self {
            event_id: event_id.into(),
            event_type: event_type.into(),
            payload,
        }
    }
}

/// What a dispatched command did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DispatchOutcome {
    /// The command produced this event.
    Reply(Reply),
    /// The command produced no event: its effect had already happened (idempotent redelivery).
    NoChange,
}

/// Why a command could not be dispatched or was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// A fault that may pass: retried with backoff.
    #[error("transient dispatch failure: {0}")]
    Transient(String),
    /// A refusal that will not change: the step fails at once.
    #[error("permanent dispatch failure: {0}")]
    Permanent(String),
}

/// Where an in-process saga sends step commands.
pub trait CommandDispatcher: Send + Sync {
    /// Sends `message` to its service and returns what the service did.
    fn dispatch(
        &self,
        message: CommandMessage,
    ) -> BoxFuture<Result<DispatchOutcome, DispatchError>>;
}

/// Waits between retries; injected so the core never reads a clock. Tests use a recording no-op.
pub trait Sleeper: Send + Sync {
    /// Completes after `millis` milliseconds.
    fn sleep(&self, millis: u64) -> BoxFuture<()>;
}

/// How an in-process saga ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Every step succeeded.
    Completed,
    /// A step failed and every needed compensation succeeded.
    Compensated,
    /// A step failed and at least one compensation was given up.
    CompensationFailed,
}

/// A step (or compensation, or completion command) that failed, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// The step's name.
    pub step: String,
    /// Why it failed.
    pub reason: String,
}

/// Everything an in-process saga run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaOutcome {
    /// The saga instance id.
    pub saga_id: String,
    /// How the saga ended.
    pub status: SagaStatus,
    /// The forward steps that succeeded, in order.
    pub steps_run: Vec<String>,
    /// The forward step that failed, if one did.
    pub failed_step: Option<StepFailure>,
    /// The steps whose compensation succeeded, in the order they ran.
    pub compensated: Vec<String>,
    /// The compensations given up.
    pub compensation_failures: Vec<StepFailure>,
    /// The completion commands that failed (the saga still counts as completed).
    pub completion_failures: Vec<StepFailure>,
    /// Total commands dispatched, retries included.
    pub attempts: u32,
    /// The input and every reply gathered.
    pub data: SagaData,
}

/// Runs sagas in process, one call per saga.
#[derive(Clone)]
pub struct SagaExecutor {
    dispatcher: Arc<dyn CommandDispatcher>,
    sleeper: Arc<dyn Sleeper>,
}

impl std::fmt::Debug for SagaExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaExecutor").finish_non_exhaustive()
    }
}

/// The mutable record of one run.
struct Run<'a> {
    context: MessageContext<'a>,
    /// The id of the last reply seen, so each command names what caused it.
    causation_id: String,
    attempts: u32,
    data: SagaData,
}

impl Run<'_> {
    fn message(
        &self,
        step: &str,
        kind: StepKind,
        attempt: u32,
        command: SagaCommand,
    ) -> CommandMessage {
        // No deadline: the in-process runtime waits on the dispatcher, it does not time out.
        self.context
            .message(step, kind, attempt, &self.causation_id, None, command)
    }
}

impl SagaExecutor {
    /// An executor sending commands through `dispatcher` and waiting through `sleeper`.
    pub fn new(dispatcher: Arc<dyn CommandDispatcher>, sleeper: Arc<dyn Sleeper>) -> Self {
        Self {
            dispatcher,
            sleeper,
        }
    }

    /// Runs `definition` to its end: every step, or the compensations after a failure.
    pub async fn execute(
        &self,
        definition: &SagaDefinition,
        saga_id: &str,
        input: Value,
        correlation_id: &str,
    ) -> SagaOutcome {
        let mut run = Run {
            context: MessageContext {
                saga_id,
                saga_type: definition.name(),
                correlation_id,
            },
            causation_id: saga_id.to_string(),
            attempts: 0,
            data: SagaData::new(input),
        };
        let mut completed: Vec<&SagaStep> = Vec::new();
        let mut failed_step = None;
        for step in definition.steps() {
            match self.run_forward(&mut run, step).await {
                Ok(reply) => {
                    run.data
                        .replies
                        .insert(step.name().to_string(), reply.payload);
                    completed.push(step);
                }
                Err(reason) => {
                    // Recorded before compensating, so compensation builders can read it.
                    run.data.failure = Some(SagaFailure {
                        step: step.name().to_string(),
                        reason: reason.clone(),
                        timed_out: false,
                    });
                    failed_step = Some(StepFailure {
                        step: step.name().to_string(),
                        reason,
                    });
                    break;
                }
            }
        }
        let steps_run = completed.iter().map(|s| s.name().to_string()).collect();
        let mut compensated = Vec::new();
        let mut compensation_failures = Vec::new();
        let mut completion_failures = Vec::new();
        let status = if failed_step.is_some() {
            for step in completed.iter().rev() {
                // A step with nothing to undo is passed over.
                let Some(compensation) = step.compensation() else {
                    continue;
                };
                match self.run_compensation(&mut run, step, compensation).await {
                    Ok(reply) => {
                        if let Some(reply) = reply {
                            run.data
                                .compensation_replies
                                .insert(step.name().to_string(), reply.payload);
                        }
                        compensated.push(step.name().to_string());
                    }
                    // Never stop halfway: the remaining compensations still run.
                    Err(reason) => compensation_failures.push(StepFailure {
                        step: step.name().to_string(),
                        reason,
                    }),
                }
            }
            if compensation_failures.is_empty() {
                SagaStatus::Compensated
            } else {
                SagaStatus::CompensationFailed
            }
        } else {
            completion_failures = self.run_completion(&mut run, definition).await;
            SagaStatus::Completed
        };
        SagaOutcome {
            saga_id: saga_id.to_string(),
            status,
            steps_run,
            failed_step,
            compensated,
            compensation_failures,
            completion_failures,
            attempts: run.attempts,
            data: run.data,
        }
    }

    /// Dispatches `message` and counts the attempt.
    async fn dispatch(
        &self,
        run: &mut Run<'_>,
        message: CommandMessage,
    ) -> Result<DispatchOutcome, DispatchError> {
        run.attempts = run.attempts.saturating_add(1);
        let outcome = self.dispatcher.dispatch(message).await;
        if let Ok(DispatchOutcome::Reply(reply)) = &outcome {
            run.causation_id.clone_from(&reply.event_id);
        }
        outcome
    }

    /// Waits before attempt `attempt + 1` if the policy allows one; false when exhausted.
    async fn back_off(&self, policy: &RetryPolicy, attempt: u32) -> bool {
        if attempt >= policy.max_attempts {
            return false;
        }
        self.sleeper.sleep(policy.backoff_for(attempt)).await;
        true
    }

    /// Runs one forward step with retries; the success reply, or why the step failed.
    async fn run_forward(&self, run: &mut Run<'_>, step: &SagaStep) -> Result<Reply, String> {
        let command = step
            .build_command(&run.data)
            .map_err(|reason| format!("cannot build command: {reason}"))?;
        let mut attempt = 1;
        loop {
            let message = run.message(step.name(), StepKind::Forward, attempt, command.clone());
            match self.dispatch(run, message).await {
                Ok(DispatchOutcome::Reply(reply)) if step.succeeds_on_event(&reply.event_type) => {
                    return Ok(reply)
                }
                Ok(DispatchOutcome::Reply(reply)) if step.fails_on_event(&reply.event_type) => {
                    return Err(format!(
                        "step `{}` failed: {}",
                        step.name(),
                        reply.event_type
                    ))
                }
                Ok(DispatchOutcome::Reply(reply)) => {
                    return Err(format!("unexpected reply `{}`", reply.event_type))
                }
                // A forward step must show its effect; no event means nothing to build on.
                Ok(DispatchOutcome::NoChange) => {
                    return Err("no reply: the command changed nothing".into())
                }
                Err(DispatchError::Permanent(reason)) => return Err(reason),
                Err(DispatchError::Transient(reason)) => {
                    if !self.back_off(step.retry_policy(), attempt).await {
                        return Err(format!("gave up after {attempt} attempts: {reason}"));
                    }
                }
            }
            attempt += 1;
        }
    }

    /// Runs one compensation with retries; the confirming reply (none for no change), or why
    /// it was given up.
    async fn run_compensation(
        &self,
        run: &mut Run<'_>,
        step: &SagaStep,
        compensation: &Compensation,
    ) -> Result<Option<Reply>, String> {
        let command = compensation
            .build(&run.data)
            .map_err(|reason| format!("cannot build compensation: {reason}"))?;
        let mut attempt = 1;
        loop {
            let message = run.message(
                step.name(),
                StepKind::Compensation,
                attempt,
                command.clone(),
            );
            let reason = match self.dispatch(run, message).await {
                // Compensations are idempotent: nothing changed means it was already undone.
                Ok(DispatchOutcome::NoChange) => return Ok(None),
                Ok(DispatchOutcome::Reply(reply))
                    if compensation.succeeds_on(&reply.event_type) =>
                {
                    return Ok(Some(reply))
                }
                Ok(DispatchOutcome::Reply(reply)) => {
                    format!("unexpected reply `{}`", reply.event_type)
                }
                Err(DispatchError::Permanent(reason)) => return Err(reason),
                Err(DispatchError::Transient(reason)) => reason,
            };
            if !self.back_off(step.retry_policy(), attempt).await {
                return Err(format!("gave up after {attempt} attempts: {reason}"));
            }
            attempt += 1;
        }
    }

    /// Sends the completion commands, each retried only for transient faults and only by the
    /// definition's completion policy; failures are reported, not fatal.
    async fn run_completion(
        &self,
        run: &mut Run<'_>,
        definition: &SagaDefinition,
    ) -> Vec<StepFailure> {
        let commands = match definition.completion_commands(&run.data) {
            Ok(commands) => commands,
            Err(reason) => {
                return vec![StepFailure {
                    step: COMPLETION_STEP.to_string(),
                    reason: format!("cannot build completion commands: {reason}"),
                }]
            }
        };
        let mut failures = Vec::new();
        for (index, command) in commands.into_iter().enumerate() {
            let step = CommandMessage::completion_step(index);
            let mut attempt = 1;
            loop {
                let message = run.message(&step, StepKind::Completion, attempt, command.clone());
                match self.dispatch(run, message).await {
                    Ok(_) => break,
                    Err(DispatchError::Permanent(reason)) => {
                        failures.push(StepFailure { step, reason });
                        break;
                    }
                    Err(DispatchError::Transient(reason)) => {
                        if !self.back_off(definition.completion_retry(), attempt).await {
                            failures.push(StepFailure {
                                step,
                                reason: format!("gave up after {attempt} attempts: {reason}"),
                            });
                            break;
                        }
                    }
                }
                attempt += 1;
            }
        }
        failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saga::test_support::{order_input, order_saga, order_saga_with, order_steps};
    use serde_json::json;
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    type Planned = Result<DispatchOutcome, DispatchError>;

    /// Replies with each command type's usual success unless an outcome is planned for it.
    #[derive(Default)]
    struct ScriptedDispatcher {
        plans: Mutex<HashMap<String, VecDeque<Planned>>>,
        sent: Mutex<Vec<CommandMessage>>,
    }

    fn usual_reply(command_type: &str) -> &'static str {
        match command_type {
            "inventory.reserve" => "inventory.reserved",
            "inventory.release" => "inventory.released",
            "payment.charge" => "payment.processed",
            "payment.refund" => "payment.refunded",
            "shipment.schedule" => "shipment.scheduled",
            _ => "order.completed",
        }
    }

    fn reply(event_type: &str) -> Planned {
        Ok(DispatchOutcome::Reply(Reply::new(
            format!("planned-{event_type}"),
            event_type,
            json!({ "planned": true }),
        )))
    }

    fn transient() -> Planned {
        Err(DispatchError::Transient("broker busy".into()))
    }

    impl ScriptedDispatcher {
        fn plan(self, command_type: &str, outcomes: Vec<Planned>) -> Self {
            self.plans
                .lock()
                .unwrap()
                .entry(command_type.to_string())
                .or_default()
                .extend(outcomes);
            self
        }

        fn sent(&self) -> Vec<CommandMessage> {
            self.sent.lock().unwrap().clone()
        }

        fn sent_types(&self) -> Vec<String> {
            self.sent()
                .into_iter()
                .map(|m| m.command.command_type)
                .collect()
        }
    }

    impl CommandDispatcher for ScriptedDispatcher {
        fn dispatch(
            &self,
            message: CommandMessage,
        ) -> BoxFuture<Result<DispatchOutcome, DispatchError>> {
            let command_type = message.command.command_type.clone();
            let n = {
                let mut sent = self.sent.lock().unwrap();
                sent.push(message);
                sent.len()
            };
            let planned = self
                .plans
                .lock()
                .unwrap()
                .get_mut(&command_type)
                .and_then(VecDeque::pop_front);
            let outcome = planned.unwrap_or_else(|| {
                Ok(DispatchOutcome::Reply(Reply::new(
                    format!("evt-{n}"),
                    usual_reply(&command_type),
                    json!({ "payment_id": "pay-9", "n": n }),
                )))
            });
            Box::pin(async move { outcome })
        }
    }

    #[derive(Default)]
    struct RecordingSleeper {
        waits: Mutex<Vec<u64>>,
    }

    impl Sleeper for RecordingSleeper {
        fn sleep(&self, millis: u64) -> BoxFuture<()> {
            self.waits.lock().unwrap().push(millis);
            Box::pin(async {})
        }
    }

    async fn run(
        dispatcher: ScriptedDispatcher,
        definition: &SagaDefinition,
        input: Value,
    ) -> (SagaOutcome, Arc<ScriptedDispatcher>, Arc<RecordingSleeper>) {
        let dispatcher = Arc::new(dispatcher);
        let sleeper = Arc::new(RecordingSleeper::default());
        let executor = SagaExecutor::new(dispatcher.clone(), sleeper.clone());
        let outcome = executor
            .execute(definition, "saga-1", input, "corr-1")
            .await;
        (outcome, dispatcher, sleeper)
    }

    #[tokio::test]
    async fn all_steps_succeed_and_the_completion_command_is_sent() {
        let (outcome, dispatcher, sleeper) =
            run(ScriptedDispatcher::default(), &order_saga(), order_input()).await;
        assert_eq!(outcome.status, SagaStatus::Completed);
        assert_eq!(outcome.steps_run, ["reserve", "charge", "ship"]);
        assert_eq!(outcome.failed_step, None);
        assert!(outcome.compensated.is_empty());
        assert!(outcome.completion_failures.is_empty());
        assert_eq!(outcome.attempts, 4);
        assert_eq!(
            dispatcher.sent_types(),
            [
                "inventory.reserve",
                "payment.charge",
                "shipment.schedule",
                "order.complete"
            ]
        );
        assert_eq!(outcome.data.replies["charge"]["n"], 2);
        assert_eq!(outcome.data.input, order_input());
        let sent = dispatcher.sent();
        assert!(sent.iter().all(|m| m.correlation_id == "corr-1"
            && m.saga_id == "saga-1"
            && m.saga_type == "order_fulfilment"
            && m.deadline.is_none()));
        // Each command is caused by the reply before it; the first by the saga itself.
        let causes: Vec<&str> = sent.iter().map(|m| m.causation_id.as_str()).collect();
        assert_eq!(causes, ["saga-1", "evt-1", "evt-2", "evt-3"]);
        assert_eq!(sent[3].kind, StepKind::Completion);
        assert_eq!(sent[3].step, "on_completed#1");
        assert_eq!(
            sent[1].command_id,
            CommandMessage::command_id_for("saga-1", "charge", StepKind::Forward, 1)
        );
        assert!(sleeper.waits.lock().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_saga_runs_on_a_spawned_task_because_its_future_is_send() {
        let executor = SagaExecutor::new(
            Arc::new(ScriptedDispatcher::default()),
            Arc::new(RecordingSleeper::default()),
        );
        let definition = order_saga();
        let outcome = tokio::spawn(async move {
            executor
                .execute(&definition, "saga-2", order_input(), "corr-2")
                .await
        })
        .await
        .unwrap();
        assert_eq!(outcome.status, SagaStatus::Completed);
        assert_eq!(outcome.saga_id, "saga-2");
    }

    #[tokio::test]
    async fn a_failure_at_step_three_compensates_charge_then_reserve() {
        let dispatcher =
            ScriptedDispatcher::default().plan("shipment.schedule", vec![reply("shipment.failed")]);
        let (outcome, dispatcher, _) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, SagaStatus::Compensated);
        assert_eq!(outcome.steps_run, ["reserve", "charge"]);
        assert_eq!(
            outcome.failed_step,
            Some(StepFailure {
                step: "ship".into(),
                reason: "step `ship` failed: shipment.failed".into()
            })
        );
        assert_eq!(outcome.compensated, ["charge", "reserve"]);
        assert_eq!(
            dispatcher.sent_types(),
            [
                "inventory.reserve",
                "payment.charge",
                "shipment.schedule",
                "payment.refund",
                "inventory.release"
            ]
        );
        let sent = dispatcher.sent();
        assert_eq!(sent[3].kind, StepKind::Compensation);
        // The refund is built from the charge's reply and knows why it runs.
        assert_eq!(
            sent[3].command.payload,
            json!({"payment_id": "pay-9", "because": "ship"})
        );
        assert_eq!(
            outcome.data.failure,
            Some(SagaFailure {
                step: "ship".into(),
                reason: "step `ship` failed: shipment.failed".into(),
                timed_out: false
            })
        );
        assert_eq!(sent[3].causation_id, "planned-shipment.failed");
        assert!(outcome.data.compensation_replies.contains_key("reserve"));
        assert_eq!(outcome.attempts, 5);
    }

    #[tokio::test]
    async fn transient_errors_are_retried_with_the_policys_backoff_then_succeed() {
        let dispatcher =
            ScriptedDispatcher::default().plan("payment.charge", vec![transient(), transient()]);
        let (outcome, dispatcher, sleeper) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, SagaStatus::Completed);
        assert_eq!(*sleeper.waits.lock().unwrap(), [50, 100]);
        let charges: Vec<CommandMessage> = dispatcher
            .sent()
            .into_iter()
            .filter(|m| m.step == "charge")
            .collect();
        let attempts: Vec<u32> = charges.iter().map(|m| m.attempt).collect();
        assert_eq!(attempts, [1, 2, 3]);
        assert_ne!(charges[0].command_id, charges[1].command_id);
        assert_eq!(outcome.attempts, 6);
    }

    #[tokio::test]
    async fn exhausted_retries_fail_the_step_and_compensate_the_completed_ones() {
        let dispatcher = ScriptedDispatcher::default().plan(
            "payment.charge",
            vec![transient(), transient(), transient()],
        );
        let (outcome, dispatcher, sleeper) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, SagaStatus::Compensated);
        let failed = outcome.failed_step.unwrap();
        assert_eq!(failed.step, "charge");
        assert_eq!(failed.reason, "gave up after 3 attempts: broker busy");
        assert_eq!(outcome.compensated, ["reserve"]);
        assert_eq!(*sleeper.waits.lock().unwrap(), [50, 100]);
        assert_eq!(
            dispatcher.sent_types(),
            [
                "inventory.reserve",
                "payment.charge",
                "payment.charge",
                "payment.charge",
                "inventory.release"
            ]
        );
    }

    #[tokio::test]
    async fn a_custom_retry_policy_drives_attempts_and_backoff() {
        let mut steps = order_steps();
        steps[0] = steps[0].clone().retry(RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 10,
            multiplier: 3,
            max_backoff_ms: 100,
        });
        let dispatcher =
            ScriptedDispatcher::default().plan("inventory.reserve", vec![transient(); 5]);
        let (outcome, _, sleeper) = run(dispatcher, &order_saga_with(steps), order_input()).await;
        assert_eq!(*sleeper.waits.lock().unwrap(), [10, 30, 90, 100]);
        assert_eq!(outcome.attempts, 5);
        assert_eq!(outcome.status, SagaStatus::Compensated);
        assert!(outcome.compensated.is_empty());
    }

    #[tokio::test]
    async fn a_compensation_that_keeps_failing_is_recorded_and_the_others_still_run() {
        let dispatcher = ScriptedDispatcher::default()
            .plan("shipment.schedule", vec![reply("shipment.failed")])
            .plan(
                "payment.refund",
                vec![transient(), reply("payment.refund_pending"), transient()],
            );
        let (outcome, dispatcher, sleeper) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, SagaStatus::CompensationFailed);
        assert_eq!(
            outcome.compensation_failures,
            [StepFailure {
                step: "charge".into(),
                reason: "gave up after 3 attempts: broker busy".into()
            }]
        );
        assert_eq!(outcome.compensated, ["reserve"]);
        assert_eq!(
            dispatcher.sent_types()[3..],
            [
                "payment.refund",
                "payment.refund",
                "payment.refund",
                "inventory.release"
            ]
        );
        assert_eq!(*sleeper.waits.lock().unwrap(), [50, 100]);
    }

    #[tokio::test]
    async fn a_no_change_compensation_counts_as_compensated() {
        let dispatcher = ScriptedDispatcher::default()
            .plan("shipment.schedule", vec![reply("shipment.failed")])
            .plan("payment.refund", vec![Ok(DispatchOutcome::NoChange)]);
        let (outcome, _, _) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, SagaStatus::Compensated);
        assert_eq!(outcome.compensated, ["charge", "reserve"]);
        assert!(!outcome.data.compensation_replies.contains_key("charge"));
        assert!(outcome.data.compensation_replies.contains_key("reserve"));
    }

    #[tokio::test]
    async fn a_forward_no_change_or_permanent_error_fails_the_step_without_retry() {
        let dispatcher = ScriptedDispatcher::default()
            .plan("inventory.reserve", vec![Ok(DispatchOutcome::NoChange)]);
        let (outcome, dispatcher, _) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, SagaStatus::Compensated);
        assert_eq!(
            outcome.failed_step.unwrap().reason,
            "no reply: the command changed nothing"
        );
        assert_eq!(dispatcher.sent_types(), ["inventory.reserve"]);

        let dispatcher = ScriptedDispatcher::default().plan(
            "payment.charge",
            vec![Err(DispatchError::Permanent("card unknown".into()))],
        );
        let (outcome, dispatcher, sleeper) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.failed_step.unwrap().reason, "card unknown");
        assert_eq!(outcome.compensated, ["reserve"]);
        assert_eq!(dispatcher.sent().len(), 3);
        assert!(sleeper.waits.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unexpected_forward_reply_fails_the_step() {
        let dispatcher =
            ScriptedDispatcher::default().plan("payment.charge", vec![reply("inventory.reserved")]);
        let (outcome, _, _) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(
            outcome.failed_step.unwrap().reason,
            "unexpected reply `inventory.reserved`"
        );
        assert_eq!(outcome.compensated, ["reserve"]);
    }

    #[tokio::test]
    async fn a_command_that_cannot_be_built_fails_its_step_before_dispatch() {
        let mut input = order_input();
        if let Value::Object(map) = &mut input {
            map.remove("amount");
        }
        let (outcome, dispatcher, _) =
            run(ScriptedDispatcher::default(), &order_saga(), input).await;
        let failed = outcome.failed_step.unwrap();
        assert_eq!(failed.step, "charge");
        assert_eq!(failed.reason, "cannot build command: input has no `amount`");
        assert_eq!(
            dispatcher.sent_types(),
            ["inventory.reserve", "inventory.release"]
        );
    }

    #[tokio::test]
    async fn completion_failures_are_reported_without_failing_the_saga() {
        let dispatcher = ScriptedDispatcher::default().plan(
            "order.complete",
            vec![transient(), transient(), transient()],
        );
        let (outcome, _, sleeper) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, SagaStatus::Completed);
        assert_eq!(
            outcome.completion_failures,
            [StepFailure {
                step: "on_completed#1".into(),
                reason: "gave up after 3 attempts: broker busy".into()
            }]
        );
        assert_eq!(*sleeper.waits.lock().unwrap(), [50, 100]);
    }
}
