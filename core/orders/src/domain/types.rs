//! Values shared by the order flow's aggregates: ids, order lines, addresses, reasons.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::money::Money;

/// A command field that failed validation, named so the caller can fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invalid field `{field}`: {reason}")]
pub struct FieldError {
    /// The field path, such as `lines[1].quantity`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    /// A validation error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The longest id accepted: ids become DynamoDB keys and Kafka record keys.
pub const MAX_ID_LEN: usize = 64;

/// Checks that `value` is an id: 1 to 64 characters of ASCII letters, digits, `-` and `_`.
pub fn validate_id(field: &str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(FieldError::new(
            field,
            format!("is {} characters long, at most {MAX_ID_LEN}", value.len()),
        ));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(FieldError::new(
            field,
            format!("contains {bad:?}; only letters, digits, '-' and '_' are allowed"),
        ));
    }
    Ok(())
}

/// Which coordination style drives an order through the services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// A saga orchestrator sends each command and compensates on failure.
    Orchestrated,
    /// Services react to each other's events with no coordinator.
    Choreographed,
    /// The saga runs in one process through the in-process executor.
    InProcess,
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flow::Orchestrated => "orchestrated",
            Flow::Choreographed => "choreographed",
            Flow::InProcess => "in-process",
        })
    }
}

/// One line of an order: a SKU, how many, and the unit price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    /// The stock-keeping unit.
    pub sku: String,
    /// How many units (at least 1).
    pub quantity: u32,
    /// Price of one unit.
    pub unit_price: Money,
}

/// A quantity of one SKU, as inventory reserves and releases it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLine {
    /// The stock-keeping unit.
    pub sku: String,
    /// How many units.
    pub quantity: u32,
}

impl From<&OrderLine> for StockLine {
    fn from(line: &OrderLine) -> Self {
        Self {
            sku: line.sku.clone(),
            quantity: line.quantity,
        }
    }
}

/// Where a shipment goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// The recipient.
    pub name: String,
    /// Street and number.
    pub line1: String,
    /// City.
    pub city: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// Why an order was cancelled, as a stable code for analytics and a human detail.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CancelReason {
    /// A stable code: `payment_declined`, `out_of_stock`, `shipment_failed`, `timeout`, ...
    pub code: String,
    /// What happened, for people.
    pub detail: String,
}

impl CancelReason {
    /// A reason with a code and a detail.
    pub fn new(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

/// What happened to the customer's money when an order was cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// Nothing was captured, so nothing was refunded.
    NotCharged,
    /// The captured amount was refunded.
    Refunded,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_the_wrong_form_are_refused_with_the_field_named() {
        assert!(validate_id("order_id", "ord-000001").is_ok());
        for bad in ["", "ord 1", "ord/1", "ørd", &"x".repeat(65)] {
            let err = validate_id("order_id", bad).unwrap_err();
            assert_eq!(err.field, "order_id");
        }
    }
}
