//! The topology of a deployment, written once: every function, what triggers it, the topics it
//! reads and writes and the tables it touches. The handlers' subscriptions are read from it,
//! `infra/generate.py` builds the template's event source mappings and grants from its JSON
//! (`cargo run -p sagaflow-records --bin topology`), and a test checks the template against it.

use serde_json::{json, Value};

use crate::Topics;

/// A topic of the deployment, named relative to its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    /// The events of one aggregate type.
    Events(&'static str),
    /// The commands of one service.
    Commands(&'static str),
    /// The front door of orchestrated orders: `saga.start` and `saga.cancel`.
    SagaCommands,
    /// Records that can never be processed, with their reason.
    DeadLetter,
}

impl Topic {
    /// The topic's full name under `topics`' prefix.
    pub fn name(self, topics: &Topics) -> String {
        match self {
            Topic::Events(aggregate) => topics.events(aggregate),
            Topic::Commands(service) => topics.commands(service),
            Topic::SagaCommands => topics.saga_commands(),
            Topic::DeadLetter => topics.dead_letter(),
        }
    }

    /// Whether records on this topic are commands.
    pub fn carries_commands(self) -> bool {
        matches!(self, Topic::Commands(_) | Topic::SagaCommands)
    }

    /// The name after the prefix and its dot, such as `events.payment`.
    pub fn suffix(self) -> String {
        let full = self.name(&Topics::new(""));
        full.trim_start_matches('.').to_string()
    }
}

/// What invokes a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Kafka event source mappings, one per topic it reads.
    Kafka,
    /// The events table's DynamoDB stream.
    EventsTableStream,
    /// A schedule (an EventBridge rule).
    Schedule,
}

impl Trigger {
    /// The name `infra/generate.py` reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Kafka => "kafka",
            Trigger::EventsTableStream => "stream",
            Trigger::Schedule => "schedule",
        }
    }
}

/// How a function uses the events table; the template turns each into its IAM actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventsTable {
    /// Only checked at init.
    Describe,
    /// Loads and appends aggregate streams.
    EventStore,
    /// Loads and appends saga streams, deleting a saga's wake-up item when it stops waiting.
    SagaStore,
}

impl EventsTable {
    /// The name `infra/generate.py` reads.
    pub fn as_str(self) -> &'static str {
        match self {
            EventsTable::Describe => "describe",
            EventsTable::EventStore => "event-store",
            EventsTable::SagaStore => "saga-store",
        }
    }
}

/// One deployed function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    /// Its name: the service it runs for the four services; the template's logical id and the
    /// function's name suffix derive from it.
    pub name: &'static str,
    /// Its cargo binary in `sagaflow-lambdas` (`target/lambda/<binary>/bootstrap`).
    pub binary: &'static str,
    /// One line on what it does, the deployed function's description.
    pub description: &'static str,
    /// What invokes it.
    pub trigger: Trigger,
    /// The topics it reads: one event source mapping each.
    pub reads: &'static [Topic],
    /// The topics it writes.
    pub writes: &'static [Topic],
    /// How it uses the events table.
    pub events_table: EventsTable,
    /// Whether it queries the events table's wake-up index.
    pub wake_index: bool,
    /// Whether it reads and writes the analytics table.
    pub analytics_table: bool,
}

impl Function {
    /// The function as `infra/generate.py` reads it.
    pub fn to_json(&self) -> Value {
        let suffixes = |list: &[Topic]| list.iter().map(|t| t.suffix()).collect::<Vec<_>>();
        json!({
            "name": self.name,
            "binary": self.binary,
            "description": self.description,
            "trigger": self.trigger.as_str(),
            "reads": suffixes(self.reads),
            "writes": suffixes(self.writes),
            "events_table": self.events_table.as_str(),
            "wake_index": self.wake_index,
            "analytics_table": self.analytics_table,
        })
    }
}

/// A service's function: its binary is its name, it reads its commands and the other
/// services' events, keeps its aggregate in the events table and writes only dead letters.
const fn service(
    name: &'static str,
    description: &'static str,
    reads: &'static [Topic],
) -> Function {
    Function {
        name,
        binary: name,
        description,
        trigger: Trigger::Kafka,
        reads,
        writes: &[Topic::DeadLetter],
        events_table: EventsTable::EventStore,
        wake_index: false,
        analytics_table: false,
    }
}

/// The order service.
pub const ORDER: Function = service(
    "order",
    "sagaflow order service: commands.order and the other services' events",
    &[
        Topic::Commands("order"),
        Topic::Events("payment"),
        Topic::Events("inventory"),
        Topic::Events("shipment"),
    ],
);

/// The payment service.
pub const PAYMENT: Function = service(
    "payment",
    "sagaflow payment service: commands.payment and the other services' events",
    &[
        Topic::Commands("payment"),
        Topic::Events("order"),
        Topic::Events("inventory"),
        Topic::Events("shipment"),
    ],
);

