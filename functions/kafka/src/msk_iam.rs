//! The functions' producers on an MSK cluster with IAM access control: SASL/OAUTHBEARER with a
//! token that is a presigned `kafka-cluster:Connect` request, signed (SigV4, by AWS's own
//! `aws-sigv4`) with the function role's credentials from the SDK's provider chain. librdkafka
//! asks for a new token before the last one's lifetime ends; a token never outlives the
//! credentials it was signed with, and credentials that have expired are fetched again, never
//! reused.
//!
//! The token is what AWS's MSK IAM signers produce: the URL
//! `https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect` presigned for 900
//! seconds, a `User-Agent` parameter added after signing, base64url without padding.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// How long a presigned token is valid, as MSK's signers sign it.
pub const TOKEN_EXPIRY: Duration = Duration::from_secs(900);
/// Credentials this close to their expiry are fetched again before signing.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(30);
/// The token's `User-Agent` parameter.
const USER_AGENT: &str = concat!("sagaflow-kafka/", env!("CARGO_PKG_VERSION"));

/// A signed token and when librdkafka must have a new one.
#[derive(Clone, PartialEq, Eq)]
pub struct MskToken {
    /// The base64url token.
    pub token: String,
    /// When it stops being valid, in milliseconds since the Unix epoch: the presigned
    /// request's expiry, or the credentials' if they expire first.
    pub lifetime_ms: i64,
}

impl std::fmt::Debug for MskToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A token is a bearer credential for the cluster.
        f.debug_struct("MskToken")
            .field("token", &"<redacted>")
            .field("lifetime_ms", &self.lifetime_ms)
            .finish()
    }
}

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The provider chain had no credentials.
    #[error("no AWS credentials for the MSK IAM token")]
    Credentials(#[source] aws_credential_types::provider::error::CredentialsError),
    /// The provider handed out credentials that have already expired.
    #[error("the AWS credentials expired at {0:?} and the provider has no newer ones")]
    Expired(SystemTime),
    /// Signing failed (a malformed region, say).
    #[error("cannot sign the MSK IAM token: {0}")]
    Signing(String),
    /// The thread that asks the provider could not run.
    #[error("the credentials lookup did not finish: {0}")]
    Lookup(String),
}

/// The token for `region` signed with `credentials` at `now`.
pub fn msk_iam_token(
    region: &str,
    credentials: &Credentials,
    now: SystemTime,
) -> Result<MskToken, TokenError> {
    let url = format!("https://kafka.{region}.amazonaws.com/?Action=kafka-cluster%3AConnect");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_EXPIRY);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kafka-cluster")
        .time(now)
        .settings(settings)
        .build()
        .map_err(|e| TokenError::Signing(e.to_string()))?;
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| TokenError::Signing(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params.into())
        .map_err(|e| TokenError::Signing(e.to_string()))?
        .into_parts();
    let mut signed = url;
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in instructions.params() {
        query.append_pair(name, value);
    }
    query.append_pair("User-Agent", USER_AGENT);
    signed.push('&');
    signed.push_str(&query.finish());
    let signed_at = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    // X-Amz-Date has whole seconds; the expiry is counted from them, as MSK does.
    let presigned_until = (signed_at.as_secs() + TOKEN_EXPIRY.as_secs()) as i64 * 1_000;
    let credentials_until = credentials
        .expiry()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64);
    Ok(MskToken {
        token: URL_SAFE_NO_PAD.encode(signed.as_bytes()),
        lifetime_ms: credentials_until.map_or(presigned_until, |c| c.min(presigned_until)),
    })
}

/// Makes tokens for one region from a credentials provider, keeping the credentials until
/// they are about to expire.
pub struct MskTokenSource {
    region: String,
    provider: SharedCredentialsProvider,
    runtime: tokio::runtime::Handle,
    credentials: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for MskTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskTokenSource")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MskTokenSource {
    /// Tokens for `region`, credentials from `provider`, looked up on `runtime` (the provider
    /// chain is async; librdkafka asks from its own thread).
    pub fn new(
        region: impl Into<String>,
        provider: SharedCredentialsProvider,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            region: region.into(),
            provider,
            runtime,
            credentials: Mutex::new(None),
        }
    }

    /// The region the tokens are for.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// A token signed at `now`, with the kept credentials unless they expire within 30 s of
    /// it, in which case the provider is asked again; credentials it returns that have expired
    /// already are refused.
    pub fn token_at(&self, now: SystemTime) -> Result<MskToken, TokenError> {
        let fresh = |c: &Credentials| c.expiry().is_none_or(|e| e > now + CREDENTIALS_MARGIN);
        let kept = self
            .credentials
            .lock()
            .ok()
            .and_then(|kept| kept.clone())
            .filter(fresh);
        let credentials = match kept {
            Some(credentials) => credentials,
            None => {
                let fetched = self.fetch()?;
                if let Some(expiry) = fetched.expiry().filter(|e| *e <= now) {
                    return Err(TokenError::Expired(expiry));
                }
                if let Ok(mut kept) = self.credentials.lock() {
                    *kept = Some(fetched.clone());
                }
                fetched
            }
        };
        msk_iam_token(&self.region, &credentials, now)
    }

    /// Asks the provider on a thread of its own, so it can block on the runtime from any
    /// thread librdkafka calls from, a runtime worker included.
    fn fetch(&self) -> Result<Credentials, TokenError> {
        let provider = self.provider.clone();
        let runtime = self.runtime.clone();
        std::thread::scope(|scope| {
            scope
                .spawn(move || runtime.block_on(provider.provide_credentials()))
                .join()
                .map_err(|_| TokenError::Lookup("the lookup thread panicked".into()))?
                .map_err(TokenError::Credentials)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(token: &MskToken) -> String {
        String::from_utf8(URL_SAFE_NO_PAD.decode(&token.token).unwrap()).unwrap()
    }

    #[test]
    fn a_token_is_the_presigned_connect_request_and_lives_no_longer_than_its_credentials() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_651_600);
        let lasting = Credentials::new("AKIDEXAMPLE", "secret", Some("tok".into()), None, "t");
        let token = msk_iam_token("eu-west-1", &lasting, at).unwrap();
        let url = decoded(&token);
        assert!(
            url.starts_with(
                "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Credential=AKIDEXAMPLE%2F20251202%2Feu-west-1%2Fkafka-cluster%2Faws4_request",
            "X-Amz-Date=20251202T050000Z",
            "X-Amz-Expires=900",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Security-Token=tok",
            "X-Amz-Signature=",
            "User-Agent=sagaflow-kafka",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        assert_eq!(token.lifetime_ms, (1_764_651_600 + 900) * 1_000);
        let short = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            Some(at + Duration::from_secs(60)),
            "t",
        );
        let token = msk_iam_token("eu-west-1", &short, at).unwrap();
        assert_eq!(token.lifetime_ms, (1_764_651_600 + 60) * 1_000);
        assert!(!format!("{token:?}").contains(&token.token));
    }
}
