//! Stock per SKU in one warehouse: reserve all lines of an order or none, release, ship.
//!
//! One warehouse is one aggregate so that an order's lines are reserved atomically; stock can
//! never go below zero because a reservation is only decided when every line is available.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::types::{validate_id, FieldError, StockLine};
use sagaflow_eventsourcing::aggregate::Aggregate;

/// The warehouse the demo and the functions use unless configured otherwise.
pub const DEFAULT_WAREHOUSE: &str = "main";

/// What can be asked of a warehouse.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum InventoryCommand {
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
    pub enum InventoryEvent {
        /// Units were added.
        Restocked = "inventory.restocked" @ 1 {
            /// The SKU.
            sku: String,
            /// Units added.
            quantity: u32,
        },
        /// Every line of the order is reserved.
        Reserved = "inventory.reserved" @ 1 {
            /// The order.
            order_id: String,
            /// What was reserved (one line per SKU).
            lines: Vec<StockLine>,
        },
        /// The order could not be reserved; nothing was.
        ReservationFailed = "inventory.reservation_failed" @ 1 {
            /// The order.
            order_id: String,
            /// What was asked.
            lines: Vec<StockLine>,
            /// Why not.
            reason: String,
        },
        /// The order's reservation was given back (empty lines: there was none to give back).
        Released = "inventory.released" @ 1 {
            /// The order.
            order_id: String,
            /// What went back to available stock.
            lines: Vec<StockLine>,
            /// Why.
            reason: String,
        },
        /// The order's reserved units were shipped.
        Shipped = "inventory.shipped" @ 1 {
            /// The order.
            order_id: String,
            /// What left the warehouse.
            lines: Vec<StockLine>,
        },
    }
}

/// Units of one SKU by where they are; their sum only changes by restocking.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Free to reserve.
    pub available: u64,
    /// Held for orders in progress.
    pub reserved: u64,
    /// Gone to customers.
    pub shipped: u64,
}

impl StockLevel {
    /// Every unit ever stocked: available + reserved + shipped.
    pub fn total(&self) -> u64 {
        self.available + self.reserved + self.shipped
    }
}

/// Why an inventory command is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// A field of the command is invalid.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// The order already holds a different reservation.
    #[error("order {0} already holds a different reservation")]
    ConflictingReservation(String),
}

/// The warehouse aggregate's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
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

/// Merges lines of the same SKU and validates them, so a reservation is one line per SKU.
/// The lines of a reservation merged per SKU and checked: ids valid, quantities at least 1.
pub fn normalise(lines: &[StockLine]) -> Result<Vec<StockLine>, FieldError> {
    if lines.is_empty() {
        return Err(FieldError::new("lines", "at least one line is needed"));
    }
    let mut merged: BTreeMap<&str, u32> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        validate_id(&format!("lines[{i}].sku"), &line.sku)?;
        if line.quantity == 0 {
            return Err(FieldError::new(
                format!("lines[{i}].quantity"),
                "must be at least 1",
            ));
        }
        let entry = merged.entry(&line.sku).or_default();
        *entry = entry.checked_add(line.quantity).ok_or_else(|| {
            FieldError::new(format!("lines[{i}].quantity"), "total quantity overflows")
        })?;
    }
    Ok(merged
        .into_iter()
        .map(|(sku, quantity)| StockLine {
            sku: sku.to_string(),
            quantity,
        })
        .collect())
}

impl Aggregate for Inventory {
    const TYPE: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;

