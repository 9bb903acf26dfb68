//! The W3C trace context a record carries in its `traceparent` header
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>): which trace the message belongs
//! to and which span sent it. A message without one continues its order's derived trace, so
//! every record of one order lands in one trace whoever produced it.

use std::fmt;

use uuid::Uuid;

const TRACE_NAMESPACE: Uuid = Uuid::from_u128(0x7ace_0000_5a6a_4f10_8e2d_9c1b_3a4d_5e6f);

/// A parsed `traceparent`: the trace, the sending span, and whether the trace is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// The trace id: 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// The id of the span that sent the message: 8 bytes, never all zero.
    pub span_id: [u8; 8],
    /// The `sampled` flag.
    pub sampled: bool,
}

impl TraceParent {
    /// Reads a `traceparent` header as the W3C specification says: version `00` is exactly 55
    /// characters; a later version may carry more after a dash; lowercase hex only; neither id
    /// all zeros; version `ff` is invalid. `None` for anything else.
    pub fn parse(header: &str) -> Option<Self> {
        let bytes = header.as_bytes();
        if bytes.len() < 55 || !header.is_ascii() {
            return None;
        }
        let version = hex_bytes::<1>(&header[0..2])?[0];
        let well_formed_tail = match version {
            0xff => false,
            0x00 => bytes.len() == 55,
            _ => bytes.len() == 55 || bytes[55] == b'-',
        };
        if !well_formed_tail || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let trace_id = hex_bytes::<16>(&header[3..35])?;
        let span_id = hex_bytes::<8>(&header[36..52])?;
        let flags = hex_bytes::<1>(&header[53..55])?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The context of a message that arrived without one: the trace id derives from the
    /// correlation id (one trace per order) and the span id from `span_of`, the message's own id.
    pub fn derived(correlation_id: &str, span_of: &str) -> Self {
        let trace = Uuid::new_v5(&TRACE_NAMESPACE, correlation_id.as_bytes());
        let span = Uuid::new_v5(&TRACE_NAMESPACE, span_of.as_bytes());
        let mut span_id = [0; 8];
        span_id.copy_from_slice(&span.as_bytes()[..8]);
        Self {
            trace_id: *trace.as_bytes(),
            span_id,
            sampled: true,
        }
    }

    /// The context `stored` names if it is a valid `traceparent`, else the derived one.
    pub fn stored_or_derived(stored: Option<&str>, correlation_id: &str, span_of: &str) -> Self {
        stored
            .and_then(Self::parse)
            .unwrap_or_else(|| Self::derived(correlation_id, span_of))
    }

    /// The trace id as 32 lowercase hex digits, as trace viewers show it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id_hex(),
            self.span_id_hex(),
            u8::from(self.sampled)
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `N` bytes from `2N` lowercase hex digits; the specification refuses uppercase.
fn hex_bytes<const N: usize>(digits: &str) -> Option<[u8; N]> {
    let digits = digits.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specification_example_reads_and_writes_back_unchanged() {
        let parsed = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.span_id_hex(), "00f067aa0ba902b7");
        assert!(parsed.sampled);
        assert_eq!(parsed.to_string(), EXAMPLE);
        let unsampled = TraceParent::parse(&EXAMPLE.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled);
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        let later = format!("01{}-more", &EXAMPLE[2..]);
        assert!(
            TraceParent::parse(&later).is_some(),
            "a later version may extend it"
        );
    }

    #[test]
    fn a_derived_context_puts_every_message_of_one_order_in_one_trace() {
        let first = TraceParent::derived("ord-1", "cmd-1");
        let second = TraceParent::derived("ord-1", "evt-9");
        let other = TraceParent::derived("ord-2", "cmd-1");
        assert_eq!(first.trace_id, second.trace_id);
        assert_ne!(first.span_id, second.span_id);
        assert_ne!(first.trace_id, other.trace_id);
        assert_eq!(TraceParent::parse(&first.to_string()), Some(first));
        let stored = TraceParent::stored_or_derived(Some(EXAMPLE), "ord-1", "cmd-1");
        assert_eq!(stored.to_string(), EXAMPLE);
        let garbage = TraceParent::stored_or_derived(Some("nonsense"), "ord-1", "cmd-1");
        assert_eq!(garbage, first);
    }
}
