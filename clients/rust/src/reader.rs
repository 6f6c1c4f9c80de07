//! The task that reads the broker's frames and routes them.

use std::collections::HashMap;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use meshcast_topics::{Pattern, SubscriptionIndex, Topic};
use meshcast_transport::FrameReader;
use meshcast_transport::client_proto::{self, ClientMsg, CloseCode, Delivery, ServerMsg};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::error::from_connection_error;
use crate::{
    ClientError, Confirmation, GroupEvent, Message, Pending, Shared, SubscriptionEvent, View,
};

/// Where one subscription's events go.
pub(crate) struct Route {
    pub(crate) tx: mpsc::Sender<SubscriptionEvent>,
    pub(crate) failed: Arc<OnceLock<ClientError>>,
    pub(crate) pattern: Pattern,
    /// A tap (`ClientMsg::Tap`): in no group.
    pub(crate) tap: bool,
    /// Installed on the current session (false while it is subscribed
    /// again after a reconnect: deliveries meant for other subscriptions
    /// are not its).
    pub(crate) live: bool,
    /// The groups its pattern reaches (mesh mode), whose views it receives.
    pub(crate) groups: Vec<String>,
    /// The pattern starts with a wildcard: it reaches every group, also
    /// groups whose first view comes after the subscription.
    pub(crate) every_group: bool,
}

/// The reader's routing state; it outlives a connection (see
/// `crate::resume`).
#[derive(Default)]
pub(crate) struct Routes {
    pub(crate) subs: HashMap<u64, Route>,
    pub(crate) groups: HashMap<String, GroupRoute>,
    pub(crate) mesh: MeshPhase,
}

/// Where the session stands towards the mesh's primary component, as the
/// streams were told.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MeshPhase {
    /// In it (or not in a mesh).
    #[default]
    In,
    /// Cut off: the streams got `Blocked`.
    Blocked,
    /// Admitted again as a new incarnation: the streams got `Rejoined`,
    /// which stands for `Unblocked` (the broker may still refuse
    /// publishes until its `MeshState { blocked: false }`).
    Rejoined,
}

/// One of the mesh events a session's streams show in their place.
#[derive(Debug, Clone)]
enum MeshEvent {
    Blocked,
    Unblocked,
    Rejoined(crate::Rejoined),
}

impl MeshEvent {
    fn for_subscription(&self) -> SubscriptionEvent {
        match self {
            MeshEvent::Blocked => SubscriptionEvent::Blocked,
            MeshEvent::Unblocked => SubscriptionEvent::Unblocked,
            MeshEvent::Rejoined(r) => SubscriptionEvent::Rejoined(r.clone()),
        }
    }

    fn for_group(&self) -> GroupEvent {
        match self {
            MeshEvent::Blocked => GroupEvent::Blocked,
            MeshEvent::Unblocked => GroupEvent::Unblocked,
            MeshEvent::Rejoined(r) => GroupEvent::Rejoined(r.clone()),
        }
    }
}

/// Which stream event, if any, a mesh message makes in `phase`, and the
/// phase after it. A `Rejoined` stands for the `Unblocked` that would
/// follow it; a repeated `Blocked` (a session opened while blocked is told
/// at once) makes none.
fn mesh_step(phase: MeshPhase, msg: &ServerMsg) -> (Option<MeshEvent>, MeshPhase) {
    match (msg, phase) {
        (ServerMsg::MeshState { blocked: true }, MeshPhase::In) => {
            (Some(MeshEvent::Blocked), MeshPhase::Blocked)
        }
        (ServerMsg::MeshState { blocked: true }, p) => (None, p),
        (ServerMsg::MeshState { blocked: false }, MeshPhase::Blocked) => {
            (Some(MeshEvent::Unblocked), MeshPhase::In)
        }
        (ServerMsg::MeshState { blocked: false }, _) => (None, MeshPhase::In),
        (
            ServerMsg::Rejoined {
                incarnation,
                publisher,
                member,
            },
            _,
        ) => {
            let r = crate::Rejoined {
                incarnation: *incarnation,
                publisher: *publisher,
                member: member.clone(),
            };
            (Some(MeshEvent::Rejoined(r)), MeshPhase::Rejoined)
        }
        (_, p) => (None, p),
    }
}

/// Where one group membership's events go.
pub(crate) struct GroupRoute {
    pub(crate) tx: mpsc::Sender<GroupEvent>,
    pub(crate) failed: Arc<OnceLock<ClientError>>,
    /// Joined with state (joined again with state after a reconnect).
    pub(crate) state: bool,
}

