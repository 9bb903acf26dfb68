//! Kafka client settings from the environment: bootstrap servers, topic prefix, and any
//! librdkafka property (security protocol, SASL/SCRAM, IAM) passed through untouched.

use rdkafka::ClientConfig;

use sagaflow_records::Topics;

/// Environment variable: comma-separated bootstrap servers.
pub const BOOTSTRAP_VAR: &str = "SAGAFLOW_KAFKA_BOOTSTRAP";
/// Environment variable: the topic prefix.
pub const TOPIC_PREFIX_VAR: &str = "SAGAFLOW_TOPIC_PREFIX";
/// Environment variable: extra librdkafka properties, `name=value` separated by `;`
/// (for example `security.protocol=SASL_SSL;sasl.mechanism=SCRAM-SHA-512;sasl.username=app`).
pub const PROPERTIES_VAR: &str = "SAGAFLOW_KAFKA_PROPERTIES";
/// Environment variable: `false` turns the idempotent producer off (for brokers without it).
pub const IDEMPOTENT_VAR: &str = "SAGAFLOW_KAFKA_IDEMPOTENT";

/// How to reach Kafka. Its `Debug` hides the value of every secret property (a password, a
/// secret, a token, a key), so a configuration can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,host:port`.
    pub bootstrap_servers: String,
    /// Topic names.
    pub topics: Topics,
    /// Extra librdkafka properties, applied last.
    pub properties: Vec<(String, String)>,
    /// Whether the producer is idempotent (`enable.idempotence`).
    pub idempotent: bool,
}

/// Whether a librdkafka property holds a secret (`sasl.password`, `ssl.key.password`,
/// `sasl.oauthbearer.client.secret`, a token or a private key).
pub fn is_secret_property(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "secret", "token", "key.pem", "private"]
        .iter()
        .any(|marker| name.contains(marker))
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(name, value)| {
                let shown = if is_secret_property(name) {
                    "<redacted>"
                } else {
                    value.as_str()
                };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topics", &self.topics)
            .field("properties", &properties)
            .field("idempotent", &self.idempotent)
            .finish()
    }
}

/// A property string that is not `name=value`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{PROPERTIES_VAR}: `{0}` is not name=value")]
pub struct PropertyError(pub String);

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topics: Topics::default(),
            properties: Vec::new(),
            idempotent: true,
        }
    }
}

impl KafkaConfig {
    /// The configuration from the process environment.
    pub fn from_env() -> Result<Self, PropertyError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration from any variable lookup.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PropertyError> {
        let defaults = Self::default();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let properties = match get(PROPERTIES_VAR) {
            Some(text) => text
                .split(';')
                .filter(|p| !p.trim().is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| PropertyError(pair.to_string()))
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Self {
            bootstrap_servers: get(BOOTSTRAP_VAR).unwrap_or(defaults.bootstrap_servers),
            topics: get(TOPIC_PREFIX_VAR).map_or(defaults.topics, Topics::new),
            properties,
            idempotent: get(IDEMPOTENT_VAR).is_none_or(|v| v != "false"),
        })
    }

    /// The librdkafka settings every client shares.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_servers_prefix_and_passthrough_properties() {
        let config = KafkaConfig::from_lookup(|name| match name {
            BOOTSTRAP_VAR => Some("b1:9096,b2:9096".into()),
            TOPIC_PREFIX_VAR => Some("shop".into()),
            PROPERTIES_VAR => {
                Some("security.protocol=SASL_SSL; sasl.mechanism=SCRAM-SHA-512;".into())
            }
            IDEMPOTENT_VAR => Some("false".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.bootstrap_servers, "b1:9096,b2:9096");
        assert_eq!(config.topics.dead_letter(), "shop.dead-letter");
        assert_eq!(
            config.properties,
            vec![
                ("security.protocol".to_string(), "SASL_SSL".to_string()),
                ("sasl.mechanism".to_string(), "SCRAM-SHA-512".to_string())
            ]
        );
        assert!(!config.idempotent);
        assert_eq!(
            KafkaConfig::from_lookup(|n| (n == PROPERTIES_VAR).then(|| "oops".to_string())),
            Err(PropertyError("oops".into()))
        );
        assert_eq!(
            KafkaConfig::from_lookup(|_| None).unwrap(),
            KafkaConfig::default()
        );
    }

    #[test]
    fn its_debug_form_hides_every_secret_property() {
        let config = KafkaConfig::from_lookup(|name| {
            (name == PROPERTIES_VAR).then(|| {
                "sasl.username=app;sasl.password=hunter2;ssl.key.password=k3y;\
                 sasl.oauthbearer.client.secret=s3cret"
                    .to_string()
            })
        })
        .unwrap();
        let shown = format!("{config:?}");
        for secret in ["hunter2", "k3y", "s3cret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("sasl.username") && shown.contains("\"app\""),
            "{shown}"
        );
        assert!(
            shown.contains("sasl.password") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
