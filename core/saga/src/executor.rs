//! The in-process runtime: runs a saga to its end in one call, with [`orchestrate`] deciding
//! every move, exactly as the durable orchestrator does. This file only drives it: it sends
//! each command the decision carries straight to its service through an injected
//! [`CommandDispatcher`], feeds each reply back as [`SagaInput::Reply`], and when nothing in
//! flight answered, waits through an injected [`Sleeper`] until the awaited deadline and feeds
//! [`SagaInput::Tick`]. So forward-step retries, compensation retries, deadlines and outcomes
//! mean the same here as in every other runtime: the same definition and the same replies give
//! the same saga events.
//!
//! Nothing is persisted: a crash loses the run. Sagas that must survive crashes use the
//! event-sourced orchestrator over the same [`SagaDefinition`].

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::definition::{CommandMessage, SagaData, SagaDefinition, StepKind};
use super::instance::{InstanceStatus, SagaEvent, SagaInstance};
use super::orchestrator::{orchestrate, Reply, SagaError, SagaInput};
use super::BoxFuture;
use sagaflow_eventsourcing::clock::Clock;

/// Why a service did not answer a dispatched command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// A fault that may pass (a store unavailable, a conflict): the attempt goes unanswered
    /// and the saga's retry policy decides what comes next.
    #[error("transient dispatch failure: {0}")]
    Transient(String),
    /// A refusal that will not change (on Kafka, a dead letter): the attempt goes unanswered.
    #[error("permanent dispatch failure: {0}")]
    Permanent(String),
}

/// Where an in-process saga sends its commands.
pub trait CommandDispatcher: Send + Sync {
    /// Sends `message` to its service and returns the events its command produced, in order
    /// (none when the command changed nothing).
    fn dispatch(&self, message: CommandMessage) -> BoxFuture<Result<Vec<Reply>, DispatchError>>;
}

/// Waits; injected so the core never sleeps on its own (tests record, `make run` moves its
/// simulated clock).
pub trait Sleeper: Send + Sync {
    /// Completes after `millis` milliseconds.
    fn sleep(&self, millis: u64) -> BoxFuture<()>;
}

/// A command a service did not answer, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// The step's name (`on_completed#n` for a completion command).
    pub step: String,
    /// Why it failed.
    pub reason: String,
}

/// Everything an in-process saga run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaOutcome {
    /// The saga instance id.
    pub saga_id: String,
    /// How the saga ended: completed, compensated or compensation failed.
    pub status: InstanceStatus,
    /// The forward steps that succeeded, in order.
    pub steps_run: Vec<String>,
    /// The forward step that failed, with the saga's reason, if one did.
    pub failed_step: Option<StepFailure>,
    /// The steps whose compensation was confirmed, in the order they were confirmed.
    pub compensated: Vec<String>,
    /// The compensations given up, with the saga's reason.
    pub compensation_failures: Vec<StepFailure>,
    /// Commands a service refused or failed on, each with the dispatcher's reason: what a
    /// dead-letter topic would hold on Kafka.
    pub dispatch_failures: Vec<StepFailure>,
    /// The completion commands that failed (the saga still counts as completed).
    pub completion_failures: Vec<StepFailure>,
    /// Total commands dispatched, retries included.
    pub attempts: u32,
    /// The input and every reply gathered.
    pub data: SagaData,
    /// The saga's events, as the durable orchestrator would have stored them.
    pub events: Vec<SagaEvent>,
}

/// Runs sagas in process, one call per saga.
#[derive(Clone)]
pub struct SagaExecutor {
    dispatcher: Arc<dyn CommandDispatcher>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
}

impl std::fmt::Debug for SagaExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaExecutor").finish_non_exhaustive()
    }
}

/// One run: the saga as its events left it, and what the services did.
struct Run<'a> {
    definition: &'a SagaDefinition,
    state: SagaInstance,
    events: Vec<SagaEvent>,
    outbox: VecDeque<CommandMessage>,
    attempts: u32,
    dispatch_failures: Vec<StepFailure>,
    completion_failures: Vec<StepFailure>,
}

