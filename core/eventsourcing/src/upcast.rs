//! Schema evolution: upcasters turn a payload written at an old schema version into the next one.
//!
//! An event is never rewritten in the store; it is read through the chain of upcasters from its
//! stored version up to the version the current code writes.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::event::DecodeError;

/// Why an upcaster cannot bring a payload to the next version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    /// The old payload lacks a field the step reads.
    #[error("missing `{0}`")]
    MissingField(&'static str),
    /// A field of the old payload cannot be read as the step needs.
    #[error("`{field}` {problem}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it, such as "is not a whole number".
        problem: &'static str,
    },
}

/// A function from a payload at one schema version to the same event at the next version.
pub type UpcastFn = Arc<dyn Fn(Value) -> Result<Value, UpcastError> + Send + Sync>;

/// The registered upcasters, keyed by event type and the version they read.
#[derive(Clone, Default)]
pub struct Upcasters {
    by_type_and_version: HashMap<(String, u32), UpcastFn>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<_> = self.by_type_and_version.keys().collect();
        keys.sort();
        f.debug_struct("Upcasters")
            .field("registered", &keys)
            .finish()
    }
}

impl Upcasters {
    /// An empty registry: every event must already be at its current version.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the upcaster that reads `event_type` at `from_version` and writes `from_version + 1`.
    pub fn register(
        mut self,
        event_type: &str,
        from_version: u32,
        upcast: impl Fn(Value) -> Result<Value, UpcastError> + Send + Sync + 'static,
    ) -> Self {
        self.by_type_and_version
            .insert((event_type.to_string(), from_version), Arc::new(upcast));
        self
    }

    /// All registries merged; a later one wins where two register the same step.
    pub fn merge(mut self, other: Upcasters) -> Self {
        self.by_type_and_version.extend(other.by_type_and_version);
        self
    }

    /// Brings `payload` of `event_type` from version `from` to version `to` through each step.
    pub fn upcast(
        &self,
        event_type: &str,
        from: u32,
        to: u32,
        mut payload: Value,
    ) -> Result<Value, DecodeError> {
        for version in from..to {
            let step = self
                .by_type_and_version
                .get(&(event_type.to_string(), version))
                .ok_or_else(|| DecodeError::UnknownSchemaVersion {
                    event_type: event_type.to_string(),
                    version: from,
                    current: to,
                })?;
            payload = step(payload).map_err(|reason| DecodeError::Upcast {
                event_type: event_type.to_string(),
                from_version: version,
                reason,
            })?;
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain() -> Upcasters {
        Upcasters::new()
            .register("thing.made", 1, |mut v| {
                let size = v["size"].take();
                Ok(json!({ "dimensions": { "size": size } }))
            })
            .register("thing.made", 2, |mut v| {
                v["colour"] = json!("unknown");
                Ok(v)
            })
    }

    #[test]
    fn upcasts_through_every_step_in_order() {
        let out = chain()
            .upcast("thing.made", 1, 3, json!({"size": 4}))
            .unwrap();
        assert_eq!(out, json!({"dimensions": {"size": 4}, "colour": "unknown"}));
    }

    #[test]
    fn a_missing_step_is_an_unknown_schema_version() {
        let err = chain()
            .upcast("thing.made", 1, 4, json!({"size": 4}))
            .unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnknownSchemaVersion {
                event_type: "thing.made".into(),
                version: 1,
                current: 4
            }
        );
    }

    #[test]
    fn a_refusing_upcaster_is_a_typed_error() {
        let upcasters =
            Upcasters::new().register("thing.made", 1, |_| Err(UpcastError::MissingField("size")));
        let err = upcasters.upcast("thing.made", 1, 2, json!({})).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::Upcast {
                from_version: 1,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "cannot upcast `thing.made` from version 1: missing `size`"
        );
    }
}
