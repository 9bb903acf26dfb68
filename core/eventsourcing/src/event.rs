//! The event envelope every stream, topic and table carries, and the typed domain events inside it.
//!
//! The JSON form of [`StoredEvent`] is the contract between functions: it is the Kafka record
//! value and the content of a DynamoDB event item. It is documented in `docs/events.md`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::upcast::Upcasters;

/// Milliseconds since the Unix epoch (UTC): the one notion of time the core takes as input.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// This instant moved forward by `millis` milliseconds (saturating, never wrapping).
    pub const fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// Milliseconds from `earlier` to this instant (negative if `earlier` is later).
    pub const fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// The identity of one event stream: an aggregate type and the id of one instance of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId {
    /// The aggregate type, such as `order`.
    pub aggregate_type: String,
    /// The aggregate instance id, such as `ord-000042`.
    pub aggregate_id: String,
}

impl StreamId {
    /// A stream id from its aggregate type and id.
    pub fn new(aggregate_type: impl Into<String>, aggregate_id: impl Into<String>) -> Self {
        Self {
            aggregate_type: aggregate_type.into(),
            aggregate_id: aggregate_id.into(),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.aggregate_type, self.aggregate_id)
    }
}

/// Namespace for deterministic event ids (UUIDv5 of the stream and sequence number).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5a6a_f10e_0b3e_4c1d_9a8e_2f5d_7c3b_1e01);

/// The deterministic id of the event at `sequence` in `stream`: the same slot always has the
/// same id, so a redelivered or re-appended event can be recognised by id alone.
pub fn event_id_for(stream: &StreamId, sequence: u64) -> String {
    let name = format!("{stream}/{sequence}");
    Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// One event with its metadata; `P` is the payload: raw JSON when stored, a typed event when decoded.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope<P = Value> {
    /// Unique id of this event (deterministic from stream and sequence).
    pub event_id: String,
    /// The aggregate type whose stream holds the event.
    pub aggregate_type: String,
    /// The aggregate instance whose stream holds the event.
    pub aggregate_id: String,
    /// Position in the stream, starting at 1 with no gaps.
    pub sequence: u64,
    /// Dotted event type name, such as `order.created`.
    pub event_type: String,
    /// Schema version of the payload as it was written.
    pub schema_version: u32,
    /// When the event happened (milliseconds since the Unix epoch).
    pub occurred_at: Timestamp,
    /// Id shared by every event of one business flow (an order's saga, say).
    pub correlation_id: String,
    /// Id of the event or request that directly caused this one.
    pub causation_id: String,
    /// The W3C `traceparent` of the span that recorded the event, so whoever handles it next
    /// continues the same trace; opaque to the core, which only carries it along causation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<String>,
    /// The event's data.
    pub payload: P,
}

/// An event as stores and topics hold it: the envelope with a raw JSON payload.
pub type StoredEvent = EventEnvelope<Value>;

impl<P> EventEnvelope<P> {
    /// The stream this event belongs to.
    pub fn stream_id(&self) -> StreamId {
        StreamId::new(self.aggregate_type.clone(), self.aggregate_id.clone())
    }

    /// This envelope's metadata around another payload.
    pub fn with_payload<Q>(&self, payload: Q) -> EventEnvelope<Q> {
        EventEnvelope {
            event_id: self.event_id.clone(),
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            sequence: self.sequence,
            event_type: self.event_type.clone(),
            schema_version: self.schema_version,
            occurred_at: self.occurred_at,
            correlation_id: self.correlation_id.clone(),
            causation_id: self.causation_id.clone(),
            trace_context: self.trace_context.clone(),
            payload,
        }
    }
}

