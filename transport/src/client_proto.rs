//! Messages between a client and the broker it is connected to.
//!
//! A client session is one QUIC connection (ALPN [`ALPN_CLIENT`]) with one
//! bidirectional stream. The first frame each way is the handshake
//! ([`encode_hello`] / [`encode_welcome`]); after it the client sends
//! [`ClientMsg`] frames and the broker sends [`ServerMsg`] frames.

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::handshake;
use crate::wire::{self, WireError};

pub use crate::secret::Secret;

pub use crate::handshake::{HandshakeError, MAGIC};

/// ALPN protocol name of client connections.
pub const ALPN_CLIENT: &[u8] = b"meshcast-client";

/// Version of the client protocol spoken by this build (2: `Welcome`
/// carries the session's publisher id, `ServerMsg::Rejoined`; 3: the hello
/// carries a token, the welcome the authenticated user, a refusal its
/// [`CloseCode`]).
pub const PROTOCOL_VERSION: u16 = 3;

/// Oldest client protocol version a broker of this build accepts (a
/// version-2 client has no token; it may authenticate by certificate).
pub const MIN_PROTOCOL_VERSION: u16 = 2;

/// How a publisher asks for its messages on a topic to be ordered.
///
/// Between two messages with different declarations the weaker one applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Ordering {
    /// Delivered once, in any order.
    Reliable,
    /// One publisher's messages in the order it sent them.
    #[default]
    Fifo,
    /// Respects happened-before between publishers.
    Causal,
    /// The same order at every subscriber.
    Total,
}

impl std::fmt::Display for Ordering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ordering::Reliable => "reliable",
            Ordering::Fifo => "fifo",
            Ordering::Causal => "causal",
            Ordering::Total => "total",
        })
    }
}

impl std::str::FromStr for Ordering {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reliable" => Ok(Ordering::Reliable),
            "fifo" => Ok(Ordering::Fifo),
            "causal" => Ok(Ordering::Causal),
            "total" => Ok(Ordering::Total),
            other => Err(format!(
                "unknown ordering {other:?} (expected reliable, fifo, causal or total)"
            )),
        }
    }
}

/// What the client says first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ClientHello {
    /// A free-form client name, for logs and status.
    pub name: String,
    /// The client's token, `USER:SECRET`, if it authenticates with one
    /// (version 3 and later; never printed: see [`Secret`]).
    pub token: Option<Secret>,
}

/// [`ClientHello`] as protocol version 2 encodes it (no token).
#[derive(Serialize, Deserialize)]
struct ClientHelloV2 {
    name: String,
}

/// The broker's answer to an accepted [`ClientHello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The session id (numbered from 1 on every broker start). It never
    /// changes while the session lives. On a single broker it is also this
    /// client's publisher id in deliveries; in a mesh, deliveries carry
    /// [`mesh_publisher_id`] of the broker's node name, its incarnation and
    /// this session id (`publisher` below).
    pub session: u64,
    /// The publisher id the session's messages carry from now on: `session`
    /// on a single broker, in a mesh [`mesh_publisher_id`]`(node name,
    /// current incarnation, session)`. It changes when the broker rejoins
    /// the mesh as a new incarnation ([`ServerMsg::Rejoined`] gives the new
    /// one).
    pub publisher: u64,
    /// The broker's id.
    pub broker: String,
    /// The broker's site label.
    pub site: String,
    /// Largest payload the broker accepts, in bytes.
    pub max_payload: u32,
    /// The user the session is authenticated as (version 3 and later);
    /// `None` on a broker without authentication (development mode).
    pub user: Option<String>,
}

/// [`Welcome`] as protocol version 2 encodes it (no user).
#[derive(Serialize, Deserialize)]
struct WelcomeV2 {
    session: u64,
    publisher: u64,
    broker: String,
    site: String,
    max_payload: u32,
}

