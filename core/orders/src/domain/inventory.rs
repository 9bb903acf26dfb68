//! An order's reservation of stock: every line held or none, then released or shipped.
//!
//! The reservation is one stream per order (aggregate type `inventory`, whose events the
//! sagas and the choreography follow); the units are counted in one [`Stock`] stream per SKU.
//! A command is decided by [`decide_with_stock`] over the reservation and the stock of every
//! SKU it names, and the repository appends to all of them in one atomic write
//! ([`sagaflow_eventsourcing::Repository::execute_joint`]): a multi-line reservation stays
//! all-or-nothing, and orders for different SKUs never contend on a stream.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::stock::{Stock, StockCommand, StockError};
use super::types::{validate_id, FieldError, StockLine};
use sagaflow_eventsourcing::aggregate::Aggregate;
use sagaflow_eventsourcing::repository::JointDecision;

/// The most SKUs one reservation holds: each takes two items of the one DynamoDB transaction
/// that reserves them (its stock event and its version check), which allows 100 in all.
pub const MAX_RESERVATION_SKUS: usize = 40;

/// What can be asked of an order's reservation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum InventoryCommand {
    /// Hold every line of the order, or none.
    Reserve {
        /// The order.
        order_id: String,
        /// What to reserve.
        lines: Vec<StockLine>,
    },
    /// Give the order's held units back to available stock.
    Release {
        /// The order.
        order_id: String,
        /// Why.
        reason: String,
    },
    /// The order's held units left the warehouse.
    Ship {
        /// The order.
        order_id: String,
    },
}

impl InventoryCommand {
    /// The order whose reservation the command addresses: the reservation's stream id.
    pub fn order_id(&self) -> &str {
        match self {
            InventoryCommand::Reserve { order_id, .. }
            | InventoryCommand::Release { order_id, .. }
            | InventoryCommand::Ship { order_id } => order_id,
        }
    }
}

sagaflow_eventsourcing::domain_event! {
    /// What an order's reservation records.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum InventoryEvent {
        /// Every line of the order is held.
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
        /// The order's held units were shipped.
        Shipped = "inventory.shipped" @ 1 {
            /// The order.
            order_id: String,
            /// What left the warehouse.
            lines: Vec<StockLine>,
        },
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
    /// A SKU's stock disagrees with the reservation (it holds other units for the order).
    #[error("the stock of {sku} disagrees with the reservation: {source}")]
    Stock {
        /// The SKU.
        sku: String,
        /// The stock's refusal.
        source: StockError,
    },
}

/// Where an order's reservation is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReservationStatus {
    /// Nothing held yet (or the last attempt failed).
    #[default]
    Open,
    /// Every line is held.
    Held,
    /// Given back, or released before anything was held (a cancel or a timed-out step that
    /// beat the reservation): a reservation arriving later fails instead of holding stock for
    /// an order that is gone.
    Released,
    /// The held units left the warehouse.
    Shipped,
}

/// The reservation aggregate's state: one order's hold on stock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// Where it is.
    pub status: ReservationStatus,
    /// The lines held, one per SKU (empty unless held).
    pub lines: Vec<StockLine>,
}

/// The target (and so the Kafka key) of an order's inventory commands: the first of its SKUs,
/// so that the commands of one SKU's orders are one key, handled in order by one invocation at a
/// time instead of racing for the SKU's stock from several; the order's own id when it has no
/// lines. Only the key: the service finds the reservation by the payload's `order_id`.
pub fn inventory_target(order_id: &str, lines: &[StockLine]) -> String {
    lines
        .iter()
        .map(|line| line.sku.as_str())
        .min()
        .unwrap_or(order_id)
        .to_string()
}

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

impl Aggregate for Reservation {
    const TYPE: &'static str = "inventory";
    type Command = InventoryCommand;
    type Event = InventoryEvent;
    type Error = InventoryError;

