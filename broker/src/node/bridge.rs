//! Mesh mode: client requests go through the protocol core.
//!
//! A subscription joins, for its session, every group its pattern can reach
//! (DESIGN §3); `Subscribed` is sent only once each of those joins is
//! installed in the group's view (the join barrier, DESIGN §2.9). A publish
//! is numbered for its publisher and multicast to its topic's group with the
//! declared ordering. A delivery from the core goes, encoded once, to the
//! local sessions that are members of the group and have a matching
//! subscription.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use meshcast_protocol::{ClientCmd, ExpelReason, GroupView, MemberId, Output, TransferId};
use meshcast_topics::{GroupMap, Reach, Topic};
use meshcast_transport::client_proto::{
    self, ClientMsg, Delivery, GroupDelivery, GroupViewInfo, Ordering, Publish, RejectCode,
    ServerMsg,
};
use meshcast_transport::wire;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::router::{Effect, Router, SessionId, reply};

/// What the broker puts in a protocol message's payload.
#[derive(Debug, Serialize, Deserialize)]
struct MeshPayload {
    topic: String,
    /// The publisher's own sequence number (1, 2, 3, ...).
    seq: u64,
    payload: Bytes,
    reply_to: Option<String>,
}

struct PendingSub {
    session: SessionId,
    id: u64,
    waiting: HashSet<String>,
}

/// The session side of mesh mode, owned by the core task.
pub(crate) struct Bridge {
    mesh: mpsc::Sender<ClientCmd>,
    me: u32,
    groups: GroupMap,
    /// Subscriptions of a session that reach each group.
    refs: HashMap<(SessionId, String), usize>,
    /// Joins installed in their group's view.
    joined: HashSet<(SessionId, String)>,
    sub_groups: HashMap<(SessionId, u64), Vec<String>>,
    pending: Vec<PendingSub>,
    status: MeshStatus,
    /// Explicit joins (`ClientMsg::Join`): request id and whether the
    /// session is in an installed view yet.
    explicit: HashMap<(SessionId, String), (u64, bool)>,
    /// The last installed view of each group.
    views: HashMap<String, GroupView>,
    /// State requests handed to local members, by (session, token).
    transfers: HashMap<(SessionId, u64), TransferId>,
    next_token: u64,
}

/// Longest group name accepted from a client.
const MAX_GROUP_NAME: usize = 128;

/// What the protocol core last reported, for `GET /status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeshStatus {
    /// The installed mesh view: its id and members (`name:incarnation`).
    pub view: Option<(String, Vec<String>)>,
    /// Each group's installed view: group, view id and members
    /// (`name:incarnation/session`, oldest first).
    pub groups: Vec<(String, String, Vec<String>)>,
    /// Whether this broker is outside the primary component.
    pub blocked: bool,
}

fn to_protocol(o: Ordering) -> meshcast_protocol::Ordering {
    match o {
        Ordering::Reliable => meshcast_protocol::Ordering::Reliable,
        Ordering::Fifo => meshcast_protocol::Ordering::Fifo,
        Ordering::Causal => meshcast_protocol::Ordering::Causal,
        Ordering::Total => meshcast_protocol::Ordering::Total,
    }
}

fn from_protocol(o: meshcast_protocol::Ordering) -> Ordering {
    match o {
        meshcast_protocol::Ordering::Reliable => Ordering::Reliable,
        meshcast_protocol::Ordering::Fifo => Ordering::Fifo,
        meshcast_protocol::Ordering::Causal => Ordering::Causal,
        meshcast_protocol::Ordering::Total => Ordering::Total,
    }
}

/// A publisher id unique in the mesh: the broker's node name and the session.
pub(crate) fn publisher_id(broker: u32, session: u64) -> u64 {
    (u64::from(broker) << 32) | (session & 0xFFFF_FFFF)
}

impl Bridge {
    pub(crate) fn new(mesh: mpsc::Sender<ClientCmd>, me: u32, groups: GroupMap) -> Bridge {
        Bridge {
            mesh,
            me,
            groups,
            refs: HashMap::new(),
            joined: HashSet::new(),
            sub_groups: HashMap::new(),
            pending: Vec::new(),
            status: MeshStatus::default(),
            explicit: HashMap::new(),
            views: HashMap::new(),
            transfers: HashMap::new(),
            next_token: 0,
        }
    }