/// A message published by a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The topic, validated by the broker.
    pub topic: String,
    /// Ordering declared by the publisher for this topic.
    pub ordering: Ordering,
    /// Deliver only once every broker hosting subscribers holds the message.
    pub safe: bool,
    /// Opaque application bytes.
    pub payload: Bytes,
    /// Where a subscriber should send its answer (a request), if anywhere.
    pub reply_to: Option<String>,
    /// Ask for a [`ServerMsg::Confirmed`] carrying this client-chosen id:
    /// at once when the broker accepted the message, or, for a `safe` one,
    /// once it is stable. A refusal is then `Rejected { id: Some(confirm) }`.
    pub confirm: Option<u64>,
}

/// Client to broker, after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// Start a subscription; answered by [`ServerMsg::Subscribed`] or [`ServerMsg::Rejected`].
    Subscribe {
        /// Client-chosen id of the subscription.
        id: u64,
        /// The glob pattern.
        pattern: String,
    },
    /// End a subscription; answered by [`ServerMsg::Unsubscribed`].
    Unsubscribe {
        /// The subscription's id.
        id: u64,
    },
    /// Publish a message (no answer unless it is rejected).
    Publish(Publish),
    /// Answered by [`ServerMsg::Pong`] once everything sent before it was processed.
    Ping {
        /// Echoed back.
        id: u64,
    },
    /// Join a process group (mesh mode); answered by [`ServerMsg::Joined`]
    /// once the session is in an installed view of the group.
    Join {
        /// Client-chosen id of the request.
        id: u64,
        /// The group.
        group: String,
        /// Ask an existing member for a checkpoint of the group's state,
        /// delivered as [`ServerMsg::State`] before any later message.
        state: bool,
    },
    /// A member's checkpoint, answering [`ServerMsg::StateRequest`].
    StateReply {
        /// The request's token.
        token: u64,
        /// The checkpoint.
        data: Bytes,
    },
    /// Leave a group joined with [`ClientMsg::Join`]; answered by
    /// [`ServerMsg::Left`].
    Leave {
        /// The request id.
        id: u64,
        /// The group.
        group: String,
    },
    /// Send a message to every member of a group (no answer unless refused).
    Multicast {
        /// The group.
        group: String,
        /// Ordering declared for the message.
        ordering: Ordering,
        /// Deliver only once every broker hosting members holds it.
        safe: bool,
        /// Opaque application bytes.
        payload: Bytes,
        /// Ask for a [`ServerMsg::Confirmed`], as [`Publish::confirm`].
        confirm: Option<u64>,
    },
    /// Start a *tap*: a subscription that joins no group (mesh mode), so
    /// that it is in no view and no member sees it; it gets the matching
    /// messages its broker delivers. Answered like
    /// [`ClientMsg::Subscribe`] (`Subscribed` with no views), ended with
    /// [`ClientMsg::Unsubscribe`]. Added last, so every earlier message
    /// keeps its encoding; a broker that predates it closes the session
    /// with `ProtocolError`.
    Tap {
        /// Client-chosen id of the subscription.
        id: u64,
        /// The glob pattern.
        pattern: String,
    },
}

/// One installed view of a group, as a member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupViewInfo {
    /// The group.
    pub group: String,
    /// The view's id, `v<counter>@<coordinator>` (views of a group are
    /// totally ordered; every member sees the same ids).
    pub view: String,
    /// Members, oldest first, as `<broker id>/s<session>` (`b1/s2`;
    /// `b1#1/s2` once broker `b1` rejoined the mesh after a partition, the
    /// number counting its rejoins since it started).
    pub members: Vec<String>,
    /// This session's rank in `members` (0 = oldest).
    pub rank: u32,
}

