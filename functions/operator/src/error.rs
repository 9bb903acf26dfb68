//! What can go wrong, each a one-line message for the operator.

use sagaflow_eventsourcing::StoreError;

/// Why a command could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// An order id that cannot be one (ids are 1 to 64 of `A-Z a-z 0-9 - _`).
    #[error("`{0}` is not an order id: 1 to 64 letters, digits, `-` or `_`")]
    MalformedOrderId(String),
    /// No event of the order in any of its streams.
    #[error("no order `{order}` in the events table {table}")]
    UnknownOrder {
        /// The order asked for.
        order: String,
        /// The table looked in.
        table: String,
    },
    /// A dead-letter id that is not `PARTITION:OFFSET`.
    #[error("`{0}` is not a dead-letter id: PARTITION:OFFSET, as `dead-letters list` prints it")]
    MalformedLetterId(String),
    /// No letter at that place of the dead-letter topic.
    #[error("no dead letter {id} on {topic}")]
    NoSuchLetter {
        /// The id asked for.
        id: String,
        /// The dead-letter topic.
        topic: String,
    },
    /// A letter that cannot be put back.
    #[error("dead letter {id} cannot be redriven: {why}")]
    NotRedrivable {
        /// The letter.
        id: String,
        /// Why not.
        why: &'static str,
    },
    /// A letter that was redriven before.
    #[error("dead letter {id} was redriven already, at {at}; a second redrive is refused")]
    AlreadyRedriven {
        /// The letter.
        id: String,
        /// When, as ISO time.
        at: String,
    },
    /// `--since` that is not a duration.
    #[error("`{0}` is not a duration: a number and s, m, h or d (such as 10m)")]
    MalformedDuration(String),
    /// The events table could not be read or written.
    #[error("DynamoDB: {0}")]
    Store(#[from] StoreError),
    /// A DynamoDB call of the command's own failed.
    #[error("DynamoDB {operation}: {reason}")]
    Dynamo {
        /// The call.
        operation: &'static str,
        /// What came back.
        reason: String,
    },
    /// Kafka could not be reached or read.
    #[error("Kafka at {servers}: {reason}")]
    Kafka {
        /// The bootstrap servers.
        servers: String,
        /// What failed.
        reason: String,
    },
    /// The settings in the environment are wrong.
    #[error("{0}")]
    Settings(String),
}

impl OperatorError {
    /// The error of the DynamoDB call `operation`: the service's own message when it answered,
    /// else why no answer came.
    pub fn dynamo<E: std::error::Error + 'static>(
        operation: &'static str,
        error: &aws_sdk_dynamodb::error::SdkError<E>,
    ) -> Self {
        OperatorError::Dynamo {
            operation,
            reason: match error.as_service_error() {
                Some(service) => service.to_string(),
                None => error.to_string(),
            },
        }
    }
}
