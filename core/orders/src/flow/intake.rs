//! Order intake: a pipeline that turns a customer's request into a priced `CreateOrder`, run by
//! every front door before an order is accepted: `make run`'s (a request with SKUs and
//! quantities) and the deployed one (a `saga.start` or `order.create` whose order quotes its
//! prices, checked against the catalogue).
//!
//! Stages: validate the request, price it from the catalogue (every SKU must exist, and quoted
//! prices must be the catalogue's), and, only for large orders, check the online order limit
//! (a conditional stage).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::{Address, CreateOrder, Flow, Money, OrderLine, StockLine};
use sagaflow_eventsourcing::pipeline::{Pipeline, PipelineError, PipelineRun, StageError};

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
    /// The unit price of each line as the client quoted it, if it did (the front-door command
    /// carries them); the `price` stage refuses a quote that is not the catalogue's price.
    pub quoted: Option<Vec<Money>>,
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
                    let quote = order.quoted.as_ref().and_then(|q| q.get(i));
                    if let Some(quote) = quote.filter(|q| **q != item.unit_price) {
                        return Err(StageError::Rejected(format!(
                            "invalid field `lines[{i}].unit_price`: {quote} is not the catalogue price {} of `{}`",
                            item.unit_price, line.sku
                        )));
                    }
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
            quoted: None,
            priced: None,
            total: None,
        })
        .await
}

/// Why intake refused an order: the stage, and its reason naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("intake refused the order at stage `{stage}`: {reason}")]
pub struct IntakeRefusal {
    /// The stage that refused.
    pub stage: String,
    /// Why, naming the field.
    pub reason: String,
}

/// Runs intake for an order that arrived priced (a front-door command): the order as intake
/// priced it (the same order, its prices confirmed), or why it was refused.
pub async fn check_order(
    pipeline: &Pipeline<IntakeOrder>,
    order: &CreateOrder,
) -> Result<CreateOrder, IntakeRefusal> {
    let request = PlaceOrder {
        order_id: order.order_id.clone(),
        customer_id: order.customer_id.clone(),
        lines: order
            .lines
            .iter()
            .map(|line| StockLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
            })
            .collect(),
        payment_method: order.payment_method.clone(),
        shipping_address: order.shipping_address.clone(),
        flow: order.flow,
    };
    let run = pipeline
        .run(IntakeOrder {
            request,
            quoted: Some(order.lines.iter().map(|l| l.unit_price.clone()).collect()),
            priced: None,
            total: None,
        })
        .await;
    match run.output {
        Ok(IntakeOrder {
            priced: Some(priced),
            ..
        }) => Ok(priced),
        Ok(_) => Err(IntakeRefusal {
            stage: "price".into(),
            reason: "intake finished without pricing the order".into(),
        }),
        Err(failure) => Err(IntakeRefusal {
            stage: failure.stage,
            reason: match failure.error {
                StageError::Rejected(reason) => reason,
                broken @ StageError::Failed(_) => broken.to_string(),
            },
        }),
    }
}
