//! sagaflow's one-stream warehouse aggregate (`sagaflow_orders::testkit::warehouse`) written on cqrs-es 0.5, and
//! the in-memory stores the bench runs it on.
//!
//! State, commands, events, error type and validation rules are sagaflow's own types and rules,
//! so both frameworks do the same domain work. What differs is what each framework's API
//! affords: cqrs-es hands `handle` the command and `apply` the event by value, so this version
//! moves ids and lines where sagaflow's (which borrows) clones them. That is cqrs-es's advantage
//! to keep, not something to take away from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use cqrs_es::event_sink::EventSink;
use cqrs_es::mem_store::MemStoreAggregateContext;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use sagaflow_orders::domain::inventory::normalise;
use sagaflow_orders::domain::types::{validate_id, FieldError, StockLine};
use sagaflow_orders::testkit::warehouse::{
    Warehouse, WarehouseCommand, WarehouseError, WarehouseEvent,
};

/// One warehouse's stock on cqrs-es: sagaflow's `Warehouse` state under cqrs-es's `Aggregate`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CqrsWarehouse(pub Warehouse);

/// sagaflow's `WarehouseEvent`, wrapped because cqrs-es needs its own `DomainEvent` trait on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StockEvent(pub WarehouseEvent);

impl cqrs_es::DomainEvent for StockEvent {
    fn event_type(&self) -> String {
        sagaflow_eventsourcing::DomainEvent::event_type(&self.0).to_string()
    }

    fn event_version(&self) -> String {
        let event_type = sagaflow_eventsourcing::DomainEvent::event_type(&self.0);
        <WarehouseEvent as sagaflow_eventsourcing::DomainEvent>::schema_version(event_type)
            .unwrap_or(1)
            .to_string()
    }
}

/// Why a reservation of `lines` cannot be made from `state`, worded as sagaflow words it.
fn shortage(state: &Warehouse, lines: &[StockLine]) -> Option<String> {
    lines
        .iter()
        .find_map(|line| match state.stock.get(&line.sku) {
            None => Some(format!("unknown SKU {}", line.sku)),
            Some(level) if level.available < u64::from(line.quantity) => Some(format!(
                "out of stock: {} wants {}, {} available",
                line.sku, line.quantity, level.available
            )),
            Some(_) => None,
        })
}

impl Aggregate for CqrsWarehouse {
    const TYPE: &'static str = "warehouse";
    type Command = WarehouseCommand;
    type Event = StockEvent;
    type Error = WarehouseError;
    type Services = ();

    async fn handle(
        &mut self,
        command: WarehouseCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), WarehouseError> {
        let event = match command {
            WarehouseCommand::Restock { sku, quantity } => {
                validate_id("sku", &sku)?;
                if quantity == 0 {
                    return Err(FieldError::new("quantity", "must be at least 1").into());
                }
                WarehouseEvent::Restocked { sku, quantity }
            }
            WarehouseCommand::Reserve { order_id, lines } => {
                validate_id("order_id", &order_id)?;
                let lines = normalise(&lines)?;
                if let Some(held) = self.0.reservations.get(&order_id) {
                    return if *held == lines {
                        Ok(())
                    } else {
                        Err(WarehouseError::ConflictingReservation(order_id))
                    };
                }
                let shortage = if self.0.released_early.contains(&order_id) {
                    Some("the order's stock was released before it was reserved".to_string())
                } else {
                    shortage(&self.0, &lines)
                };
                match shortage {
                    Some(reason) => WarehouseEvent::ReservationFailed {
                        order_id,
                        lines,
                        reason,
                    },
                    None => WarehouseEvent::Reserved { order_id, lines },
                }
            }
            WarehouseCommand::Release { order_id, reason } => {
                validate_id("order_id", &order_id)?;
                let lines = self
                    .0
                    .reservations
                    .get(&order_id)
                    .cloned()
                    .unwrap_or_default();
                WarehouseEvent::Released {
                    order_id,
                    lines,
                    reason,
                }
            }
            WarehouseCommand::Ship { order_id } => {
                validate_id("order_id", &order_id)?;
                match self.0.reservations.get(&order_id) {
                    Some(lines) => WarehouseEvent::Shipped {
                        lines: lines.clone(),
                        order_id,
                    },
                    None => return Ok(()),
                }
            }
        };
        sink.write(StockEvent(event), self).await;
        Ok(())
    }

