//! The whole order flow in one process, through the deployed handlers on the in-process
//! broker: every scenario through every flow, under forced redelivery, ending with the effects
//! each scenario must have.

use sagaflow_embedded::world::{slow_provider, SLOW_METHOD};
use sagaflow_embedded::{
    front_door, BrokerConfig, CancelOrderCommand, EmbeddedConfig, EmbeddedSystem,
    PlaceOrderCommand, Placement, Topics,
};
use sagaflow_eventsourcing::mediator::Mediator;
use sagaflow_orders::domain::{
    Address, Flow, Order, OrderStatus, Payment, PaymentStatus, Shipment, ShipmentStatus,
    StockLevel, StockLine,
};
use sagaflow_orders::flow::intake::PlaceOrder;
use sagaflow_orders::projection::{AnalyticsProjection, GetAnalyticsSummary};
use sagaflow_records::OutboundRecord;

const FLOWS: [Flow; 3] = [Flow::Orchestrated, Flow::Choreographed, Flow::InProcess];

/// The system and its front door.
struct Run {
    system: EmbeddedSystem,
    door: Mediator,
}

impl Run {
    async fn place_order(&self, request: PlaceOrder) -> Placement {
        self.door
            .send(PlaceOrderCommand(request))
            .await
            .unwrap()
            .unwrap()
    }
}

/// The SKUs the runs stock.
const SKUS: [(&str, u32); 3] = [("MUG", 50), ("TEE", 50), ("LAMP", 2)];

/// Every stocked SKU's level, each read from its own stream.
struct Stockroom(std::collections::BTreeMap<String, StockLevel>);

impl Stockroom {
    fn level(&self, sku: &str) -> StockLevel {
        self.0.get(sku).copied().unwrap_or_default()
    }
}

/// The stock as the store has it now.
async fn warehouse(system: &EmbeddedSystem) -> Stockroom {
    let mut levels = std::collections::BTreeMap::new();
    for (sku, _) in SKUS {
        let stock = system.services().stock().load(sku).await.unwrap().state;
        levels.insert(sku.to_string(), stock.level);
    }
    Stockroom(levels)
}

async fn stocked(lost_commit_percent: u32, seed: u64) -> Run {
    let defaults = EmbeddedConfig::default();
    let system = EmbeddedSystem::new(EmbeddedConfig {
        broker: BrokerConfig {
            lost_commit_percent,
            seed,
            // Small batches, so a run has many invocations and many lost commits.
            batch_size: 4,
            ..BrokerConfig::default()
        },
        latency: Some(slow_provider(&Topics::new(defaults.name.clone()))),
        ..defaults
    })
    .unwrap();
    let now = system.clock().now();
    for (sku, qty) in SKUS {
        system.services().restock(sku, qty, now).await.unwrap();
    }
    let door = front_door(&system).unwrap();
    Run { system, door }
}

fn request(order_id: &str, flow: Flow) -> PlaceOrder {
    PlaceOrder {
        order_id: order_id.into(),
        customer_id: "cust-1".into(),
        lines: vec![
            StockLine {
                sku: "MUG".into(),
                quantity: 2,
            },
            StockLine {
                sku: "TEE".into(),
                quantity: 1,
            },
        ],
        payment_method: "card-ok".into(),
        shipping_address: Address {
            name: "Grace Hopper".into(),
            line1: "1 Navy Way".into(),
            city: "Arlington".into(),
            country: "US".into(),
        },
        flow,
    }
}

struct Ended {
    order: Order,
    payment: Payment,
    shipment: Shipment,
    mug_available: u64,
    lamp_available: u64,
    reserved: u64,
}

async fn run_one(run: &Run, request: PlaceOrder) -> Ended {
    let id = request.order_id.clone();
    let placement = run.place_order(request).await;
    assert!(
        matches!(placement, Placement::Accepted { .. }),
        "{placement:?}"
    );
    run.system.run_until_idle().await.unwrap();
    let services = run.system.services();
    let inventory = warehouse(&run.system).await;
    Ended {
        order: services.orders().load(&id).await.unwrap().state,
        payment: services.payments().load(&id).await.unwrap().state,
        shipment: services.shipments().load(&id).await.unwrap().state,
        mug_available: inventory.level("MUG").available,
        lamp_available: inventory.level("LAMP").available,
        reserved: inventory.0.values().map(|l| l.reserved).sum(),
    }
}

