//! Kafka client settings from the environment: bootstrap servers, topic prefix, how the
//! producers authenticate (`SAGAFLOW_KAFKA_AUTH`: none, tls, scram, iam) and any other
//! librdkafka property passed through. No secret travels in the environment: a property that
//! holds one is refused, SCRAM credentials come from Secrets Manager at init, and IAM tokens
//! are signed with the function role's credentials.

use rdkafka::ClientConfig;

use sagaflow_records::Topics;

/// Environment variable: comma-separated bootstrap servers.
pub const BOOTSTRAP_VAR: &str = "SAGAFLOW_KAFKA_BOOTSTRAP";
/// Environment variable: the topic prefix.
pub const TOPIC_PREFIX_VAR: &str = "SAGAFLOW_TOPIC_PREFIX";
/// Environment variable: extra librdkafka properties, `name=value` separated by `;` (for
/// example `client.id=orders;socket.keepalive.enable=true`); none may hold a secret.
pub const PROPERTIES_VAR: &str = "SAGAFLOW_KAFKA_PROPERTIES";
/// Environment variable: `false` turns the idempotent producer off (for brokers without it).
pub const IDEMPOTENT_VAR: &str = "SAGAFLOW_KAFKA_IDEMPOTENT";
/// Environment variable: how the producers authenticate: `none` (the default), `tls`,
/// `scram` or `iam`.
pub const AUTH_VAR: &str = "SAGAFLOW_KAFKA_AUTH";
/// Environment variable: the Secrets Manager secret (ARN or name) holding the SCRAM username
/// and password, for `scram`.
pub const SECRET_ARN_VAR: &str = "SAGAFLOW_KAFKA_SECRET_ARN";

/// How the functions' producers authenticate to the brokers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Plaintext, no authentication (local brokers, a private self-managed cluster).
    #[default]
    None,
    /// TLS to the brokers (MSK's 9094), the CA from the system store; no client identity.
    Tls,
    /// SASL/SCRAM-SHA-512 over TLS (MSK's 9096), the credentials from Secrets Manager.
    Scram,
    /// SASL/OAUTHBEARER over TLS with MSK IAM tokens (MSK's 9098).
    Iam,
}

impl AuthMode {
    /// The mode a `SAGAFLOW_KAFKA_AUTH` value names.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Some(Self::None),
            "tls" => Some(Self::Tls),
            "scram" => Some(Self::Scram),
            "iam" => Some(Self::Iam),
            _ => None,
        }
    }
}

/// The SCRAM username and password, as Secrets Manager holds them for MSK
/// (`{"username": ..., "password": ...}`). Its `Debug` shows the username only.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ScramCredentials {
    /// The SCRAM user.
    pub username: String,
    /// Its password.
    pub password: String,
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// How to reach Kafka. Its `Debug` hides the SCRAM password, so a configuration can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,host:port`.
    pub bootstrap_servers: String,
    /// Topic names.
    pub topics: Topics,
    /// Extra librdkafka properties, applied after the authentication's; never a secret.
    pub properties: Vec<(String, String)>,
    /// Whether the producer is idempotent (`enable.idempotence`).
    pub idempotent: bool,
    /// How the producers authenticate.
    pub auth: AuthMode,
    /// The secret holding the SCRAM credentials, for [`AuthMode::Scram`].
    pub secret_arn: Option<String>,
    /// The SCRAM credentials, once read from [`Self::secret_arn`].
    pub scram: Option<ScramCredentials>,
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
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topics", &self.topics)
            .field("properties", &self.properties)
            .field("idempotent", &self.idempotent)
            .field("auth", &self.auth)
            .field("secret_arn", &self.secret_arn)
            .field("scram", &self.scram)
            .finish()
    }
}

