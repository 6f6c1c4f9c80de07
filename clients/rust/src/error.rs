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
    /// A broker address is not `IP:PORT` or `HOST:PORT`.
    #[error("invalid broker address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker could not be reached (with several addresses: the last
    /// one tried; the others failed too).
    #[error("cannot connect to {addr}: {cause} ({detail})")]
    Connect {
        /// The broker address (as given, and what it resolved to).
        addr: String,
        /// The likely cause.
        cause: ConnectCause,
        /// What the network or TLS layer said.
        detail: String,
    },
    /// The connection to the broker was lost. Requests in flight were not
    /// answered: a publish not yet confirmed may or may not have been
    /// delivered (its outcome is unknown), and publishes queued since the
    /// last [`crate::Client::flush`] may be missing. With
    /// [`crate::ClientOptions::reconnect`] the client goes on with a new
    /// session on another broker (see [`crate::SubscriptionEvent::Reconnected`]).
    #[error("connection to {addr} lost, outcome unknown: {reason}")]
    ConnectionLost {
        /// The broker the connection was to.
        addr: String,
        /// Why it was lost.
        reason: String,
    },
    /// A request was published but nobody answered before the timeout
    /// ([`crate::Client::request`]).
    #[error("no responders on {topic:?} within {timeout:?}")]
    NoResponders {
        /// The request's topic.
        topic: String,
        /// How long the request waited.
        timeout: std::time::Duration,
    },
    /// The broker did not answer within [`crate::ClientOptions::close_timeout`]
    /// (an unsubscribe or a leave); the session may be unusable.
    #[error("{what}: no answer from the broker within {timeout:?}")]
    TimedOut {
        /// What was waited for.
        what: String,
        /// How long.
        timeout: std::time::Duration,
    },
    /// The broker refused the session because the client did not
    /// authenticate: no credentials where the broker requires them, an
    /// unknown user or wrong token ([`crate::ClientOptions::token`]), or a
    /// client certificate it does not accept
    /// ([`crate::ClientOptions::client_cert`]). Nothing happened on the
    /// broker. Not retried on other brokers: they share the configuration.
    #[error("not authenticated by {addr}: {reason}")]
    Unauthenticated {
        /// The broker address.
        addr: String,
        /// The broker's reason (never the secret).
        reason: String,
    },
    /// The broker refused a request because the session's user may not do
    /// it (`[[permissions]]`); the reason names the user, the action, the
    /// topic or group and the rule. The session stays open.
    #[error("{reason}")]
    PermissionDenied {
        /// The broker's explanation.
        reason: String,
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
    /// The broker refused a publish or multicast because the session
    /// publishes faster than it allows ([`RejectCode::RateLimited`]:
    /// `limits.publish_messages_per_s`, `limits.publish_burst`,
    /// `limits.publish_bytes_per_s`): the message was not sent. Slow down
    /// and publish it again. The session stays open.
    #[error("not sent: rate limited by the broker: {reason}")]
    RateLimited {
        /// The broker's explanation, naming the limit.
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
    /// The session is closed; `reason` says why. A broker that refuses a
    /// new session for a limit closes it with a code that says which:
    /// [`CloseCode::TooManySessions`] (`limits.max_sessions`),
    /// [`CloseCode::TooManyFromAddress`]
    /// (`limits.max_connections_per_address`), [`CloseCode::TooManyForUser`]
    /// (`limits.max_connections_per_user`), or
    /// [`CloseCode::HandshakeTimeout`]; `Client::connect` returns it so.
    #[error("connection closed: {reason}")]
    Closed {
        /// The close code, when the broker gave one.
        code: Option<CloseCode>,
        /// Why the session ended.
        reason: String,
    },
}

/// Why a connection attempt failed, as far as the client can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectCause {
    /// The host name did not resolve.
    Resolve,
    /// No answer within [`crate::ClientOptions::connect_timeout`]: nothing
    /// is listening there (is the broker running, is this its client port
    /// `broker.client_listen`?), or UDP is dropped on the way.
    NoAnswer {
        /// How long the client waited.
        after: std::time::Duration,
    },
    /// Something answered that does not speak the meshcast client protocol
    /// (its TLS ALPN is not `meshcast-client`): typically a broker's peer
    /// port (`broker.peer_listen`) instead of its client port.
    WrongProtocol,
    /// The broker's certificate is not valid for the TLS name the client
    /// checked ([`crate::ClientOptions::server_name`], `--server-name`).
    ServerName {
        /// The name that was checked.
        name: String,
    },
    /// The broker's certificate is not signed by the trusted CA
    /// ([`crate::ClientOptions::ca_file`], `--ca`).
    UnknownCa {
        /// The CA file trusted.
        ca: String,
    },
    /// The broker refused the session (see the detail).
    Refused,
    /// Anything else (see the detail).
    Other,
}

impl std::fmt::Display for ConnectCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectCause::Resolve => f.write_str("the host name does not resolve"),
            ConnectCause::NoAnswer { after } => write!(
                f,
                "no answer within {after:?}: nothing is listening there (is the broker \
                 running, and is this its client port, broker.client_listen?) or UDP is blocked"
            ),
            ConnectCause::WrongProtocol => f.write_str(
                "it does not speak the meshcast client protocol (TLS ALPN mismatch): is \
                 this a broker's peer port (broker.peer_listen) instead of its client port?",
            ),
            ConnectCause::ServerName { name } => write!(
                f,
                "the broker's certificate is not valid for the name {name:?}: give the name \
                 it was issued for with --server-name (ClientOptions::server_name)"
            ),
            ConnectCause::UnknownCa { ca } => write!(
                f,
                "the broker's certificate is not signed by the CA in {ca} (--ca, \
                 ClientOptions::ca_file): use the cluster CA that issued it"
            ),
            ConnectCause::Refused => f.write_str("the broker refused the session"),
            ConnectCause::Other => f.write_str("connection failed"),
        }
    }
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
