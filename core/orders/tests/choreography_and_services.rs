//! Choreography policies (given this event and order, then these commands) and the service
//! layer's handling of bad commands.

use std::sync::Arc;

use sagaflow_eventsourcing::command::CommandEnvelope;
use sagaflow_eventsourcing::event::envelope_events;
use sagaflow_eventsourcing::Aggregate;
use sagaflow_eventsourcing::Classified;
use sagaflow_eventsourcing::CommandMeta;
use sagaflow_eventsourcing::DecodeError;
use sagaflow_eventsourcing::DomainEvent;
use sagaflow_eventsourcing::InMemoryEventStore;
use sagaflow_eventsourcing::StoredEvent;
use sagaflow_eventsourcing::StreamId;
use sagaflow_eventsourcing::Timestamp;
use sagaflow_orders::domain::{
    Address, CancelReason, CreateOrder, Flow, InventoryEvent, Money, Order, OrderEvent, OrderLine,
    PaymentEvent, ShipmentEvent, StockLine,
};
use sagaflow_orders::flow::choreography::{react, PolicyError};
use sagaflow_orders::flow::services::FlowServices;
use sagaflow_orders::flow::{FlowEnvelope, FlowEvent};
use serde_json::json;

fn create(flow: Flow) -> CreateOrder {
    CreateOrder {
        order_id: "ord-7".into(),
        customer_id: "cust-7".into(),
        lines: vec![OrderLine {
            sku: "MUG".into(),
            quantity: 3,
            unit_price: Money::eur(1_000),
        }],
        payment_method: "card-ok".into(),
        shipping_address: Address {
            name: "Ada".into(),
            line1: "1 Loop Rd".into(),
            city: "London".into(),
            country: "GB".into(),
        },
        flow,
    }
}

fn order(flow: Flow) -> Order {
    let c = create(flow);
    Order::from_events(&[OrderEvent::Created {
        order_id: c.order_id.clone(),
        customer_id: c.customer_id.clone(),
        lines: c.lines.clone(),
        total: Money::eur(3_000),
        payment_method: c.payment_method.clone(),
        shipping_address: c.shipping_address.clone(),
        flow,
    }])
}

fn raw<E: DomainEvent>(aggregate: &str, id: &str, event: E) -> StoredEvent {
    let meta = CommandMeta::new("ord-7", "cause", Timestamp(5));
    envelope_events(&StreamId::new(aggregate, id), 0, &[event], &meta).remove(0)
}

/// The event as a consumer gets it: decoded once, at the edge.
fn stored<E: DomainEvent>(aggregate: &str, id: &str, event: E) -> FlowEnvelope {
    FlowEvent::decode(&raw(aggregate, id, event)).expect("decodes")
}

fn types(commands: &[CommandEnvelope]) -> Vec<(&str, &str)> {
    commands
        .iter()
        .map(|c| (c.command_type.as_str(), c.target_id.as_str()))
        .collect()
}

#[test]
fn given_a_choreographed_order_created_then_payment_is_charged() {
    let c = create(Flow::Choreographed);
    let event = stored(
        "order",
        "ord-7",
        OrderEvent::Created {
            order_id: c.order_id.clone(),
            customer_id: c.customer_id.clone(),
            lines: c.lines.clone(),
            total: Money::eur(3_000),
            payment_method: "card-ok".into(),
            shipping_address: c.shipping_address.clone(),
            flow: Flow::Choreographed,
        },
    );
    let commands = react(&event, None).unwrap();
    assert_eq!(types(&commands), vec![("payment.charge", "ord-7")]);
    assert_eq!(
        commands[0].payload["amount"],
        json!({"amount_minor": 3000, "currency": "EUR"})
    );
    assert_eq!(commands[0].correlation_id, "ord-7");
    assert_eq!(commands[0].causation_id, event.event_id);
    let again = react(&event, None).unwrap();
    assert_eq!(
        again[0].command_id, commands[0].command_id,
        "a redelivered event issues the same command"
    );
}