/// Reads until the session ends for good (moving to a new connection
/// whenever `crate::resume` finds one), then records why.
pub(crate) async fn run(shared: Arc<Shared>, mut frames: FrameReader<quinn::RecvStream>) {
    let mut routes = Routes::default();
    let mut index: SubscriptionIndex<u64> = SubscriptionIndex::new(1024);
    loop {
        let reason = read_session(&shared, &mut frames, &mut routes, &mut index).await;
        match crate::resume::after_loss(&shared, &mut routes, &mut index, reason).await {
            Some(next) => frames = next,
            None => return,
        }
    }
}

/// Reads one connection until it ends; returns why.
async fn read_session(
    shared: &Arc<Shared>,
    frames: &mut FrameReader<quinn::RecvStream>,
    routes: &mut Routes,
    index: &mut SubscriptionIndex<u64>,
) -> ClientError {
    let shared = shared.clone();
    let mut batch: Vec<Bytes> = Vec::with_capacity(256);
    loop {
        batch.clear();
        match frames.read_batch(&mut batch).await {
            Ok(true) => {}
            Ok(false) => return ClientError::closed("broker closed the stream"),
            Err(e) => return closed_reason(&shared, e).await,
        }
        for body in batch.drain(..) {
            match client_proto::decode_server(&body) {
                Ok(ServerMsg::Deliver(d)) => deliver(&shared, &mut routes.subs, index, d),
                Ok(ServerMsg::Joined { id, view }) => {
                    let view: View = view.into();
                    // The session's subscriptions reaching the group see the
                    // view too (one message serves both).
                    sub_view(&shared, &mut routes.subs, index, &view);
                    let pending = shared.pending().remove(&id);
                    if let Some(Pending::Rejoin { group }) = pending {
                        // Joined again after a reconnect: the new view.
                        group_event(&shared, &mut routes.groups, &group, GroupEvent::View(view));
                    } else if let Some(Pending::Join {
                        group,
                        state,
                        tx,
                        failed,
                        reply,
                    }) = pending
                    {
                        if reply.send(Ok(view)).is_ok() {
                            let route = GroupRoute { tx, failed, state };
                            routes.groups.insert(group, route);
                        } else {
                            let id = shared.next_id();
                            shared.pending().insert(
                                id,
                                Pending::Leave {
                                    group: group.clone(),
                                },
                            );
                            shared.send_now(&ClientMsg::Leave { id, group });
                        }
                    }
                }
                Ok(ServerMsg::Left { id }) => {
                    // Dropping the route ends the member's event stream.
                    if let Some(Pending::Leave { group }) = shared.pending().remove(&id) {
                        routes.groups.remove(&group);
                    }
                }
                Ok(ServerMsg::GroupView(v)) => {
                    let view: View = v.into();
                    sub_view(&shared, &mut routes.subs, index, &view);
                    let group = view.group.clone();
                    group_event(&shared, &mut routes.groups, &group, GroupEvent::View(view));
                }
                Ok(ServerMsg::StateRequest { group, token }) => {
                    let request = crate::StateRequest {
                        token,
                        shared: shared.clone(),
                        answered: false,
                    };
                    group_event(
                        &shared,
                        &mut routes.groups,
                        &group,
                        GroupEvent::StateRequest(request),
                    );
                }
                Ok(msg @ (ServerMsg::MeshState { .. } | ServerMsg::Rejoined { .. })) => {
                    match &msg {
                        ServerMsg::MeshState { blocked } => {
                            shared.blocked.send_replace(*blocked);
                        }
                        ServerMsg::Rejoined { publisher, .. } => {
                            shared.publisher.store(*publisher, AtomicOrdering::Release);
                        }
                        _ => {}
                    }
                    let (event, phase) = mesh_step(routes.mesh, &msg);
                    routes.mesh = phase;
                    if let Some(event) = event {
                        mesh_event(&shared, routes, index, &event);
                    }
                }
                Ok(ServerMsg::Expelled { group, reason }) => {
                    let err = ClientError::Expelled { group, reason };
                    expelled(&shared, routes, index, err);
                }
                Ok(ServerMsg::State { group, data }) => {
                    group_event(&shared, &mut routes.groups, &group, GroupEvent::State(data));
                }
                Ok(ServerMsg::GroupMessage(m)) => {
                    let group = m.group.clone();
                    let event = GroupEvent::Message(m.into());
                    group_event(&shared, &mut routes.groups, &group, event);
                }
                Ok(msg) => answer(&shared, routes, index, msg),
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable frame from broker");
                }
            }
        }
    }
}