impl Run<'_> {
    /// Decides on `input` at `now` and records the decision.
    fn feed(
        &mut self,
        input: &SagaInput,
        now: sagaflow_eventsourcing::event::Timestamp,
    ) -> Result<(), SagaError> {
        let decision = orchestrate(self.definition, &self.state, input, now)?;
        for event in &decision.events {
            self.state.apply_event(event);
        }
        self.events.extend(decision.events);
        self.outbox.extend(decision.commands);
        Ok(())
    }
}

impl SagaExecutor {
    /// An executor sending commands through `dispatcher`, reading time from `clock` and
    /// waiting for deadlines through `sleeper`.
    pub fn new(
        dispatcher: Arc<dyn CommandDispatcher>,
        clock: Arc<dyn Clock>,
        sleeper: Arc<dyn Sleeper>,
    ) -> Self {
        Self {
            dispatcher,
            clock,
            sleeper,
        }
    }

    /// Runs `definition` to its end: every step, or the compensations after a failure.
    ///
    /// Refused only when the saga cannot start (its input is unusable) or its history breaks
    /// the definition: the same errors the durable orchestrator refuses a record with.
    pub async fn execute(
        &self,
        definition: &SagaDefinition,
        saga_id: &str,
        input: Value,
        correlation_id: &str,
    ) -> Result<SagaOutcome, SagaError> {
        let mut run = Run {
            definition,
            state: SagaInstance::default(),
            events: Vec::new(),
            outbox: VecDeque::new(),
            attempts: 0,
            dispatch_failures: Vec::new(),
            completion_failures: Vec::new(),
        };
        let start = SagaInput::Start {
            saga_id: saga_id.to_string(),
            input,
            correlation_id: correlation_id.to_string(),
        };
        run.feed(&start, self.clock.now())?;
        loop {
            while let Some(message) = run.outbox.pop_front() {
                self.deliver(&mut run, message).await?;
            }
            if run.state.is_finished() {
                break;
            }
            // Nothing in flight answered what the saga awaits: its deadline decides.
            let Some((_, _, deadline)) = run.state.awaiting() else {
                break;
            };
            let wait = deadline.as_millis() - self.clock.now().as_millis();
            if wait > 0 {
                self.sleeper.sleep(u64::try_from(wait).unwrap_or(0)).await;
            }
            // A sleeper that returns early still leaves the clock before the deadline; the
            // tick then changes nothing, so the tick is fed at the deadline at the latest.
            let now = self.clock.now().max(deadline);
            run.feed(&SagaInput::Tick, now)?;
        }
        Ok(self.outcome(saga_id, run))
    }

    /// Sends one command and feeds every event it produced back as a reply.
    async fn deliver(&self, run: &mut Run<'_>, message: CommandMessage) -> Result<(), SagaError> {
        run.attempts = run.attempts.saturating_add(1);
        let step = message.step.clone();
        let completion = message.kind == StepKind::Completion;
        match self.dispatcher.dispatch(message).await {
            Ok(replies) => {
                for reply in replies {
                    run.feed(&SagaInput::Reply(reply), self.clock.now())?;
                }
            }
            Err(error) => {
                let failure = StepFailure {
                    step,
                    reason: error.to_string(),
                };
                if completion {
                    run.completion_failures.push(failure);
                } else {
                    run.dispatch_failures.push(failure);
                }
            }
        }
        Ok(())
    }

