//! The durable saga instance: an event-sourced aggregate whose events record every command the
//! saga issued and every reply it accepted, so a crashed orchestrator resumes from its stream.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::definition::{CommandMessage, SagaData, SagaFailure, StepKind};
use sagaflow_eventsourcing::event::Timestamp;

sagaflow_eventsourcing::domain_event! {
    /// What happened to a saga instance; the orchestrator's only record of its progress.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub enum SagaEvent {
        /// The saga started with its input.
        Started = "saga.started" @ 1 {
            /// The saga type (definition name).
            saga_type: String,
            /// The saga instance id.
            saga_id: String,
            /// Correlation id stamped on every command the saga issues.
            correlation_id: String,
            /// The input the saga started with.
            input: Value,
            /// When the saga started.
            started_at: Timestamp,
        },
        /// A step's forward command was issued.
        StepRequested = "saga.step_requested" @ 1 {
            /// The step.
            step: String,
            /// Attempt number from 1.
            attempt: u32,
            /// The command as sent.
            command: CommandMessage,
            /// When the saga stops waiting for the reply.
            deadline: Timestamp,
        },
        /// A step's reply meant success.
        StepSucceeded = "saga.step_succeeded" @ 1 {
            /// The step.
            step: String,
            /// The id of the reply event.
            reply_event_id: String,
            /// The type of the reply event.
            reply_type: String,
            /// The reply payload, kept in the saga data.
            reply: Value,
        },
        /// A step failed: a failure reply, a timeout or a command that could not be built.
        StepFailed = "saga.step_failed" @ 1 {
            /// The step.
            step: String,
            /// Why it failed.
            reason: String,
            /// The id of the failure reply, if a reply caused the failure.
            reply_event_id: Option<String>,
            /// Whether no reply came before the deadline (the effect may still have happened).
            timed_out: bool,
        },
        /// The saga was cancelled from outside while it ran: no further step is requested, and the
        /// completed steps (and the one awaited, which may still take effect) are compensated.
        Cancelled = "saga.cancelled" @ 1 {
            /// The forward step the saga awaited when the cancel came.
            step: String,
            /// Why, as the cancel gave it.
            reason: String,
            /// The id of the cancel command.
            cancel_id: String,
        },
        /// A step's compensating command was issued.
        CompensationRequested = "saga.compensation_requested" @ 1 {
            /// The step being undone.
            step: String,
            /// Attempt number from 1.
            attempt: u32,
            /// The command as sent.
            command: CommandMessage,
            /// When the saga stops waiting for the reply.
            deadline: Timestamp,
        },
        /// A step's compensation was confirmed, possibly after it was given up on (a late reply).
        StepCompensated = "saga.step_compensated" @ 1 {
            /// The step undone.
            step: String,
            /// The id of the confirming reply, if there was one.
            reply_event_id: Option<String>,
            /// The reply payload.
            reply: Value,
        },
        /// A step's compensation was given up: attempts exhausted or the command could not be built.
        CompensationFailed = "saga.compensation_failed" @ 1 {
            /// The step that could not be undone.
            step: String,
            /// Why it was given up.
            reason: String,
            /// How many compensating commands were issued.
            attempts: u32,
        },
        /// Every step succeeded; the completion commands were issued.
        Completed = "saga.completed" @ 1 {
            /// The fire-and-forget commands issued on completion.
            completion_commands: Vec<CommandMessage>,
            /// When the saga finished.
            finished_at: Timestamp,
        },
        /// The saga ended after compensating a failure.
        Aborted = "saga.aborted" @ 1 {
            /// Why the saga failed.
            reason: String,
            /// The steps whose compensation failed (empty when everything was undone).
            compensation_failed: Vec<String>,
            /// When the saga finished.
            finished_at: Timestamp,
        },
    }
}

/// Where a saga instance is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceStatus {
    /// No `saga.started` yet.
    #[default]
    NotStarted,
    /// Running forward steps.
    Running,
    /// A step failed; undoing the completed ones.
    Compensating,
    /// Every step succeeded.
    Completed,
    /// A step failed and every needed compensation succeeded.
    Compensated,
    /// A step failed and at least one compensation was given up and has not been confirmed
    /// since; a late confirmation turns the saga into `Compensated`.
    CompensationFailed,
}

impl InstanceStatus {
    /// Whether the saga has ended: it ignores every further input but the late confirmation
    /// of a compensation it gave up on.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            InstanceStatus::Completed
                | InstanceStatus::Compensated
                | InstanceStatus::CompensationFailed
        )
    }
}

/// The command a saga instance is waiting on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaiting {
    /// The step.
    pub step: String,
    /// Forward or compensation.
    pub kind: StepKind,
    /// Attempt number from 1.
    pub attempt: u32,
    /// When the saga stops waiting.
    pub deadline: Timestamp,
}

