//! Who may use the console, and which requests may change something.
//!
//! - It listens on 127.0.0.1 unless told otherwise; on any other address it refuses to start
//!   without an access token, and then every request must carry it (once as `?token=`, which
//!   sets a same-site cookie, or as `Authorization: Bearer`).
//! - Requests must name the console's own host (`Host`), so a page on another name that
//!   resolves to this machine (DNS rebinding) is refused.
//! - A change (redrive) is a POST carrying the per-process form token, from a page of the
//!   console itself: an `Origin` or `Sec-Fetch-Site` that says otherwise is refused. So a page
//!   elsewhere in the operator's browser cannot redrive by itself, and reading never writes.

use std::io::Read;
use std::net::SocketAddr;

use crate::error::OperatorError;

/// The cookie the access token is kept in once given.
pub const TOKEN_COOKIE: &str = "sagaflow_console_token";

/// The shortest access token accepted: a guessable one protects nothing.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The access token is missing or wrong.
    #[error("this console needs its access token: open it with ?token=...")]
    NoAccess,
    /// The `Host` is not the console's.
    #[error("requests must be addressed to this console's host")]
    ForeignHost,
    /// A change came from another origin.
    #[error("a change must come from the console's own pages; this one came from {0}")]
    CrossOrigin(String),
    /// A change without the form token of this process.
    #[error("the form token is missing or stale: reload the page and try again")]
    BadFormToken,
}

/// What the console checks every request against.
#[derive(Clone)]
pub struct Guard {
    form_token: String,
    access_token: Option<String>,
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tokens are secrets: never in a log line.
        f.debug_struct("Guard")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// The request parts the guard reads.
#[derive(Clone, Debug, Default)]
pub struct Seen<'a> {
    /// `Host`.
    pub host: Option<&'a str>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Sec-Fetch-Site`.
    pub fetch_site: Option<&'a str>,
    /// `Cookie`.
    pub cookie: Option<&'a str>,
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    /// The `token` query value.
    pub query_token: Option<&'a str>,
}

impl Guard {
    /// The guard of a console at `address`, with its access token (required when the address
    /// is not a loopback one) and a fresh form token.
    pub fn new(address: SocketAddr, access_token: Option<String>) -> Result<Self, OperatorError> {
        let access_token = access_token.filter(|t| !t.is_empty());
        if let Some(token) = &access_token {
            if token.len() < MIN_TOKEN_LEN {
                return Err(OperatorError::Settings(format!(
                    "the console's access token must be at least {MIN_TOKEN_LEN} characters"
                )));
            }
        }
        if !address.ip().is_loopback() && access_token.is_none() {
            return Err(OperatorError::Settings(format!(
                "the console serves {address}, beyond this machine, only with an access token: \
                 pass --access-token or set SAGAFLOW_CONSOLE_TOKEN"
            )));
        }
        let port = address.port();
        let mut hosts = vec![address.to_string()];
        if address.ip().is_loopback() {
            hosts.push(format!("localhost:{port}"));
            hosts.push(format!("127.0.0.1:{port}"));
        }
        let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
        Ok(Self {
            form_token: random_token()?,
            access_token,
            hosts,
            origins,
        })
    }

    /// The token each change's form carries.
    pub fn form_token(&self) -> &str {
        &self.form_token
    }

    /// Whether an access token guards the console.
    pub fn needs_access_token(&self) -> bool {
        self.access_token.is_some()
    }

