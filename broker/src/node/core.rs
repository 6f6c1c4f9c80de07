//! The core task: the single owner of the [`Router`].
//!
//! Session tasks send it batches of decoded requests over a bounded channel;
//! it applies them in arrival order and hands the resulting frames to each
//! session's outbound queue. Every session's queue is bounded in frames and
//! in bytes, counted before anything is queued: a session that would go over
//! either bound is a slow consumer and is disconnected with a reason, never
//! buffered without bound and never silently skipped.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use meshcast_transport::client_proto::{ClientMsg, CloseCode, ServerMsg};
use tokio::sync::mpsc;

use super::bridge::Bridge;
use super::session::Kill;
use crate::router::{Effect, Router, SessionId};

/// Pending frames across sessions after which the core hands them out
/// before reading more requests (bounds the memory of one pass).
const FLUSH_AT: usize = 8192;

/// Requests from session tasks to the core.
pub(crate) enum CoreMsg {
    /// A session finished its handshake; `publisher` is answered with the
    /// publisher id its messages carry from now on (for its `Welcome`; a
    /// later rejoin reaches it as `Rejoined`, since it is open by then).
    Open {
        session: SessionId,
        out: SessionOut,
        publisher: tokio::sync::oneshot::Sender<u64>,
        /// The user's permissions (`None`: development mode).
        grants: Option<Arc<crate::permissions::Grants>>,
    },
    /// Requests read from a session, in order.
    Batch {
        session: SessionId,
        msgs: Vec<ClientMsg>,
    },
    /// Answers to requests of a session that were refused before reaching
    /// the core (over its publish rate, see `limits.rs`), in their place
    /// among its requests.
    Refused {
        session: SessionId,
        replies: Vec<ServerMsg>,
    },
    /// The session ended.
    Close { session: SessionId },
    /// Report counters (for status and tests).
    Stats(tokio::sync::oneshot::Sender<CoreStats>),
}

/// Counters the core keeps.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CoreStats {
    /// Open sessions.
    pub sessions: usize,
    /// Subscriptions across sessions.
    pub subscriptions: usize,
    /// Messages published and delivered to at least one subscription.
    pub delivered: u64,
    /// Sessions disconnected because their queue filled.
    pub slow_consumers: u64,
    /// Frames queued for local sessions and not yet written, summed.
    pub queued_frames: usize,
    /// Bytes of those frames.
    pub queued_bytes: usize,
    /// The most frames queued for any one session.
    pub max_session_frames: usize,
    /// Mesh mode: the views the protocol core installed.
    pub mesh: Option<super::bridge::MeshStatus>,
}

/// The core's handle on one session's outbound side.
pub(crate) struct SessionOut {
    pub tx: mpsc::Sender<Vec<Bytes>>,
    /// Frames and bytes queued for this session and not yet written.
    pub queued: Arc<Queued>,
    /// How the core tells the session to end, with a reason.
    pub kill: Arc<Kill>,
}

/// What a session has queued and not yet written.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    pub frames: AtomicUsize,
    pub bytes: AtomicUsize,
}

/// Bounds of one session's outbound queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    pub frames: usize,
    pub bytes: usize,
}

#[derive(Default)]
struct Pending {
    frames: Vec<Bytes>,
    bytes: usize,
}

struct State {
    router: Router,
    sessions: HashMap<SessionId, SessionOut>,
    pending: HashMap<SessionId, Pending>,
    pending_frames: usize,
    slow: HashSet<SessionId>,
    slow_consumers: u64,
    limits: QueueLimits,
    /// The group map (for the group label of metrics).
    groups: meshcast_topics::GroupMap,
}

/// The mesh side of the core in mesh mode: the bridge and the protocol
/// core's outputs.
pub(crate) struct MeshSide {
    pub bridge: Bridge,
    pub outputs: mpsc::Receiver<Vec<meshcast_protocol::Output>>,
}