#[test]
fn given_an_orchestrated_order_then_choreography_stays_out() {
    let processed = stored(
        "payment",
        "ord-7",
        PaymentEvent::Processed {
            order_id: "ord-7".into(),
            amount: Money::eur(3_000),
        },
    );
    let commands = react(&processed, Some(&order(Flow::Orchestrated))).unwrap();
    assert!(commands.is_empty());
}

#[test]
fn given_each_reply_then_the_next_commands() {
    let o = order(Flow::Choreographed);
    let cases: Vec<(FlowEnvelope, Vec<(&str, &str)>)> = vec![
        (
            stored(
                "payment",
                "ord-7",
                PaymentEvent::Processed {
                    order_id: "ord-7".into(),
                    amount: Money::eur(3_000),
                },
            ),
            vec![("inventory.reserve", "MUG")],
        ),
        (
            stored(
                "payment",
                "ord-7",
                PaymentEvent::Declined {
                    order_id: "ord-7".into(),
                    amount: Money::eur(3_000),
                    reason: "no".into(),
                },
            ),
            vec![("order.cancel", "ord-7")],
        ),
        (
            stored(
                "inventory",
                "ord-7",
                InventoryEvent::Reserved {
                    order_id: "ord-7".into(),
                    lines: vec![],
                },
            ),
            vec![("shipment.schedule", "ord-7")],
        ),
        (
            stored(
                "inventory",
                "ord-7",
                InventoryEvent::ReservationFailed {
                    order_id: "ord-7".into(),
                    lines: vec![],
                    reason: "short".into(),
                },
            ),
            vec![("payment.refund", "ord-7")],
        ),
        (
            stored(
                "shipment",
                "ord-7",
                ShipmentEvent::Scheduled {
                    order_id: "ord-7".into(),
                    carrier: "c".into(),
                    tracking_id: "t".into(),
                },
            ),
            vec![("order.complete", "ord-7")],
        ),
        (
            stored(
                "order",
                "ord-7",
                OrderEvent::Completed {
                    order_id: "ord-7".into(),
                },
            ),
            vec![("inventory.ship", "MUG")],
        ),
        (
            stored(
                "order",
                "ord-7",
                OrderEvent::CancelRequested {
                    order_id: "ord-7".into(),
                    reason: "changed my mind".into(),
                },
            ),
            vec![
                ("payment.refund", "ord-7"),
                ("inventory.release", "MUG"),
                ("shipment.cancel", "ord-7"),
            ],
        ),
        (
            stored(
                "shipment",
                "ord-7",
                ShipmentEvent::Failed {
                    order_id: "ord-7".into(),
                    reason: "far".into(),
                },
            ),
            vec![("inventory.release", "MUG"), ("payment.refund", "ord-7")],
        ),
        (
            stored(
                "payment",
                "ord-7",
                PaymentEvent::Refunded {
                    order_id: "ord-7".into(),
                    amount: Money::eur(3_000),
                    reason: "out_of_stock: short".into(),
                },
            ),
            vec![("order.cancel", "ord-7")],
        ),
        (
            stored(
                "inventory",
                "ord-7",
                InventoryEvent::Released {
                    order_id: "ord-7".into(),
                    lines: vec![],
                    reason: "x".into(),
                },
            ),
            vec![],
        ),
    ];
    for (event, expected) in cases {
        let commands = react(&event, Some(&o)).unwrap();
        assert_eq!(types(&commands), expected, "{}", event.event_type);
    }
    let reserve = react(
        &stored(
            "payment",
            "ord-7",
            PaymentEvent::Processed {
                order_id: "ord-7".into(),
                amount: Money::eur(3_000),
            },
        ),
        Some(&o),
    )
    .unwrap();
    let lines: Vec<StockLine> =
        serde_json::from_value(reserve[0].payload["lines"].clone()).unwrap();
    assert_eq!(
        lines,
        vec![StockLine {
            sku: "MUG".into(),
            quantity: 3
        }]
    );
    let cancel = react(
        &stored(
            "payment",
            "ord-7",
            PaymentEvent::Refunded {
                order_id: "ord-7".into(),
                amount: Money::eur(3_000),
                reason: "out_of_stock: short".into(),
            },
        ),
        Some(&o),
    )
    .unwrap();
    assert_eq!(
        cancel[0].payload["reason"],
        json!({"code": "out_of_stock", "detail": "short"})
    );
    assert_eq!(cancel[0].payload["refund_status"], "refunded");
}

