//! The order: created with priced lines, then completed or cancelled with a reason.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::money::Money;
use super::types::{validate_id, Address, CancelReason, FieldError, Flow, OrderLine, RefundStatus};
use sagaflow_eventsourcing::aggregate::Aggregate;
use sagaflow_eventsourcing::upcast::{UpcastError, Upcasters};

/// A request to create an order with priced lines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateOrder {
    /// The new order's id.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What was ordered, priced.
    pub lines: Vec<OrderLine>,
    /// Token of the payment method to charge.
    pub payment_method: String,
    /// Where to ship.
    pub shipping_address: Address,
    /// Which coordination style runs this order.
    pub flow: Flow,
}

impl CreateOrder {
    /// Checks every field and returns the order total, or the first invalid field.
    pub fn validate(&self) -> Result<Money, FieldError> {
        validate_id("order_id", &self.order_id)?;
        validate_id("customer_id", &self.customer_id)?;
        let Some(first) = self.lines.first() else {
            return Err(FieldError::new("lines", "an order needs at least one line"));
        };
        let mut total = Money::zero(first.unit_price.currency.clone());
        for (i, line) in self.lines.iter().enumerate() {
            validate_id(&format!("lines[{i}].sku"), &line.sku)?;
            if line.quantity == 0 {
                return Err(FieldError::new(
                    format!("lines[{i}].quantity"),
                    "must be at least 1",
                ));
            }
            if line.unit_price.amount_minor < 0 {
                return Err(FieldError::new(
                    format!("lines[{i}].unit_price"),
                    "must not be negative",
                ));
            }
            if line.unit_price.currency != total.currency {
                return Err(FieldError::new(
                    format!("lines[{i}].unit_price.currency"),
                    format!(
                        "is {}, the order is in {}",
                        line.unit_price.currency.code(),
                        total.currency.code()
                    ),
                ));
            }
            let amount = line
                .unit_price
                .checked_mul(line.quantity)
                .and_then(|amount| total.checked_add(&amount))
                .map_err(|_| {
                    FieldError::new(format!("lines[{i}].unit_price"), "order total overflows")
                })?;
            total = amount;
        }
        if self.payment_method.trim().is_empty() {
            return Err(FieldError::new("payment_method", "must not be empty"));
        }
        validate_address("shipping_address", &self.shipping_address)?;
        Ok(total)
    }
}

/// Checks that an address has every part and a two-letter country code.
pub fn validate_address(field: &str, address: &Address) -> Result<(), FieldError> {
    for (part, value) in [
        ("name", &address.name),
        ("line1", &address.line1),
        ("city", &address.city),
    ] {
        if value.trim().is_empty() {
            return Err(FieldError::new(
                format!("{field}.{part}"),
                "must not be empty",
            ));
        }
    }
    if address.country.len() != 2 || !address.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(FieldError::new(
            format!("{field}.country"),
            "must be a two-letter upper-case country code",
        ));
    }
    Ok(())
}

/// What can be asked of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum OrderCommand {
    /// Create the order.
    Create(CreateOrder),
    /// Mark the order fulfilled.
    Complete,
    /// Cancel the order, saying why and what happened to the money.
    Cancel {
        /// Why.
        reason: CancelReason,
        /// Whether money was refunded.
        refund_status: RefundStatus,
    },
    /// The customer asks to cancel a running choreographed order (`order.request_cancel`):
    /// the services undo their part, and the order is cancelled once its money is settled.
    RequestCancel {
        /// Why, in the customer's words.
        reason: String,
    },
}

sagaflow_eventsourcing::domain_event! {
    /// What an order records.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub enum OrderEvent {
        /// The order exists (schema version 2: priced lines and a total with currency).
        Created = "order.created" @ 2 {
            /// Order id.
            order_id: String,
            /// Who ordered.
            customer_id: String,
            /// Priced lines.
            lines: Vec<OrderLine>,
            /// Sum of the lines.
            total: Money,
            /// Payment method token.
            payment_method: String,
            /// Where to ship.
            shipping_address: Address,
            /// Coordination style.
            flow: Flow,
        },
        /// The order was fulfilled.
        Completed = "order.completed" @ 1 {
            /// Order id.
            order_id: String,
        },
        /// The customer asked to cancel the running order; each service undoes its part.
        CancelRequested = "order.cancel_requested" @ 1 {
            /// Order id.
            order_id: String,
            /// Why, in the customer's words.
            reason: String,
        },
        /// The order was cancelled.
        Cancelled = "order.cancelled" @ 1 {
            /// Order id.
            order_id: String,
            /// Why.
            reason: CancelReason,
            /// What happened to the money.
            refund_status: RefundStatus,
        },
    }
    upcasters = order_upcasters();
}

