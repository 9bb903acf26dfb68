//! The pieces every page is built of: escaping, the page frame with its navigation and its one
//! inline style sheet (no external asset, no script), and tables.

use std::fmt::Write;

/// `text` safe inside HTML text and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one percent-encoded path segment or query value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The sections the navigation bar names, with their paths.
pub const SECTIONS: [(&str, &str); 4] = [
    ("Orders", "/orders"),
    ("Sagas", "/sagas"),
    ("Dead letters", "/dead-letters"),
    ("Analytics", "/analytics"),
];

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232b;background:#f6f7f9}
header{background:#1d2b3a;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;align-items:center}
header strong{font-size:1.05rem;margin-right:.6rem}
header a{color:#cfe0f5;text-decoration:none;padding:.2rem .1rem}
header a.here{color:#fff;border-bottom:2px solid #7fb4ee}
header .where{margin-left:auto;color:#9fb3c8;font-size:.85rem}
main{padding:1rem;max-width:1240px;margin:0 auto}
h1{font-size:1.35rem;margin:.2rem 0 .8rem}
h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
.scroll{overflow-x:auto;background:#fff;border:1px solid #dde2e8;border-radius:6px}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #eceff3;white-space:nowrap}
th{background:#f0f3f6;font-weight:600}
.reason{white-space:normal;display:inline-block;min-width:14rem;max-width:36rem}
form.filter{display:flex;flex-wrap:wrap;gap:.5rem .8rem;align-items:end;margin:.2rem 0 1rem}
form.filter label{display:flex;flex-direction:column;font-size:.8rem;color:#4b5867}
input,select,button{font:inherit;padding:.3rem .5rem;border:1px solid #b9c3ce;border-radius:4px;background:#fff}
button{cursor:pointer;background:#25588f;color:#fff;border-color:#25588f}
button.danger{background:#b3261e;border-color:#b3261e}
.badge{display:inline-block;padding:0 .45rem;border-radius:9px;font-size:.8rem;color:#fff}
.completed,.succeeded,.compensated{background:#2e7d32}
.cancelled,.failed,.timed-out,.compensation-failed{background:#c62828}
.created,.running,.waiting,.resent{background:#5b6b7c}
.compensating{background:#ef6c00}
.note{color:#4b5867;font-size:.85rem}
.error{background:#fdecea;border:1px solid #f5c2c0;padding:.6rem .8rem;border-radius:6px}
.done{background:#e8f5e9;border:1px solid #b9dfbb;padding:.6rem .8rem;border-radius:6px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:1rem}
.card{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:.6rem .8rem}
.card h2{margin-top:.2rem}
svg{max-width:100%;height:auto;display:block}
pre{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:.6rem;overflow-x:auto;font-size:.82rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0 0 1rem}
dt{color:#4b5867}
dd{margin:0;word-break:break-word}
@media (max-width:600px){main{padding:.6rem}th,td{padding:.3rem .4rem}header .where{display:none}}
"#;

/// A whole page: `title`, the navigation with `section` marked, what is being looked at
/// (`deployment`, the events table) and `body`.
pub fn page(title: &str, section: &str, deployment: &str, body: &str) -> String {
    let mut nav = String::new();
    for (name, path) in SECTIONS {
        let here = if name == section {
            " class=\"here\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{path}\"{here}>{name}</a>");
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · sagaflow</title><style>{STYLE}</style></head><body>\
         <header><strong>sagaflow</strong>{nav}<span class=\"where\">{}</span></header>\
         <main>{body}</main></body></html>",
        escape(title),
        escape(deployment)
    )
}

/// A status word in its colour.
pub fn badge(status: &str) -> String {
    let class: String = status
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("<span class=\"badge {class}\">{}</span>", escape(status))
}

/// A table of `head` and already escaped `rows`, scrolling sideways on a narrow screen.
pub fn table(id: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<div class=\"scroll\"><table id=\"{id}\"><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", escape(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_text_is_escaped() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_letter_id_is_one_path_segment() {
        assert_eq!(encode("0:12"), "0%3A12");
        assert_eq!(encode("ord-1_a.b"), "ord-1_a.b");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