impl StoredEvent {
    /// Parses the JSON form of an envelope, as read from a Kafka record or a table item.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::InvalidEnvelope {
                reason: "empty value".into(),
            });
        }
        let event: StoredEvent =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::InvalidEnvelope {
                reason: e.to_string(),
            })?;
        event.validate()?;
        Ok(event)
    }

    /// The JSON form of this envelope.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings, integers and a `Value` cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks the envelope's own fields, so that a well-formed JSON with empty ids is refused.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let required = [
            ("event_id", &self.event_id),
            ("aggregate_type", &self.aggregate_type),
            ("aggregate_id", &self.aggregate_id),
            ("event_type", &self.event_type),
            ("correlation_id", &self.correlation_id),
            ("causation_id", &self.causation_id),
        ];
        for (field, value) in required {
            if value.trim().is_empty() {
                return Err(DecodeError::InvalidEnvelope {
                    reason: format!("field `{field}` is empty"),
                });
            }
        }
        if self.sequence == 0 {
            return Err(DecodeError::InvalidEnvelope {
                reason: "field `sequence` must start at 1".into(),
            });
        }
        if self.schema_version == 0 {
            return Err(DecodeError::InvalidEnvelope {
                reason: "field `schema_version` must start at 1".into(),
            });
        }
        Ok(())
    }

    /// Decodes the payload into the typed event `E`, upcasting older schema versions first
    /// through `E`'s own upcasters.
    pub fn decode<E: DomainEvent>(&self) -> Result<EventEnvelope<E>, DecodeError> {
        Ok(self.with_payload(self.decode_payload()?))
    }

    /// Decodes only the payload, as [`StoredEvent::decode`] does, without copying the
    /// envelope's ids: what replaying an aggregate needs.
    pub fn decode_payload<E: DomainEvent>(&self) -> Result<E, DecodeError> {
        let current =
            E::schema_version(&self.event_type).ok_or_else(|| DecodeError::UnknownEventType {
                aggregate_type: self.aggregate_type.clone(),
                event_type: self.event_type.clone(),
            })?;
        let event = match self.schema_version.cmp(&current) {
            // The common case reads the stored payload in place.
            std::cmp::Ordering::Equal => E::from_payload_ref(&self.event_type, &self.payload)?,
            std::cmp::Ordering::Less => E::from_payload(
                &self.event_type,
                E::upcasters().upcast(
                    &self.event_type,
                    self.schema_version,
                    current,
                    self.payload.clone(),
                )?,
            )?,
            std::cmp::Ordering::Greater => {
                return Err(DecodeError::UnknownSchemaVersion {
                    event_type: self.event_type.clone(),
                    version: self.schema_version,
                    current,
                })
            }
        };
        Ok(event)
    }
}

impl crate::transience::Classified for DecodeError {
    /// An event or command that cannot be read now cannot be read later.
    fn transience(&self) -> crate::transience::Transience {
        crate::transience::Transience::Permanent
    }
}

/// Declares a domain event enum with each event type's name and schema version written once:
/// the macro writes the serde tags, [`DomainEvent::SCHEMA`], [`DomainEvent::event_type`] and,
/// when given, the upcasters that read the type's older versions ([`DomainEvent::upcasters`]).
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// sagaflow_eventsourcing::domain_event! {
///     /// What a lamp records.
///     #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
///     pub enum LampEvent {
///         /// It was switched on.
///         SwitchedOn = "lamp.switched_on" @ 1 { lumens: u32 },
///     }
/// }
///
/// use sagaflow_eventsourcing::DomainEvent;
/// let event = LampEvent::SwitchedOn { lumens: 800 };
/// assert_eq!(event.event_type(), "lamp.switched_on");
/// assert_eq!(LampEvent::schema_version("lamp.switched_on"), Some(1));
/// ```
#[macro_export]
macro_rules! domain_event {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident = $event_type:literal @ $version:literal { $($fields:tt)* }
            ),* $(,)?
        }
        $(upcasters = $upcasters:expr;)?
    ) => {
        $(#[$meta])*
        #[serde(tag = "event_type", content = "payload")]
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                #[serde(rename = $event_type)]
                $variant { $($fields)* },
            )*
        }

        impl $crate::event::DomainEvent for $name {
            const SCHEMA: &'static [(&'static str, u32)] = &[$(($event_type, $version)),*];

            fn event_type(&self) -> &'static str {
                match self {
                    $($name::$variant { .. } => $event_type,)*
                }
            }

            $(
                fn upcasters() -> &'static $crate::upcast::Upcasters {
                    static UPCASTERS: ::std::sync::OnceLock<$crate::upcast::Upcasters> =
                        ::std::sync::OnceLock::new();
                    UPCASTERS.get_or_init(|| $upcasters)
                }
            )?
        }
    };
}

