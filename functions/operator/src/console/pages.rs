//! Each page of the console as HTML, from what was read for it; nothing here reads or writes
//! anything, so every page can be checked without a server.

use std::fmt::Write;

use sagaflow_orders::projection::AnalyticsSummary;

use crate::console::charts::{self, Bar};
use crate::console::html::{badge, encode, escape, table};
use crate::console::swimlane;
use crate::error::OperatorError;
use crate::letters::Letter;
use crate::orders::{OrderFilter, OrderRow};
use crate::sagas::SagaRow;
use crate::time::iso;
use crate::timeline::Timeline;

/// A page's title, its section in the navigation, and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The title.
    pub title: String,
    /// The navigation section it belongs to.
    pub section: &'static str,
    /// The HTML inside `<main>`.
    pub body: String,
}

fn option(value: &str, label: &str, chosen: Option<&str>) -> String {
    let selected = if chosen == Some(value) {
        " selected"
    } else {
        ""
    };
    format!("<option value=\"{value}\"{selected}>{label}</option>")
}

fn ago(now_ms: i64, then_ms: i64) -> String {
    let secs = (now_ms - then_ms).max(0) / 1_000;
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} d", s / 86_400),
    }
}

/// The orders, newest first, with the filter that chose them.
pub fn orders(rows: &[OrderRow], filter: &OrderFilter, older_than: &str, now_ms: i64) -> Page {
    let status = filter.status.as_deref();
    let flow = filter.flow.as_deref();
    let mut body = String::from("<h1>Orders</h1>");
    let _ = write!(
        body,
        "<form class=\"filter\" method=\"get\" action=\"/orders\">\
         <label>status<select name=\"status\">{}{}{}{}</select></label>\
         <label>flow<select name=\"flow\">{}{}{}{}</select></label>\
         <label>older than<input name=\"older_than\" value=\"{}\" placeholder=\"10m\" size=\"6\"></label>\
         <button type=\"submit\">Filter</button></form>",
        option("", "any", status),
        option("created", "running", status),
        option("completed", "completed", status),
        option("cancelled", "cancelled", status),
        option("", "any", flow),
        option("orchestrated", "orchestrated", flow),
        option("choreographed", "choreographed", flow),
        option("in-process", "in-process", flow),
        escape(older_than),
    );
    let kept: Vec<&OrderRow> = rows.iter().filter(|r| filter.keeps(r, now_ms)).collect();
    let _ = write!(
        body,
        "<p class=\"note\">{} of {} orders</p>",
        kept.len(),
        rows.len()
    );
    let cells: Vec<Vec<String>> = kept
        .iter()
        .map(|r| {
            vec![
                format!(
                    "<a href=\"/orders/{}\">{}</a>",
                    encode(&r.order_id),
                    escape(&r.order_id)
                ),
                badge(if r.status == "created" {
                    "running"
                } else {
                    &r.status
                }),
                escape(&r.flow),
                escape(&r.total),
                escape(&r.created),
                ago(now_ms, r.created_ms),
                escape(r.cancel_reason.as_deref().unwrap_or("")),
            ]
        })
        .collect();
    body.push_str(&table(
        "orders",
        &[
            "order",
            "status",
            "flow",
            "total",
            "created",
            "age",
            "cancelled for",
        ],
        &cells,
    ));
    Page {
        title: "Orders".into(),
        section: "Orders",
        body,
    }
}

/// One order: its swimlane, its saga's steps, its events and its dead letters (or why they
/// could not be read).
pub fn order(timeline: &Timeline, letters: Result<&[Letter], &OperatorError>) -> Page {
    let shown: &[Letter] = letters.as_deref().unwrap_or(&[]);
    let mut body = format!(
        "<h1>Order {} {}</h1>",
        escape(&timeline.order),
        badge(&timeline.status)
    );
    body.push_str("<h2>Timeline</h2><div class=\"scroll\">");
    body.push_str(&swimlane::svg(timeline, shown));
    body.push_str("</div>");
    if !timeline.steps.is_empty() {
        body.push_str("<h2>Saga steps</h2>");
        let rows: Vec<Vec<String>> = timeline
            .steps
            .iter()
            .map(|s| {
                vec![
                    escape(&s.step),
                    s.kind.to_string(),
                    s.attempt.to_string(),
                    s.duration_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                    badge(&s.outcome),
                ]
            })
            .collect();
        body.push_str(&table(
            "steps",
            &["step", "kind", "attempt", "took", "outcome"],
            &rows,
        ));
    }
    body.push_str("<h2>Events</h2>");
    let rows: Vec<Vec<String>> = timeline
        .events
        .iter()
        .map(|e| {
            vec![
                escape(&e.at),
                escape(&e.stream),
                e.sequence.to_string(),
                escape(&e.event_type),
                format!("<code>{}</code>", escape(&e.causation_id)),
            ]
        })
        .collect();
    body.push_str(&table(
        "events",
        &["at", "stream", "seq", "type", "caused by"],
        &rows,
    ));
    body.push_str("<h2>Dead letters</h2>");
    match &letters {
        Err(why) => {
            let _ = write!(
                body,
                "<p class=\"error\">not read: {}</p>",
                escape(&why.to_string())
            );
        }
        Ok([]) => body.push_str("<p class=\"note\">none</p>"),
        Ok(letters) => body.push_str(&letter_table(letters, &[])),
    }
    Page {
        title: format!("Order {}", timeline.order),
        section: "Orders",
        body,
    }
}

