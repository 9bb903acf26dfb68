//! An order's timeline as a picture: an SVG swimlane with one lane per service (order,
//! payment, inventory, shipment), one for the saga and, when the order has any, one for its
//! dead letters; each event a mark at its time, coloured by what it means (progress, failure,
//! compensation), a retried request ringed, and an arrow from each event's cause to it where
//! the cause is in the picture (an event, or the saga request that sent the command).
//!
//! Marks keep a minimum distance so that events of one millisecond stay apart; each mark's
//! tooltip (`<title>`) gives its exact time, stream, sequence and cause.

use std::collections::HashMap;
use std::fmt::Write;

use crate::console::html::escape;
use crate::letters::Letter;
use crate::timeline::{Timeline, TimelineEvent};

/// The lanes, top to bottom, named by the aggregate type whose streams they show.
pub const LANES: [&str; 5] = ["order", "payment", "inventory", "shipment", "saga"];

/// The lane of the order's dead letters.
pub const LETTER_LANE: &str = "dead letters";

const LEFT: f64 = 120.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 34.0;
const LANE: f64 = 58.0;
const PLOT: f64 = 1040.0;
const MIN_GAP: f64 = 18.0;
/// The room a label under a mark takes along the lane.
const LABEL_ROOM: f64 = 96.0;

/// What an event means for its order, which colours its mark.
pub fn outcome(event_type: &str) -> &'static str {
    let name = event_type.rsplit('.').next().unwrap_or(event_type);
    if name.contains("failed") || name == "declined" || name == "aborted" {
        "failure"
    } else if name.contains("compensat")
        || matches!(
            name,
            "refunded" | "released" | "voided" | "cancelled" | "cancel_requested"
        )
    {
        "compensation"
    } else {
        "progress"
    }
}

fn colour(outcome: &str) -> &'static str {
    match outcome {
        "failure" => "#c62828",
        "compensation" => "#ef6c00",
        "letter" => "#6a1b9a",
        _ => "#2e7d32",
    }
}

fn lane_of(stream: &str) -> usize {
    let kind = stream.split('#').next().unwrap_or(stream);
    LANES.iter().position(|l| *l == kind).unwrap_or(0)
}

/// The x of each time in `times` (ascending): proportional to time, then pushed right so that
/// no two marks are closer than the minimum gap.
fn positions(times: &[i64]) -> Vec<f64> {
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return Vec::new();
    };
    let span = (last - first).max(1) as f64;
    let mut out: Vec<f64> = Vec::with_capacity(times.len());
    for t in times {
        let x = LEFT + (t - first) as f64 / span * PLOT;
        let x = match out.last() {
            Some(prev) if x < prev + MIN_GAP => prev + MIN_GAP,
            _ => x,
        };
        out.push(x);
    }
    out
}

