//! The MSK IAM token against AWS's reference: the official MSK IAM SASL signer for Python
//! (`infra/tools.sh` installs it with freezegun in `~/.cache/sagaflow/signer-venv`), given the
//! same credentials, region and time, must sign the same request: host, action, credential
//! scope, signed headers, date, expiry, session token and the signature itself. Only the
//! `User-Agent` parameter, added after signing, names a different library.
//!
//! And a token source never signs with credentials that have expired: it asks its provider again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sagaflow_kafka::msk_iam::{msk_iam_token, MskTokenSource, TokenError};

fn reference_python() -> PathBuf {
    std::env::var_os("SAGAFLOW_SIGNER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("SAGAFLOW_CACHE").map_or_else(
                || {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/sagaflow")
                },
                PathBuf::from,
            );
            cache.join("signer-venv/bin/python")
        })
}

/// The decoded URL's host and path, and its query parameters.
fn parts(token: &str) -> (String, BTreeMap<String, String>) {
    let url = String::from_utf8(URL_SAFE_NO_PAD.decode(token).expect("base64url")).unwrap();
    let (base, query) = url.split_once('?').expect("a query");
    let params = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (base.to_string(), params)
}

#[ignore = "needs the reference signer: infra/tools.sh installs it (make test runs it)"]
#[test]
fn the_token_signs_the_same_request_as_awss_python_signer() {
    let python = reference_python();
    assert!(
        python.is_file(),
        "{} is missing: run infra/tools.sh",
        python.display()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/msk_iam_reference.py");
    for (region, session) in [("eu-west-1", "FwoGZXIvYXdzEXAMPLE+/="), ("us-east-1", "")] {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_651_723);
        let out = Command::new(&python)
            .args([
                script,
                region,
                "AKIAIOSFODNN7EXAMPLE",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                session,
                "2025-12-02T05:02:03Z",
            ])
            .output()
            .expect("the reference runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reference: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let credentials = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            (!session.is_empty()).then(|| session.to_string()),
            None,
            "fixed",
        );
        let ours = msk_iam_token(region, &credentials, at).unwrap();
        let (their_base, mut theirs) = parts(reference["token"].as_str().unwrap());
        let (our_base, mut mine) = parts(&ours.token);
        assert_eq!(our_base, their_base, "host and path");
        assert!(theirs
            .remove("User-Agent")
            .unwrap()
            .contains("aws-msk-iam-sasl-signer-python"));
        assert!(mine
            .remove("User-Agent")
            .unwrap()
            .starts_with("sagaflow-kafka/"));
        assert_eq!(
            mine, theirs,
            "every signed parameter, the signature included"
        );
        assert_eq!(mine["Action"], "kafka-cluster:Connect");
        assert_eq!(mine["X-Amz-SignedHeaders"], "host");
        assert_eq!(
            mine["X-Amz-Credential"],
            format!("AKIAIOSFODNN7EXAMPLE/20251202/{region}/kafka-cluster/aws4_request")
        );
        assert_eq!(
            mine.contains_key("X-Amz-Security-Token"),
            !session.is_empty()
        );
        assert_eq!(ours.lifetime_ms, reference["expiry_ms"].as_i64().unwrap());
    }
}

/// Hands out new credentials each time, valid for `valid` from `base`.
#[derive(Debug)]
struct Rotating {
    calls: Arc<AtomicU32>,
    base: SystemTime,
    valid: Duration,
}

impl ProvideCredentials for Rotating {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let expiry = self.base + self.valid * (n + 1);
        future::ProvideCredentials::ready(Ok(Credentials::new(
            format!("AKID{n}"),
            "secret",
            None,
            Some(expiry),
            "rotating",
        )))
    }
}

fn access_key(token: &str) -> String {
    let (_, params) = parts(token);
    params["X-Amz-Credential"]
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn credentials_are_kept_until_they_expire_and_then_fetched_again_not_reused() {
    let base = UNIX_EPOCH + Duration::from_secs(1_764_651_600);
    let calls = Arc::new(AtomicU32::new(0));
    let source = MskTokenSource::new(
        "eu-west-1",
        SharedCredentialsProvider::new(Rotating {
            calls: calls.clone(),
            base,
            valid: Duration::from_secs(600),
        }),
        tokio::runtime::Handle::current(),
    );
    let first = source.token_at(base).unwrap();
    assert_eq!(access_key(&first.token), "AKID0");
    assert_eq!(
        first.lifetime_ms,
        (1_764_651_600 + 600) * 1_000,
        "no longer than the credentials"
    );
    let later = source.token_at(base + Duration::from_secs(300)).unwrap();
    assert_eq!(access_key(&later.token), "AKID0", "still valid: kept");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let after = source.token_at(base + Duration::from_secs(601)).unwrap();
    assert_eq!(access_key(&after.token), "AKID1", "expired: fetched again");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(after.lifetime_ms, (1_764_651_600 + 1_200) * 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_provider_that_only_has_expired_credentials_gets_no_token() {
    let base = UNIX_EPOCH + Duration::from_secs(1_764_651_600);
    let source = MskTokenSource::new(
        "eu-west-1",
        SharedCredentialsProvider::new(Rotating {
            calls: Arc::default(),
            base: base - Duration::from_secs(7_200),
            valid: Duration::from_secs(60),
        }),
        tokio::runtime::Handle::current(),
    );
    assert!(matches!(source.token_at(base), Err(TokenError::Expired(_))));
}