/// Kafka settings the environment gets wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// A property that is not `name=value`.
    #[error("{PROPERTIES_VAR}: `{0}` is not name=value")]
    Malformed(String),
    /// A property that would carry a secret through the environment.
    #[error("{PROPERTIES_VAR}: `{0}` holds a secret, which must not travel in the environment; use {AUTH_VAR}=scram with {SECRET_ARN_VAR} (or iam)")]
    Secret(String),
    /// An authentication mode sagaflow does not know.
    #[error("{AUTH_VAR}: `{0}` is not one of none, tls, scram, iam")]
    UnknownAuth(String),
    /// SCRAM without the secret that holds its credentials.
    #[error("{AUTH_VAR}=scram needs {SECRET_ARN_VAR}, the Secrets Manager secret with the username and password")]
    NoSecret,
    /// Authentication properties set by hand next to a mode that sets them.
    #[error("{PROPERTIES_VAR}: `{0}` is set by {AUTH_VAR}; leave it out")]
    SetByAuth(String),
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topics: Topics::default(),
            properties: Vec::new(),
            idempotent: true,
            auth: AuthMode::None,
            secret_arn: None,
            scram: None,
        }
    }
}

/// The properties an authentication mode sets, which the environment may not set beside it.
const AUTH_PROPERTIES: [&str; 3] = ["security.protocol", "sasl.mechanism", "sasl.mechanisms"];