fn reason(order: &Order) -> &str {
    order.cancel_reason.as_ref().map_or("", |r| r.code.as_str())
}

#[tokio::test]
async fn a_good_order_completes_in_every_flow() {
    for (i, flow) in FLOWS.into_iter().enumerate() {
        let run = stocked(30, i as u64).await;
        let ended = run_one(&run, request("ord-ok", flow)).await;
        assert_eq!(ended.order.status, OrderStatus::Completed, "{flow}");
        assert_eq!(ended.payment.status, PaymentStatus::Captured, "{flow}");
        assert_eq!(ended.shipment.status, ShipmentStatus::Scheduled, "{flow}");
        assert_eq!(ended.mug_available, 48, "{flow}: two mugs shipped");
        assert_eq!(
            ended.reserved, 0,
            "{flow}: shipped stock is no longer reserved"
        );
        let stock = warehouse(&run.system).await;
        assert_eq!(stock.level("MUG").shipped, 2, "{flow}");
    }
}

#[tokio::test]
async fn a_declined_payment_cancels_without_charging_in_every_flow() {
    for flow in FLOWS {
        let run = stocked(30, 3).await;
        let mut req = request("ord-declined", flow);
        req.payment_method = "card-declined".into();
        let ended = run_one(&run, req).await;
        assert_eq!(ended.order.status, OrderStatus::Cancelled, "{flow}");
        assert_eq!(reason(&ended.order), "payment_declined", "{flow}");
        assert_eq!(ended.payment.status, PaymentStatus::Declined, "{flow}");
        assert_eq!(ended.mug_available, 50, "{flow}: nothing was reserved");
    }
}

#[tokio::test]
async fn out_of_stock_refunds_the_payment_and_leaves_stock_untouched_in_every_flow() {
    for flow in FLOWS {
        let run = stocked(30, 4).await;
        let mut req = request("ord-short", flow);
        req.lines.push(StockLine {
            sku: "LAMP".into(),
            quantity: 3,
        });
        let ended = run_one(&run, req).await;
        assert_eq!(ended.order.status, OrderStatus::Cancelled, "{flow}");
        assert_eq!(reason(&ended.order), "out_of_stock", "{flow}");
        assert_eq!(
            ended.order.refund_status,
            Some(sagaflow_orders::domain::RefundStatus::Refunded),
            "{flow}"
        );
        assert_eq!(ended.payment.status, PaymentStatus::Refunded, "{flow}");
        assert_eq!(
            (ended.mug_available, ended.lamp_available, ended.reserved),
            (50, 2, 0),
            "{flow}"
        );
    }
}

#[tokio::test]
async fn a_failed_shipment_releases_stock_and_refunds_in_every_flow() {
    for flow in FLOWS {
        let run = stocked(30, 5).await;
        let mut req = request("ord-far", flow);
        req.shipping_address.country = "AQ".into();
        let ended = run_one(&run, req).await;
        assert_eq!(ended.order.status, OrderStatus::Cancelled, "{flow}");
        assert_eq!(reason(&ended.order), "shipment_failed", "{flow}");
        assert_eq!(ended.payment.status, PaymentStatus::Refunded, "{flow}");
        assert_eq!(ended.shipment.status, ShipmentStatus::Failed, "{flow}");
        assert_eq!(
            ended.mug_available, 50,
            "{flow}: the reserved mugs came back"
        );
        assert_eq!(ended.reserved, 0, "{flow}");
    }
}

#[tokio::test]
async fn a_silent_payment_provider_times_the_saga_out_and_a_late_charge_is_declined() {
    let run = stocked(30, 6).await;
    let mut req = request("ord-slow", Flow::Orchestrated);
    req.payment_method = SLOW_METHOD.into();
    let ended = run_one(&run, req).await;
    assert_eq!(ended.order.status, OrderStatus::Cancelled);
    assert_eq!(reason(&ended.order), "timeout");
    // The refund voided the payment before the slow charge arrived, so the charge was refused.
    assert_eq!(ended.payment.status, PaymentStatus::Voided);
    assert_eq!(ended.mug_available, 50);
    let saga = run
        .system
        .sagas()
        .repository()
        .load("ord-slow")
        .await
        .unwrap()
        .state;
    assert!(saga.is_finished(), "{saga:?}");
    assert!(
        run.system.clock().now().as_millis()
            >= EmbeddedConfig::default().start.as_millis() + 90_000,
        "the run waited for the late charge"
    );
}

