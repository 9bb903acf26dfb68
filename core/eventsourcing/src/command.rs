//! The command envelope: a request addressed to one aggregate, as command topics carry it.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::event::{CommandMeta, DecodeError, Timestamp};

/// Namespace for deterministic command ids.
const COMMAND_ID_NAMESPACE: Uuid = Uuid::from_u128(0x0c0d_e5a9_4f1b_4e7e_8c2a_9d3f_6b5e_2a02);

/// The deterministic id of the command `command_type` issued because of message `cause`, so a
/// redelivered cause issues the same command and its effect is recorded once.
pub fn command_id_for(cause: &str, command_type: &str, discriminator: &str) -> String {
    let name = format!("{cause}/{command_type}/{discriminator}");
    Uuid::new_v5(&COMMAND_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// One command for one aggregate, with the ids that tie it to its flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    /// Unique, deterministic id; also the idempotency key of its effect.
    pub command_id: String,
    /// Dotted type: the aggregate type, a dot, the command (`payment.charge`).
    pub command_type: String,
    /// The id of the aggregate addressed.
    pub target_id: String,
    /// The command's fields.
    pub payload: Value,
    /// The business flow (an order's id).
    pub correlation_id: String,
    /// The message that caused this command.
    pub causation_id: String,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// The W3C `traceparent` of the span that issued it; its events continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<String>,
}

impl CommandEnvelope {
    /// The aggregate type this command addresses: the part of its type before the first dot.
    pub fn aggregate_type(&self) -> &str {
        self.command_type
            .split_once('.')
            .map_or(self.command_type.as_str(), |(aggregate, _)| aggregate)
    }

    /// The command's name within its aggregate: the part of its type after the first dot.
    pub fn action(&self) -> &str {
        self.command_type
            .split_once('.')
            .map_or("", |(_, action)| action)
    }

    /// Metadata for the events this command produces, recorded once under its id.
    pub fn meta(&self, now: Timestamp) -> CommandMeta {
        CommandMeta::new(self.correlation_id.clone(), self.command_id.clone(), now)
            .with_idempotency_key(format!("command:{}", self.command_id))
            .with_trace_context(self.trace_context.clone())
    }

    /// Parses the JSON form, as read from a command topic.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(bytes).map_err(|e| DecodeError::InvalidEnvelope {
            reason: format!("not a command envelope: {e}"),
        })
    }

    /// The JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_its_type_and_keys_its_effect_by_id() {
        let command = CommandEnvelope {
            trace_context: None,
            command_id: command_id_for("evt-1", "payment.charge", ""),
            command_type: "payment.charge".into(),
            target_id: "ord-1".into(),
            payload: serde_json::json!({}),
            correlation_id: "ord-1".into(),
            causation_id: "evt-1".into(),
            issued_at: Timestamp(3),
        };
        assert_eq!(command.aggregate_type(), "payment");
        assert_eq!(command.action(), "charge");
        let meta = command.meta(Timestamp(4));
        assert_eq!(meta.causation_id, command.command_id);
        assert_eq!(
            meta.idempotency_key,
            Some(format!("command:{}", command.command_id))
        );
        assert_eq!(
            CommandEnvelope::from_json(&command.to_json()).unwrap(),
            command
        );
        assert_eq!(
            command.command_id,
            command_id_for("evt-1", "payment.charge", "")
        );
        assert_ne!(
            command.command_id,
            command_id_for("evt-2", "payment.charge", "")
        );
    }
}
