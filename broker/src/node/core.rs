//! The core task: the single owner of the [`Router`].
//!
//! Session tasks send it batches of decoded requests over a bounded channel;
//! it applies them in arrival order and hands the resulting frames to each
//! session's bounded outbound queue. A session whose queue is full is a slow
//! consumer: it is disconnected with a reason, never buffered without bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use meshcast_transport::client_proto::{ClientMsg, CloseCode};
use tokio::sync::mpsc;

use crate::router::{Effect, Router, SessionId};

/// Requests from session tasks to the core.
pub(crate) enum CoreMsg {
    /// A session finished its handshake.
    Open { session: SessionId, out: SessionOut },
    /// Requests read from a session, in order.
    Batch {
        session: SessionId,
        msgs: Vec<ClientMsg>,
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
}

/// The core's handle on one session's outbound side.
pub(crate) struct SessionOut {
    pub tx: mpsc::Sender<Vec<Bytes>>,
    /// Frames queued for this session and not yet written.
    pub queued: Arc<AtomicUsize>,
    pub conn: quinn::Connection,
}

pub(crate) async fn run(mut router: Router, mut rx: mpsc::Receiver<CoreMsg>, queue_limit: usize) {
    let mut sessions: HashMap<SessionId, SessionOut> = HashMap::new();
    let mut inbox = Vec::with_capacity(64);
    let mut effects = Vec::with_capacity(256);
    let mut pending: HashMap<SessionId, Vec<Bytes>> = HashMap::new();
    let mut slow_consumers = 0u64;
    while rx.recv_many(&mut inbox, 64).await > 0 {
        for msg in inbox.drain(..) {
            match msg {
                CoreMsg::Open { session, out } => {
                    router.open(session);
                    sessions.insert(session, out);
                }
                CoreMsg::Batch { session, msgs } => {
                    for m in msgs {
                        router.handle(session, m, &mut effects);
                    }
                    collect(&mut effects, &mut pending);
                }
                CoreMsg::Close { session } => {
                    router.close(session);
                    sessions.remove(&session);
                    pending.remove(&session);
                }
                CoreMsg::Stats(reply) => {
                    let _ = reply.send(CoreStats {
                        sessions: router.session_count(),
                        subscriptions: router.subscription_count(),
                        delivered: router.delivered(),
                        slow_consumers,
                    });
                }
            }
        }
        for (session, frames) in pending.drain() {
            let Some(out) = sessions.get(&session) else {
                continue;
            };
            let n = frames.len();
            let queued = out.queued.fetch_add(n, Ordering::AcqRel) + n;
            let overflow = queued > queue_limit;
            if overflow || out.tx.try_send(frames).is_err() {
                if overflow || !out.tx.is_closed() {
                    slow_consumers += 1;
                    metrics::counter!("meshcast_slow_consumers_total").increment(1);
                    tracing::warn!(session, queued, "disconnecting slow consumer");
                    let reason = format!(
                        "slow consumer: {queue_limit} messages queued and not read (limits.subscriber_queue)"
                    );
                    out.conn
                        .close(CloseCode::SlowConsumer.code().into(), reason.as_bytes());
                }
                router.close(session);
                sessions.remove(&session);
            }
        }
    }
}

/// Moves effects into per-session frame lists, keeping each session's order.
fn collect(effects: &mut Vec<Effect>, pending: &mut HashMap<SessionId, Vec<Bytes>>) {
    for effect in effects.drain(..) {
        match effect {
            Effect::Reply { session, frame } => pending.entry(session).or_default().push(frame),
            Effect::Fanout { frame, targets } => {
                let mut last = None;
                for &(session, _) in targets.iter() {
                    if last == Some(session) {
                        continue;
                    }
                    last = Some(session);
                    pending.entry(session).or_default().push(frame.clone());
                }
            }
        }
    }
}
