//! Read models built from events.

pub mod analytics;

pub use analytics::{
    analytics_change, AnalyticsChange, AnalyticsProjection, AnalyticsStore, AnalyticsSummary,
    Applied, CounterDelta, DurationMetric, DurationSample, DurationStats, GetAnalyticsSummary,
    InMemoryAnalyticsStore, Metric, ReadModelError, StreamProgress,
};
