//! The stock of one SKU: units available, held for orders, shipped. One stream per SKU, so
//! orders for different SKUs never write to the same stream; an order's reservation holds its
//! lines on every SKU's stock in one atomic write (see [`super::inventory`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::types::{validate_id, FieldError};
use sagaflow_eventsourcing::aggregate::Aggregate;

/// What can be asked of one SKU's stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum StockCommand {
    /// Add units to the available stock.
    Restock {
        /// Units added (at least 1).
        quantity: u32,
    },
    /// Hold units for an order, if that many are available.
    Hold {
        /// The order.
        order_id: String,
        /// Units held.
        quantity: u32,
    },
    /// Give an order's held units back to available stock.
    Release {
        /// The order.
        order_id: String,
    },
    /// The order's held units left the warehouse.
    Ship {
        /// The order.
        order_id: String,
    },
}

sagaflow_eventsourcing::domain_event! {
    /// What one SKU's stock records; the SKU is the stream's aggregate id.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum StockEvent {
        /// Units were added.
        Restocked = "stock.restocked" @ 1 {
            /// Units added.
            quantity: u32,
        },
        /// Units are held for an order.
        Held = "stock.held" @ 1 {
            /// The order.
            order_id: String,
            /// Units held.
            quantity: u32,
        },
        /// An order's held units are available again.
        Released = "stock.released" @ 1 {
            /// The order.
            order_id: String,
            /// Units given back.
            quantity: u32,
        },
        /// An order's held units were shipped.
        Shipped = "stock.shipped" @ 1 {
            /// The order.
            order_id: String,
            /// Units shipped.
            quantity: u32,
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

/// Why a stock command is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StockError {
    /// A field of the command is invalid.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// Fewer units are available than the hold asks for.
    #[error("{wanted} wanted, {available} available")]
    Short {
        /// Units asked for.
        wanted: u32,
        /// Units available.
        available: u64,
    },
    /// The order already holds a different quantity of this SKU.
    #[error("order {0} already holds a different quantity")]
    ConflictingHold(String),
}

/// One SKU's stock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// Units by where they are.
    pub level: StockLevel,
    /// Units held per order still in progress.
    pub holds: BTreeMap<String, u32>,
}

impl Stock {
    /// Whether the SKU was ever stocked: an unknown SKU cannot be reserved at all.
    pub fn is_known(&self) -> bool {
        self.level.total() > 0
    }
}

impl Aggregate for Stock {
    const TYPE: &'static str = "stock";
    type Command = StockCommand;
    type Event = StockEvent;
    type Error = StockError;

