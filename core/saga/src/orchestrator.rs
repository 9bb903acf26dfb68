//! The durable orchestrator: a pure function from (definition, saga state, input, time) to the
//! events to record and the commands to send. Persisting it through the [`Repository`] gives
//! optimistic concurrency and idempotency; a relay publishes the commands from stored events.
//!
//! [`Repository`]: sagaflow_eventsourcing::repository::Repository

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::definition::{
    CommandBuildError, CommandMessage, MessageContext, SagaCommand, SagaDefinition, SagaStep,
    StepKind, COMPLETION_STEP,
};
use super::instance::{InstanceStatus, SagaEvent, SagaInstance};
use sagaflow_eventsourcing::aggregate::Aggregate;
use sagaflow_eventsourcing::event::{DecodeError, StoredEvent, Timestamp};

/// What drives a saga forward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SagaInput {
    /// Start the saga with its input.
    Start {
        /// The saga instance id (also its stream id).
        saga_id: String,
        /// The data the steps build their commands from.
        input: Value,
        /// Correlation id stamped on every command the saga issues.
        correlation_id: String,
    },
    /// A service's reply event.
    Reply(Reply),
    /// Time passed: check the awaited command's deadline.
    Tick,
    /// Someone outside (the customer) cancels the saga while it runs.
    Cancel {
        /// The cancel command's id.
        cancel_id: String,
        /// Why, in the canceller's words.
        reason: String,
    },
}

/// A service's reply to a saga's command: the event its command produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The reply event's id.
    pub event_id: String,
    /// The reply event's type, which decides what it means to the awaited step.
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

/// What the orchestrator decided: events to record and the commands they carry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SagaDecision {
    /// Events to append to the saga's stream, in order.
    pub events: Vec<SagaEvent>,
    /// The commands carried by those events, to send once the events are stored.
    pub commands: Vec<CommandMessage>,
}

impl SagaDecision {
    /// Whether nothing happens.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// Why the orchestrator refused an input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SagaError {
    /// A reply or tick reached a saga that was never started.
    #[error("the saga has not started")]
    NotStarted,
    /// The start input is unusable.
    #[error("cannot start the saga: {reason}")]
    InvalidStart {
        /// What is wrong.
        reason: String,
    },
    /// A command that cannot be deferred to a step failure could not be built.
    #[error("cannot build the command of `{step}`: {reason}")]
    CommandBuild {
        /// The step (or `on_completed`).
        step: String,
        /// The builder's complaint.
        #[source]
        reason: CommandBuildError,
    },
    /// The saga's history names a step the definition does not have.
    #[error("the definition has no step `{0}`")]
    UnknownStep(String),
    /// The saga awaits a compensation the definition does not define.
    #[error("step `{0}` has no compensation in the definition")]
    NoCompensation(String),
    /// A cancel came when the saga can no longer be cancelled: it finished, or it is already
    /// compensating a failure or an earlier cancel.
    #[error("cannot cancel a saga that is {status:?}: {detail}")]
    CancelRefused {
        /// Where the saga was.
        status: InstanceStatus,
        /// What that means for the order.
        detail: String,
    },
    /// The saga was started by another definition.
    #[error("saga of type `{found}` cannot be driven by definition `{expected}`")]
    WrongDefinition {
        /// The definition passed in.
        expected: String,
        /// The saga's recorded type.
        found: String,
    },
}

/// The command handled by the [`SagaInstance`] aggregate: an input, the definition, the time.
#[derive(Clone)]
pub struct SagaTrigger {
    /// The saga's definition (not stored: the code owns it).
    pub definition: SagaDefinition,
    /// What happened.
    pub input: SagaInput,
    /// The time of the decision, for deadlines and timestamps.
    pub now: Timestamp,
}

impl fmt::Debug for SagaTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaTrigger")
            .field("definition", &self.definition.name())
            .field("input", &self.input)
            .field("now", &self.now)
            .finish()
    }
}

impl Aggregate for SagaInstance {
    const TYPE: &'static str = "saga";

    type Command = SagaTrigger;
    type Event = SagaEvent;
    type Error = SagaError;

    fn decide(&self, trigger: &SagaTrigger) -> Result<Vec<SagaEvent>, SagaError> {
        orchestrate(&trigger.definition, self, &trigger.input, trigger.now).map(|d| d.events)
    }

    fn apply(&mut self, event: &SagaEvent) {
        self.apply_event(event);
    }

    fn wake_at(&self) -> Option<Timestamp> {
        self.awaiting().map(|(_, _, deadline)| deadline)
    }
}

/// The commands carried by saga events, in order: what a relay publishes after they are stored.
pub fn commands_in<'a>(events: impl IntoIterator<Item = &'a SagaEvent>) -> Vec<CommandMessage> {
    let mut commands = Vec::new();
    for event in events {
        match event {
            SagaEvent::StepRequested { command, .. }
            | SagaEvent::CompensationRequested { command, .. } => commands.push(command.clone()),
            SagaEvent::Completed {
                completion_commands,
                ..
            } => commands.extend(completion_commands.iter().cloned()),
            _ => {}
        }
    }
    commands
}

/// The commands carried by stored saga events; events of other aggregate types are skipped.
pub fn commands_in_stored(events: &[StoredEvent]) -> Result<Vec<CommandMessage>, DecodeError> {
    let mut decoded = Vec::new();
    for stored in events
        .iter()
        .filter(|e| e.aggregate_type == SagaInstance::TYPE)
    {
        decoded.push(stored.decode::<SagaEvent>()?.payload);
    }
    Ok(commands_in(&decoded))
}