fn deliver(
    shared: &Shared,
    routes: &mut HashMap<u64, Route>,
    index: &mut SubscriptionIndex<u64>,
    d: Delivery,
) {
    let topic = match Topic::new(d.topic.as_str()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "broker delivered an invalid topic");
            return;
        }
    };
    let ids = index.matches(&topic);
    let mut msg = Some(Message {
        topic: d.topic,
        payload: d.payload,
        publisher: d.publisher,
        seq: d.seq,
        ordering: d.ordering,
        safe: d.safe,
        reply_to: d.reply_to,
    });
    let ids: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| routes.get(id).is_some_and(|r| r.live))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        // Clone for all but the last target; the last one takes the message.
        let m = if i + 1 == ids.len() {
            msg.take()
        } else {
            msg.clone()
        };
        let Some(m) = m else { break };
        push(shared, routes, index, *id, SubscriptionEvent::Message(m));
    }
}

/// Hands an event to subscription `id` without ever blocking the reader.
fn push(
    shared: &Shared,
    routes: &mut HashMap<u64, Route>,
    index: &mut SubscriptionIndex<u64>,
    id: u64,
    event: SubscriptionEvent,
) {
    let Some(route) = routes.get(&id) else {
        return;
    };
    match route.tx.try_send(event) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            // Never block the reader (control replies queue behind it):
            // end this subscription, with its reason, instead.
            let err = ClientError::SlowSubscription {
                pattern: route.pattern.as_str().to_string(),
                buffer: shared.subscription_buffer,
            };
            end_subscription(shared, routes, index, id, err);
        }
        Err(TrySendError::Closed(_)) => {
            // The Subscription was dropped; its Drop sent the Unsubscribe.
            routes.remove(&id);
            index.remove(&id);
        }
    }
}

/// Ends subscription `id` with `err` and takes it back at the broker.
pub(crate) fn end_subscription(
    shared: &Shared,
    routes: &mut HashMap<u64, Route>,
    index: &mut SubscriptionIndex<u64>,
    id: u64,
    err: ClientError,
) {
    if let Some(route) = routes.remove(&id) {
        let _ = route.failed.set(err);
    }
    index.remove(&id);
    shared.pending().insert(id, crate::Pending::Unsubscribe);
    shared.send_now(&ClientMsg::Unsubscribe { id });
}

/// A new view of a group: to every subscription that reaches it.
fn sub_view(
    shared: &Shared,
    routes: &mut HashMap<u64, Route>,
    index: &mut SubscriptionIndex<u64>,
    view: &View,
) {
    let mut ids: Vec<u64> = routes
        .iter()
        .filter(|(_, r)| r.live && !r.tap && (r.every_group || r.groups.contains(&view.group)))
        .map(|(id, _)| *id)
        .collect();
    ids.sort_unstable();
    for id in ids {
        push(
            shared,
            routes,
            index,
            id,
            SubscriptionEvent::View(view.clone()),
        );
    }
}

/// An event for every subscription and group membership (after a
/// reconnect).
pub(crate) fn reconnected(
    shared: &Shared,
    routes: &mut Routes,
    index: &mut SubscriptionIndex<u64>,
    info: &crate::Reconnected,
) {
    let mut ids: Vec<u64> = routes.subs.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let event = SubscriptionEvent::Reconnected(info.clone());
        push(shared, &mut routes.subs, index, id, event);
    }
    let mut groups: Vec<String> = routes.groups.keys().cloned().collect();
    groups.sort_unstable();
    for g in groups {
        let event = GroupEvent::Reconnected(info.clone());
        group_event(shared, &mut routes.groups, &g, event);
    }
}

/// A mesh event: to every subscription and every group membership, in its
/// place in each stream.
fn mesh_event(
    shared: &Shared,
    routes: &mut Routes,
    index: &mut SubscriptionIndex<u64>,
    event: &MeshEvent,
) {
    let mut ids: Vec<u64> = routes.subs.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        push(
            shared,
            &mut routes.subs,
            index,
            id,
            event.for_subscription(),
        );
    }
    let mut groups: Vec<String> = routes.groups.keys().cloned().collect();
    groups.sort_unstable();
    for g in groups {
        group_event(shared, &mut routes.groups, &g, event.for_group());
    }
}