/// A typed domain event: a serde enum tagged `#[serde(tag = "event_type", content = "payload")]`
/// whose variants are renamed to dotted event type names.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static
{
    /// Every event type this enum knows, with the schema version the current code writes.
    const SCHEMA: &'static [(&'static str, u32)];

    /// The dotted type name of this event, such as `order.created`.
    fn event_type(&self) -> &'static str;

    /// The upcasters that read this type's events written at older schema versions: they
    /// belong to the event type, so every reader reads old events the same way.
    fn upcasters() -> &'static Upcasters {
        static NONE: std::sync::OnceLock<Upcasters> = std::sync::OnceLock::new();
        NONE.get_or_init(Upcasters::default)
    }

    /// The schema version current code writes for `event_type`, or `None` for an unknown type.
    fn schema_version(event_type: &str) -> Option<u32> {
        Self::SCHEMA
            .iter()
            .find(|(name, _)| *name == event_type)
            .map(|(_, version)| *version)
    }

    /// The payload JSON of this event, without its type tag.
    fn to_payload(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => map.remove("payload").unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Builds the typed event from its type name and current-version payload.
    fn from_payload(event_type: &str, payload: Value) -> Result<Self, DecodeError> {
        Self::from_payload_ref(event_type, &payload)
    }

    /// The same, reading the payload where it is: no copy of it and no tagged object built
    /// around it (rehydration decodes every event of a stream this way).
    fn from_payload_ref(event_type: &str, payload: &Value) -> Result<Self, DecodeError> {
        Self::deserialize(Tagged {
            event_type,
            payload,
        })
        .map_err(|e| DecodeError::InvalidPayload {
            event_type: event_type.to_string(),
            reason: e.to_string(),
        })
    }
}

/// An event's type and payload seen as the adjacently tagged map
/// `{"event_type": ..., "payload": ...}` that [`DomainEvent`] enums deserialize from, without
/// building it.
struct Tagged<'a> {
    event_type: &'a str,
    payload: &'a Value,
}

impl<'de> serde::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_map(TaggedFields {
            tagged: self,
            next: 0,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// The two fields of [`Tagged`], in order.
struct TaggedFields<'de> {
    tagged: Tagged<'de>,
    next: u8,
}

impl<'de> serde::de::MapAccess<'de> for TaggedFields<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        use serde::de::IntoDeserializer;
        let key = match self.next {
            0 => "event_type",
            1 => "payload",
            _ => return Ok(None),
        };
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        use serde::de::IntoDeserializer;
        self.next += 1;
        match self.next {
            1 => seed.deserialize(self.tagged.event_type.into_deserializer()),
            _ => seed.deserialize(self.tagged.payload),
        }
    }
}

/// Why a record or stored event could not be turned into a typed event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not an event envelope.
    #[error("invalid event envelope: {reason}")]
    InvalidEnvelope {
        /// What is wrong with the envelope.
        reason: String,
    },
    /// No code knows this event type.
    #[error("unknown event type `{event_type}` for aggregate type `{aggregate_type}`")]
    UnknownEventType {
        /// The aggregate type of the stream.
        aggregate_type: String,
        /// The unknown event type.
        event_type: String,
    },
    /// The schema version is newer than this code, or no upcaster chain reaches the current one.
    #[error(
        "unknown schema version {version} of `{event_type}` (this code reads up to {current})"
    )]
    UnknownSchemaVersion {
        /// The event type.
        event_type: String,
        /// The version the event was written with.
        version: u32,
        /// The version this code writes.
        current: u32,
    },
    /// The payload does not have the shape of its event type.
    #[error("payload of `{event_type}` has the wrong shape: {reason}")]
    InvalidPayload {
        /// The event type.
        event_type: String,
        /// The deserializer's complaint.
        reason: String,
    },
    /// An upcaster refused the payload.
    #[error("cannot upcast `{event_type}` from version {from_version}: {reason}")]
    Upcast {
        /// The event type.
        event_type: String,
        /// The version the upcaster starts from.
        from_version: u32,
        /// The upcaster's complaint.
        #[source]
        reason: crate::upcast::UpcastError,
    },
}

/// What the caller says about the command that produced events: ids and time for their envelopes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandMeta {
    /// Correlation id copied onto every produced event.
    pub correlation_id: String,
    /// Causation id copied onto every produced event: the id of the message that caused the command.
    pub causation_id: String,
    /// Key under which the effect is recorded once; a second command with it appends nothing.
    pub idempotency_key: Option<String>,
    /// When the command is handled.
    pub now: Timestamp,
    /// The trace context copied onto every produced event (see [`EventEnvelope::trace_context`]).
    pub trace_context: Option<String>,
}

impl CommandMeta {
    /// Metadata for a command caused by `causation_id` in the flow `correlation_id`.
    pub fn new(
        correlation_id: impl Into<String>,
        causation_id: impl Into<String>,
        now: Timestamp,
    ) -> Self {
        Self {
            correlation_id: correlation_id.into(),
            causation_id: causation_id.into(),
            idempotency_key: None,
            now,
            trace_context: None,
        }
    }

    /// The same metadata with an idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Metadata for a command caused by `event`: same correlation, caused by that event's id.
    pub fn caused_by<P>(event: &EventEnvelope<P>, now: Timestamp) -> Self {
        Self::new(event.correlation_id.clone(), event.event_id.clone(), now)
            .with_trace_context(event.trace_context.clone())
    }

