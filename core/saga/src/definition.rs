//! What a saga is: an ordered list of steps, each a command for a service recognised by the
//! type of the reply event, with an optional compensation, a timeout and a retry policy.
//!
//! The definition is data shared by both runtimes (the in-process executor and the durable
//! orchestrator), so one saga is written once and can run either way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use sagaflow_eventsourcing::event::Timestamp;

/// A command a saga step asks a service to carry out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaCommand {
    /// Dotted command type, such as `payment.charge`.
    pub command_type: String,
    /// The id of the aggregate the command addresses.
    pub target_id: String,
    /// The command's data.
    pub payload: Value,
}

impl SagaCommand {
    /// A command of `command_type` for aggregate `target_id` with `payload`.
    pub fn new(
        command_type: impl Into<String>,
        target_id: impl Into<String>,
        payload: Value,
    ) -> Self {
        Self {
            command_type: command_type.into(),
            target_id: target_id.into(),
            payload,
        }
    }
}

/// Why a saga is compensating: which step failed and how, for compensations to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaFailure {
    /// The step that failed.
    pub step: String,
    /// Why it failed.
    pub reason: String,
    /// Whether it failed by getting no reply in time (its effect may still have happened).
    pub timed_out: bool,
    /// Whether the saga was cancelled from outside while it awaited this step.
    #[serde(default)]
    pub cancelled: bool,
}

/// The saga's accumulated data: the input it started with and each step's reply payload.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SagaData {
    /// The input the saga was started with.
    pub input: Value,
    /// Step name to the payload of that step's successful forward reply.
    #[serde(default)]
    pub replies: BTreeMap<String, Value>,
    /// Step name to the payload of that step's compensation reply.
    #[serde(default)]
    pub compensation_replies: BTreeMap<String, Value>,
    /// The failure being compensated, once a step has failed.
    #[serde(default)]
    pub failure: Option<SagaFailure>,
}

impl SagaData {
    /// Data holding only the saga's input.
    pub fn new(input: Value) -> Self {
        Self {
            input,
            ..Self::default()
        }
    }

    /// The forward reply payload of `step`, if that step succeeded.
    pub fn reply(&self, step: &str) -> Option<&Value> {
        self.replies.get(step)
    }
}

/// Why a step's command cannot be built from the saga data: the step fails (and the saga
/// compensates) rather than wait on an input it can never get past.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandBuildError {
    /// The saga input lacks a field the command needs.
    #[error("saga input has no field `{0}`")]
    MissingInput(String),
    /// The saga input lacks a text field the command needs, or it is not text.
    #[error("saga input has no text field `{0}`")]
    MissingText(String),
    /// A field of the saga input does not have the shape the command needs.
    #[error("saga input `{field}`: {reason}")]
    InvalidInput {
        /// The field.
        field: String,
        /// The deserializer's complaint.
        reason: String,
    },
    /// An earlier step's reply lacks a field the command needs.
    #[error("the reply of `{step}` has no `{field}`")]
    MissingReply {
        /// The step whose reply is read.
        step: &'static str,
        /// The field.
        field: &'static str,
    },
    /// The definition has no step at this index.
    #[error("no such step")]
    NoSuchStep,
}

/// Builds a step's command from the saga data; an `Err` explains why it cannot be built.
pub type CommandBuilder =
    Arc<dyn Fn(&SagaData) -> Result<SagaCommand, CommandBuildError> + Send + Sync>;

/// Builds the fire-and-forget commands issued once every step has succeeded.
pub type CompletionBuilder =
    Arc<dyn Fn(&SagaData) -> Result<Vec<SagaCommand>, CommandBuildError> + Send + Sync>;

/// How many times a step's command is sent before the saga gives up on it.
///
/// The one rule every runtime follows: attempt `n` (from 1) is awaited
/// [`SagaStep::attempt_wait`]`(n)`, the step's timeout doubled for each earlier attempt up to
/// [`MAX_ATTEMPT_WAIT_FACTOR`] times it. When it goes unanswered (no reply by its deadline: the
/// reply was never produced, the command was dead-lettered, or in process the service failed)
/// the next attempt is sent; after the last, a forward step fails (and the saga compensates)
/// and a compensation is recorded as failed (and the next one runs). An unanswered command is
/// usually queued behind a backlog, not lost, so each repeat is given more time instead of
/// piling more repeats onto the same queue; the growing wait is the backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts including the first, at least 1.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3 }
    }
}

