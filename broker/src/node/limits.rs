//! Limits against abuse of the client port, beside the session code that
//! applies them: connections per source address and per user
//! (`limits.max_connections_per_address`, `limits.max_connections_per_user`)
//! and the publish rate of a session (`limits.publish_messages_per_s`,
//! `limits.publish_burst`, `limits.publish_bytes_per_s`).
//!
//! The stream limit (`limits.max_streams_per_session`) is QUIC's own flow
//! control, set in the client endpoint's transport configuration; the
//! subscription and join limit is checked where those are handled (the
//! router and the mesh bridge); the handshake and idle timeouts are the
//! session's and QUIC's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use meshcast_config::LimitsConfig;
use meshcast_transport::client_proto::{ClientMsg, CloseCode, RejectCode, ServerMsg};
use tokio::sync::mpsc;

use super::core::CoreMsg;
use crate::router::SessionId;

/// Who a session is, for `limits.max_connections_per_user`.
///
/// With `[auth]` configured, the user the session authenticated as (by
/// token or client certificate). Without it (development mode) every
/// session is anonymous and its user is its source IP address
/// (`anonymous@127.0.0.1`); the client name in the hello is never an
/// identity (anyone can claim any name). The two never share a count, even
/// for a user whose name looks like an anonymous one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Identity {
    /// An unauthenticated session, by its source address.
    Anonymous(IpAddr),
    /// An authenticated user, by name.
    User(String),
}

impl Identity {
    /// The identity of an unauthenticated session from `remote`.
    pub(crate) fn anonymous(remote: SocketAddr) -> Identity {
        Identity::Anonymous(remote.ip().to_canonical())
    }

    /// The identity of a session authenticated as `user`.
    pub(crate) fn user(user: &str) -> Identity {
        Identity::User(user.to_string())
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anonymous(ip) => write!(f, "anonymous@{ip}"),
            Identity::User(name) => f.write_str(name),
        }
    }
}

/// Why a connection is refused: the close code and a reason naming the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: CloseCode,
    pub reason: String,
}

/// Open connections per source address and sessions per user, shared by
/// every session task.
#[derive(Debug)]
pub(crate) struct ConnectionCounts {
    addresses: Mutex<HashMap<IpAddr, usize>>,
    users: Mutex<HashMap<Identity, usize>>,
    max_per_address: usize,
    max_per_user: usize,
}

/// Which count a [`Slot`] holds a place in.
#[derive(Debug)]
enum Key {
    Address(IpAddr),
    User(Identity),
}

/// A place in one of the counts of [`ConnectionCounts`], given back when
/// dropped (when the connection or session ends).
#[derive(Debug)]
pub(crate) struct Slot {
    counts: Arc<ConnectionCounts>,
    key: Key,
}

impl Drop for Slot {
    fn drop(&mut self) {
        match &self.key {
            Key::Address(ip) => release(&self.counts.addresses, ip),
            Key::User(id) => release(&self.counts.users, id),
        }
    }
}

fn release<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, usize>>, key: &K) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// Takes a place for `key` in `map` unless it already holds `max`; the
/// error is how many it holds. Entries are removed at zero, so the map
/// holds only keys with open connections.
fn take<K: std::hash::Hash + Eq + Clone>(
    map: &Mutex<HashMap<K, usize>>,
    key: &K,
    max: usize,
) -> Result<(), usize> {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    let n = map.entry(key.clone()).or_default();
    if *n >= max {
        return Err(*n);
    }
    *n += 1;
    Ok(())
}

impl ConnectionCounts {
    /// Empty counts bounded by `limits`.
    pub(crate) fn new(limits: &LimitsConfig) -> ConnectionCounts {
        ConnectionCounts {
            addresses: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            max_per_address: limits.max_connections_per_address,
            max_per_user: limits.max_connections_per_user,
        }
    }

    /// A place for a new connection from `remote`, or its refusal
    /// (`limits.max_connections_per_address`). IPv4 addresses mapped into
    /// IPv6 count as the IPv4 address.
    pub(crate) fn admit_address(self: &Arc<Self>, remote: SocketAddr) -> Result<Slot, Refusal> {
        let ip = remote.ip().to_canonical();
        match take(&self.addresses, &ip, self.max_per_address) {
            Ok(()) => Ok(Slot {
                counts: self.clone(),
                key: Key::Address(ip),
            }),
            Err(open) => Err(Refusal {
                code: CloseCode::TooManyFromAddress,
                reason: format!(
                    "{ip} already has {open} connections open \
                     (limits.max_connections_per_address = {})",
                    self.max_per_address
                ),
            }),
        }
    }