    /// The same metadata, its events continuing the trace `trace_context` (a W3C `traceparent`).
    pub fn with_trace_context(mut self, trace_context: Option<String>) -> Self {
        self.trace_context = trace_context;
        self
    }
}

/// Wraps typed events produced by a command into stored envelopes after `version`.
pub fn envelope_events<E: DomainEvent>(
    stream: &StreamId,
    version: u64,
    events: &[E],
    meta: &CommandMeta,
) -> Vec<StoredEvent> {
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let sequence = version + 1 + i as u64;
            let event_type = event.event_type();
            EventEnvelope {
                event_id: event_id_for(stream, sequence),
                aggregate_type: stream.aggregate_type.clone(),
                aggregate_id: stream.aggregate_id.clone(),
                sequence,
                event_type: event_type.to_string(),
                schema_version: E::schema_version(event_type).unwrap_or(1),
                occurred_at: meta.now,
                correlation_id: meta.correlation_id.clone(),
                causation_id: meta.causation_id.clone(),
                trace_context: meta.trace_context.clone(),
                payload: event.to_payload(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "event_type", content = "payload")]
    enum Ping {
        #[serde(rename = "ping.sent")]
        Sent { n: u32 },
    }

    impl DomainEvent for Ping {
        const SCHEMA: &'static [(&'static str, u32)] = &[("ping.sent", 1)];
        fn event_type(&self) -> &'static str {
            "ping.sent"
        }
    }

    fn meta() -> CommandMeta {
        CommandMeta::new("corr-1", "cause-1", Timestamp(1_000))
    }

    #[test]
    fn envelope_round_trips_through_its_json_form() {
        let stream = StreamId::new("ping", "p-1");
        let stored = envelope_events(&stream, 4, &[Ping::Sent { n: 7 }], &meta());
        let json = stored[0].to_json();
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["event_type"], "ping.sent");
        assert_eq!(value["sequence"], 5);
        assert_eq!(value["payload"], serde_json::json!({"n": 7}));
        assert_eq!(value["occurred_at"], 1_000);
        let back = StoredEvent::from_json(&json).unwrap();
        assert_eq!(back, stored[0]);
        let typed = back.decode::<Ping>().unwrap();
        assert_eq!(typed.payload, Ping::Sent { n: 7 });
        assert_eq!(typed.correlation_id, "corr-1");
        assert_eq!(typed.causation_id, "cause-1");
    }

    #[test]
    fn event_ids_are_deterministic_per_stream_slot() {
        let a = StreamId::new("ping", "p-1");
        let b = StreamId::new("ping", "p-2");
        assert_eq!(event_id_for(&a, 1), event_id_for(&a, 1));
        assert_ne!(event_id_for(&a, 1), event_id_for(&a, 2));
        assert_ne!(event_id_for(&a, 1), event_id_for(&b, 1));
    }

    #[test]
    fn unknown_type_and_newer_version_are_typed_errors() {
        let stream = StreamId::new("ping", "p-1");
        let mut stored = envelope_events(&stream, 0, &[Ping::Sent { n: 1 }], &meta()).remove(0);
        stored.event_type = "ping.lost".into();
        assert!(matches!(
            stored.decode::<Ping>(),
            Err(DecodeError::UnknownEventType { .. })
        ));
        stored.event_type = "ping.sent".into();
        stored.schema_version = 9;
        assert_eq!(
            stored.decode::<Ping>(),
            Err(DecodeError::UnknownSchemaVersion {
                event_type: "ping.sent".into(),
                version: 9,
                current: 1
            })
        );
    }

    #[test]
    fn bad_bytes_are_typed_errors_not_panics() {
        for bytes in [
            &b""[..],
            b"not json",
            b"{}",
            b"[1,2]",
            b"{\"event_id\":\"x\"}",
        ] {
            assert!(matches!(
                StoredEvent::from_json(bytes),
                Err(DecodeError::InvalidEnvelope { .. })
            ));
        }
        let stream = StreamId::new("ping", "p-1");
        let mut stored = envelope_events(&stream, 0, &[Ping::Sent { n: 1 }], &meta()).remove(0);
        stored.correlation_id = " ".into();
        let err = StoredEvent::from_json(&stored.to_json()).unwrap_err();
        assert!(err.to_string().contains("correlation_id"), "{err}");
        stored.correlation_id = "c".into();
        stored.payload = serde_json::json!({"n": "seven"});
        assert!(matches!(
            stored.decode::<Ping>(),
            Err(DecodeError::InvalidPayload { .. })
        ));
    }
}