/// The sagas that need a person.
pub fn sagas(rows: &[SagaRow], status: Option<&str>) -> Page {
    let mut body = String::from("<h1>Sagas</h1>");
    let _ = write!(
        body,
        "<form class=\"filter\" method=\"get\" action=\"/sagas\">\
         <label>status<select name=\"status\">{}{}{}{}{}</select></label>\
         <button type=\"submit\">Filter</button></form>\
         <p class=\"note\">Running and compensating sagas come from the wake-up index; the others \
         take a scan of the saga streams.</p>",
        option("", "every saga not finished well", status),
        option("running", "running", status),
        option("compensating", "compensating", status),
        option("compensation-failed", "compensation failed", status),
        option("cancelled", "cancelled", status),
    );
    if rows.is_empty() {
        body.push_str("<p class=\"done\">no saga needs a person</p>");
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    format!(
                        "<a href=\"/orders/{}\">{}</a>",
                        encode(&r.saga_id),
                        escape(&r.saga_id)
                    ),
                    badge(&kebab(&r.status)),
                    if r.cancelled {
                        "yes".into()
                    } else {
                        String::new()
                    },
                    escape(r.started.as_deref().unwrap_or("-")),
                    r.age_secs.map_or("-".into(), |s| format!("{s} s")),
                    escape(r.awaiting.as_deref().unwrap_or("-")),
                ]
            })
            .collect();
        body.push_str(&table(
            "sagas",
            &["saga", "status", "cancelled", "started", "age", "waits on"],
            &cells,
        ));
    }
    Page {
        title: "Sagas".into(),
        section: "Sagas",
        body,
    }
}

fn kebab(status: &str) -> String {
    let mut out = String::new();
    for (i, c) in status.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn letter_table(letters: &[Letter], redriven: &[String]) -> String {
    let cells: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            let source = l.source.as_ref().map_or("events table change".into(), |s| {
                format!("{}-{}@{}", s.topic, s.partition, s.offset)
            });
            let action = if redriven.contains(&l.id) {
                "redriven".to_string()
            } else if l.not_redrivable.is_some() {
                "cannot be redriven".to_string()
            } else {
                format!(
                    "<form method=\"get\" action=\"/dead-letters/{}/redrive\">\
                     <button type=\"submit\" class=\"danger\">Redrive…</button></form>",
                    encode(&l.id)
                )
            };
            vec![
                format!(
                    "<a href=\"/dead-letters/{}\">{}</a>",
                    encode(&l.id),
                    escape(&l.id)
                ),
                escape(&l.at),
                escape(&source),
                l.correlation_id.as_deref().map_or("-".into(), |o| {
                    format!("<a href=\"/orders/{}\">{}</a>", encode(o), escape(o))
                }),
                format!("<span class=\"reason\">{}</span>", escape(&l.reason)),
                action,
            ]
        })
        .collect();
    table(
        "letters",
        &["letter", "written", "from", "order", "reason", ""],
        &cells,
    )
}

/// The dead letters the filter keeps, each with a redrive button when it can be redriven;
/// `redriven` are the ones already put back.
pub fn letters(
    topic: &str,
    letters: &[Letter],
    redriven: &[String],
    reason: &str,
    source_topic: &str,
    since: &str,
) -> Page {
    let mut body = String::from("<h1>Dead letters</h1>");
    let _ = write!(
        body,
        "<form class=\"filter\" method=\"get\" action=\"/dead-letters\">\
         <label>reason contains<input name=\"reason\" value=\"{}\"></label>\
         <label>from topic<input name=\"topic\" value=\"{}\"></label>\
         <label>since<input name=\"since\" value=\"{}\" placeholder=\"1h\" size=\"6\"></label>\
         <button type=\"submit\">Filter</button></form>",
        escape(reason),
        escape(source_topic),
        escape(since)
    );
    if letters.is_empty() {
        let _ = write!(
            body,
            "<p class=\"done\">no dead letters on {}</p>",
            escape(topic)
        );
    } else {
        let _ = write!(
            body,
            "<p class=\"note\">{} letters on {}</p>",
            letters.len(),
            escape(topic)
        );
        body.push_str(&letter_table(letters, redriven));
    }
    Page {
        title: "Dead letters".into(),
        section: "Dead letters",
        body,
    }
}

