//! Event-sourced aggregates: `decide` turns a command into events, `apply` folds events into state.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::{DomainEvent, Timestamp};

/// An event-sourced aggregate: its state is the fold of its events with [`Aggregate::apply`].
pub trait Aggregate:
    Default + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// The aggregate type name used in stream ids and envelopes, such as `order`.
    const TYPE: &'static str;
    /// Version of the serialized state; a snapshot taken at another version is ignored.
    const SNAPSHOT_VERSION: u32 = 1;

    /// What can be asked of the aggregate.
    type Command: Debug + Send + Sync;
    /// What the aggregate records.
    type Event: DomainEvent;
    /// Why a command is refused: invalid input or a broken invariant.
    type Error: std::error::Error + Clone + Send + Sync + 'static;

    /// Decides what happens for `command` given the current state; never mutates it.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Folds one event into the state; must accept every event `decide` ever produced.
    fn apply(&mut self, event: &Self::Event);

    /// When the aggregate wants to be woken to act on time passing (a saga step's deadline);
    /// the store keeps it beside the stream so a timer can find what is due.
    fn wake_at(&self) -> Option<Timestamp> {
        None
    }

    /// The state after `events`, starting from the default state.
    fn from_events<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        let mut state = Self::default();
        for event in events {
            state.apply(event);
        }
        state
    }
}
