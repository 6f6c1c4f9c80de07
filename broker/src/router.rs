//! Local delivery: which client sessions receive a published message.
//!
//! The router is a plain state machine with no I/O: the runtime feeds it
//! client requests and it returns the frames to send and to whom. It keeps
//! every session's subscriptions in one [`SubscriptionIndex`], numbers each
//! publisher's messages, and encodes every delivered message exactly once,
//! however many sessions receive it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use meshcast_config::Action;
use meshcast_topics::{Pattern, SubscriptionIndex, Topic};
use meshcast_transport::client_proto::{self, ClientMsg, Delivery, Publish, RejectCode, ServerMsg};

use crate::permissions::{Denied, Grants, Target};

/// First segment of the topics that carry answers to requests: a client's
/// inbox is `_inbox/<its own name>/...`.
pub const INBOX: &str = "_inbox";

/// A client session's id, unique within one broker run.
pub type SessionId = u64;

/// A subscription key: the session and its own subscription id.
pub type SubKey = (SessionId, u64);

/// Limits the router enforces.
#[derive(Debug, Clone)]
pub struct RouterLimits {
    /// Largest payload accepted, in bytes.
    pub max_payload_bytes: usize,
    /// Most subscriptions one session may hold.
    pub max_subscriptions_per_session: usize,
    /// Entries in the topic → subscribers cache.
    pub match_cache_entries: usize,
}

/// What the runtime must do after a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Send one encoded frame to one session.
    Reply {
        /// The session.
        session: SessionId,
        /// The encoded frame.
        frame: Bytes,
    },
    /// Send the same encoded frame to every session in `targets`
    /// (sorted; a session appears once per matching subscription).
    Fanout {
        /// The encoded delivery frame.
        frame: Bytes,
        /// The matching subscriptions, sorted by session.
        targets: Arc<[SubKey]>,
    },
}

/// Bounds of the permission bookkeeping kept per authenticated session.
#[derive(Debug, Clone, Copy)]
pub struct AuthLimits {
    /// Topics whose read permission a session remembers
    /// (`auth.permission_cache_entries`); the cache is emptied when full.
    pub cache_entries: usize,
    /// Requests delivered to a session that it may still answer, newest
    /// kept (`auth.reply_window`).
    pub reply_window: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            cache_entries: 1024,
            reply_window: 1024,
        }
    }
}

#[derive(Debug, Default)]
struct Session {
    subs: HashMap<u64, Pattern>,
    published: u64,
    /// The user's permissions; `None` in development mode (no checks).
    grants: Option<Arc<Grants>>,
    /// Whether the user may read a topic, as last checked.
    readable: HashMap<Topic, bool>,
    /// Subscriptions to the session's own inbox (`_inbox/<name>/...`).
    inbox_subs: HashSet<u64>,
    /// Requests delivered to the session, newest last: (reply address,
    /// request topic). Answering one needs `reply` on its topic.
    requests: VecDeque<(String, Topic)>,
}

impl Session {
    /// Whether the session may receive a message on `topic` through
    /// subscription `id` (its own inbox, or a topic it may read).
    fn may_receive(&mut self, id: u64, topic: &Topic, limits: AuthLimits) -> bool {
        self.inbox_subs.contains(&id) || self.may_read(topic, limits)
    }

    /// Whether the user may read `topic` (`subscribe` on it).
    fn may_read(&mut self, topic: &Topic, limits: AuthLimits) -> bool {
        let Some(grants) = &self.grants else {
            return true;
        };
        if let Some(ok) = self.readable.get(topic) {
            return *ok;
        }
        let ok = grants
            .check(Action::Subscribe, Target::Topic(topic))
            .is_ok();
        if self.readable.len() >= limits.cache_entries {
            self.readable.clear();
        }
        self.readable.insert(topic.clone(), ok);
        ok
    }
}

/// The local router.
#[derive(Debug)]
pub struct Router {
    index: SubscriptionIndex<SubKey>,
    sessions: HashMap<SessionId, Session>,
    limits: RouterLimits,
    auth: AuthLimits,
    delivered: u64,
}

fn denied(id: Option<u64>, d: Denied) -> ServerMsg {
    reject(id, RejectCode::PermissionDenied, d.to_string())
}

