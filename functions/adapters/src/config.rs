//! Configuration from the environment, with defaults that match `localstack/` and `infra/`.

use aws_config::BehaviorVersion;

/// Environment variable naming the events table.
pub const EVENTS_TABLE_VAR: &str = "SAGAFLOW_EVENTS_TABLE";
/// Environment variable naming the analytics table.
pub const ANALYTICS_TABLE_VAR: &str = "SAGAFLOW_ANALYTICS_TABLE";
/// Environment variable: how long a saga step waits for its reply, in milliseconds.
pub const STEP_TIMEOUT_VAR: &str = "SAGAFLOW_STEP_TIMEOUT_MS";

/// A configuration variable whose value cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?}: {expected}")]
pub struct ConfigError {
    /// The variable.
    pub name: &'static str,
    /// Its value.
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

/// Where the adapters keep their state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterConfig {
    /// The event store table.
    pub events_table: String,
    /// The analytics read model table.
    pub analytics_table: String,
    /// How long a saga step waits for its reply before it fails and the saga compensates.
    pub step_timeout_ms: i64,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            events_table: "sagaflow-events".into(),
            analytics_table: "sagaflow-analytics".into(),
            step_timeout_ms: sagaflow_core::flow::sagas::STEP_TIMEOUT_MS,
        }
    }
}

impl AdapterConfig {
    /// The configuration from `SAGAFLOW_*` variables, defaults for those unset or empty.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration from any variable lookup (testable without touching the process).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let get = |name: &str, default: String| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or(default)
        };
        let step_timeout_ms = match lookup(STEP_TIMEOUT_VAR).filter(|v| !v.trim().is_empty()) {
            None => defaults.step_timeout_ms,
            Some(value) => {
                value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|ms: &i64| *ms > 0)
                    .ok_or(ConfigError {
                        name: STEP_TIMEOUT_VAR,
                        value,
                        expected: "a positive number of milliseconds",
                    })?
            }
        };
        Ok(Self {
            events_table: get(EVENTS_TABLE_VAR, defaults.events_table),
            analytics_table: get(ANALYTICS_TABLE_VAR, defaults.analytics_table),
            step_timeout_ms,
        })
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
            STEP_TIMEOUT_VAR => Some("2500".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.events_table, "custom-events");
        assert_eq!(config.analytics_table, "sagaflow-analytics");
        assert_eq!(config.step_timeout_ms, 2_500);
        let bad =
            AdapterConfig::from_lookup(|name| (name == STEP_TIMEOUT_VAR).then(|| "-5".into()));
        assert_eq!(
            bad.unwrap_err().to_string(),
            "SAGAFLOW_STEP_TIMEOUT_MS=\"-5\": a positive number of milliseconds"
        );
    }
}