    /// What the protocol core last reported.
    pub(crate) fn status(&self) -> MeshStatus {
        self.status.clone()
    }

    /// Hands a command to the core; `false` if its queue is full.
    fn command(&self, cmd: ClientCmd) -> bool {
        self.mesh.try_send(cmd).is_ok()
    }

    /// Applies one client request in mesh mode.
    pub(crate) fn client(
        &mut self,
        router: &mut Router,
        session: SessionId,
        msg: ClientMsg,
        out: &mut Vec<Effect>,
    ) {
        match msg {
            ClientMsg::Subscribe { id, pattern } => {
                self.subscribe(router, session, id, pattern, out)
            }
            ClientMsg::Unsubscribe { id } => match router.unsubscribe(session, id) {
                Ok(_) => {
                    for g in self.sub_groups.remove(&(session, id)).unwrap_or_default() {
                        self.release(session, g);
                    }
                    out.push(reply(session, &ServerMsg::Unsubscribed { id }));
                }
                Err(rejected) => out.push(reply(session, &rejected)),
            },
            ClientMsg::Publish(p) => self.publish(router, session, p, out),
            ping @ ClientMsg::Ping { .. } => router.handle(session, ping, out),
            ClientMsg::Join { id, group, state } => self.join(session, id, group, state, out),
            ClientMsg::StateReply { token, data } => {
                if let Some(transfer) = self.transfers.remove(&(session, token)) {
                    let reply = ClientCmd::StateReply {
                        transfer,
                        data: data.to_vec(),
                    };
                    if !self.command(reply) {
                        tracing::warn!(session, "mesh command queue full: state reply dropped");
                    }
                }
            }
            ClientMsg::Leave { id, group } => {
                if self.explicit.remove(&(session, group.clone())).is_some() {
                    self.release(session, group);
                    out.push(reply(session, &ServerMsg::Left { id }));
                } else {
                    out.push(reply(
                        session,
                        &ServerMsg::Rejected {
                            id: Some(id),
                            code: RejectCode::InvalidGroup,
                            reason: format!("not a member of group {group:?}"),
                        },
                    ));
                }
            }
            ClientMsg::Multicast {
                group,
                ordering,
                safe,
                payload,
            } => {
                if let Err(reason) = check_group(&group) {
                    return out.push(reply(
                        session,
                        &ServerMsg::Rejected {
                            id: None,
                            code: RejectCode::InvalidGroup,
                            reason,
                        },
                    ));
                }
                let Some(seq) = router.next_seq(session) else {
                    return;
                };
                // An empty topic marks a multicast: no subscription matches it.
                let body = MeshPayload {
                    topic: String::new(),
                    seq,
                    payload,
                    reply_to: None,
                };
                self.send(session, group, body, ordering, safe, out);
            }
        }
    }

    fn subscribe(
        &mut self,
        router: &mut Router,
        session: SessionId,
        id: u64,
        pattern: String,
        out: &mut Vec<Effect>,
    ) {
        let pattern = match router.subscribe(session, id, pattern) {
            Ok(p) => p,
            Err(rejected) => return out.push(reply(session, &rejected)),
        };
        let groups = match self.groups.reach(&pattern) {
            Reach::Groups(g) => g,
            Reach::All => {
                let _ = router.unsubscribe(session, id);
                let reason = format!(
                    "pattern {:?} starts with a wildcard and so reaches every group; \
                     a mesh does not support that yet: start it with a literal segment",
                    pattern.as_str()
                );
                return out.push(reply(
                    session,
                    &ServerMsg::Rejected {
                        id: Some(id),
                        code: RejectCode::InvalidPattern,
                        reason,
                    },
                ));
            }
        };
        let mut waiting = HashSet::new();
        for g in &groups {
            let n = self.refs.entry((session, g.clone())).or_default();
            *n += 1;
            if *n == 1 {
                let join = ClientCmd::Join {
                    session,
                    group: g.clone(),
                    state: false,
                };
                if !self.command(join) {
                    tracing::warn!(session, group = %g, "mesh command queue full: join dropped");
                }
            }
            if !self.joined.contains(&(session, g.clone())) {
                waiting.insert(g.clone());
            }
        }
        self.sub_groups.insert((session, id), groups);
        if waiting.is_empty() {
            out.push(reply(session, &ServerMsg::Subscribed { id }));
        } else {
            self.pending.push(PendingSub {
                session,
                id,
                waiting,
            });
        }
    }