impl Router {
    /// A router with no sessions.
    pub fn new(limits: RouterLimits) -> Router {
        Router {
            index: SubscriptionIndex::new(limits.match_cache_entries),
            sessions: HashMap::new(),
            limits,
            auth: AuthLimits::default(),
            delivered: 0,
        }
    }

    /// Sets the bounds of the per-session permission bookkeeping.
    pub fn with_auth_limits(mut self, auth: AuthLimits) -> Router {
        self.auth = auth;
        self
    }

    /// Registers a new session (development mode: no permission checks).
    pub fn open(&mut self, session: SessionId) {
        self.sessions.entry(session).or_default();
    }

    /// Registers a new session of an authenticated user whose requests
    /// and deliveries are checked against `grants` (`None`: development
    /// mode, nothing checked).
    pub fn open_as(&mut self, session: SessionId, grants: Option<Arc<Grants>>) {
        self.sessions.entry(session).or_default().grants = grants;
    }

    /// Checks `action` on `target` for `session`: `Ok` in development
    /// mode; the refusal (carrying `id`) otherwise.
    pub fn check(
        &self,
        session: SessionId,
        id: Option<u64>,
        action: Action,
        target: Target<'_>,
    ) -> Result<(), ServerMsg> {
        match self.sessions.get(&session).and_then(|s| s.grants.as_ref()) {
            Some(g) => g.check(action, target).map_err(|d| denied(id, d)),
            None => Ok(()),
        }
    }

    /// Whether `session`'s user may see the views of `group` that reach it
    /// through a subscription (`subscribe` on the group); always in
    /// development mode.
    pub fn may_see_views(&self, session: SessionId, group: &str) -> bool {
        self.check(session, None, Action::Subscribe, Target::Group(group))
            .is_ok()
    }

    /// Whether `session` may receive a message on `topic` (outside its
    /// inbox): always in development mode.
    pub fn may_read(&mut self, session: SessionId, topic: &Topic) -> bool {
        let auth = self.auth;
        self.sessions
            .get_mut(&session)
            .is_some_and(|s| s.may_read(topic, auth))
    }

    /// Forgets a session and all its subscriptions.
    pub fn close(&mut self, session: SessionId) {
        if let Some(s) = self.sessions.remove(&session) {
            for id in s.subs.keys() {
                self.index.remove(&(session, *id));
            }
        }
    }

    /// Number of open sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Number of subscriptions across all sessions.
    pub fn subscription_count(&self) -> usize {
        self.index.len()
    }

    /// Subscriptions (and taps) `session` holds.
    pub fn subscriptions_of(&self, session: SessionId) -> usize {
        self.sessions.get(&session).map_or(0, |s| s.subs.len())
    }

    /// Most subscriptions one session may hold
    /// (`limits.max_subscriptions_per_session`).
    pub fn max_subscriptions_per_session(&self) -> usize {
        self.limits.max_subscriptions_per_session
    }

