//! Given these past events, when this command, then these events or this error.

use std::fmt::Debug;

use crate::aggregate::Aggregate;

/// A given/when/then test of one aggregate's decisions.
pub struct AggregateFixture<A: Aggregate> {
    state: A,
}

impl<A: Aggregate> AggregateFixture<A> {
    /// Given no past events: a new aggregate.
    pub fn given_no_events() -> Self {
        Self {
            state: A::default(),
        }
    }

    /// Given these past events, folded into the state in order.
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let events: Vec<_> = events.into_iter().collect();
        Self {
            state: A::from_events(&events),
        }
    }

    /// When this command is decided on the given state.
    pub fn when(self, command: A::Command) -> AggregateResult<A> {
        let result = self.state.decide(&command);
        AggregateResult {
            state: self.state,
            command,
            result,
        }
    }
}

/// The outcome of a fixture's `when`, to be checked with a `then_*` method.
pub struct AggregateResult<A: Aggregate> {
    state: A,
    command: A::Command,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> AggregateResult<A>
where
    A::Event: PartialEq,
{
    /// Then exactly these events are decided.
    #[track_caller]
    pub fn then_expect_events(self, expected: Vec<A::Event>) -> A {
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "unexpected events for {:?}", self.command);
                let mut state = self.state;
                for event in &events {
                    state.apply(event);
                }
                state
            }
            Err(err) => panic!(
                "expected events {expected:?} for {:?}, got error: {err}",
                self.command
            ),
        }
    }

    /// Then the command is refused with exactly this error.
    #[track_caller]
    pub fn then_expect_error(self, expected: A::Error)
    where
        A::Error: PartialEq,
    {
        match self.result {
            Ok(events) => panic!(
                "expected error {expected:?} for {:?}, got events {events:?}",
                self.command
            ),
            Err(err) => assert_eq!(err, expected, "unexpected error for {:?}", self.command),
        }
    }

    /// Then the command is refused with an error that satisfies `check`.
    #[track_caller]
    pub fn then_expect_error_matching(self, check: impl FnOnce(&A::Error) -> bool)
    where
        A::Error: Debug,
    {
        match self.result {
            Ok(events) => panic!(
                "expected an error for {:?}, got events {events:?}",
                self.command
            ),
            Err(err) => assert!(check(&err), "error {err:?} did not match"),
        }
    }
}