    fn outcome(&self, saga_id: &str, run: Run<'_>) -> SagaOutcome {
        let state = &run.state;
        let reasons = |step: &str| {
            run.events.iter().rev().find_map(|event| match event {
                SagaEvent::CompensationFailed {
                    step: failed,
                    reason,
                    ..
                } if failed == step => Some(reason.clone()),
                _ => None,
            })
        };
        SagaOutcome {
            saga_id: saga_id.to_string(),
            status: state.status(),
            steps_run: state.completed_steps().to_vec(),
            failed_step: state.failed_step().map(|step| StepFailure {
                step: step.to_string(),
                reason: state.failure_reason().unwrap_or_default().to_string(),
            }),
            compensated: state.compensated_steps().to_vec(),
            compensation_failures: state
                .failed_compensations()
                .iter()
                .map(|step| StepFailure {
                    step: step.clone(),
                    reason: reasons(step).unwrap_or_default(),
                })
                .collect(),
            dispatch_failures: run.dispatch_failures,
            completion_failures: run.completion_failures,
            attempts: run.attempts,
            data: state.data().clone(),
            events: run.events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{RetryPolicy, SagaCommand};
    use crate::test_support::{order_input, order_saga, order_saga_with, order_steps};
    use sagaflow_eventsourcing::clock::SimClock;
    use sagaflow_eventsourcing::event::Timestamp;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::Mutex;

    type Planned = Result<Vec<Reply>, DispatchError>;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

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
        Ok(vec![Reply::new(
            format!("planned-{event_type}"),
            event_type,
            json!({ "planned": true }),
        )])
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
        ) -> BoxFuture<Result<Vec<Reply>, DispatchError>> {
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
                Ok(vec![Reply::new(
                    format!("evt-{n}"),
                    usual_reply(&command_type),
                    json!({ "payment_id": "pay-9", "n": n }),
                )])
            });
            Box::pin(async move { outcome })
        }
    }

    /// Moves its clock by each wait, and remembers the waits.
    struct RecordingSleeper {
        clock: SimClock,
        waits: Mutex<Vec<u64>>,
    }

    impl Sleeper for RecordingSleeper {
        fn sleep(&self, millis: u64) -> BoxFuture<()> {
            self.waits.lock().unwrap().push(millis);
            self.clock
                .advance(i64::try_from(millis).unwrap_or(i64::MAX));
            Box::pin(async {})
        }
    }

    fn executor(dispatcher: Arc<ScriptedDispatcher>) -> (SagaExecutor, Arc<RecordingSleeper>) {
        let clock = SimClock::starting_at(T0);
        let sleeper = Arc::new(RecordingSleeper {
            clock: clock.clone(),
            waits: Mutex::new(Vec::new()),
        });
        (
            SagaExecutor::new(dispatcher, Arc::new(clock), sleeper.clone()),
            sleeper,
        )
    }

    async fn run(
        dispatcher: ScriptedDispatcher,
        definition: &SagaDefinition,
        input: Value,
    ) -> (SagaOutcome, Arc<ScriptedDispatcher>, Vec<u64>) {
        let dispatcher = Arc::new(dispatcher);
        let (executor, sleeper) = executor(dispatcher.clone());
        let outcome = executor
            .execute(definition, "saga-1", input, "corr-1")
            .await
            .unwrap();
        let waits = sleeper.waits.lock().unwrap().clone();
        (outcome, dispatcher, waits)
    }

    #[tokio::test]
    async fn all_steps_succeed_and_the_completion_command_is_sent() {
        let (outcome, dispatcher, waits) =
            run(ScriptedDispatcher::default(), &order_saga(), order_input()).await;
        assert_eq!(outcome.status, InstanceStatus::Completed);
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
            && m.saga_type == "order_fulfilment"));
        // Each step command is due back within its step's timeout, as on the durable path.
        assert_eq!(sent[1].deadline, Some(T0.plus_millis(2_000)));
        // Each command is caused by the reply before it; the first by the saga itself.
        let causes: Vec<&str> = sent.iter().map(|m| m.causation_id.as_str()).collect();
        assert_eq!(causes, ["saga-1", "evt-1", "evt-2", "evt-3"]);
        assert_eq!(sent[3].kind, StepKind::Completion);
        assert_eq!(sent[3].step, "on_completed#1");
        assert_eq!(
            sent[1].command_id,
            CommandMessage::command_id_for("saga-1", "charge", StepKind::Forward, 1)
        );
        assert!(waits.is_empty());
        assert!(matches!(
            outcome.events.last(),
            Some(SagaEvent::Completed { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_saga_runs_on_a_spawned_task_because_its_future_is_send() {
        let (executor, _) = executor(Arc::new(ScriptedDispatcher::default()));
        let definition = order_saga();
        let outcome = tokio::spawn(async move {
            executor
                .execute(&definition, "saga-2", order_input(), "corr-2")
                .await
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(outcome.status, InstanceStatus::Completed);
        assert_eq!(outcome.saga_id, "saga-2");
    }

    #[tokio::test]
    async fn a_failure_at_step_three_compensates_charge_then_reserve() {
        let dispatcher =
            ScriptedDispatcher::default().plan("shipment.schedule", vec![reply("shipment.failed")]);
        let (outcome, dispatcher, waits) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, InstanceStatus::Compensated);
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
        assert_eq!(sent[3].command.payload["payment_id"], "pay-9");
        assert_eq!(sent[3].command.payload["because"], "ship");
        assert_eq!(sent[3].causation_id, "planned-shipment.failed");
        assert!(outcome.data.compensation_replies.contains_key("reserve"));
        assert_eq!(outcome.attempts, 5);
        assert!(waits.is_empty(), "every command was answered");
    }

    #[tokio::test]
    async fn an_unanswered_forward_attempt_is_sent_again_after_its_wait_and_then_succeeds() {
        let dispatcher =
            ScriptedDispatcher::default().plan("payment.charge", vec![transient(), transient()]);
        let (outcome, dispatcher, waits) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, InstanceStatus::Completed);
        // Attempt 1 awaited the charge's 2 s timeout, attempt 2 twice that.
        assert_eq!(waits, [2_000, 4_000]);
        let charges: Vec<CommandMessage> = dispatcher
            .sent()
            .into_iter()
            .filter(|m| m.command.command_type == "payment.charge")
            .collect();
        let attempts: Vec<u32> = charges.iter().map(|m| m.attempt).collect();
        assert_eq!(attempts, [1, 2, 3]);
        assert_ne!(charges[0].command_id, charges[1].command_id);
        assert_eq!(charges[2].deadline, Some(T0.plus_millis(6_000 + 8_000)));
        assert_eq!(outcome.attempts, 6);
        assert_eq!(outcome.dispatch_failures.len(), 2);
        assert_eq!(outcome.dispatch_failures[0].step, "charge");
    }

    #[tokio::test]
    async fn exhausted_forward_attempts_fail_the_step_and_undo_it_with_the_completed_ones() {
        let dispatcher = ScriptedDispatcher::default().plan(
            "payment.charge",
            vec![transient(), transient(), transient()],
        );
        let (outcome, dispatcher, waits) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, InstanceStatus::Compensated);
        let failed = outcome.failed_step.unwrap();
        assert_eq!(failed.step, "charge");
        assert_eq!(
            failed.reason,
            "step `charge` got no reply to any of 3 attempts"
        );
        // A step that timed out may have taken effect after all, so it is undone too.
        assert_eq!(outcome.compensated, ["charge", "reserve"]);
        assert_eq!(waits, [2_000, 4_000, 8_000]);
        assert_eq!(
            dispatcher.sent_types(),
            [
                "inventory.reserve",
                "payment.charge",
                "payment.charge",
                "payment.charge",
                "payment.refund",
                "inventory.release"
            ]
        );
        assert!(outcome.events.iter().any(|e| matches!(
            e,
            SagaEvent::StepFailed {
                timed_out: true,
                ..
            }
        )));
    }

    #[tokio::test]
    async fn the_forward_policy_sets_the_attempts_and_one_attempt_fails_at_the_first_deadline() {
        let mut steps = order_steps();
        steps[1] = steps[1].clone().retry(RetryPolicy::no_retry());
        let dispatcher = ScriptedDispatcher::default().plan(
            "payment.charge",
            vec![Err(DispatchError::Permanent("card unknown".into()))],
        );
        let (outcome, _, waits) = run(dispatcher, &order_saga_with(steps), order_input()).await;
        assert_eq!(waits, [2_000]);
        assert_eq!(outcome.status, InstanceStatus::Compensated);
        assert_eq!(
            outcome.failed_step.unwrap().reason,
            "step `charge` got no reply within 2000ms"
        );
        // The service's own reason is kept, as a dead letter's would be.
        assert_eq!(
            outcome.dispatch_failures,
            [StepFailure {
                step: "charge".into(),
                reason: "permanent dispatch failure: card unknown".into()
            }]
        );
    }

    #[tokio::test]
    async fn a_compensation_that_keeps_failing_is_recorded_and_the_others_still_run() {
        let mut steps = order_steps();
        steps[1] = steps[1]
            .clone()
            .compensation_retry(RetryPolicy::attempts(2));
        let dispatcher = ScriptedDispatcher::default()
            .plan("shipment.schedule", vec![reply("shipment.failed")])
            .plan("payment.refund", vec![transient(), transient()]);
        let (outcome, _, waits) = run(dispatcher, &order_saga_with(steps), order_input()).await;
        assert_eq!(outcome.status, InstanceStatus::CompensationFailed);
        assert_eq!(
            outcome.compensation_failures,
            [StepFailure {
                step: "charge".into(),
                reason: "compensation of `charge` unconfirmed after 2 attempts".into()
            }]
        );
        assert_eq!(outcome.compensated, ["reserve"]);
        assert_eq!(waits, [2_000, 4_000]);
    }

    #[tokio::test]
    async fn a_reply_that_is_not_the_steps_is_ignored_until_the_step_times_out() {
        let mut steps = order_steps();
        steps[1] = steps[1].clone().retry(RetryPolicy::no_retry());
        let dispatcher =
            ScriptedDispatcher::default().plan("payment.charge", vec![reply("payment.pending")]);
        let (outcome, _, waits) = run(dispatcher, &order_saga_with(steps), order_input()).await;
        assert_eq!(waits, [2_000]);
        assert_eq!(outcome.failed_step.unwrap().step, "charge");
        assert_eq!(outcome.compensated, ["charge", "reserve"]);
    }

    #[tokio::test]
    async fn a_command_that_cannot_be_built_fails_its_step_before_dispatch() {
        let mut steps = order_steps();
        steps[2] = crate::SagaStep::new(
            "ship",
            |_: &SagaData| -> Result<SagaCommand, crate::CommandBuildError> {
                Err(crate::CommandBuildError::MissingInput("address".into()))
            },
        )
        .succeeds_on(&["shipment.scheduled"]);
        let (outcome, dispatcher, _) = run(
            ScriptedDispatcher::default(),
            &order_saga_with(steps),
            order_input(),
        )
        .await;
        assert_eq!(outcome.status, InstanceStatus::Compensated);
        assert_eq!(
            outcome.failed_step.unwrap().reason,
            "cannot build command: saga input has no field `address`"
        );
        assert!(!dispatcher
            .sent_types()
            .contains(&"shipment.schedule".to_string()));
    }

    #[tokio::test]
    async fn an_unusable_input_is_refused_before_anything_is_sent() {
        let dispatcher = Arc::new(ScriptedDispatcher::default());
        let (executor, _) = executor(dispatcher.clone());
        let refused = executor
            .execute(&order_saga(), "saga-1", json!({}), "corr-1")
            .await
            .unwrap_err();
        assert!(
            matches!(refused, SagaError::CommandBuild { ref step, .. } if step == "reserve"),
            "{refused:?}"
        );
        assert!(dispatcher.sent().is_empty());
    }

    #[tokio::test]
    async fn a_failed_completion_command_is_reported_and_the_saga_still_completes() {
        let dispatcher = ScriptedDispatcher::default().plan("order.complete", vec![transient()]);
        let (outcome, _, _) = run(dispatcher, &order_saga(), order_input()).await;
        assert_eq!(outcome.status, InstanceStatus::Completed);
        assert_eq!(
            outcome.completion_failures,
            [StepFailure {
                step: "on_completed#1".into(),
                reason: "transient dispatch failure: broker busy".into()
            }]
        );
    }
}
