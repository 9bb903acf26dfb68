//! The payment of one order: charged (processed or declined), then possibly refunded or voided.

use serde::{Deserialize, Serialize};

use super::money::Money;
use super::types::{validate_id, FieldError};
use sagaflow_eventsourcing::aggregate::Aggregate;

/// The largest single charge the demo's payment provider accepts, in minor units.
pub const CHARGE_LIMIT_MINOR: i64 = 100_000_000;

/// The payment method token the demo's provider always declines.
pub const DECLINED_METHOD: &str = "card-declined";

/// What can be asked of a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum PaymentCommand {
    /// Capture `amount` from `method` for `order_id`.
    Charge {
        /// The order paid for (also the payment's id).
        order_id: String,
        /// How much.
        amount: Money,
        /// The payment method token.
        method: String,
    },
    /// Give the captured money back; if nothing was captured, close the payment instead.
    Refund {
        /// The order (also the payment's id), known even if it was never charged.
        order_id: String,
        /// Why.
        reason: String,
    },
}

sagaflow_eventsourcing::domain_event! {
    /// What a payment records.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum PaymentEvent {
        /// The amount was captured.
        Processed = "payment.processed" @ 1 {
            /// The order.
            order_id: String,
            /// Captured amount.
            amount: Money,
        },
        /// The provider refused the charge.
        Declined = "payment.declined" @ 1 {
            /// The order.
            order_id: String,
            /// The refused amount.
            amount: Money,
            /// Why.
            reason: String,
        },
        /// The captured amount was returned.
        Refunded = "payment.refunded" @ 1 {
            /// The order.
            order_id: String,
            /// Refunded amount.
            amount: Money,
            /// Why.
            reason: String,
        },
        /// Nothing was captured and nothing ever will be: a late charge is declined.
        Voided = "payment.voided" @ 1 {
            /// The order.
            order_id: String,
            /// Why.
            reason: String,
        },
    }
}

/// Where a payment is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Never charged.
    #[default]
    None,
    /// Money captured.
    Captured,
    /// Charge refused.
    Declined,
    /// Captured money returned.
    Refunded,
    /// Closed without capture.
    Voided,
}

/// Why a payment command is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// A field of the command is invalid.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// A second charge with a different amount for the same order.
    #[error("payment for order {order_id} was already charged {charged}")]
    AlreadyCharged {
        /// The order.
        order_id: String,
        /// The amount charged before.
        charged: Money,
    },
}

/// The payment aggregate's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// Where the payment is.
    pub status: PaymentStatus,
    /// The order paid for.
    pub order_id: String,
    /// The amount charged or attempted.
    pub amount: Option<Money>,
}

impl Aggregate for Payment {
    const TYPE: &'static str = "payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;

    fn decide(&self, command: &PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        match command {
            PaymentCommand::Charge {
                order_id,
                amount,
                method,
            } => {
                validate_id("order_id", order_id)?;
                if !amount.is_positive() {
                    return Err(FieldError::new("amount", "must be above zero").into());
                }
                if method.trim().is_empty() {
                    return Err(FieldError::new("method", "must not be empty").into());
                }
                match self.status {
                    PaymentStatus::None => {}
                    PaymentStatus::Captured | PaymentStatus::Declined
                        if self.amount.as_ref() == Some(amount) =>
                    {
                        return Ok(vec![])
                    }
                    PaymentStatus::Voided | PaymentStatus::Refunded => {
                        return Ok(vec![PaymentEvent::Declined {
                            order_id: order_id.clone(),
                            amount: amount.clone(),
                            reason: "payment already closed".into(),
                        }])
                    }
                    PaymentStatus::Captured | PaymentStatus::Declined => {
                        return Err(PaymentError::AlreadyCharged {
                            order_id: order_id.clone(),
                            charged: self.amount.clone().unwrap_or_else(|| amount.clone()),
                        })
                    }
                }
                let refusal = if method == DECLINED_METHOD {
                    Some("card declined by issuer".to_string())
                } else if amount.amount_minor > CHARGE_LIMIT_MINOR {
                    Some(format!("{amount} is over the charge limit"))
                } else {
                    None
                };
                Ok(vec![match refusal {
                    Some(reason) => PaymentEvent::Declined {
                        order_id: order_id.clone(),
                        amount: amount.clone(),
                        reason,
                    },
                    None => PaymentEvent::Processed {
                        order_id: order_id.clone(),
                        amount: amount.clone(),
                    },
                }])
            }
            PaymentCommand::Refund { order_id, reason } => match (&self.status, &self.amount) {
                (PaymentStatus::Captured, Some(amount)) => Ok(vec![PaymentEvent::Refunded {
                    order_id: order_id.clone(),
                    amount: amount.clone(),
                    reason: reason.clone(),
                }]),
                (PaymentStatus::Refunded | PaymentStatus::Voided, _) => Ok(vec![]),
                _ => Ok(vec![PaymentEvent::Voided {
                    order_id: order_id.clone(),
                    reason: reason.clone(),
                }]),
            },
        }
    }