    /// Messages delivered to at least one subscription so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Applies one request from `session`, appending effects to `out`
    /// (single-broker mode: a publish is delivered locally at once).
    pub fn handle(&mut self, session: SessionId, msg: ClientMsg, out: &mut Vec<Effect>) {
        if !self.sessions.contains_key(&session) {
            return;
        }
        match msg {
            // On one broker there are no groups: a tap is a subscription.
            ClientMsg::Subscribe { id, pattern } | ClientMsg::Tap { id, pattern } => {
                let answer = match self.subscribe(session, id, pattern) {
                    Ok(_) => ServerMsg::Subscribed {
                        id,
                        views: Vec::new(),
                    },
                    Err(rejected) => rejected,
                };
                out.push(reply(session, &answer));
            }
            ClientMsg::Unsubscribe { id } => {
                let answer = match self.unsubscribe(session, id) {
                    Ok(_) => ServerMsg::Unsubscribed { id },
                    Err(rejected) => rejected,
                };
                out.push(reply(session, &answer));
            }
            ClientMsg::Ping { id } => out.push(reply(session, &ServerMsg::Pong { id })),
            ClientMsg::Join { id, .. } | ClientMsg::Leave { id, .. } => out.push(reply(
                session,
                &reject(
                    Some(id),
                    RejectCode::Unsupported,
                    "process groups need mesh mode: configure [mesh] peers".into(),
                ),
            )),
            ClientMsg::StateReply { .. } => {}
            ClientMsg::Multicast { group, confirm, .. } => out.push(reply(
                session,
                &reject(
                    confirm,
                    RejectCode::Unsupported,
                    format!("multicast to group {group:?} needs mesh mode: configure [mesh] peers"),
                ),
            )),
            ClientMsg::Publish(p) => match self.accept_publish(session, &p) {
                Ok((topic, seq)) => {
                    let (confirm, safe) = (p.confirm, p.safe);
                    let delivery = Delivery {
                        topic: p.topic,
                        publisher: session,
                        seq,
                        ordering: p.ordering,
                        safe: p.safe,
                        payload: p.payload,
                        reply_to: p.reply_to,
                    };
                    out.extend(self.fanout(&topic, delivery, |_| true));
                    // One broker: delivered here means accepted, and a safe
                    // message is stable (no other broker has to hold it).
                    if let Some(id) = confirm {
                        let stable = safe;
                        out.push(reply(session, &ServerMsg::Confirmed { id, seq, stable }));
                    }
                }
                Err(rejected) => out.push(reply(session, &rejected)),
            },
        }
    }

    /// Validates and installs a subscription; the error is the rejection to
    /// send back.
    pub fn subscribe(
        &mut self,
        session: SessionId,
        id: u64,
        pattern: String,
    ) -> Result<Pattern, ServerMsg> {
        let Some(state) = self.sessions.get_mut(&session) else {
            return Err(reject(
                Some(id),
                RejectCode::BadSubscriptionId,
                "no such session".into(),
            ));
        };
        if state.subs.contains_key(&id) {
            return Err(reject(
                Some(id),
                RejectCode::BadSubscriptionId,
                format!("subscription id {id} is already in use"),
            ));
        }
        if state.subs.len() >= self.limits.max_subscriptions_per_session {
            return Err(reject(
                Some(id),
                RejectCode::LimitReached,
                format!(
                    "session already holds {} subscriptions (limits.max_subscriptions_per_session)",
                    state.subs.len()
                ),
            ));
        }
        let p = Pattern::new(pattern)
            .map_err(|e| reject(Some(id), RejectCode::InvalidPattern, e.to_string()))?;
        let inbox = match &state.grants {
            Some(g) => subscribe_allowed(g, &p).map_err(|d| denied(Some(id), d))?,
            None => false,
        };
        if inbox {
            state.inbox_subs.insert(id);
        }
        state.subs.insert(id, p.clone());
        self.index.insert((session, id), p.clone());
        Ok(p)
    }

    /// Removes a subscription, returning its pattern; the error is the
    /// rejection to send back.
    pub fn unsubscribe(&mut self, session: SessionId, id: u64) -> Result<Pattern, ServerMsg> {
        let removed = self.sessions.get_mut(&session).and_then(|state| {
            state.inbox_subs.remove(&id);
            state.subs.remove(&id)
        });
        match removed {
            Some(p) => {
                self.index.remove(&(session, id));
                Ok(p)
            }
            None => Err(reject(
                Some(id),
                RejectCode::BadSubscriptionId,
                format!("no subscription with id {id}"),
            )),
        }
    }

