//! What a handler publishes through: a batch of records in, every one acknowledged or the first
//! that was not.

use std::future::Future;
use std::pin::Pin;

use crate::records::OutboundRecord;

/// The future a [`Publisher`] returns.
pub type PublishFuture<'a> = Pin<Box<dyn Future<Output = Result<(), PublishFailure>> + Send + 'a>>;

/// Records that were not all acknowledged: those from `index` on must be sent again (records
/// before it were acknowledged, in order).
#[derive(Debug, thiserror::Error)]
#[error("record {index} of the batch was not acknowledged: {source}")]
pub struct PublishFailure {
    /// Position of the first record not acknowledged.
    pub index: usize,
    /// What the client said.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl PublishFailure {
    /// A failure of the whole batch, before any record was acknowledged.
    pub fn of_batch(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            index: 0,
            source: Box::new(source),
        }
    }
}

/// Publishes records, keeping the order of records that share a key.
pub trait Publisher: Send + Sync {
    /// Publishes `records` and resolves once the broker has them all.
    fn publish<'a>(&'a self, records: &'a [OutboundRecord]) -> PublishFuture<'a>;
}
