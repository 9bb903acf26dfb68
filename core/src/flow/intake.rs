//! Order intake: a pipeline that turns a customer's request into a priced `CreateOrder`.
//!
//! Stages: validate the request, price it from the catalogue, and, only for large orders, check
//! the online order limit (a conditional stage).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::{Address, CreateOrder, Flow, Money, OrderLine, StockLine};
use crate::pipeline::{Pipeline, PipelineError, PipelineRun, StageError};

/// The largest order total accepted online, in euro cents (10,000.00 EUR).
pub const ONLINE_ORDER_LIMIT_MINOR: i64 = 1_000_000;

/// Totals at or above this go through the online order limit check (1,000.00 EUR).
pub const LARGE_ORDER_MINOR: i64 = 100_000;

/// What a customer asks for: SKUs and quantities, no prices.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// The new order's id.
    pub order_id: String,
    /// Who orders.
    pub customer_id: String,
    /// SKUs and quantities.
    pub lines: Vec<StockLine>,
    /// Payment method token.
    pub payment_method: String,
    /// Where to ship.
    pub shipping_address: Address,
    /// Which coordination style runs the order.
    pub flow: Flow,
}

/// One product of the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogItem {
    /// Human name.
    pub name: String,
    /// Price of one unit.
    pub unit_price: Money,
}

/// The products that can be ordered, by SKU.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Products by SKU.
    pub items: BTreeMap<String, CatalogItem>,
}

impl Catalog {
    /// The demo's catalogue: five products in euro.
    pub fn demo() -> Self {
        let items = [
            ("MUG", "Enamel mug", 1_250),
            ("TEE", "Organic tee", 2_400),
            ("CAP", "Canvas cap", 1_800),
            ("BAG", "Tote bag", 900),
            ("LAMP", "Desk lamp", 7_900),
        ]
        .into_iter()
        .map(|(sku, name, cents)| {
            (
                sku.to_string(),
                CatalogItem {
                    name: name.to_string(),
                    unit_price: Money::eur(cents),
                },
            )
        })
        .collect();
        Self { items }
    }
}

/// An order on its way through intake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntakeOrder {
    /// The request.
    pub request: PlaceOrder,
    /// The priced order, once the `price` stage ran.
    pub priced: Option<CreateOrder>,
    /// Its total, once priced.
    pub total: Option<Money>,
}

/// The intake pipeline over `catalog`.
pub fn intake_pipeline(catalog: Arc<Catalog>) -> Result<Pipeline<IntakeOrder>, PipelineError> {
    Pipeline::builder("order-intake")
        .stage("validate", |order: IntakeOrder| async move {
            if order.request.lines.is_empty() {
                return Err(StageError::Rejected(
                    "invalid field `lines`: an order needs at least one line".into(),
                ));
            }
            if let Some(i) = order.request.lines.iter().position(|l| l.quantity == 0) {
                return Err(StageError::Rejected(format!(
                    "invalid field `lines[{i}].quantity`: must be at least 1"
                )));
            }
            Ok(order)
        })
        .stage("price", move |mut order: IntakeOrder| {
            let catalog = catalog.clone();
            async move {
                let mut lines = Vec::with_capacity(order.request.lines.len());
                for (i, line) in order.request.lines.iter().enumerate() {
                    let item = catalog.items.get(&line.sku).ok_or_else(|| {
                        StageError::Rejected(format!(
                            "invalid field `lines[{i}].sku`: unknown SKU `{}`",
                            line.sku
                        ))
                    })?;
                    lines.push(OrderLine {
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                        unit_price: item.unit_price.clone(),
                    });
                }
                let create = CreateOrder {
                    order_id: order.request.order_id.clone(),
                    customer_id: order.request.customer_id.clone(),
                    lines,
                    payment_method: order.request.payment_method.clone(),
                    shipping_address: order.request.shipping_address.clone(),
                    flow: order.request.flow,
                };
                let total = create
                    .validate()
                    .map_err(|e| StageError::Rejected(e.to_string()))?;
                order.priced = Some(create);
                order.total = Some(total);
                Ok(order)
            }
        })
        .conditional_stage(
            "online_order_limit",
            |order: &IntakeOrder| {
                order
                    .total
                    .as_ref()
                    .is_some_and(|t| t.amount_minor >= LARGE_ORDER_MINOR)
            },
            |order: IntakeOrder| async move {
                match &order.total {
                    Some(total) if total.amount_minor > ONLINE_ORDER_LIMIT_MINOR => {
                        Err(StageError::Rejected(format!(
                            "invalid field `lines`: total {total} is over the online order limit"
                        )))
                    }
                    _ => Ok(order),
                }
            },
        )
        .build()
}

/// Runs intake for `request`; the run's trace says which stages ran or were skipped.
pub async fn run_intake(
    pipeline: &Pipeline<IntakeOrder>,
    request: PlaceOrder,
) -> PipelineRun<IntakeOrder> {
    pipeline
        .run(IntakeOrder {
            request,
            priced: None,
            total: None,
        })
        .await
}
