//! After a lost connection: fail what was in flight, open a new session
//! with the next broker (within [`crate::ClientOptions::reconnect`]), and
//! subscribe and join again everything that was open.

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::Duration;

use meshcast_topics::SubscriptionIndex;
use meshcast_transport::FrameReader;
use meshcast_transport::client_proto::{ClientMsg, CloseCode};

use crate::reader::{MeshPhase, Routes, reconnected};
use crate::{ClientError, Link, Pending, Reconnected, Shared, connect, subscribe_msg};

/// First pause between rounds of attempts; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between rounds of attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether a session that ended with `reason` is worth resuming elsewhere:
/// yes when the broker went away or the network failed, no when the broker
/// ended the session on purpose (the same would happen again).
pub(crate) fn resumable(reason: &ClientError) -> bool {
    match reason {
        ClientError::Closed { code: None, .. } => true,
        ClientError::Closed {
            code: Some(code), ..
        } => *code == CloseCode::Shutdown,
        _ => false,
    }
}

/// The session ended with `reason`. Returns the next connection's frames
/// once a new session is open and everything was asked for again, or
/// `None` when the client is done (closed, not resumable, or no broker
/// accepted within the reconnect window); then the reason is recorded and
/// every waiter woken.
pub(crate) async fn after_loss(
    shared: &Arc<Shared>,
    routes: &mut Routes,
    index: &mut SubscriptionIndex<u64>,
    reason: ClientError,
) -> Option<FrameReader<quinn::RecvStream>> {
    let window = shared.opts.reconnect;
    let give_up = |reason: ClientError| {
        shared.set_closed(reason);
        // Wake every waiter: dropping the pending replies fails them.
        shared.pending().clear();
        None
    };
    let Some(window) = window.filter(|_| shared.closed.get().is_none() && resumable(&reason))
    else {
        return give_up(reason);
    };
    let (old_label, old_index) = {
        let link = shared.link();
        (link.label.clone(), link.index)
    };
    let lost = ClientError::ConnectionLost {
        addr: old_label.clone(),
        reason: reason.to_string(),
    };
    tracing::info!(server = %old_label, %reason, "connection to the broker lost; reconnecting");
    // Nothing more goes to the old connection; what it had not written is
    // dropped (and reported through the next flush).
    let (generation, _) = shared.outbox.reset();
    fail_in_flight(shared, routes, index, &lost);
    shared.set_rejection(lost.clone());
    shared.blocked.send_replace(false);
    routes.mesh = MeshPhase::default();

    let deadline = tokio::time::Instant::now() + window;
    let mut backoff = FIRST_BACKOFF;
    let mut last = lost.clone();
    let opened = loop {
        if shared.closed.get().is_some() {
            return give_up(last);
        }
        let attempt = connect::open_any(&shared.opts, old_index + 1);
        match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(opened)) => break opened,
            // Refused credentials are refused by every broker of a mesh.
            Ok(Err(e @ ClientError::Unauthenticated { .. })) => return give_up(e),
            Ok(Err(e)) => last = e,
            Err(_) => {}
        }
        if tokio::time::Instant::now() + backoff >= deadline {
            return give_up(ClientError::ConnectionLost {
                addr: old_label,
                reason: format!(
                    "{reason}; no broker accepted a new session within {window:?} (last: {last})"
                ),
            });
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    };
    let connect::Opened {
        conn,
        endpoint,
        welcome,
        label,
        index: server_index,
        send,
        frames,
    } = opened;
    let info = Reconnected {
        lost: reason.to_string(),
        server: label.clone(),
        broker: welcome.broker.clone(),
        session: welcome.session,
    };
    shared
        .publisher
        .store(welcome.publisher, AtomicOrdering::Release);
    *shared.link() = Link {
        conn: conn.clone(),
        endpoint,
        welcome,
        label,
        index: server_index,
    };
    if shared.closed.get().is_some() {
        // Closed by the application meanwhile.
        conn.close(CloseCode::Normal.code().into(), b"client closed");
        return give_up(lost);
    }
    tracing::info!(server = %info.server, broker = %info.broker, "reconnected: a new session");
    tokio::spawn(crate::writer(shared.clone(), send, generation));
    reconnected(shared, routes, index, &info);
    ask_again(shared, routes, index);
    Some(frames)
}