/// A message multicast to a group, delivered to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDelivery {
    /// The group.
    pub group: String,
    /// The sender's publisher id ([`mesh_publisher_id`]).
    pub publisher: u64,
    /// The sender's sequence number for it.
    pub seq: u64,
    /// Ordering it was sent with.
    pub ordering: Ordering,
    /// Whether it was sent as `safe`.
    pub safe: bool,
    /// The application bytes.
    pub payload: Bytes,
}

/// A message delivered to a subscriber session.
///
/// The broker encodes each delivered message once and sends the same bytes to
/// every session with a matching subscription; the client library routes it
/// to its subscriptions by matching their patterns locally.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The topic it was published on.
    pub topic: String,
    /// The publisher id: its session id on a single broker, in a mesh
    /// [`mesh_publisher_id`] (unique across broker restarts and rejoins).
    pub publisher: u64,
    /// The publisher's sequence number for this message (1, 2, 3, ...).
    pub seq: u64,
    /// The ordering it was published with.
    pub ordering: Ordering,
    /// Whether it was published as `safe`.
    pub safe: bool,
    /// The application bytes.
    pub payload: Bytes,
    /// Where the publisher wants an answer, for a request.
    pub reply_to: Option<String>,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RejectCode {
    /// The topic is not valid.
    InvalidTopic,
    /// The pattern is not valid.
    InvalidPattern,
    /// The payload exceeds `limits.max_payload_bytes`.
    PayloadTooLarge,
    /// A per-session limit was reached.
    LimitReached,
    /// The subscription id is unknown or already in use.
    BadSubscriptionId,
    /// The request needs a feature this broker does not offer (for example
    /// groups on a broker that is not in mesh mode).
    Unsupported,
    /// The group name is not valid.
    InvalidGroup,
    /// A confirmation cannot be given: the broker was cut off from the
    /// primary component before the message was stable, so it may or may
    /// not be delivered.
    OutcomeUnknown,
    /// The broker is cut off from the primary component (blocked): it
    /// accepts no publish or multicast until it is back in it (the client
    /// was told `MeshState { blocked: true }`). Nothing was sent; publish
    /// again once it is back (`MeshState { blocked: false }` or
    /// [`ServerMsg::Rejoined`]), or through another broker.
    Blocked,
    /// The session's user may not do this (`[[permissions]]`); the reason
    /// names the user, the action, the topic or group, and the rule that
    /// denied it (or that none allowed it). Added after `Blocked`, so the
    /// earlier codes keep their encoding.
    PermissionDenied,
    /// The session published faster than the broker allows
    /// (`limits.publish_messages_per_s` with `limits.publish_burst`, or
    /// `limits.publish_bytes_per_s`): the message was not sent; the session
    /// stays open. Added last (after `PermissionDenied`), without a version
    /// change: every other code keeps its encoding (a client from before it
    /// cannot decode this refusal, which only a broker with a publish rate
    /// configured sends).
    RateLimited,
}