/// Reads `order.created` version 1 (one SKU, a unit price in euro cents, no flow) as version 2.
pub fn order_upcasters() -> Upcasters {
    Upcasters::new().register("order.created", 1, upcast_order_created_v1)
}

fn upcast_order_created_v1(v1: Value) -> Result<Value, UpcastError> {
    let field = |name: &'static str| v1.get(name).cloned().ok_or(UpcastError::MissingField(name));
    let whole = |field: &'static str| UpcastError::InvalidField {
        field,
        problem: "is not a whole number",
    };
    let quantity = field("quantity")?.as_u64().ok_or(whole("quantity"))?;
    let unit = field("unit_price_cents")?
        .as_i64()
        .ok_or(whole("unit_price_cents"))?;
    let total = i64::try_from(quantity)
        .ok()
        .and_then(|q| q.checked_mul(unit))
        .ok_or(UpcastError::InvalidField {
            field: "total",
            problem: "overflows",
        })?;
    Ok(json!({
        "order_id": field("order_id")?,
        "customer_id": field("customer_id")?,
        "lines": [{
            "sku": field("sku")?,
            "quantity": quantity,
            "unit_price": { "amount_minor": unit, "currency": "EUR" },
        }],
        "total": { "amount_minor": total, "currency": "EUR" },
        "payment_method": field("payment_method")?,
        "shipping_address": field("shipping_address")?,
        // Version 1 predates choreography: every order then ran through the orchestrator.
        "flow": "orchestrated",
    }))
}

/// Where an order is in its life.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// No such order yet.
    #[default]
    None,
    /// Created and being processed.
    Created,
    /// Fulfilled.
    Completed,
    /// Its customer asked to cancel it; the services are undoing their part.
    Cancelling,
    /// Cancelled.
    Cancelled,
}

/// Why an order command is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    /// A field of the command is invalid.
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    /// An order with this id exists with other content.
    #[error("order {0} already exists with other content")]
    AlreadyExists(String),
    /// The order does not exist.
    #[error("order does not exist")]
    NotFound,
    /// Only a choreographed order is cancelled through the order service.
    #[error("order {0} is orchestrated: cancel it with saga.cancel")]
    CancelThroughSaga(String),
    /// The order's status does not allow the command.
    #[error("order is {status:?}; cannot {action}")]
    InvalidTransition {
        /// The current status.
        status: OrderStatus,
        /// What was asked.
        action: &'static str,
    },
}

/// The order aggregate's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Where the order is in its life.
    pub status: OrderStatus,
    /// How it was created (absent before creation).
    pub details: Option<CreateOrder>,
    /// The total of its lines.
    pub total: Option<Money>,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<CancelReason>,
    /// What happened to the money on cancellation.
    pub refund_status: Option<RefundStatus>,
    /// Why its customer asked to cancel it, if they did.
    #[serde(default)]
    pub cancel_requested: Option<String>,
}

impl Aggregate for Order {
    const TYPE: &'static str = "order";
    type Command = OrderCommand;
    type Event = OrderEvent;
    type Error = OrderError;