    fn join(
        &mut self,
        session: SessionId,
        id: u64,
        group: String,
        state: bool,
        out: &mut Vec<Effect>,
    ) {
        let refuse = |reason: String| ServerMsg::Rejected {
            id: Some(id),
            code: RejectCode::InvalidGroup,
            reason,
        };
        if let Err(reason) = check_group(&group) {
            return out.push(reply(session, &refuse(reason)));
        }
        let key = (session, group.clone());
        if self.explicit.contains_key(&key) {
            let reason = format!("already a member of group {group:?}");
            return out.push(reply(session, &refuse(reason)));
        }
        let installed = self.joined.contains(&key);
        self.explicit.insert(key.clone(), (id, installed));
        let n = self.refs.entry(key).or_default();
        *n += 1;
        if *n == 1 {
            let join = ClientCmd::Join {
                session,
                group: group.clone(),
                state,
            };
            if !self.command(join) {
                tracing::warn!(session, %group, "mesh command queue full: join dropped");
            }
        }
        if installed {
            if let Some(view) = self
                .views
                .get(&group)
                .and_then(|v| self.view_info(v, session))
            {
                out.push(reply(session, &ServerMsg::Joined { id, view }));
            }
        }
    }

    /// A group view as `session` sees it, if it is a member.
    fn view_info(&self, view: &GroupView, session: SessionId) -> Option<GroupViewInfo> {
        let rank = view
            .members
            .iter()
            .position(|m| m.broker.name == self.me && m.session == session)?;
        Some(GroupViewInfo {
            group: view.group.clone(),
            view: format!("{:?}", view.id),
            members: view.members.iter().map(|m| m.to_string()).collect(),
            rank: rank as u32,
        })
    }

