//! The command is configured like the functions: the same `SAGAFLOW_*` variables, `AWS_*` for
//! the SDK. In a checkout with local servers running, `.run/env` fills in what the environment
//! leaves unset, so `sagaflow` talks to them without any `export`.

use std::path::Path;

use sagaflow_dynamodb::AdapterConfig;
use sagaflow_kafka::KafkaConfig;

use crate::error::OperatorError;

/// Sets each `NAME=value` of `file` that the environment does not set; a missing file is fine.
pub fn load_env_file(file: &Path) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            if std::env::var_os(name.trim()).is_none() {
                // Single-threaded here: main calls this before starting the runtime.
                std::env::set_var(name.trim(), value.trim());
            }
        }
    }
}

/// The tables and the Kafka settings, from the environment.
pub fn from_env() -> Result<(AdapterConfig, KafkaConfig), OperatorError> {
    let adapters = AdapterConfig::from_env().map_err(|e| OperatorError::Settings(e.to_string()))?;
    let kafka = KafkaConfig::from_env().map_err(|e| OperatorError::Settings(e.to_string()))?;
    Ok((adapters, kafka))
}