/// Requests in flight get no answer from the old session: they fail with
/// `lost`; unsubscribes and leaves count as done.
fn fail_in_flight(
    shared: &Shared,
    routes: &mut Routes,
    index: &mut SubscriptionIndex<u64>,
    lost: &ClientError,
) {
    let drained: Vec<(u64, Pending)> = shared.pending().drain().collect();
    for (id, p) in drained {
        match p {
            Pending::Subscribe { reply, .. } => {
                let _ = reply.send(Err(lost.clone()));
            }
            Pending::Join { reply, .. } => {
                let _ = reply.send(Err(lost.clone()));
            }
            Pending::Ping { reply } => {
                let _ = reply.send(Err(lost.clone()));
            }
            Pending::Confirm { reply } => {
                let _ = reply.send(Err(lost.clone()));
            }
            // Dropping the route ends the stream its caller waits on.
            Pending::Unsubscribe => {
                routes.subs.remove(&id);
                index.remove(&id);
            }
            Pending::Leave { group } => {
                routes.groups.remove(&group);
            }
            // Asked for again below.
            Pending::Resubscribe | Pending::Rejoin { .. } => {}
        }
    }
}

/// Subscribes and joins again, on the new session, everything still open.
/// A subscription takes no deliveries until it is installed again.
fn ask_again(shared: &Shared, routes: &mut Routes, index: &mut SubscriptionIndex<u64>) {
    // Groups and subscriptions whose handle is gone, or that were
    // unsubscribed meanwhile (the old broker cannot answer that; the new
    // one refuses it, which is ignored), are not made again; dropping a
    // route ends the stream an `unsubscribe` waits on.
    routes.groups.retain(|_, r| !r.tx.is_closed());
    let gone: Vec<u64> = routes
        .subs
        .iter()
        .filter(|(id, r)| {
            r.tx.is_closed() || matches!(shared.pending().get(id), Some(Pending::Unsubscribe))
        })
        .map(|(id, _)| *id)
        .collect();
    for id in gone {
        routes.subs.remove(&id);
        index.remove(&id);
    }
    // Groups first: a join with state is refused for a session already in
    // the group through a subscription (the order it could only have been
    // made in before).
    let mut groups: Vec<(String, bool)> = routes
        .groups
        .iter()
        .map(|(g, r)| (g.clone(), r.state))
        .collect();
    groups.sort_unstable();
    for (group, state) in groups {
        let id = shared.next_id();
        shared.pending().insert(
            id,
            Pending::Rejoin {
                group: group.clone(),
            },
        );
        shared.send_now(&ClientMsg::Join { id, group, state });
    }
    let mut ids: Vec<u64> = routes.subs.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let Some(route) = routes.subs.get_mut(&id) else {
            continue;
        };
        route.live = false;
        route.groups.clear();
        shared.pending().insert(id, Pending::Resubscribe);
        shared.send_now(&subscribe_msg(id, &route.pattern, route.tap));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broker_or_network_going_away_is_resumed() {
        assert!(resumable(&ClientError::closed("timed out")));
        assert!(resumable(&ClientError::Closed {
            code: Some(CloseCode::Shutdown),
            reason: "broker shutting down".into()
        }));
        for code in [
            CloseCode::Normal,
            CloseCode::SlowConsumer,
            CloseCode::ProtocolError,
            CloseCode::FrameTooLarge,
        ] {
            let e = ClientError::Closed {
                code: Some(code),
                reason: String::new(),
            };
            assert!(!resumable(&e), "{code:?}");
        }
    }
}