pub(crate) async fn run(
    router: Router,
    mut rx: mpsc::Receiver<CoreMsg>,
    limits: QueueLimits,
    mut mesh: Option<MeshSide>,
    groups: meshcast_topics::GroupMap,
) {
    let mut st = State {
        router,
        sessions: HashMap::new(),
        pending: HashMap::new(),
        pending_frames: 0,
        slow: HashSet::new(),
        slow_consumers: 0,
        limits,
        groups,
    };
    let mut inbox = Vec::with_capacity(64);
    let mut effects = Vec::with_capacity(256);
    let mut outputs = Vec::with_capacity(16);
    loop {
        let got = match mesh.as_mut() {
            // Commands wait for room in the mesh's channel: read no client
            // messages (their sessions, and behind them QUIC flow control,
            // hold the publishers back) but keep delivering.
            Some(m) if m.bridge.parked() => {
                let room = m.bridge.sender().reserve_owned();
                tokio::select! {
                    permit = room => match permit {
                        Ok(p) => {
                            m.bridge.unpark(p);
                            continue;
                        }
                        Err(_) => break,
                    },
                    n = m.outputs.recv_many(&mut outputs, 16) => n,
                }
            }
            Some(m) => tokio::select! {
                n = rx.recv_many(&mut inbox, 64) => n,
                n = m.outputs.recv_many(&mut outputs, 16) => n.max(usize::from(!outputs.is_empty())),
            },
            None => rx.recv_many(&mut inbox, 64).await,
        };
        if got == 0 {
            break;
        }
        if let Some(m) = mesh.as_mut() {
            for batch in outputs.drain(..) {
                for o in batch {
                    m.bridge.output(&mut st.router, o, &mut effects);
                }
                m.bridge.end_of_batch(&mut effects);
            }
            st.collect(&mut effects);
        }
        for msg in inbox.drain(..) {
            match msg {
                CoreMsg::Open {
                    session,
                    out,
                    publisher,
                    grants,
                } => {
                    st.router.open_as(session, grants);
                    st.sessions.insert(session, out);
                    let id = match mesh.as_ref() {
                        Some(m) => m.bridge.publisher_of(session),
                        None => session,
                    };
                    let _ = publisher.send(id);
                    if mesh.as_ref().is_some_and(|m| m.bridge.blocked()) {
                        let msg = ServerMsg::MeshState { blocked: true };
                        effects.push(crate::router::reply(session, &msg));
                        st.collect(&mut effects);
                    }
                }
                CoreMsg::Batch { session, msgs } => {
                    for m in msgs {
                        let publish = match &m {
                            ClientMsg::Publish(p) => {
                                let group = super::telemetry::group_of(&st.groups, &p.topic);
                                super::telemetry::published(&group, p.payload.len());
                                Some((group, p.payload.len()))
                            }
                            _ => None,
                        };
                        match mesh.as_mut() {
                            Some(side) => {
                                side.bridge.client(&mut st.router, session, m, &mut effects)
                            }
                            None => {
                                let from = effects.len();
                                st.router.handle(session, m, &mut effects);
                                // Single broker: the copies handed out now.
                                if let Some((group, bytes)) = publish {
                                    let copies = fanout_copies(&effects[from..]);
                                    super::telemetry::delivered(&group, copies, bytes);
                                }
                            }
                        }
                    }
                    st.collect(&mut effects);
                    if st.pending_frames >= FLUSH_AT {
                        st.flush();
                    }
                }
                CoreMsg::Refused { session, replies } => {
                    for m in &replies {
                        effects.push(crate::router::reply(session, m));
                    }
                    st.collect(&mut effects);
                }
                CoreMsg::Close { session } => {
                    // Hand out what is pending first: replies to requests the
                    // session sent before it finished its stream.
                    st.flush();
                    if let Some(side) = mesh.as_mut() {
                        side.bridge.close(session);
                    }
                    st.router.close(session);
                    st.sessions.remove(&session);
                }
                CoreMsg::Stats(reply) => {
                    let (mut frames, mut bytes, mut max) = (0, 0, 0);
                    for s in st.sessions.keys() {
                        let (f, b) = st.queued(*s);
                        frames += f;
                        bytes += b;
                        max = max.max(f);
                    }
                    let _ = reply.send(CoreStats {
                        queued_frames: frames,
                        queued_bytes: bytes,
                        max_session_frames: max,
                        sessions: st.router.session_count(),
                        subscriptions: st.router.subscription_count(),
                        delivered: st.router.delivered(),
                        slow_consumers: st.slow_consumers,
                        mesh: mesh.as_ref().map(|m| m.bridge.status(|s| st.queued(s))),
                    });
                }
            }
        }
        st.flush();
    }
}