#[tokio::test]
async fn invalid_orders_are_refused_at_intake_naming_the_field_and_nothing_is_written() {
    let run = stocked(0, 7).await;
    run.system.run_until_idle().await.unwrap();
    let before = run.system.store().event_count();
    let published = run.system.broker_stats().published;
    type Breaker = Box<dyn Fn(&mut PlaceOrder)>;
    let cases: Vec<(&str, Breaker)> = vec![
        ("lines[0].quantity", Box::new(|r| r.lines[0].quantity = 0)),
        ("lines[1].sku", Box::new(|r| r.lines[1].sku = "NOPE".into())),
        ("lines", Box::new(|r| r.lines.clear())),
        ("order_id", Box::new(|r| r.order_id = "ord 1".into())),
        (
            "shipping_address.country",
            Box::new(|r| r.shipping_address.country = "usa".into()),
        ),
        ("lines", Box::new(|r| r.lines[0].quantity = 10_000)),
    ];
    for (field, break_it) in cases {
        let mut req = request("ord-bad", Flow::Orchestrated);
        break_it(&mut req);
        match run.place_order(req).await {
            Placement::Rejected { reason, .. } => {
                assert!(reason.contains(&format!("`{field}`")), "{field}: {reason}")
            }
            other => panic!("{field}: accepted {other:?}"),
        }
    }
    run.system.run_until_idle().await.unwrap();
    assert_eq!(run.system.store().event_count(), before);
    assert_eq!(run.system.broker_stats().published, published);
}

#[tokio::test]
async fn heavy_redelivery_changes_no_outcome_and_the_read_model_matches_a_replay() {
    let run = stocked(50, 11).await;
    let system = &run.system;
    let mut ids = Vec::new();
    for i in 0..30 {
        let flow = FLOWS[i % 3];
        let mut req = request(&format!("ord-{i:03}"), flow);
        match i % 5 {
            1 => req.payment_method = "card-declined".into(),
            2 => req.shipping_address.country = "AQ".into(),
            _ => {}
        }
        run.place_order(req).await;
        ids.push((format!("ord-{i:03}"), i % 5));
    }
    let stats = system.run_until_idle().await.unwrap();
    let broker = system.broker_stats();
    assert!(broker.redelivered > 20, "{broker:?}");
    assert!(broker.lost_commits > 10, "{broker:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    for (id, kind) in &ids {
        let order = system.services().orders().load(id).await.unwrap().state;
        let want = if matches!(kind, 1 | 2) {
            OrderStatus::Cancelled
        } else {
            OrderStatus::Completed
        };
        assert_eq!(order.status, want, "{id}");
    }
    let events = system.store().all_events();
    let mut event_ids: Vec<_> = events.iter().map(|e| e.event_id.clone()).collect();
    event_ids.sort();
    event_ids.dedup();
    assert_eq!(event_ids.len(), events.len(), "no event stored twice");
    let inventory = warehouse(system).await;
    for sku in ["MUG", "TEE"] {
        assert_eq!(inventory.level(sku).total(), 50, "{sku}");
        assert_eq!(inventory.level(sku).reserved, 0, "{sku}");
    }
    let live = system
        .analytics_queries()
        .query(GetAnalyticsSummary)
        .await
        .unwrap()
        .unwrap();
    let rebuilt = AnalyticsProjection::replay(&events).unwrap();
    assert_eq!(rebuilt.summary(), &live);
    assert!(
        system.analytics().duplicates_ignored() > 0,
        "redelivered events were recognised"
    );
    assert_eq!(live.orders_by_status.get("completed"), Some(&18));
    assert_eq!(live.orders_by_status.get("cancelled"), Some(&12));
    assert_eq!(
        live.cancellations_by_reason.get("payment_declined"),
        Some(&6)
    );
    assert_eq!(
        live.cancellations_by_reason.get("shipment_failed"),
        Some(&6)
    );
    assert!(
        system.dead_letters().is_empty(),
        "{:?}",
        system.dead_letters()
    );
}