/// The swimlane of `timeline`, with `letters` (the order's dead letters) in their own lane.
pub fn svg(timeline: &Timeline, letters: &[Letter]) -> String {
    // Events and letters on one time axis.
    let mut times: Vec<i64> = timeline.events.iter().map(|e| e.at_ms).collect();
    times.extend(letters.iter().map(|l| l.at_ms));
    times.sort_unstable();
    let xs = positions(&times);
    // Each moment's x, taken in order so that equal times get successive places.
    let mut taken: HashMap<i64, usize> = HashMap::new();
    let mut x_at = |t: i64| -> f64 {
        let first = times.partition_point(|x| *x < t);
        let nth = taken.entry(t).or_insert(0);
        let x = xs.get(first + *nth).copied().unwrap_or(LEFT);
        *nth += 1;
        x
    };
    let event_x: Vec<f64> = timeline.events.iter().map(|e| x_at(e.at_ms)).collect();
    let letter_x: Vec<f64> = letters.iter().map(|l| x_at(l.at_ms)).collect();

    let lanes = if letters.is_empty() {
        LANES.len()
    } else {
        LANES.len() + 1
    };
    let width = xs.last().copied().unwrap_or(LEFT).max(LEFT + PLOT) + RIGHT;
    let height = TOP + LANE * lanes as f64 + 56.0;
    let lane_y = |lane: usize| TOP + LANE * lane as f64 + LANE / 2.0;
    let start = timeline.events.first().map_or(0, |e| e.at_ms);

    let mut out = String::new();
    let _ = write!(
        out,
        "<svg id=\"swimlane\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width:.0} {height:.0}\" \
         width=\"{width:.0}\" height=\"{height:.0}\" role=\"img\" \
         aria-label=\"timeline of order {}\" font-family=\"system-ui,sans-serif\" font-size=\"12\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0 0L10 5L0 10z\" fill=\"#7b8794\"/>\
         </marker></defs><rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>",
        escape(&timeline.order)
    );
    let mut lane_names: Vec<&str> = LANES.to_vec();
    if !letters.is_empty() {
        lane_names.push(LETTER_LANE);
    }
    for (i, name) in lane_names.iter().enumerate() {
        let y = lane_y(i);
        let band = if i % 2 == 0 { "#f4f6f8" } else { "#ffffff" };
        let _ = write!(
            out,
            "<g class=\"lane\" data-lane=\"{name}\"><rect x=\"0\" y=\"{:.0}\" width=\"{width:.0}\" \
             height=\"{LANE:.0}\" fill=\"{band}\"/><text x=\"12\" y=\"{:.0}\" font-weight=\"600\" \
             fill=\"#1d232b\">{name}</text><line x1=\"{LEFT:.0}\" y1=\"{y:.0}\" x2=\"{:.0}\" \
             y2=\"{y:.0}\" stroke=\"#c9d1da\"/></g>",
            y - LANE / 2.0,
            y + 4.0,
            width - RIGHT / 2.0
        );
    }

    // Arrows first, so the marks sit on top of them.
    let by_event: HashMap<&str, usize> = timeline
        .events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.event_id.as_str(), i))
        .collect();
    let by_command: HashMap<&str, usize> = timeline
        .events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.command_id.as_deref().map(|c| (c, i)))
        .collect();
    for (to, event) in timeline.events.iter().enumerate() {
        let cause = by_event
            .get(event.causation_id.as_str())
            .or_else(|| by_command.get(event.causation_id.as_str()));
        let Some(&from) = cause.filter(|&&from| from != to) else {
            continue;
        };
        let (x1, y1) = (
            event_x[from],
            lane_y(lane_of(&timeline.events[from].stream)),
        );
        let (x2, y2) = (event_x[to], lane_y(lane_of(&event.stream)));
        let bend = (x2 - x1).abs().max(24.0) / 2.0;
        let _ = write!(
            out,
            "<path class=\"arrow\" data-from=\"{}\" data-to=\"{}\" d=\"M{x1:.1} {y1:.1} C{:.1} {y1:.1} \
             {:.1} {y2:.1} {x2:.1} {y2:.1}\" fill=\"none\" stroke=\"#7b8794\" stroke-width=\"1.2\" \
             marker-end=\"url(#arrow)\" opacity=\"0.75\"/>",
            escape(&timeline.events[from].event_id),
            escape(&event.event_id),
            x1 + bend,
            x2 - bend,
        );
    }

    // A label goes above its mark when the lane's previous label is too close to share a row.
    let mut last_below: HashMap<usize, f64> = HashMap::new();
    for (i, event) in timeline.events.iter().enumerate() {
        let lane = lane_of(&event.stream);
        let x = event_x[i];
        let above = last_below
            .get(&lane)
            .is_some_and(|prev| x - prev < LABEL_ROOM);
        if !above {
            last_below.insert(lane, x);
        }
        mark(&mut out, event, x, lane_y(lane), start, above);
    }
    let letter_y = lane_y(LANES.len());
    for (letter, x) in letters.iter().zip(&letter_x) {
        let _ = write!(
            out,
            "<g class=\"mark letter\" data-letter=\"{id}\" data-outcome=\"letter\">\
             <title>dead letter {id} at {at} (+{rel} ms): {reason}</title>\
             <rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/></g>",
            x - 6.0,
            letter_y - 6.0,
            colour("letter"),
            id = escape(&letter.id),
            at = escape(&letter.at),
            rel = letter.at_ms - start,
            reason = escape(&letter.reason),
        );
    }

    // The axis: where the order began and how long it has run.
    let axis_y = TOP + LANE * lanes as f64 + 16.0;
    let end = times.last().copied().unwrap_or(start);
    let _ = write!(
        out,
        "<text x=\"{LEFT:.0}\" y=\"{:.0}\" fill=\"#4b5867\">0 ms = {}</text>\
         <text x=\"{:.0}\" y=\"{:.0}\" fill=\"#4b5867\" text-anchor=\"end\">+{} ms</text>",
        TOP - 12.0,
        escape(timeline.events.first().map_or("", |e| e.at.as_str())),
        width - RIGHT / 2.0,
        TOP - 12.0,
        end - start
    );
    legend(&mut out, axis_y);
    out.push_str("</svg>");
    out
}

