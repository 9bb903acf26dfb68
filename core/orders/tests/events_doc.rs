//! `docs/events.md` lists every event type with the schema version the code writes, and
//! nothing else: its table is checked against the event enums, where each name and version
//! is written once (`domain_event!`).

use std::collections::BTreeMap;

use sagaflow_eventsourcing::DomainEvent;
use sagaflow_orders::domain::{
    InventoryEvent, OrderEvent, PaymentEvent, ShipmentEvent, StockEvent,
};
use sagaflow_saga::SagaEvent;

/// The rows of the "Event types" table: type name to version.
fn documented() -> BTreeMap<String, u32> {
    let text = std::fs::read_to_string("../../docs/events.md").expect("docs/events.md");
    let section = text
        .split("## Event types")
        .nth(1)
        .expect("docs/events.md has an `## Event types` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_string();
        let version = cells[2]
            .parse()
            .unwrap_or_else(|_| panic!("`{name}`: version `{}` is not a number", cells[2]));
        assert!(
            rows.insert(name.clone(), version).is_none(),
            "`{name}` is listed twice"
        );
    }
    rows
}

fn in_code() -> BTreeMap<String, u32> {
    [
        OrderEvent::SCHEMA,
        PaymentEvent::SCHEMA,
        InventoryEvent::SCHEMA,
        ShipmentEvent::SCHEMA,
        StockEvent::SCHEMA,
        SagaEvent::SCHEMA,
    ]
    .into_iter()
    .flatten()
    .map(|(name, version)| (name.to_string(), *version))
    .collect()
}

#[test]
fn the_documented_event_types_are_the_ones_the_code_writes() {
    let documented = documented();
    let code = in_code();
    let missing: Vec<_> = code
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    let unknown: Vec<_> = documented
        .keys()
        .filter(|k| !code.contains_key(*k))
        .collect();
    assert!(missing.is_empty(), "not in docs/events.md: {missing:?}");
    assert!(
        unknown.is_empty(),
        "in docs/events.md, not in the code: {unknown:?}"
    );
    for (name, version) in &code {
        assert_eq!(
            documented[name], *version,
            "`{name}`: docs/events.md says version {}, the code writes {version}",
            documented[name]
        );
    }
}
