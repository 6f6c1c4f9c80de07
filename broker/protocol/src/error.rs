//! Errors returned by [`crate::Broker::handle`].

use crate::id::NodeId;

/// Invalid input. Every variant leaves the broker's state unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A peer message was addressed to another incarnation of this broker
    /// (state unchanged; the message is dropped).
    #[error("message for {to} reached {me}")]
    WrongIncarnation {
        /// Addressee named in the envelope.
        to: NodeId,
        /// This broker.
        me: NodeId,
    },
    /// A peer message is malformed or inconsistent with the view it names
    /// (state unchanged; the message is dropped).
    #[error("invalid message from {from}: {reason}")]
    InvalidPeerMessage {
        /// Sender named in the envelope.
        from: NodeId,
        /// What was wrong.
        reason: &'static str,
    },
    /// Too many publishes are waiting for credit (state unchanged; the
    /// publish was not accepted).
    #[error("publish queue full for group {group}")]
    Backpressure {
        /// Group published to.
        group: String,
    },
    /// A client command named something this broker does not know
    /// (state unchanged).
    #[error("invalid client command: {0}")]
    InvalidCommand(&'static str),
}