    fn apply(&mut self, event: &PaymentEvent) {
        match event {
            PaymentEvent::Processed { order_id, amount } => {
                self.status = PaymentStatus::Captured;
                self.order_id = order_id.clone();
                self.amount = Some(amount.clone());
            }
            PaymentEvent::Declined {
                order_id, amount, ..
            } => {
                // A late charge declined after a void leaves the payment closed.
                if self.status == PaymentStatus::None {
                    self.status = PaymentStatus::Declined;
                    self.amount = Some(amount.clone());
                }
                self.order_id = order_id.clone();
            }
            PaymentEvent::Refunded { .. } => self.status = PaymentStatus::Refunded,
            PaymentEvent::Voided { order_id, .. } => {
                self.status = PaymentStatus::Voided;
                self.order_id = order_id.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_eventsourcing::testkit::AggregateFixture;

    fn charge(amount: i64, method: &str) -> PaymentCommand {
        PaymentCommand::Charge {
            order_id: "ord-1".into(),
            amount: Money::eur(amount),
            method: method.into(),
        }
    }

    fn processed(amount: i64) -> PaymentEvent {
        PaymentEvent::Processed {
            order_id: "ord-1".into(),
            amount: Money::eur(amount),
        }
    }

    #[test]
    fn a_good_card_is_charged() {
        AggregateFixture::<Payment>::given_no_events()
            .when(charge(5_000, "card-ok"))
            .then_expect_events(vec![processed(5_000)]);
    }

    #[test]
    fn a_declined_card_and_an_amount_over_the_limit_are_declined() {
        AggregateFixture::<Payment>::given_no_events()
            .when(charge(5_000, DECLINED_METHOD))
            .then_expect_events(vec![PaymentEvent::Declined {
                order_id: "ord-1".into(),
                amount: Money::eur(5_000),
                reason: "card declined by issuer".into(),
            }]);
        AggregateFixture::<Payment>::given_no_events()
            .when(charge(CHARGE_LIMIT_MINOR + 1, "card-ok"))
            .then_expect_events(vec![PaymentEvent::Declined {
                order_id: "ord-1".into(),
                amount: Money::eur(CHARGE_LIMIT_MINOR + 1),
                reason: "1000000.01 EUR is over the charge limit".into(),
            }]);
    }

    #[test]
    fn zero_or_negative_amounts_are_invalid() {
        for amount in [0, -1, i64::MIN] {
            AggregateFixture::<Payment>::given_no_events()
                .when(charge(amount, "card-ok"))
                .then_expect_error(FieldError::new("amount", "must be above zero").into());
        }
    }

    #[test]
    fn charging_twice_is_idempotent_but_a_different_amount_is_refused() {
        AggregateFixture::<Payment>::given([processed(5_000)])
            .when(charge(5_000, "card-ok"))
            .then_expect_events(vec![]);
        AggregateFixture::<Payment>::given([processed(5_000)])
            .when(charge(6_000, "card-ok"))
            .then_expect_error(PaymentError::AlreadyCharged {
                order_id: "ord-1".into(),
                charged: Money::eur(5_000),
            });
    }

    #[test]
    fn refund_returns_the_captured_amount_once() {
        let refunded = PaymentEvent::Refunded {
            order_id: "ord-1".into(),
            amount: Money::eur(5_000),
            reason: "out of stock".into(),
        };
        AggregateFixture::<Payment>::given([processed(5_000)])
            .when(PaymentCommand::Refund {
                order_id: "ord-1".into(),
                reason: "out of stock".into(),
            })
            .then_expect_events(vec![refunded.clone()]);
        AggregateFixture::<Payment>::given([processed(5_000), refunded])
            .when(PaymentCommand::Refund {
                order_id: "ord-1".into(),
                reason: "again".into(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn refund_without_capture_voids_and_a_late_charge_is_declined() {
        let voided = PaymentEvent::Voided {
            order_id: "ord-1".into(),
            reason: "timed out".into(),
        };
        AggregateFixture::<Payment>::given_no_events()
            .when(PaymentCommand::Refund {
                order_id: "ord-1".into(),
                reason: "timed out".into(),
            })
            .then_expect_events(vec![voided.clone()]);
        let state = AggregateFixture::<Payment>::given([voided])
            .when(charge(5_000, "card-ok"))
            .then_expect_events(vec![PaymentEvent::Declined {
                order_id: "ord-1".into(),
                amount: Money::eur(5_000),
                reason: "payment already closed".into(),
            }]);
        assert_eq!(state.status, PaymentStatus::Voided);
    }
}