    fn decide(&self, command: &OrderCommand) -> Result<Vec<OrderEvent>, OrderError> {
        match (command, self.status) {
            (OrderCommand::Create(create), OrderStatus::None) => {
                let total = create.validate()?;
                Ok(vec![OrderEvent::Created {
                    order_id: create.order_id.clone(),
                    customer_id: create.customer_id.clone(),
                    lines: create.lines.clone(),
                    total,
                    payment_method: create.payment_method.clone(),
                    shipping_address: create.shipping_address.clone(),
                    flow: create.flow,
                }])
            }
            // The same creation again is a retry: nothing new happens.
            (OrderCommand::Create(create), _) if self.details.as_ref() == Some(create) => {
                Ok(vec![])
            }
            (OrderCommand::Create(create), _) => {
                Err(OrderError::AlreadyExists(create.order_id.clone()))
            }
            (_, OrderStatus::None) => Err(OrderError::NotFound),
            (OrderCommand::Complete, OrderStatus::Created) => Ok(vec![OrderEvent::Completed {
                order_id: self.order_id(),
            }]),
            (OrderCommand::Complete, OrderStatus::Completed) => Ok(vec![]),
            // The customer's cancel came first: the order is not completed after all.
            (OrderCommand::Complete, OrderStatus::Cancelling) => Ok(vec![]),
            (OrderCommand::Complete, status) => Err(OrderError::InvalidTransition {
                status,
                action: "complete",
            }),
            (
                OrderCommand::Cancel {
                    reason,
                    refund_status,
                },
                OrderStatus::Created,
            ) => Ok(vec![OrderEvent::Cancelled {
                order_id: self.order_id(),
                reason: reason.clone(),
                refund_status: *refund_status,
            }]),
            // However the services' undoing ends, it was the customer who cancelled.
            (OrderCommand::Cancel { refund_status, .. }, OrderStatus::Cancelling) => {
                Ok(vec![OrderEvent::Cancelled {
                    order_id: self.order_id(),
                    reason: CancelReason::new(
                        "customer_cancelled",
                        self.cancel_requested.clone().unwrap_or_default(),
                    ),
                    refund_status: *refund_status,
                }])
            }
            (OrderCommand::Cancel { .. }, OrderStatus::Cancelled) => Ok(vec![]),
            (OrderCommand::Cancel { .. }, status) => Err(OrderError::InvalidTransition {
                status,
                action: "cancel",
            }),
            (OrderCommand::RequestCancel { reason }, OrderStatus::Created) => {
                match self.details.as_ref().map(|d| d.flow) {
                    Some(Flow::Choreographed) => Ok(vec![OrderEvent::CancelRequested {
                        order_id: self.order_id(),
                        reason: reason.clone(),
                    }]),
                    _ => Err(OrderError::CancelThroughSaga(self.order_id())),
                }
            }
            (OrderCommand::RequestCancel { .. }, status) => Err(OrderError::InvalidTransition {
                status,
                action: "cancel",
            }),
        }
    }

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Created {
                order_id,
                customer_id,
                lines,
                total,
                payment_method,
                shipping_address,
                flow,
            } => {
                self.status = OrderStatus::Created;
                self.details = Some(CreateOrder {
                    order_id: order_id.clone(),
                    customer_id: customer_id.clone(),
                    lines: lines.clone(),
                    payment_method: payment_method.clone(),
                    shipping_address: shipping_address.clone(),
                    flow: *flow,
                });
                self.total = Some(total.clone());
            }
            OrderEvent::Completed { .. } => self.status = OrderStatus::Completed,
            OrderEvent::CancelRequested { reason, .. } => {
                self.status = OrderStatus::Cancelling;
                self.cancel_requested = Some(reason.clone());
            }
            OrderEvent::Cancelled {
                reason,
                refund_status,
                ..
            } => {
                self.status = OrderStatus::Cancelled;
                self.cancel_reason = Some(reason.clone());
                self.refund_status = Some(*refund_status);
            }
        }
    }
}

