//! `sagaflow console` in a real browser (Debian's chromium, driven over WebDriver by
//! chromedriver and fantoccini) against the local servers after a seeded run: the orders page
//! lists the run's orders; an order's swimlane has one mark per event in the lane of its
//! stream, with its compensations marked; the dead-letter page redrives a letter after asking,
//! and the letter's record reaches its topic once; a page of another origin cannot redrive;
//! reading never writes; the analytics charts show the live read model. Each page is saved as
//! a screenshot under `target/console-screenshots/`, at 1280x800 and at a phone's width.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use sagaflow_eventsourcing::command::{command_id_for, CommandEnvelope};
use sagaflow_local_trigger::{LocalSystem, LocalSystemConfig};
use sagaflow_orders::domain::{Address, CreateOrder, Flow, Money, OrderLine};
use sagaflow_orders::projection::AnalyticsStore;
use sagaflow_records::command_record;
use serde_json::{json, Value};

/// Where `dev/scripts/browser.sh` installs them; `SAGAFLOW_CHROMIUM` and `SAGAFLOW_CHROMEDRIVER`
/// name others, for a machine without Debian's packages.
fn browser_paths() -> (String, String) {
    let path = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.into());
    (
        path("SAGAFLOW_CHROMIUM", "/usr/bin/chromium"),
        path("SAGAFLOW_CHROMEDRIVER", "/usr/bin/chromedriver"),
    )
}

fn require_servers_and_browser() {
    for var in ["AWS_ENDPOINT_URL", "SAGAFLOW_KAFKA_BOOTSTRAP"] {
        assert!(
            std::env::var(var).is_ok_and(|v| !v.is_empty()),
            "{var} is not set: start the local servers with `make up` (or run `make test`)"
        );
    }
    let (chromium, chromedriver) = browser_paths();
    for path in [chromium, chromedriver] {
        assert!(
            std::path::Path::new(&path).exists(),
            "{path} is missing: `dev/scripts/browser.sh` installs chromium and chromium-driver \
             (make test runs it)"
        );
    }
}

fn order(id: &str, flow: Flow, country: &str) -> CreateOrder {
    CreateOrder {
        order_id: id.into(),
        customer_id: "cust-console".into(),
        lines: vec![OrderLine {
            sku: "LAMP".into(),
            quantity: 1,
            unit_price: Money::eur(7_900),
        }],
        payment_method: "card-ok".into(),
        shipping_address: Address {
            name: "Grace".into(),
            line1: "2 Loop Road".into(),
            city: "Lyon".into(),
            country: country.into(),
        },
        flow,
    }
}

/// A child process ended when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `sagaflow console --port 0` on `system`'s table and topics, and the address it printed.
fn start_console(system: &LocalSystem) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["console", "--port", "0"])
        .env("SAGAFLOW_EVENTS_TABLE", system.store.table())
        .env("SAGAFLOW_ANALYTICS_TABLE", system.analytics.table())
        .env("SAGAFLOW_TOPIC_PREFIX", system.topics.prefix())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the console starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let address = first
        .trim()
        .strip_prefix("console on ")
        .unwrap_or_else(|| panic!("the console's first line: {first:?}"))
        .trim_end_matches('/')
        .to_string();
    (Running(child), address)
}

/// chromedriver on a free port, once it answers.
fn start_chromedriver() -> (Running, String) {
    let port = free_port();
    let child = Command::new(browser_paths().1)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver never listened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Running(child), format!("http://127.0.0.1:{port}"))
}

async fn browser(driver: &str, profile: &std::path::Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": browser_paths().0,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(driver)
        .await
        .expect("a browser session")
}

fn screenshots() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target folder")
        .join("console-screenshots");
    std::fs::create_dir_all(&target).unwrap();
    target
}