/// Sessions a batch of effects fans a message out to.
pub(crate) fn fanout_copies(effects: &[Effect]) -> usize {
    effects
        .iter()
        .map(|e| match e {
            Effect::Fanout { targets, .. } => {
                let mut n = 0;
                let mut last = None;
                for (s, _) in targets.iter() {
                    if last != Some(*s) {
                        last = Some(*s);
                        n += 1;
                    }
                }
                n
            }
            Effect::Reply { .. } => 0,
        })
        .sum()
}

impl State {
    /// Frames and bytes queued for `session` and not yet written.
    fn queued(&self, session: SessionId) -> (usize, usize) {
        let pending = self
            .pending
            .get(&session)
            .map_or((0, 0), |p| (p.frames.len(), p.bytes));
        self.sessions.get(&session).map_or(pending, |out| {
            (
                out.queued.frames.load(Ordering::Acquire) + pending.0,
                out.queued.bytes.load(Ordering::Acquire) + pending.1,
            )
        })
    }

    /// Moves effects into per-session frame lists, keeping each session's
    /// order, and marks sessions that would exceed their queue bounds.
    fn collect(&mut self, effects: &mut Vec<Effect>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Reply { session, frame } => self.push(session, frame),
                Effect::Fanout { frame, targets } => {
                    let mut last = None;
                    for &(session, _) in targets.iter() {
                        if last != Some(session) {
                            last = Some(session);
                            self.push(session, frame.clone());
                        }
                    }
                }
            }
        }
    }

    fn push(&mut self, session: SessionId, frame: Bytes) {
        if self.slow.contains(&session) {
            return;
        }
        let Some(out) = self.sessions.get(&session) else {
            return;
        };
        let p = self.pending.entry(session).or_default();
        let frames = out.queued.frames.load(Ordering::Acquire) + p.frames.len() + 1;
        let bytes = out.queued.bytes.load(Ordering::Acquire) + p.bytes + frame.len();
        if frames > self.limits.frames || bytes > self.limits.bytes {
            self.pending.remove(&session);
            self.slow.insert(session);
            return;
        }
        p.bytes += frame.len();
        p.frames.push(frame);
        self.pending_frames += 1;
    }

    /// Hands pending frames to the sessions and disconnects slow ones.
    fn flush(&mut self) {
        for (session, p) in self.pending.drain() {
            let Some(out) = self.sessions.get(&session) else {
                continue;
            };
            out.queued
                .frames
                .fetch_add(p.frames.len(), Ordering::AcqRel);
            out.queued.bytes.fetch_add(p.bytes, Ordering::AcqRel);
            match out.tx.try_send(p.frames) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.slow.insert(session);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    // The writer is gone: end the session rather than leave
                    // it reading requests that nobody answers.
                    out.kill
                        .fire(CloseCode::ProtocolError, "session writer stopped".into());
                    self.router.close(session);
                    self.sessions.remove(&session);
                }
            }
        }
        self.pending_frames = 0;
        for session in self.slow.drain() {
            let Some(out) = self.sessions.remove(&session) else {
                continue;
            };
            self.router.close(session);
            self.slow_consumers += 1;
            super::telemetry::slow_session();
            let limits = self.limits;
            tracing::warn!(session, "disconnecting slow consumer");
            out.kill.fire(
                CloseCode::SlowConsumer,
                format!(
                    "slow consumer: more than {} messages or {} bytes queued and not read \
                     (limits.subscriber_queue, limits.subscriber_queue_bytes)",
                    limits.frames, limits.bytes
                ),
            );
        }
    }
}
