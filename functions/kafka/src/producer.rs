//! The producer: idempotent, `acks=all`, records of one key sent in order.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use crate::config::{AuthMode, KafkaConfig};
use crate::msk_iam::MskTokenSource;
use sagaflow_records::{OutboundRecord, PublishFailure, PublishFuture, Publisher};

/// Why records could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The producer could not be created from the configuration.
    #[error("cannot create the Kafka producer: {0}")]
    Setup(KafkaError),
    /// The authentication mode lacks what it needs.
    #[error("cannot create the Kafka producer: {0}")]
    Auth(&'static str),
    /// A record was not acknowledged; it and the ones after it must be sent again.
    #[error("record {index} to {topic} (key {key}) not acknowledged: {error}")]
    Delivery {
        /// Position of the first failed record in the batch.
        index: usize,
        /// Its topic.
        topic: String,
        /// Its key.
        key: String,
        /// What the client said.
        error: Box<KafkaError>,
    },
    /// The broker could not be reached while warming up.
    #[error("cannot reach Kafka: {0}")]
    Unreachable(KafkaError),
}

/// The client context of sagaflow's Kafka clients: with IAM, it answers librdkafka's token
/// refreshes.
#[derive(Debug, Default)]
pub struct AuthContext {
    tokens: Option<Arc<MskTokenSource>>,
}

impl AuthContext {
    /// A context signing MSK IAM tokens with `tokens`, when given.
    pub fn new(tokens: Option<Arc<MskTokenSource>>) -> Self {
        Self { tokens }
    }
}

impl rdkafka::consumer::ConsumerContext for AuthContext {}

impl ClientContext for AuthContext {
    // librdkafka calls back only when the mechanism is OAUTHBEARER.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let tokens = self
            .tokens
            .as_ref()
            .ok_or("OAUTHBEARER without an MSK IAM token source: set SAGAFLOW_KAFKA_AUTH=iam")?;
        let token = tokens.token_at(SystemTime::now()).inspect_err(|e| {
            tracing::warn!(reason = %e, "no MSK IAM token; librdkafka asks again");
        })?;
        Ok(OAuthToken {
            token: token.token,
            // MSK reads the principal from the signed request, not from here.
            principal_name: String::new(),
            lifetime_ms: token.lifetime_ms,
        })
    }
}

/// Publishes records and waits until the broker has them all.
#[derive(Clone)]
pub struct EventPublisher {
    producer: FutureProducer<AuthContext>,
    delivery_timeout: Duration,
}

impl EventPublisher {
    /// A publisher with `config`'s servers, authentication and properties; for
    /// [`AuthMode::Iam`] use [`EventPublisher::with_tokens`].
    pub fn new(config: &KafkaConfig) -> Result<Self, PublishError> {
        Self::with_tokens(config, None)
    }

    /// A publisher that signs its MSK IAM tokens with `tokens` (needed for, and only used
    /// by, [`AuthMode::Iam`]).
    pub fn with_tokens(
        config: &KafkaConfig,
        tokens: Option<Arc<MskTokenSource>>,
    ) -> Result<Self, PublishError> {
        match config.auth {
            AuthMode::Iam if tokens.is_none() => {
                return Err(PublishError::Auth("IAM auth needs an MSK IAM token source"))
            }
            AuthMode::Scram if config.scram.is_none() => {
                return Err(PublishError::Auth(
                    "SCRAM auth needs the credentials read from its secret",
                ))
            }
            _ => {}
        }
        let mut client = config.client_config();
        client
            .set("acks", "all")
            .set(
                "enable.idempotence",
                if config.idempotent { "true" } else { "false" },
            )
            // With idempotence librdkafka keeps order per partition for up to 5 in flight;
            // without it, one in flight is the only way to keep a key's records in order.
            .set(
                "max.in.flight.requests.per.connection",
                if config.idempotent { "5" } else { "1" },
            )
            .set("message.timeout.ms", "30000")
            .set("linger.ms", "5");
        for (name, value) in &config.properties {
            client.set(name, value);
        }
        let producer = client
            .create_with_context(AuthContext::new(tokens))
            .map_err(PublishError::Setup)?;
        Ok(Self {
            producer,
            delivery_timeout: Duration::from_secs(30),
        })
    }

    /// Opens the connections now (during a function's init) rather than on the first record.
    pub async fn warm(&self) -> Result<(), PublishError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|_| ())
        })
        .await
        .map_err(|_| PublishError::Unreachable(KafkaError::Canceled))?
        .map_err(PublishError::Unreachable)
    }

    /// Sends every record, in order, and returns once all are acknowledged. On an error the
    /// records before the failed one's `index` were acknowledged.
    pub async fn publish(&self, records: &[OutboundRecord]) -> Result<(), PublishError> {
        // Enqueue all first, so they travel in few requests, then wait for every ack.
        // `FutureProducer::send` is an `async fn` that enqueues only when awaited (one round
        // trip per record); `send_result` enqueues at once.
        let queued_until = Instant::now() + self.delivery_timeout;
        let mut pending = Vec::with_capacity(records.len());
        for (index, record) in records.iter().enumerate() {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(Header {
                    key: name,
                    value: Some(value),
                });
            }
            let mut next = FutureRecord::to(&record.topic)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers);
            let enqueued = loop {
                match self.producer.send_result(next) {
                    Ok(delivery) => break Ok(delivery),
                    // The client's local queue is full: let what is queued drain.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < queued_until =>
                    {
                        next = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => break Err(error),
                }
            };
            match enqueued {
                Ok(delivery) => pending.push(delivery),
                Err(error) => {
                    // Settle the ones already queued first, so the error's index keeps its
                    // meaning: everything before it was acknowledged.
                    acknowledged(pending, records).await?;
                    return Err(delivery_error(index, record, error));
                }
            }
        }
        acknowledged(pending, records).await
    }
}