impl RetryPolicy {
    /// A policy that tries once and never retries.
    pub const fn no_retry() -> Self {
        Self { max_attempts: 1 }
    }

    /// A policy of `max_attempts` attempts.
    pub const fn attempts(max_attempts: u32) -> Self {
        Self { max_attempts }
    }
}

/// The command that undoes a step's effect, and the reply types that confirm it was undone.
#[derive(Clone)]
pub struct Compensation {
    builder: CommandBuilder,
    success_events: Vec<String>,
}

impl Compensation {
    /// Builds the compensating command from the saga data.
    pub fn build(&self, data: &SagaData) -> Result<SagaCommand, CommandBuildError> {
        (self.builder)(data)
    }

    /// The reply event types that confirm the compensation.
    pub fn success_events(&self) -> &[String] {
        &self.success_events
    }

    /// Whether `event_type` confirms the compensation.
    pub fn succeeds_on(&self, event_type: &str) -> bool {
        self.success_events.iter().any(|e| e == event_type)
    }
}

impl fmt::Debug for Compensation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compensation")
            .field("success_events", &self.success_events)
            .finish_non_exhaustive()
    }
}

/// Default step timeout: long enough for a slow service, short enough to notice a lost reply.
const DEFAULT_TIMEOUT_MS: i64 = 30_000;

/// The most a retried attempt is awaited, as a multiple of its step's timeout.
pub const MAX_ATTEMPT_WAIT_FACTOR: u32 = 8;

/// One step of a saga: a command, the replies that mean success or failure, and how to undo it.
#[derive(Clone)]
pub struct SagaStep {
    name: String,
    action: CommandBuilder,
    success_events: Vec<String>,
    failure_events: Vec<String>,
    compensation: Option<Compensation>,
    timeout_ms: i64,
    retry: RetryPolicy,
    compensation_retry: RetryPolicy,
}

fn owned(events: &[&str]) -> Vec<String> {
    events.iter().map(|e| e.to_string()).collect()
}

impl SagaStep {
    /// A step named `name` whose command is built by `action`.
    pub fn new(
        name: impl Into<String>,
        action: impl Fn(&SagaData) -> Result<SagaCommand, CommandBuildError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            action: Arc::new(action),
            success_events: Vec::new(),
            failure_events: Vec::new(),
            compensation: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy::default(),
        }
    }

    /// Adds reply event types that mean the step succeeded.
    pub fn succeeds_on(mut self, events: &[&str]) -> Self {
        self.success_events.extend(owned(events));
        self
    }

    /// Adds reply event types that mean the step failed.
    pub fn fails_on(mut self, events: &[&str]) -> Self {
        self.failure_events.extend(owned(events));
        self
    }

    /// Sets the compensation: its command builder and the reply types that confirm it.
    pub fn compensate_with(
        mut self,
        builder: impl Fn(&SagaData) -> Result<SagaCommand, CommandBuildError> + Send + Sync + 'static,
        success_events: &[&str],
    ) -> Self {
        self.compensation = Some(Compensation {
            builder: Arc::new(builder),
            success_events: owned(success_events),
        });
        self
    }

    /// Sets how long the orchestrator waits for a reply, in milliseconds.
    pub fn timeout_ms(mut self, timeout_ms: i64) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }

    /// Sets how many times the step's forward command is sent (see [`RetryPolicy`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Sets how many times the step's compensation is sent (see [`RetryPolicy`]).
    pub fn compensation_retry(mut self, policy: RetryPolicy) -> Self {
        self.compensation_retry = policy;
        self
    }

    /// The step's name, unique within its saga.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Builds the step's forward command from the saga data.
    pub fn build_command(&self, data: &SagaData) -> Result<SagaCommand, CommandBuildError> {
        (self.action)(data)
    }

    /// The reply event types that mean success.
    pub fn success_events(&self) -> &[String] {
        &self.success_events
    }

    /// The reply event types that mean failure.
    pub fn failure_events(&self) -> &[String] {
        &self.failure_events
    }

    /// Whether `event_type` means the step succeeded.
    pub fn succeeds_on_event(&self, event_type: &str) -> bool {
        self.success_events.iter().any(|e| e == event_type)
    }

    /// Whether `event_type` means the step failed.
    pub fn fails_on_event(&self, event_type: &str) -> bool {
        self.failure_events.iter().any(|e| e == event_type)
    }

    /// Whether the step can be undone.
    pub fn has_compensation(&self) -> bool {
        self.compensation.is_some()
    }

    /// The step's compensation, if it has one.
    pub fn compensation(&self) -> Option<&Compensation> {
        self.compensation.as_ref()
    }

    /// How long to wait for a reply, in milliseconds.
    pub fn timeout(&self) -> i64 {
        self.timeout_ms
    }

    /// The retry policy of the step's forward command.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The retry policy of the step's compensation.
    pub fn compensation_retry_policy(&self) -> &RetryPolicy {
        &self.compensation_retry
    }

    /// The policy of the command of `kind` (completion commands are sent once).
    pub fn policy_of(&self, kind: StepKind) -> RetryPolicy {
        match kind {
            StepKind::Forward => self.retry,
            StepKind::Compensation => self.compensation_retry,
            StepKind::Completion => RetryPolicy::no_retry(),
        }
    }

    /// How long attempt `attempt` (from 1) of this step's command, forward or compensation, is
    /// awaited: the timeout, doubled for each earlier attempt up to [`MAX_ATTEMPT_WAIT_FACTOR`]
    /// times it (see [`RetryPolicy`]).
    pub fn attempt_wait(&self, attempt: u32) -> i64 {
        let doublings = attempt
            .saturating_sub(1)
            .min(MAX_ATTEMPT_WAIT_FACTOR.ilog2());
        self.timeout_ms.saturating_mul(1_i64 << doublings)
    }
}