async fn save(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Whether the page fits the window's width (nothing but a table or the swimlane scrolls,
/// inside its own box).
async fn fits_width(client: &Client) -> bool {
    client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap()
        .as_bool()
        .unwrap()
}

/// One raw HTTP/1.1 exchange with the console, for what a browser would not send.
fn raw_http(address: &str, request: &str) -> (u16, String) {
    let hostport = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(hostport).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// A page of another origin (another port of this machine) whose form posts a redrive to the
/// console as soon as it loads, as a hostile page in the operator's browser would.
fn serve_hostile_page(
    console: &str,
    letter: &str,
    token: &str,
) -> (std::thread::JoinHandle<()>, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let body = format!(
        "<!doctype html><html><body><form id=\"f\" method=\"post\" \
         action=\"{console}/dead-letters/{}/redrive\"><input type=\"hidden\" name=\"form_token\" \
         value=\"{token}\"></form><script>document.getElementById('f').submit();</script>\
         </body></html>",
        letter.replace(':', "%3A")
    );
    let server = std::thread::spawn(move || {
        // One page, then the thread ends.
        if let Ok((mut stream, _)) = listener.accept() {
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (server, address)
}

#[ignore = "needs the local servers and chromium: `make up`, then `cargo test -- --ignored` (make test runs both)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_follows_an_order_and_redrives_a_letter_in_the_console() {
    require_servers_and_browser();
    let name = format!("con{}", std::process::id());
    let system = LocalSystem::start(LocalSystemConfig::named(name))
        .await
        .expect("local system starts");
    system.restock("LAMP", 10).await.unwrap();
    // Shipping to Antarctica fails: the saga compensates every step before it.
    system
        .place_order(&order("ord-con-aq", Flow::Orchestrated, "AQ"))
        .await
        .unwrap();
    system
        .place_order(&order("ord-con-ok", Flow::Choreographed, "FR"))
        .await
        .unwrap();
    for id in ["ord-con-aq", "ord-con-ok"] {
        system
            .wait_for_terminal(id, Duration::from_secs(90))
            .await
            .unwrap();
    }
    // A command no service knows: the order service dead-letters it.
    let teleport = CommandEnvelope {
        command_id: command_id_for("ord-con-ok", "order.teleport", "console"),
        command_type: "order.teleport".into(),
        target_id: "ord-con-ok".into(),
        payload: json!({ "order_id": "ord-con-ok" }),
        correlation_id: "ord-con-ok".into(),
        causation_id: "console-test".into(),
        issued_at: sagaflow_eventsourcing::Timestamp(1),
        trace_context: None,
    };
    let publisher = sagaflow_kafka::EventPublisher::new(&system.kafka).unwrap();
    publisher
        .publish(&[command_record(&system.topics, &teleport)])
        .await
        .unwrap();
    assert_eq!(
        system
            .read_dead_letters(1, Duration::from_secs(30))
            .await
            .len(),
        1
    );
    system
        .wait_for_analytics(Duration::from_secs(60))
        .await
        .unwrap();

    let (_console, console) = start_console(&system);
    let (_driver, driver) = start_chromedriver();
    let profile = std::env::temp_dir().join(format!("sagaflow-console-{}", std::process::id()));
    let client = browser(&driver, &profile).await;

    // Orders: both of the run's orders, with their outcomes.
    client.goto(&format!("{console}/orders")).await.unwrap();
    let rows = client
        .find_all(Locator::Css("#orders tbody tr"))
        .await
        .unwrap();
    let mut listed = BTreeSet::new();
    for row in &rows {
        listed.insert(row.text().await.unwrap());
    }
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed
        .iter()
        .any(|r| r.contains("ord-con-aq") && r.contains("cancelled")));
    assert!(listed
        .iter()
        .any(|r| r.contains("ord-con-ok") && r.contains("completed")));
    save(&client, "orders").await;
    client
        .goto(&format!("{console}/orders?status=cancelled"))
        .await
        .unwrap();
    let cancelled = client
        .find_all(Locator::Css("#orders tbody tr"))
        .await
        .unwrap();
    assert_eq!(cancelled.len(), 1, "the status filter");

    // The timeline: one mark per event, in its stream's lane, compensations marked.
    let shown = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["order", "show", "ord-con-aq", "--json"])
        .env("SAGAFLOW_EVENTS_TABLE", system.store.table())
        .env("SAGAFLOW_TOPIC_PREFIX", system.topics.prefix())
        .output()
        .unwrap();
    let shown: Value = serde_json::from_slice(&shown.stdout).expect("order show --json");
    let events: BTreeSet<(String, u64, String)> = shown["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().unwrap().to_string(),
                e["sequence"].as_u64().unwrap(),
                e["event_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    client
        .find(Locator::Css("a[href='/orders/ord-con-aq']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let lanes = client
        .find_all(Locator::Css("#swimlane g.lane"))
        .await
        .unwrap();
    let mut lane_names = Vec::new();
    for lane in &lanes {
        lane_names.push(lane.attr("data-lane").await.unwrap().unwrap());
    }
    assert_eq!(
        lane_names,
        ["order", "payment", "inventory", "shipment", "saga"],
        "a lane per service and one for the saga"
    );
    let marks = client
        .find_all(Locator::Css("#swimlane g.mark[data-stream]"))
        .await
        .unwrap();
    let mut drawn = BTreeSet::new();
    let mut outcomes = Vec::new();
    for mark in &marks {
        let stream = mark.attr("data-stream").await.unwrap().unwrap();
        let sequence: u64 = mark
            .attr("data-sequence")
            .await
            .unwrap()
            .unwrap()
            .parse()
            .unwrap();
        let kind = mark.attr("data-type").await.unwrap().unwrap();
        outcomes.push((
            kind.clone(),
            mark.attr("data-outcome").await.unwrap().unwrap(),
        ));
        drawn.insert((stream, sequence, kind));
    }
    assert_eq!(marks.len(), events.len(), "one mark per event");
    assert_eq!(drawn, events, "the marks are the order's events");
    for (kind, outcome) in &outcomes {
        let expected = match kind.as_str() {
            "saga.compensation_requested"
            | "saga.step_compensated"
            | "payment.refunded"
            | "inventory.released"
            | "order.cancelled" => "compensation",
            "shipment.failed" | "saga.step_failed" => "failure",
            _ => continue,
        };
        assert_eq!(outcome, expected, "{kind}");
    }
    assert!(
        outcomes.iter().any(|(k, _)| k == "saga.step_compensated"),
        "the compensations are in the picture"
    );
    let arrows = client
        .find_all(Locator::Css("#swimlane path.arrow"))
        .await
        .unwrap();
    assert!(
        arrows.len() >= events.len() / 2,
        "causation arrows: {} for {} events",
        arrows.len(),
        events.len()
    );
    let steps = text_of(&client, "#steps").await;
    assert!(
        steps.contains("compensated") && steps.contains("failed"),
        "{steps}"
    );
    save(&client, "timeline").await;

    // Sagas: none needs a person; the page says so.
    client.goto(&format!("{console}/sagas")).await.unwrap();
    let sagas = text_of(&client, "main").await;
    assert!(sagas.contains("no saga needs a person"), "{sagas}");
    save(&client, "sagas").await;

    // Analytics: the charts hold the live read model.
    let live = system.analytics.summary().await.unwrap();
    client.goto(&format!("{console}/analytics")).await.unwrap();
    for (label, count) in &live.orders_by_status {
        let bar = client
            .find(Locator::Css(&format!(
                "#orders-by-status g.bar[data-label='{label}']"
            )))
            .await
            .unwrap();
        assert_eq!(
            bar.attr("data-value").await.unwrap().unwrap(),
            count.to_string(),
            "{label}"
        );
    }
    let reasons = client
        .find_all(Locator::Css("#cancellations g.bar"))
        .await
        .unwrap();
    assert_eq!(reasons.len(), live.cancellations_by_reason.len());
    save(&client, "analytics").await;

    // Dead letters: the letter is listed; its redrive asks first, and asking changes nothing.
    client
        .goto(&format!("{console}/dead-letters"))
        .await
        .unwrap();
    let letter_rows = client
        .find_all(Locator::Css("#letters tbody tr"))
        .await
        .unwrap();
    assert_eq!(letter_rows.len(), 1);
    let id = text_of(&client, "#letters tbody tr td a").await;
    save(&client, "dead-letters").await;
    client
        .find(Locator::Css("#letters button.danger"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let question = text_of(&client, "#confirm").await;
    assert!(
        question.contains(&system.topics.commands("order")),
        "{question}"
    );
    save(&client, "redrive-confirm").await;
    let dynamodb = &aws_sdk_dynamodb::Client::new(&sagaflow_dynamodb::aws_shared_config().await);
    let dlq = system.topics.dead_letter();
    assert_eq!(
        sagaflow_operator::letters::redriven_at(dynamodb, system.store.table(), &dlq, &id)
            .await
            .unwrap(),
        None,
        "asking is not doing"
    );
    client
        .find(Locator::Css("#redrive button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let result = text_of(&client, "#redrive-result").await;
    assert!(result.contains("redriven to"), "{result}");
    save(&client, "redrive-done").await;
    // Still unknown to the order service: dead-lettered again, from its new offset, once.
    let again = system.read_dead_letters(2, Duration::from_secs(30)).await;
    assert_eq!(
        again.len(),
        2,
        "the record reached its topic once more: {again:?}"
    );
    client
        .goto(&format!(
            "{console}/dead-letters/{}",
            id.replace(':', "%3A")
        ))
        .await
        .unwrap();
    let page = text_of(&client, "main").await;
    assert!(page.contains("a second redrive is refused"), "{page}");
    assert!(
        client.find(Locator::Css("#redrive")).await.is_err(),
        "no form any more"
    );

    // The new letter, attacked: a page of another origin posts its redrive, with the right
    // form token even, and is refused; so is a post without the token from the console itself.
    let second = json_letters(&system).await;
    let second = second
        .iter()
        .find(|l| l["id"] != id.as_str())
        .expect("the second letter")["id"]
        .as_str()
        .unwrap()
        .to_string();
    client
        .goto(&format!(
            "{console}/dead-letters/{}/redrive",
            second.replace(':', "%3A")
        ))
        .await
        .unwrap();
    let token = client
        .find(Locator::Css("#redrive input[name='form_token']"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let (hostile_server, hostile) = serve_hostile_page(&console, &second, &token);
    client.goto(&hostile).await.unwrap();
    let started = Instant::now();
    let refused = loop {
        let text = text_of(&client, "body").await;
        if text.contains("Refused") || started.elapsed() > Duration::from_secs(10) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    hostile_server.join().unwrap();
    assert!(
        refused.contains("must come from the console's own pages"),
        "{refused}"
    );
    save(&client, "cross-origin-refused").await;
    let host = console.trim_start_matches("http://");
    let path = format!("/dead-letters/{}/redrive", second.replace(':', "%3A"));
    let (status, _) = raw_http(
        &console,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\nform_token={token}",
            token.len() + 11
        ),
    );
    assert_eq!(status, 403, "another origin, with the token");
    let (status, _) = raw_http(
        &console,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {console}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 403, "the console's origin, without the token");
    let (status, _) = raw_http(
        &console,
        "GET /orders HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(
        status, 403,
        "a name that is not the console's (DNS rebinding)"
    );
    assert_eq!(
        sagaflow_operator::letters::redriven_at(dynamodb, system.store.table(), &dlq, &second)
            .await
            .unwrap(),
        None,
        "nothing was redriven by the refused posts"
    );
    assert_eq!(
        system
            .read_dead_letters(2, Duration::from_secs(3))
            .await
            .len(),
        2,
        "and nothing reached a topic"
    );

    // Bad input: a clear page and status, never a crash.
    let (status, body) = raw_http(
        &console,
        &format!("GET /orders/ord-nobody HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 404);
    assert!(body.contains("no order `ord-nobody`"), "{body}");
    let (status, body) = raw_http(
        &console,
        &format!("GET /dead-letters/seven HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 400);
    assert!(body.contains("not a dead-letter id"), "{body}");

    // A phone's width: each page fits, the swimlane and tables scroll in their own boxes.
    client.set_window_size(390, 844).await.unwrap();
    for (page, name) in [
        ("/orders", "orders-phone"),
        ("/orders/ord-con-aq", "timeline-phone"),
        ("/dead-letters", "dead-letters-phone"),
        ("/analytics", "analytics-phone"),
    ] {
        client.goto(&format!("{console}{page}")).await.unwrap();
        assert!(fits_width(&client).await, "{page} fits a phone's width");
        save(&client, name).await;
    }
    client.close().await.unwrap();
    std::fs::remove_dir_all(&profile).ok();
    system.stop().await;
}

/// The text of `selector` once the page shows it (a form's answer may still be loading), or
/// the page's text in the failure.
async fn text_of(client: &Client, selector: &str) -> String {
    let started = Instant::now();
    loop {
        if let Ok(found) = client.find(Locator::Css(selector)).await {
            return found.text().await.unwrap();
        }
        if started.elapsed() > Duration::from_secs(10) {
            let page = client
                .find(Locator::Css("body"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            panic!("no {selector} on {:?}: {page}", client.current_url().await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The dead letters as `sagaflow dead-letters list --json` prints them.
async fn json_letters(system: &LocalSystem) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_sagaflow"))
        .args(["dead-letters", "list", "--json"])
        .env("SAGAFLOW_EVENTS_TABLE", system.store.table())
        .env("SAGAFLOW_TOPIC_PREFIX", system.topics.prefix())
        .output()
        .unwrap();
    serde_json::from_slice::<Value>(&output.stdout)
        .expect("dead-letters list --json")
        .as_array()
        .cloned()
        .unwrap_or_default()
}