impl PublishError {
    /// Position of the first record not acknowledged: every record before it was.
    pub fn first_unacknowledged(&self) -> usize {
        match self {
            PublishError::Delivery { index, .. } => *index,
            PublishError::Setup(_) | PublishError::Auth(_) | PublishError::Unreachable(_) => 0,
        }
    }
}

impl Publisher for EventPublisher {
    fn publish<'a>(&'a self, records: &'a [OutboundRecord]) -> PublishFuture<'a> {
        Box::pin(async move {
            EventPublisher::publish(self, records)
                .await
                .map_err(|error| PublishFailure {
                    index: error.first_unacknowledged(),
                    source: Box::new(error),
                })
        })
    }
}

/// Waits for the acks of `pending`, the deliveries of the first records of `records`.
async fn acknowledged(
    pending: Vec<DeliveryFuture>,
    records: &[OutboundRecord],
) -> Result<(), PublishError> {
    for ((index, delivery), record) in pending.into_iter().enumerate().zip(records) {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => return Err(delivery_error(index, record, error)),
            // The producer dropped the delivery report (it is shutting down).
            Err(_) => return Err(delivery_error(index, record, KafkaError::Canceled)),
        }
    }
    Ok(())
}

fn delivery_error(index: usize, record: &OutboundRecord, error: KafkaError) -> PublishError {
    PublishError::Delivery {
        index,
        topic: record.topic.clone(),
        key: record.key.clone(),
        error: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ScramCredentials, AUTH_VAR, BOOTSTRAP_VAR, SECRET_ARN_VAR};
    use aws_credential_types::provider::SharedCredentialsProvider;
    use aws_credential_types::Credentials;

    fn config(auth: &str, port: u16) -> KafkaConfig {
        KafkaConfig::from_lookup(|name| match name {
            BOOTSTRAP_VAR => Some(format!("b-1.example:{port}")),
            AUTH_VAR => Some(auth.into()),
            SECRET_ARN_VAR => Some("AmazonMSK_sagaflow".into()),
            _ => None,
        })
        .unwrap()
    }

    /// MSK needs TLS for every mode but plaintext: librdkafka refuses these settings when it
    /// was built without TLS or SASL, so creating the producer proves the build can reach them.
    #[tokio::test]
    async fn the_producer_takes_each_msk_auth_mode_and_refuses_one_without_its_credentials() {
        let scram = config("scram", 9096);
        assert!(matches!(
            EventPublisher::new(&scram),
            Err(PublishError::Auth(_))
        ));
        let scram = scram.with_scram(ScramCredentials {
            username: "app".into(),
            password: "secret".into(),
        });
        if let Err(e) = EventPublisher::new(&scram) {
            panic!("TLS with SASL/SCRAM must be available: {e}");
        }
        let iam = config("iam", 9098);
        assert!(matches!(
            EventPublisher::new(&iam),
            Err(PublishError::Auth(_))
        ));
        let tokens = MskTokenSource::new(
            "eu-west-1",
            SharedCredentialsProvider::new(Credentials::new("AKID", "s", None, None, "t")),
            tokio::runtime::Handle::current(),
        );
        if let Err(e) = EventPublisher::with_tokens(&iam, Some(Arc::new(tokens))) {
            panic!("TLS with SASL/OAUTHBEARER must be available: {e}");
        }
        if let Err(e) = EventPublisher::new(&config("tls", 9094)) {
            panic!("TLS must be available: {e}");
        }
    }

    /// Counts the credential lookups librdkafka's token refreshes cause.
    #[derive(Debug)]
    struct Counting(Arc<std::sync::atomic::AtomicU32>);

    impl aws_credential_types::provider::ProvideCredentials for Counting {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                "AKID", "s", None, None, "counting",
            )))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_iam_librdkafka_asks_the_token_source_for_its_first_token() {
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let tokens = MskTokenSource::new(
            "eu-west-1",
            SharedCredentialsProvider::new(Counting(calls.clone())),
            tokio::runtime::Handle::current(),
        );
        // No broker answers there: the token is asked for before any connection.
        let mut iam = config("iam", 9098);
        iam.bootstrap_servers = "127.0.0.1:1".into();
        let publisher = EventPublisher::with_tokens(&iam, Some(Arc::new(tokens))).unwrap();
        let asked = async {
            while calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), asked)
            .await
            .expect("librdkafka asked for a token");
        drop(publisher);
    }
}