#[tokio::test]
async fn a_record_nobody_can_read_is_dead_lettered_with_its_reason_and_the_flow_goes_on() {
    let run = stocked(0, 12).await;
    let topics = run.system.topics().clone();
    sagaflow_records::Publisher::publish(
        run.system.broker().as_ref(),
        &[OutboundRecord {
            topic: topics.commands("payment"),
            key: "ord-ok".into(),
            value: b"{not json".to_vec(),
            headers: Vec::new(),
        }],
    )
    .await
    .unwrap();
    let ended = run_one(&run, request("ord-ok", Flow::Choreographed)).await;
    assert_eq!(ended.order.status, OrderStatus::Completed);
    let letters = run.system.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].reason.contains("not a command envelope"),
        "{letters:?}"
    );
    assert!(
        letters[0].key.starts_with(&topics.commands("payment")),
        "the key names the source record: {letters:?}"
    );
}

#[tokio::test]
async fn a_customer_cancel_at_each_step_undoes_what_was_done_and_a_second_cancel_is_refused() {
    // After 0, 1, 2 and 3 completed steps: the order only, then the payment, the stock, the
    // shipment are undone too.
    for (steps, undone) in [
        (0, vec!["order"]),
        (1, vec!["order", "payment"]),
        (2, vec!["order", "payment", "stock"]),
        (3, vec!["order", "payment", "stock", "shipment"]),
    ] {
        let run = stocked(30, 20 + steps as u64).await;
        run.place_order(request("ord-cancel", Flow::Orchestrated))
            .await;
        loop {
            let saga = run
                .system
                .sagas()
                .repository()
                .load("ord-cancel")
                .await
                .unwrap();
            if saga.version > 0 && saga.state.completed_steps().len() >= steps {
                break;
            }
            let next = run.system.clock().now().plus_millis(1);
            run.system.run_until(next).await.unwrap();
        }
        let cancel = |attempt| {
            run.door.send(CancelOrderCommand {
                order_id: "ord-cancel".into(),
                flow: Flow::Orchestrated,
                reason: "changed my mind".into(),
                attempt,
            })
        };
        cancel(1).await.unwrap().unwrap();
        run.system.run_until_idle().await.unwrap();
        let services = run.system.services();
        let order = services.orders().load("ord-cancel").await.unwrap().state;
        assert_eq!(order.status, OrderStatus::Cancelled, "after {steps} steps");
        assert_eq!(reason(&order), "customer_cancelled", "after {steps} steps");
        let payment = services.payments().load("ord-cancel").await.unwrap().state;
        let want = if undone.contains(&"payment") {
            PaymentStatus::Refunded
        } else {
            PaymentStatus::None
        };
        assert_eq!(payment.status, want, "after {steps} steps");
        let stock = warehouse(&run.system).await;
        assert_eq!(stock.level("MUG").available, 50, "after {steps} steps");
        assert_eq!(stock.level("MUG").reserved, 0, "after {steps} steps");
        let shipment = services.shipments().load("ord-cancel").await.unwrap().state;
        if undone.contains(&"shipment") {
            assert_eq!(
                shipment.status,
                ShipmentStatus::Cancelled,
                "after {steps} steps"
            );
        }
        let saga = run
            .system
            .sagas()
            .repository()
            .load("ord-cancel")
            .await
            .unwrap()
            .state;
        assert_eq!(
            saga.status(),
            sagaflow_saga::InstanceStatus::Compensated,
            "after {steps} steps"
        );
        let cancels = run
            .system
            .store()
            .all_events()
            .iter()
            .filter(|e| e.event_type == "saga.cancelled")
            .count();
        assert_eq!(cancels, 1, "cancelled once despite redeliveries");

        // The customer cancels again: refused with the reason, nothing changes.
        let before = run.system.store().event_count();
        cancel(2).await.unwrap().unwrap();
        run.system.run_until_idle().await.unwrap();
        assert_eq!(run.system.store().event_count(), before);
        let letters = run.system.dead_letters();
        assert!(
            letters
                .iter()
                .any(|l| l.reason.contains("saga.cancel: ")
                    && l.reason.contains("already cancelled")),
            "{letters:?}"
        );
    }
}
