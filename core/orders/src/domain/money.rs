//! Money in integer minor units with a currency: never a float.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code such as `EUR`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

/// A code that is not three upper-case letters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a three-letter upper-case currency code")]
pub struct InvalidCurrency(pub String);

impl Currency {
    /// A currency from a three-letter upper-case code.
    pub fn new(code: &str) -> Result<Self, InvalidCurrency> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code.to_string()))
        } else {
            Err(InvalidCurrency(code.to_string()))
        }
    }

    /// The euro, the demo's currency.
    pub fn eur() -> Self {
        Self("EUR".into())
    }

    /// The code, such as `EUR`.
    pub fn code(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidCurrency;
    fn try_from(code: String) -> Result<Self, InvalidCurrency> {
        Currency::new(&code)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0
    }
}

/// An amount of money: integer minor units (cents) of one currency.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The amount in minor units (cents for EUR); never fractional.
    pub amount_minor: i64,
    /// The currency.
    pub currency: Currency,
}

/// Why an arithmetic operation on money has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The two amounts are in different currencies.
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(String, String),
    /// The result does not fit in 64-bit minor units.
    #[error("amount overflows")]
    Overflow,
}

impl Money {
    /// An amount of `amount_minor` minor units of `currency`.
    pub fn new(amount_minor: i64, currency: Currency) -> Self {
        Self {
            amount_minor,
            currency,
        }
    }

    /// Zero in `currency`.
    pub fn zero(currency: Currency) -> Self {
        Self::new(0, currency)
    }

    /// An amount in euro cents.
    pub fn eur(amount_minor: i64) -> Self {
        Self::new(amount_minor, Currency::eur())
    }

    /// The sum, or an error on currency mismatch or overflow.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(
                self.currency.0.clone(),
                other.currency.0.clone(),
            ));
        }
        self.amount_minor
            .checked_add(other.amount_minor)
            .map(|amount| Money::new(amount, self.currency.clone()))
            .ok_or(MoneyError::Overflow)
    }

    /// The amount times `factor`, or an overflow error.
    pub fn checked_mul(&self, factor: u32) -> Result<Money, MoneyError> {
        self.amount_minor
            .checked_mul(i64::from(factor))
            .map(|amount| Money::new(amount, self.currency.clone()))
            .ok_or(MoneyError::Overflow)
    }

    /// Whether the amount is above zero.
    pub fn is_positive(&self) -> bool {
        self.amount_minor > 0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        write!(
            f,
            "{sign}{}.{:02} {}",
            abs / 100,
            abs % 100,
            self.currency.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_and_multiplies_in_minor_units() {
        let price = Money::eur(1_999);
        assert_eq!(price.checked_mul(3), Ok(Money::eur(5_997)));
        assert_eq!(price.checked_add(&Money::eur(1)), Ok(Money::eur(2_000)));
        assert_eq!(Money::eur(5_997).to_string(), "59.97 EUR");
        assert_eq!(Money::eur(-5).to_string(), "-0.05 EUR");
    }

    #[test]
    fn overflow_and_mismatch_are_errors() {
        assert_eq!(
            Money::eur(i64::MAX).checked_mul(2),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            Money::eur(i64::MAX).checked_add(&Money::eur(1)),
            Err(MoneyError::Overflow)
        );
        let usd = Money::new(1, Currency::new("USD").unwrap());
        assert!(matches!(
            Money::eur(1).checked_add(&usd),
            Err(MoneyError::CurrencyMismatch(..))
        ));
    }

    #[test]
    fn currency_codes_are_validated_when_deserialized() {
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1,"currency":"EUR"}"#).is_ok());
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1,"currency":"euro"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":1.5,"currency":"EUR"}"#).is_err());
    }
}