    /// One subscription of `session` no longer reaches `group`.
    fn release(&mut self, session: SessionId, group: String) {
        let key = (session, group);
        let Some(n) = self.refs.get_mut(&key) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.refs.remove(&key);
            self.joined.remove(&key);
            let (session, group) = key;
            if !self.command(ClientCmd::Leave { session, group }) {
                tracing::warn!(session, "mesh command queue full: leave dropped");
            }
        }
    }

    fn publish(
        &mut self,
        router: &mut Router,
        session: SessionId,
        p: Publish,
        out: &mut Vec<Effect>,
    ) {
        let (topic, seq) = match router.accept_publish(session, &p) {
            Ok(t) => t,
            Err(rejected) => return out.push(reply(session, &rejected)),
        };
        let group = self.groups.group_of(&topic).to_string();
        let body = MeshPayload {
            topic: p.topic,
            seq,
            payload: p.payload,
            reply_to: p.reply_to,
        };
        self.send(session, group, body, p.ordering, p.safe, out);
    }

    /// Hands one message for `group` to the core, or refuses it if the
    /// core's queue is full.
    fn send(
        &mut self,
        session: SessionId,
        group: String,
        body: MeshPayload,
        ordering: Ordering,
        safe: bool,
        out: &mut Vec<Effect>,
    ) {
        let what = if body.topic.is_empty() {
            format!("multicast to group {group:?}")
        } else {
            format!("publish on {:?}", body.topic)
        };
        let payload = match wire::frame("mesh payload", &body) {
            Ok(f) => f.slice(wire::LEN_PREFIX..),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a mesh payload");
                return;
            }
        };
        let cmd = ClientCmd::Publish {
            session,
            group,
            ordering: to_protocol(ordering),
            safe,
            payload,
        };
        if !self.command(cmd) {
            let reason =
                format!("{what} refused: the broker's queue to the mesh is full, retry later");
            out.push(reply(
                session,
                &ServerMsg::Rejected {
                    id: None,
                    code: RejectCode::LimitReached,
                    reason,
                },
            ));
        }
    }

    /// The session ended: leave every group it was in.
    pub(crate) fn close(&mut self, session: SessionId) {
        let keys: Vec<(SessionId, String)> = self
            .refs
            .keys()
            .filter(|(s, _)| *s == session)
            .cloned()
            .collect();
        for (s, group) in keys {
            self.refs.remove(&(s, group.clone()));
            self.joined.remove(&(s, group.clone()));
            let _ = self.command(ClientCmd::Leave { session, group });
        }
        self.sub_groups.retain(|(s, _), _| *s != session);
        self.pending.retain(|p| p.session != session);
        self.explicit.retain(|(s, _), _| *s != session);
        self.transfers.retain(|(s, _), _| *s != session);
    }

    /// Applies one output of the protocol core.
    pub(crate) fn output(&mut self, router: &mut Router, output: Output, out: &mut Vec<Effect>) {
        match output {
            Output::Deliver(d) => {
                let sessions: HashSet<SessionId> = d
                    .targets
                    .iter()
                    .filter(|m| m.broker.name == self.me)
                    .map(|m| m.session)
                    .collect();
                if sessions.is_empty() {
                    return;
                }
                let body: MeshPayload = match wire::decode_body("mesh payload", &d.payload) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, group = %d.group, "undecodable mesh payload");
                        return;
                    }
                };
                let publisher = publisher_id(d.publisher.broker.name, d.publisher.session);
                let ordering = from_protocol(d.ordering);
                // Members that joined the group explicitly get every message.
                let mut members: Vec<(SessionId, u64)> = sessions
                    .iter()
                    .filter(|s| {
                        self.explicit
                            .get(&(**s, d.group.clone()))
                            .is_some_and(|e| e.1)
                    })
                    .map(|s| (*s, 0))
                    .collect();
                if !members.is_empty() {
                    members.sort_unstable();
                    let msg = ServerMsg::GroupMessage(GroupDelivery {
                        group: d.group.clone(),
                        publisher,
                        seq: body.seq,
                        ordering,
                        safe: d.safe,
                        payload: body.payload.clone(),
                    });
                    match client_proto::encode_server(&msg) {
                        Ok(frame) => out.push(Effect::Fanout {
                            frame,
                            targets: members.into(),
                        }),
                        Err(e) => tracing::error!(error = %e, "cannot encode a group message"),
                    }
                }
                // Subscriptions get published messages whose topic they match.
                let Ok(topic) = Topic::new(body.topic.as_str()) else {
                    return;
                };
                let delivery = Delivery {
                    topic: body.topic,
                    publisher,
                    seq: body.seq,
                    ordering,
                    safe: d.safe,
                    payload: body.payload,
                    reply_to: body.reply_to,
                };
                out.extend(router.fanout(&topic, delivery, |s| sessions.contains(&s)));
            }
            Output::GroupView(gv) => {
                let group = gv.view.group.clone();
                let members = gv
                    .view
                    .members
                    .iter()
                    .map(|m| format!("{}/{}", m.broker, m.session))
                    .collect();
                let entry = (group.clone(), format!("{:?}", gv.view.id), members);
                match self.status.groups.iter_mut().find(|g| g.0 == group) {
                    Some(g) => *g = entry,
                    None => self.status.groups.push(entry),
                }
                let members: HashSet<MemberId> = gv.view.members.iter().copied().collect();
                for m in gv.view.members.iter().filter(|m| m.broker.name == self.me) {
                    if self.refs.contains_key(&(m.session, group.clone())) {
                        self.joined.insert((m.session, group.clone()));
                    }
                }
                self.joined.retain(|(s, g)| {
                    *g != group
                        || members
                            .iter()
                            .any(|m| m.broker.name == self.me && m.session == *s)
                });
                let joined = &self.joined;
                let mut done = Vec::new();
                self.pending.retain_mut(|p| {
                    p.waiting
                        .retain(|g| !joined.contains(&(p.session, g.clone())));
                    if p.waiting.is_empty() {
                        done.push((p.session, p.id));
                        false
                    } else {
                        true
                    }
                });
                for (session, id) in done {
                    out.push(reply(session, &ServerMsg::Subscribed { id }));
                }
                let mut notices = Vec::new();
                for ((session, g), (id, installed)) in self.explicit.iter_mut() {
                    if *g != group {
                        continue;
                    }
                    let Some(rank) = gv
                        .view
                        .members
                        .iter()
                        .position(|m| m.broker.name == self.me && m.session == *session)
                    else {
                        continue;
                    };
                    let info = GroupViewInfo {
                        group: group.clone(),
                        view: format!("{:?}", gv.view.id),
                        members: gv.view.members.iter().map(|m| m.to_string()).collect(),
                        rank: rank as u32,
                    };
                    let msg = if *installed {
                        ServerMsg::GroupView(info)
                    } else {
                        *installed = true;
                        ServerMsg::Joined {
                            id: *id,
                            view: info,
                        }
                    };
                    notices.push((*session, msg));
                }
                for (session, msg) in notices {
                    out.push(reply(session, &msg));
                }
                self.views.insert(group, gv.view);
            }
            Output::StateRequest { transfer, provider } => {
                let member = (provider.session, transfer.group.clone());
                if provider.broker.name == self.me && self.explicit.contains_key(&member) {
                    // Ask the member's application for its checkpoint.
                    self.next_token += 1;
                    let token = self.next_token;
                    let group = transfer.group.clone();
                    self.transfers.insert((provider.session, token), transfer);
                    out.push(reply(
                        provider.session,
                        &ServerMsg::StateRequest { group, token },
                    ));
                } else {
                    // A member only through subscriptions keeps no state.
                    let _ = self.command(ClientCmd::StateReply {
                        transfer,
                        data: Vec::new(),
                    });
                }
            }
            Output::StateDelivered { transfer, data } => {
                if transfer.joiner.broker.name == self.me {
                    let msg = ServerMsg::State {
                        group: transfer.group,
                        data: data.map(Bytes::from),
                    };
                    out.push(reply(transfer.joiner.session, &msg));
                }
            }
            Output::MeshView(v) => {
                tracing::info!(view = ?v.id, members = v.members.len(), "mesh view installed");
                let members = v.members.iter().map(|m| m.to_string()).collect();
                self.status.view = Some((format!("{:?}", v.id), members));
            }
            Output::Blocked => {
                tracing::warn!("this broker lost the primary component: blocked");
                self.status.blocked = true;
                out.extend(tell_everyone(
                    router,
                    &ServerMsg::MeshState { blocked: true },
                ));
            }
            Output::Unblocked => {
                tracing::info!("this broker is in the primary component again");
                self.status.blocked = false;
                out.extend(tell_everyone(
                    router,
                    &ServerMsg::MeshState { blocked: false },
                ));
            }
            Output::Expelled {
                group,
                member,
                reason,
            } => {
                tracing::warn!(%group, session = member.session, ?reason, "member expelled");
                if member.broker.name == self.me {
                    let key = (member.session, group.clone());
                    self.joined.remove(&key);
                    if self.explicit.remove(&key).is_some() {
                        self.refs.remove(&key);
                        let reason = match reason {
                            ExpelReason::Slow => "slow: its delivery queue stayed full",
                            ExpelReason::TransferFailed => {
                                "transfer failed: no checkpoint arrived in time"
                            }
                            ExpelReason::Partitioned => "partitioned from the primary component",
                        };
                        out.push(reply(
                            member.session,
                            &ServerMsg::Expelled {
                                group,
                                reason: reason.to_string(),
                            },
                        ));
                    }
                }
            }
            other => tracing::debug!(?other, "protocol output not used yet"),
        }
    }
}

/// Checks a group name from a client.
fn check_group(group: &str) -> Result<(), String> {
    if group.is_empty() || group.len() > MAX_GROUP_NAME {
        return Err(format!(
            "group name {group:?} must be 1 to {MAX_GROUP_NAME} bytes"
        ));
    }
    if let Some(c) = group.chars().find(|c| !c.is_ascii_graphic() || *c == '/') {
        return Err(format!(
            "group name {group:?} has the character {c:?}: use printable ASCII without '/'"
        ));
    }
    Ok(())
}

/// One frame, encoded once, for every open session.
fn tell_everyone(router: &Router, msg: &ServerMsg) -> Option<Effect> {
    let targets: Vec<(SessionId, u64)> = router.session_ids().into_iter().map(|s| (s, 0)).collect();
    if targets.is_empty() {
        return None;
    }
    let frame = client_proto::encode_server(msg).ok()?;
    Some(Effect::Fanout {
        frame,
        targets: targets.into(),
    })
}