/// The mesh removed the session from a group: the membership and every
/// subscription reaching the group end with `err`.
fn expelled(
    shared: &Shared,
    routes: &mut Routes,
    index: &mut SubscriptionIndex<u64>,
    err: ClientError,
) {
    let ClientError::Expelled { group, .. } = &err else {
        return;
    };
    if let Some(route) = routes.groups.remove(group) {
        let _ = route.failed.set(err.clone());
    }
    let ids: Vec<u64> = routes
        .subs
        .iter()
        .filter(|(_, r)| r.every_group || r.groups.contains(group))
        .map(|(id, _)| *id)
        .collect();
    for id in ids {
        end_subscription(shared, &mut routes.subs, index, id, err.clone());
    }
}

/// Hands a group event to its member without ever blocking the reader.
pub(crate) fn group_event(
    shared: &Shared,
    groups: &mut HashMap<String, GroupRoute>,
    group: &str,
    event: GroupEvent,
) {
    let Some(route) = groups.get(group) else {
        return;
    };
    match route.tx.try_send(event) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            let _ = route.failed.set(ClientError::SlowSubscription {
                pattern: format!("group {group}"),
                buffer: shared.subscription_buffer,
            });
            groups.remove(group);
            let id = shared.next_id();
            shared.pending().insert(
                id,
                Pending::Leave {
                    group: group.to_string(),
                },
            );
            shared.send_now(&ClientMsg::Leave {
                id,
                group: group.to_string(),
            });
        }
        Err(TrySendError::Closed(_)) => {
            groups.remove(group);
        }
    }
}

fn answer(shared: &Shared, all: &mut Routes, index: &mut SubscriptionIndex<u64>, msg: ServerMsg) {
    let routes = &mut all.subs;
    match msg {
        ServerMsg::Subscribed { id, views } => {
            let pending = shared.pending().remove(&id);
            match pending {
                Some(Pending::Resubscribe) => {
                    // Subscribed again after a reconnect: live from here,
                    // with the views of its new memberships.
                    let Some(route) = routes.get_mut(&id) else {
                        return;
                    };
                    route.live = true;
                    route.groups = views.iter().map(|v| v.group.clone()).collect();
                    for v in views {
                        push(shared, routes, index, id, SubscriptionEvent::View(v.into()));
                    }
                }
                Some(Pending::Subscribe {
                    pattern,
                    tap,
                    tx,
                    failed,
                    reply,
                }) => {
                    let groups = views.iter().map(|v| v.group.clone()).collect();
                    let views = views.into_iter().map(View::from).collect();
                    if reply.send(Ok(views)).is_ok() {
                        let every_group = !tap && pattern.starts_with_wildcard();
                        index.insert(id, pattern.clone());
                        routes.insert(
                            id,
                            Route {
                                tx,
                                failed,
                                pattern,
                                tap,
                                live: true,
                                groups,
                                every_group,
                            },
                        );
                    } else {
                        // The caller gave up waiting: take it back.
                        shared.pending().insert(id, Pending::Unsubscribe);
                        shared.send_now(&ClientMsg::Unsubscribe { id });
                    }
                }
                Some(other) => {
                    // Cancelled meanwhile: its Unsubscribe is on the way.
                    shared.pending().insert(id, other);
                }
                None => {}
            }
        }
        ServerMsg::Unsubscribed { id } => {
            shared.pending().remove(&id);
            routes.remove(&id);
            index.remove(&id);
        }
        ServerMsg::Pong { id } => {
            if let Some(Pending::Ping { reply }) = shared.pending().remove(&id) {
                let _ = reply.send(Ok(()));
            }
        }
        ServerMsg::Confirmed { id, seq, stable } => {
            if let Some(Pending::Confirm { reply }) = shared.pending().remove(&id) {
                let _ = reply.send(Ok(Confirmation { seq, stable }));
            }
        }
        ServerMsg::Rejected { id, code, reason } => {
            let err = match code {
                meshcast_transport::client_proto::RejectCode::Blocked => {
                    ClientError::Blocked { reason }
                }
                meshcast_transport::client_proto::RejectCode::PermissionDenied => {
                    ClientError::PermissionDenied { reason }
                }
                meshcast_transport::client_proto::RejectCode::RateLimited => {
                    ClientError::RateLimited { reason }
                }
                code => ClientError::Rejected { code, reason },
            };
            match id.and_then(|id| shared.pending().remove(&id)) {
                Some(Pending::Subscribe { reply, .. }) => {
                    let _ = reply.send(Err(err));
                }
                Some(Pending::Confirm { reply }) => {
                    let _ = reply.send(Err(err));
                }
                Some(Pending::Unsubscribe) | Some(Pending::Leave { .. }) => {
                    tracing::debug!(error = %err, "unsubscribe or leave refused");
                }
                Some(Pending::Join { reply, .. }) => {
                    let _ = reply.send(Err(err));
                }
                Some(Pending::Resubscribe) => {
                    // Refused on the new session: the subscription ends.
                    if let Some(id) = id {
                        end_subscription(shared, routes, index, id, err);
                    }
                }
                Some(Pending::Rejoin { group }) => {
                    // Refused on the new session: the membership ends.
                    if let Some(route) = all.groups.remove(&group) {
                        let _ = route.failed.set(err);
                    }
                }
                _ => shared.set_rejection(err),
            }
        }
        ServerMsg::Deliver(_)
        | ServerMsg::Joined { .. }
        | ServerMsg::Left { .. }
        | ServerMsg::GroupView(_)
        | ServerMsg::GroupMessage(_)
        | ServerMsg::StateRequest { .. }
        | ServerMsg::Expelled { .. }
        | ServerMsg::MeshState { .. }
        | ServerMsg::Rejoined { .. }
        | ServerMsg::State { .. } => {}
    }
}