    fn decide(&self, command: &InventoryCommand) -> Result<Vec<InventoryEvent>, InventoryError> {
        match command {
            InventoryCommand::Restock { sku, quantity } => {
                validate_id("sku", sku)?;
                if *quantity == 0 {
                    return Err(FieldError::new("quantity", "must be at least 1").into());
                }
                Ok(vec![InventoryEvent::Restocked {
                    sku: sku.clone(),
                    quantity: *quantity,
                }])
            }
            InventoryCommand::Reserve { order_id, lines } => {
                validate_id("order_id", order_id)?;
                let lines = normalise(lines)?;
                if let Some(held) = self.reservations.get(order_id) {
                    return if *held == lines {
                        Ok(vec![])
                    } else {
                        Err(InventoryError::ConflictingReservation(order_id.clone()))
                    };
                }
                if self.released_early.contains(order_id) {
                    return Ok(vec![InventoryEvent::ReservationFailed {
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
                    Some(reason) => InventoryEvent::ReservationFailed {
                        order_id: order_id.clone(),
                        lines,
                        reason,
                    },
                    None => InventoryEvent::Reserved {
                        order_id: order_id.clone(),
                        lines,
                    },
                }])
            }
            InventoryCommand::Release { order_id, reason } => {
                validate_id("order_id", order_id)?;
                Ok(vec![InventoryEvent::Released {
                    order_id: order_id.clone(),
                    lines: self.reservations.get(order_id).cloned().unwrap_or_default(),
                    reason: reason.clone(),
                }])
            }
            InventoryCommand::Ship { order_id } => {
                validate_id("order_id", order_id)?;
                Ok(match self.reservations.get(order_id) {
                    Some(lines) => vec![InventoryEvent::Shipped {
                        order_id: order_id.clone(),
                        lines: lines.clone(),
                    }],
                    None => vec![],
                })
            }
        }
    }

    fn apply(&mut self, event: &InventoryEvent) {
        match event {
            InventoryEvent::Restocked { sku, quantity } => {
                let level = self.stock.entry(sku.clone()).or_default();
                level.available = level.available.saturating_add(u64::from(*quantity));
            }
            InventoryEvent::Reserved { order_id, lines } => {
                for line in lines {
                    let level = self.stock.entry(line.sku.clone()).or_default();
                    level.available = level.available.saturating_sub(u64::from(line.quantity));
                    level.reserved = level.reserved.saturating_add(u64::from(line.quantity));
                }
                self.reservations.insert(order_id.clone(), lines.clone());
            }
            InventoryEvent::ReservationFailed { .. } => {}
            InventoryEvent::Released {
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
            InventoryEvent::Shipped { order_id, lines } => {
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

impl Inventory {
    /// The stock level of `sku` (all zero if never stocked).
    pub fn level(&self, sku: &str) -> StockLevel {
        self.stock.get(sku).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_eventsourcing::testkit::AggregateFixture;

    fn line(sku: &str, quantity: u32) -> StockLine {
        StockLine {
            sku: sku.into(),
            quantity,
        }
    }

    fn restocked(sku: &str, quantity: u32) -> InventoryEvent {
        InventoryEvent::Restocked {
            sku: sku.into(),
            quantity,
        }
    }

    fn reserve(order: &str, lines: Vec<StockLine>) -> InventoryCommand {
        InventoryCommand::Reserve {
            order_id: order.into(),
            lines,
        }
    }

    #[test]
    fn reserves_every_line_when_all_are_available() {
        let state =
            AggregateFixture::<Inventory>::given([restocked("MUG", 5), restocked("TEE", 2)])
                .when(reserve(
                    "ord-1",
                    vec![line("TEE", 2), line("MUG", 1), line("MUG", 2)],
                ))
                .then_expect_events(vec![InventoryEvent::Reserved {
                    order_id: "ord-1".into(),
                    lines: vec![line("MUG", 3), line("TEE", 2)],
                }]);
        assert_eq!(
            state.level("MUG"),
            StockLevel {
                available: 2,
                reserved: 3,
                shipped: 0
            }
        );
        assert_eq!(state.level("TEE").available, 0);
    }

    #[test]
    fn reserves_nothing_when_one_line_is_short() {
        let state =
            AggregateFixture::<Inventory>::given([restocked("MUG", 5), restocked("TEE", 1)])
                .when(reserve("ord-1", vec![line("MUG", 1), line("TEE", 2)]))
                .then_expect_events(vec![InventoryEvent::ReservationFailed {
                    order_id: "ord-1".into(),
                    lines: vec![line("MUG", 1), line("TEE", 2)],
                    reason: "out of stock: TEE wants 2, 1 available".into(),
                }]);
        assert_eq!(state.level("MUG").available, 5);
        assert!(state.reservations.is_empty());
    }

    #[test]
    fn an_unknown_sku_fails_the_reservation() {
        AggregateFixture::<Inventory>::given([restocked("MUG", 5)])
            .when(reserve("ord-1", vec![line("HAT", 1)]))
            .then_expect_events(vec![InventoryEvent::ReservationFailed {
                order_id: "ord-1".into(),
                lines: vec![line("HAT", 1)],
                reason: "unknown SKU HAT".into(),
            }]);
    }

    #[test]
    fn invalid_reservations_name_the_field() {
        AggregateFixture::<Inventory>::given([restocked("MUG", 5)])
            .when(reserve("ord-1", vec![line("MUG", 0)]))
            .then_expect_error(FieldError::new("lines[0].quantity", "must be at least 1").into());
        AggregateFixture::<Inventory>::given([restocked("MUG", 5)])
            .when(reserve("ord-1", vec![]))
            .then_expect_error(FieldError::new("lines", "at least one line is needed").into());
        AggregateFixture::<Inventory>::given([restocked("MUG", 5)])
            .when(reserve(
                "ord-1",
                vec![line("MUG", u32::MAX), line("MUG", 1)],
            ))
            .then_expect_error(
                FieldError::new("lines[1].quantity", "total quantity overflows").into(),
            );
    }

    #[test]
    fn reserving_again_is_idempotent_and_a_different_reservation_is_refused() {
        let reserved = InventoryEvent::Reserved {
            order_id: "ord-1".into(),
            lines: vec![line("MUG", 2)],
        };
        AggregateFixture::<Inventory>::given([restocked("MUG", 5), reserved.clone()])
            .when(reserve("ord-1", vec![line("MUG", 2)]))
            .then_expect_events(vec![]);
        AggregateFixture::<Inventory>::given([restocked("MUG", 5), reserved])
            .when(reserve("ord-1", vec![line("MUG", 3)]))
            .then_expect_error(InventoryError::ConflictingReservation("ord-1".into()));
    }

    #[test]
    fn release_puts_stock_back_once() {
        let reserved = InventoryEvent::Reserved {
            order_id: "ord-1".into(),
            lines: vec![line("MUG", 2)],
        };
        let released = InventoryEvent::Released {
            order_id: "ord-1".into(),
            lines: vec![line("MUG", 2)],
            reason: "payment refunded".into(),
        };
        let state = AggregateFixture::<Inventory>::given([restocked("MUG", 5), reserved.clone()])
            .when(InventoryCommand::Release {
                order_id: "ord-1".into(),
                reason: "payment refunded".into(),
            })
            .then_expect_events(vec![released.clone()]);
        assert_eq!(
            state.level("MUG"),
            StockLevel {
                available: 5,
                reserved: 0,
                shipped: 0
            }
        );
        let state = AggregateFixture::<Inventory>::given([restocked("MUG", 5), reserved, released])
            .when(InventoryCommand::Release {
                order_id: "ord-1".into(),
                reason: "again".into(),
            })
            .then_expect_events(vec![InventoryEvent::Released {
                order_id: "ord-1".into(),
                lines: vec![],
                reason: "again".into(),
            }]);
        assert_eq!(state.level("MUG").available, 5);
    }

    #[test]
    fn shipping_moves_reserved_units_to_shipped_and_keeps_the_total() {
        let reserved = InventoryEvent::Reserved {
            order_id: "ord-1".into(),
            lines: vec![line("MUG", 2)],
        };
        let state = AggregateFixture::<Inventory>::given([restocked("MUG", 5), reserved])
            .when(InventoryCommand::Ship {
                order_id: "ord-1".into(),
            })
            .then_expect_events(vec![InventoryEvent::Shipped {
                order_id: "ord-1".into(),
                lines: vec![line("MUG", 2)],
            }]);
        assert_eq!(
            state.level("MUG"),
            StockLevel {
                available: 3,
                reserved: 0,
                shipped: 2
            }
        );
        assert_eq!(state.level("MUG").total(), 5);
        AggregateFixture::<Inventory>::given([restocked("MUG", 5)])
            .when(InventoryCommand::Ship {
                order_id: "ord-9".into(),
            })
            .then_expect_events(vec![]);
    }
}
