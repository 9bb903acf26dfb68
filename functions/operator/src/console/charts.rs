//! The analytics page's charts: horizontal bar charts drawn as SVG on the server, so they need
//! no script and no external asset; each bar's value is written beside it.

use std::fmt::Write;

use crate::console::html::escape;

/// One bar: its label, its length and the text written beside it.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// What it counts.
    pub label: String,
    /// How long it is, against the chart's longest.
    pub value: f64,
    /// The value as written.
    pub text: String,
}

const LABEL: f64 = 170.0;
const BAR_AREA: f64 = 260.0;
const ROW: f64 = 26.0;

/// A bar chart `id` of `bars` in `colour`; an empty chart says there is nothing yet.
pub fn bars(id: &str, bars: &[Bar], colour: &str) -> String {
    if bars.is_empty() {
        return format!("<p class=\"note\" id=\"{id}\">nothing recorded yet</p>");
    }
    let longest = bars
        .iter()
        .map(|b| b.value)
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let height = ROW * bars.len() as f64 + 8.0;
    let width = LABEL + BAR_AREA + 200.0;
    let mut out = format!(
        "<svg id=\"{id}\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" width=\"{width:.0}\" height=\"{height:.0}\" \
         role=\"img\" font-family=\"system-ui,sans-serif\" font-size=\"12\">"
    );
    for (i, bar) in bars.iter().enumerate() {
        let y = 4.0 + ROW * i as f64;
        let length = (bar.value.max(0.0) / longest * BAR_AREA).max(1.0);
        let _ = write!(
            out,
            "<g class=\"bar\" data-label=\"{label}\" data-value=\"{value}\"><title>{label}: {text}</title>\
             <text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#1d232b\">{label}</text>\
             <rect x=\"{LABEL:.0}\" y=\"{:.1}\" width=\"{length:.1}\" height=\"{:.0}\" rx=\"2\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#4b5867\">{text}</text></g>",
            LABEL - 8.0,
            y + 15.0,
            y + 3.0,
            ROW - 8.0,
            LABEL + length + 6.0,
            y + 15.0,
            label = escape(&bar.label),
            value = bar.value,
            text = escape(&bar.text),
        );
    }
    out.push_str("</svg>");
    out
}

/// Bars of counts, as `(label, count)`.
pub fn counts<'a>(entries: impl IntoIterator<Item = (&'a String, &'a u64)>) -> Vec<Bar> {
    entries
        .into_iter()
        .map(|(label, n)| Bar {
            label: label.clone(),
            value: *n as f64,
            text: n.to_string(),
        })
        .collect()
}

/// Money in minor units as `12.50 EUR`.
pub fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_bar_fills_the_area_and_each_says_its_value() {
        let svg = bars(
            "orders",
            &[
                Bar {
                    label: "completed".into(),
                    value: 30.0,
                    text: "30".into(),
                },
                Bar {
                    label: "cancelled".into(),
                    value: 15.0,
                    text: "15".into(),
                },
            ],
            "#25588f",
        );
        assert_eq!(svg.matches("class=\"bar\"").count(), 2);
        assert!(svg.contains(&format!("width=\"{BAR_AREA:.1}\"")));
        assert!(svg.contains(&format!("width=\"{:.1}\"", BAR_AREA / 2.0)));
        assert!(svg.contains(">15</text>"));
    }

    #[test]
    fn no_bars_say_so() {
        assert!(bars("x", &[], "#000").contains("nothing recorded yet"));
    }

    #[test]
    fn money_is_written_in_major_units() {
        assert_eq!(money(123_456, "EUR"), "1234.56 EUR");
        assert_eq!(money(-5, "EUR"), "-0.05 EUR");
    }
}
