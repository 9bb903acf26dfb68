//! Configuration from the environment, with defaults that match `localstack/` and `infra/`.

use aws_config::BehaviorVersion;

/// Environment variable naming the events table.
pub const EVENTS_TABLE_VAR: &str = "SAGAFLOW_EVENTS_TABLE";
/// Environment variable naming the analytics table.
pub const ANALYTICS_TABLE_VAR: &str = "SAGAFLOW_ANALYTICS_TABLE";

/// Where the adapters keep their state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterConfig {
    /// The event store table.
    pub events_table: String,
    /// The analytics read model table.
    pub analytics_table: String,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            events_table: "sagaflow-events".into(),
            analytics_table: "sagaflow-analytics".into(),
        }
    }
}

impl AdapterConfig {
    /// The configuration from `SAGAFLOW_*` variables, defaults for those unset or empty.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration from any variable lookup (testable without touching the process).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let defaults = Self::default();
        let get = |name: &str, default: String| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or(default)
        };
        Self {
            events_table: get(EVENTS_TABLE_VAR, defaults.events_table),
            analytics_table: get(ANALYTICS_TABLE_VAR, defaults.analytics_table),
        }
    }
}

/// A DynamoDB client from the standard AWS environment (region, credentials, and
/// `AWS_ENDPOINT_URL` for local endpoints such as moto or LocalStack).
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
    aws_sdk_dynamodb::Client::new(&shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_unset_and_empty_variables() {
        let config = AdapterConfig::from_lookup(|name| match name {
            EVENTS_TABLE_VAR => Some("custom-events".into()),
            ANALYTICS_TABLE_VAR => Some("  ".into()),
            _ => None,
        });
        assert_eq!(config.events_table, "custom-events");
        assert_eq!(config.analytics_table, "sagaflow-analytics");
    }
}