fn mark(out: &mut String, event: &TimelineEvent, x: f64, y: f64, start: i64, above: bool) {
    let outcome = outcome(&event.event_type);
    let retried = event.attempt.is_some_and(|a| a > 1);
    let fill = colour(outcome);
    let step = event
        .step
        .as_deref()
        .map(|s| format!(" step {}", escape(s)))
        .unwrap_or_default();
    let attempt = event
        .attempt
        .map(|a| format!(" attempt {a}"))
        .unwrap_or_default();
    let _ = write!(
        out,
        "<g class=\"mark\" data-stream=\"{stream}\" data-sequence=\"{seq}\" data-type=\"{kind}\" \
         data-outcome=\"{outcome}\" data-retry=\"{retried}\"><title>{kind} · {stream} #{seq}{step}{attempt} \
         · {at} (+{rel} ms) · caused by {cause}</title>",
        stream = escape(&event.stream),
        seq = event.sequence,
        kind = escape(&event.event_type),
        at = escape(&event.at),
        rel = event.at_ms - start,
        cause = escape(&event.causation_id),
    );
    if retried {
        let _ = write!(
            out,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"11\" fill=\"none\" stroke=\"{fill}\" \
             stroke-dasharray=\"3 2\" stroke-width=\"1.6\"/>"
        );
    }
    if outcome == "compensation" {
        let _ = write!(
            out,
            "<path d=\"M{x:.1} {:.1}L{:.1} {y:.1}L{x:.1} {:.1}L{:.1} {y:.1}z\" fill=\"{fill}\"/>",
            y - 7.5,
            x + 7.5,
            y + 7.5,
            x - 7.5
        );
    } else {
        let _ = write!(
            out,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"6.5\" fill=\"{fill}\"/>"
        );
    }
    // A short label under (or above) the mark: the event's name without its aggregate.
    let label = event.event_type.rsplit('.').next().unwrap_or("");
    let label_y = if above { y - 13.0 } else { y + 19.0 };
    let _ = write!(
        out,
        "<text x=\"{x:.1}\" y=\"{label_y:.1}\" font-size=\"9.5\" fill=\"#4b5867\" \
         text-anchor=\"middle\">{}</text></g>",
        escape(label)
    );
}