/// Broker to client, after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerMsg {
    /// The subscription is installed: every message published after this
    /// point and matching it will be delivered.
    Subscribed {
        /// The subscription's id.
        id: u64,
        /// Mesh mode: the installed view of each group the pattern reaches
        /// (the session is a member of each); later views of those groups
        /// come as [`ServerMsg::GroupView`]. Empty on a single broker.
        views: Vec<GroupViewInfo>,
    },
    /// The subscription is removed.
    Unsubscribed {
        /// The subscription's id.
        id: u64,
    },
    /// Answer to [`ClientMsg::Ping`].
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// A request was refused; the session stays open.
    Rejected {
        /// The id of the refused request (a subscription, join, leave, or a
        /// publish's `confirm` id), if it had one.
        id: Option<u64>,
        /// Machine-readable reason.
        code: RejectCode,
        /// Human-readable reason naming what was wrong.
        reason: String,
    },
    /// A published message.
    Deliver(Delivery),
    /// The join with this request id is installed; the view follows.
    Joined {
        /// The request id.
        id: u64,
        /// The first view the session is in.
        view: GroupViewInfo,
    },
    /// The session left the group.
    Left {
        /// The request id.
        id: u64,
    },
    /// A new view of a group the session is a member of (joined, or
    /// reached by one of its subscriptions), in order with the messages.
    GroupView(GroupViewInfo),
    /// A message multicast to a group the session is a member of.
    GroupMessage(GroupDelivery),
    /// A member is asked for a checkpoint of its state at this point of the
    /// group's order; answer with [`ClientMsg::StateReply`].
    StateRequest {
        /// The group.
        group: String,
        /// Echo it in the reply.
        token: u64,
    },
    /// This broker left (`blocked: true`) or came back to (`false`) the
    /// primary component of the mesh, in its place among the session's
    /// deliveries and views: nothing the broker delivers after
    /// `blocked: true` belongs to the memberships it was cut off in, until
    /// `blocked: false` (the same memberships go on: nothing was missed) or
    /// [`ServerMsg::Rejoined`] (they ended). While blocked, publishes and
    /// multicasts are refused with [`RejectCode::Blocked`].
    MeshState {
        /// Whether the broker is outside the primary component.
        blocked: bool,
    },
    /// The broker was excluded from the primary component while cut off and
    /// has been admitted again as a new incarnation. Sent, in its place, to
    /// every session that was open under the old incarnation, before any
    /// view of the new one: the session's memberships of the old
    /// incarnation ended, its groups' next views list it as `member`, and
    /// messages the primary component delivered meanwhile may be missing (a
    /// member that joined with state gets a fresh [`ServerMsg::State`]
    /// first). It stands for the `MeshState { blocked: false }` that the
    /// session would otherwise get: a later `MeshState { blocked: false }`
    /// (if the broker was still confirming its place when admitted) only
    /// ends the refusals of publishes.
    Rejoined {
        /// The broker's new incarnation.
        incarnation: u64,
        /// The session's publisher id from now on ([`mesh_publisher_id`] with
        /// the new incarnation; the session id does not change).
        publisher: u64,
        /// The session as the new views list it,
        /// `<broker id>#<rejoins>/s<session>` (e.g. `b1#1/s2`).
        member: String,
    },
    /// The session was removed from a group by the mesh (its membership
    /// ended); `reason` says why (`slow`, `transfer failed`, ...).
    Expelled {
        /// The group.
        group: String,
        /// Why.
        reason: String,
    },
    /// The checkpoint for a member that joined with `state` (`None` when it
    /// is the group's first member), before any later message. Sent again
    /// after the member's broker rejoined the primary component following a
    /// partition: the member then replaces its state with this one.
    State {
        /// The group.
        group: String,
        /// The checkpoint.
        data: Option<Bytes>,
    },
    /// Answer to a publish or multicast that asked for a confirmation.
    Confirmed {
        /// The `confirm` id of the request.
        id: u64,
        /// The publisher's sequence number given to the message.
        seq: u64,
        /// `true`: the message was `safe` and is stable (every broker
        /// hosting members holds it, so every member that survives into
        /// the next view delivers it). `false`: the broker accepted it.
        stable: bool,
    },
}

/// Application close codes carried by QUIC `CONNECTION_CLOSE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCode {
    /// Normal close.
    Normal = 0,
    /// The peer sent bytes that are not a valid frame or message.
    ProtocolError = 1,
    /// The handshake named a protocol version this broker does not speak.
    UnsupportedVersion = 2,
    /// A frame exceeded `limits.max_frame_bytes`.
    FrameTooLarge = 3,
    /// The subscriber could not keep up and its queue filled.
    SlowConsumer = 4,
    /// The broker is shutting down.
    Shutdown = 5,
    /// The handshake did not arrive in time.
    HandshakeTimeout = 6,
    /// The broker has reached `limits.max_sessions`.
    TooManySessions = 7,
    /// The client did not authenticate: no credentials, an unknown user, a
    /// wrong token, or a certificate the broker does not accept.
    Unauthenticated = 8,
    /// The client's source address already has
    /// `limits.max_connections_per_address` connections open.
    TooManyFromAddress = 9,
    /// The client's user already has `limits.max_connections_per_user`
    /// sessions open.
    TooManyForUser = 10,
}

