//! A whole warehouse as one aggregate: stock per SKU in one stream, every line of an order
//! reserved or none. The product keeps a stream per SKU and one per order's reservation
//! (`domain::stock`, `domain::inventory`); this one-stream shape stays as a test subject:
//! the repository's tests drive batches, races and caches through it, and the bench compares
//! it with the same aggregate written for cqrs-es.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::domain::inventory::normalise;
use crate::domain::types::{validate_id, FieldError, StockLine};
use crate::domain::StockLevel;
use sagaflow_eventsourcing::aggregate::Aggregate;

/// What can be asked of a warehouse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum WarehouseCommand {
    /// Add units of a SKU to the available stock.
    Restock {
        /// The SKU.
        sku: String,
        /// Units added (at least 1).
        quantity: u32,
    },
    /// Reserve every line of an order, or none.
    Reserve {
        /// The order.
        order_id: String,
        /// What to reserve.
        lines: Vec<StockLine>,
    },
    /// Give an order's reserved units back to available stock.
    Release {
        /// The order.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// The order's reserved units left the warehouse.
    Ship {
        /// The order.
        order_id: String,
    },
}

sagaflow_eventsourcing::domain_event! {
    /// What a warehouse records.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum WarehouseEvent {
        /// Units were added.
        Restocked = "warehouse.restocked" @ 1 {
            /// The SKU.
            sku: String,
            /// Units added.
            quantity: u32,
        },
        /// Every line of the order is reserved.
        Reserved = "warehouse.reserved" @ 1 {
            /// The order.
            order_id: String,
            /// What was reserved (one line per SKU).
            lines: Vec<StockLine>,
        },
        /// The order could not be reserved; nothing was.
        ReservationFailed = "warehouse.reservation_failed" @ 1 {
            /// The order.
            order_id: String,
            /// What was asked.
            lines: Vec<StockLine>,
            /// Why not.
            reason: String,
        },
        /// The order's reservation was given back (empty lines: there was none to give back).
        Released = "warehouse.released" @ 1 {
            /// The order.
            order_id: String,
            /// What went back to available stock.
            lines: Vec<StockLine>,
            /// Why.
            reason: String,
        },
        /// The order's reserved units were shipped.
        Shipped = "warehouse.shipped" @ 1 {
            /// The order.
            order_id: String,
            /// What left the warehouse.
            lines: Vec<StockLine>,
        },
    }
}

/// Why a warehouse command is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WarehouseError {
    /// A field of the command is invalid.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// The order already holds a different reservation.
    #[error("order {0} already holds a different reservation")]
    ConflictingReservation(String),
}

/// The warehouse aggregate's state: every SKU's stock and every order's reservation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warehouse {
    /// Stock per SKU.
    pub stock: BTreeMap<String, StockLevel>,
    /// Lines reserved per order still in progress.
    pub reservations: BTreeMap<String, Vec<StockLine>>,
    /// Orders released before they reserved anything (a cancel or a timed-out step that beat
    /// the reservation): a reservation arriving for them later fails instead of holding stock
    /// for an order that is gone.
    #[serde(default)]
    pub released_early: BTreeSet<String>,
}

impl Aggregate for Warehouse {
    const TYPE: &'static str = "warehouse";
    type Command = WarehouseCommand;
    type Event = WarehouseEvent;
    type Error = WarehouseError;

    fn decide(&self, command: &WarehouseCommand) -> Result<Vec<WarehouseEvent>, WarehouseError> {
        match command {
            WarehouseCommand::Restock { sku, quantity } => {
                validate_id("sku", sku)?;
                if *quantity == 0 {
                    return Err(FieldError::new("quantity", "must be at least 1").into());
                }
                Ok(vec![WarehouseEvent::Restocked {
                    sku: sku.clone(),
                    quantity: *quantity,
                }])
            }
            WarehouseCommand::Reserve { order_id, lines } => {
                validate_id("order_id", order_id)?;
                let lines = normalise(lines)?;
                if let Some(held) = self.reservations.get(order_id) {
                    return if *held == lines {
                        Ok(vec![])
                    } else {
                        Err(WarehouseError::ConflictingReservation(order_id.clone()))
                    };
                }
                if self.released_early.contains(order_id) {
                    return Ok(vec![WarehouseEvent::ReservationFailed {
                        order_id: order_id.clone(),
                        lines,
                        reason: "the order's stock was released before it was reserved".into(),
                    }]);
                }
                let shortage = lines
                    .iter()
                    .find_map(|line| match self.stock.get(&line.sku) {
                        None => Some(format!("unknown SKU {}", line.sku)),
                        Some(level) if level.available < u64::from(line.quantity) => Some(format!(
                            "out of stock: {} wants {}, {} available",
                            line.sku, line.quantity, level.available
                        )),
                        Some(_) => None,
                    });
                Ok(vec![match shortage {
                    Some(reason) => WarehouseEvent::ReservationFailed {
                        order_id: order_id.clone(),
                        lines,
                        reason,
                    },
                    None => WarehouseEvent::Reserved {
                        order_id: order_id.clone(),
                        lines,
                    },
                }])
            }
            WarehouseCommand::Release { order_id, reason } => {
                validate_id("order_id", order_id)?;
                Ok(vec![WarehouseEvent::Released {
                    order_id: order_id.clone(),
                    lines: self.reservations.get(order_id).cloned().unwrap_or_default(),
                    reason: reason.clone(),
                }])
            }
            WarehouseCommand::Ship { order_id } => {
                validate_id("order_id", order_id)?;
                Ok(match self.reservations.get(order_id) {
                    Some(lines) => vec![WarehouseEvent::Shipped {
                        order_id: order_id.clone(),
                        lines: lines.clone(),
                    }],
                    None => vec![],
                })
            }
        }
    }

    fn apply(&mut self, event: &WarehouseEvent) {
        match event {
            WarehouseEvent::Restocked { sku, quantity } => {
                let level = self.stock.entry(sku.clone()).or_default();
                level.available = level.available.saturating_add(u64::from(*quantity));
            }
            WarehouseEvent::Reserved { order_id, lines } => {
                for line in lines {
                    let level = self.stock.entry(line.sku.clone()).or_default();
                    level.available = level.available.saturating_sub(u64::from(line.quantity));
                    level.reserved = level.reserved.saturating_add(u64::from(line.quantity));
                }
                self.reservations.insert(order_id.clone(), lines.clone());
            }
            WarehouseEvent::ReservationFailed { .. } => {}
            WarehouseEvent::Released {
                order_id, lines, ..
            } => {
                if !self.reservations.contains_key(order_id) {
                    self.released_early.insert(order_id.clone());
                }
                for line in lines {
                    let level = self.stock.entry(line.sku.clone()).or_default();
                    level.reserved = level.reserved.saturating_sub(u64::from(line.quantity));
                    level.available = level.available.saturating_add(u64::from(line.quantity));
                }
                self.reservations.remove(order_id);
            }
            WarehouseEvent::Shipped { order_id, lines } => {
                for line in lines {
                    let level = self.stock.entry(line.sku.clone()).or_default();
                    level.reserved = level.reserved.saturating_sub(u64::from(line.quantity));
                    level.shipped = level.shipped.saturating_add(u64::from(line.quantity));
                }
                self.reservations.remove(order_id);
            }
        }
    }
}

impl Warehouse {
    /// The stock level of `sku` (all zero if never stocked).
    pub fn level(&self, sku: &str) -> StockLevel {
        self.stock.get(sku).copied().unwrap_or_default()
    }
}
