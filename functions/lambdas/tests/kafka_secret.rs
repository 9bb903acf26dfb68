//! The SCRAM credentials come from Secrets Manager at init (moto serves it locally: `make up`
//! starts it), are kept in memory only, and never reach an error or a log line; a missing or
//! malformed secret fails init with a clear message.

use sagaflow_dynamodb::aws_shared_config;
use sagaflow_kafka::config::{AuthMode, AUTH_VAR, BOOTSTRAP_VAR, SECRET_ARN_VAR};
use sagaflow_kafka::{EventPublisher, KafkaConfig};
use sagaflow_lambdas::kafka_auth::{read_scram_secret, resolve, KafkaAuthError};

const PASSWORD: &str = "correct-horse-battery-staple";

fn require_servers() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL_SECRETS_MANAGER").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER is not set: start the local servers with `make up`"
    );
}

async fn secret(name: &str, content: &str) -> (aws_sdk_secretsmanager::Client, String) {
    let client = aws_sdk_secretsmanager::Client::new(&aws_shared_config().await);
    let created = client
        .create_secret()
        .name(format!("{name}-{}", std::process::id()))
        .secret_string(content)
        .send()
        .await
        .expect("moto creates the secret");
    (client, created.arn().unwrap().to_string())
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn the_producer_is_built_from_the_secret_and_the_password_is_shown_nowhere() {
    require_servers();
    let (_, arn) = secret(
        "AmazonMSK_sagaflow",
        &format!(r#"{{"username":"sagaflow","password":"{PASSWORD}"}}"#),
    )
    .await;
    let kafka = KafkaConfig::from_lookup(|name| match name {
        BOOTSTRAP_VAR => Some("b-1.example:9096".into()),
        AUTH_VAR => Some("scram".into()),
        SECRET_ARN_VAR => Some(arn.clone()),
        _ => None,
    })
    .unwrap();
    let (kafka, tokens) = resolve(&aws_shared_config().await, kafka).await.unwrap();
    assert!(tokens.is_none());
    assert_eq!(kafka.auth, AuthMode::Scram);
    let scram = kafka.scram.as_ref().expect("read from the secret");
    assert_eq!(scram.username, "sagaflow");
    assert_eq!(scram.password, PASSWORD);
    assert!(!format!("{kafka:?}").contains(PASSWORD));
    let sent = kafka.auth_properties();
    assert!(sent.contains(&("sasl.password", PASSWORD.to_string())));
    assert!(sent.contains(&("security.protocol", "SASL_SSL".to_string())));
    assert!(EventPublisher::new(&kafka).is_ok());
}

#[ignore = "needs the local servers: `make up`, then `cargo test -- --ignored` (make test runs it)"]
#[tokio::test]
async fn a_missing_or_malformed_secret_fails_with_a_clear_message_that_quotes_nothing_of_it() {
    require_servers();
    let (client, _) = secret("present", "{}").await;
    let missing = read_scram_secret(&client, "AmazonMSK_nobody")
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, KafkaAuthError::Unreadable { reason, .. } if reason.contains("ResourceNotFoundException")),
        "{missing}"
    );
    assert!(
        missing.to_string().contains("AmazonMSK_nobody"),
        "{missing}"
    );
    for (n, content) in [
        format!("username=sagaflow password={PASSWORD}"),
        format!(r#"{{"user":"sagaflow","pass":"{PASSWORD}"}}"#),
        format!(r#"{{"username":"","password":"{PASSWORD}"}}"#),
    ]
    .iter()
    .enumerate()
    {
        let (client, arn) = secret(&format!("malformed-{n}"), content).await;
        let refused = read_scram_secret(&client, &arn).await.unwrap_err();
        assert!(
            matches!(refused, KafkaAuthError::Malformed { .. }),
            "{refused}"
        );
        assert!(!refused.to_string().contains(PASSWORD), "{refused}");
        assert!(!format!("{refused:?}").contains(PASSWORD));
    }
}