impl Order {
    /// The order's id (empty before creation).
    pub fn order_id(&self) -> String {
        self.details
            .as_ref()
            .map(|d| d.order_id.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fixtures::{address, create_order};
    use sagaflow_eventsourcing::event::{envelope_events, CommandMeta, StreamId, Timestamp};
    use sagaflow_eventsourcing::testkit::AggregateFixture;

    fn created() -> OrderEvent {
        let create = create_order("ord-1", Flow::Orchestrated);
        OrderEvent::Created {
            total: create.validate().unwrap(),
            order_id: create.order_id,
            customer_id: create.customer_id,
            lines: create.lines,
            payment_method: create.payment_method,
            shipping_address: create.shipping_address,
            flow: create.flow,
        }
    }

    #[test]
    fn creating_an_order_records_its_total() {
        AggregateFixture::<Order>::given_no_events()
            .when(OrderCommand::Create(create_order(
                "ord-1",
                Flow::Orchestrated,
            )))
            .then_expect_events(vec![created()]);
    }

    #[test]
    fn creating_the_same_order_again_changes_nothing_but_other_content_is_refused() {
        AggregateFixture::<Order>::given([created()])
            .when(OrderCommand::Create(create_order(
                "ord-1",
                Flow::Orchestrated,
            )))
            .then_expect_events(vec![]);
        AggregateFixture::<Order>::given([created()])
            .when(OrderCommand::Create(create_order(
                "ord-1",
                Flow::Choreographed,
            )))
            .then_expect_error(OrderError::AlreadyExists("ord-1".into()));
    }

    #[test]
    fn invalid_fields_are_refused_naming_the_field() {
        type Breaker = Box<dyn Fn(&mut CreateOrder)>;
        let cases: Vec<(&str, Breaker)> = vec![
            ("lines", Box::new(|c| c.lines.clear())),
            ("lines[0].quantity", Box::new(|c| c.lines[0].quantity = 0)),
            (
                "lines[1].unit_price",
                Box::new(|c| c.lines[1].unit_price.amount_minor = -1),
            ),
            (
                "lines[1].unit_price",
                Box::new(|c| {
                    c.lines[1].unit_price.amount_minor = i64::MAX;
                    c.lines[1].quantity = 2;
                }),
            ),
            (
                "lines[0].sku",
                Box::new(|c| c.lines[0].sku = "bad sku".into()),
            ),
            ("order_id", Box::new(|c| c.order_id = "ord/1".into())),
            ("customer_id", Box::new(|c| c.customer_id.clear())),
            (
                "payment_method",
                Box::new(|c| c.payment_method = " ".into()),
            ),
            (
                "shipping_address.country",
                Box::new(|c| c.shipping_address.country = "Germany".into()),
            ),
            (
                "shipping_address.city",
                Box::new(|c| c.shipping_address.city.clear()),
            ),
        ];
        for (field, break_it) in cases {
            let mut create = create_order("ord-1", Flow::Orchestrated);
            break_it(&mut create);
            AggregateFixture::<Order>::given_no_events()
                .when(OrderCommand::Create(create))
                .then_expect_error_matching(
                    |e| matches!(e, OrderError::InvalidField(f) if f.field == field),
                );
        }
    }

    #[test]
    fn completing_and_cancelling_follow_the_status() {
        let completed = OrderEvent::Completed {
            order_id: "ord-1".into(),
        };
        AggregateFixture::<Order>::given([created()])
            .when(OrderCommand::Complete)
            .then_expect_events(vec![completed.clone()]);
        AggregateFixture::<Order>::given([created(), completed.clone()])
            .when(OrderCommand::Complete)
            .then_expect_events(vec![]);
        let reason = CancelReason::new("payment_declined", "card declined");
        AggregateFixture::<Order>::given([created(), completed])
            .when(OrderCommand::Cancel {
                reason: reason.clone(),
                refund_status: RefundStatus::NotCharged,
            })
            .then_expect_error(OrderError::InvalidTransition {
                status: OrderStatus::Completed,
                action: "cancel",
            });
        let state = AggregateFixture::<Order>::given([created()])
            .when(OrderCommand::Cancel {
                reason: reason.clone(),
                refund_status: RefundStatus::Refunded,
            })
            .then_expect_events(vec![OrderEvent::Cancelled {
                order_id: "ord-1".into(),
                reason: reason.clone(),
                refund_status: RefundStatus::Refunded,
            }]);
        assert_eq!(state.status, OrderStatus::Cancelled);
        assert_eq!(state.refund_status, Some(RefundStatus::Refunded));
        AggregateFixture::<Order>::given_no_events()
            .when(OrderCommand::Complete)
            .then_expect_error(OrderError::NotFound);
    }

    #[test]
    fn a_version_1_stream_loads_into_the_current_code() {
        let v1 = json!({
            "order_id": "ord-legacy",
            "customer_id": "cust-7",
            "sku": "SKU-MUG",
            "quantity": 3,
            "unit_price_cents": 1_250,
            "payment_method": "card-ok",
            "shipping_address": address(),
        });
        let stream = StreamId::new("order", "ord-legacy");
        let meta = CommandMeta::new("c", "c", Timestamp(1));
        let mut stored = envelope_events(&stream, 0, &[created()], &meta).remove(0);
        stored.schema_version = 1;
        stored.payload = v1;
        let decoded = stored.decode::<OrderEvent>().unwrap();
        match decoded.payload {
            OrderEvent::Created {
                lines, total, flow, ..
            } => {
                assert_eq!(total, Money::eur(3_750));
                assert_eq!(lines[0].sku, "SKU-MUG");
                assert_eq!(lines[0].unit_price, Money::eur(1_250));
                assert_eq!(flow, Flow::Orchestrated);
            }
            other => panic!("unexpected {other:?}"),
        }
        stored.payload = json!({"order_id": "x"});
        assert!(matches!(
            stored.decode::<OrderEvent>(),
            Err(sagaflow_eventsourcing::event::DecodeError::Upcast { .. })
        ));
    }
}
