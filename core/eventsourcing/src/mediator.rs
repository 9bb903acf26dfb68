//! A CQRS mediator: commands, queries and events are dispatched to handlers
//! registered by message type, so senders never name the code that handles them.

use std::any::{type_name, Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A heap-allocated, sendable future, used to store handlers of different concrete types together.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A request to change state, handled by exactly one handler.
pub trait Command: Send + 'static {
    /// What the handler returns; domain errors belong here, typically as a `Result`.
    type Output: Send + 'static;
}

/// A request to read state, handled by exactly one handler.
pub trait Query: Send + 'static {
    /// What the handler returns; domain errors belong here, typically as a `Result`.
    type Output: Send + 'static;
}

/// The three kinds of message the mediator dispatches, named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// A state-changing request with one handler.
    Command,
    /// A read request with one handler.
    Query,
    /// A notification with any number of handlers.
    Event,
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageKind::Command => "command",
            MessageKind::Query => "query",
            MessageKind::Event => "event",
        })
    }
}

/// The error an event handler returns when it could not react to an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// Creates a handler error carrying a human-readable explanation.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// The explanation the handler gave.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// One event handler that failed during a publish, identified by its registered name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerFailure {
    /// The name the handler was registered under.
    pub handler: String,
    /// What the handler reported.
    pub error: HandlerError,
}

/// The outcome of a publish in which every handler succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishReport {
    /// Names of the handlers that ran, in the order they ran.
    pub handlers: Vec<String>,
}

impl PublishReport {
    /// How many handlers ran.
    pub fn handled(&self) -> usize {
        self.handlers.len()
    }
}

/// Why the mediator could not register or dispatch a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediatorError {
    /// Nothing is registered to handle this command or query type.
    #[error("no {kind} handler registered for {message_type}")]
    NoHandler {
        /// Whether the message was a command or a query.
        kind: MessageKind,
        /// The Rust type name of the message.
        message_type: &'static str,
    },
    /// A command or query type already has its one handler.
    #[error("a {kind} handler is already registered for {message_type}")]
    DuplicateHandler {
        /// Whether the message was a command or a query.
        kind: MessageKind,
        /// The Rust type name of the message.
        message_type: &'static str,
    },
    /// An event type already has a handler with this name, which would make failure reports ambiguous.
    #[error("an event handler named `{handler}` is already registered for {message_type}")]
    DuplicateEventHandler {
        /// The Rust type name of the event.
        message_type: &'static str,
        /// The repeated handler name.
        handler: String,
    },
    /// At least one event handler failed; every other handler still ran.
    #[error("{} of {handled} handlers for {message_type} failed", failures.len())]
    HandlersFailed {
        /// The Rust type name of the event.
        message_type: &'static str,
        /// How many handlers ran, failed ones included.
        handled: usize,
        /// The failed handlers, in the order they ran.
        failures: Vec<HandlerFailure>,
    },
}

type RequestFn<M, O> = Box<dyn Fn(M) -> BoxFuture<O> + Send + Sync>;
type EventFn<E> = Box<dyn Fn(E) -> BoxFuture<Result<(), HandlerError>> + Send + Sync>;

struct EventHandler<E> {
    name: String,
    handle: EventFn<E>,
}

type EventHandlers<E> = Vec<EventHandler<E>>;

/// Routes commands and queries to their single handler and events to all their handlers.
#[derive(Default)]
pub struct Mediator {
    // Values are `RequestFn<C, C::Output>`, `RequestFn<Q, Q::Output>` and `EventHandlers<E>`,
    // erased so one map can hold every message type; the key is always the message's TypeId.
    commands: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    queries: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    events: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for Mediator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mediator")
            .field("command_types", &self.commands.len())
            .field("query_types", &self.queries.len())
            .field("event_types", &self.events.len())
            .finish()
    }
}

impl Mediator {
    /// Creates a mediator with no handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the one handler for command type `C`.
    pub fn register_command_handler<C, F, Fut>(&mut self, f: F) -> Result<(), MediatorError>
    where
        C: Command,
        F: Fn(C) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = C::Output> + Send + 'static,
    {
        register_request::<C, C::Output, F, Fut>(&mut self.commands, MessageKind::Command, f)
    }

    /// Registers the one handler for query type `Q`.
    pub fn register_query_handler<Q, F, Fut>(&mut self, f: F) -> Result<(), MediatorError>
    where
        Q: Query,
        F: Fn(Q) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Q::Output> + Send + 'static,
    {
        register_request::<Q, Q::Output, F, Fut>(&mut self.queries, MessageKind::Query, f)
    }

