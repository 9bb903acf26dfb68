//! Read models built from events.

pub mod analytics;

pub use analytics::{
    AnalyticsProjection, AnalyticsSummary, Applied, DurationStats, GetAnalyticsSummary,
};
