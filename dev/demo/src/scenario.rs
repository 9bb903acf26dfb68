//! The demo's order mix: each scenario is a kind of order that ends a known way.

use std::fmt;

use sagaflow_embedded::random::SplitMix64;
use sagaflow_embedded::world::SLOW_METHOD;
use sagaflow_orders::domain::{Address, StockLine};
use sagaflow_orders::flow::intake::PlaceOrder;

use crate::args::Args;

/// A kind of order and how it is expected to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// Everything works: completed.
    Success,
    /// The card is declined: cancelled, nothing charged.
    Declined,
    /// A line cannot be reserved: cancelled, payment refunded.
    OutOfStock,
    /// The carrier does not deliver there: cancelled, stock released, payment refunded.
    ShipmentFailure,
    /// The payment provider answers too late: the orchestrated saga's deadline fires.
    Timeout,
    /// Bad input: refused at intake, nothing written.
    Invalid,
    /// The customer cancels while the order runs: an orchestrated order's saga compensates
    /// what it did; the other flows have no saga to cancel, so the cancel is refused.
    CustomerCancel,
}

impl Scenario {
    /// Every scenario, in the order the demo covers them first.
    pub const ALL: [Scenario; 7] = [
        Scenario::Success,
        Scenario::Declined,
        Scenario::OutOfStock,
        Scenario::ShipmentFailure,
        Scenario::Timeout,
        Scenario::Invalid,
        Scenario::CustomerCancel,
    ];

    /// The flag name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Success => "success",
            Scenario::Declined => "declined",
            Scenario::OutOfStock => "out-of-stock",
            Scenario::ShipmentFailure => "shipment-failure",
            Scenario::Timeout => "timeout",
            Scenario::Invalid => "invalid",
            Scenario::CustomerCancel => "customer-cancel",
        }
    }

    /// The scenario with this flag name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An order the demo will place, with the scenario it was built for.
#[derive(Clone, Debug)]
pub struct PlannedOrder {
    /// The scenario.
    pub scenario: Scenario,
    /// The request.
    pub request: PlaceOrder,
}

/// The scarce SKU: out-of-stock orders ask for more than the warehouse ever holds.
pub const SCARCE_SKU: &str = "LAMP";
const SCARCE_STOCK: u32 = 4;
const COMMON_SKUS: [&str; 4] = ["MUG", "TEE", "CAP", "BAG"];

/// The warehouse's starting stock for `orders` orders: plenty of the common SKUs, few lamps.
pub fn initial_stock(orders: usize) -> Vec<(String, u32)> {
    let plenty = u32::try_from(orders.saturating_mul(4).max(20)).unwrap_or(u32::MAX);
    COMMON_SKUS
        .iter()
        .map(|sku| (sku.to_string(), plenty))
        .chain([(SCARCE_SKU.to_string(), SCARCE_STOCK)])
        .collect()
}

fn address(country: &str, i: usize) -> Address {
    Address {
        name: format!("Customer {i}"),
        line1: format!("{} Market Street", i + 1),
        city: "Utrecht".into(),
        country: country.into(),
    }
}

fn pick_scenario(rng: &mut SplitMix64, mix: &[(Scenario, u32)]) -> Scenario {
    let total: u64 = mix.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut roll = rng.below(total);
    for (scenario, weight) in mix {
        if roll < u64::from(*weight) {
            return *scenario;
        }
        roll -= u64::from(*weight);
    }
    Scenario::Success
}

/// The orders of one run: first every scenario of the mix in every flow, then the mix at random.
pub fn orders_for(args: &Args) -> Vec<PlannedOrder> {
    let mut rng = SplitMix64::new(args.seed ^ 0x5eed);
    let covered: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| args.mix.iter().any(|(m, w)| m == s && *w > 0))
        .collect();
    let coverage = covered.len() * args.flows.len();
    (0..args.orders)
        .map(|i| {
            let flow = args.flows[i % args.flows.len()];
            let scenario = if i < coverage {
                covered[i / args.flows.len()]
            } else {
                pick_scenario(&mut rng, &args.mix)
            };
            let mut lines: Vec<StockLine> = (0..1 + rng.below(3))
                .map(|_| StockLine {
                    sku: COMMON_SKUS[rng.below(COMMON_SKUS.len() as u64) as usize].to_string(),
                    quantity: 1 + rng.below(3) as u32,
                })
                .collect();
            let mut method = "card-ok".to_string();
            let mut country = "NL";
            match scenario {
                Scenario::Success | Scenario::CustomerCancel => {}
                Scenario::Declined => method = "card-declined".into(),
                Scenario::OutOfStock => lines.push(StockLine {
                    sku: SCARCE_SKU.into(),
                    quantity: SCARCE_STOCK + 1,
                }),
                Scenario::ShipmentFailure => country = "AQ",
                Scenario::Timeout => method = SLOW_METHOD.into(),
                Scenario::Invalid => match rng.below(3) {
                    0 => lines[0].quantity = 0,
                    1 => lines[0].sku = "UNKNOWN-SKU".into(),
                    _ => lines.clear(),
                },
            }
            PlannedOrder {
                scenario,
                request: PlaceOrder {
                    order_id: format!("ord-{:06}", i + 1),
                    customer_id: format!("cust-{:04}", rng.below(500)),
                    lines,
                    payment_method: method,
                    shipping_address: address(country, i),
                    flow,
                },
            }
        })
        .collect()
}
