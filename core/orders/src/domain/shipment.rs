//! The shipment of one order: scheduled with a carrier (or failed), confirmed or cancelled.

use serde::{Deserialize, Serialize};

use super::order::validate_address;
use super::types::{validate_id, Address, FieldError};
use sagaflow_eventsourcing::aggregate::Aggregate;

/// Countries the demo's carrier delivers to; any other destination fails the shipment.
pub const SERVED_COUNTRIES: &[&str] = &[
    "AT", "BE", "DE", "DK", "ES", "FR", "GB", "IE", "IT", "NL", "PL", "PT", "SE", "US",
];

/// What can be asked of a shipment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum ShipmentCommand {
    /// Book a carrier for the order.
    Schedule {
        /// The order (also the shipment's id).
        order_id: String,
        /// Destination.
        address: Address,
    },
    /// The carrier picked the parcel up.
    Confirm {
        /// The order.
        order_id: String,
    },
    /// Call the carrier off; closes a shipment that never got scheduled too.
    Cancel {
        /// The order.
        order_id: String,
        /// Why.
        reason: String,
    },
}

sagaflow_eventsourcing::domain_event! {
    /// What a shipment records.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum ShipmentEvent {
        /// A carrier is booked.
        Scheduled = "shipment.scheduled" @ 1 {
            /// The order.
            order_id: String,
            /// The carrier.
            carrier: String,
            /// The carrier's tracking id.
            tracking_id: String,
        },
        /// No carrier could be booked.
        Failed = "shipment.failed" @ 1 {
            /// The order.
            order_id: String,
            /// Why.
            reason: String,
        },
        /// The carrier has the parcel.
        Confirmed = "shipment.confirmed" @ 1 {
            /// The order.
            order_id: String,
        },
        /// The shipment was called off (or closed before it was ever scheduled).
        Cancelled = "shipment.cancelled" @ 1 {
            /// The order.
            order_id: String,
            /// Why.
            reason: String,
            /// Whether a booked carrier was called off.
            was_scheduled: bool,
        },
    }
}

/// Where a shipment is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipmentStatus {
    /// Nothing asked yet.
    #[default]
    None,
    /// Carrier booked.
    Scheduled,
    /// Booking failed.
    Failed,
    /// Picked up.
    Confirmed,
    /// Called off.
    Cancelled,
}

/// Why a shipment command is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShipmentError {
    /// A field of the command is invalid.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// The shipment's status does not allow the command.
    #[error("shipment is {status:?}; cannot {action}")]
    InvalidTransition {
        /// Current status.
        status: ShipmentStatus,
        /// What was asked.
        action: &'static str,
    },
}

/// The shipment aggregate's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    /// Where the shipment is.
    pub status: ShipmentStatus,
    /// The carrier's tracking id once scheduled.
    pub tracking_id: Option<String>,
}

impl Aggregate for Shipment {
    const TYPE: &'static str = "shipment";
    type Command = ShipmentCommand;
    type Event = ShipmentEvent;
    type Error = ShipmentError;

    fn decide(&self, command: &ShipmentCommand) -> Result<Vec<ShipmentEvent>, ShipmentError> {
        use ShipmentStatus as S;
        match command {
            ShipmentCommand::Schedule { order_id, address } => {
                validate_id("order_id", order_id)?;
                validate_address("address", address)?;
                match self.status {
                    S::None => {}
                    S::Scheduled | S::Failed | S::Confirmed => return Ok(vec![]),
                    S::Cancelled => {
                        return Ok(vec![ShipmentEvent::Failed {
                            order_id: order_id.clone(),
                            reason: "shipment was cancelled".into(),
                        }])
                    }
                }
                if SERVED_COUNTRIES.contains(&address.country.as_str()) {
                    Ok(vec![ShipmentEvent::Scheduled {
                        order_id: order_id.clone(),
                        carrier: "parcelco".into(),
                        tracking_id: format!("PC-{order_id}"),
                    }])
                } else {
                    Ok(vec![ShipmentEvent::Failed {
                        order_id: order_id.clone(),
                        reason: format!("carrier does not deliver to {}", address.country),
                    }])
                }
            }
            ShipmentCommand::Confirm { order_id } => {
                validate_id("order_id", order_id)?;
                match self.status {
                    S::Scheduled => Ok(vec![ShipmentEvent::Confirmed {
                        order_id: order_id.clone(),
                    }]),
                    S::Confirmed => Ok(vec![]),
                    status => Err(ShipmentError::InvalidTransition {
                        status,
                        action: "confirm",
                    }),
                }
            }
            ShipmentCommand::Cancel { order_id, reason } => {
                validate_id("order_id", order_id)?;
                match self.status {
                    S::Cancelled => Ok(vec![]),
                    S::Confirmed => Err(ShipmentError::InvalidTransition {
                        status: S::Confirmed,
                        action: "cancel",
                    }),
                    status => Ok(vec![ShipmentEvent::Cancelled {
                        order_id: order_id.clone(),
                        reason: reason.clone(),
                        was_scheduled: status == S::Scheduled,
                    }]),
                }
            }
        }
    }