/// What is done with a letter once it was redriven, or why it cannot be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedriveState {
    /// It can be redriven: the form (confirmation) is shown.
    Possible,
    /// It was redriven at this time (ms since the epoch); `now` says it just happened.
    Done {
        /// When.
        at_ms: i64,
        /// Whether this request did it.
        now: bool,
    },
    /// It cannot be.
    Impossible(&'static str),
}

/// One letter, whole; with `confirm`, the redrive form asks to be sure.
pub fn letter(
    topic: &str,
    letter: &Letter,
    state: &RedriveState,
    form_token: &str,
    confirm: bool,
) -> Page {
    let mut body = format!("<h1>Dead letter {}</h1>", escape(&letter.id));
    if let RedriveState::Done { at_ms, now: true } = state {
        let _ = write!(
            body,
            "<p class=\"done\" id=\"redrive-result\">redriven to {} at {}</p>",
            escape(letter.source.as_ref().map_or("", |s| s.topic.as_str())),
            escape(&iso(*at_ms))
        );
    }
    let source = letter
        .source
        .as_ref()
        .map_or("a change of the events table".into(), |s| {
            format!("{}-{}@{}", s.topic, s.partition, s.offset)
        });
    let _ = write!(
        body,
        "<dl><dt>on</dt><dd>{}</dd><dt>written</dt><dd>{}</dd><dt>from</dt><dd>{}</dd>\
         <dt>order</dt><dd>{}</dd><dt>reason</dt><dd>{}</dd></dl>",
        escape(topic),
        escape(&letter.at),
        escape(&source),
        letter
            .correlation_id
            .as_deref()
            .map_or("-".into(), |o| format!(
                "<a href=\"/orders/{}\">{}</a>",
                encode(o),
                escape(o)
            )),
        escape(&letter.reason),
    );
    match state {
        RedriveState::Impossible(why) => {
            let _ = write!(
                body,
                "<p class=\"note\">cannot be redriven: {}</p>",
                escape(why)
            );
        }
        RedriveState::Done { at_ms, now: false } => {
            let _ = write!(
                body,
                "<p class=\"note\" id=\"redrive-result\">redriven at {}; a second redrive is refused</p>",
                escape(&iso(*at_ms))
            );
        }
        RedriveState::Done { .. } => {}
        RedriveState::Possible => {
            let to = letter.source.as_ref().map_or("", |s| s.topic.as_str());
            let question = if confirm {
                format!(
                    "<p class=\"error\" id=\"confirm\">Publish this letter's record again to <b>{}</b>? \
                     A command applied before changes nothing; the redrive is recorded and cannot \
                     be repeated.</p>",
                    escape(to)
                )
            } else {
                String::new()
            };
            let _ = write!(
                body,
                "{question}<form method=\"post\" action=\"/dead-letters/{}/redrive\" id=\"redrive\">\
                 <input type=\"hidden\" name=\"form_token\" value=\"{}\">\
                 <button type=\"submit\" class=\"danger\">{}</button> \
                 <a href=\"/dead-letters\">back</a></form>",
                encode(&letter.id),
                escape(form_token),
                if confirm { "Yes, redrive it" } else { "Redrive to its topic" },
            );
        }
    }
    let _ = write!(
        body,
        "<h2>The letter as written</h2><pre>{}</pre>",
        escape(&serde_json::to_string_pretty(&letter.value).unwrap_or_default())
    );
    Page {
        title: format!("Dead letter {}", letter.id),
        section: "Dead letters",
        body,
    }
}

fn money_bars(minor: &std::collections::BTreeMap<String, i64>) -> Vec<Bar> {
    minor
        .iter()
        .map(|(currency, amount)| Bar {
            label: currency.clone(),
            value: *amount as f64,
            text: charts::money(*amount, currency),
        })
        .collect()
}

fn duration_bars(
    stats: &std::collections::BTreeMap<String, sagaflow_orders::projection::DurationStats>,
) -> Vec<Bar> {
    stats
        .iter()
        .map(|(outcome, s)| Bar {
            label: format!("{outcome} ({})", s.count),
            value: s.mean_ms() as f64,
            text: format!("mean {} · max {}", seconds(s.mean_ms()), seconds(s.max_ms)),
        })
        .collect()
}