impl fmt::Debug for SagaStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaStep")
            .field("name", &self.name)
            .field("success_events", &self.success_events)
            .field("failure_events", &self.failure_events)
            .field("compensation", &self.compensation)
            .field("timeout_ms", &self.timeout_ms)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Why a saga definition is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SagaDefinitionError {
    /// The saga has no name.
    #[error("a saga definition needs a name")]
    EmptyName,
    /// The saga has no steps.
    #[error("saga `{0}` has no steps")]
    NoSteps(String),
    /// A step has an empty name.
    #[error("step {index} has an empty name")]
    EmptyStepName {
        /// Position of the step, from 0.
        index: usize,
    },
    /// Two steps share a name (names key the saga data and identify commands).
    #[error("step name `{0}` is used twice")]
    DuplicateStep(String),
    /// A step has no reply type meaning success, so it could never complete.
    #[error("step `{0}` has no success events")]
    NoSuccessEvents(String),
    /// A compensation has no reply type confirming it, so it could never complete.
    #[error("the compensation of step `{0}` has no success events")]
    NoCompensationSuccessEvents(String),
    /// One reply type is listed as both success and failure of a step.
    #[error("step `{step}` lists `{event_type}` as both success and failure")]
    AmbiguousEvent {
        /// The step.
        step: String,
        /// The event type listed twice.
        event_type: String,
    },
    /// A step's timeout is zero or negative.
    #[error("step `{step}` has timeout {timeout_ms}ms; it must be positive")]
    InvalidTimeout {
        /// The step.
        step: String,
        /// The configured timeout.
        timeout_ms: i64,
    },
    /// A step's retry policy allows no attempt at all.
    #[error("step `{0}` has a retry policy with zero attempts")]
    ZeroAttempts(String),
}

struct DefinitionInner {
    name: String,
    steps: Vec<SagaStep>,
    completion: Vec<CompletionBuilder>,
}

/// A validated saga: a name, ordered steps and the commands issued on completion.
///
/// Cheap to clone and shareable between tasks: the contents sit behind an `Arc`.
#[derive(Clone)]
pub struct SagaDefinition {
    inner: Arc<DefinitionInner>,
}

impl SagaDefinition {
    /// Starts building a saga definition named `name` (the saga type).
    // `new` returning the builder keeps call sites reading `SagaDefinition::new(..).build()`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: impl Into<String>) -> SagaDefinitionBuilder {
        SagaDefinitionBuilder {
            name: name.into(),
            steps: Vec::new(),
            completion: Vec::new(),
        }
    }

    /// The saga type name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The steps in the order they run.
    pub fn steps(&self) -> &[SagaStep] {
        &self.inner.steps
    }

    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&SagaStep> {
        self.inner.steps.iter().find(|s| s.name == name)
    }

    /// The position of the step named `name`.
    pub fn step_index(&self, name: &str) -> Option<usize> {
        self.inner.steps.iter().position(|s| s.name == name)
    }

    /// The names of the steps in order.
    pub fn step_names(&self) -> Vec<&str> {
        self.inner.steps.iter().map(|s| s.name.as_str()).collect()
    }

    /// Builds every completion command, in the order the builders were added.
    pub fn completion_commands(
        &self,
        data: &SagaData,
    ) -> Result<Vec<SagaCommand>, CommandBuildError> {
        let mut commands = Vec::new();
        for builder in &self.inner.completion {
            commands.extend(builder(data)?);
        }
        Ok(commands)
    }
}

