//! The client's error type.

use meshcast_transport::client_proto::{CloseCode, RejectCode};

/// Everything that can go wrong in the client.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The topic is not valid (checked before anything is sent).
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] meshcast_topics::TopicError),
    /// The pattern is not valid (checked before anything is sent).
    #[error("invalid pattern: {0}")]
    InvalidPattern(#[from] meshcast_topics::PatternError),
    /// The payload is larger than the broker accepts.
    #[error("payload of {size} bytes exceeds the broker's maximum of {max} bytes")]
    PayloadTooLarge {
        /// The payload size.
        size: usize,
        /// The broker's limit.
        max: usize,
    },
    /// The CA file or TLS setup is unusable.
    #[error("TLS setup: {0}")]
    Tls(String),
    /// The broker could not be reached.
    #[error("cannot connect to {addr}: {detail}")]
    Connect {
        /// The broker address.
        addr: String,
        /// What went wrong.
        detail: String,
    },
    /// The handshake failed (version mismatch, refusal, ...).
    #[error("handshake with broker failed: {0}")]
    Handshake(String),
    /// A message could not be encoded (it would exceed the frame limit).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// A subscription's buffer filled because the application did not read
    /// it fast enough; the subscription was ended (the session stays open).
    #[error(
        "subscription {pattern:?} ended: its buffer of {buffer} messages was full (ClientOptions::subscription_buffer)"
    )]
    SlowSubscription {
        /// The subscription's pattern.
        pattern: String,
        /// The buffer size.
        buffer: usize,
    },
    /// The mesh removed this member from a group; the session stays open.
    #[error("expelled from group {group:?}: {reason}")]
    Expelled {
        /// The group.
        group: String,
        /// Why.
        reason: String,
    },
    /// The broker is cut off from the primary component of the mesh and
    /// refused a publish or multicast ([`RejectCode::Blocked`]): the message
    /// was not sent. Publish again once the broker is back in the primary
    /// component (the session sees `MeshState { blocked: false }`), or
    /// through another broker. The session stays open.
    #[error("not sent: the broker is blocked (cut off from the primary component): {reason}")]
    Blocked {
        /// The broker's explanation.
        reason: String,
    },
    /// The broker refused a request; the session stays open.
    #[error("rejected by broker ({code:?}): {reason}")]
    Rejected {
        /// Machine-readable reason.
        code: RejectCode,
        /// The broker's explanation.
        reason: String,
    },
    /// The session is closed; `reason` says why.
    #[error("connection closed: {reason}")]
    Closed {
        /// The close code, when the broker gave one.
        code: Option<CloseCode>,
        /// Why the session ended.
        reason: String,
    },
}

impl ClientError {
    pub(crate) fn closed(reason: impl Into<String>) -> ClientError {
        ClientError::Closed {
            code: None,
            reason: reason.into(),
        }
    }
}

/// Turns a quinn connection error into the reason a user should see.
pub(crate) fn from_connection_error(e: &quinn::ConnectionError) -> ClientError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            let code = CloseCode::from_code(close.error_code.into_inner());
            ClientError::Closed {
                code,
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            }
        }
        other => ClientError::closed(other.to_string()),
    }
}