/// Decides what the saga does with `input` at `now`: the events to record and commands to send.
///
/// Deterministic: the same definition, state, input and time always give the same decision.
/// Inputs that do not concern the saga (late, duplicate or unrelated replies, early ticks,
/// anything after the end) give an empty decision rather than an error, so redelivery is safe.
pub fn orchestrate(
    definition: &SagaDefinition,
    state: &SagaInstance,
    input: &SagaInput,
    now: Timestamp,
) -> Result<SagaDecision, SagaError> {
    if state.status() == InstanceStatus::NotStarted {
        return match input {
            SagaInput::Start {
                saga_id,
                input,
                correlation_id,
            } => {
                let mut decider = Decider::new(definition, state, now, saga_id);
                decider.start(saga_id, input, correlation_id)?;
                Ok(decider.finish())
            }
            SagaInput::Reply(_) | SagaInput::Tick | SagaInput::Cancel { .. } => {
                Err(SagaError::NotStarted)
            }
        };
    }
    if state.saga_type() != definition.name() {
        return Err(SagaError::WrongDefinition {
            expected: definition.name().to_string(),
            found: state.saga_type().to_string(),
        });
    }
    if state.is_finished() {
        return match input {
            // A compensation given up on may still be confirmed: its command was queued, not
            // lost. The saga's record then says what really happened to the money and stock.
            SagaInput::Reply(Reply {
                event_id,
                event_type,
                payload,
            }) if state.status() == InstanceStatus::CompensationFailed
                && !state.has_seen_reply(event_id) =>
            {
                let mut decider = Decider::new(definition, state, now, event_id);
                decider.on_late_compensation(event_id, event_type, payload)?;
                Ok(decider.finish())
            }
            SagaInput::Cancel { .. } => Err(cancel_refused(state)),
            _ => Ok(SagaDecision::default()),
        };
    }
    match input {
        // A second start of the same saga is a redelivery: nothing new happens.
        SagaInput::Start { .. } => Ok(SagaDecision::default()),
        SagaInput::Reply(Reply {
            event_id,
            event_type,
            payload,
        }) => {
            // Routing replies to their saga (by correlation id) is the caller's job; here a
            // reply already consumed is recognised by its id.
            if state.has_seen_reply(event_id) {
                return Ok(SagaDecision::default());
            }
            let mut decider = Decider::new(definition, state, now, event_id);
            decider.on_reply(event_id, event_type, payload)?;
            Ok(decider.finish())
        }
        SagaInput::Tick => {
            let mut decider = Decider::new(definition, state, now, state.saga_id());
            decider.on_tick()?;
            Ok(decider.finish())
        }
        SagaInput::Cancel { cancel_id, reason } => {
            let Some(awaited) = state.awaited().filter(|a| a.kind == StepKind::Forward) else {
                // Compensating already: the rollback under way is the one that happens.
                return Err(cancel_refused(state));
            };
            let mut decider = Decider::new(definition, state, now, cancel_id);
            decider.emit(SagaEvent::Cancelled {
                step: awaited.step.clone(),
                reason: reason.clone(),
                cancel_id: cancel_id.clone(),
            });
            decider.continue_compensation()?;
            Ok(decider.finish())
        }
    }
}

/// Why `state` refuses a cancel, in words an operator can act on.
fn cancel_refused(state: &SagaInstance) -> SagaError {
    let detail = match state.status() {
        InstanceStatus::Completed => "the order was completed".to_string(),
        InstanceStatus::Compensated | InstanceStatus::CompensationFailed => format!(
            "the order was already cancelled ({})",
            state.failure_reason().unwrap_or("no reason recorded")
        ),
        InstanceStatus::Compensating => format!(
            "the order is already being cancelled ({})",
            state.failure_reason().unwrap_or("no reason recorded")
        ),
        InstanceStatus::NotStarted | InstanceStatus::Running => "it is not running".to_string(),
    };
    SagaError::CancelRefused {
        status: state.status(),
        detail,
    }
}

/// Accumulates one decision, applying each event to a working copy of the state so later
/// choices in the same decision see earlier ones (as a replay of the stream would).
struct Decider<'a> {
    definition: &'a SagaDefinition,
    next: SagaInstance,
    events: Vec<SagaEvent>,
    now: Timestamp,
    causation_id: String,
}

impl<'a> Decider<'a> {
    fn new(
        definition: &'a SagaDefinition,
        state: &SagaInstance,
        now: Timestamp,
        causation_id: &str,
    ) -> Self {
        Self {
            definition,
            next: state.clone(),
            events: Vec::new(),
            now,
            causation_id: causation_id.to_string(),
        }
    }

    fn finish(self) -> SagaDecision {
        let commands = commands_in(&self.events);
        SagaDecision {
            events: self.events,
            commands,
        }
    }

    fn emit(&mut self, event: SagaEvent) {
        self.next.apply_event(&event);
        self.events.push(event);
    }