/// The state of one saga run, folded from its [`SagaEvent`]s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SagaInstance {
    saga_type: String,
    saga_id: String,
    correlation_id: String,
    data: SagaData,
    status: InstanceStatus,
    awaiting: Option<Awaiting>,
    completed: Vec<String>,
    /// Steps that may need undoing, most recent last; steps without a compensation are
    /// passed over when popped, since only the definition knows which steps have one.
    to_compensate: Vec<String>,
    compensated: Vec<String>,
    compensation_failed: Vec<String>,
    failed_step: Option<String>,
    failure_reason: Option<String>,
    /// Reply event ids already consumed, so a redelivered reply is recognised by id.
    seen_replies: BTreeSet<String>,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
}

impl SagaInstance {
    /// The saga type (definition name); empty before start.
    pub fn saga_type(&self) -> &str {
        &self.saga_type
    }

    /// The saga instance id; empty before start.
    pub fn saga_id(&self) -> &str {
        &self.saga_id
    }

    /// The correlation id of every command the saga issues.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The input and the replies gathered so far.
    pub fn data(&self) -> &SagaData {
        &self.data
    }

    /// Where the saga is in its life.
    pub fn status(&self) -> InstanceStatus {
        self.status
    }

    /// The steps that succeeded, in order.
    pub fn completed_steps(&self) -> &[String] {
        &self.completed
    }

    /// The steps whose compensation was confirmed, in the order they were undone.
    pub fn compensated_steps(&self) -> &[String] {
        &self.compensated
    }

    /// The steps whose compensation was given up.
    pub fn failed_compensations(&self) -> &[String] {
        &self.compensation_failed
    }

    /// Steps still to consider for compensation, most recent last.
    pub fn pending_compensations(&self) -> &[String] {
        &self.to_compensate
    }

    /// The step that failed, if one did.
    pub fn failed_step(&self) -> Option<&str> {
        self.failed_step.as_deref()
    }

    /// Why the saga failed, if it did.
    pub fn failure_reason(&self) -> Option<&str> {
        self.failure_reason.as_deref()
    }

    /// The step, kind and deadline of the command the saga waits on.
    pub fn awaiting(&self) -> Option<(&str, StepKind, Timestamp)> {
        self.awaiting
            .as_ref()
            .map(|a| (a.step.as_str(), a.kind, a.deadline))
    }

    /// The full record of the command the saga waits on, including its attempt.
    pub fn awaited(&self) -> Option<&Awaiting> {
        self.awaiting.as_ref()
    }

    /// Whether the reply event `event_id` was already consumed.
    pub fn has_seen_reply(&self, event_id: &str) -> bool {
        self.seen_replies.contains(event_id)
    }

    /// Whether the saga has ended.
    pub fn is_finished(&self) -> bool {
        self.status.is_finished()
    }

    /// When the saga started.
    pub fn started_at(&self) -> Option<Timestamp> {
        self.started_at
    }

    /// When the saga finished.
    pub fn finished_at(&self) -> Option<Timestamp> {
        self.finished_at
    }