    fn apply(&mut self, event: &ShipmentEvent) {
        match event {
            ShipmentEvent::Scheduled { tracking_id, .. } => {
                self.status = ShipmentStatus::Scheduled;
                self.tracking_id = Some(tracking_id.clone());
            }
            ShipmentEvent::Failed { .. } => {
                if self.status == ShipmentStatus::None {
                    self.status = ShipmentStatus::Failed;
                }
            }
            ShipmentEvent::Confirmed { .. } => self.status = ShipmentStatus::Confirmed,
            ShipmentEvent::Cancelled { .. } => self.status = ShipmentStatus::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::address;
    use sagaflow_eventsourcing::testkit::AggregateFixture;

    fn schedule(country: &str) -> ShipmentCommand {
        let mut to = address();
        to.country = country.into();
        ShipmentCommand::Schedule {
            order_id: "ord-1".into(),
            address: to,
        }
    }

    fn scheduled() -> ShipmentEvent {
        ShipmentEvent::Scheduled {
            order_id: "ord-1".into(),
            carrier: "parcelco".into(),
            tracking_id: "PC-ord-1".into(),
        }
    }

    #[test]
    fn a_served_country_is_scheduled_and_another_fails() {
        AggregateFixture::<Shipment>::given_no_events()
            .when(schedule("DE"))
            .then_expect_events(vec![scheduled()]);
        AggregateFixture::<Shipment>::given_no_events()
            .when(schedule("AQ"))
            .then_expect_events(vec![ShipmentEvent::Failed {
                order_id: "ord-1".into(),
                reason: "carrier does not deliver to AQ".into(),
            }]);
    }

    #[test]
    fn confirm_needs_a_scheduled_shipment() {
        AggregateFixture::<Shipment>::given([scheduled()])
            .when(ShipmentCommand::Confirm {
                order_id: "ord-1".into(),
            })
            .then_expect_events(vec![ShipmentEvent::Confirmed {
                order_id: "ord-1".into(),
            }]);
        AggregateFixture::<Shipment>::given_no_events()
            .when(ShipmentCommand::Confirm {
                order_id: "ord-1".into(),
            })
            .then_expect_error(ShipmentError::InvalidTransition {
                status: ShipmentStatus::None,
                action: "confirm",
            });
    }

    #[test]
    fn cancel_calls_off_a_booking_closes_an_unbooked_one_and_blocks_a_late_schedule() {
        let cancel = || ShipmentCommand::Cancel {
            order_id: "ord-1".into(),
            reason: "timeout".into(),
        };
        AggregateFixture::<Shipment>::given([scheduled()])
            .when(cancel())
            .then_expect_events(vec![ShipmentEvent::Cancelled {
                order_id: "ord-1".into(),
                reason: "timeout".into(),
                was_scheduled: true,
            }]);
        let closed = ShipmentEvent::Cancelled {
            order_id: "ord-1".into(),
            reason: "timeout".into(),
            was_scheduled: false,
        };
        AggregateFixture::<Shipment>::given_no_events()
            .when(cancel())
            .then_expect_events(vec![closed.clone()]);
        AggregateFixture::<Shipment>::given([closed])
            .when(schedule("DE"))
            .then_expect_events(vec![ShipmentEvent::Failed {
                order_id: "ord-1".into(),
                reason: "shipment was cancelled".into(),
            }]);
        AggregateFixture::<Shipment>::given([
            scheduled(),
            ShipmentEvent::Confirmed {
                order_id: "ord-1".into(),
            },
        ])
        .when(cancel())
        .then_expect_error(ShipmentError::InvalidTransition {
            status: ShipmentStatus::Confirmed,
            action: "cancel",
        });
    }
}
