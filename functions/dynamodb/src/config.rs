//! Configuration from the environment, with defaults that match `localstack/` and `infra/`.

use aws_config::BehaviorVersion;
use sagaflow_orders::flow::sagas::StepTiming;

/// Environment variable naming the events table.
pub const EVENTS_TABLE_VAR: &str = "SAGAFLOW_EVENTS_TABLE";
/// Environment variable naming the analytics table.
pub const ANALYTICS_TABLE_VAR: &str = "SAGAFLOW_ANALYTICS_TABLE";
/// Environment variable: how long a saga step waits for its reply, in milliseconds.
pub const STEP_TIMEOUT_VAR: &str = "SAGAFLOW_STEP_TIMEOUT_MS";
/// Environment variable: attempts of a saga compensation before it is recorded as failed.
pub const STEP_ATTEMPTS_VAR: &str = "SAGAFLOW_STEP_ATTEMPTS";
/// Environment variable: attempts of a saga's forward step before it fails.
pub const FORWARD_ATTEMPTS_VAR: &str = "SAGAFLOW_FORWARD_ATTEMPTS";

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
    /// How long a saga step waits for its reply, and how often a compensation is sent.
    pub step_timing: StepTiming,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            events_table: "sagaflow-events".into(),
            analytics_table: "sagaflow-analytics".into(),
            step_timing: StepTiming::default(),
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
        let timeout_ms = positive(
            &lookup,
            STEP_TIMEOUT_VAR,
            defaults.step_timing.timeout_ms,
            "a positive number of milliseconds",
        )?;
        let compensation_attempts = positive(
            &lookup,
            STEP_ATTEMPTS_VAR,
            defaults.step_timing.compensation_attempts,
            "a positive number of attempts",
        )?;
        let forward_attempts = positive(
            &lookup,
            FORWARD_ATTEMPTS_VAR,
            defaults.step_timing.forward_attempts,
            "a positive number of attempts",
        )?;
        Ok(Self {
            events_table: get(EVENTS_TABLE_VAR, defaults.events_table),
            analytics_table: get(ANALYTICS_TABLE_VAR, defaults.analytics_table),
            step_timing: StepTiming {
                timeout_ms,
                forward_attempts,
                compensation_attempts,
            },
        })
    }
}

/// The positive number in variable `name`, or `default` when it is unset or empty.
fn positive<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    expected: &'static str,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + Default,
{
    let Some(value) = lookup(name).filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    value
        .trim()
        .parse()
        .ok()
        .filter(|number: &T| *number > T::default())
        .ok_or(ConfigError {
            name,
            value,
            expected,
        })
}

/// A DynamoDB client from the standard AWS environment (region, credentials, and
/// `AWS_ENDPOINT_URL` for local endpoints such as dynoxide or LocalStack).
pub async fn dynamodb_client() -> aws_sdk_dynamodb::Client {
    let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
    aws_sdk_dynamodb::Client::new(&shared)
}

/// The AWS configuration of the standard environment, for every client a function builds.
pub async fn aws_shared_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// A DynamoDB client over `shared`, counting every throttled attempt into `push_back` (see
/// [`crate::push_back`]).
pub fn counting_dynamodb_client(
    shared: &aws_config::SdkConfig,
    push_back: &std::sync::Arc<crate::PushBack>,
) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(shared)
        .interceptor(push_back.interceptor())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
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
        assert_eq!(
            config.step_timing,
            StepTiming {
                timeout_ms: 2_500,
                forward_attempts: sagaflow_orders::flow::sagas::FORWARD_ATTEMPTS,
                compensation_attempts: sagaflow_orders::flow::sagas::STEP_ATTEMPTS,
            }
        );
        let attempts =
            AdapterConfig::from_lookup(|name| (name == STEP_ATTEMPTS_VAR).then(|| " 9 ".into()));
        assert_eq!(attempts.unwrap().step_timing.compensation_attempts, 9);
        let forward =
            AdapterConfig::from_lookup(|name| (name == FORWARD_ATTEMPTS_VAR).then(|| "1".into()));
        assert_eq!(forward.unwrap().step_timing.forward_attempts, 1);
        let bad =
            AdapterConfig::from_lookup(|name| (name == STEP_ATTEMPTS_VAR).then(|| "0".into()));
        assert_eq!(
            bad.unwrap_err().to_string(),
            "SAGAFLOW_STEP_ATTEMPTS=\"0\": a positive number of attempts"
        );
        let bad =
            AdapterConfig::from_lookup(|name| (name == STEP_TIMEOUT_VAR).then(|| "-5".into()));
        assert_eq!(
            bad.unwrap_err().to_string(),
            "SAGAFLOW_STEP_TIMEOUT_MS=\"-5\": a positive number of milliseconds"
        );
    }
}