#[test]
fn a_service_event_without_its_order_is_a_typed_error() {
    let processed = stored(
        "payment",
        "ord-7",
        PaymentEvent::Processed {
            order_id: "ord-7".into(),
            amount: Money::eur(1),
        },
    );
    assert_eq!(
        react(&processed, None),
        Err(PolicyError::MissingOrder("ord-7".into()))
    );
    let mut garbled = raw(
        "payment",
        "ord-7",
        PaymentEvent::Processed {
            order_id: "ord-7".into(),
            amount: Money::eur(1),
        },
    );
    garbled.payload = json!({"order_id": 5});
    assert!(
        matches!(
            FlowEvent::decode(&garbled),
            Err(DecodeError::InvalidPayload { .. })
        ),
        "a garbled event is refused where it is decoded, before any policy sees it"
    );
}

fn command(command_type: &str, target: &str, payload: serde_json::Value) -> CommandEnvelope {
    CommandEnvelope {
        trace_context: None,
        command_id: format!("cmd-{command_type}-{target}"),
        command_type: command_type.into(),
        target_id: target.into(),
        payload,
        correlation_id: "ord-7".into(),
        causation_id: "test".into(),
        issued_at: Timestamp(1),
    }
}

#[tokio::test]
async fn services_refuse_bad_commands_with_typed_errors_and_write_nothing() {
    let store = Arc::new(InMemoryEventStore::new());
    let services = FlowServices::new(store.clone(), 10);
    let now = Timestamp(2);
    let cases = vec![
        (
            command("teleport.now", "x", json!({})),
            "unknown command type",
        ),
        (
            command("payment.launder", "ord-7", json!({})),
            "unknown command type",
        ),
        (
            command("payment.charge", "ord-7", json!([1, 2])),
            "expected an object",
        ),
        (
            command("payment.charge", "ord-7", json!({"order_id": "ord-7"})),
            "wrong shape",
        ),
        (
            command(
                "payment.charge",
                "ord-7",
                json!({"order_id": "ord-7", "method": "card-ok", "amount": {"amount_minor": -5, "currency": "EUR"}}),
            ),
            "`amount`",
        ),
        (
            command(
                "payment.charge",
                "ord-7",
                json!({"order_id": "ord-7", "method": "card-ok", "amount": {"amount_minor": 1.5, "currency": "EUR"}}),
            ),
            "wrong shape",
        ),
        (
            command(
                "payment.charge",
                "ord-7",
                serde_json::from_str(
                    r#"{"order_id": "ord-7", "method": "card-ok", "amount": {"amount_minor": 99999999999999999999, "currency": "EUR"}}"#,
                )
                .unwrap(),
            ),
            "wrong shape",
        ),
        (
            command("order.complete", "ord-404", json!({})),
            "does not exist",
        ),
        (
            command(
                "inventory.reserve",
                "main",
                json!({"order_id": "bad id", "lines": [{"sku": "MUG", "quantity": 1}]}),
            ),
            "`order_id`",
        ),
    ];
    for (cmd, expected) in cases {
        let err = services.handle(&cmd, now).await.unwrap_err();
        assert!(
            err.to_string().contains(expected),
            "{}: {err}",
            cmd.command_type
        );
        assert!(!err.is_transient(), "{err}");
    }
    assert_eq!(store.event_count(), 0);
}

