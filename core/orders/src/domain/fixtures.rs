//! Sample values for tests of the domain and of everything built on it.

use super::money::Money;
use super::order::CreateOrder;
use super::types::{Address, Flow, OrderLine};

/// A deliverable address in Germany.
pub fn address() -> Address {
    Address {
        name: "Ada Lovelace".into(),
        line1: "Hauptstraße 1".into(),
        city: "Berlin".into(),
        country: "DE".into(),
    }
}

/// A valid two-line order of 2 × MUG at 12.50 and 1 × TEE at 20.00 (45.00 EUR).
pub fn create_order(order_id: &str, flow: Flow) -> CreateOrder {
    CreateOrder {
        order_id: order_id.into(),
        customer_id: "cust-1".into(),
        lines: vec![
            OrderLine {
                sku: "MUG".into(),
                quantity: 2,
                unit_price: Money::eur(1_250),
            },
            OrderLine {
                sku: "TEE".into(),
                quantity: 1,
                unit_price: Money::eur(2_000),
            },
        ],
        payment_method: "card-ok".into(),
        shipping_address: address(),
        flow,
    }
}