/// The inventory service.
pub const INVENTORY: Function = service(
    "inventory",
    "sagaflow inventory service: commands.inventory and the other services' events",
    &[
        Topic::Commands("inventory"),
        Topic::Events("order"),
        Topic::Events("payment"),
        Topic::Events("shipment"),
    ],
);

/// The shipment service.
pub const SHIPMENT: Function = service(
    "shipment",
    "sagaflow shipment service: commands.shipment and the other services' events",
    &[
        Topic::Commands("shipment"),
        Topic::Events("order"),
        Topic::Events("payment"),
        Topic::Events("inventory"),
    ],
);

/// The saga orchestrator.
pub const ORCHESTRATOR: Function = Function {
    name: "orchestrator",
    binary: "orchestrator",
    description:
        "sagaflow saga orchestrator: the services' events and the saga front door (commands.saga)",
    trigger: Trigger::Kafka,
    reads: &[
        Topic::Events("order"),
        Topic::Events("payment"),
        Topic::Events("inventory"),
        Topic::Events("shipment"),
        Topic::SagaCommands,
    ],
    writes: &[Topic::DeadLetter],
    events_table: EventsTable::SagaStore,
    wake_index: false,
    analytics_table: false,
};

/// The analytics read model.
pub const ANALYTICS: Function = Function {
    name: "analytics",
    binary: "analytics",
    description:
        "sagaflow analytics read model: every events topic; invoked directly with a summary query",
    trigger: Trigger::Kafka,
    reads: &[
        Topic::Events("order"),
        Topic::Events("payment"),
        Topic::Events("inventory"),
        Topic::Events("shipment"),
        Topic::Events("saga"),
    ],
    writes: &[Topic::DeadLetter],
    events_table: EventsTable::Describe,
    wake_index: false,
    analytics_table: true,
};

/// The outbox relay.
pub const RELAY: Function = Function {
    name: "relay",
    binary: "relay",
    description: "sagaflow outbox relay: the events table's stream to Kafka",
    trigger: Trigger::EventsTableStream,
    reads: &[],
    writes: &[
        Topic::Events("order"),
        Topic::Events("payment"),
        Topic::Events("inventory"),
        Topic::Events("stock"),
        Topic::Events("shipment"),
        Topic::Events("saga"),
        Topic::Commands("order"),
        Topic::Commands("payment"),
        Topic::Commands("inventory"),
        Topic::Commands("shipment"),
        Topic::DeadLetter,
    ],
    events_table: EventsTable::Describe,
    wake_index: false,
    analytics_table: false,
};

// Ticks the sagas whose step deadline passed, found through the wake-up index, and appends
// what the ticks decide to their streams.
/// The saga deadline timer.
pub const DEADLINE: Function = Function {
    name: "deadline",
    binary: "deadline",
    description: "sagaflow saga deadline timer: fails the saga steps whose reply never came",
    trigger: Trigger::Schedule,
    reads: &[],
    writes: &[Topic::DeadLetter],
    events_table: EventsTable::SagaStore,
    wake_index: true,
    analytics_table: false,
};

/// Every function of a deployment. A service reads its own commands and the other services'
/// events (never its own, never the sagas'); only the relay publishes events and commands.
pub const FUNCTIONS: [Function; 8] = [
    ORDER,
    PAYMENT,
    INVENTORY,
    SHIPMENT,
    ORCHESTRATOR,
    ANALYTICS,
    RELAY,
    DEADLINE,
];

/// The function called `name`.
pub fn function(name: &str) -> Option<&'static Function> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// The whole topology as `infra/generate.py` reads it.
pub fn to_json() -> Value {
    json!({ "functions": FUNCTIONS.iter().map(Function::to_json).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_read_topic_is_written_by_the_relay_or_the_front_door() {
        let relay = function("relay").unwrap();
        for f in &FUNCTIONS {
            for topic in f.reads {
                assert!(
                    relay.writes.contains(topic) || *topic == Topic::SagaCommands,
                    "{} reads {topic:?}, which nothing publishes",
                    f.name
                );
            }
        }
    }

    #[test]
    fn names_and_binaries_are_unique_and_topics_exist() {
        let all = Topics::new("p").all();
        for (i, f) in FUNCTIONS.iter().enumerate() {
            assert!(FUNCTIONS[..i]
                .iter()
                .all(|g| g.name != f.name && g.binary != f.binary));
            for topic in f.reads.iter().chain(f.writes) {
                assert!(all.contains(&topic.name(&Topics::new("p"))), "{topic:?}");
            }
            assert_eq!(
                f.trigger == Trigger::Kafka,
                !f.reads.is_empty(),
                "{}",
                f.name
            );
        }
        assert_eq!(Topic::Events("saga").suffix(), "events.saga");
        assert!(Topic::SagaCommands.carries_commands() && !Topic::DeadLetter.carries_commands());
        assert_eq!(Topic::DeadLetter.suffix(), "dead-letter");
    }
}