    /// May this request read? Also `Ok(true)` when it brought the access token in its query,
    /// which the response should keep in the cookie.
    pub fn admit(&self, seen: &Seen) -> Result<bool, Refusal> {
        if !seen
            .host
            .is_some_and(|h| self.hosts.iter().any(|k| k.eq_ignore_ascii_case(h)))
        {
            return Err(Refusal::ForeignHost);
        }
        let Some(token) = &self.access_token else {
            return Ok(false);
        };
        if seen.query_token.is_some_and(|t| same(t, token)) {
            return Ok(true);
        }
        let bearer = seen
            .authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .is_some_and(|t| same(t.trim(), token));
        let cookie = seen.cookie.is_some_and(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().split_once('='))
                .any(|(k, v)| k == TOKEN_COOKIE && same(v, token))
        });
        if bearer || cookie {
            Ok(false)
        } else {
            Err(Refusal::NoAccess)
        }
    }

    /// May this admitted POST change something? It must come from the console's own origin
    /// and carry this process's form token.
    pub fn allow_change(&self, seen: &Seen, form_token: Option<&str>) -> Result<(), Refusal> {
        if let Some(origin) = seen.origin {
            if !self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                return Err(Refusal::CrossOrigin(origin.to_string()));
            }
        }
        if let Some(site) = seen.fetch_site {
            if !matches!(site, "same-origin" | "none") {
                return Err(Refusal::CrossOrigin(format!("a {site} page")));
            }
        }
        if form_token.is_some_and(|t| same(t, &self.form_token)) {
            Ok(())
        } else {
            Err(Refusal::BadFormToken)
        }
    }

    /// The `Set-Cookie` that keeps the access token.
    pub fn token_cookie(&self) -> Option<String> {
        self.access_token
            .as_ref()
            .map(|t| format!("{TOKEN_COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict"))
    }
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// 32 random bytes from the system, in hex.
fn random_token() -> Result<String, OperatorError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| OperatorError::Settings(format!("cannot draw a random token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> Guard {
        Guard::new("127.0.0.1:8080".parse().unwrap(), None).unwrap()
    }

    fn seen(host: &str) -> Seen<'_> {
        Seen {
            host: Some(host),
            ..Seen::default()
        }
    }

    #[test]
    fn another_address_needs_a_long_enough_access_token() {
        let wide: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(Guard::new(wide, None).is_err());
        assert!(Guard::new(wide, Some("short".into())).is_err());
        let guard = Guard::new(wide, Some("a-token-of-twenty-chars".into())).unwrap();
        assert_eq!(guard.admit(&seen("0.0.0.0:8080")), Err(Refusal::NoAccess));
        let with_query = Seen {
            query_token: Some("a-token-of-twenty-chars"),
            ..seen("0.0.0.0:8080")
        };
        assert_eq!(guard.admit(&with_query), Ok(true));
        let cookie = format!("a=b; {TOKEN_COOKIE}=a-token-of-twenty-chars");
        let with_cookie = Seen {
            cookie: Some(&cookie),
            ..seen("0.0.0.0:8080")
        };
        assert_eq!(guard.admit(&with_cookie), Ok(false));
        let wrong = Seen {
            authorization: Some("Bearer a-token-of-twenty-charz"),
            ..seen("0.0.0.0:8080")
        };
        assert_eq!(guard.admit(&wrong), Err(Refusal::NoAccess));
    }

    #[test]
    fn a_request_for_another_host_is_refused() {
        let guard = local();
        assert_eq!(guard.admit(&seen("127.0.0.1:8080")), Ok(false));
        assert_eq!(guard.admit(&seen("localhost:8080")), Ok(false));
        assert_eq!(
            guard.admit(&seen("evil.example:8080")),
            Err(Refusal::ForeignHost)
        );
        assert_eq!(guard.admit(&Seen::default()), Err(Refusal::ForeignHost));
    }

    #[test]
    fn a_change_needs_the_form_token_and_the_consoles_origin() {
        let guard = local();
        let token = guard.form_token().to_string();
        let own = Seen {
            origin: Some("http://127.0.0.1:8080"),
            fetch_site: Some("same-origin"),
            ..seen("127.0.0.1:8080")
        };
        assert_eq!(guard.allow_change(&own, Some(&token)), Ok(()));
        assert_eq!(guard.allow_change(&own, None), Err(Refusal::BadFormToken));
        assert_eq!(
            guard.allow_change(&own, Some("0")),
            Err(Refusal::BadFormToken)
        );
        let foreign = Seen {
            origin: Some("http://evil.example"),
            ..seen("127.0.0.1:8080")
        };
        assert!(matches!(
            guard.allow_change(&foreign, Some(&token)),
            Err(Refusal::CrossOrigin(_))
        ));
        let cross_site = Seen {
            fetch_site: Some("cross-site"),
            ..seen("127.0.0.1:8080")
        };
        assert!(matches!(
            guard.allow_change(&cross_site, Some(&token)),
            Err(Refusal::CrossOrigin(_))
        ));
    }

    #[test]
    fn each_console_draws_its_own_form_token() {
        assert_ne!(local().form_token(), local().form_token());
        assert_eq!(local().form_token().len(), 64);
    }
}
