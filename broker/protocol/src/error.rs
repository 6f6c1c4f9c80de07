//! Errors returned by [`crate::Broker::handle`].

use crate::id::NodeId;

/// Invalid input. Every variant leaves the broker's state unchanged
/// (see [`Error::WrongIncarnation`] for the one answer a refusal sends).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A peer message was addressed to another incarnation of this broker
    /// (state unchanged; the message is dropped). Its one effect: a
    /// heartbeat for an older incarnation from a broker outside the
    /// current view (one left behind in an older view) is answered with
    /// `PeerMsg::Excluded`, or nobody would ever tell it its view is over.
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