    /// What the reservation records if every SKU can hold its line; [`decide_with_stock`]
    /// turns a `Reserved` into a `ReservationFailed` where one cannot.
    fn decide(&self, command: &InventoryCommand) -> Result<Vec<InventoryEvent>, InventoryError> {
        validate_id("order_id", command.order_id())?;
        let order_id = command.order_id().to_string();
        match command {
            InventoryCommand::Reserve { lines, .. } => {
                let lines = normalise(lines)?;
                let failed = |reason: &str| {
                    Ok(vec![InventoryEvent::ReservationFailed {
                        order_id: order_id.clone(),
                        lines: lines.clone(),
                        reason: reason.into(),
                    }])
                };
                match self.status {
                    ReservationStatus::Held if self.lines == lines => Ok(vec![]),
                    ReservationStatus::Held => {
                        Err(InventoryError::ConflictingReservation(order_id.clone()))
                    }
                    ReservationStatus::Released => {
                        failed("the order's stock was released before it was reserved")
                    }
                    ReservationStatus::Shipped => failed("the order's stock was already shipped"),
                    ReservationStatus::Open if lines.len() > MAX_RESERVATION_SKUS => {
                        failed(&format!(
                            "{} SKUs, one reservation holds at most {MAX_RESERVATION_SKUS}",
                            lines.len()
                        ))
                    }
                    ReservationStatus::Open => Ok(vec![InventoryEvent::Reserved {
                        order_id: order_id.clone(),
                        lines,
                    }]),
                }
            }
            InventoryCommand::Release { reason, .. } => Ok(vec![InventoryEvent::Released {
                order_id,
                lines: self.held().to_vec(),
                reason: reason.clone(),
            }]),
            InventoryCommand::Ship { .. } => Ok(match self.status {
                ReservationStatus::Held => vec![InventoryEvent::Shipped {
                    order_id,
                    lines: self.lines.clone(),
                }],
                _ => vec![],
            }),
        }
    }

    fn apply(&mut self, event: &InventoryEvent) {
        match event {
            InventoryEvent::Reserved { lines, .. } => {
                self.status = ReservationStatus::Held;
                self.lines = lines.clone();
            }
            InventoryEvent::ReservationFailed { .. } => {}
            InventoryEvent::Released { .. } => {
                // Released after shipping gives nothing back and changes nothing.
                if self.status != ReservationStatus::Shipped {
                    self.status = ReservationStatus::Released;
                    self.lines.clear();
                }
            }
            InventoryEvent::Shipped { .. } => {
                self.status = ReservationStatus::Shipped;
            }
        }
    }
}

impl Reservation {
    /// The lines held now (none unless the reservation is held).
    pub fn held(&self) -> &[StockLine] {
        match self.status {
            ReservationStatus::Held => &self.lines,
            _ => &[],
        }
    }

    /// The SKUs whose stock `command` involves: the lines to hold, or the lines held.
    pub fn skus_for(&self, command: &InventoryCommand) -> Vec<String> {
        let lines = match command {
            InventoryCommand::Reserve { lines, .. } => lines.as_slice(),
            InventoryCommand::Release { .. } | InventoryCommand::Ship { .. } => self.held(),
        };
        let mut skus: Vec<String> = lines.iter().map(|l| l.sku.clone()).collect();
        skus.sort();
        skus.dedup();
        skus
    }
}

/// Decides `command` on an order's reservation with the stock of the SKUs it names
/// ([`Reservation::skus_for`]): the reservation's events, and each SKU's hold, release or
/// shipment. A reservation that some SKU cannot hold (unknown, or short) fails whole, naming
/// the first such line, and holds nothing.
pub fn decide_with_stock(
    reservation: &Reservation,
    stock: &BTreeMap<String, Stock>,
    command: &InventoryCommand,
) -> Result<JointDecision<Reservation, Stock>, InventoryError> {
    let events = reservation.decide(command)?;
    let never_stocked = Stock::default();
    let mut parts = BTreeMap::new();
    for event in &events {
        let (order_id, lines) = match event {
            InventoryEvent::Reserved { order_id, lines }
            | InventoryEvent::Released {
                order_id, lines, ..
            }
            | InventoryEvent::Shipped { order_id, lines } => (order_id, lines),
            InventoryEvent::ReservationFailed { .. } => continue,
        };
        for line in lines {
            let sku_stock = stock.get(&line.sku).unwrap_or(&never_stocked);
            let change = match event {
                InventoryEvent::Reserved { .. } if !sku_stock.is_known() => {
                    return Ok(failed(order_id, lines, format!("unknown SKU {}", line.sku)));
                }
                InventoryEvent::Reserved { .. } => StockCommand::Hold {
                    order_id: order_id.clone(),
                    quantity: line.quantity,
                },
                InventoryEvent::Released { .. } => StockCommand::Release {
                    order_id: order_id.clone(),
                },
                _ => StockCommand::Ship {
                    order_id: order_id.clone(),
                },
            };
            match sku_stock.decide(&change) {
                Ok(stock_events) => {
                    parts.insert(line.sku.clone(), stock_events);
                }
                Err(StockError::Short { wanted, available }) => {
                    let reason = format!(
                        "out of stock: {} wants {wanted}, {available} available",
                        line.sku
                    );
                    return Ok(failed(order_id, lines, reason));
                }
                Err(source) => {
                    return Err(InventoryError::Stock {
                        sku: line.sku.clone(),
                        source,
                    })
                }
            }
        }
    }
    Ok(JointDecision { events, parts })
}