/// Milliseconds as people read them: `850 ms`, `2.5 s`, `3.2 min`.
fn seconds(ms: i64) -> String {
    match ms {
        ms if ms < 1_000 => format!("{ms} ms"),
        ms if ms < 120_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        ms => format!("{:.1} min", ms as f64 / 60_000.0),
    }
}

/// The analytics read model as charts.
pub fn analytics(table_name: &str, summary: &AnalyticsSummary) -> Page {
    let mut body = format!(
        "<h1>Analytics</h1><p class=\"note\">the read model in {}, as the analytics function \
         keeps it</p><div class=\"cards\">",
        escape(table_name)
    );
    let cards = [
        (
            "Orders by status",
            charts::bars(
                "orders-by-status",
                &charts::counts(&summary.orders_by_status),
                "#25588f",
            ),
        ),
        (
            "Orders by flow",
            charts::bars(
                "orders-by-flow",
                &charts::counts(&summary.orders_by_flow),
                "#5b7fa8",
            ),
        ),
        (
            "Revenue captured",
            charts::bars("captured", &money_bars(&summary.captured_minor), "#2e7d32"),
        ),
        (
            "Refunded",
            charts::bars("refunded", &money_bars(&summary.refunded_minor), "#ef6c00"),
        ),
        (
            "Cancellations by reason",
            charts::bars(
                "cancellations",
                &charts::counts(&summary.cancellations_by_reason),
                "#c62828",
            ),
        ),
        (
            "Order durations (created to finished)",
            charts::bars(
                "order-durations",
                &duration_bars(&summary.order_durations),
                "#6d4c9f",
            ),
        ),
        (
            "Saga durations (started to finished)",
            charts::bars(
                "saga-durations",
                &duration_bars(&summary.saga_durations),
                "#8e6cc0",
            ),
        ),
    ];
    for (title, chart) in cards {
        let _ = write!(
            body,
            "<section class=\"card\"><h2>{title}</h2>{chart}</section>"
        );
    }
    body.push_str("</div>");
    Page {
        title: "Analytics".into(),
        section: "Analytics",
        body,
    }
}

/// A page that says what went wrong.
pub fn problem(title: &str, message: &str) -> Page {
    Page {
        title: title.into(),
        section: "",
        body: format!(
            "<h1>{}</h1><p class=\"error\" id=\"problem\">{}</p>",
            escape(title),
            escape(message)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: &str, flow: &str, created_ms: i64) -> OrderRow {
        OrderRow {
            order_id: id.into(),
            status: status.into(),
            flow: flow.into(),
            total: "12.50 EUR".into(),
            created_ms,
            created: iso(created_ms),
            updated_ms: created_ms,
            cancel_reason: None,
        }
    }

    #[test]
    fn the_orders_page_lists_what_the_filter_keeps() {
        let rows = [
            row("o-1", "completed", "orchestrated", 1_000),
            row("o-2", "cancelled", "choreographed", 2_000),
        ];
        let filter = OrderFilter {
            status: Some("cancelled".into()),
            ..OrderFilter::default()
        };
        let page = orders(&rows, &filter, "", 10_000);
        assert!(page.body.contains("href=\"/orders/o-2\""));
        assert!(!page.body.contains("href=\"/orders/o-1\""));
        assert!(page.body.contains("1 of 2 orders"));
        assert!(page.body.contains("<option value=\"cancelled\" selected>"));
    }

    #[test]
    fn a_redrivable_letter_asks_before_it_posts_the_form_token() {
        let letter = Letter {
            id: "0:7".into(),
            at_ms: 5,
            at: iso(5),
            reason: "<script>x</script>".into(),
            source: Some(crate::letters::Source {
                topic: "t.commands".into(),
                partition: 0,
                offset: 3,
            }),
            correlation_id: Some("o-1".into()),
            not_redrivable: None,
            value: serde_json::json!({}),
            original: None,
        };
        let page = super::letter("t.dlq", &letter, &RedriveState::Possible, "tok", true);
        assert!(page.body.contains("id=\"confirm\""));
        assert!(page
            .body
            .contains("method=\"post\" action=\"/dead-letters/0%3A7/redrive\""));
        assert!(page.body.contains("name=\"form_token\" value=\"tok\""));
        assert!(!page.body.contains("<script>"));
        let done = super::letter(
            "t.dlq",
            &letter,
            &RedriveState::Done {
                at_ms: 9,
                now: false,
            },
            "tok",
            false,
        );
        assert!(!done.body.contains("<form"));
        assert!(done.body.contains("a second redrive is refused"));
    }
}
