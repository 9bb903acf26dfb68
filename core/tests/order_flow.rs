//! The whole order flow in one process: every scenario through every flow, under forced
//! redelivery, ending with the effects each scenario must have.

use sagaflow_core::domain::{
    Address, Flow, Order, OrderStatus, Payment, PaymentStatus, Shipment, ShipmentStatus, StockLine,
};
use sagaflow_core::flow::intake::PlaceOrder;
use sagaflow_core::flow::system::{InProcessSystem, Placement, SystemConfig, SLOW_METHOD};
use sagaflow_core::projection::{AnalyticsProjection, GetAnalyticsSummary};

const FLOWS: [Flow; 3] = [Flow::Orchestrated, Flow::Choreographed, Flow::InProcess];

fn system(lost_commit_percent: u32, seed: u64) -> InProcessSystem {
    InProcessSystem::new(SystemConfig {
        lost_commit_percent,
        seed,
        snapshot_every: 5,
        ..SystemConfig::default()
    })
    .unwrap()
}

async fn stocked(lost: u32, seed: u64) -> InProcessSystem {
    let system = system(lost, seed);
    for (sku, qty) in [("MUG", 50), ("TEE", 50), ("LAMP", 2)] {
        system.restock(sku, qty).await.unwrap();
    }
    system
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

async fn run_one(system: &InProcessSystem, request: PlaceOrder) -> Ended {
    let id = request.order_id.clone();
    let placement = system.place_order(request).await.unwrap();
    assert!(
        matches!(placement, Placement::Accepted { .. }),
        "{placement:?}"
    );
    system.run_until_idle().await;
    let services = system.services();
    let inventory = services.inventory().load("main").await.unwrap().state;
    Ended {
        order: services.orders().load(&id).await.unwrap().state,
        payment: services.payments().load(&id).await.unwrap().state,
        shipment: services.shipments().load(&id).await.unwrap().state,
        mug_available: inventory.level("MUG").available,
        lamp_available: inventory.level("LAMP").available,
        reserved: inventory.stock.values().map(|l| l.reserved).sum(),
    }
}

fn reason(order: &Order) -> &str {
    order.cancel_reason.as_ref().map_or("", |r| r.code.as_str())
}

#[tokio::test]
async fn a_good_order_completes_in_every_flow() {
    for (i, flow) in FLOWS.into_iter().enumerate() {
        let system = stocked(30, i as u64).await;
        let ended = run_one(&system, request("ord-ok", flow)).await;
        assert_eq!(ended.order.status, OrderStatus::Completed, "{flow}");
        assert_eq!(ended.payment.status, PaymentStatus::Captured, "{flow}");
        assert_eq!(ended.shipment.status, ShipmentStatus::Scheduled, "{flow}");
        assert_eq!(ended.mug_available, 48, "{flow}: two mugs shipped");
        assert_eq!(
            ended.reserved, 0,
            "{flow}: shipped stock is no longer reserved"
        );
        let stock = system
            .services()
            .inventory()
            .load("main")
            .await
            .unwrap()
            .state;
        assert_eq!(stock.level("MUG").shipped, 2, "{flow}");
    }
}

#[tokio::test]
async fn a_declined_payment_cancels_without_charging_in_every_flow() {
    for flow in FLOWS {
        let system = stocked(30, 3).await;
        let mut req = request("ord-declined", flow);
        req.payment_method = "card-declined".into();
        let ended = run_one(&system, req).await;
        assert_eq!(ended.order.status, OrderStatus::Cancelled, "{flow}");
        assert_eq!(reason(&ended.order), "payment_declined", "{flow}");
        assert_eq!(ended.payment.status, PaymentStatus::Declined, "{flow}");
        assert_eq!(ended.mug_available, 50, "{flow}: nothing was reserved");
    }
}

#[tokio::test]
async fn out_of_stock_refunds_the_payment_and_leaves_stock_untouched_in_every_flow() {
    for flow in FLOWS {
        let system = stocked(30, 4).await;
        let mut req = request("ord-short", flow);
        req.lines.push(StockLine {
            sku: "LAMP".into(),
            quantity: 3,
        });
        let ended = run_one(&system, req).await;
        assert_eq!(ended.order.status, OrderStatus::Cancelled, "{flow}");
        assert_eq!(reason(&ended.order), "out_of_stock", "{flow}");
        assert_eq!(
            ended.order.refund_status,
            Some(sagaflow_core::domain::RefundStatus::Refunded),
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
        let system = stocked(30, 5).await;
        let mut req = request("ord-far", flow);
        req.shipping_address.country = "AQ".into();
        let ended = run_one(&system, req).await;
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
    let system = stocked(30, 6).await;
    let mut req = request("ord-slow", Flow::Orchestrated);
    req.payment_method = SLOW_METHOD.into();
    let ended = run_one(&system, req).await;
    assert_eq!(ended.order.status, OrderStatus::Cancelled);
    assert_eq!(reason(&ended.order), "timeout");
    // The refund voided the payment before the slow charge arrived, so the charge was refused.
    assert_eq!(ended.payment.status, PaymentStatus::Voided);
    assert_eq!(ended.mug_available, 50);
    let saga = system
        .sagas()
        .repository()
        .load("ord-slow")
        .await
        .unwrap()
        .state;
    assert!(saga.is_finished(), "{saga:?}");
}

#[tokio::test]
async fn invalid_orders_are_refused_at_intake_naming_the_field_and_nothing_is_written() {
    let system = stocked(0, 7).await;
    let before = system.store().event_count();
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
        match system.place_order(req).await.unwrap() {
            Placement::Rejected { reason, .. } => {
                assert!(reason.contains(&format!("`{field}`")), "{field}: {reason}")
            }
            other => panic!("{field}: accepted {other:?}"),
        }
    }
    system.run_until_idle().await;
    assert_eq!(system.store().event_count(), before);
}

#[tokio::test]
async fn heavy_redelivery_changes_no_outcome_and_the_read_model_matches_a_replay() {
    let system = stocked(50, 11).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let flow = FLOWS[i % 3];
        let mut req = request(&format!("ord-{i:03}"), flow);
        match i % 5 {
            1 => req.payment_method = "card-declined".into(),
            2 => req.shipping_address.country = "AQ".into(),
            _ => {}
        }
        system.place_order(req).await.unwrap();
        ids.push((format!("ord-{i:03}"), i % 5));
    }
    let stats = system.run_until_idle().await;
    assert!(
        system.bus_stats().redelivered > 20,
        "{:?}",
        system.bus_stats()
    );
    assert!(
        stats.duplicates > 0,
        "redeliveries must have been recognised: {stats:?}"
    );
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
    let inventory = system
        .services()
        .inventory()
        .load("main")
        .await
        .unwrap()
        .state;
    for sku in ["MUG", "TEE"] {
        assert_eq!(inventory.level(sku).total(), 50, "{sku}");
        assert_eq!(inventory.level(sku).reserved, 0, "{sku}");
    }
    let live = system
        .mediator()
        .query(GetAnalyticsSummary)
        .await
        .unwrap()
        .unwrap();
    let rebuilt = AnalyticsProjection::replay(&events, system.upcasters()).unwrap();
    assert_eq!(rebuilt.summary(), &live);
    assert!(system.analytics().duplicates_ignored() > 0);
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