impl fmt::Debug for SagaDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaDefinition")
            .field("name", &self.inner.name)
            .field("steps", &self.step_names())
            .finish()
    }
}

/// Collects the parts of a [`SagaDefinition`]; [`SagaDefinitionBuilder::build`] validates them.
pub struct SagaDefinitionBuilder {
    name: String,
    steps: Vec<SagaStep>,
    completion: Vec<CompletionBuilder>,
}

impl SagaDefinitionBuilder {
    /// Appends a step; steps run in the order they are added.
    pub fn step(mut self, step: SagaStep) -> Self {
        self.steps.push(step);
        self
    }

    /// Adds a builder of commands issued when every step succeeded (may be called repeatedly).
    pub fn on_completed(
        mut self,
        builder: impl Fn(&SagaData) -> Result<Vec<SagaCommand>, CommandBuildError>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.completion.push(Arc::new(builder));
        self
    }

    /// Validates the definition.
    pub fn build(self) -> Result<SagaDefinition, SagaDefinitionError> {
        if self.name.trim().is_empty() {
            return Err(SagaDefinitionError::EmptyName);
        }
        if self.steps.is_empty() {
            return Err(SagaDefinitionError::NoSteps(self.name));
        }
        let mut names = BTreeSet::new();
        for (index, step) in self.steps.iter().enumerate() {
            validate_step(index, step)?;
            if !names.insert(step.name.as_str()) {
                return Err(SagaDefinitionError::DuplicateStep(step.name.clone()));
            }
        }
        Ok(SagaDefinition {
            inner: Arc::new(DefinitionInner {
                name: self.name,
                steps: self.steps,
                completion: self.completion,
            }),
        })
    }
}

fn validate_step(index: usize, step: &SagaStep) -> Result<(), SagaDefinitionError> {
    if step.name.trim().is_empty() {
        return Err(SagaDefinitionError::EmptyStepName { index });
    }
    if step.success_events.is_empty() {
        return Err(SagaDefinitionError::NoSuccessEvents(step.name.clone()));
    }
    if let Some(ambiguous) = step
        .success_events
        .iter()
        .find(|e| step.failure_events.contains(e))
    {
        return Err(SagaDefinitionError::AmbiguousEvent {
            step: step.name.clone(),
            event_type: ambiguous.clone(),
        });
    }
    if step.timeout_ms <= 0 {
        return Err(SagaDefinitionError::InvalidTimeout {
            step: step.name.clone(),
            timeout_ms: step.timeout_ms,
        });
    }
    if step.retry.max_attempts == 0 || step.compensation_retry.max_attempts == 0 {
        return Err(SagaDefinitionError::ZeroAttempts(step.name.clone()));
    }
    if let Some(compensation) = &step.compensation {
        if compensation.success_events.is_empty() {
            return Err(SagaDefinitionError::NoCompensationSuccessEvents(
                step.name.clone(),
            ));
        }
    }
    Ok(())
}

/// Which part of a saga a command belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    /// A step's forward command.
    Forward,
    /// A step's compensating command.
    Compensation,
    /// A fire-and-forget command issued after every step succeeded.
    Completion,
}

impl StepKind {
    /// The lowercase name used in command ids and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            StepKind::Forward => "forward",
            StepKind::Compensation => "compensation",
            StepKind::Completion => "completion",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Namespace of command ids (UUIDv5 of saga id, step, kind and attempt).
const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x7b1c_5a2e_93d4_4f6a_8c0e_51a9_d2f3_6b02);

/// The step name that completion commands carry, suffixed with their 1-based position.
pub const COMPLETION_STEP: &str = "on_completed";

/// A saga's command to a service, with everything needed to route it and recognise it again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandMessage {
    /// Deterministic id: the same saga, step, kind and attempt always give the same id.
    pub command_id: String,
    /// The saga instance that issued the command.
    pub saga_id: String,
    /// The saga type (definition name).
    pub saga_type: String,
    /// The step the command belongs to (`on_completed#N` for completion commands).
    pub step: String,
    /// Forward, compensation or completion.
    pub kind: StepKind,
    /// Attempt number from 1.
    pub attempt: u32,
    /// The saga's correlation id.
    pub correlation_id: String,
    /// Id of the event (or saga) that caused the command.
    pub causation_id: String,
    /// When the saga stops waiting for a reply, if it waits at all.
    pub deadline: Option<Timestamp>,
    /// The command itself.
    pub command: SagaCommand,
}