fn failed(
    order_id: &str,
    lines: &[StockLine],
    reason: String,
) -> JointDecision<Reservation, Stock> {
    JointDecision::own(vec![InventoryEvent::ReservationFailed {
        order_id: order_id.to_string(),
        lines: lines.to_vec(),
        reason,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::stock::StockEvent;
    use sagaflow_eventsourcing::testkit::AggregateFixture;

    fn line(sku: &str, quantity: u32) -> StockLine {
        StockLine {
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

    fn stocked(levels: &[(&str, u32)]) -> BTreeMap<String, Stock> {
        levels
            .iter()
            .map(|&(sku, quantity)| {
                (
                    sku.to_string(),
                    Stock::from_events(&[StockEvent::Restocked { quantity }]),
                )
            })
            .collect()
    }

    fn reserved(order: &str, lines: Vec<StockLine>) -> InventoryEvent {
        InventoryEvent::Reserved {
            order_id: order.into(),
            lines,
        }
    }

    #[test]
    fn holds_every_line_when_all_are_available() {
        let decision = decide_with_stock(
            &Reservation::default(),
            &stocked(&[("MUG", 5), ("TEE", 2)]),
            &reserve(
                "ord-1",
                vec![line("TEE", 2), line("MUG", 1), line("MUG", 2)],
            ),
        )
        .unwrap();
        assert_eq!(
            decision.events,
            vec![reserved("ord-1", vec![line("MUG", 3), line("TEE", 2)])]
        );
        let held = |quantity| {
            vec![StockEvent::Held {
                order_id: "ord-1".into(),
                quantity,
            }]
        };
        assert_eq!(
            decision.parts,
            BTreeMap::from([("MUG".to_string(), held(3)), ("TEE".to_string(), held(2))])
        );
    }

    #[test]
    fn holds_nothing_when_one_line_is_short_or_unknown() {
        let short = decide_with_stock(
            &Reservation::default(),
            &stocked(&[("MUG", 5), ("TEE", 1)]),
            &reserve("ord-1", vec![line("MUG", 1), line("TEE", 2)]),
        )
        .unwrap();
        assert_eq!(
            short.events,
            vec![InventoryEvent::ReservationFailed {
                order_id: "ord-1".into(),
                lines: vec![line("MUG", 1), line("TEE", 2)],
                reason: "out of stock: TEE wants 2, 1 available".into(),
            }]
        );
        assert!(short.parts.is_empty());
        let unknown = decide_with_stock(
            &Reservation::default(),
            &stocked(&[("MUG", 5)]),
            &reserve("ord-1", vec![line("HAT", 1)]),
        )
        .unwrap();
        assert!(
            matches!(&unknown.events[..], [InventoryEvent::ReservationFailed { reason, .. }] if reason == "unknown SKU HAT")
        );
        assert!(unknown.parts.is_empty());
    }

    #[test]
    fn too_many_skus_fail_the_reservation_whole() {
        let lines: Vec<StockLine> = (0..=MAX_RESERVATION_SKUS)
            .map(|i| line(&format!("SKU-{i}"), 1))
            .collect();
        let decision = decide_with_stock(
            &Reservation::default(),
            &BTreeMap::new(),
            &reserve("ord-1", lines),
        )
        .unwrap();
        assert!(
            matches!(&decision.events[..], [InventoryEvent::ReservationFailed { reason, .. }] if reason.contains("at most 40")),
            "{:?}",
            decision.events
        );
        assert!(decision.parts.is_empty());
    }

    #[test]
    fn invalid_reservations_name_the_field() {
        AggregateFixture::<Reservation>::given_no_events()
            .when(reserve("ord-1", vec![line("MUG", 0)]))
            .then_expect_error(FieldError::new("lines[0].quantity", "must be at least 1").into());
        AggregateFixture::<Reservation>::given_no_events()
            .when(reserve("ord-1", vec![]))
            .then_expect_error(FieldError::new("lines", "at least one line is needed").into());
        AggregateFixture::<Reservation>::given_no_events()
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
        AggregateFixture::<Reservation>::given([reserved("ord-1", vec![line("MUG", 2)])])
            .when(reserve("ord-1", vec![line("MUG", 2)]))
            .then_expect_events(vec![]);
        AggregateFixture::<Reservation>::given([reserved("ord-1", vec![line("MUG", 2)])])
            .when(reserve("ord-1", vec![line("MUG", 3)]))
            .then_expect_error(InventoryError::ConflictingReservation("ord-1".into()));
    }

    #[test]
    fn a_reservation_after_its_release_fails() {
        let released = InventoryEvent::Released {
            order_id: "ord-1".into(),
            lines: vec![],
            reason: "customer_cancelled".into(),
        };
        AggregateFixture::<Reservation>::given([released])
            .when(reserve("ord-1", vec![line("MUG", 1)]))
            .then_expect_events(vec![InventoryEvent::ReservationFailed {
                order_id: "ord-1".into(),
                lines: vec![line("MUG", 1)],
                reason: "the order's stock was released before it was reserved".into(),
            }]);
    }

    #[test]
    fn release_gives_held_units_back_once() {
        let holding = Reservation::from_events(&[reserved("ord-1", vec![line("MUG", 2)])]);
        let mut stock = stocked(&[("MUG", 5)]);
        stock.get_mut("MUG").unwrap().apply(&StockEvent::Held {
            order_id: "ord-1".into(),
            quantity: 2,
        });
        let release = InventoryCommand::Release {
            order_id: "ord-1".into(),
            reason: "payment refunded".into(),
        };
        assert_eq!(holding.skus_for(&release), vec!["MUG".to_string()]);
        let decision = decide_with_stock(&holding, &stock, &release).unwrap();
        assert_eq!(
            decision.events,
            vec![InventoryEvent::Released {
                order_id: "ord-1".into(),
                lines: vec![line("MUG", 2)],
                reason: "payment refunded".into(),
            }]
        );
        assert_eq!(
            decision.parts["MUG"],
            vec![StockEvent::Released {
                order_id: "ord-1".into(),
                quantity: 2,
            }]
        );
        let mut after = holding.clone();
        decision.events.iter().for_each(|e| after.apply(e));
        assert!(after.skus_for(&release).is_empty());
        let again = decide_with_stock(&after, &BTreeMap::new(), &release).unwrap();
        assert!(
            matches!(&again.events[..], [InventoryEvent::Released { lines, .. }] if lines.is_empty())
        );
        assert!(again.parts.is_empty());
    }

    #[test]
    fn shipping_ships_the_held_lines_and_nothing_without_a_hold() {
        let holding = Reservation::from_events(&[reserved("ord-1", vec![line("MUG", 2)])]);
        let mut stock = stocked(&[("MUG", 5)]);
        stock.get_mut("MUG").unwrap().apply(&StockEvent::Held {
            order_id: "ord-1".into(),
            quantity: 2,
        });
        let ship = InventoryCommand::Ship {
            order_id: "ord-1".into(),
        };
        let decision = decide_with_stock(&holding, &stock, &ship).unwrap();
        assert_eq!(
            decision.events,
            vec![InventoryEvent::Shipped {
                order_id: "ord-1".into(),
                lines: vec![line("MUG", 2)],
            }]
        );
        assert_eq!(
            decision.parts["MUG"],
            vec![StockEvent::Shipped {
                order_id: "ord-1".into(),
                quantity: 2,
            }]
        );
        let none = decide_with_stock(&Reservation::default(), &BTreeMap::new(), &ship).unwrap();
        assert!(none.events.is_empty() && none.parts.is_empty());
    }
}