    fn decide(&self, command: &StockCommand) -> Result<Vec<StockEvent>, StockError> {
        match command {
            StockCommand::Restock { quantity } => {
                if *quantity == 0 {
                    return Err(FieldError::new("quantity", "must be at least 1").into());
                }
                Ok(vec![StockEvent::Restocked {
                    quantity: *quantity,
                }])
            }
            StockCommand::Hold { order_id, quantity } => {
                validate_id("order_id", order_id)?;
                if *quantity == 0 {
                    return Err(FieldError::new("quantity", "must be at least 1").into());
                }
                match self.holds.get(order_id) {
                    Some(held) if held == quantity => return Ok(vec![]),
                    Some(_) => return Err(StockError::ConflictingHold(order_id.clone())),
                    None => {}
                }
                if self.level.available < u64::from(*quantity) {
                    return Err(StockError::Short {
                        wanted: *quantity,
                        available: self.level.available,
                    });
                }
                Ok(vec![StockEvent::Held {
                    order_id: order_id.clone(),
                    quantity: *quantity,
                }])
            }
            StockCommand::Release { order_id } => Ok(self
                .holds
                .get(order_id)
                .map(|&quantity| StockEvent::Released {
                    order_id: order_id.clone(),
                    quantity,
                })
                .into_iter()
                .collect()),
            StockCommand::Ship { order_id } => Ok(self
                .holds
                .get(order_id)
                .map(|&quantity| StockEvent::Shipped {
                    order_id: order_id.clone(),
                    quantity,
                })
                .into_iter()
                .collect()),
        }
    }

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Restocked { quantity } => {
                self.level.available = self.level.available.saturating_add(u64::from(*quantity));
            }
            StockEvent::Held { order_id, quantity } => {
                let units = u64::from(*quantity);
                self.level.available = self.level.available.saturating_sub(units);
                self.level.reserved = self.level.reserved.saturating_add(units);
                self.holds.insert(order_id.clone(), *quantity);
            }
            StockEvent::Released { order_id, quantity } => {
                let units = u64::from(*quantity);
                self.level.reserved = self.level.reserved.saturating_sub(units);
                self.level.available = self.level.available.saturating_add(units);
                self.holds.remove(order_id);
            }
            StockEvent::Shipped { order_id, quantity } => {
                let units = u64::from(*quantity);
                self.level.reserved = self.level.reserved.saturating_sub(units);
                self.level.shipped = self.level.shipped.saturating_add(units);
                self.holds.remove(order_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_eventsourcing::testkit::AggregateFixture;

    fn restocked(quantity: u32) -> StockEvent {
        StockEvent::Restocked { quantity }
    }

    fn held(order: &str, quantity: u32) -> StockEvent {
        StockEvent::Held {
            order_id: order.into(),
            quantity,
        }
    }

    fn hold(order: &str, quantity: u32) -> StockCommand {
        StockCommand::Hold {
            order_id: order.into(),
            quantity,
        }
    }

    #[test]
    fn holds_what_is_available_and_refuses_more() {
        let state = AggregateFixture::<Stock>::given([restocked(5)])
            .when(hold("ord-1", 3))
            .then_expect_events(vec![held("ord-1", 3)]);
        assert_eq!(
            state.level,
            StockLevel {
                available: 2,
                reserved: 3,
                shipped: 0
            }
        );
        AggregateFixture::<Stock>::given([restocked(5), held("ord-1", 3)])
            .when(hold("ord-2", 3))
            .then_expect_error(StockError::Short {
                wanted: 3,
                available: 2,
            });
    }

    #[test]
    fn holding_again_is_idempotent_and_a_different_hold_is_refused() {
        AggregateFixture::<Stock>::given([restocked(5), held("ord-1", 2)])
            .when(hold("ord-1", 2))
            .then_expect_events(vec![]);
        AggregateFixture::<Stock>::given([restocked(5), held("ord-1", 2)])
            .when(hold("ord-1", 3))
            .then_expect_error(StockError::ConflictingHold("ord-1".into()));
    }

    #[test]
    fn release_and_ship_move_held_units_once_and_keep_the_total() {
        let released = AggregateFixture::<Stock>::given([restocked(5), held("ord-1", 2)])
            .when(StockCommand::Release {
                order_id: "ord-1".into(),
            })
            .then_expect_events(vec![StockEvent::Released {
                order_id: "ord-1".into(),
                quantity: 2,
            }]);
        assert_eq!(released.level.available, 5);
        let shipped = AggregateFixture::<Stock>::given([restocked(5), held("ord-1", 2)])
            .when(StockCommand::Ship {
                order_id: "ord-1".into(),
            })
            .then_expect_events(vec![StockEvent::Shipped {
                order_id: "ord-1".into(),
                quantity: 2,
            }]);
        assert_eq!(
            shipped.level,
            StockLevel {
                available: 3,
                reserved: 0,
                shipped: 2
            }
        );
        assert_eq!(shipped.level.total(), 5);
        AggregateFixture::<Stock>::given([restocked(5)])
            .when(StockCommand::Ship {
                order_id: "ord-9".into(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn invalid_commands_name_the_field() {
        AggregateFixture::<Stock>::given_no_events()
            .when(StockCommand::Restock { quantity: 0 })
            .then_expect_error(FieldError::new("quantity", "must be at least 1").into());
        AggregateFixture::<Stock>::given([restocked(5)])
            .when(hold("ord-1", 0))
            .then_expect_error(FieldError::new("quantity", "must be at least 1").into());
    }
}
