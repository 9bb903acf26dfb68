//! Topic names: one events topic per aggregate type, one commands topic per service, and the
//! dead-letter topic. A prefix keeps several deployments apart on one cluster.

/// The aggregate types whose events are published, each to its own topic. Nothing in sagaflow
/// reads `stock` (each SKU's units): its topic is the feed for whoever tracks stock levels.
pub const AGGREGATE_TYPES: [&str; 6] =
    ["order", "payment", "inventory", "stock", "shipment", "saga"];
/// The services that take commands, each from its own topic.
pub const SERVICES: [&str; 4] = ["order", "payment", "inventory", "shipment"];

/// The topic names of one deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self::new("sagaflow")
    }
}

impl Topics {
    /// Topic names under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix every topic name starts with (`SAGAFLOW_TOPIC_PREFIX`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topic of `aggregate_type`'s events, such as `sagaflow.events.payment`.
    pub fn events(&self, aggregate_type: &str) -> String {
        format!("{}.events.{aggregate_type}", self.prefix)
    }

    /// The topic of commands for `service`, such as `sagaflow.commands.inventory`.
    pub fn commands(&self, service: &str) -> String {
        format!("{}.commands.{service}", self.prefix)
    }

    /// The front door of orchestrated orders: `saga.start` commands for the orchestrator.
    pub fn saga_commands(&self) -> String {
        format!("{}.commands.saga", self.prefix)
    }

    /// Where records that can never be processed go, with their reason.
    pub fn dead_letter(&self) -> String {
        format!("{}.dead-letter", self.prefix)
    }

    /// Every topic of the deployment, for creating them.
    pub fn all(&self) -> Vec<String> {
        AGGREGATE_TYPES
            .iter()
            .map(|a| self.events(a))
            .chain(SERVICES.iter().map(|s| self.commands(s)))
            .chain([self.saga_commands(), self.dead_letter()])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_topic_under_the_prefix() {
        let topics = Topics::new("shop");
        assert_eq!(topics.events("order"), "shop.events.order");
        assert_eq!(topics.commands("payment"), "shop.commands.payment");
        assert_eq!(topics.dead_letter(), "shop.dead-letter");
        assert_eq!(topics.saga_commands(), "shop.commands.saga");
        assert_eq!(topics.all().len(), 12);
        assert!(topics.all().iter().all(|t| t.starts_with("shop.")));
    }
}