fn legend(out: &mut String, y: f64) {
    let items = [
        ("progress", "step or fact"),
        ("failure", "failure"),
        ("compensation", "compensation or cancel"),
        ("letter", "dead letter"),
    ];
    let mut x = LEFT;
    for (outcome, text) in items {
        let _ = write!(
            out,
            "<circle cx=\"{x:.0}\" cy=\"{y:.0}\" r=\"6\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\" \
             fill=\"#1d232b\">{text}</text>",
            colour(outcome),
            x + 10.0,
            y + 4.0
        );
        x += 30.0 + text.len() as f64 * 7.0;
    }
    let _ = write!(
        out,
        "<circle cx=\"{x:.0}\" cy=\"{y:.0}\" r=\"9\" fill=\"none\" stroke=\"#1d232b\" \
         stroke-dasharray=\"3 2\"/><text x=\"{:.0}\" y=\"{:.0}\" fill=\"#1d232b\">retry</text>\
         <text x=\"{:.0}\" y=\"{:.0}\" fill=\"#7b8794\">arrows: cause to effect</text>",
        x + 14.0,
        y + 4.0,
        x + 70.0,
        y + 4.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream: &str, seq: u64, kind: &str, at: i64, id: &str, cause: &str) -> TimelineEvent {
        TimelineEvent {
            at_ms: at,
            at: format!("t{at}"),
            stream: stream.into(),
            sequence: seq,
            event_type: kind.into(),
            event_id: id.into(),
            causation_id: cause.into(),
            step: None,
            attempt: None,
            command_id: None,
        }
    }

    fn timeline() -> Timeline {
        let mut charge = event("saga#o1", 2, "saga.step_requested", 10, "e2", "e1");
        charge.command_id = Some("cmd-charge".into());
        charge.attempt = Some(1);
        let mut again = event("saga#o1", 3, "saga.step_requested", 10, "e3", "e2");
        again.command_id = Some("cmd-charge-2".into());
        again.attempt = Some(2);
        Timeline {
            order: "o1".into(),
            status: "cancelled".into(),
            events: vec![
                event("saga#o1", 1, "saga.started", 0, "e1", "front"),
                charge,
                again,
                event(
                    "payment#o1",
                    1,
                    "payment.declined",
                    30,
                    "e4",
                    "cmd-charge-2",
                ),
                event("order#o1", 2, "order.cancelled", 50, "e5", "e4"),
            ],
            steps: Vec::new(),
        }
    }

    #[test]
    fn each_event_is_one_mark_in_its_lane_coloured_by_its_meaning() {
        let svg = svg(&timeline(), &[]);
        assert_eq!(svg.matches("<g class=\"mark\"").count(), 5);
        for lane in LANES {
            assert!(svg.contains(&format!("data-lane=\"{lane}\"")), "{lane}");
        }
        assert!(!svg.contains(LETTER_LANE));
        assert!(svg.contains("data-type=\"payment.declined\" data-outcome=\"failure\""));
        assert!(svg.contains("data-type=\"order.cancelled\" data-outcome=\"compensation\""));
        assert_eq!(svg.matches("data-retry=\"true\"").count(), 1);
    }

    #[test]
    fn arrows_join_each_cause_in_the_picture_to_its_effect() {
        let svg = svg(&timeline(), &[]);
        // e1 -> e2, e2 -> e3, the second request's command -> e4, e4 -> e5; the front door's
        // command is not in the picture.
        for (from, to) in [("e1", "e2"), ("e2", "e3"), ("e3", "e4"), ("e4", "e5")] {
            assert!(
                svg.contains(&format!("data-from=\"{from}\" data-to=\"{to}\"")),
                "{from} -> {to}"
            );
        }
        assert_eq!(svg.matches("class=\"arrow\"").count(), 4);
    }

    #[test]
    fn marks_of_one_millisecond_stay_apart_and_keep_time_order() {
        let xs = positions(&[0, 10, 10, 10, 1_000]);
        for pair in xs.windows(2) {
            assert!(pair[1] - pair[0] >= MIN_GAP - 1e-9, "{xs:?}");
        }
        assert_eq!(xs[0], LEFT);
        assert!((xs[4] - (LEFT + PLOT)).abs() < 1e-9, "{xs:?}");
    }

    #[test]
    fn outcomes_follow_the_event_names() {
        assert_eq!(outcome("inventory.reservation_failed"), "failure");
        assert_eq!(outcome("saga.compensation_failed"), "failure");
        assert_eq!(outcome("saga.step_compensated"), "compensation");
        assert_eq!(outcome("payment.refunded"), "compensation");
        assert_eq!(outcome("inventory.reserved"), "progress");
    }
}