impl CommandMessage {
    /// The deterministic id of the command of `saga_id`, `step`, `kind` and `attempt`.
    pub fn command_id_for(saga_id: &str, step: &str, kind: StepKind, attempt: u32) -> String {
        let name = format!("{saga_id}/{step}/{kind}/{attempt}");
        Uuid::new_v5(&COMMAND_ID_NAMESPACE, name.as_bytes()).to_string()
    }

    /// The step name of the completion command at 0-based `index`.
    pub fn completion_step(index: usize) -> String {
        format!("{COMPLETION_STEP}#{}", index + 1)
    }
}

/// The ids every command of one saga shares, so both runtimes build messages the same way.
#[derive(Clone, Debug)]
pub(crate) struct MessageContext<'a> {
    pub saga_id: &'a str,
    pub saga_type: &'a str,
    pub correlation_id: &'a str,
}

impl MessageContext<'_> {
    /// A message for `command` of `step`/`kind`/`attempt`, caused by `causation_id`.
    pub fn message(
        &self,
        step: &str,
        kind: StepKind,
        attempt: u32,
        causation_id: &str,
        deadline: Option<Timestamp>,
        command: SagaCommand,
    ) -> CommandMessage {
        CommandMessage {
            command_id: CommandMessage::command_id_for(self.saga_id, step, kind, attempt),
            saga_id: self.saga_id.to_string(),
            saga_type: self.saga_type.to_string(),
            step: step.to_string(),
            kind,
            attempt,
            correlation_id: self.correlation_id.to_string(),
            causation_id: causation_id.to_string(),
            deadline,
            command,
        }
    }

    /// The completion messages for `commands`, each attempt 1 with no deadline.
    pub fn completion_messages(
        &self,
        causation_id: &str,
        commands: Vec<SagaCommand>,
    ) -> Vec<CommandMessage> {
        commands
            .into_iter()
            .enumerate()
            .map(|(i, command)| {
                let step = CommandMessage::completion_step(i);
                self.message(&step, StepKind::Completion, 1, causation_id, None, command)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::order_saga;
    use serde_json::json;

    fn cmd(t: &str) -> impl Fn(&SagaData) -> Result<SagaCommand, CommandBuildError> + Send + Sync {
        let t = t.to_string();
        move |_: &SagaData| Ok(SagaCommand::new(t.clone(), "x", json!({})))
    }

    #[test]
    fn each_retried_attempt_is_awaited_twice_as_long_up_to_eight_timeouts() {
        let step = SagaStep::new("a", cmd("a.do")).timeout_ms(1_000);
        let waits: Vec<i64> = (1..=7).map(|a| step.attempt_wait(a)).collect();
        assert_eq!(waits, [1_000, 2_000, 4_000, 8_000, 8_000, 8_000, 8_000]);
        assert_eq!(step.attempt_wait(u32::MAX), 8_000);
        assert_eq!(step.attempt_wait(0), 1_000);
        let step = step
            .retry(RetryPolicy::attempts(2))
            .compensation_retry(RetryPolicy::attempts(5));
        assert_eq!(step.policy_of(StepKind::Forward).max_attempts, 2);
        assert_eq!(step.policy_of(StepKind::Compensation).max_attempts, 5);
        assert_eq!(step.policy_of(StepKind::Completion).max_attempts, 1);
    }

    #[test]
    fn a_valid_definition_exposes_its_steps() {
        fn shareable<T: Send + Sync + Clone + 'static>(_: &T) {}
        let def = order_saga();
        shareable(&def);
        assert_eq!(def.name(), "order_fulfilment");
        assert_eq!(def.step_names(), vec!["reserve", "charge", "ship"]);
        assert_eq!(def.step_index("charge"), Some(1));
        let charge = def.step("charge").unwrap();
        assert!(charge.has_compensation());
        assert!(charge.succeeds_on_event("payment.processed"));
        assert!(charge.fails_on_event("payment.declined"));
        assert!(charge.compensation().unwrap().succeeds_on("payment.voided"));
        assert!(!def.step("ship").unwrap().has_compensation());
        let debug = format!("{def:?}");
        assert!(
            debug.contains("order_fulfilment") && debug.contains("ship"),
            "{debug}"
        );
        let data = SagaData::new(json!({"order_id": "o-1", "sku": "s", "qty": 1, "amount": 5}));
        let completion = def.completion_commands(&data).unwrap();
        assert_eq!(completion[0].command_type, "order.complete");
        assert_eq!(completion[0].target_id, "o-1");
    }

    #[test]
    fn invalid_definitions_are_refused_with_typed_errors() {
        let ok = || SagaStep::new("a", cmd("a.do")).succeeds_on(&["a.done"]);
        assert_eq!(
            SagaDefinition::new("s").build().unwrap_err(),
            SagaDefinitionError::NoSteps("s".into())
        );
        assert_eq!(
            SagaDefinition::new(" ").step(ok()).build().unwrap_err(),
            SagaDefinitionError::EmptyName
        );
        assert_eq!(
            SagaDefinition::new("s")
                .step(ok())
                .step(ok())
                .build()
                .unwrap_err(),
            SagaDefinitionError::DuplicateStep("a".into())
        );
        assert_eq!(
            SagaDefinition::new("s")
                .step(SagaStep::new("b", cmd("b.do")))
                .build()
                .unwrap_err(),
            SagaDefinitionError::NoSuccessEvents("b".into())
        );
        assert_eq!(
            SagaDefinition::new("s")
                .step(ok().timeout_ms(0))
                .build()
                .unwrap_err(),
            SagaDefinitionError::InvalidTimeout {
                step: "a".into(),
                timeout_ms: 0
            }
        );
        assert_eq!(
            SagaDefinition::new("s")
                .step(ok().fails_on(&["a.done"]))
                .build()
                .unwrap_err(),
            SagaDefinitionError::AmbiguousEvent {
                step: "a".into(),
                event_type: "a.done".into()
            }
        );
        assert_eq!(
            SagaDefinition::new("s")
                .step(ok().retry(RetryPolicy::attempts(0)))
                .build()
                .unwrap_err(),
            SagaDefinitionError::ZeroAttempts("a".into())
        );
        assert_eq!(
            SagaDefinition::new("s")
                .step(ok().compensate_with(cmd("a.undo"), &[]))
                .build()
                .unwrap_err(),
            SagaDefinitionError::NoCompensationSuccessEvents("a".into())
        );
        assert_eq!(
            SagaDefinition::new("s")
                .step(SagaStep::new("", cmd("x")).succeeds_on(&["x"]))
                .build()
                .unwrap_err(),
            SagaDefinitionError::EmptyStepName { index: 0 }
        );
    }

    #[test]
    fn command_ids_are_deterministic_per_saga_step_kind_and_attempt() {
        let id = CommandMessage::command_id_for("s-1", "charge", StepKind::Forward, 1);
        assert_eq!(
            id,
            CommandMessage::command_id_for("s-1", "charge", StepKind::Forward, 1)
        );
        for other in [
            CommandMessage::command_id_for("s-2", "charge", StepKind::Forward, 1),
            CommandMessage::command_id_for("s-1", "reserve", StepKind::Forward, 1),
            CommandMessage::command_id_for("s-1", "charge", StepKind::Compensation, 1),
            CommandMessage::command_id_for("s-1", "charge", StepKind::Forward, 2),
        ] {
            assert_ne!(id, other);
        }
    }

    #[test]
    fn command_message_round_trips_through_json() {
        let ctx = MessageContext {
            saga_id: "s-1",
            saga_type: "t",
            correlation_id: "c-1",
        };
        let msg = ctx.message(
            "charge",
            StepKind::Compensation,
            2,
            "evt-9",
            Some(Timestamp(5)),
            SagaCommand::new("payment.refund", "p-1", json!({"amount": 5})),
        );
        let value = serde_json::to_value(&msg).unwrap();
        assert_eq!(value["kind"], "compensation");
        assert_eq!(value["deadline"], 5);
        assert_eq!(value["command"]["command_type"], "payment.refund");
        let back: CommandMessage = serde_json::from_value(value).unwrap();
        assert_eq!(back, msg);
        let completion = ctx.completion_messages(
            "evt-1",
            vec![
                SagaCommand::new("a", "1", json!(null)),
                SagaCommand::new("b", "2", json!(null)),
            ],
        );
        assert_eq!(completion[1].step, "on_completed#2");
        assert_ne!(completion[0].command_id, completion[1].command_id);
        assert_eq!(completion[0].deadline, None);
    }
}