    fn apply(&mut self, event: StockEvent) {
        let state = &mut self.0;
        match event.0 {
            WarehouseEvent::Restocked { sku, quantity } => {
                let level = state.stock.entry(sku).or_default();
                level.available = level.available.saturating_add(u64::from(quantity));
            }
            WarehouseEvent::Reserved { order_id, lines } => {
                for line in &lines {
                    let level = state.stock.entry(line.sku.clone()).or_default();
                    level.available = level.available.saturating_sub(u64::from(line.quantity));
                    level.reserved = level.reserved.saturating_add(u64::from(line.quantity));
                }
                state.reservations.insert(order_id, lines);
            }
            WarehouseEvent::ReservationFailed { .. } => {}
            WarehouseEvent::Released {
                order_id, lines, ..
            } => {
                if !state.reservations.contains_key(&order_id) {
                    state.released_early.insert(order_id.clone());
                }
                for line in lines {
                    let level = state.stock.entry(line.sku).or_default();
                    level.reserved = level.reserved.saturating_sub(u64::from(line.quantity));
                    level.available = level.available.saturating_add(u64::from(line.quantity));
                }
                state.reservations.remove(&order_id);
            }
            WarehouseEvent::Shipped { order_id, lines } => {
                for line in lines {
                    let level = state.stock.entry(line.sku).or_default();
                    level.reserved = level.reserved.saturating_sub(u64::from(line.quantity));
                    level.shipped = level.shipped.saturating_add(u64::from(line.quantity));
                }
                state.reservations.remove(&order_id);
            }
        }
    }
}

type Streams<A> = HashMap<String, Vec<EventEnvelope<A>>>;

/// cqrs-es 0.5.0's `MemStore`, line for line, minus the `println!` it makes on every load and
/// every commit: left in, those would time the terminal and bury the report under a line per
/// command.
pub struct QuietMemStore<A: Aggregate> {
    events: Arc<RwLock<Streams<A>>>,
}

impl<A: Aggregate> Default for QuietMemStore<A> {
    fn default() -> Self {
        Self {
            events: Arc::default(),
        }
    }
}

impl<A: Aggregate> Clone for QuietMemStore<A> {
    fn clone(&self) -> Self {
        Self {
            events: Arc::clone(&self.events),
        }
    }
}

impl<A: Aggregate> QuietMemStore<A> {
    fn load_committed_events(&self, aggregate_id: &str) -> Vec<EventEnvelope<A>> {
        // MemStore unwraps here; a poisoned lock only means a panic elsewhere, and the map
        // itself is still whole, so reading on is as safe and does not panic in turn.
        self.events
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(aggregate_id)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

impl<A: Aggregate> EventStore<A> for QuietMemStore<A> {
    type AC = MemStoreAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        Ok(self.load_committed_events(aggregate_id))
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<MemStoreAggregateContext<A>, AggregateError<A::Error>> {
        let committed_events = self.load_events(aggregate_id).await?;
        let mut aggregate = A::default();
        let mut current_sequence = 0;
        for envelope in committed_events {
            current_sequence = envelope.sequence;
            aggregate.apply(envelope.payload);
        }
        Ok(MemStoreAggregateContext {
            aggregate_id: aggregate_id.to_string(),
            aggregate,
            current_sequence,
        })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: MemStoreAggregateContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let aggregate_id = context.aggregate_id;
        let mut sequence = context.current_sequence;
        let wrapped_events: Vec<EventEnvelope<A>> = events
            .into_iter()
            .map(|payload| {
                sequence += 1;
                EventEnvelope {
                    aggregate_id: aggregate_id.clone(),
                    sequence,
                    payload,
                    metadata: metadata.clone(),
                }
            })
            .collect();
        if wrapped_events.is_empty() {
            return Ok(Vec::new());
        }
        // As MemStore does: copy the stream, extend the copy, put it back (no version check).
        let mut new_events = self.load_committed_events(&aggregate_id);
        new_events.extend(wrapped_events.iter().cloned());
        self.events
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(aggregate_id, new_events);
        Ok(wrapped_events)
    }
}

/// A `PersistedEventRepository` in memory: events held as JSON, as dynamo-es and postgres-es
/// hold them, appended only at the expected sequence, as their conditional writes do.
#[derive(Clone, Default)]
pub struct JsonMemRepository {
    streams: Arc<Mutex<HashMap<String, Vec<SerializedEvent>>>>,
}

impl JsonMemRepository {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Vec<SerializedEvent>>> {
        // Appends are checked before anything is pushed, so a poisoned map is still consistent.
        self.streams.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn events_after(&self, aggregate_id: &str, sequence: usize) -> Vec<SerializedEvent> {
        self.lock()
            .get(aggregate_id)
            .map(|events| events.iter().skip(sequence).cloned().collect())
            .unwrap_or_default()
    }
}

impl PersistedEventRepository for JsonMemRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self.events_after(aggregate_id, 0))
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        Ok(self.events_after(aggregate_id, last_sequence))
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let mut streams = self.lock();
        let stream = streams.entry(first.aggregate_id.clone()).or_default();
        if first.sequence != stream.len() + 1 {
            return Err(PersistenceError::OptimisticLockError);
        }
        stream.extend(events.iter().cloned());
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        replay(self.events_after(aggregate_id, 0)).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        let all: Vec<SerializedEvent> = self.lock().values().flatten().cloned().collect();
        replay(all).await
    }
}