    /// Adds a named handler for event type `E`; handlers run in registration order.
    pub fn register_event_handler<E, F, Fut>(
        &mut self,
        name: &str,
        f: F,
    ) -> Result<(), MediatorError>
    where
        E: Clone + Send + Sync + 'static,
        F: Fn(E) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let key = TypeId::of::<E>();
        // Taking the list out and downcasting the box keeps this total: the slot for
        // `TypeId::of::<E>()` is only ever written here, so the fallback never drops handlers.
        let mut handlers: Box<EventHandlers<E>> = self
            .events
            .remove(&key)
            .and_then(|slot| slot.downcast::<EventHandlers<E>>().ok())
            .unwrap_or_default();
        let duplicate = handlers.iter().any(|h| h.name == name);
        if !duplicate {
            handlers.push(EventHandler {
                name: name.to_owned(),
                handle: Box::new(move |event| Box::pin(f(event))),
            });
        }
        self.events.insert(key, handlers);
        if duplicate {
            return Err(MediatorError::DuplicateEventHandler {
                message_type: type_name::<E>(),
                handler: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Dispatches a command to its handler and returns the handler's output.
    pub async fn send<C: Command>(&self, command: C) -> Result<C::Output, MediatorError> {
        let handler = find_request::<C, C::Output>(&self.commands, MessageKind::Command)?;
        Ok(handler(command).await)
    }

    /// Dispatches a query to its handler and returns the handler's output.
    pub async fn query<Q: Query>(&self, query: Q) -> Result<Q::Output, MediatorError> {
        let handler = find_request::<Q, Q::Output>(&self.queries, MessageKind::Query)?;
        Ok(handler(query).await)
    }

    /// Delivers an event to every handler of its type, one after another, even when some fail.
    pub async fn publish<E>(&self, event: E) -> Result<PublishReport, MediatorError>
    where
        E: Clone + Send + Sync + 'static,
    {
        let Some(handlers) = self
            .events
            .get(&TypeId::of::<E>())
            .and_then(|slot| slot.downcast_ref::<EventHandlers<E>>())
        else {
            // Pub/sub: an event nobody listens to is not an error.
            return Ok(PublishReport::default());
        };
        let mut report = PublishReport::default();
        let mut failures = Vec::new();
        for handler in handlers {
            let outcome = (handler.handle)(event.clone()).await;
            report.handlers.push(handler.name.clone());
            if let Err(error) = outcome {
                failures.push(HandlerFailure {
                    handler: handler.name.clone(),
                    error,
                });
            }
        }
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(MediatorError::HandlersFailed {
                message_type: type_name::<E>(),
                handled: report.handled(),
                failures,
            })
        }
    }
}

fn register_request<M, O, F, Fut>(
    registry: &mut HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    kind: MessageKind,
    f: F,
) -> Result<(), MediatorError>
where
    M: Send + 'static,
    O: Send + 'static,
    F: Fn(M) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = O> + Send + 'static,
{
    let key = TypeId::of::<M>();
    if registry.contains_key(&key) {
        return Err(MediatorError::DuplicateHandler {
            kind,
            message_type: type_name::<M>(),
        });
    }
    let handler: RequestFn<M, O> = Box::new(move |message| Box::pin(f(message)));
    registry.insert(key, Box::new(handler));
    Ok(())
}

fn find_request<M, O>(
    registry: &HashMap<TypeId, Box<dyn Any + Send + Sync>>,
    kind: MessageKind,
) -> Result<&RequestFn<M, O>, MediatorError>
where
    M: 'static,
    O: 'static,
{
    // A failed downcast cannot happen (the key fixes the stored type), but if it did,
    // "no usable handler" is the honest answer rather than a panic.
    registry
        .get(&TypeId::of::<M>())
        .and_then(|slot| slot.downcast_ref::<RequestFn<M, O>>())
        .ok_or(MediatorError::NoHandler {
            kind,
            message_type: type_name::<M>(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Debug)]
    struct Deposit {
        account: String,
        amount: u64,
    }

    /// The handler's own refusal, typed as a production handler's would be.
    #[derive(Debug, PartialEq, thiserror::Error)]
    #[error("empty deposit to {0}")]
    struct EmptyDeposit(String);

    impl Command for Deposit {
        type Output = Result<u64, EmptyDeposit>;
    }

    struct Unhandled;

    impl Command for Unhandled {
        type Output = ();
    }

    struct Balance {
        account: String,
    }

    impl Query for Balance {
        type Output = Option<u64>;
    }

    struct Missing;

    impl Query for Missing {
        type Output = u8;
    }

    #[derive(Debug, Clone, PartialEq)]
    struct OrderPlaced {
        order: u32,
    }

    #[derive(Debug, Clone, PartialEq)]
    struct OrderCancelled {
        order: u32,
    }

    type Log = Arc<Mutex<Vec<String>>>;

    fn record(log: &Log, entry: String) {
        if let Ok(mut entries) = log.lock() {
            entries.push(entry);
        }
    }

    fn entries(log: &Log) -> Vec<String> {
        log.lock().map(|e| e.clone()).unwrap_or_default()
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[tokio::test]
    async fn send_reaches_the_registered_handler_and_returns_its_output() {
        let mut mediator = Mediator::new();
        mediator
            .register_command_handler(|c: Deposit| async move {
                if c.amount == 0 {
                    Err(EmptyDeposit(c.account))
                } else {
                    Ok(c.amount * 2)
                }
            })
            .unwrap();

        let ok = mediator
            .send(Deposit {
                account: "a".into(),
                amount: 21,
            })
            .await;
        assert_eq!(ok, Ok(Ok(42)));

        let domain_error = mediator
            .send(Deposit {
                account: "b".into(),
                amount: 0,
            })
            .await;
        assert_eq!(domain_error, Ok(Err(EmptyDeposit("b".to_string()))));
        assert_eq!(EmptyDeposit("b".into()).to_string(), "empty deposit to b");
    }

    #[tokio::test]
    async fn query_reaches_the_registered_handler_and_returns_its_output() {
        let mut mediator = Mediator::new();
        mediator
            .register_query_handler(
                |q: Balance| async move { (q.account == "alice").then_some(100) },
            )
            .unwrap();

        assert_eq!(
            mediator
                .query(Balance {
                    account: "alice".into()
                })
                .await,
            Ok(Some(100))
        );
        assert_eq!(
            mediator
                .query(Balance {
                    account: "bob".into()
                })
                .await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn unregistered_command_is_no_handler_naming_the_type() {
        let mediator = Mediator::new();
        let err = mediator.send(Unhandled).await.unwrap_err();
        assert_eq!(
            err,
            MediatorError::NoHandler {
                kind: MessageKind::Command,
                message_type: type_name::<Unhandled>(),
            }
        );
        assert!(err.to_string().contains("Unhandled"), "{err}");
        assert!(err.to_string().contains("command"), "{err}");
    }

    #[tokio::test]
    async fn unregistered_query_is_no_handler_naming_the_type() {
        let mut mediator = Mediator::new();
        // A handler for a different query must not answer this one.
        mediator
            .register_query_handler(|_: Balance| async { Some(1) })
            .unwrap();
        let err = mediator.query(Missing).await.unwrap_err();
        assert_eq!(
            err,
            MediatorError::NoHandler {
                kind: MessageKind::Query,
                message_type: type_name::<Missing>(),
            }
        );
        assert!(err.to_string().contains("Missing"), "{err}");
    }

    #[tokio::test]
    async fn duplicate_registration_is_rejected_and_keeps_the_first_handler() {
        let mut mediator = Mediator::new();
        mediator
            .register_command_handler(|c: Deposit| async move { Ok(c.amount) })
            .unwrap();
        let err = mediator
            .register_command_handler(|_: Deposit| async { Ok(999) })
            .unwrap_err();
        assert_eq!(
            err,
            MediatorError::DuplicateHandler {
                kind: MessageKind::Command,
                message_type: type_name::<Deposit>(),
            }
        );

        mediator
            .register_query_handler(|_: Balance| async { Some(1) })
            .unwrap();
        assert_eq!(
            mediator.register_query_handler(|_: Balance| async { Some(2) }),
            Err(MediatorError::DuplicateHandler {
                kind: MessageKind::Query,
                message_type: type_name::<Balance>(),
            })
        );

        let out = mediator
            .send(Deposit {
                account: "a".into(),
                amount: 5,
            })
            .await;
        assert_eq!(out, Ok(Ok(5)));
        assert_eq!(
            mediator
                .query(Balance {
                    account: "x".into()
                })
                .await,
            Ok(Some(1))
        );
    }

    #[tokio::test]
    async fn duplicate_event_handler_name_is_rejected() {
        let mut mediator = Mediator::new();
        mediator
            .register_event_handler("audit", |_: OrderPlaced| async { Ok(()) })
            .unwrap();
        assert_eq!(
            mediator.register_event_handler("audit", |_: OrderPlaced| async { Ok(()) }),
            Err(MediatorError::DuplicateEventHandler {
                message_type: type_name::<OrderPlaced>(),
                handler: "audit".into(),
            })
        );
        // The same name on another event type is a different handler.
        mediator
            .register_event_handler("audit", |_: OrderCancelled| async { Ok(()) })
            .unwrap();
        let report = mediator.publish(OrderPlaced { order: 1 }).await.unwrap();
        assert_eq!(report.handlers, vec!["audit".to_string()]);
    }

    #[tokio::test]
    async fn publish_runs_all_handlers_of_the_type_in_order_and_no_others() {
        let log: Log = Arc::default();
        let mut mediator = Mediator::new();
        for name in ["email", "stock", "audit"] {
            let log = log.clone();
            mediator
                .register_event_handler(name, move |e: OrderPlaced| {
                    let log = log.clone();
                    async move {
                        // Yield so that a concurrent (non-sequential) publish would interleave.
                        tokio::task::yield_now().await;
                        record(&log, format!("{name}:{}", e.order));
                        Ok(())
                    }
                })
                .unwrap();
        }
        let cancelled_log = log.clone();
        mediator
            .register_event_handler("refund", move |e: OrderCancelled| {
                let log = cancelled_log.clone();
                async move {
                    record(&log, format!("refund:{}", e.order));
                    Ok(())
                }
            })
            .unwrap();

        let report = mediator.publish(OrderPlaced { order: 7 }).await.unwrap();

        assert_eq!(report.handlers, vec!["email", "stock", "audit"]);
        assert_eq!(report.handled(), 3);
        assert_eq!(entries(&log), vec!["email:7", "stock:7", "audit:7"]);
    }

    #[tokio::test]
    async fn publish_without_handlers_is_ok_with_nothing_handled() {
        let mediator = Mediator::new();
        let report = mediator.publish(OrderPlaced { order: 1 }).await.unwrap();
        assert_eq!(report.handled(), 0);
        assert!(report.handlers.is_empty());
    }

    #[tokio::test]
    async fn failing_event_handler_does_not_stop_the_others_and_is_reported_by_name() {
        let log: Log = Arc::default();
        let mut mediator = Mediator::new();
        for (name, fails) in [("first", false), ("broken", true), ("last", false)] {
            let log = log.clone();
            mediator
                .register_event_handler(name, move |e: OrderPlaced| {
                    let log = log.clone();
                    async move {
                        record(&log, name.to_string());
                        if fails {
                            Err(HandlerError::new(format!("cannot handle {}", e.order)))
                        } else {
                            Ok(())
                        }
                    }
                })
                .unwrap();
        }

        let err = mediator
            .publish(OrderPlaced { order: 3 })
            .await
            .unwrap_err();

        assert_eq!(entries(&log), vec!["first", "broken", "last"]);
        assert_eq!(
            err,
            MediatorError::HandlersFailed {
                message_type: type_name::<OrderPlaced>(),
                handled: 3,
                failures: vec![HandlerFailure {
                    handler: "broken".into(),
                    error: HandlerError::new("cannot handle 3"),
                }],
            }
        );
        assert!(err.to_string().contains("1 of 3"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mediator_can_be_shared_across_spawned_tasks() {
        assert_send_sync::<Mediator>();

        let mut mediator = Mediator::new();
        mediator
            .register_command_handler(|c: Deposit| async move {
                tokio::task::yield_now().await;
                Ok(c.amount + 1)
            })
            .unwrap();
        let seen: Log = Arc::default();
        let seen_by_handler = seen.clone();
        mediator
            .register_event_handler("count", move |e: OrderPlaced| {
                let seen = seen_by_handler.clone();
                async move {
                    record(&seen, e.order.to_string());
                    Ok(())
                }
            })
            .unwrap();
        let mediator = Arc::new(mediator);

        let tasks: Vec<_> = (0..8u64)
            .map(|i| {
                let mediator = Arc::clone(&mediator);
                tokio::spawn(async move {
                    mediator
                        .publish(OrderPlaced { order: i as u32 })
                        .await
                        .unwrap();
                    mediator
                        .send(Deposit {
                            account: format!("acc-{i}"),
                            amount: i,
                        })
                        .await
                })
            })
            .collect();

        let mut outputs = Vec::new();
        for task in tasks {
            outputs.push(task.await.unwrap().unwrap().unwrap());
        }
        assert_eq!(outputs, (1..=8).collect::<Vec<u64>>());
        let mut seen = entries(&seen);
        seen.sort();
        assert_eq!(seen, vec!["0", "1", "2", "3", "4", "5", "6", "7"]);
    }
}