    /// A place for a new session of `user`, or its refusal
    /// (`limits.max_connections_per_user`).
    pub(crate) fn admit_user(self: &Arc<Self>, user: &Identity) -> Result<Slot, Refusal> {
        match take(&self.users, user, self.max_per_user) {
            Ok(()) => Ok(Slot {
                counts: self.clone(),
                key: Key::User(user.clone()),
            }),
            Err(open) => Err(Refusal {
                code: CloseCode::TooManyForUser,
                reason: format!(
                    "user {user} already has {open} sessions open \
                     (limits.max_connections_per_user = {})",
                    self.max_per_user
                ),
            }),
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `capacity` held;
/// starts full.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, capacity: f64, now: Instant) -> Bucket {
        Bucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }
}

/// The publish rate of one session: a bucket of messages and one of
/// payload bytes, each present only if its limit is set.
#[derive(Debug, Clone)]
pub(crate) struct PublishRate {
    messages: Option<Bucket>,
    bytes: Option<Bucket>,
    /// For the refusal's reason.
    messages_per_s: u32,
    burst: u32,
    bytes_per_s: u64,
}

impl PublishRate {
    /// The rate limit of a new session, or `None` when `limits` sets none.
    pub(crate) fn new(limits: &LimitsConfig, now: Instant) -> Option<PublishRate> {
        let messages = (limits.publish_messages_per_s > 0).then(|| {
            Bucket::new(
                f64::from(limits.publish_messages_per_s),
                f64::from(limits.publish_burst),
                now,
            )
        });
        let bytes = (limits.publish_bytes_per_s > 0).then(|| {
            let rate = limits.publish_bytes_per_s as f64;
            Bucket::new(rate, rate, now)
        });
        if messages.is_none() && bytes.is_none() {
            return None;
        }
        Some(PublishRate {
            messages,
            bytes,
            messages_per_s: limits.publish_messages_per_s,
            burst: limits.publish_burst,
            bytes_per_s: limits.publish_bytes_per_s,
        })
    }

    /// Takes one message of `payload` bytes at `now` from the buckets, or
    /// says why it is over the rate (then nothing is taken).
    pub(crate) fn admit(&mut self, payload: usize, now: Instant) -> Result<(), String> {
        if let Some(b) = &mut self.messages {
            b.refill(now);
            if b.tokens < 1.0 {
                return Err(format!(
                    "over the publish rate of {} messages/s with a burst of {} \
                     (limits.publish_messages_per_s, limits.publish_burst)",
                    self.messages_per_s, self.burst
                ));
            }
        }
        if let Some(b) = &mut self.bytes {
            b.refill(now);
            if b.tokens < payload as f64 {
                return Err(format!(
                    "over the publish rate of {} payload bytes/s (limits.publish_bytes_per_s)",
                    self.bytes_per_s
                ));
            }
            b.tokens -= payload as f64;
        }
        if let Some(b) = &mut self.messages {
            b.tokens -= 1.0;
        }
        Ok(())
    }
}

/// The refusal of a publish or multicast over the rate, or `None` for
/// any other message or one within it.
fn screen_one(rate: &mut PublishRate, msg: &ClientMsg, now: Instant) -> Option<ServerMsg> {
    let (what, payload, confirm) = match msg {
        ClientMsg::Publish(p) => (format!("message on {}", p.topic), &p.payload, p.confirm),
        ClientMsg::Multicast {
            group,
            payload,
            confirm,
            ..
        } => (format!("multicast to group {group}"), payload, *confirm),
        _ => return None,
    };
    let why = rate.admit(payload.len(), now).err()?;
    Some(ServerMsg::Rejected {
        id: confirm,
        code: RejectCode::RateLimited,
        reason: format!("{what} not sent: {why}"),
    })
}

/// Hands a batch of requests read from `session` to the core, in order:
/// publishes and multicasts over the session's publish rate are not
/// passed on but answered `Rejected { code: RateLimited }` (the session
/// stays open). Fails only if the core is gone.
pub(crate) async fn forward(
    core: &mpsc::Sender<CoreMsg>,
    session: SessionId,
    rate: Option<&mut PublishRate>,
    msgs: Vec<ClientMsg>,
) -> Result<(), ()> {
    let Some(rate) = rate else {
        return core
            .send(CoreMsg::Batch { session, msgs })
            .await
            .map_err(|_| ());
    };
    let now = Instant::now();
    let mut batch = Vec::with_capacity(msgs.len());
    let mut refused = Vec::new();
    for msg in msgs {
        match screen_one(rate, &msg, now) {
            Some(refusal) => {
                if !batch.is_empty() {
                    let msgs = std::mem::take(&mut batch);
                    core.send(CoreMsg::Batch { session, msgs })
                        .await
                        .map_err(|_| ())?;
                }
                refused.push(refusal);
            }
            None => {
                if !refused.is_empty() {
                    let replies = std::mem::take(&mut refused);
                    core.send(CoreMsg::Refused { session, replies })
                        .await
                        .map_err(|_| ())?;
                }
                batch.push(msg);
            }
        }
    }
    if !refused.is_empty() {
        core.send(CoreMsg::Refused {
            session,
            replies: refused,
        })
        .await
        .map_err(|_| ())?;
    }
    if !batch.is_empty() {
        core.send(CoreMsg::Batch {
            session,
            msgs: batch,
        })
        .await
        .map_err(|_| ())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(messages: u32, burst: u32, bytes: u64) -> LimitsConfig {
        LimitsConfig {
            publish_messages_per_s: messages,
            publish_burst: burst,
            publish_bytes_per_s: bytes,
            ..LimitsConfig::default()
        }
    }

    #[test]
    fn no_rate_configured_means_no_bucket() {
        assert!(PublishRate::new(&limits(0, 10, 0), Instant::now()).is_none());
    }

    #[test]
    fn the_message_bucket_allows_the_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(&limits(10, 3, 0), t0).unwrap();
        for _ in 0..3 {
            r.admit(1, t0).unwrap();
        }
        let err = r.admit(1, t0).unwrap_err();
        assert!(err.contains("limits.publish_messages_per_s"), "{err}");
        // 10/s: one more after 100 ms, not two.
        let t1 = t0 + Duration::from_millis(100);
        r.admit(1, t1).unwrap();
        r.admit(1, t1).unwrap_err();
        // Never more than the burst, however long it waited.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            r.admit(1, t2).unwrap();
        }
        r.admit(1, t2).unwrap_err();
    }