    /// Milliseconds from start to finish, once finished.
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.finished_at?.millis_since(self.started_at?))
    }

    /// Removes `step` and every step above it from the compensation stack: those above were
    /// passed over because they have nothing to undo.
    fn pop_compensation_through(&mut self, step: &str) {
        if let Some(position) = self.to_compensate.iter().rposition(|s| s == step) {
            self.to_compensate.truncate(position);
        }
    }

    /// Folds one event into the state.
    pub fn apply_event(&mut self, event: &SagaEvent) {
        match event {
            SagaEvent::Started {
                saga_type,
                saga_id,
                correlation_id,
                input,
                started_at,
            } => {
                self.saga_type = saga_type.clone();
                self.saga_id = saga_id.clone();
                self.correlation_id = correlation_id.clone();
                self.data = SagaData::new(input.clone());
                self.status = InstanceStatus::Running;
                self.started_at = Some(*started_at);
            }
            SagaEvent::StepRequested {
                step,
                attempt,
                deadline,
                ..
            } => {
                self.status = InstanceStatus::Running;
                self.awaiting = Some(Awaiting {
                    step: step.clone(),
                    kind: StepKind::Forward,
                    attempt: *attempt,
                    deadline: *deadline,
                });
            }
            SagaEvent::StepSucceeded {
                step,
                reply_event_id,
                reply,
                ..
            } => {
                self.seen_replies.insert(reply_event_id.clone());
                self.data.replies.insert(step.clone(), reply.clone());
                if !self.completed.contains(step) {
                    self.completed.push(step.clone());
                    self.to_compensate.push(step.clone());
                }
                self.awaiting = None;
            }
            SagaEvent::StepFailed {
                step,
                reason,
                reply_event_id,
                timed_out,
            } => {
                if let Some(id) = reply_event_id {
                    self.seen_replies.insert(id.clone());
                }
                // A step that timed out may have taken effect after all, so it is undone too;
                // a step that replied with failure did nothing to undo.
                if *timed_out && !self.to_compensate.contains(step) {
                    self.to_compensate.push(step.clone());
                }
                self.failed_step = Some(step.clone());
                self.failure_reason = Some(reason.clone());
                // Kept in the data too, so compensation builders can say why they undo.
                self.data.failure = Some(SagaFailure {
                    step: step.clone(),
                    reason: reason.clone(),
                    timed_out: *timed_out,
                    cancelled: false,
                });
                self.status = InstanceStatus::Compensating;
                self.awaiting = None;
            }
            SagaEvent::Cancelled { step, reason, .. } => {
                // The awaited command is in flight and may still take effect: undo it too.
                if !self.to_compensate.contains(step) {
                    self.to_compensate.push(step.clone());
                }
                let reason = format!("cancelled: {reason}");
                self.failed_step = Some(step.clone());
                self.failure_reason = Some(reason.clone());
                self.data.failure = Some(SagaFailure {
                    step: step.clone(),
                    reason,
                    timed_out: false,
                    cancelled: true,
                });
                self.status = InstanceStatus::Compensating;
                self.awaiting = None;
            }
            SagaEvent::CompensationRequested {
                step,
                attempt,
                deadline,
                ..
            } => {
                self.pop_compensation_through(step);
                self.status = InstanceStatus::Compensating;
                self.awaiting = Some(Awaiting {
                    step: step.clone(),
                    kind: StepKind::Compensation,
                    attempt: *attempt,
                    deadline: *deadline,
                });
            }
            SagaEvent::StepCompensated {
                step,
                reply_event_id,
                reply,
            } => {
                if let Some(id) = reply_event_id {
                    self.seen_replies.insert(id.clone());
                }
                self.pop_compensation_through(step);
                self.data
                    .compensation_replies
                    .insert(step.clone(), reply.clone());
                if !self.compensated.contains(step) {
                    self.compensated.push(step.clone());
                }
                // A late confirmation of a compensation given up on takes it off the failed
                // list; a finished saga with nothing left failed was compensated after all.
                self.compensation_failed.retain(|failed| failed != step);
                if self.status == InstanceStatus::CompensationFailed
                    && self.compensation_failed.is_empty()
                {
                    self.status = InstanceStatus::Compensated;
                }
                if self.awaiting.as_ref().is_some_and(|a| a.step == *step) {
                    self.awaiting = None;
                }
            }
            SagaEvent::CompensationFailed { step, .. } => {
                self.pop_compensation_through(step);
                if !self.compensation_failed.contains(step) {
                    self.compensation_failed.push(step.clone());
                }
                self.awaiting = None;
            }
            SagaEvent::Completed { finished_at, .. } => {
                self.status = InstanceStatus::Completed;
                self.finished_at = Some(*finished_at);
                self.awaiting = None;
            }
            SagaEvent::Aborted {
                reason,
                compensation_failed,
                finished_at,
            } => {
                for step in compensation_failed {
                    if !self.compensation_failed.contains(step) {
                        self.compensation_failed.push(step.clone());
                    }
                }
                self.status = if self.compensation_failed.is_empty() {
                    InstanceStatus::Compensated
                } else {
                    InstanceStatus::CompensationFailed
                };
                if self.failure_reason.is_none() {
                    self.failure_reason = Some(reason.clone());
                }
                self.to_compensate.clear();
                self.finished_at = Some(*finished_at);
                self.awaiting = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::SagaCommand;
    use sagaflow_eventsourcing::event::DomainEvent;
    use serde_json::json;

    fn message(step: &str, kind: StepKind, attempt: u32) -> CommandMessage {
        CommandMessage {
            command_id: CommandMessage::command_id_for("s-1", step, kind, attempt),
            saga_id: "s-1".into(),
            saga_type: "t".into(),
            step: step.into(),
            kind,
            attempt,
            correlation_id: "c-1".into(),
            causation_id: "s-1".into(),
            deadline: Some(Timestamp(10)),
            command: SagaCommand::new("x.do", "x-1", json!({})),
        }
    }

    fn started() -> SagaEvent {
        SagaEvent::Started {
            saga_type: "t".into(),
            saga_id: "s-1".into(),
            correlation_id: "c-1".into(),
            input: json!({"n": 1}),
            started_at: Timestamp(100),
        }
    }

    fn fold(events: &[SagaEvent]) -> SagaInstance {
        let mut state = SagaInstance::default();
        for e in events {
            state.apply_event(e);
        }
        state
    }

    #[test]
    fn every_event_round_trips_through_its_payload_and_is_in_the_schema() {
        let events = vec![
            started(),
            SagaEvent::StepRequested {
                step: "a".into(),
                attempt: 1,
                command: message("a", StepKind::Forward, 1),
                deadline: Timestamp(10),
            },
            SagaEvent::StepSucceeded {
                step: "a".into(),
                reply_event_id: "e-1".into(),
                reply_type: "a.done".into(),
                reply: json!({"id": 3}),
            },
            SagaEvent::StepFailed {
                step: "b".into(),
                reason: "declined".into(),
                reply_event_id: None,
                timed_out: true,
            },
            SagaEvent::Cancelled {
                step: "b".into(),
                reason: "changed my mind".into(),
                cancel_id: "cancel-1".into(),
            },
            SagaEvent::CompensationRequested {
                step: "a".into(),
                attempt: 2,
                command: message("a", StepKind::Compensation, 2),
                deadline: Timestamp(20),
            },
            SagaEvent::StepCompensated {
                step: "a".into(),
                reply_event_id: Some("e-2".into()),
                reply: json!({}),
            },
            SagaEvent::CompensationFailed {
                step: "b".into(),
                reason: "no reply".into(),
                attempts: 3,
            },
            SagaEvent::Completed {
                completion_commands: vec![message("on_completed#1", StepKind::Completion, 1)],
                finished_at: Timestamp(30),
            },
            SagaEvent::Aborted {
                reason: "declined".into(),
                compensation_failed: vec!["b".into()],
                finished_at: Timestamp(30),
            },
        ];
        for event in events {
            let event_type = event.event_type();
            assert_eq!(
                SagaEvent::schema_version(event_type),
                Some(1),
                "{event_type}"
            );
            let back = SagaEvent::from_payload(event_type, event.to_payload()).unwrap();
            assert_eq!(back, event);
        }
        assert_eq!(SagaEvent::SCHEMA.len(), 10);
    }

    #[test]
    fn folding_a_compensation_tracks_the_stack_and_ends_compensated() {
        let state = fold(&[
            started(),
            SagaEvent::StepSucceeded {
                step: "a".into(),
                reply_event_id: "e-1".into(),
                reply_type: "a.done".into(),
                reply: json!(1),
            },
            SagaEvent::StepSucceeded {
                step: "b".into(),
                reply_event_id: "e-2".into(),
                reply_type: "b.done".into(),
                reply: json!(2),
            },
            SagaEvent::StepFailed {
                step: "c".into(),
                reason: "c refused".into(),
                reply_event_id: Some("e-3".into()),
                timed_out: false,
            },
        ]);
        assert_eq!(state.status(), InstanceStatus::Compensating);
        assert_eq!(state.pending_compensations(), ["a", "b"]);
        assert!(state.has_seen_reply("e-3"));
        // Requesting `a` passes over `b` (as if `b` had nothing to undo).
        let mut state = state;
        state.apply_event(&SagaEvent::CompensationRequested {
            step: "a".into(),
            attempt: 1,
            command: message("a", StepKind::Compensation, 1),
            deadline: Timestamp(500),
        });
        assert!(state.pending_compensations().is_empty());
        assert_eq!(
            state.awaiting(),
            Some(("a", StepKind::Compensation, Timestamp(500)))
        );
        state.apply_event(&SagaEvent::StepCompensated {
            step: "a".into(),
            reply_event_id: Some("e-4".into()),
            reply: json!({"ok": true}),
        });
        state.apply_event(&SagaEvent::Aborted {
            reason: "c refused".into(),
            compensation_failed: vec![],
            finished_at: Timestamp(700),
        });
        assert_eq!(state.status(), InstanceStatus::Compensated);
        assert_eq!(state.compensated_steps(), ["a"]);
        assert_eq!(state.data().compensation_replies["a"], json!({"ok": true}));
        assert_eq!(state.failed_step(), Some("c"));
        assert_eq!(state.duration_ms(), Some(600));
        assert!(state.is_finished());
        assert_eq!(state.awaiting(), None);
    }

    #[test]
    fn an_abort_with_failed_compensations_is_compensation_failed() {
        let state = fold(&[
            started(),
            SagaEvent::Aborted {
                reason: "x".into(),
                compensation_failed: vec!["a".into()],
                finished_at: Timestamp(100),
            },
        ]);
        assert_eq!(state.status(), InstanceStatus::CompensationFailed);
        assert_eq!(state.failed_compensations(), ["a"]);
        assert_eq!(state.duration_ms(), Some(0));
        assert_eq!(SagaInstance::default().duration_ms(), None);
    }

    #[test]
    fn the_state_round_trips_through_json_for_snapshots() {
        let state = fold(&[
            started(),
            SagaEvent::StepRequested {
                step: "a".into(),
                attempt: 1,
                command: message("a", StepKind::Forward, 1),
                deadline: Timestamp(10),
            },
        ]);
        let back: SagaInstance =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }
}
