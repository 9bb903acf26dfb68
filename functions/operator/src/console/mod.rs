//! `sagaflow console`: the web console, served on 127.0.0.1 by default. Pages are rendered on
//! the server from the same reads as the commands (orders, one order's timeline as a swimlane,
//! sagas by status, dead letters with a redrive that asks first, analytics as charts); they
//! carry no script and load nothing from elsewhere. [`guard`] says who may read and what may
//! change something.

pub mod charts;
pub mod guard;
pub mod html;
pub mod pages;
pub mod swimlane;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION, SET_COOKIE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use percent_encoding::percent_decode_str;
use tokio::net::TcpListener;

use crate::console::guard::{Guard, Refusal, Seen};
use crate::console::pages::{Page, RedriveState};
use crate::deployment::Deployment;
use crate::error::OperatorError;
use crate::letters::{self, Filter, Letter};
use crate::orders::{self, OrderFilter};
use crate::sagas::{self, SagaStatus};
use crate::time::parse_duration;
use crate::timeline;

/// The largest form body read: a redrive form is a few dozen bytes.
const MAX_FORM: usize = 16 * 1024;

/// What each response says about itself: nothing from elsewhere may load, no page may frame it,
/// forms post only to it.
const SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console of one deployment.
pub struct Console {
    deployment: Deployment,
    guard: Guard,
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/`: to the orders.
    Home,
    /// `GET /orders`.
    Orders,
    /// `GET /orders/{id}`.
    Order(String),
    /// `GET /sagas`.
    Sagas,
    /// `GET /dead-letters`.
    Letters,
    /// `GET /dead-letters/{id}`.
    Letter(String),
    /// `GET /dead-letters/{id}/redrive`: the confirmation.
    ConfirmRedrive(String),
    /// `POST /dead-letters/{id}/redrive`.
    Redrive(String),
    /// `GET /analytics`.
    Analytics,
    /// A path the console does not have.
    NotFound,
    /// A known path with a method it does not take.
    WrongMethod,
}

/// The route of `method` and `path` (segments percent-decoded).
pub fn route(method: &Method, path: &str) -> Route {
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let parts: Vec<&str> = segments.iter().map(String::as_str).collect();
    let get = method == Method::GET || method == Method::HEAD;
    let (wanted, found) = match parts.as_slice() {
        [] => (get, Route::Home),
        ["orders"] => (get, Route::Orders),
        ["orders", id] => (get, Route::Order(id.to_string())),
        ["sagas"] => (get, Route::Sagas),
        ["dead-letters"] => (get, Route::Letters),
        ["dead-letters", id] => (get, Route::Letter(id.to_string())),
        ["dead-letters", id, "redrive"] if method == Method::POST => {
            (true, Route::Redrive(id.to_string()))
        }
        ["dead-letters", id, "redrive"] => (get, Route::ConfirmRedrive(id.to_string())),
        ["analytics"] => (get, Route::Analytics),
        _ => return Route::NotFound,
    };
    if wanted {
        found
    } else {
        Route::WrongMethod
    }
}

fn query_of(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, v)| k == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
}

fn header<'a>(request: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A response of `status` with `body` and the console's headers.
fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with the console's own forms,
    // which the guard must refuse.
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cache-control", HeaderValue::from_static("no-store"));
    response
}

fn see_other(location: &str) -> Response<Full<Bytes>> {
    let mut response = respond(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        String::new(),
    );
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

/// The status an operator error is served with.
fn status_of(error: &OperatorError) -> StatusCode {
    match error {
        OperatorError::MalformedOrderId(_)
        | OperatorError::MalformedLetterId(_)
        | OperatorError::MalformedDuration(_) => StatusCode::BAD_REQUEST,
        OperatorError::UnknownOrder { .. } | OperatorError::NoSuchLetter { .. } => {
            StatusCode::NOT_FOUND
        }
        OperatorError::AlreadyRedriven { .. } | OperatorError::NotRedrivable { .. } => {
            StatusCode::CONFLICT
        }
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl Console {
    /// The console of `deployment`, guarded by `guard`.
    pub fn new(deployment: Deployment, guard: Guard) -> Self {
        Self { deployment, guard }
    }

    /// Serves `listener` until the process ends, each connection on its own task.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> Result<(), OperatorError> {
        loop {
            let (stream, _) = listener.accept().await.map_err(|e| {
                OperatorError::Settings(format!("the console stopped listening: {e}"))
            })?;
            let console = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let console = console.clone();
                    async move { Ok::<_, Infallible>(console.handle(request).await) }
                });
                // A client that goes away mid-request ends only its own connection.
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    fn page(&self, status: StatusCode, page: Page) -> Response<Full<Bytes>> {
        let html = html::page(
            &page.title,
            page.section,
            &format!(
                "{} · {}",
                self.deployment.table, self.deployment.kafka.bootstrap_servers
            ),
            &page.body,
        );
        respond(status, "text/html; charset=utf-8", html)
    }

    fn problem(&self, error: &OperatorError) -> Response<Full<Bytes>> {
        self.page(
            status_of(error),
            pages::problem("Cannot show this", &error.to_string()),
        )
    }

    fn refused(&self, refusal: &Refusal) -> Response<Full<Bytes>> {
        let status = match refusal {
            Refusal::NoAccess => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        self.page(status, pages::problem("Refused", &refusal.to_string()))
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let query = query_of(request.uri().query());
        let seen = Seen {
            host: header(&request, "host"),
            origin: header(&request, "origin"),
            fetch_site: header(&request, "sec-fetch-site"),
            cookie: header(&request, "cookie"),
            authorization: header(&request, "authorization"),
            query_token: value(&query, "token"),
        };
        let brought_token = match self.guard.admit(&seen) {
            Ok(brought) => brought,
            Err(refusal) => return self.refused(&refusal),
        };
        if brought_token {
            // The token goes into a cookie and out of the address bar and the history.
            let kept: Vec<(String, String)> = query
                .iter()
                .filter(|(k, _)| k != "token")
                .cloned()
                .collect();
            let mut location = request.uri().path().to_string();
            if !kept.is_empty() {
                location.push('?');
                location.push_str(
                    &form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(kept)
                        .finish(),
                );
            }
            let mut response = see_other(&location);
            if let Some(cookie) = self
                .guard
                .token_cookie()
                .and_then(|c| HeaderValue::from_str(&c).ok())
            {
                response.headers_mut().insert(SET_COOKIE, cookie);
            }
            return response;
        }
        let seen_owned = (
            seen.origin.map(str::to_string),
            seen.fetch_site.map(str::to_string),
        );
        match route(request.method(), request.uri().path()) {
            Route::Home => see_other("/orders"),
            Route::Orders => self.orders(&query).await,
            Route::Order(id) => self.order(&id).await,
            Route::Sagas => self.sagas(&query).await,
            Route::Letters => self.letters(&query).await,
            Route::Letter(id) => {
                self.letter(&id, value(&query, "redriven").is_some(), false)
                    .await
            }
            Route::ConfirmRedrive(id) => self.letter(&id, false, true).await,
            Route::Redrive(id) => {
                let form = match Limited::new(request.into_body(), MAX_FORM).collect().await {
                    Ok(body) => query_of(std::str::from_utf8(&body.to_bytes()).ok()),
                    Err(_) => Vec::new(),
                };
                let seen = Seen {
                    origin: seen_owned.0.as_deref(),
                    fetch_site: seen_owned.1.as_deref(),
                    ..Seen::default()
                };
                if let Err(refusal) = self.guard.allow_change(&seen, value(&form, "form_token")) {
                    return self.refused(&refusal);
                }
                self.redrive(&id).await
            }
            Route::Analytics => self.analytics().await,
            Route::NotFound => self.page(
                StatusCode::NOT_FOUND,
                pages::problem("Not here", "the console has no such page"),
            ),
            Route::WrongMethod => self.page(
                StatusCode::METHOD_NOT_ALLOWED,
                pages::problem("Not like this", "this page does not take that method"),
            ),
        }
    }

    async fn orders(&self, query: &[(String, String)]) -> Response<Full<Bytes>> {
        let older_text = value(query, "older_than").unwrap_or("");
        let older = match value(query, "older_than").map(parse_duration).transpose() {
            Ok(d) => d,
            Err(e) => return self.problem(&e),
        };
        let filter = OrderFilter {
            status: value(query, "status").map(str::to_string),
            flow: value(query, "flow").map(str::to_string),
            older_than_ms: older.map(|d| d.as_millis() as i64),
        };
        match orders::list(&self.deployment.store).await {
            Ok(rows) => self.page(
                StatusCode::OK,
                pages::orders(&rows, &filter, older_text, now_ms()),
            ),
            Err(e) => self.problem(&e),
        }
    }

    async fn order(&self, id: &str) -> Response<Full<Bytes>> {
        if let Err(e) = timeline::check_order_id(id) {
            return self.problem(&e);
        }
        let timeline = match timeline::timeline(&self.deployment.store, id).await {
            Ok(t) => t,
            Err(e) => return self.problem(&e),
        };
        // The timeline stands without Kafka: an unreachable broker only leaves the letters out.
        let letters: Result<Vec<Letter>, OperatorError> =
            self.deployment.letters().await.map(|all| {
                all.into_iter()
                    .filter(|l| l.correlation_id.as_deref() == Some(id))
                    .collect()
            });
        let page = pages::order(&timeline, letters.as_deref());
        self.page(StatusCode::OK, page)
    }

    async fn sagas(&self, query: &[(String, String)]) -> Response<Full<Bytes>> {
        let status_text = value(query, "status");
        let status = match status_text.map(|s| <SagaStatus as clap::ValueEnum>::from_str(s, true)) {
            Some(Err(_)) => {
                return self.problem(&OperatorError::Settings(format!(
                    "`{}` is not a saga status: running, compensating, compensation-failed or cancelled",
                    status_text.unwrap_or_default()
                )))
            }
            Some(Ok(s)) => Some(s),
            None => None,
        };
        let store = Arc::new(self.deployment.store.clone());
        match sagas::list(store, &self.deployment.dynamodb, status, 0, now_ms()).await {
            Ok(rows) => self.page(StatusCode::OK, pages::sagas(&rows, status_text)),
            Err(e) => self.problem(&e),
        }
    }

    async fn letters(&self, query: &[(String, String)]) -> Response<Full<Bytes>> {
        let since = match value(query, "since").map(parse_duration).transpose() {
            Ok(d) => d,
            Err(e) => return self.problem(&e),
        };
        let filter = Filter {
            since,
            reason: value(query, "reason").map(str::to_string),
            topic: value(query, "topic").map(str::to_string),
        };
        let now = now_ms();
        let kept: Vec<Letter> = match self.deployment.letters().await {
            Ok(all) => all.into_iter().filter(|l| filter.keeps(l, now)).collect(),
            Err(e) => return self.problem(&e),
        };
        let ids: Vec<String> = kept.iter().map(|l| l.id.clone()).collect();
        let redriven: HashSet<String> = match letters::redriven_of(
            &self.deployment.dynamodb,
            &self.deployment.table,
            &self.deployment.dead_letter_topic(),
            &ids,
        )
        .await
        {
            Ok(done) => done,
            Err(e) => return self.problem(&e),
        };
        let redriven: Vec<String> = redriven.into_iter().collect();
        self.page(
            StatusCode::OK,
            pages::letters(
                &self.deployment.dead_letter_topic(),
                &kept,
                &redriven,
                value(query, "reason").unwrap_or(""),
                value(query, "topic").unwrap_or(""),
                value(query, "since").unwrap_or(""),
            ),
        )
    }

    async fn letter(&self, id: &str, just_redriven: bool, confirm: bool) -> Response<Full<Bytes>> {
        let letter = match self.deployment.letter(id).await {
            Ok(l) => l,
            Err(e) => return self.problem(&e),
        };
        let topic = self.deployment.dead_letter_topic();
        let state = match letter.not_redrivable {
            Some(why) => RedriveState::Impossible(why),
            None => match letters::redriven_at(
                &self.deployment.dynamodb,
                &self.deployment.table,
                &topic,
                id,
            )
            .await
            {
                Ok(Some(at_ms)) => RedriveState::Done {
                    at_ms,
                    now: just_redriven,
                },
                Ok(None) => RedriveState::Possible,
                Err(e) => return self.problem(&e),
            },
        };
        self.page(
            StatusCode::OK,
            pages::letter(&topic, &letter, &state, self.guard.form_token(), confirm),
        )
    }

    async fn redrive(&self, id: &str) -> Response<Full<Bytes>> {
        let letter = match self.deployment.letter(id).await {
            Ok(l) => l,
            Err(e) => return self.problem(&e),
        };
        let publisher = match self.deployment.publisher() {
            Ok(p) => p,
            Err(e) => return self.problem(&e),
        };
        let topic = self.deployment.dead_letter_topic();
        match letters::redrive(
            &letter,
            &topic,
            &self.deployment.dynamodb,
            &self.deployment.table,
            &publisher,
            now_ms(),
        )
        .await
        {
            Ok(source) => {
                eprintln!("console: redriven {} to {}", letter.id, source.topic);
                see_other(&format!("/dead-letters/{}?redriven=1", html::encode(id)))
            }
            Err(e) => self.problem(&e),
        }
    }

    async fn analytics(&self) -> Response<Full<Bytes>> {
        let live = self.deployment.analytics();
        match crate::replay::live_summary(&live).await {
            Ok(summary) => self.page(
                StatusCode::OK,
                pages::analytics(&self.deployment.analytics_table, &summary),
            ),
            Err(e) => self.problem(&e),
        }
    }
}

fn now_ms() -> i64 {
    sagaflow_handlers::clock::now().as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_their_pages_and_only_a_post_redrives() {
        assert_eq!(route(&Method::GET, "/"), Route::Home);
        assert_eq!(
            route(&Method::GET, "/orders/ord-1"),
            Route::Order("ord-1".into())
        );
        assert_eq!(
            route(&Method::GET, "/dead-letters/0%3A12"),
            Route::Letter("0:12".into())
        );
        assert_eq!(
            route(&Method::GET, "/dead-letters/0:12/redrive"),
            Route::ConfirmRedrive("0:12".into())
        );
        assert_eq!(
            route(&Method::POST, "/dead-letters/0:12/redrive"),
            Route::Redrive("0:12".into())
        );
        assert_eq!(route(&Method::POST, "/orders"), Route::WrongMethod);
        assert_eq!(
            route(&Method::DELETE, "/dead-letters/0:1/redrive"),
            Route::WrongMethod
        );
        assert_eq!(route(&Method::GET, "/etc/passwd"), Route::NotFound);
    }
}