    #[test]
    fn the_byte_bucket_holds_one_second_and_a_refusal_takes_nothing() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(&limits(0, 1, 1000), t0).unwrap();
        r.admit(600, t0).unwrap();
        let err = r.admit(600, t0).unwrap_err();
        assert!(err.contains("limits.publish_bytes_per_s"), "{err}");
        // The refused 600 bytes were not taken: 400 still fit.
        r.admit(400, t0).unwrap();
        r.admit(1, t0).unwrap_err();
        r.admit(500, t0 + Duration::from_millis(500)).unwrap();
    }

    #[test]
    fn a_message_refused_for_bytes_takes_no_message_token() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(&limits(1, 1, 100), t0).unwrap();
        r.admit(200, t0).unwrap_err();
        r.admit(10, t0).unwrap();
    }

    #[test]
    fn only_publishes_and_multicasts_are_screened() {
        let t0 = Instant::now();
        let mut r = PublishRate::new(&limits(1, 1, 0), t0).unwrap();
        let publish = |confirm| {
            ClientMsg::Publish(meshcast_transport::client_proto::Publish {
                topic: "a/b".into(),
                ordering: Default::default(),
                safe: false,
                payload: "x".into(),
                reply_to: None,
                confirm,
            })
        };
        assert_eq!(screen_one(&mut r, &publish(None), t0), None);
        match screen_one(&mut r, &publish(Some(7)), t0) {
            Some(ServerMsg::Rejected {
                id: Some(7),
                code: RejectCode::RateLimited,
                reason,
            }) => assert!(reason.contains("message on a/b not sent"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(screen_one(&mut r, &ClientMsg::Ping { id: 1 }, t0), None);
    }

    #[test]
    fn connection_counts_are_bounded_and_given_back() {
        let counts = Arc::new(ConnectionCounts::new(&LimitsConfig {
            max_connections_per_address: 2,
            max_connections_per_user: 1,
            ..LimitsConfig::default()
        }));
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5001".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let s1 = counts.admit_address(a).unwrap();
        let _s2 = counts.admit_address(mapped).unwrap();
        let refusal = counts.admit_address(a).unwrap_err();
        assert_eq!(refusal.code, CloseCode::TooManyFromAddress);
        assert!(
            refusal
                .reason
                .contains("10.0.0.1 already has 2 connections open")
                && refusal
                    .reason
                    .contains("limits.max_connections_per_address = 2"),
            "{}",
            refusal.reason
        );
        let _other = counts.admit_address(b).unwrap();
        drop(s1);
        let _s3 = counts.admit_address(a).unwrap();

        let user = Identity::anonymous(a);
        assert_eq!(user.to_string(), "anonymous@10.0.0.1");
        let u1 = counts.admit_user(&user).unwrap();
        let refusal = counts.admit_user(&user).unwrap_err();
        assert_eq!(refusal.code, CloseCode::TooManyForUser);
        assert!(
            refusal
                .reason
                .contains("limits.max_connections_per_user = 1"),
            "{}",
            refusal.reason
        );
        drop(u1);
        let _u2 = counts.admit_user(&user).unwrap();
        assert_eq!(counts.users.lock().unwrap().len(), 1);

        // An authenticated user is counted by name, apart from anonymous
        // sessions (even one whose name reads like an anonymous identity).
        let alice = Identity::user("alice");
        assert_eq!(alice.to_string(), "alice");
        let _a1 = counts.admit_user(&alice).unwrap();
        assert_eq!(
            counts
                .admit_user(&Identity::user("alice"))
                .unwrap_err()
                .code,
            CloseCode::TooManyForUser
        );
        let _look_alike = counts
            .admit_user(&Identity::user("anonymous@10.0.0.1"))
            .unwrap();
        assert_eq!(counts.users.lock().unwrap().len(), 3);
    }
}