/// Why reading stopped, as the user should see it. A broker ending a
/// session resets the stream (carrying the close code) and then closes the
/// connection with the full reason, so wait briefly for that reason.
async fn closed_reason(shared: &Shared, e: meshcast_transport::FrameError) -> ClientError {
    let conn = shared.conn();
    let wait = tokio::time::timeout(std::time::Duration::from_secs(2), conn.closed());
    match wait.await {
        Ok(c) => from_connection_error(&c),
        Err(_) => {
            let code = reset_code(&e).and_then(CloseCode::from_code);
            match code {
                Some(code) => ClientError::Closed {
                    code: Some(code),
                    reason: format!("broker ended the session ({code:?})"),
                },
                None => ClientError::closed(e.to_string()),
            }
        }
    }
}

/// The application code of a stream reset, if that is what ended the read.
fn reset_code(e: &meshcast_transport::FrameError) -> Option<u64> {
    let meshcast_transport::FrameError::Io(io) = e else {
        return None;
    };
    let read = io.get_ref()?.downcast_ref::<quinn::ReadError>()?;
    match read {
        quinn::ReadError::Reset(code) => Some(code.into_inner()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(msgs: &[ServerMsg]) -> Vec<String> {
        let mut phase = MeshPhase::default();
        let mut out = Vec::new();
        for m in msgs {
            let (event, next) = mesh_step(phase, m);
            phase = next;
            out.extend(event.map(|e| match e {
                MeshEvent::Blocked => "blocked".to_string(),
                MeshEvent::Unblocked => "unblocked".to_string(),
                MeshEvent::Rejoined(r) => format!("rejoined {}", r.member),
            }));
        }
        out
    }

    fn rejoined(member: &str) -> ServerMsg {
        ServerMsg::Rejoined {
            incarnation: 2,
            publisher: 9,
            member: member.into(),
        }
    }

    #[test]
    fn a_rejoin_stands_for_the_unblocked_that_follows_it() {
        let blocked = ServerMsg::MeshState { blocked: true };
        let unblocked = ServerMsg::MeshState { blocked: false };
        // Healed in time: blocked, unblocked.
        assert_eq!(
            kinds(&[blocked.clone(), unblocked.clone()]),
            ["blocked", "unblocked"]
        );
        // Excluded: blocked, rejoined, and no unblocked after it.
        assert_eq!(
            kinds(&[blocked.clone(), rejoined("b1#2/s1"), unblocked.clone()]),
            ["blocked", "rejoined b1#2/s1"]
        );
        // Told twice (a session opened while blocked): one event; and a
        // later cut is a new one.
        assert_eq!(
            kinds(&[
                blocked.clone(),
                blocked.clone(),
                unblocked.clone(),
                blocked.clone(),
                rejoined("b1#3/s1"),
                unblocked.clone(),
                blocked,
                unblocked,
            ]),
            [
                "blocked",
                "unblocked",
                "blocked",
                "rejoined b1#3/s1",
                "blocked",
                "unblocked"
            ]
        );
    }
}