    /// Every open session, sorted.
    pub fn session_ids(&self) -> Vec<SessionId> {
        let mut ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The patterns of a session's subscriptions.
    pub fn patterns(&self, session: SessionId) -> Vec<Pattern> {
        self.sessions
            .get(&session)
            .map(|s| s.subs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Validates a publish and numbers it: returns the topic and the
    /// publisher's sequence number, or the rejection to send back (carrying
    /// the publish's `confirm` id, if it asked for a confirmation).
    pub fn accept_publish(
        &mut self,
        session: SessionId,
        p: &Publish,
    ) -> Result<(Topic, u64), ServerMsg> {
        if p.payload.len() > self.limits.max_payload_bytes {
            let reason = format!(
                "payload of {} bytes on topic {:?} exceeds limits.max_payload_bytes = {}",
                p.payload.len(),
                p.topic,
                self.limits.max_payload_bytes
            );
            return Err(reject(p.confirm, RejectCode::PayloadTooLarge, reason));
        }
        let topic = Topic::new(p.topic.as_str())
            .map_err(|e| reject(p.confirm, RejectCode::InvalidTopic, e.to_string()))?;
        if let Some(r) = &p.reply_to {
            Topic::new(r.as_str()).map_err(|e| {
                reject(
                    p.confirm,
                    RejectCode::InvalidTopic,
                    format!("reply_to: {e}"),
                )
            })?;
        }
        if let Some(state) = self.sessions.get(&session) {
            if let Some(g) = &state.grants {
                publish_allowed(g, state, &topic, p.reply_to.is_some())
                    .map_err(|d| denied(p.confirm, d))?;
            }
        }
        let seq = self.next_seq(session).ok_or_else(|| {
            reject(
                p.confirm,
                RejectCode::InvalidTopic,
                "no such session".into(),
            )
        })?;
        Ok((topic, seq))
    }

    /// The next sequence number of `session` as a publisher.
    pub fn next_seq(&mut self, session: SessionId) -> Option<u64> {
        let state = self.sessions.get_mut(&session)?;
        state.published += 1;
        Some(state.published)
    }

    /// Encodes `delivery` once and returns the fan-out to every matching
    /// subscription whose session passes `allowed`, if there is any.
    pub fn fanout(
        &mut self,
        topic: &Topic,
        delivery: Delivery,
        allowed: impl Fn(SessionId) -> bool,
    ) -> Option<Effect> {
        let mut targets = self.index.matches(topic);
        let auth = self.auth;
        let sessions = &mut self.sessions;
        let mut readable = |(s, id): &SubKey| {
            sessions
                .get_mut(s)
                .is_some_and(|state| state.may_receive(*id, topic, auth))
        };
        if targets.iter().any(|k| !allowed(k.0) || !readable(k)) {
            targets = targets
                .iter()
                .filter(|k| allowed(k.0) && readable(k))
                .copied()
                .collect();
        }
        if targets.is_empty() {
            return None;
        }
        // A request: each authenticated receiver may answer it (if it may
        // reply on its topic) until it falls out of its reply window.
        if let Some(reply_to) = &delivery.reply_to {
            let mut last = None;
            for (s, _) in targets.iter() {
                if last == Some(*s) {
                    continue;
                }
                last = Some(*s);
                if let Some(state) = self.sessions.get_mut(s).filter(|st| st.grants.is_some()) {
                    if state.requests.len() >= self.auth.reply_window.max(1) {
                        state.requests.pop_front();
                    }
                    state.requests.push_back((reply_to.clone(), topic.clone()));
                }
            }
        }
        match client_proto::encode_server(&ServerMsg::Deliver(delivery)) {
            Ok(frame) => {
                self.delivered += 1;
                Some(Effect::Fanout { frame, targets })
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a delivery");
                None
            }
        }
    }
}

/// Whether grants `g` let a session subscribe to `p`; `Ok(true)` for a
/// subscription to the session's own inbox.
///
/// - `_inbox/<name>/...` with a literal name: the session's inbox, for a
///   user who may send requests at all (what reaches it is only answers to
///   its own requests: see [`publish_allowed`]);
/// - a pattern with no wildcard: `subscribe` on that topic;
/// - any other pattern: the user needs some rule allowing `subscribe`; what
///   it matches is then filtered at delivery, topic by topic, so a `**` or
///   `*/x` subscription gets only what the user may read.
fn subscribe_allowed(g: &Grants, p: &Pattern) -> Result<bool, Denied> {
    let prefix = p.literal_prefix();
    if prefix.first() == Some(&INBOX) && prefix.len() >= 2 && g.allows_any_topic(Action::Request) {
        return Ok(true);
    }
    if let Some(topic) = p.as_topic() {
        g.check(Action::Subscribe, Target::Topic(&topic))?;
        return Ok(false);
    }
    if !g.allows_any_topic(Action::Subscribe) {
        return Err(Denied {
            user: g.user().to_string(),
            action: Action::Subscribe.name(),
            target: format!("pattern {:?}", p.as_str()),
            why: "no [[permissions]] rule allows subscribe for this user (deny by default)".into(),
        });
    }
    Ok(false)
}

/// Whether a session with grants `g` may publish on `topic`: a request
/// (`reply_to` set) needs `request` on it; an answer (a topic under
/// `_inbox/`) needs a request with that reply address delivered to the
/// session and `reply` on that request's topic, unless `publish` on the
/// inbox topic itself is allowed; anything else needs `publish`.
fn publish_allowed(
    g: &Grants,
    state: &Session,
    topic: &Topic,
    request: bool,
) -> Result<(), Denied> {
    if request {
        return g.check(Action::Request, Target::Topic(topic));
    }
    if topic.first_segment() != INBOX {
        return g.check(Action::Publish, Target::Topic(topic));
    }
    let publish = g.check(Action::Publish, Target::Topic(topic));
    if publish.is_ok() {
        return publish;
    }
    match state
        .requests
        .iter()
        .rev()
        .find(|(to, _)| to == topic.as_str())
    {
        Some((_, asked_on)) => g.check(Action::Reply, Target::Topic(asked_on)),
        None => Err(Denied {
            user: g.user().to_string(),
            action: Action::Reply.name(),
            target: format!("topic {:?}", topic.as_str()),
            why: "no request with this reply address was delivered to this session (answers \
                  go only to the inboxes of requests it received)"
                .into(),
        }),
    }
}

fn reject(id: Option<u64>, code: RejectCode, reason: String) -> ServerMsg {
    ServerMsg::Rejected { id, code, reason }
}

/// An effect sending `msg` to `session`.
///
/// A refusal ([`ServerMsg::Rejected`]) is counted in the metric
/// `meshcast_rejected_total{reason="<RejectCode>"}`.
pub fn reply(session: SessionId, msg: &ServerMsg) -> Effect {
    if let ServerMsg::Rejected { code, .. } = msg {
        metrics::counter!("meshcast_rejected_total", "reason" => format!("{code:?}")).increment(1);
    }
    // Replies are small control messages; encoding them cannot exceed limits.
    let frame = client_proto::encode_server(msg).unwrap_or_default();
    Effect::Reply { session, frame }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshcast_transport::client_proto::Ordering;

    fn router() -> Router {
        Router::new(RouterLimits {
            max_payload_bytes: 16,
            max_subscriptions_per_session: 2,
            match_cache_entries: 16,
        })
    }

    fn decode(frame: &Bytes) -> ServerMsg {
        client_proto::decode_server(&frame[4..]).unwrap()
    }

    fn publish(topic: &str, payload: &'static [u8]) -> ClientMsg {
        ClientMsg::Publish(Publish {
            topic: topic.into(),
            ordering: Ordering::Fifo,
            safe: false,
            payload: Bytes::from_static(payload),
            reply_to: None,
            confirm: None,
        })
    }

    #[test]
    fn fanout_encodes_once_and_numbers_per_publisher() {
        let mut r = router();
        let mut out = Vec::new();
        for s in [1, 2, 3] {
            r.open(s);
        }
        r.handle(
            2,
            ClientMsg::Subscribe {
                id: 7,
                pattern: "a/*".into(),
            },
            &mut out,
        );
        r.handle(
            3,
            ClientMsg::Subscribe {
                id: 1,
                pattern: "a/**".into(),
            },
            &mut out,
        );
        r.handle(
            3,
            ClientMsg::Subscribe {
                id: 2,
                pattern: "a/b".into(),
            },
            &mut out,
        );
        assert_eq!(out.len(), 3);
        out.clear();
        r.handle(1, publish("a/b", b"x"), &mut out);
        r.handle(1, publish("a/c/d", b"y"), &mut out);
        assert_eq!(out.len(), 2);
        match &out[0] {
            Effect::Fanout { frame, targets } => {
                assert_eq!(&targets[..], &[(2, 7), (3, 1), (3, 2)]);
                match decode(frame) {
                    ServerMsg::Deliver(d) => {
                        assert_eq!((d.publisher, d.seq, d.topic.as_str()), (1, 1, "a/b"))
                    }
                    m => panic!("{m:?}"),
                }
            }
            e => panic!("{e:?}"),
        }
        match &out[1] {
            Effect::Fanout { frame, targets } => {
                assert_eq!(&targets[..], &[(3, 1)]);
                assert!(matches!(decode(frame), ServerMsg::Deliver(d) if d.seq == 2));
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn bad_requests_are_rejected_with_reasons() {
        let mut r = router();
        let mut out = Vec::new();
        r.open(1);
        r.handle(
            1,
            ClientMsg::Subscribe {
                id: 1,
                pattern: "a//b".into(),
            },
            &mut out,
        );
        r.handle(1, publish("a/*", b"x"), &mut out);
        r.handle(1, publish("a/b", b"0123456789abcdefg"), &mut out);
        r.handle(1, ClientMsg::Unsubscribe { id: 9 }, &mut out);
        r.handle(
            1,
            ClientMsg::Subscribe {
                id: 1,
                pattern: "a".into(),
            },
            &mut out,
        );
        r.handle(
            1,
            ClientMsg::Subscribe {
                id: 1,
                pattern: "b".into(),
            },
            &mut out,
        );
        r.handle(
            1,
            ClientMsg::Subscribe {
                id: 2,
                pattern: "c".into(),
            },
            &mut out,
        );
        r.handle(
            1,
            ClientMsg::Subscribe {
                id: 3,
                pattern: "d".into(),
            },
            &mut out,
        );
        let codes: Vec<_> = out
            .iter()
            .map(|e| match e {
                Effect::Reply { frame, .. } => match decode(frame) {
                    ServerMsg::Rejected { code, reason, .. } => {
                        assert!(!reason.is_empty());
                        Some(code)
                    }
                    _ => None,
                },
                Effect::Fanout { .. } => panic!("nothing should be delivered"),
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                Some(RejectCode::InvalidPattern),
                Some(RejectCode::InvalidTopic),
                Some(RejectCode::PayloadTooLarge),
                Some(RejectCode::BadSubscriptionId),
                None,
                Some(RejectCode::BadSubscriptionId),
                None,
                Some(RejectCode::LimitReached),
            ]
        );
    }

    #[test]
    fn a_confirmed_publish_is_answered_after_its_delivery() {
        let mut r = router();
        let mut out = Vec::new();
        r.open(1);
        r.handle(
            1,
            ClientMsg::Subscribe {
                id: 1,
                pattern: "a".into(),
            },
            &mut out,
        );
        out.clear();
        let confirmed = |topic: &str, safe, confirm| {
            ClientMsg::Publish(Publish {
                topic: topic.into(),
                ordering: Ordering::Total,
                safe,
                payload: Bytes::from_static(b"x"),
                reply_to: None,
                confirm: Some(confirm),
            })
        };
        r.handle(1, confirmed("a", true, 8), &mut out);
        r.handle(1, confirmed("a/*", false, 9), &mut out);
        let msgs: Vec<ServerMsg> = out
            .iter()
            .map(|e| match e {
                Effect::Reply { frame, .. } | Effect::Fanout { frame, .. } => decode(frame),
            })
            .collect();
        assert!(matches!(&msgs[0], ServerMsg::Deliver(d) if d.seq == 1));
        assert_eq!(
            msgs[1],
            ServerMsg::Confirmed {
                id: 8,
                seq: 1,
                stable: true
            }
        );
        // A refusal names the confirmation it answers.
        assert!(
            matches!(
                &msgs[2],
                ServerMsg::Rejected {
                    id: Some(9),
                    code: RejectCode::InvalidTopic,
                    ..
                }
            ),
            "{msgs:?}"
        );
        assert_eq!(msgs.len(), 3);
    }

    #[test]
    fn closing_a_session_removes_its_subscriptions() {
        let mut r = router();
        let mut out = Vec::new();
        r.open(1);
        r.open(2);
        r.handle(
            2,
            ClientMsg::Subscribe {
                id: 1,
                pattern: "**".into(),
            },
            &mut out,
        );
        r.close(2);
        out.clear();
        r.handle(1, publish("a", b"x"), &mut out);
        assert!(out.is_empty());
        assert_eq!(r.subscription_count(), 0);
    }
}