/// A replay stream already holding `events` (its queue is sized to take them all).
async fn replay(events: Vec<SerializedEvent>) -> Result<ReplayStream, PersistenceError> {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    for event in events {
        feed.push(Ok(event)).await?;
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::mem_store::MemStore;
    use cqrs_es::CqrsFramework;
    use sagaflow_eventsourcing::Aggregate as _;

    fn line(sku: &str, quantity: u32) -> StockLine {
        StockLine {
            sku: sku.into(),
            quantity,
        }
    }

    /// The cqrs-es version refuses what sagaflow's refuses, with the same error, and decides
    /// the same events and ends in the same state for what it accepts.
    #[tokio::test]
    async fn decides_and_refuses_as_sagaflow_does() {
        let given = [
            WarehouseEvent::Restocked {
                sku: "MUG".into(),
                quantity: 5,
            },
            WarehouseEvent::Restocked {
                sku: "HAT".into(),
                quantity: 1,
            },
            WarehouseEvent::Reserved {
                order_id: "ord-1".into(),
                lines: vec![line("MUG", 2)],
            },
        ];
        let reserve = |order: &str, lines: Vec<StockLine>| WarehouseCommand::Reserve {
            order_id: order.into(),
            lines,
        };
        let commands = [
            reserve("ord-2", vec![line("MUG", 0)]),
            reserve("ord 2", vec![line("MUG", 1)]),
            reserve("ord-2", vec![]),
            reserve("ord-2", vec![line("MUG", u32::MAX), line("MUG", 1)]),
            reserve(
                "ord-2",
                vec![line("MUG", 2), line("HAT", 1), line("MUG", 1)],
            ),
            reserve("ord-2", vec![line("MUG", 2), line("CAP", 1)]),
            reserve("ord-2", vec![line("MUG", 4)]),
            reserve("ord-1", vec![line("MUG", 2)]),
            reserve("ord-1", vec![line("MUG", 3)]),
            WarehouseCommand::Release {
                order_id: "ord-1".into(),
                reason: "payment declined".into(),
            },
            WarehouseCommand::Release {
                order_id: "ord-9".into(),
                reason: "timeout".into(),
            },
            WarehouseCommand::Ship {
                order_id: "ord-1".into(),
            },
            WarehouseCommand::Ship {
                order_id: "ord-9".into(),
            },
            WarehouseCommand::Restock {
                sku: "MUG".into(),
                quantity: 0,
            },
            WarehouseCommand::Restock {
                sku: "TEE".into(),
                quantity: 3,
            },
        ];
        for command in commands {
            let mut theirs = Warehouse::default();
            let mut ours = CqrsWarehouse::default();
            for event in &given {
                theirs.apply(event);
                ours.apply(StockEvent(event.clone()));
            }
            let expected = theirs.decide(&command);
            let sink = EventSink::default();
            let handled = ours.handle(command.clone(), &(), &sink).await;
            let events: Vec<WarehouseEvent> =
                sink.collect().await.into_iter().map(|e| e.0).collect();
            match expected {
                Ok(expected) => {
                    assert!(handled.is_ok(), "{command:?}: {handled:?}");
                    assert_eq!(events, expected, "{command:?}");
                    for event in &expected {
                        theirs.apply(event);
                    }
                    assert_eq!(ours.0, theirs, "{command:?}");
                }
                Err(refusal) => {
                    assert_eq!(handled.err(), Some(refusal), "{command:?}");
                    assert!(events.is_empty(), "{command:?}");
                }
            }
        }
    }

    /// The copy behaves as the `MemStore` it was copied from.
    #[tokio::test]
    async fn the_quiet_store_ends_where_mem_store_does() {
        let commands = || {
            vec![
                WarehouseCommand::Restock {
                    sku: "MUG".into(),
                    quantity: 4,
                },
                WarehouseCommand::Reserve {
                    order_id: "ord-1".into(),
                    lines: vec![line("MUG", 3)],
                },
                WarehouseCommand::Reserve {
                    order_id: "ord-2".into(),
                    lines: vec![line("MUG", 3)],
                },
                WarehouseCommand::Ship {
                    order_id: "ord-1".into(),
                },
            ]
        };
        let quiet = QuietMemStore::<CqrsWarehouse>::default();
        let shipped = MemStore::<CqrsWarehouse>::default();
        let on_quiet = CqrsFramework::new(quiet.clone(), vec![], ());
        let on_shipped = CqrsFramework::new(shipped.clone(), vec![], ());
        for (a, b) in commands().into_iter().zip(commands()) {
            assert!(on_quiet.execute("wh-1", a).await.is_ok());
            assert!(on_shipped.execute("wh-1", b).await.is_ok());
        }
        let (Ok(quiet), Ok(shipped)) = (
            quiet.load_aggregate("wh-1").await,
            shipped.load_aggregate("wh-1").await,
        ) else {
            panic!("loading failed");
        };
        assert_eq!(quiet.current_sequence, 4);
        assert_eq!(quiet.current_sequence, shipped.current_sequence);
        assert_eq!(quiet.aggregate, shipped.aggregate);
        assert_eq!(quiet.aggregate.0.level("MUG").shipped, 3);
    }
}