#[tokio::test]
async fn a_redelivered_command_is_a_duplicate_with_no_new_events() {
    let store = Arc::new(InMemoryEventStore::new());
    let services = FlowServices::new(store.clone(), 10);
    let charge = command(
        "payment.charge",
        "ord-7",
        json!({"order_id": "ord-7", "method": "card-ok", "amount": {"amount_minor": 500, "currency": "EUR"}}),
    );
    let first = services.handle(&charge, Timestamp(1)).await.unwrap();
    assert_eq!(first.events.len(), 1);
    assert_eq!(first.events[0].causation_id, charge.command_id);
    assert_eq!(first.events[0].correlation_id, "ord-7");
    let again = services.handle(&charge, Timestamp(2)).await.unwrap();
    assert!(again.duplicate);
    assert!(again.events.is_empty());
    assert_eq!(store.event_count(), 1);
}

/// A choreographed order whose customer asked to cancel it.
fn cancelling() -> Order {
    let mut o = order(Flow::Choreographed);
    o.apply(&OrderEvent::CancelRequested {
        order_id: "ord-7".into(),
        reason: "changed my mind".into(),
    });
    o
}

#[test]
fn given_a_cancel_request_then_the_order_is_not_completed_and_ends_cancelled_by_its_customer() {
    use sagaflow_orders::domain::{OrderCommand, OrderStatus, RefundStatus};
    let o = cancelling();
    assert_eq!(o.status, OrderStatus::Cancelling);
    // The shipment that was booked before the cancel does not complete the order.
    assert_eq!(o.decide(&OrderCommand::Complete), Ok(vec![]));
    // However the money was settled, the customer cancelled it.
    let cancelled = o
        .decide(&OrderCommand::Cancel {
            reason: CancelReason::new("payment_declined", "payment already closed"),
            refund_status: RefundStatus::NotCharged,
        })
        .unwrap();
    assert_eq!(
        cancelled,
        vec![OrderEvent::Cancelled {
            order_id: "ord-7".into(),
            reason: CancelReason::new("customer_cancelled", "changed my mind"),
            refund_status: RefundStatus::NotCharged,
        }]
    );
    // A second request while it is being cancelled, or one for an orchestrated order, is refused.
    let again = OrderCommand::RequestCancel {
        reason: "again".into(),
    };
    assert!(o.decide(&again).is_err());
    assert_eq!(
        order(Flow::Orchestrated)
            .decide(&again)
            .unwrap_err()
            .to_string(),
        "order ord-7 is orchestrated: cancel it with saga.cancel"
    );
}

#[test]
fn given_stock_released_before_it_was_reserved_then_the_late_reservation_fails() {
    use sagaflow_orders::domain::{
        decide_with_stock, InventoryCommand, Reservation, Stock, StockEvent,
    };
    use std::collections::BTreeMap;
    let stock = BTreeMap::from([(
        "MUG".to_string(),
        Stock::from_events(&[StockEvent::Restocked { quantity: 5 }]),
    )]);
    let mugs = |order: &str| InventoryCommand::Reserve {
        order_id: order.into(),
        lines: vec![StockLine {
            sku: "MUG".into(),
            quantity: 2,
        }],
    };
    // The customer's cancel reached the warehouse before the reservation did.
    let mut reservation = Reservation::default();
    let release = InventoryCommand::Release {
        order_id: "ord-7".into(),
        reason: "customer_cancelled: changed my mind".into(),
    };
    let released = decide_with_stock(&reservation, &stock, &release).unwrap();
    assert!(released.parts.is_empty(), "nothing was held to give back");
    released.events.iter().for_each(|e| reservation.apply(e));
    let late = decide_with_stock(&reservation, &stock, &mugs("ord-7")).unwrap();
    assert!(
        matches!(&late.events[..], [InventoryEvent::ReservationFailed { reason, .. }] if reason.contains("released before")),
        "{:?}",
        late.events
    );
    assert!(late.parts.is_empty(), "no stock is held for it");
    // Another order still reserves.
    let other = decide_with_stock(&Reservation::default(), &stock, &mugs("ord-8")).unwrap();
    assert!(matches!(
        &other.events[..],
        [InventoryEvent::Reserved { .. }]
    ));
    assert_eq!(other.parts.len(), 1);
}
