//! Read models built from events.

pub mod analytics;

pub use analytics::{
    analytics_change, analytics_run_change, same_stream, AnalyticsChange, AnalyticsProjection,
    AnalyticsStore, AnalyticsSummary, Applied, CounterDelta, DurationMetric, DurationSample,
    DurationStats, GetAnalyticsSummary, InMemoryAnalyticsStore, Metric, ReadModelError, RunChange,
    StreamProgress,
};