    fn step(&self, name: &str) -> Result<&'a SagaStep, SagaError> {
        self.definition
            .step(name)
            .ok_or_else(|| SagaError::UnknownStep(name.to_string()))
    }

    /// The message for `step`'s command, due back by `now` plus the step's timeout (for a
    /// compensation, the growing wait of its attempt).
    fn message(
        &self,
        step: &SagaStep,
        kind: StepKind,
        attempt: u32,
        command: SagaCommand,
    ) -> (CommandMessage, Timestamp) {
        let context = MessageContext {
            saga_id: self.next.saga_id(),
            saga_type: self.definition.name(),
            correlation_id: self.next.correlation_id(),
        };
        let deadline = self.now.plus_millis(step.attempt_wait(attempt));
        let message = context.message(
            step.name(),
            kind,
            attempt,
            &self.causation_id,
            Some(deadline),
            command,
        );
        (message, deadline)
    }

    fn start(
        &mut self,
        saga_id: &str,
        input: &Value,
        correlation_id: &str,
    ) -> Result<(), SagaError> {
        for (field, value) in [("saga_id", saga_id), ("correlation_id", correlation_id)] {
            if value.trim().is_empty() {
                return Err(SagaError::InvalidStart {
                    reason: format!("`{field}` is empty"),
                });
            }
        }
        self.emit(SagaEvent::Started {
            saga_type: self.definition.name().to_string(),
            saga_id: saga_id.to_string(),
            correlation_id: correlation_id.to_string(),
            input: input.clone(),
            started_at: self.now,
        });
        // Nothing is recorded when the first command cannot be built: the input is refused
        // as a whole rather than starting a saga that fails before doing anything.
        self.request_step(0, 1)
            .map_err(|(step, reason)| SagaError::CommandBuild { step, reason })
    }

    /// Requests attempt `attempt` of the forward step at `index`; `Err((step, reason))` if its
    /// command cannot be built.
    fn request_step(
        &mut self,
        index: usize,
        attempt: u32,
    ) -> Result<(), (String, CommandBuildError)> {
        let Some(step) = self.definition.steps().get(index) else {
            return Err((format!("#{index}"), CommandBuildError::NoSuchStep));
        };
        let command = step
            .build_command(self.next.data())
            .map_err(|reason| (step.name().to_string(), reason))?;
        let (command, deadline) = self.message(step, StepKind::Forward, attempt, command);
        self.emit(SagaEvent::StepRequested {
            step: step.name().to_string(),
            attempt,
            command,
            deadline,
        });
        Ok(())
    }

    /// Requests attempt `attempt` of the step at `index`. A command that cannot be built is that
    /// step's failure: the saga compensates instead of sticking on an input it can never get
    /// past.
    fn request_step_or_fail(&mut self, index: usize, attempt: u32) -> Result<(), SagaError> {
        match self.request_step(index, attempt) {
            Ok(()) => Ok(()),
            Err((step, reason)) => self.fail_step(
                &step,
                format!("cannot build command: {reason}"),
                None,
                false,
            ),
        }
    }

    fn on_reply(
        &mut self,
        event_id: &str,
        event_type: &str,
        payload: &Value,
    ) -> Result<(), SagaError> {
        if self.on_late_compensation(event_id, event_type, payload)? {
            return Ok(());
        }
        let Some(awaited) = self.next.awaited().cloned() else {
            return Ok(());
        };
        let step = self.step(&awaited.step)?;
        match awaited.kind {
            StepKind::Forward if step.succeeds_on_event(event_type) => {
                self.emit(SagaEvent::StepSucceeded {
                    step: step.name().to_string(),
                    reply_event_id: event_id.to_string(),
                    reply_type: event_type.to_string(),
                    reply: payload.clone(),
                });
                self.advance()
            }
            StepKind::Forward if step.fails_on_event(event_type) => self.fail_step(
                step.name(),
                format!("step `{}` failed: {event_type}", step.name()),
                Some(event_id),
                false,
            ),
            StepKind::Compensation => {
                let compensation = step
                    .compensation()
                    .ok_or_else(|| SagaError::NoCompensation(step.name().to_string()))?;
                if !compensation.succeeds_on(event_type) {
                    return Ok(());
                }
                self.emit(SagaEvent::StepCompensated {
                    step: step.name().to_string(),
                    reply_event_id: Some(event_id.to_string()),
                    reply: payload.clone(),
                });
                self.continue_compensation()
            }
            // Replies of other steps, late replies and unrelated events are not this step's.
            StepKind::Forward | StepKind::Completion => Ok(()),
        }
    }

    /// Records a confirmation of a compensation already given up on; `Ok(true)` if the reply
    /// was one. It changes nothing else: the saga has moved on from that step.
    fn on_late_compensation(
        &mut self,
        event_id: &str,
        event_type: &str,
        payload: &Value,
    ) -> Result<bool, SagaError> {
        let mut confirmed = None;
        for name in self.next.failed_compensations() {
            let step = self.step(name)?;
            if step
                .compensation()
                .is_some_and(|compensation| compensation.succeeds_on(event_type))
            {
                confirmed = Some(step.name().to_string());
                break;
            }
        }
        let Some(step) = confirmed else {
            return Ok(false);
        };
        self.emit(SagaEvent::StepCompensated {
            step,
            reply_event_id: Some(event_id.to_string()),
            reply: payload.clone(),
        });
        Ok(true)
    }

    fn on_tick(&mut self) -> Result<(), SagaError> {
        let Some(awaited) = self.next.awaited().cloned() else {
            return Ok(());
        };
        if self.now < awaited.deadline {
            return Ok(());
        }
        let step = self.step(&awaited.step)?;
        match awaited.kind {
            StepKind::Forward if awaited.attempt < step.retry_policy().max_attempts => {
                // The same command again, under the next attempt's id and a longer wait.
                let index = self.next.completed_steps().len();
                self.request_step_or_fail(index, awaited.attempt + 1)
            }
            StepKind::Forward => self.fail_step(
                step.name(),
                if awaited.attempt > 1 {
                    format!(
                        "step `{}` got no reply to any of {} attempts",
                        step.name(),
                        awaited.attempt
                    )
                } else {
                    format!(
                        "step `{}` got no reply within {}ms",
                        step.name(),
                        step.timeout()
                    )
                },
                None,
                true,
            ),
            StepKind::Compensation => {
                if awaited.attempt < step.compensation_retry_policy().max_attempts {
                    if self.request_compensation(step, awaited.attempt + 1)? {
                        return Ok(());
                    }
                    self.continue_compensation()
                } else {
                    self.emit(SagaEvent::CompensationFailed {
                        step: step.name().to_string(),
                        reason: format!(
                            "compensation of `{}` unconfirmed after {} attempts",
                            step.name(),
                            awaited.attempt
                        ),
                        attempts: awaited.attempt,
                    });
                    self.continue_compensation()
                }
            }
            StepKind::Completion => Ok(()),
        }
    }

    /// After a step succeeded: request the next step, or complete after the last one.
    fn advance(&mut self) -> Result<(), SagaError> {
        let index = self.next.completed_steps().len();
        if index < self.definition.steps().len() {
            return self.request_step_or_fail(index, 1);
        }
        let commands = self
            .definition
            .completion_commands(self.next.data())
            .map_err(|reason| SagaError::CommandBuild {
                step: COMPLETION_STEP.to_string(),
                reason,
            })?;
        let context = MessageContext {
            saga_id: self.next.saga_id(),
            saga_type: self.definition.name(),
            correlation_id: self.next.correlation_id(),
        };
        let completion_commands = context.completion_messages(&self.causation_id, commands);
        self.emit(SagaEvent::Completed {
            completion_commands,
            finished_at: self.now,
        });
        Ok(())
    }

    fn fail_step(
        &mut self,
        step: &str,
        reason: String,
        reply_event_id: Option<&str>,
        timed_out: bool,
    ) -> Result<(), SagaError> {
        self.emit(SagaEvent::StepFailed {
            step: step.to_string(),
            reason,
            reply_event_id: reply_event_id.map(str::to_string),
            timed_out,
        });
        self.continue_compensation()
    }

    /// Requests the compensation of the most recent step that has one, or ends the saga.
    fn continue_compensation(&mut self) -> Result<(), SagaError> {
        loop {
            let mut candidate = None;
            for name in self.next.pending_compensations().iter().rev() {
                let step = self.step(name)?;
                if step.has_compensation() {
                    candidate = Some(step);
                    break;
                }
            }
            let Some(step) = candidate else {
                self.emit(SagaEvent::Aborted {
                    reason: self.next.failure_reason().unwrap_or_default().to_string(),
                    compensation_failed: self.next.failed_compensations().to_vec(),
                    finished_at: self.now,
                });
                return Ok(());
            };
            if self.request_compensation(step, 1)? {
                return Ok(());
            }
            // The compensation could not be built and was recorded as failed; try the next.
        }
    }

    /// Requests `step`'s compensation; `Ok(false)` if it could not be built (recorded as failed).
    fn request_compensation(&mut self, step: &SagaStep, attempt: u32) -> Result<bool, SagaError> {
        let compensation = step
            .compensation()
            .ok_or_else(|| SagaError::NoCompensation(step.name().to_string()))?;
        match compensation.build(self.next.data()) {
            Ok(command) => {
                let (command, deadline) =
                    self.message(step, StepKind::Compensation, attempt, command);
                self.emit(SagaEvent::CompensationRequested {
                    step: step.name().to_string(),
                    attempt,
                    command,
                    deadline,
                });
                Ok(true)
            }
            Err(reason) => {
                self.emit(SagaEvent::CompensationFailed {
                    step: step.name().to_string(),
                    reason: format!("cannot build compensation: {reason}"),
                    attempts: attempt.saturating_sub(1),
                });
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{RetryPolicy, SagaFailure, SagaStep};
    use crate::test_support::{order_input, order_saga, order_saga_with, order_steps};
    use sagaflow_eventsourcing::event::{CommandMeta, DomainEvent, EventEnvelope};
    use sagaflow_eventsourcing::repository::Repository;
    use sagaflow_eventsourcing::store::InMemoryEventStore;
    use serde_json::json;
    use std::sync::Arc;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn at(offset_ms: i64) -> Timestamp {
        T0.plus_millis(offset_ms)
    }

    fn start() -> SagaInput {
        SagaInput::Start {
            saga_id: "saga-1".into(),
            input: order_input(),
            correlation_id: "corr-1".into(),
        }
    }

    fn reply(event_id: &str, event_type: &str) -> SagaInput {
        SagaInput::Reply(Reply {
            event_id: event_id.into(),
            event_type: event_type.into(),
            payload: json!({ "payment_id": "pay-9", "from": event_id }),
        })
    }

    /// Given: the saga state after `history`.
    fn given(definition: &SagaDefinition, history: &[SagaEvent]) -> SagaInstance {
        let state = SagaInstance::from_events(history);
        assert!(history.is_empty() || state.saga_type() == definition.name());
        state
    }

    /// When: `input` arrives at `now`.
    fn when(
        definition: &SagaDefinition,
        state: &SagaInstance,
        input: SagaInput,
        now: Timestamp,
    ) -> SagaDecision {
        orchestrate(definition, state, &input, now).unwrap()
    }

    /// The history produced by feeding `inputs` one by one, as a stored stream would hold it.
    fn history(definition: &SagaDefinition, inputs: Vec<(SagaInput, Timestamp)>) -> Vec<SagaEvent> {
        let mut events = Vec::new();
        for (input, now) in inputs {
            let state = given(definition, &events);
            events.extend(when(definition, &state, input, now).events);
        }
        events
    }

    fn types(events: &[SagaEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.event_type()).collect()
    }

    /// Started at T0, reserved at +10, charged at +20: awaiting `ship` (deadline +3020).
    fn awaiting_ship(definition: &SagaDefinition) -> Vec<SagaEvent> {
        history(
            definition,
            vec![
                (start(), at(0)),
                (reply("evt-1", "inventory.reserved"), at(10)),
                (reply("evt-2", "payment.processed"), at(20)),
            ],
        )
    }

    fn requested(event: &SagaEvent) -> (&str, u32, &CommandMessage, Timestamp) {
        match event {
            SagaEvent::StepRequested {
                step,
                attempt,
                command,
                deadline,
            }
            | SagaEvent::CompensationRequested {
                step,
                attempt,
                command,
                deadline,
            } => (step, *attempt, command, *deadline),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn start_requests_the_first_step() {
        let def = order_saga();
        let decision = when(&def, &given(&def, &[]), start(), at(0));
        assert_eq!(
            decision.events[0],
            SagaEvent::Started {
                saga_type: "order_fulfilment".into(),
                saga_id: "saga-1".into(),
                correlation_id: "corr-1".into(),
                input: order_input(),
                started_at: at(0),
            }
        );
        assert_eq!(
            types(&decision.events),
            ["saga.started", "saga.step_requested"]
        );
        let (step, attempt, command, deadline) = requested(&decision.events[1]);
        assert_eq!((step, attempt, deadline), ("reserve", 1, at(1_000)));
        assert_eq!(
            *command,
            CommandMessage {
                command_id: CommandMessage::command_id_for(
                    "saga-1",
                    "reserve",
                    StepKind::Forward,
                    1
                ),
                saga_id: "saga-1".into(),
                saga_type: "order_fulfilment".into(),
                step: "reserve".into(),
                kind: StepKind::Forward,
                attempt: 1,
                correlation_id: "corr-1".into(),
                causation_id: "saga-1".into(),
                deadline: Some(at(1_000)),
                command: SagaCommand::new(
                    "inventory.reserve",
                    "ord-1",
                    json!({"sku": "sku-7", "qty": 2})
                ),
            }
        );
        assert_eq!(decision.commands, vec![command.clone()]);
    }

    #[test]
    fn a_success_reply_records_it_and_requests_the_next_step() {
        let def = order_saga();
        let past = history(&def, vec![(start(), at(0))]);
        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-1", "inventory.reserved"),
            at(10),
        );
        assert_eq!(
            decision.events[0],
            SagaEvent::StepSucceeded {
                step: "reserve".into(),
                reply_event_id: "evt-1".into(),
                reply_type: "inventory.reserved".into(),
                reply: json!({ "payment_id": "pay-9", "from": "evt-1" }),
            }
        );
        let (step, attempt, command, deadline) = requested(&decision.events[1]);
        assert_eq!((step, attempt, deadline), ("charge", 1, at(2_010)));
        assert_eq!(command.command.command_type, "payment.charge");
        assert_eq!(command.causation_id, "evt-1");
        assert_eq!(decision.commands.len(), 1);
        let mut all = past;
        all.extend(decision.events);
        let after = given(&def, &all);
        assert_eq!(after.completed_steps(), ["reserve"]);
        assert_eq!(after.data().replies["reserve"]["from"], "evt-1");
        assert_eq!(
            after.awaiting(),
            Some(("charge", StepKind::Forward, at(2_010)))
        );
    }

    #[test]
    fn the_last_success_completes_with_the_completion_commands() {
        let def = order_saga();
        let past = awaiting_ship(&def);
        let state = given(&def, &past);
        let decision = when(&def, &state, reply("evt-3", "shipment.scheduled"), at(30));
        assert_eq!(
            types(&decision.events),
            ["saga.step_succeeded", "saga.completed"]
        );
        let SagaEvent::Completed {
            completion_commands,
            finished_at,
        } = &decision.events[1]
        else {
            panic!("expected completed");
        };
        assert_eq!(*finished_at, at(30));
        assert_eq!(completion_commands.len(), 1);
        let complete = &completion_commands[0];
        assert_eq!(complete.command.command_type, "order.complete");
        assert_eq!(complete.kind, StepKind::Completion);
        assert_eq!(complete.step, "on_completed#1");
        assert_eq!(complete.causation_id, "evt-3");
        assert_eq!(complete.deadline, None);
        assert_eq!(decision.commands, completion_commands.clone());
        let mut all = past;
        all.extend(decision.events);
        let after = given(&def, &all);
        assert_eq!(after.status(), InstanceStatus::Completed);
        assert_eq!(after.completed_steps(), ["reserve", "charge", "ship"]);
        assert_eq!(after.duration_ms(), Some(30));
    }

    #[test]
    fn a_failure_at_step_three_compensates_charge_then_reserve_and_aborts() {
        let def = order_saga();
        let mut past = awaiting_ship(&def);

        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-3", "shipment.failed"),
            at(40),
        );
        assert_eq!(
            decision.events[0],
            SagaEvent::StepFailed {
                step: "ship".into(),
                reason: "step `ship` failed: shipment.failed".into(),
                reply_event_id: Some("evt-3".into()),
                timed_out: false,
            }
        );
        let (step, attempt, command, deadline) = requested(&decision.events[1]);
        assert_eq!((step, attempt, deadline), ("charge", 1, at(2_040)));
        assert_eq!(command.kind, StepKind::Compensation);
        assert_eq!(command.command.command_type, "payment.refund");
        assert_eq!(
            command.command.payload,
            json!({"payment_id": "pay-9", "because": "ship"})
        );
        assert_eq!(command.causation_id, "evt-3");
        past.extend(decision.events);

        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-4", "payment.voided"),
            at(50),
        );
        assert_eq!(
            decision.events[0],
            SagaEvent::StepCompensated {
                step: "charge".into(),
                reply_event_id: Some("evt-4".into()),
                reply: json!({ "payment_id": "pay-9", "from": "evt-4" }),
            }
        );
        let (step, _, command, _) = requested(&decision.events[1]);
        assert_eq!(step, "reserve");
        assert_eq!(command.command.command_type, "inventory.release");
        past.extend(decision.events);

        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-5", "inventory.released"),
            at(60),
        );
        assert_eq!(
            types(&decision.events),
            ["saga.step_compensated", "saga.aborted"]
        );
        assert_eq!(
            decision.events[1],
            SagaEvent::Aborted {
                reason: "step `ship` failed: shipment.failed".into(),
                compensation_failed: vec![],
                finished_at: at(60),
            }
        );
        assert!(decision.commands.is_empty());
        past.extend(decision.events);
        let after = given(&def, &past);
        assert_eq!(after.status(), InstanceStatus::Compensated);
        assert_eq!(after.compensated_steps(), ["charge", "reserve"]);
        assert_eq!(after.failed_step(), Some("ship"));
    }

    #[test]
    fn a_failure_at_step_one_aborts_without_compensations() {
        let def = order_saga();
        let past = history(&def, vec![(start(), at(0))]);
        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-1", "inventory.reservation_failed"),
            at(5),
        );
        assert_eq!(
            types(&decision.events),
            ["saga.step_failed", "saga.aborted"]
        );
        assert!(decision.commands.is_empty());
        let mut all = past;
        all.extend(decision.events);
        let after = given(&def, &all);
        assert_eq!(after.status(), InstanceStatus::Compensated);
        assert!(after.compensated_steps().is_empty());
        assert_eq!(after.duration_ms(), Some(5));
    }

    #[test]
    fn replies_of_other_steps_unrelated_or_already_seen_are_ignored() {
        let def = order_saga();
        let past = history(
            &def,
            vec![
                (start(), at(0)),
                (reply("evt-1", "inventory.reserved"), at(10)),
            ],
        );
        let state = given(&def, &past);
        // Awaiting `charge`: a late reply of `reserve`, an unrelated event, a compensation type.
        for event_type in ["inventory.reserved", "order.created", "payment.refunded"] {
            let decision = when(&def, &state, reply("evt-9", event_type), at(20));
            assert!(decision.is_empty(), "{event_type}");
        }
        // A reply id already consumed, even with a type the awaited step knows.
        assert!(when(&def, &state, reply("evt-1", "payment.processed"), at(20)).is_empty());
        // The awaited step's own reply still moves the saga on.
        assert_eq!(
            types(&when(&def, &state, reply("evt-8", "payment.processed"), at(20)).events),
            ["saga.step_succeeded", "saga.step_requested"]
        );
    }

    #[test]
    fn a_duplicate_start_is_ignored() {
        let def = order_saga();
        let state = given(&def, &history(&def, vec![(start(), at(0))]));
        assert!(when(&def, &state, start(), at(5)).is_empty());
        let other_input = SagaInput::Start {
            saga_id: "saga-1".into(),
            input: json!({"order_id": "ord-2"}),
            correlation_id: "corr-2".into(),
        };
        assert!(when(&def, &state, other_input, at(5)).is_empty());
    }

    #[test]
    fn replies_and_ticks_before_start_and_bad_starts_are_refused() {
        let def = order_saga();
        let fresh = given(&def, &[]);
        assert_eq!(
            orchestrate(&def, &fresh, &SagaInput::Tick, at(0)),
            Err(SagaError::NotStarted)
        );
        assert_eq!(
            orchestrate(&def, &fresh, &reply("e", "inventory.reserved"), at(0)),
            Err(SagaError::NotStarted)
        );
        let no_sku = SagaInput::Start {
            saga_id: "saga-1".into(),
            input: json!({"order_id": "ord-1"}),
            correlation_id: "corr-1".into(),
        };
        assert_eq!(
            orchestrate(&def, &fresh, &no_sku, at(0)),
            Err(SagaError::CommandBuild {
                step: "reserve".into(),
                reason: CommandBuildError::MissingInput("sku".into())
            })
        );
        let no_correlation = SagaInput::Start {
            saga_id: "saga-1".into(),
            input: order_input(),
            correlation_id: " ".into(),
        };
        assert!(matches!(
            orchestrate(&def, &fresh, &no_correlation, at(0)),
            Err(SagaError::InvalidStart { .. })
        ));
    }

    /// The test saga with forward steps sent once: a timeout fails the step.
    fn single_attempt_saga() -> SagaDefinition {
        order_saga_with(
            order_steps()
                .into_iter()
                .map(|step| step.retry(RetryPolicy::no_retry()))
                .collect(),
        )
    }

    #[test]
    fn an_unanswered_forward_step_is_sent_again_awaited_longer_and_fails_after_its_last_attempt() {
        let def = order_saga_with(
            order_steps()
                .into_iter()
                .map(|step| step.retry(RetryPolicy::attempts(2)))
                .collect(),
        );
        let mut past = history(
            &def,
            vec![
                (start(), at(0)),
                (reply("evt-1", "inventory.reserved"), at(10)),
            ],
        );
        // Given `charge` requested at +10 with a 2000ms timeout, when its deadline passes,
        // then the same command goes again as attempt 2, under its own id, awaited 4000ms.
        let decision = when(&def, &given(&def, &past), SagaInput::Tick, at(2_010));
        assert_eq!(types(&decision.events), ["saga.step_requested"]);
        let (step, attempt, command, deadline) = requested(&decision.events[0]);
        assert_eq!((step, attempt), ("charge", 2));
        assert_eq!(deadline, at(2_010 + 4_000));
        assert_eq!(command.command.command_type, "payment.charge");
        assert_eq!(
            command.command_id,
            CommandMessage::command_id_for("saga-1", "charge", StepKind::Forward, 2)
        );
        assert_eq!(decision.commands.len(), 1);
        past.extend(decision.events);
        let waiting = given(&def, &past);
        assert!(when(&def, &waiting, SagaInput::Tick, at(6_009)).is_empty());

        // The first attempt's reply, arriving late, still answers the step.
        let late = when(
            &def,
            &waiting,
            reply("evt-2", "payment.processed"),
            at(3_000),
        );
        assert_eq!(
            types(&late.events),
            ["saga.step_succeeded", "saga.step_requested"]
        );
        assert_eq!(requested(&late.events[1]).0, "ship");

        // Unanswered again: the last attempt is used up, the step fails and is undone.
        let failed = when(&def, &waiting, SagaInput::Tick, at(6_010));
        assert_eq!(
            failed.events[0],
            SagaEvent::StepFailed {
                step: "charge".into(),
                reason: "step `charge` got no reply to any of 2 attempts".into(),
                reply_event_id: None,
                timed_out: true,
            }
        );
        assert_eq!(requested(&failed.events[1]).0, "charge");
        assert_eq!(requested(&failed.events[1]).2.kind, StepKind::Compensation);
    }

    #[test]
    fn a_forward_timeout_fails_the_step_and_compensates_it_and_the_earlier_ones() {
        let def = single_attempt_saga();
        let mut past = history(
            &def,
            vec![
                (start(), at(0)),
                (reply("evt-1", "inventory.reserved"), at(10)),
            ],
        );
        // `charge` was requested at +10 with a 2000ms timeout.
        let state = given(&def, &past);
        assert!(when(&def, &state, SagaInput::Tick, at(2_009)).is_empty());

        let decision = when(&def, &state, SagaInput::Tick, at(2_010));
        assert_eq!(
            decision.events[0],
            SagaEvent::StepFailed {
                step: "charge".into(),
                reason: "step `charge` got no reply within 2000ms".into(),
                reply_event_id: None,
                timed_out: true,
            }
        );
        // The charge may have happened after all: it is refunded first.
        let (step, attempt, command, _) = requested(&decision.events[1]);
        assert_eq!((step, attempt), ("charge", 1));
        assert_eq!(command.command.payload["because"], "charge");
        assert_eq!(command.kind, StepKind::Compensation);
        assert_eq!(command.causation_id, "saga-1");
        past.extend(decision.events);

        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-2", "payment.refunded"),
            at(2_020),
        );
        assert_eq!(requested(&decision.events[1]).0, "reserve");
        past.extend(decision.events);
        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-3", "inventory.released"),
            at(2_030),
        );
        past.extend(decision.events);
        let after = given(&def, &past);
        assert_eq!(after.status(), InstanceStatus::Compensated);
        assert_eq!(after.compensated_steps(), ["charge", "reserve"]);
        assert_eq!(
            after.data().failure,
            Some(SagaFailure {
                step: "charge".into(),
                reason: "step `charge` got no reply within 2000ms".into(),
                timed_out: true,
                cancelled: false,
            })
        );
    }

    #[test]
    fn a_timed_out_step_without_compensation_is_passed_over() {
        let def = single_attempt_saga();
        let state = given(&def, &awaiting_ship(&def));
        let decision = when(&def, &state, SagaInput::Tick, at(3_020));
        assert_eq!(
            types(&decision.events),
            ["saga.step_failed", "saga.compensation_requested"]
        );
        assert_eq!(requested(&decision.events[1]).0, "charge");
    }

    /// `history` followed by what `input` at `now` decides.
    fn then_after(
        def: &SagaDefinition,
        mut history: Vec<SagaEvent>,
        input: SagaInput,
        now: Timestamp,
    ) -> Vec<SagaEvent> {
        let decision = when(def, &given(def, &history), input, now);
        history.extend(decision.events);
        history
    }

    /// The history of a saga whose `ship` step failed at +100, refunding `charge` first.
    fn ship_failed(def: &SagaDefinition) -> Vec<SagaEvent> {
        then_after(
            def,
            awaiting_ship(def),
            reply("evt-3", "shipment.failed"),
            at(100),
        )
    }

    /// The history of a saga whose `charge` compensation was given up after 3 unanswered
    /// attempts, now awaiting the release of `reserve`.
    fn charge_compensation_given_up(def: &SagaDefinition) -> Vec<SagaEvent> {
        let mut past = ship_failed(def);
        for now in [2_100, 6_100, 14_100] {
            past.extend(when(def, &given(def, &past), SagaInput::Tick, at(now)).events);
        }
        past
    }

    #[test]
    fn a_compensation_timeout_retries_with_growing_waits_then_fails_and_moves_on() {
        let def = order_saga();
        let mut past = ship_failed(&def);
        // Refund of `charge` (timeout 2000) requested at +100, deadline +2100; 3 attempts, each
        // awaited twice as long as the one before.
        let state = given(&def, &past);
        assert!(when(&def, &state, SagaInput::Tick, at(2_099)).is_empty());
        let first_id = requested(past.last().unwrap()).2.command_id.clone();

        let decision = when(&def, &state, SagaInput::Tick, at(2_100));
        assert_eq!(types(&decision.events), ["saga.compensation_requested"]);
        let (step, attempt, command, deadline) = requested(&decision.events[0]);
        assert_eq!((step, attempt, deadline), ("charge", 2, at(6_100)));
        assert_eq!(command.attempt, 2);
        assert_ne!(command.command_id, first_id);
        past.extend(decision.events);

        let state = given(&def, &past);
        assert!(when(&def, &state, SagaInput::Tick, at(6_099)).is_empty());
        let decision = when(&def, &state, SagaInput::Tick, at(6_100));
        let (_, attempt, _, deadline) = requested(&decision.events[0]);
        assert_eq!((attempt, deadline), (3, at(14_100)));
        past.extend(decision.events);

        let decision = when(&def, &given(&def, &past), SagaInput::Tick, at(14_100));
        assert_eq!(
            decision.events[0],
            SagaEvent::CompensationFailed {
                step: "charge".into(),
                reason: "compensation of `charge` unconfirmed after 3 attempts".into(),
                attempts: 3,
            }
        );
        let (step, attempt, _, _) = requested(&decision.events[1]);
        assert_eq!((step, attempt), ("reserve", 1));
        past.extend(decision.events);
        assert_eq!(past, charge_compensation_given_up(&def));

        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-5", "inventory.released"),
            at(14_300),
        );
        assert_eq!(
            decision.events[1],
            SagaEvent::Aborted {
                reason: "step `ship` failed: shipment.failed".into(),
                compensation_failed: vec!["charge".into()],
                finished_at: at(14_300),
            }
        );
        past.extend(decision.events);
        let after = given(&def, &past);
        assert_eq!(after.status(), InstanceStatus::CompensationFailed);
        assert_eq!(after.compensated_steps(), ["reserve"]);
        assert_eq!(after.failed_compensations(), ["charge"]);
    }

    #[test]
    fn a_late_confirmation_while_compensating_takes_the_step_off_the_failed_list() {
        let def = order_saga();
        let mut past = charge_compensation_given_up(&def);

        // The refund was queued, not lost: its confirmation arrives while `reserve` is awaited.
        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-4", "payment.refunded"),
            at(14_200),
        );
        assert_eq!(
            decision.events,
            [SagaEvent::StepCompensated {
                step: "charge".into(),
                reply_event_id: Some("evt-4".into()),
                reply: json!({ "payment_id": "pay-9", "from": "evt-4" }),
            }]
        );
        assert!(decision.commands.is_empty());
        past.extend(decision.events);
        let state = given(&def, &past);
        assert!(state.failed_compensations().is_empty());
        assert_eq!(
            state.awaiting().map(|(step, kind, _)| (step, kind)),
            Some(("reserve", StepKind::Compensation))
        );

        let decision = when(
            &def,
            &state,
            reply("evt-5", "inventory.released"),
            at(14_300),
        );
        assert_eq!(
            decision.events[1],
            SagaEvent::Aborted {
                reason: "step `ship` failed: shipment.failed".into(),
                compensation_failed: vec![],
                finished_at: at(14_300),
            }
        );
        past.extend(decision.events);
        assert_eq!(given(&def, &past).status(), InstanceStatus::Compensated);
    }

    #[test]
    fn a_late_confirmation_after_the_saga_ended_turns_compensation_failed_into_compensated() {
        let def = order_saga();
        let mut past = then_after(
            &def,
            charge_compensation_given_up(&def),
            reply("evt-5", "inventory.released"),
            at(14_300),
        );
        let state = given(&def, &past);
        assert_eq!(state.status(), InstanceStatus::CompensationFailed);

        // Replies that confirm nothing given up on change nothing.
        for input in [
            reply("evt-5", "payment.refunded"),
            reply("evt-6", "inventory.released"),
            reply("evt-7", "shipment.scheduled"),
            SagaInput::Tick,
        ] {
            assert!(when(&def, &state, input, at(20_000)).is_empty());
        }

        let decision = when(&def, &state, reply("evt-8", "payment.voided"), at(20_000));
        assert_eq!(types(&decision.events), ["saga.step_compensated"]);
        assert!(decision.commands.is_empty());
        past.extend(decision.events);
        let after = given(&def, &past);
        assert_eq!(after.status(), InstanceStatus::Compensated);
        assert!(after.failed_compensations().is_empty());
        assert_eq!(after.compensated_steps(), ["reserve", "charge"]);
        assert_eq!(after.finished_at(), Some(at(14_300)));
        // Redelivered, the confirmation is recognised by its id.
        assert!(when(&def, &after, reply("evt-8", "payment.voided"), at(20_100)).is_empty());
    }

    #[test]
    fn a_finished_saga_ignores_replies_ticks_and_starts() {
        let def = order_saga();
        let mut past = awaiting_ship(&def);
        past.extend(
            when(
                &def,
                &given(&def, &past),
                reply("evt-3", "shipment.scheduled"),
                at(30),
            )
            .events,
        );
        let state = given(&def, &past);
        assert!(state.is_finished());
        for input in [
            reply("evt-4", "shipment.failed"),
            reply("evt-5", "shipment.scheduled"),
            SagaInput::Tick,
            start(),
        ] {
            assert!(when(&def, &state, input, at(1_000_000)).is_empty());
        }
    }

    #[test]
    fn a_later_command_that_cannot_be_built_fails_its_step_and_compensates() {
        let def = order_saga();
        let mut input = order_input();
        if let Value::Object(map) = &mut input {
            map.remove("amount");
        }
        let start = SagaInput::Start {
            saga_id: "saga-1".into(),
            input,
            correlation_id: "corr-1".into(),
        };
        let past = history(&def, vec![(start, at(0))]);
        let decision = when(
            &def,
            &given(&def, &past),
            reply("evt-1", "inventory.reserved"),
            at(10),
        );
        assert_eq!(
            decision.events[1],
            SagaEvent::StepFailed {
                step: "charge".into(),
                reason: "cannot build command: saga input has no field `amount`".into(),
                reply_event_id: None,
                timed_out: false,
            }
        );
        assert_eq!(requested(&decision.events[2]).0, "reserve");
    }

    #[test]
    fn a_history_from_another_definition_is_a_typed_error() {
        let def = order_saga();
        let past = history(&def, vec![(start(), at(0))]);
        let state = given(&def, &past);
        let other = SagaDefinition::new("other")
            .step(order_steps().remove(0))
            .build()
            .unwrap();
        assert_eq!(
            orchestrate(&other, &state, &SagaInput::Tick, at(0)),
            Err(SagaError::WrongDefinition {
                expected: "other".into(),
                found: "order_fulfilment".into()
            })
        );
        // Same name, but the awaited step was renamed in a new deploy.
        let mut steps = order_steps();
        steps[0] = SagaStep::new("reserve_stock", |_: &_| {
            Ok(SagaCommand::new("x", "y", json!({})))
        })
        .succeeds_on(&["inventory.reserved"]);
        let renamed = order_saga_with(steps);
        assert_eq!(
            orchestrate(&renamed, &state, &reply("e", "inventory.reserved"), at(1)),
            Err(SagaError::UnknownStep("reserve".into()))
        );
    }

    fn trigger(def: &SagaDefinition, input: SagaInput, now: Timestamp) -> SagaTrigger {
        SagaTrigger {
            definition: def.clone(),
            input,
            now,
        }
    }

    #[tokio::test]
    async fn a_full_run_through_the_repository_completes_and_decodes_back() {
        let def = order_saga();
        let store = Arc::new(InMemoryEventStore::new());
        let repo: Repository<SagaInstance, InMemoryEventStore> = Repository::new(store.clone());
        let meta = |cause: &str, now: Timestamp| {
            CommandMeta::new("corr-1", cause, now).with_idempotency_key(format!("saga-1/{cause}"))
        };

        let mut sent = Vec::new();
        let outcome = repo
            .execute(
                "saga-1",
                &trigger(&def, start(), at(0)),
                &meta("start", at(0)),
            )
            .await
            .unwrap();
        sent.extend(commands_in_stored(&outcome.events).unwrap());
        for (i, event_type) in [
            "inventory.reserved",
            "payment.processed",
            "shipment.scheduled",
        ]
        .into_iter()
        .enumerate()
        {
            let id = format!("evt-{}", i + 1);
            let now = at(10 * (i as i64 + 1));
            let outcome = repo
                .execute(
                    "saga-1",
                    &trigger(&def, reply(&id, event_type), now),
                    &meta(&id, now),
                )
                .await
                .unwrap();
            assert!(!outcome.duplicate);
            sent.extend(commands_in_stored(&outcome.events).unwrap());
        }
        // A redelivered reply is a duplicate: nothing appended.
        let again = repo
            .execute(
                "saga-1",
                &trigger(&def, reply("evt-3", "shipment.scheduled"), at(99)),
                &meta("evt-3", at(99)),
            )
            .await
            .unwrap();
        assert!(again.duplicate && again.events.is_empty());

        let loaded = repo.load("saga-1").await.unwrap();
        assert_eq!(loaded.state.status(), InstanceStatus::Completed);
        assert_eq!(
            loaded.state.completed_steps(),
            ["reserve", "charge", "ship"]
        );
        assert_eq!(loaded.state.duration_ms(), Some(30));

        let stored = store.all_events();
        assert_eq!(stored.len(), 8);
        assert!(stored
            .iter()
            .all(|e| e.aggregate_type == "saga" && e.correlation_id == "corr-1"));
        let decoded: Vec<SagaEvent> = stored
            .iter()
            .map(|e| e.decode::<SagaEvent>().unwrap().payload)
            .collect();
        assert_eq!(SagaInstance::from_events(&decoded), loaded.state);
        let types: Vec<&str> = stored.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "saga.started",
                "saga.step_requested",
                "saga.step_succeeded",
                "saga.step_requested",
                "saga.step_succeeded",
                "saga.step_requested",
                "saga.step_succeeded",
                "saga.completed"
            ]
        );
        let sent_types: Vec<&str> = sent
            .iter()
            .map(|c| c.command.command_type.as_str())
            .collect();
        assert_eq!(
            sent_types,
            [
                "inventory.reserve",
                "payment.charge",
                "shipment.schedule",
                "order.complete"
            ]
        );
    }

    #[tokio::test]
    async fn commands_in_recovers_the_commands_from_stored_events() {
        let def = order_saga();
        let store = Arc::new(InMemoryEventStore::new());
        let repo: Repository<SagaInstance, InMemoryEventStore> = Repository::new(store.clone());
        let mut decided = Vec::new();
        let inputs = [
            (start(), at(0)),
            (reply("evt-1", "inventory.reserved"), at(10)),
            (reply("evt-2", "payment.declined"), at(20)),
            (reply("evt-3", "inventory.released"), at(30)),
        ];
        for (input, now) in inputs {
            // What the pure function says the commands are, before persisting.
            let state = repo.load("saga-1").await.unwrap().state;
            decided.extend(orchestrate(&def, &state, &input, now).unwrap().commands);
            repo.execute(
                "saga-1",
                &trigger(&def, input, now),
                &CommandMeta::new("corr-1", "x", now),
            )
            .await
            .unwrap();
        }
        let mut stored = store.all_events();
        // Events of other aggregates in the same log are skipped.
        let mut foreign: EventEnvelope = stored[0].clone();
        foreign.aggregate_type = "order".into();
        foreign.event_type = "order.created".into();
        stored.insert(1, foreign);
        let recovered = commands_in_stored(&stored).unwrap();
        assert_eq!(recovered, decided);
        let kinds: Vec<(String, StepKind)> =
            recovered.iter().map(|c| (c.step.clone(), c.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("reserve".to_string(), StepKind::Forward),
                ("charge".to_string(), StepKind::Forward),
                ("reserve".to_string(), StepKind::Compensation)
            ]
        );
        let state = repo.load("saga-1").await.unwrap().state;
        assert_eq!(state.status(), InstanceStatus::Compensated);
        let debug = format!("{:?}", trigger(&def, SagaInput::Tick, at(0)));
        assert!(
            debug.contains("order_fulfilment") && debug.contains("Tick"),
            "{debug}"
        );
    }
}
