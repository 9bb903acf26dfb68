//! What the producers authenticate with, resolved at init from the mode the environment names
//! (`SAGAFLOW_KAFKA_AUTH`): for SCRAM, the username and password read once from the Secrets
//! Manager secret the event source mappings use too (`SAGAFLOW_KAFKA_SECRET_ARN`), kept in
//! memory only; for IAM, a token source over the function role's credentials. Nothing secret
//! is ever in the environment, and no error or log line quotes a secret's content.

use std::sync::Arc;

use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use sagaflow_kafka::config::{AuthMode, ScramCredentials};
use sagaflow_kafka::msk_iam::MskTokenSource;
use sagaflow_kafka::KafkaConfig;

/// Why the producers' credentials could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum KafkaAuthError {
    /// The secret could not be read: missing, not allowed, or the service unreachable.
    #[error("cannot read the Kafka secret {secret}: {reason}")]
    Unreadable {
        /// The secret's ARN or name.
        secret: String,
        /// The service's error code and message (never the secret's content).
        reason: String,
    },
    /// The secret holds no string, or one that is not `{"username": ..., "password": ...}`.
    #[error("the Kafka secret {secret} is not a JSON object with string `username` and `password` (as MSK's SCRAM secrets are)")]
    Malformed {
        /// The secret's ARN or name.
        secret: String,
    },
    /// IAM auth without a region to sign for.
    #[error("SAGAFLOW_KAFKA_AUTH=iam needs a region (AWS_REGION) to sign the MSK tokens for")]
    NoRegion,
    /// IAM auth without a credentials provider.
    #[error("SAGAFLOW_KAFKA_AUTH=iam needs AWS credentials, and the provider chain has none")]
    NoCredentials,
}

/// `kafka` with what its mode needs: the SCRAM credentials read now, or the IAM token source.
pub async fn resolve(
    shared: &aws_config::SdkConfig,
    kafka: KafkaConfig,
) -> Result<(KafkaConfig, Option<Arc<MskTokenSource>>), KafkaAuthError> {
    match kafka.auth {
        AuthMode::Scram => {
            let secret = kafka.secret_arn.clone().unwrap_or_default();
            let client = aws_sdk_secretsmanager::Client::new(shared);
            let credentials = read_scram_secret(&client, &secret).await?;
            Ok((kafka.with_scram(credentials), None))
        }
        AuthMode::Iam => {
            let region = shared.region().ok_or(KafkaAuthError::NoRegion)?;
            let provider = shared
                .credentials_provider()
                .ok_or(KafkaAuthError::NoCredentials)?;
            let tokens = MskTokenSource::new(
                region.to_string(),
                provider,
                tokio::runtime::Handle::current(),
            );
            Ok((kafka, Some(Arc::new(tokens))))
        }
        AuthMode::None | AuthMode::Tls => Ok((kafka, None)),
    }
}

/// The SCRAM username and password in `secret`.
pub async fn read_scram_secret(
    client: &aws_sdk_secretsmanager::Client,
    secret: &str,
) -> Result<ScramCredentials, KafkaAuthError> {
    let value = client
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| KafkaAuthError::Unreadable {
            secret: secret.to_string(),
            reason: match &e {
                SdkError::ServiceError(service) => format!(
                    "{}: {}",
                    service.err().code().unwrap_or("error"),
                    service.err().message().unwrap_or("")
                ),
                other => other.to_string(),
            },
        })?;
    let malformed = || KafkaAuthError::Malformed {
        secret: secret.to_string(),
    };
    let text = value.secret_string().ok_or_else(malformed)?;
    // The decoder's own error would quote the content; it is dropped for that reason.
    serde_json::from_str::<ScramCredentials>(text)
        .ok()
        .filter(|c| !c.username.is_empty() && !c.password.is_empty())
        .ok_or_else(malformed)
}