impl CloseCode {
    /// The numeric code on the wire.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Maps a numeric code back, if known.
    pub fn from_code(code: u64) -> Option<CloseCode> {
        use CloseCode::*;
        [
            Normal,
            ProtocolError,
            UnsupportedVersion,
            FrameTooLarge,
            SlowConsumer,
            Shutdown,
            HandshakeTimeout,
            TooManySessions,
            Unauthenticated,
            TooManyFromAddress,
            TooManyForUser,
        ]
        .into_iter()
        .find(|c| c.code() as u64 == code)
    }
}

/// The publisher id a mesh puts in deliveries for session `session` of the
/// broker with node name `node_name` (`meshcast_config::node_name` of its
/// id) in incarnation `incarnation`.
///
/// Sessions are numbered from 1 on every broker start, so the session
/// alone repeats across restarts; the incarnation (persisted, one more on
/// every start and on every rejoin after being cut off) makes the triple
/// unique, and this mixes it into 64 bits (FNV-1a over the three
/// little-endian integers, then the splitmix64 finaliser). After a rejoin
/// the broker publishes a session's later messages under its new
/// incarnation: they carry a new publisher id (their sequence numbers go
/// on from the old ones), so the old and the new incarnation's messages
/// are two separate publisher streams. The session learns its id from
/// [`Welcome::publisher`] and, after a rejoin, [`ServerMsg::Rejoined`].
pub fn mesh_publisher_id(node_name: u32, incarnation: u64, session: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = node_name
        .to_le_bytes()
        .into_iter()
        .chain(incarnation.to_le_bytes())
        .chain(session.to_le_bytes());
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Encodes the client's handshake frame for protocol `version`
/// (normally [`PROTOCOL_VERSION`]; tests use others). Version 2 carries no
/// token.
pub fn encode_hello(version: u16, hello: &ClientHello) -> Result<Bytes, WireError> {
    if version <= 2 {
        let v2 = ClientHelloV2 {
            name: hello.name.clone(),
        };
        return handshake::encode_hello("client hello", version, &v2);
    }
    handshake::encode_hello("client hello", version, hello)
}

/// Decodes a client handshake body, checking magic and version.
pub fn decode_hello(body: &[u8]) -> Result<ClientHello, HandshakeError> {
    decode_hello_versioned(body).map(|(_, hello)| hello)
}

/// [`decode_hello`], also returning the client's protocol version (from
/// [`MIN_PROTOCOL_VERSION`] to [`PROTOCOL_VERSION`]): the welcome must be
/// encoded for it.
pub fn decode_hello_versioned(body: &[u8]) -> Result<(u16, ClientHello), HandshakeError> {
    let (version, rest) = handshake::split_hello(body, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION)?;
    if version == 2 {
        let v2: ClientHelloV2 = wire::decode_body("client hello", rest)?;
        let hello = ClientHello {
            name: v2.name,
            token: None,
        };
        return Ok((version, hello));
    }
    Ok((version, wire::decode_body("client hello", rest)?))
}

/// Encodes the broker's answer for a client of this build's version: a
/// welcome, or a refusal with a reason.
pub fn encode_welcome(answer: Result<&Welcome, &str>) -> Result<Bytes, WireError> {
    encode_welcome_for(PROTOCOL_VERSION, answer)
}

/// Encodes the broker's answer for a client speaking `version`.
pub fn encode_welcome_for(
    version: u16,
    answer: Result<&Welcome, &str>,
) -> Result<Bytes, WireError> {
    match answer {
        Ok(w) if version <= 2 => {
            let v2 = WelcomeV2 {
                session: w.session,
                publisher: w.publisher,
                broker: w.broker.clone(),
                site: w.site.clone(),
                max_payload: w.max_payload,
            };
            handshake::encode_answer("welcome", version, Ok(&v2))
        }
        Ok(w) => handshake::encode_answer("welcome", version, Ok(w)),
        Err(reason) => handshake::encode_answer::<Welcome>("welcome", version, Err(reason)),
    }
}

/// Encodes a refusal with its close code for a client speaking `version`:
/// from version 3 the code travels in the answer
/// ([`HandshakeError::RefusedWith`] on the client), before that only the
/// reason does.
pub fn encode_refusal_for(version: u16, code: CloseCode, reason: &str) -> Result<Bytes, WireError> {
    if version >= 3 {
        return Ok(handshake::encode_coded_refusal(
            version,
            code.code(),
            reason,
        ));
    }
    encode_welcome_for(version, Err(reason))
}

/// Decodes the broker's handshake answer.
pub fn decode_welcome(body: &[u8]) -> Result<Welcome, HandshakeError> {
    handshake::decode_answer("welcome", PROTOCOL_VERSION, body)
}

/// Encodes one client message as a frame, appending it to `out`.
pub fn encode_client(msg: &ClientMsg, out: &mut BytesMut) -> Result<(), WireError> {
    wire::encode_frame("client message", msg, out)
}

/// Decodes one client message body.
pub fn decode_client(body: &[u8]) -> Result<ClientMsg, WireError> {
    wire::decode_body("client message", body)
}

/// Encodes one broker message as a stand-alone frame.
pub fn encode_server(msg: &ServerMsg) -> Result<Bytes, WireError> {
    let hint = match msg {
        ServerMsg::Deliver(d) => d.payload.len() + d.topic.len() + 32,
        _ => 64,
    };
    wire::frame_sized("server message", msg, hint)
}

/// Decodes one broker message body.
pub fn decode_server(body: &[u8]) -> Result<ServerMsg, WireError> {
    wire::decode_body("server message", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips() {
        let hello = ClientHello {
            name: "t".into(),
            token: Some(Secret::new("u:s")),
        };
        let f = encode_hello(PROTOCOL_VERSION, &hello).unwrap();
        assert_eq!(decode_hello_versioned(&f[4..]).unwrap(), (3, hello));
        // A version-2 client (no token) is still understood.
        let f = encode_hello(2, &ClientHello::default()).unwrap();
        let (v, old) = decode_hello_versioned(&f[4..]).unwrap();
        assert_eq!((v, old.token), (2, None));
    }

    #[test]
    fn wrong_version_is_named() {
        let f = encode_hello(99, &ClientHello::default()).unwrap();
        let err = decode_hello(&f[4..]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported protocol version 99 (this side speaks version 3)"
        );
    }

    #[test]
    fn bad_magic_is_named() {
        let err = decode_hello(b"GET / HTTP/1.1").unwrap_err();
        assert!(matches!(err, HandshakeError::BadMagic(_)), "{err}");
        let err = decode_hello(b"").unwrap_err();
        assert!(matches!(err, HandshakeError::BadMagic(_)), "{err}");
    }

    #[test]
    fn refusal_is_readable() {
        let f = encode_welcome(Err("too many sessions")).unwrap();
        match decode_welcome(&f[4..]) {
            Err(HandshakeError::Refused(r)) => assert_eq!(r, "too many sessions"),
            other => panic!("{other:?}"),
        }
        let w = Welcome {
            session: 3,
            publisher: 3,
            broker: "b".into(),
            site: "s".into(),
            max_payload: 10,
            user: Some("alice".into()),
        };
        let f = encode_welcome(Ok(&w)).unwrap();
        assert_eq!(decode_welcome(&f[4..]).unwrap(), w);
        let f = encode_refusal_for(3, CloseCode::Unauthenticated, "no token").unwrap();
        match decode_welcome(&f[4..]) {
            Err(HandshakeError::RefusedWith { code, reason }) => {
                assert_eq!((code, reason.as_str()), (8, "no token"))
            }
            other => panic!("{other:?}"),
        }
        // A version-2 client gets the plain refusal it can read.
        let f = encode_refusal_for(2, CloseCode::Unauthenticated, "no token").unwrap();
        assert_eq!(f[4 + 6], 1, "status 1: plain refusal");
    }

    #[test]
    fn tap_came_last_so_earlier_messages_keep_their_encoding() {
        // bincode numbers enum variants: `Tap` must be the last variant, so
        // a client built before it encodes every message the same way.
        let mut out = BytesMut::new();
        encode_client(&ClientMsg::Ping { id: 9 }, &mut out).unwrap();
        assert_eq!(&out[4..], &[3, 9], "Ping is variant 3 with id 9");
        out.clear();
        let tap = ClientMsg::Tap {
            id: 1,
            pattern: "a".into(),
        };
        encode_client(&tap, &mut out).unwrap();
        assert_eq!(out[4], 8, "Tap is variant 8, after Multicast");
    }

    #[test]
    fn messages_round_trip() {
        let msgs = [
            ClientMsg::Subscribe {
                id: 1,
                pattern: "a/*".into(),
            },
            ClientMsg::Unsubscribe { id: 1 },
            ClientMsg::Publish(Publish {
                topic: "a/b".into(),
                ordering: Ordering::Total,
                safe: true,
                payload: Bytes::from_static(b"xyz"),
                reply_to: Some("_inbox/1/2".into()),
                confirm: Some(3),
            }),
            ClientMsg::Ping { id: 9 },
            ClientMsg::Tap {
                id: 2,
                pattern: "**".into(),
            },
        ];
        let mut out = BytesMut::new();
        for m in &msgs {
            out.clear();
            encode_client(m, &mut out).unwrap();
            assert_eq!(&decode_client(&out[4..]).unwrap(), m);
        }
        let d = ServerMsg::Deliver(Delivery {
            topic: "a/b".into(),
            publisher: 4,
            seq: 5,
            ordering: Ordering::Fifo,
            safe: false,
            payload: Bytes::from_static(b"p"),
            reply_to: None,
        });
        let f = encode_server(&d).unwrap();
        assert_eq!(decode_server(&f[4..]).unwrap(), d);
        let view = GroupViewInfo {
            group: "g".into(),
            view: "v3@b1#7".into(),
            members: vec!["b1#7/s2".into()],
            rank: 0,
        };
        for m in [
            ServerMsg::Subscribed {
                id: 1,
                views: vec![view.clone()],
            },
            ServerMsg::GroupView(view),
            ServerMsg::Confirmed {
                id: 4,
                seq: 9,
                stable: true,
            },
            ServerMsg::MeshState { blocked: true },
            ServerMsg::Rejoined {
                incarnation: 8,
                publisher: mesh_publisher_id(1, 8, 2),
                member: "b1#8/s2".into(),
            },
        ] {
            let f = encode_server(&m).unwrap();
            assert_eq!(decode_server(&f[4..]).unwrap(), m);
        }
    }

    #[test]
    fn close_codes_map_back() {
        for c in [
            CloseCode::Normal,
            CloseCode::SlowConsumer,
            CloseCode::TooManySessions,
            CloseCode::Unauthenticated,
            CloseCode::TooManyFromAddress,
            CloseCode::TooManyForUser,
        ] {
            assert_eq!(CloseCode::from_code(c.code() as u64), Some(c));
        }
        assert_eq!(CloseCode::from_code(999), None);
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_client(&bytes);
            let _ = decode_server(&bytes);
            let _ = decode_hello(&bytes);
            let _ = decode_welcome(&bytes);
        }
    }
}