impl KafkaConfig {
    /// The configuration from the process environment.
    pub fn from_env() -> Result<Self, PropertyError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration from any variable lookup.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, PropertyError> {
        let defaults = Self::default();
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let properties: Vec<(String, String)> = match get(PROPERTIES_VAR) {
            Some(text) => text
                .split(';')
                .filter(|p| !p.trim().is_empty())
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                        .filter(|(k, _)| !k.is_empty())
                        .ok_or_else(|| PropertyError::Malformed(pair.to_string()))
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        if let Some((name, _)) = properties.iter().find(|(name, _)| is_secret_property(name)) {
            return Err(PropertyError::Secret(name.clone()));
        }
        let auth = match get(AUTH_VAR) {
            Some(value) => AuthMode::parse(&value).ok_or(PropertyError::UnknownAuth(value))?,
            None => AuthMode::None,
        };
        if auth != AuthMode::None {
            if let Some((name, _)) = properties
                .iter()
                .find(|(name, _)| AUTH_PROPERTIES.contains(&name.as_str()))
            {
                return Err(PropertyError::SetByAuth(name.clone()));
            }
        }
        let secret_arn = get(SECRET_ARN_VAR);
        if auth == AuthMode::Scram && secret_arn.is_none() {
            return Err(PropertyError::NoSecret);
        }
        Ok(Self {
            bootstrap_servers: get(BOOTSTRAP_VAR).unwrap_or(defaults.bootstrap_servers),
            topics: get(TOPIC_PREFIX_VAR).map_or(defaults.topics, Topics::new),
            properties,
            idempotent: get(IDEMPOTENT_VAR).is_none_or(|v| v != "false"),
            auth,
            secret_arn,
            scram: None,
        })
    }

    /// The same configuration with the SCRAM credentials read from its secret.
    pub fn with_scram(mut self, credentials: ScramCredentials) -> Self {
        self.scram = Some(credentials);
        self
    }

    /// The librdkafka settings every client shares: the servers, the authentication's
    /// properties, then the environment's.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (name, value) in self.auth_properties() {
            config.set(name, value);
        }
        for (name, value) in &self.properties {
            config.set(name, value);
        }
        config
    }

    /// The properties the authentication mode sets. Every mode but `none` is TLS with the
    /// system's CA bundle (`probe` finds it on Amazon Linux and Debian alike) unless the
    /// environment names another.
    pub fn auth_properties(&self) -> Vec<(&'static str, String)> {
        let tls = |protocol: &'static str| {
            let mut props = vec![("security.protocol", protocol.to_string())];
            if !self.properties.iter().any(|(n, _)| n == "ssl.ca.location") {
                props.push(("ssl.ca.location", "probe".to_string()));
            }
            props
        };
        match self.auth {
            AuthMode::None => Vec::new(),
            AuthMode::Tls => tls("SSL"),
            AuthMode::Scram => {
                let mut props = tls("SASL_SSL");
                props.push(("sasl.mechanism", "SCRAM-SHA-512".to_string()));
                if let Some(scram) = &self.scram {
                    props.push(("sasl.username", scram.username.clone()));
                    props.push(("sasl.password", scram.password.clone()));
                }
                props
            }
            AuthMode::Iam => {
                let mut props = tls("SASL_SSL");
                props.push(("sasl.mechanism", "OAUTHBEARER".to_string()));
                props
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<KafkaConfig, PropertyError> {
        KafkaConfig::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn reads_servers_prefix_and_passthrough_properties() {
        let config = config(&[
            (BOOTSTRAP_VAR, "b1:9096,b2:9096"),
            (TOPIC_PREFIX_VAR, "shop"),
            (
                PROPERTIES_VAR,
                "client.id=orders; socket.keepalive.enable=true;",
            ),
            (IDEMPOTENT_VAR, "false"),
        ])
        .unwrap();
        assert_eq!(config.bootstrap_servers, "b1:9096,b2:9096");
        assert_eq!(config.topics.dead_letter(), "shop.dead-letter");
        assert_eq!(
            config.properties,
            vec![
                ("client.id".to_string(), "orders".to_string()),
                ("socket.keepalive.enable".to_string(), "true".to_string())
            ]
        );
        assert!(!config.idempotent);
        assert_eq!(config.auth, AuthMode::None);
        assert!(config.auth_properties().is_empty());
        assert_eq!(
            KafkaConfig::from_lookup(|n| (n == PROPERTIES_VAR).then(|| "oops".to_string())),
            Err(PropertyError::Malformed("oops".into()))
        );
        assert_eq!(
            KafkaConfig::from_lookup(|_| None).unwrap(),
            KafkaConfig::default()
        );
    }

    #[test]
    fn a_secret_in_the_environment_is_refused() {
        for property in [
            "sasl.password=hunter2",
            "ssl.key.password=k3y",
            "sasl.oauthbearer.client.secret=s3cret",
        ] {
            let refused = config(&[(PROPERTIES_VAR, property)]).unwrap_err();
            assert!(matches!(refused, PropertyError::Secret(_)), "{refused}");
            assert!(!refused
                .to_string()
                .contains(property.split('=').nth(1).unwrap()));
        }
    }

    #[test]
    fn each_auth_mode_sets_its_protocol_over_tls_with_the_system_ca() {
        let get = |c: &KafkaConfig, name: &str| {
            c.auth_properties()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
        };
        let tls = config(&[(AUTH_VAR, "tls")]).unwrap();
        assert_eq!(get(&tls, "security.protocol").as_deref(), Some("SSL"));
        assert_eq!(get(&tls, "ssl.ca.location").as_deref(), Some("probe"));
        let iam = config(&[(AUTH_VAR, "IAM")]).unwrap();
        assert_eq!(get(&iam, "security.protocol").as_deref(), Some("SASL_SSL"));
        assert_eq!(get(&iam, "sasl.mechanism").as_deref(), Some("OAUTHBEARER"));
        let own_ca = config(&[
            (AUTH_VAR, "tls"),
            (PROPERTIES_VAR, "ssl.ca.location=/ca.pem"),
        ])
        .unwrap();
        assert_eq!(
            get(&own_ca, "ssl.ca.location"),
            None,
            "the environment's CA wins"
        );
        assert_eq!(config(&[(AUTH_VAR, "scram")]), Err(PropertyError::NoSecret));
        let scram = config(&[
            (AUTH_VAR, "scram"),
            (
                SECRET_ARN_VAR,
                "arn:aws:secretsmanager:eu-west-1:1:secret:AmazonMSK_x",
            ),
        ])
        .unwrap()
        .with_scram(ScramCredentials {
            username: "app".into(),
            password: "correct-horse".into(),
        });
        assert_eq!(
            get(&scram, "sasl.mechanism").as_deref(),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(
            get(&scram, "sasl.password").as_deref(),
            Some("correct-horse")
        );
        assert!(!format!("{scram:?}").contains("correct-horse"));
        assert!(matches!(
            config(&[(AUTH_VAR, "kerberos")]),
            Err(PropertyError::UnknownAuth(_))
        ));
        assert!(matches!(
            config(&[
                (AUTH_VAR, "iam"),
                (PROPERTIES_VAR, "security.protocol=PLAINTEXT")
            ]),
            Err(PropertyError::SetByAuth(_))
        ));
    }
}
