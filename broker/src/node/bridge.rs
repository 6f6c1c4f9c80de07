//! Mesh mode: client requests go through the protocol core.
//!
//! A subscription joins, for its session, every group its pattern can reach
//! (DESIGN §3); `Subscribed` is sent only once each of those joins is
//! installed in the group's view (the join barrier, DESIGN §2.9). A publish
//! is numbered for its publisher and multicast to its topic's group with the
//! declared ordering. A delivery from the core goes, encoded once, to the
//! local sessions that are members of the group and have a matching
//! subscription.
//!
//! A pattern that starts with a wildcard reaches every group, including
//! groups created later: its session joins every group that has a view
//! here, and each group that gets its first view afterwards, and it is
//! given every matching message this broker delivers even before its join
//! in that group is installed (every broker delivers every group's
//! messages in that group's order, so such a subscription sees each group's
//! order; its views arrive once its joins are installed).
//!
//! Every member session, whether it joined explicitly or through a
//! subscription, is sent each new view of its groups in the core's output
//! order, so views keep their place among the messages at every member.
//!
//! When this broker is cut off from the primary component, the core
//! re-joins its members under a new incarnation with state transfer
//! ([`Output::Rejoining`], then `Expelled { reason: Partitioned }` for each
//! member). The bridge keeps those memberships: the client is told
//! `MeshState { blocked }`, its streams pause, and after the heal they go on
//! with the new view (and, for a member that joined with state, a new
//! checkpoint before any later message).
//!
//! The events of the primary component reach every session in their place
//! among its deliveries and views (one ordered stream per session, written
//! in the core's output order): [`Output::Blocked`] as
//! `MeshState { blocked: true }`, [`Output::Unblocked`] as
//! `MeshState { blocked: false }`, and a rejoin as `ServerMsg::Rejoined`
//! (to each session open under the old incarnation, with its new publisher
//! id) when the mesh view admitting the new incarnation is installed,
//! before that view's group views. Views held for a joiner are handed out
//! before any of these events (they were installed before it).

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use meshcast_protocol::{
    ClientCmd, Delivery as CoreDelivery, ExpelReason, GroupView, MemberId, Output, TransferId,
    ViewId,
};
use meshcast_topics::{GroupMap, Reach, Topic};
use meshcast_transport::client_proto::{
    self, ClientMsg, Delivery, GroupDelivery, GroupViewInfo, Ordering, Publish, RejectCode,
    ServerMsg,
};
use meshcast_transport::wire;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::names::Names;
use crate::permissions::Target;
use crate::router::{Effect, Router, SessionId, reply};
use meshcast_config::Action;

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

/// A membership asked for with `ClientMsg::Join`.
#[derive(Debug, Clone, Copy)]
struct Explicit {
    /// The request id, answered by `Joined`.
    id: u64,
    /// Whether the session is in an installed view yet (`Joined` was sent).
    installed: bool,
    /// Whether it joined with state (it gets checkpoints).
    state: bool,
}

/// The session side of mesh mode, owned by the core task.
pub(crate) struct Bridge {
    mesh: mpsc::Sender<ClientCmd>,
    me: u32,
    /// Readable names of brokers, members and views.
    names: Names,
    /// Brokers of the last installed mesh view (to log only changes of
    /// brokers at info level, with who left and joined).
    last_mesh: Vec<meshcast_protocol::NodeId>,
    /// This broker's current incarnation (new after a rejoin).
    incarnation: u64,
    /// A rejoin in progress: the new incarnation and the sessions open
    /// under the old one, told `Rejoined` once the new one is admitted.
    rejoin: Option<(meshcast_protocol::NodeId, Vec<SessionId>)>,
    groups: GroupMap,
    /// Subscriptions of a session that reach each group.
    refs: HashMap<(SessionId, String), usize>,
    /// Joins installed in their group's view.
    joined: HashSet<(SessionId, String)>,
    /// Memberships whose leave the core has not taken yet
    /// ([`Output::LeaveTaken`]): until it has, every view listing the
    /// session (even one reporting it joined: the core may apply a join
    /// asked for before the leave, its own re-join after a partition
    /// included) belongs to the old membership, not to a new join of the
    /// same session.
    leaving: HashSet<(SessionId, String)>,
    /// The view in which each current membership's join was installed
    /// (the core reported it joined, not withdrawn). A view that lists a
    /// session without one belongs to a membership its client left or
    /// withdrew, and so does a checkpoint of a transfer older than it.
    member_since: HashMap<(SessionId, String), ViewId>,
    sub_groups: HashMap<(SessionId, u64), Vec<String>>,
    pending: Vec<PendingSub>,
    status: MeshStatus,
    /// Explicit joins (`ClientMsg::Join`).
    explicit: HashMap<(SessionId, String), Explicit>,
    /// Entries of `explicit` per session: with its subscriptions, bounded
    /// by `limits.max_subscriptions_per_session`.
    join_counts: HashMap<SessionId, usize>,
    /// The last installed view of each group.
    views: HashMap<String, GroupView>,
    /// State requests handed to local members, by (session, token).
    transfers: HashMap<(SessionId, u64), TransferId>,
    next_token: u64,
    /// `safe` publishes awaiting their stability confirmation: per session,
    /// the publisher's sequence number to the client's confirm id.
    confirms: HashMap<SessionId, HashMap<u64, u64>>,
    /// Bound of each session's `confirms` (`limits.max_pending_confirms`).
    max_confirms: usize,
    /// Commands waiting for room in the core's command channel, in order.
    /// While any wait, the core task reads no more client messages (so this
    /// holds at most the few session batches read before it filled), and
    /// it drains them as the channel frees up: nothing is dropped or
    /// refused because the mesh is busy; publishers wait instead.
    parked: VecDeque<ClientCmd>,
    /// Subscriptions whose pattern starts with a wildcard and so reaches
    /// every group, including groups created later: they join every group
    /// that has a view (now and as new ones appear) and get every matching
    /// message this broker delivers, member of its group yet or not (every
    /// broker delivers every group's messages, in the group's order).
    every_group: HashSet<(SessionId, u64)>,
    /// Taps (`ClientMsg::Tap`): subscriptions that join no group and get
    /// every matching message this broker delivers, like `every_group`
    /// ones, but are in no view.
    taps: HashSet<(SessionId, u64)>,
    /// Members that joined with state and await their checkpoint: views
    /// installed meanwhile are held back here, because the deliveries the
    /// core holds back for the joiner (ordered in earlier views) come only
    /// with the checkpoint and must reach the client before those views.
    awaiting_state: HashMap<(SessionId, String), Vec<(ViewId, Effect)>>,
    /// Checkpoints handed over in the current batch of core outputs: held
    /// views go out as the held-back deliveries pass their view, the rest
    /// at the end of the batch (`end_of_batch`).
    releasing: HashMap<(SessionId, String), Vec<(ViewId, Effect)>>,
}

/// Longest group name accepted from a client.
const MAX_GROUP_NAME: usize = 128;

/// What the protocol core last reported, for `GET /status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeshStatus {
    /// This broker in the protocol: its id, with `#<n>` after it rejoined
    /// the mesh n times since it started (see `node/names.rs`).
    pub node: Option<String>,
    /// This broker's current incarnation number (grows when it rejoins
    /// after being cut off).
    pub incarnation: Option<u64>,
    /// The installed mesh view: its id (`v<counter>@<coordinator>`) and
    /// members (broker ids, oldest first).
    pub view: Option<(String, Vec<String>)>,
    /// Each group's installed view: group, view id and members
    /// (`<broker>/s<session>`, oldest first). The same as
    /// `group_status`, in a compact form.
    pub groups: Vec<(String, String, Vec<String>)>,
    /// Each group in detail: view, members, sequencer and local buffers.
    pub group_status: Vec<GroupStatus>,
    /// Whether this broker is outside the primary component.
    pub blocked: bool,
    /// Memberships of a mesh view change in progress at this broker (the
    /// value it accepted, the round it coordinates), brokers as in `view`;
    /// empty when none is. A mesh that looks whole may still be about to
    /// install a view without a broker that was unreachable a moment ago.
    pub pending_views: Vec<Vec<String>>,
}

/// One group as `GET /status` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupStatus {
    /// The group.
    pub group: String,
    /// Its installed view's id.
    pub view: String,
    /// Members, oldest first.
    pub members: Vec<String>,
    /// The broker that orders the group's `total` messages in the current
    /// mesh view.
    pub sequencer: Option<String>,
    /// Messages of the group held here: received and not yet freed
    /// (delivered and known received everywhere).
    pub held: Option<usize>,
    /// This broker's own messages of the group not yet known received by
    /// every broker (counted against the credit window).
    pub unstable_own: Option<u64>,
    /// Total-order decisions kept until every broker delivered them.
    pub decisions_held: Option<usize>,
    /// Publishes to the group waiting here for credit or for a view.
    pub queued_publishes: Option<usize>,
    /// This broker's member sessions and what is buffered for them.
    pub local: Vec<LocalMember>,
}

impl MeshStatus {
    /// Adds the protocol core's figures ([`meshcast_protocol::Broker::group_stats`],
    /// [`meshcast_protocol::Broker::pending_views`]).
    pub(crate) fn add_core_figures(&mut self, figures: &super::mesh::CoreFigures, names: &Names) {
        self.pending_views = figures
            .pending_views
            .iter()
            .map(|v| v.iter().map(|n| names.node(*n)).collect())
            .collect();
        for g in &mut self.group_status {
            let Some(f) = figures.groups.iter().find(|f| f.group == g.group) else {
                continue;
            };
            g.sequencer = f.sequencer.map(|n| names.node(n));
            g.held = Some(f.held);
            g.unstable_own = Some(f.unstable_own);
            g.decisions_held = Some(f.decisions_held);
            g.queued_publishes = Some(f.queued);
        }
    }
}

/// A member session hosted here, with its buffers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LocalMember {
    /// The session id.
    pub session: u64,
    /// The session as views list it (`b1/s2`).
    pub member: String,
    /// The name its client gave in its hello (may be empty).
    pub name: String,
    /// `join`, `join+state` or `subscription`.
    pub by: &'static str,
    /// Frames queued for the session and not yet written to it.
    pub queued_frames: usize,
    /// Bytes of those frames.
    pub queued_bytes: usize,
    /// The session's `safe` publishes awaiting their stability confirmation.
    pub pending_confirms: usize,
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

/// A publisher id unique in the mesh across restarts and rejoins: the
/// broker incarnation hosting the session and the session
/// ([`client_proto::mesh_publisher_id`]).
pub(crate) fn publisher_id(publisher: MemberId) -> u64 {
    client_proto::mesh_publisher_id(
        publisher.broker.name,
        publisher.broker.incarnation,
        publisher.session,
    )
}

impl Bridge {
    pub(crate) fn new(
        mesh: mpsc::Sender<ClientCmd>,
        me: u32,
        incarnation: u64,
        groups: GroupMap,
        max_confirms: usize,
        names: Names,
    ) -> Bridge {
        Bridge {
            mesh,
            me,
            names,
            last_mesh: Vec::new(),
            incarnation,
            rejoin: None,
            groups,
            refs: HashMap::new(),
            joined: HashSet::new(),
            sub_groups: HashMap::new(),
            pending: Vec::new(),
            status: MeshStatus::default(),
            explicit: HashMap::new(),
            join_counts: HashMap::new(),
            views: HashMap::new(),
            transfers: HashMap::new(),
            next_token: 0,
            confirms: HashMap::new(),
            max_confirms,
            parked: VecDeque::new(),
            every_group: HashSet::new(),
            taps: HashSet::new(),
            awaiting_state: HashMap::new(),
            releasing: HashMap::new(),
            leaving: HashSet::new(),
            member_since: HashMap::new(),
        }
    }

    /// Whether commands wait for room in the core's channel.
    pub(crate) fn parked(&self) -> bool {
        !self.parked.is_empty()
    }

    /// The core's command channel (to wait for room in it).
    pub(crate) fn sender(&self) -> mpsc::Sender<ClientCmd> {
        self.mesh.clone()
    }

    /// Hands the oldest waiting command over with `permit`, then as many
    /// more as fit.
    pub(crate) fn unpark(&mut self, permit: mpsc::OwnedPermit<ClientCmd>) {
        let Some(first) = self.parked.pop_front() else {
            return;
        };
        permit.send(first);
        while let Some(cmd) = self.parked.pop_front() {
            match self.mesh.try_send(cmd) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(cmd)) => {
                    self.parked.push_front(cmd);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.parked.clear();
                    return;
                }
            }
        }
    }

    /// Whether this broker is outside the primary component.
    pub(crate) fn blocked(&self) -> bool {
        self.status.blocked
    }

    /// The publisher id of `session`'s next messages (the broker's current
    /// incarnation; see [`client_proto::mesh_publisher_id`]).
    pub(crate) fn publisher_of(&self, session: SessionId) -> u64 {
        publisher_id(MemberId {
            broker: meshcast_protocol::NodeId::new(self.me, self.incarnation),
            session,
        })
    }

    /// What the protocol core last reported, with each local member's
    /// queue as `queue(session)` gives it (frames, bytes).
    pub(crate) fn status(&self, queue: impl Fn(SessionId) -> (usize, usize)) -> MeshStatus {
        let mut status = self.status.clone();
        status.groups.clear();
        let mut names: Vec<&String> = self.views.keys().collect();
        names.sort();
        for name in names {
            let view = &self.views[name];
            let local = view
                .members
                .iter()
                .filter(|m| m.broker.name == self.me)
                .map(|m| {
                    let key = (m.session, name.clone());
                    let by = match self.explicit.get(&key) {
                        Some(e) if e.state => "join+state",
                        Some(_) => "join",
                        None => "subscription",
                    };
                    let (queued_frames, queued_bytes) = queue(m.session);
                    LocalMember {
                        session: m.session,
                        member: self.names.member(*m),
                        name: self.names.session_name(m.session),
                        by,
                        queued_frames,
                        queued_bytes,
                        pending_confirms: self.confirms.get(&m.session).map_or(0, HashMap::len),
                    }
                })
                .collect();
            let members = self.names.members(&view.members);
            let id = self.names.view(view.id);
            status
                .groups
                .push((name.clone(), id.clone(), members.clone()));
            status.group_status.push(GroupStatus {
                group: name.clone(),
                view: id,
                members,
                local,
                ..GroupStatus::default()
            });
        }
        status
    }

    /// Hands a command to the core, or queues it behind others waiting for
    /// room (see `parked`); commands reach the core in call order.
    fn command(&mut self, cmd: ClientCmd) {
        if !self.parked.is_empty() {
            self.parked.push_back(cmd);
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(cmd)) = self.mesh.try_send(cmd) {
            self.parked.push_back(cmd);
        }
    }

    /// Applies one client request in mesh mode.
    pub(crate) fn client(
        &mut self,
        router: &mut Router,
        session: SessionId,
        msg: ClientMsg,
        out: &mut Vec<Effect>,
    ) {
        if let ClientMsg::Subscribe { id, .. }
        | ClientMsg::Tap { id, .. }
        | ClientMsg::Join { id, .. } = &msg
        {
            if let Err(refused) = self.membership_room(router, session, *id) {
                return out.push(reply(session, &refused));
            }
        }
        match msg {
            ClientMsg::Subscribe { id, pattern } => {
                self.subscribe(router, session, id, pattern, out)
            }
            ClientMsg::Tap { id, pattern } => match router.subscribe(session, id, pattern) {
                // A tap joins no group: it is in no view, and gets every
                // matching message this broker delivers (every broker
                // delivers every group's messages, in the group's order).
                Ok(_) => {
                    self.taps.insert((session, id));
                    let views = Vec::new();
                    out.push(reply(session, &ServerMsg::Subscribed { id, views }));
                }
                Err(rejected) => out.push(reply(session, &rejected)),
            },
            ClientMsg::Unsubscribe { id } => match router.unsubscribe(session, id) {
                Ok(_) => {
                    self.taps.remove(&(session, id));
                    self.every_group.remove(&(session, id));
                    for g in self.sub_groups.remove(&(session, id)).unwrap_or_default() {
                        self.release(session, g);
                    }
                    self.pending.retain(|p| (p.session, p.id) != (session, id));
                    out.push(reply(session, &ServerMsg::Unsubscribed { id }));
                }
                Err(rejected) => out.push(reply(session, &rejected)),
            },
            ClientMsg::Publish(p) => self.publish(router, session, p, out),
            ping @ ClientMsg::Ping { .. } => router.handle(session, ping, out),
            ClientMsg::Join { id, group, state } => {
                self.join(router, session, id, group, state, out)
            }
            ClientMsg::StateReply { token, data } => {
                if let Some(transfer) = self.transfers.remove(&(session, token)) {
                    let reply = ClientCmd::StateReply {
                        transfer,
                        data: data.to_vec(),
                    };
                    self.command(reply);
                }
            }
            ClientMsg::Leave { id, group } => {
                if self.explicit.remove(&(session, group.clone())).is_some() {
                    self.joins_changed(session, false);
                    self.awaiting_state.remove(&(session, group.clone()));
                    self.releasing.remove(&(session, group.clone()));
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
                confirm,
            } => {
                if let Err(reason) = check_group(&group) {
                    return out.push(reply(
                        session,
                        &ServerMsg::Rejected {
                            id: confirm,
                            code: RejectCode::InvalidGroup,
                            reason,
                        },
                    ));
                }
                let target = Target::Group(&group);
                if let Err(refused) = router.check(session, confirm, Action::Publish, target) {
                    return out.push(reply(session, &refused));
                }
                if let Err(refused) = self
                    .refuse_if_blocked(confirm)
                    .and_then(|()| self.confirm_room(session, confirm))
                {
                    return out.push(reply(session, &refused));
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
                if self.send(session, group, body, ordering, safe) {
                    self.sent(session, confirm, seq);
                }
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
                // Every group that exists now; later ones in `group_view`.
                self.every_group.insert((session, id));
                let mut all: Vec<String> = self.views.keys().cloned().collect();
                all.sort();
                all
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
                self.command(join);
            }
            if !self.joined.contains(&(session, g.clone())) {
                waiting.insert(g.clone());
            }
        }
        self.sub_groups.insert((session, id), groups);
        if waiting.is_empty() {
            out.push(self.subscribed(router, session, id));
        } else {
            self.pending.push(PendingSub {
                session,
                id,
                waiting,
            });
        }
    }

    /// The answer to an installed subscription: the current view of each
    /// group it reaches (whose views its user may see).
    fn subscribed(&self, router: &Router, session: SessionId, id: u64) -> Effect {
        let views = self
            .sub_groups
            .get(&(session, id))
            .into_iter()
            .flatten()
            .filter(|g| router.may_see_views(session, g))
            .filter_map(|g| self.views.get(g))
            .filter_map(|v| self.view_info(v, session))
            .collect();
        reply(session, &ServerMsg::Subscribed { id, views })
    }

    fn join(
        &mut self,
        router: &Router,
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
        let allowed = router
            .check(session, Some(id), Action::Join, Target::Group(&group))
            .and_then(|()| match state {
                true => router.check(session, Some(id), Action::JoinState, Target::Group(&group)),
                false => Ok(()),
            });
        if let Err(refused) = allowed {
            return out.push(reply(session, &refused));
        }
        let key = (session, group.clone());
        if self.explicit.contains_key(&key) {
            let reason = format!("already a member of group {group:?}");
            return out.push(reply(session, &refuse(reason)));
        }
        if state && self.refs.contains_key(&key) {
            // The session's membership (through a subscription) keeps no
            // state and would never get a checkpoint.
            let reason = format!(
                "this session is already a member of group {group:?} through a subscription, \
                 without state: join with state from another session, or before subscribing"
            );
            return out.push(reply(session, &refuse(reason)));
        }
        let installed = self.joined.contains(&key);
        self.joins_changed(session, true);
        self.explicit.insert(
            key.clone(),
            Explicit {
                id,
                installed,
                state,
            },
        );
        let n = self.refs.entry(key).or_default();
        *n += 1;
        if *n == 1 {
            let join = ClientCmd::Join {
                session,
                group: group.clone(),
                state,
            };
            self.command(join);
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
            view: self.names.view(view.id),
            members: self.names.members(&view.members),
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
            self.member_since.remove(&key);
            self.leaving.insert(key.clone());
            let (session, group) = key;
            self.command(ClientCmd::Leave { session, group });
        }
    }

    /// Counts an explicit join of `session` added (`true`) or removed.
    fn joins_changed(&mut self, session: SessionId, added: bool) {
        let n = self.join_counts.entry(session).or_default();
        if added {
            *n += 1;
        } else {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.join_counts.remove(&session);
            }
        }
    }

    /// Refuses a new subscription, tap or join (request `id`) of `session`
    /// when its subscriptions and explicit joins together already reach
    /// `limits.max_subscriptions_per_session`.
    fn membership_room(
        &self,
        router: &Router,
        session: SessionId,
        id: u64,
    ) -> Result<(), ServerMsg> {
        let subs = router.subscriptions_of(session);
        let joins = self.join_counts.get(&session).copied().unwrap_or(0);
        let max = router.max_subscriptions_per_session();
        if subs + joins < max {
            return Ok(());
        }
        Err(ServerMsg::Rejected {
            id: Some(id),
            code: RejectCode::LimitReached,
            reason: format!(
                "the session already holds {subs} subscriptions and {joins} group joins \
                 (limits.max_subscriptions_per_session = {max})"
            ),
        })
    }

    /// Refuses a publish or multicast while this broker is blocked (cut
    /// off from the primary component): it would be confirmed `ok` and
    /// then never be delivered by the primary component.
    fn refuse_if_blocked(&self, confirm: Option<u64>) -> Result<(), ServerMsg> {
        if !self.status.blocked {
            return Ok(());
        }
        Err(ServerMsg::Rejected {
            id: confirm,
            code: RejectCode::Blocked,
            reason: "this broker is cut off from the primary component of the mesh (blocked): \
                     the message was not sent; publish again once it is back \
                     (MeshState { blocked: false } or Rejoined) or through another broker"
                .into(),
        })
    }

    /// Refuses a publish that asks for a confirmation when the session
    /// already awaits `max_confirms` of them.
    fn confirm_room(&self, session: SessionId, confirm: Option<u64>) -> Result<(), ServerMsg> {
        let waiting = self.confirms.get(&session).map_or(0, HashMap::len);
        if confirm.is_none() || waiting < self.max_confirms {
            return Ok(());
        }
        Err(ServerMsg::Rejected {
            id: confirm,
            code: RejectCode::LimitReached,
            reason: format!(
                "the session already awaits {waiting} confirmations \
                 (limits.max_pending_confirms)"
            ),
        })
    }

    /// A message was handed to the core: remember its confirmation until
    /// this broker delivers it (a `safe` one is then stable). Confirming on
    /// acceptance would say `ok` for a message that a broker cut off before
    /// sending it drops ([`Output::Unsent`]).
    fn sent(&mut self, session: SessionId, confirm: Option<u64>, seq: u64) {
        let Some(id) = confirm else { return };
        self.confirms.entry(session).or_default().insert(seq, id);
    }

    /// The core will never send this publish (its broker was cut off from
    /// the primary component): refuse it with `Blocked`, answering its
    /// confirmation if one is awaited (else the session's next flush sees
    /// it).
    fn unsent(&mut self, session: SessionId, payload: &Bytes, out: &mut Vec<Effect>) {
        let Ok(body) = wire::decode_body::<MeshPayload>("mesh payload", payload) else {
            return;
        };
        let id = self
            .confirms
            .get_mut(&session)
            .and_then(|c| c.remove(&body.seq));
        if self.confirms.get(&session).is_some_and(HashMap::is_empty) {
            self.confirms.remove(&session);
        }
        let msg = ServerMsg::Rejected {
            id,
            code: RejectCode::Blocked,
            reason: format!(
                "message {} on {} was not sent: this broker was cut off from the primary \
                 component of the mesh before sending it; publish it again",
                body.seq, body.topic
            ),
        };
        out.push(reply(session, &msg));
    }

    fn publish(
        &mut self,
        router: &mut Router,
        session: SessionId,
        p: Publish,
        out: &mut Vec<Effect>,
    ) {
        // Checked before numbering, so a refusal leaves no gap in `seq`.
        if let Err(refused) = self
            .refuse_if_blocked(p.confirm)
            .and_then(|()| self.confirm_room(session, p.confirm))
        {
            return out.push(reply(session, &refused));
        }
        let (topic, seq) = match router.accept_publish(session, &p) {
            Ok(t) => t,
            Err(rejected) => return out.push(reply(session, &rejected)),
        };
        let group = self.groups.group_of(&topic).to_string();
        let (confirm, safe) = (p.confirm, p.safe);
        let body = MeshPayload {
            topic: p.topic,
            seq,
            payload: p.payload,
            reply_to: p.reply_to,
        };
        if self.send(session, group, body, p.ordering, safe) {
            self.sent(session, confirm, seq);
        }
    }

    /// Hands one message for `group` to the core (behind any commands that
    /// wait for room); false only if it cannot be encoded.
    fn send(
        &mut self,
        session: SessionId,
        group: String,
        body: MeshPayload,
        ordering: Ordering,
        safe: bool,
    ) -> bool {
        let payload = match wire::frame("mesh payload", &body) {
            Ok(f) => f.slice(wire::LEN_PREFIX..),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a mesh payload");
                return false;
            }
        };
        let cmd = ClientCmd::Publish {
            session,
            group,
            ordering: to_protocol(ordering),
            safe,
            payload,
        };
        self.command(cmd);
        true
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
            self.command(ClientCmd::Leave { session, group });
        }
        self.sub_groups.retain(|(s, _), _| *s != session);
        self.every_group.retain(|(s, _)| *s != session);
        self.taps.retain(|(s, _)| *s != session);
        self.awaiting_state.retain(|(s, _), _| *s != session);
        self.releasing.retain(|(s, _), _| *s != session);
        self.leaving.retain(|(s, _)| *s != session);
        self.member_since.retain(|(s, _), _| *s != session);
        self.pending.retain(|p| p.session != session);
        self.explicit.retain(|(s, _), _| *s != session);
        self.join_counts.remove(&session);
        self.transfers.retain(|(s, _), _| *s != session);
        self.confirms.remove(&session);
    }

    /// Applies one output of the protocol core.
    pub(crate) fn output(&mut self, router: &mut Router, output: Output, out: &mut Vec<Effect>) {
        if tracing::enabled!(tracing::Level::TRACE) {
            trace_output(&output);
        }
        match output {
            Output::Deliver(d) => self.deliver(router, d, out),
            Output::GroupView(gv) => {
                // A withdrawn join is the membership the client left, not
                // a later join of the same session: it ends with the leave.
                let current = |m: &&MemberId| m.broker.name == self.me && !gv.withdrawn.contains(m);
                let with_state: Vec<SessionId> = gv
                    .with_state
                    .iter()
                    .filter(current)
                    .map(|m| m.session)
                    .collect();
                let group = gv.view.group.clone();
                let joined: Vec<SessionId> = gv
                    .joined
                    .iter()
                    .filter(current)
                    .map(|m| m.session)
                    .collect();
                self.log_group_view(&gv);
                self.group_view(router, gv.view, &joined, out);
                for session in with_state {
                    self.awaiting_state
                        .entry((session, group.clone()))
                        .or_default();
                }
            }
            Output::StateRequest { transfer, provider } => {
                let member = (provider.session, transfer.group.clone());
                let old_membership =
                    self.leaving.contains(&member) || !self.member_since.contains_key(&member);
                if provider.broker.name == self.me && old_membership {
                    // The member left (its client has no state to give any
                    // more; a new join of the session is another member,
                    // not installed yet): no answer. Once the core applies
                    // the leave, it asks another provider (an empty
                    // checkpoint would be wrong; fault seed 1 after the
                    // core began to say when it takes a leave).
                    tracing::debug!(group = %transfer.group, session = provider.session,
                        "state request for a member that left: left to the leave");
                } else if provider.broker.name == self.me && self.explicit.contains_key(&member) {
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
                    self.command(ClientCmd::StateReply {
                        transfer,
                        data: Vec::new(),
                    });
                }
            }
            Output::StateDelivered { transfer, data } => {
                let key = (transfer.joiner.session, transfer.group.clone());
                let current = self
                    .member_since
                    .get(&key)
                    .is_some_and(|since| *since <= transfer.view);
                if transfer.joiner.broker.name == self.me
                    && (self.leaving.contains(&key) || !current)
                {
                    // The checkpoint of a membership that left meanwhile
                    // (or whose join was withdrawn), not of a new join of
                    // the same session.
                    return;
                }
                if transfer.joiner.broker.name == self.me {
                    if let Some(mut held) = self.awaiting_state.remove(&key) {
                        // Views up to the transfer's join point come before
                        // the checkpoint (a re-based transfer's point is a
                        // later view than the one it joined in).
                        let n = held.iter().take_while(|(v, _)| *v <= transfer.view).count();
                        out.extend(held.drain(..n).map(|(_, e)| e));
                        self.releasing.insert(key.clone(), held);
                    }
                }
                // Only a member that joined with state wants checkpoints (a
                // member only through subscriptions may still be asked when a
                // group has no member with state).
                let wants = self.explicit.get(&key).is_some_and(|e| e.state);
                if transfer.joiner.broker.name == self.me && wants {
                    let msg = ServerMsg::State {
                        group: transfer.group,
                        data: data.map(Bytes::from),
                    };
                    out.push(reply(transfer.joiner.session, &msg));
                }
            }
            Output::MeshView(v) => {
                self.log_mesh_view(&v);
                let members = v.members.iter().map(|m| self.names.node(*m)).collect();
                self.status.view = Some((self.names.view(v.id), members));
                if let Some(me) = v.members.iter().find(|m| m.name == self.me) {
                    self.status.node = Some(self.names.node(*me));
                    self.status.incarnation = Some(me.incarnation);
                }
                if self
                    .rejoin
                    .as_ref()
                    .is_some_and(|(new, _)| v.members.contains(new))
                {
                    self.rejoined(router, out);
                }
            }
            Output::Blocked => {
                super::telemetry::blocked(true);
                tracing::warn!(
                    node = %self.status.node.clone().unwrap_or_default(),
                    view = %self.status.view.as_ref().map_or("", |v| v.0.as_str()),
                    "blocked: this broker lost the primary component (a majority of its mesh \
                     view no longer confirms it); it delivers nothing and refuses publishes \
                     until it is back"
                );
                self.status.blocked = true;
                self.release_all(out);
                out.extend(tell_everyone(
                    router,
                    &ServerMsg::MeshState { blocked: true },
                ));
            }
            Output::Unblocked => {
                super::telemetry::blocked(false);
                tracing::warn!(
                    node = %self.status.node.clone().unwrap_or_default(),
                    "unblocked: this broker is in the primary component again"
                );
                self.status.blocked = false;
                self.release_all(out);
                out.extend(tell_everyone(
                    router,
                    &ServerMsg::MeshState { blocked: false },
                ));
            }
            Output::Rejoining { old, new } => self.rejoining(router, old, new, out),
            Output::LeaveTaken { session, group } => {
                self.leaving.remove(&(session, group));
            }
            Output::Unsent {
                session, payload, ..
            } => self.unsent(session, &payload, out),
            Output::Expelled {
                group,
                member,
                reason,
            } => self.expelled(group, member, reason, out),
            other => tracing::debug!(?other, "protocol output not used yet"),
        }
    }

    /// Logs a new group view at debug (a client joining or leaving is
    /// routine), with who joined and left, and counts it.
    fn log_group_view(&self, gv: &meshcast_protocol::GroupViewChange) {
        let before = self.views.get(&gv.view.group).map(|v| v.members.as_slice());
        let left: Vec<String> = before
            .unwrap_or_default()
            .iter()
            .filter(|m| !gv.view.members.contains(m))
            .map(|m| self.names.member(*m))
            .collect();
        let cause = if gv.joined.is_empty() {
            "leave"
        } else {
            "join"
        };
        super::telemetry::group_view_change(&gv.view.group, cause);
        tracing::debug!(
            group = %gv.view.group,
            view = %self.names.view(gv.view.id),
            members = gv.view.members.len(),
            joined = %self.names.members(&gv.joined).join(","),
            left = %left.join(","),
            "group view installed"
        );
    }

    /// Logs a new mesh view: at info (warn when brokers left) only when its
    /// brokers changed, naming who left (and why, as far as this broker
    /// knows) and who joined; a new view with the same brokers (a view
    /// change for group membership) only at debug.
    fn log_mesh_view(&mut self, v: &meshcast_protocol::MeshView) {
        let id = self.names.view(v.id);
        let members: Vec<String> = v.members.iter().map(|m| self.names.node(*m)).collect();
        let members = members.join(",");
        if self.last_mesh == v.members {
            tracing::debug!(view = %id, %members, "mesh view installed (same brokers)");
            return;
        }
        let first = self.last_mesh.is_empty();
        let left: Vec<meshcast_protocol::NodeId> = self
            .last_mesh
            .iter()
            .filter(|m| !v.members.contains(m))
            .copied()
            .collect();
        let joined: Vec<meshcast_protocol::NodeId> = v
            .members
            .iter()
            .filter(|m| !self.last_mesh.contains(m))
            .copied()
            .collect();
        self.last_mesh = v.members.clone();
        if first {
            tracing::info!(view = %id, %members, "mesh view installed");
            return;
        }
        let mut why_left = Vec::new();
        for m in &left {
            let cause = if joined.iter().any(|j| j.name == m.name) {
                super::telemetry::view_change("restart");
                "restarted or rejoined: a new incarnation replaced it".to_string()
            } else {
                super::telemetry::view_change("leave");
                match self.names.down_reason(m.name) {
                    Some(r) => format!("its link went down: {r}"),
                    None => "suspected: not heard from within mesh.suspect_timeout_ms, \
                             or excluded by the others"
                        .to_string(),
                }
            };
            why_left.push(format!("{} ({cause})", self.names.node_exact(*m)));
        }
        let new: Vec<String> = joined
            .iter()
            .filter(|j| !left.iter().any(|m| m.name == j.name))
            .map(|j| {
                super::telemetry::view_change("join");
                self.names.node(*j)
            })
            .collect();
        let joined: Vec<String> = joined.iter().map(|j| self.names.node_exact(*j)).collect();
        if left.is_empty() {
            tracing::info!(
                view = %id,
                %members,
                joined = %joined.join(", "),
                "mesh view installed: {} joined",
                new.join(", ")
            );
        } else {
            let gone: Vec<String> = left.iter().map(|m| self.names.broker(m.name)).collect();
            tracing::warn!(
                view = %id,
                %members,
                left = %why_left.join("; "),
                joined = %joined.join(", "),
                "mesh view installed: {} left",
                gone.join(", ")
            );
        }
    }

    /// A delivery: to explicit members as a group message, to subscriptions
    /// whose pattern matches its topic, and to its publisher as the
    /// stability confirmation it may await.
    fn deliver(&mut self, router: &mut Router, d: CoreDelivery, out: &mut Vec<Effect>) {
        // Few per message: a sorted vector beats hashing.
        let mut sessions: Vec<SessionId> = d
            .targets
            .iter()
            .filter(|m| m.broker.name == self.me)
            .map(|m| m.session)
            .collect();
        sessions.sort_unstable();
        sessions.dedup();
        // A message of a local publisher that awaits its confirmation
        // (deferred copies were reported before).
        let awaiting = (d.publisher.broker.name == self.me && !d.deferred)
            .then_some(d.publisher.session)
            .filter(|s| self.confirms.get(s).is_some_and(|c| !c.is_empty()));
        let everything: Vec<SessionId> = self
            .every_group
            .iter()
            .chain(&self.taps)
            .map(|(s, _)| *s)
            .collect();
        if sessions.is_empty() && everything.is_empty() && awaiting.is_none() {
            return;
        }
        self.release_views(&sessions, &d.group, d.view, out);
        let body: MeshPayload = match wire::decode_body("mesh payload", &d.payload) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, group = %d.group, "undecodable mesh payload");
                return;
            }
        };
        let confirmed = awaiting.and_then(|s| {
            let pending = self.confirms.get_mut(&s)?;
            let id = pending.remove(&body.seq)?;
            if pending.is_empty() {
                self.confirms.remove(&s);
            }
            Some((s, id, d.pub_seq))
        });
        let publisher = publisher_id(d.publisher);
        let ordering = from_protocol(d.ordering);
        let handed = out.len();
        let payload_len = body.payload.len();
        // Members that joined the group explicitly get every message: every
        // multicast, and every publish on a topic its user may read. (A
        // multicast has no topic; the topic is parsed once, here.)
        let topic = (!body.topic.is_empty())
            .then(|| Topic::new(body.topic.as_str()).ok())
            .flatten();
        let mut members: Vec<(SessionId, u64)> = sessions
            .iter()
            .filter(|s| {
                self.explicit
                    .get(&(**s, d.group.clone()))
                    .is_some_and(|e| e.installed)
            })
            .filter(|s| topic.as_ref().is_none_or(|t| router.may_read(**s, t)))
            .map(|s| (*s, 0))
            .collect();
        if !members.is_empty() {
            members.sort_unstable();
            let msg = ServerMsg::GroupMessage(GroupDelivery {
                group: d.group.clone(),
                publisher,
                seq: d.pub_seq,
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
        if let Some(topic) = topic {
            let delivery = Delivery {
                topic: body.topic,
                publisher,
                seq: d.pub_seq,
                ordering,
                safe: d.safe,
                payload: body.payload,
                reply_to: body.reply_to,
            };
            out.extend(router.fanout(&topic, delivery, |s| {
                sessions.contains(&s) || (!d.deferred && everything.contains(&s))
            }));
        }
        let copies = super::core::fanout_copies(&out[handed..]);
        super::telemetry::delivered(&d.group, copies, payload_len);
        // After the message itself, so a publisher that also receives it
        // sees it before the confirmation.
        if let Some((session, id, seq)) = confirmed {
            let msg = ServerMsg::Confirmed {
                id,
                seq,
                stable: d.safe,
            };
            out.push(reply(session, &msg));
        }
    }

    /// A new view of a group: every local member session is told, in the
    /// core's output order (a pending explicit join gets `Joined`, others
    /// `GroupView`), then subscriptions waiting for it are answered.
    /// The core's batch of outputs is over: views held for members whose
    /// checkpoint came in it go out now (after every held-back delivery).
    pub(crate) fn end_of_batch(&mut self, out: &mut Vec<Effect>) {
        self.release_all(out);
    }

    /// Hands out every view held for a member whose checkpoint came: they
    /// were installed before whatever comes next (a mesh event included).
    fn release_all(&mut self, out: &mut Vec<Effect>) {
        for (_, held) in self.releasing.drain() {
            out.extend(held.into_iter().map(|(_, e)| e));
        }
    }

    /// Before a held-back delivery ordered in `view` reaches `sessions`,
    /// the views they were held at up to `view`.
    fn release_views(
        &mut self,
        sessions: &[SessionId],
        group: &str,
        view: ViewId,
        out: &mut Vec<Effect>,
    ) {
        if self.releasing.is_empty() {
            return;
        }
        for s in sessions {
            if let Some(held) = self.releasing.get_mut(&(*s, group.to_string())) {
                let n = held.iter().take_while(|(v, _)| *v <= view).count();
                out.extend(held.drain(..n).map(|(_, e)| e));
            }
        }
    }

    fn group_view(
        &mut self,
        router: &Router,
        view: GroupView,
        joined: &[SessionId],
        out: &mut Vec<Effect>,
    ) {
        let group = view.group.clone();
        let local: Vec<SessionId> = view
            .members
            .iter()
            .filter(|m| m.broker.name == self.me)
            .map(|m| m.session)
            .collect();
        self.joined
            .retain(|(s, g)| *g != group || local.contains(s));
        for session in &local {
            let key = (*session, group.clone());
            let reported = joined.contains(session) && !self.leaving.contains(&key);
            // A session that left meanwhile is not told.
            if !self.refs.contains_key(&key) {
                continue;
            }
            if reported {
                self.member_since.insert(key.clone(), view.id);
            } else if self.leaving.contains(&key) || !self.member_since.contains_key(&key) {
                // The old membership, still there until its leave is
                // applied, or a join its client withdrew: not the
                // session's new join (if it joined again), which starts in
                // the view reporting it joined (fault seeds 3 and 53).
                continue;
            }
            self.joined.insert(key.clone());
            let Some(info) = self.view_info(&view, *session) else {
                continue;
            };
            let msg = match self.explicit.get_mut(&key) {
                Some(e) if !e.installed => {
                    e.installed = true;
                    ServerMsg::Joined {
                        id: e.id,
                        view: info,
                    }
                }
                Some(_) => ServerMsg::GroupView(info),
                // A member through its subscriptions only: the view lists
                // the group's members, which its user may not be allowed
                // to see.
                None if !router.may_see_views(*session, &group) => continue,
                None => ServerMsg::GroupView(info),
            };
            // Views held until its checkpoint came (in this batch of core
            // outputs) and not released yet come before this one.
            if let Some(held) = self.releasing.remove(&key) {
                out.extend(held.into_iter().map(|(_, e)| e));
            }
            match self.awaiting_state.get_mut(&key) {
                // Waiting for its checkpoint: this view comes after the
                // deliveries held back with it.
                Some(held) => held.push((view.id, reply(*session, &msg))),
                None => out.push(reply(*session, &msg)),
            }
        }
        // A group with no members left is forgotten (groups come and go).
        if view.members.is_empty() {
            self.views.remove(&group);
        } else {
            let new = self.views.insert(group.clone(), view).is_none();
            if new {
                self.join_every_group_subs(&group);
            }
        }
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
            out.push(self.subscribed(router, session, id));
        }
    }

    /// A group got its first view here: subscriptions reaching every group
    /// join it too.
    fn join_every_group_subs(&mut self, group: &str) {
        let subs: Vec<(SessionId, u64)> = self.every_group.iter().copied().collect();
        for (session, id) in subs {
            let Some(groups) = self.sub_groups.get_mut(&(session, id)) else {
                continue;
            };
            if groups.iter().any(|g| g == group) {
                continue;
            }
            groups.push(group.to_string());
            let n = self.refs.entry((session, group.to_string())).or_default();
            *n += 1;
            if *n == 1 {
                self.command(ClientCmd::Join {
                    session,
                    group: group.to_string(),
                    state: false,
                });
            }
        }
    }

    /// This broker was cut off from the primary component and rejoins as a
    /// new incarnation; the core re-joins its members itself.
    fn rejoining(
        &mut self,
        router: &Router,
        old: meshcast_protocol::NodeId,
        new: meshcast_protocol::NodeId,
        out: &mut Vec<Effect>,
    ) {
        tracing::warn!(
            old = %self.names.node_exact(old),
            new = %self.names.node_exact(new),
            "cut off from the primary component: rejoining the mesh as a new incarnation, \
             members rejoin with state transfer"
        );
        self.status.node = Some(self.names.node(new));
        self.status.incarnation = Some(new.incarnation);
        self.incarnation = new.incarnation;
        // Every session open now had its memberships and publisher id under
        // the old incarnation: each is told `Rejoined` once the new one is
        // admitted (sessions opened later start under the new one).
        self.rejoin = Some((new, router.session_ids()));
        // No membership of the old incarnation is installed any more, and
        // the checkpoints its joiners awaited will never come: the views
        // held for them are dropped (the rejoined member gets a new view
        // and a fresh checkpoint instead).
        self.joined.clear();
        // (`leaving` stays: the core takes each leave in order, before or
        // after this rejoin, and says so.)
        self.member_since.clear();
        self.awaiting_state.clear();
        // Whether a `safe` message not yet stable here reaches the others
        // is decided by the primary component, out of sight: say so rather
        // than leave the publisher waiting.
        let reason = "its broker was cut off from the primary component before the message \
                      was stable: it may or may not be delivered";
        let mut confirms: Vec<(SessionId, u64)> = self
            .confirms
            .drain()
            .flat_map(|(s, c)| c.into_values().map(move |id| (s, id)))
            .collect();
        confirms.sort_unstable();
        for (session, id) in confirms {
            let msg = ServerMsg::Rejected {
                id: Some(id),
                code: RejectCode::OutcomeUnknown,
                reason: reason.to_string(),
            };
            out.push(reply(session, &msg));
        }
    }

    /// The mesh view admitting this broker's new incarnation is installed:
    /// every session open under the old one is told, before the group
    /// views of the new incarnation that follow in the core's order.
    fn rejoined(&mut self, router: &Router, out: &mut Vec<Effect>) {
        let Some((new, sessions)) = self.rejoin.take() else {
            return;
        };
        self.release_all(out);
        let open = router.session_ids();
        // Both sorted: `session_ids` sorts.
        for session in sessions
            .into_iter()
            .filter(|s| open.binary_search(s).is_ok())
        {
            let member = MemberId {
                broker: new,
                session,
            };
            let msg = ServerMsg::Rejoined {
                incarnation: new.incarnation,
                publisher: publisher_id(member),
                member: self.names.member(member),
            };
            out.push(reply(session, &msg));
        }
    }

    fn expelled(
        &mut self,
        group: String,
        member: MemberId,
        reason: ExpelReason,
        out: &mut Vec<Effect>,
    ) {
        super::telemetry::expelled(match reason {
            ExpelReason::Slow => "slow",
            ExpelReason::TransferFailed => "transfer_failed",
            ExpelReason::Partitioned => "partitioned",
        });
        tracing::warn!(%group, member = %self.names.member(member), ?reason, "member expelled");
        if member.broker.name != self.me {
            return;
        }
        let key = (member.session, group.clone());
        self.joined.remove(&key);
        let reason = match reason {
            // The core re-joins the member under the broker's new
            // incarnation: the membership goes on after the heal.
            ExpelReason::Partitioned => return,
            ExpelReason::Slow => "slow: its delivery queue stayed full",
            ExpelReason::TransferFailed => "transfer failed: no checkpoint arrived in time",
        };
        self.awaiting_state.remove(&key);
        self.releasing.remove(&key);
        self.member_since.remove(&key);
        if self.explicit.remove(&key).is_some() {
            self.joins_changed(member.session, false);
        }
        if self.refs.remove(&key).is_some() {
            // The client ends the membership and every subscription that
            // reaches the group, with this reason.
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

/// Traces a protocol output that concerns group members (for post-mortems
/// of membership and state-transfer problems).
fn trace_output(o: &Output) {
    match o {
        // Deliveries only at their own target (there are many).
        Output::Deliver(d) => tracing::trace!(
            target: "meshcast_broker::node::bridge::deliveries",
            group = %d.group, view = %d.view, id = ?d.id, targets = ?d.targets,
            deferred = d.deferred, "deliver"
        ),
        Output::GroupView(gv) => tracing::trace!(
            group = %gv.view.group, view = %gv.view.id, members = ?gv.view.members,
            joined = ?gv.joined, with_state = ?gv.with_state, "group view"
        ),
        Output::StateRequest { transfer, provider } => {
            tracing::trace!(?transfer, %provider, "state request")
        }
        Output::StateDelivered { transfer, data } => tracing::trace!(
            ?transfer,
            bytes = data.as_ref().map(Vec::len),
            "state delivered"
        ),
        Output::Send { .. } => {}
        o => tracing::trace!(output = ?o, "protocol output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::RouterLimits;
    use meshcast_protocol::{GroupViewChange, MsgId, NodeId, ViewId};

    const ME: u32 = 7;

    struct T {
        bridge: Bridge,
        router: Router,
        cmds: mpsc::Receiver<ClientCmd>,
        /// Each group's members in the last view output, to report new
        /// members as joined the way the core does.
        members: HashMap<String, Vec<MemberId>>,
    }

    fn setup(max_confirms: usize) -> T {
        let (tx, cmds) = mpsc::channel(64);
        let groups = GroupMap::new(Vec::new()).unwrap();
        let mut router = Router::new(RouterLimits {
            max_payload_bytes: 1024,
            max_subscriptions_per_session: 8,
            match_cache_entries: 16,
        });
        for s in [1, 2] {
            router.open(s);
        }
        T {
            bridge: Bridge::new(tx, ME, 1, groups, max_confirms, Names::default()),
            router,
            cmds,
            members: HashMap::new(),
        }
    }

    fn node(incarnation: u64) -> NodeId {
        NodeId::new(ME, incarnation)
    }

    fn member(incarnation: u64, session: u64) -> MemberId {
        MemberId {
            broker: node(incarnation),
            session,
        }
    }

    fn view(counter: u64, group: &str, members: Vec<MemberId>) -> Output {
        Output::GroupView(GroupViewChange {
            view: GroupView {
                group: group.into(),
                id: ViewId {
                    counter,
                    coordinator: node(1),
                },
                members,
            },
            joined: Vec::new(),
            with_state: Vec::new(),
            withdrawn: Vec::new(),
        })
    }

    /// The messages each effect sends, with their sessions.
    fn sent(out: &mut Vec<Effect>) -> Vec<(SessionId, ServerMsg)> {
        out.drain(..)
            .flat_map(|e| match e {
                Effect::Reply { session, frame } => {
                    vec![(session, client_proto::decode_server(&frame[4..]).unwrap())]
                }
                Effect::Fanout { frame, targets } => {
                    let msg = client_proto::decode_server(&frame[4..]).unwrap();
                    targets.iter().map(|(s, _)| (*s, msg.clone())).collect()
                }
            })
            .collect()
    }

    impl T {
        fn client(&mut self, session: SessionId, msg: ClientMsg) -> Vec<(SessionId, ServerMsg)> {
            let mut out = Vec::new();
            self.bridge.client(&mut self.router, session, msg, &mut out);
            sent(&mut out)
        }

        /// Hands the bridge one core output, with the core's joins (see
        /// [`T::joins`]).
        fn output(&mut self, o: Output) -> Vec<(SessionId, ServerMsg)> {
            let o = self.joins(o);
            let mut out = Vec::new();
            self.bridge.output(&mut self.router, o, &mut out);
            sent(&mut out)
        }

        /// A group view that reports no joins gets the core's: members
        /// not in the group's last view (tests that mean a leave-and-join
        /// say so themselves).
        fn joins(&mut self, mut o: Output) -> Output {
            if let Output::GroupView(gv) = &mut o {
                let before = self.members.entry(gv.view.group.clone()).or_default();
                if gv.joined.is_empty() {
                    gv.joined = gv
                        .view
                        .members
                        .iter()
                        .filter(|m| !before.contains(m))
                        .copied()
                        .collect();
                }
                *before = gv.view.members.clone();
            }
            o
        }

        /// The payload the last `ClientCmd::Publish` carried.
        fn published(&mut self) -> Bytes {
            let mut last = None;
            while let Ok(cmd) = self.cmds.try_recv() {
                if let ClientCmd::Publish { payload, .. } = cmd {
                    last = Some(payload);
                }
            }
            last.expect("nothing was published")
        }
    }

    fn publish(topic: &str, safe: bool, confirm: Option<u64>) -> ClientMsg {
        ClientMsg::Publish(Publish {
            topic: topic.into(),
            ordering: Ordering::Total,
            safe,
            payload: Bytes::from_static(b"x"),
            reply_to: None,
            confirm,
        })
    }

    fn delivered(payload: Bytes, publisher: MemberId, targets: Vec<MemberId>) -> Output {
        delivered_as(payload, publisher, targets, true, 1)
    }

    fn delivered_as(
        payload: Bytes,
        publisher: MemberId,
        targets: Vec<MemberId>,
        safe: bool,
        pub_seq: u64,
    ) -> Output {
        Output::Deliver(CoreDelivery {
            group: "a".into(),
            view: ViewId {
                counter: 2,
                coordinator: node(1),
            },
            id: MsgId {
                origin: node(1),
                seq: 1,
            },
            publisher,
            pub_seq,
            ordering: meshcast_protocol::Ordering::Total,
            safe,
            payload,
            targets,
            deferred: false,
        })
    }

    /// `limits.max_subscriptions_per_session` (8 here) bounds a session's
    /// subscriptions, taps and explicit joins together; a refusal is
    /// `LimitReached` naming the key, the session keeps what it has, and a
    /// leave makes room again. Another session is not affected.
    #[test]
    fn subscriptions_and_joins_share_the_per_session_limit() {
        let mut t = setup(8);
        let join = |id, g: &str| ClientMsg::Join {
            id,
            group: g.into(),
            state: false,
        };
        for i in 0..4 {
            t.client(
                1,
                ClientMsg::Subscribe {
                    id: i,
                    pattern: format!("s{i}/**"),
                },
            );
        }
        t.client(
            1,
            ClientMsg::Tap {
                id: 4,
                pattern: "tap/**".into(),
            },
        );
        for i in 5..8 {
            t.client(1, join(i, &format!("g{i}")));
        }
        let limit_reached = |got: &[(SessionId, ServerMsg)], want: u64| match got {
            [
                (
                    1,
                    ServerMsg::Rejected {
                        id: Some(id),
                        code: RejectCode::LimitReached,
                        reason,
                    },
                ),
            ] => {
                assert_eq!(*id, want);
                assert!(
                    reason.contains("4 subscriptions and 3 group joins")
                        || reason.contains("5 subscriptions and 3 group joins"),
                    "{reason}"
                );
                assert!(
                    reason.contains("limits.max_subscriptions_per_session = 8"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        };
        // 5 subscriptions (the tap included) + 3 joins = 8.
        let got = t.client(1, join(8, "g8"));
        limit_reached(&got, 8);
        let got = t.client(
            1,
            ClientMsg::Subscribe {
                id: 9,
                pattern: "more/**".into(),
            },
        );
        limit_reached(&got, 9);
        // Session 2 is not affected.
        assert!(t.client(2, join(1, "g8")).is_empty());
        // A leave makes room for one more join.
        let got = t.client(
            1,
            ClientMsg::Leave {
                id: 10,
                group: "g5".into(),
            },
        );
        assert!(
            matches!(&got[..], [(1, ServerMsg::Left { id: 10 })]),
            "{got:?}"
        );
        assert!(t.client(1, join(11, "g8")).is_empty());
        let got = t.client(1, join(12, "g9"));
        assert!(
            matches!(
                &got[..],
                [(
                    1,
                    ServerMsg::Rejected {
                        id: Some(12),
                        code: RejectCode::LimitReached,
                        ..
                    }
                )]
            ),
            "{got:?}"
        );
        // Closing the session forgets its joins.
        t.bridge.close(1);
        assert!(!t.bridge.join_counts.contains_key(&1));
    }

    /// A member that leaves and joins again at once (the same session) is
    /// a new membership: a view that still lists the old one (its leave
    /// not applied yet) neither answers the new join nor reaches it; the
    /// view that reports it joined does. Seen with real brokers: the new
    /// join was answered with the old membership's view and got its
    /// messages, then a checkpoint that already held them.
    #[test]
    fn a_join_after_a_leave_starts_with_the_view_that_reports_it_joined() {
        let mut t = setup(8);
        let join = join_with_state;
        assert!(t.client(2, join(1)).is_empty());
        let got = t.output(view(2, "a", vec![member(1, 2)]));
        assert!(
            matches!(&got[..], [(2, ServerMsg::Joined { id: 1, .. })]),
            "{got:?}"
        );
        let got = t.client(
            2,
            ClientMsg::Leave {
                id: 2,
                group: "a".into(),
            },
        );
        assert!(
            matches!(&got[..], [(2, ServerMsg::Left { id: 2 })]),
            "{got:?}"
        );
        assert!(t.client(2, join(3)).is_empty());
        // The core takes the leave (it has not applied it yet).
        assert!(t.output(leave_taken(2, "a")).is_empty());
        // A view change that did not apply the leave yet.
        let got = t.output(view(3, "a", vec![member(1, 2), member(1, 7)]));
        assert!(
            got.is_empty(),
            "the old membership's view reached the new join: {got:?}"
        );
        let got = t.output(delivered(
            Bytes::from_static(b"old"),
            member(1, 7),
            vec![member(1, 2)],
        ));
        assert!(
            !got.iter()
                .any(|(s, m)| *s == 2 && matches!(m, ServerMsg::GroupMessage(_))),
            "a message of the old membership reached the new join: {got:?}"
        );
        // The old membership is asked for a checkpoint, or gets one: the
        // new join has nothing to do with either (the core asks another
        // provider once the leave is applied).
        let transfer = TransferId {
            group: "a".into(),
            joiner: member(1, 2),
            view: ViewId {
                counter: 3,
                coordinator: node(1),
            },
        };
        while t.cmds.try_recv().is_ok() {}
        let asked = t.output(Output::StateRequest {
            transfer: transfer.clone(),
            provider: member(1, 2),
        });
        assert!(asked.is_empty(), "{asked:?}");
        assert!(
            t.cmds.try_recv().is_err(),
            "a state request of the old membership was answered"
        );
        let got = t.output(Output::StateDelivered {
            transfer,
            data: Some(b"old".to_vec()),
        });
        assert!(
            got.is_empty(),
            "the old membership's checkpoint reached the new join: {got:?}"
        );
        // The view that applied the leave and the join.
        let Output::GroupView(mut gv) = view(4, "a", vec![member(1, 7), member(1, 2)]) else {
            unreachable!()
        };
        gv.joined = vec![member(1, 2)];
        let got = t.output(Output::GroupView(gv));
        assert!(
            matches!(&got[..], [(2, ServerMsg::Joined { id: 3, .. })]),
            "{got:?}"
        );
    }

    /// Fault seed 172: a join the coordinator had collected before the
    /// client left (here the core's re-join after a partition) is applied
    /// in a view after the leave; the core reports it as `withdrawn`. That
    /// view and its checkpoint belong to the membership the client left:
    /// the session's new join starts with the later view that applies the
    /// leave and the new join, and gets exactly one checkpoint (it got the
    /// withdrawn join's view and checkpoint, then a second checkpoint).
    #[test]
    fn a_withdrawn_join_is_not_the_session_s_new_membership() {
        let mut t = setup(8);
        let join = join_with_state;
        let joined_view = |counter, withdrawn: bool| {
            let Output::GroupView(mut gv) = view(counter, "a", vec![member(1, 7), member(1, 2)])
            else {
                unreachable!()
            };
            gv.joined = vec![member(1, 2)];
            gv.with_state = vec![member(1, 2)];
            if withdrawn {
                gv.withdrawn = vec![member(1, 2)];
            }
            Output::GroupView(gv)
        };
        let checkpoint = |counter, data: &[u8]| state_of(member(1, 2), counter, data);
        assert!(t.client(2, join(1)).is_empty());
        let got = t.client(
            2,
            ClientMsg::Leave {
                id: 2,
                group: "a".into(),
            },
        );
        assert!(
            matches!(&got[..], [(2, ServerMsg::Left { id: 2 })]),
            "{got:?}"
        );
        assert!(t.client(2, join(3)).is_empty());
        assert!(t.output(leave_taken(2, "a")).is_empty());
        // The withdrawn join is applied: nothing for the session.
        let got = t.output(joined_view(3, true));
        assert!(
            got.is_empty(),
            "a withdrawn join answered the new one: {got:?}"
        );
        let got = t.output(checkpoint(3, b"old"));
        assert!(got.is_empty(), "the withdrawn join's checkpoint: {got:?}");
        // The view applying the leave and the new join, then its checkpoint.
        let got = t.output(joined_view(4, false));
        assert!(
            matches!(&got[..], [(2, ServerMsg::Joined { id: 3, .. })]),
            "{got:?}"
        );
        let got = t.output(checkpoint(4, b"new"));
        assert!(
            matches!(&got[..], [(2, ServerMsg::State { data: Some(d), .. })] if d == "new"),
            "{got:?}"
        );
    }

    /// Fault seed 53: the client left and joined again while its broker
    /// was cut off, before the bridge saw the core's rejoin; the core had
    /// queued a re-join of the old membership, which the coordinator
    /// applied although the leave withdrew it. Neither that view nor its
    /// checkpoint is the new join's (the bridge, which had forgotten the
    /// leave at the rejoin, answered the new join with them, and the
    /// client later got the new join's own checkpoint too).
    #[test]
    fn a_join_withdrawn_across_a_rejoin_does_not_answer_the_new_join() {
        let mut t = setup(8);
        let join = join_with_state;
        let checkpoint = |counter, data: &[u8]| state_of(member(2, 2), counter, data);
        assert!(t.client(2, join(1)).is_empty());
        let Output::GroupView(mut gv) = view(2, "a", vec![member(1, 2)]) else {
            unreachable!()
        };
        gv.with_state = vec![member(1, 2)];
        let got = t.output(Output::GroupView(gv));
        assert!(
            matches!(&got[..], [(2, ServerMsg::Joined { id: 1, .. })]),
            "{got:?}"
        );
        t.output(Output::Blocked);
        let got = t.client(
            2,
            ClientMsg::Leave {
                id: 2,
                group: "a".into(),
            },
        );
        assert!(
            matches!(&got[..], [(2, ServerMsg::Left { id: 2 })]),
            "{got:?}"
        );
        assert!(t.client(2, join(3)).is_empty());
        let mut got = t.output(Output::Rejoining {
            old: node(1),
            new: node(2),
        });
        got.extend(t.output(Output::Expelled {
            group: "a".into(),
            member: member(1, 2),
            reason: ExpelReason::Partitioned,
        }));
        got.extend(t.output(mesh_view(9, vec![NodeId::new(ME + 1, 1), node(2)])));
        got.extend(t.output(leave_taken(2, "a")));
        got.retain(|(_, m)| !matches!(m, ServerMsg::Rejoined { .. }));
        assert!(got.is_empty(), "{got:?}");
        // The withdrawn re-join of the old membership, and its checkpoint.
        let Output::GroupView(mut gv) = view(30, "a", vec![member(2, 2)]) else {
            unreachable!()
        };
        gv.joined = vec![member(2, 2)];
        gv.with_state = vec![member(2, 2)];
        gv.withdrawn = vec![member(2, 2)];
        let mut got = t.output(Output::GroupView(gv));
        got.extend(t.output(checkpoint(30, b"old")));
        assert!(
            got.is_empty(),
            "the withdrawn join answered the new one: {got:?}"
        );
        // The view applying the leave and the new join, then its checkpoint.
        let Output::GroupView(mut gv) = view(32, "a", vec![member(2, 2)]) else {
            unreachable!()
        };
        gv.joined = vec![member(2, 2)];
        gv.with_state = vec![member(2, 2)];
        let mut got = t.output(Output::GroupView(gv));
        got.extend(t.output(checkpoint(32, b"new")));
        assert!(
            matches!(&got[..], [
                (2, ServerMsg::Joined { id: 3, .. }),
                (2, ServerMsg::State { data: Some(d), .. }),
            ] if d == "new"),
            "{got:?}"
        );
    }

    /// Fault seed 186: as in seed 53, but the core applied the old
    /// membership's re-join before it took the leave, so it reports that
    /// join as an ordinary one. Until the core says it took the leave, a
    /// join it reports is one asked for before the leave.
    #[test]
    fn a_join_applied_before_the_core_took_the_leave_is_the_old_membership_s() {
        let mut t = setup(8);
        let join = join_with_state;
        let joined_at = |counter| {
            let Output::GroupView(mut gv) = view(counter, "a", vec![member(2, 2)]) else {
                unreachable!()
            };
            gv.joined = vec![member(2, 2)];
            gv.with_state = vec![member(2, 2)];
            Output::GroupView(gv)
        };
        let checkpoint = |counter, data: &[u8]| state_of(member(2, 2), counter, data);
        assert!(t.client(2, join(1)).is_empty());
        t.output(view(2, "a", vec![member(1, 2)]));
        t.output(Output::Blocked);
        t.output(Output::Rejoining {
            old: node(1),
            new: node(2),
        });
        t.output(Output::Expelled {
            group: "a".into(),
            member: member(1, 2),
            reason: ExpelReason::Partitioned,
        });
        t.output(mesh_view(9, vec![NodeId::new(ME + 1, 1), node(2)]));
        // The client leaves and joins again; the core has not taken the
        // leave when it installs the old membership's re-join.
        t.client(
            2,
            ClientMsg::Leave {
                id: 2,
                group: "a".into(),
            },
        );
        assert!(t.client(2, join(3)).is_empty());
        let mut got = t.output(joined_at(33));
        got.extend(t.output(checkpoint(33, b"old")));
        assert!(
            got.is_empty(),
            "the old membership answered the new join: {got:?}"
        );
        assert!(t.output(leave_taken(2, "a")).is_empty());
        let mut got = t.output(joined_at(35));
        got.extend(t.output(checkpoint(35, b"new")));
        assert!(
            matches!(&got[..], [
                (2, ServerMsg::Joined { id: 3, .. }),
                (2, ServerMsg::State { data: Some(d), .. }),
            ] if d == "new"),
            "{got:?}"
        );
    }

    /// A re-based transfer's checkpoint is the state at a later view than
    /// the one the member joined in: the views held up to that point reach
    /// the client before the checkpoint (sim, strict positions: the
    /// checkpoint came first and seemed to hold messages of later views).
    #[test]
    fn a_rebased_checkpoint_comes_after_the_views_up_to_its_join_point() {
        let mut t = setup(8);
        let join = ClientMsg::Join {
            id: 1,
            group: "a".into(),
            state: true,
        };
        assert!(t.client(2, join).is_empty());
        let with_state = |o: Output| match o {
            Output::GroupView(mut gv) => {
                gv.joined = vec![member(1, 2)];
                gv.with_state = vec![member(1, 2)];
                Output::GroupView(gv)
            }
            o => o,
        };
        let got = t.output(with_state(view(2, "a", vec![member(1, 7), member(1, 2)])));
        assert!(
            matches!(&got[..], [(2, ServerMsg::Joined { id: 1, .. })]),
            "{got:?}"
        );
        // Two more views while it waits: held.
        assert!(t.output(view(3, "a", vec![member(1, 2)])).is_empty());
        assert!(
            t.output(view(4, "a", vec![member(1, 2), member(1, 9)]))
                .is_empty()
        );
        let transfer = TransferId {
            group: "a".into(),
            joiner: member(1, 2),
            view: ViewId {
                counter: 3,
                coordinator: node(1),
            },
        };
        let mut out = Vec::new();
        let state = Output::StateDelivered {
            transfer,
            data: Some(b"s".to_vec()),
        };
        t.bridge.output(&mut t.router, state, &mut out);
        // A later view in the same batch comes after the released ones.
        let later = view(5, "a", vec![member(1, 2), member(1, 9)]);
        t.bridge.output(&mut t.router, later, &mut out);
        t.bridge.end_of_batch(&mut out);
        let got: Vec<String> = sent(&mut out)
            .into_iter()
            .map(|(_, m)| match m {
                ServerMsg::GroupView(v) => v.view,
                ServerMsg::State { .. } => "state".into(),
                m => format!("{m:?}"),
            })
            .collect();
        assert_eq!(got, vec!["v3@b7#1", "state", "v4@b7#1", "v5@b7#1"]);
    }

    #[test]
    fn a_subscription_gets_its_installed_views_then_later_ones_in_place() {
        let mut t = setup(8);
        let sub = ClientMsg::Subscribe {
            id: 5,
            pattern: "a/**".into(),
        };
        assert!(t.client(2, sub).is_empty(), "answered before installed");
        let got = t.output(view(2, "a", vec![member(1, 2)]));
        let [
            (2, ServerMsg::GroupView(_)),
            (2, ServerMsg::Subscribed { id: 5, views }),
        ] = &got[..]
        else {
            panic!("{got:?}")
        };
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].view, "v2@b7#1");
        assert_eq!(views[0].members, ["b7#1/s2"]);
        // A delivery, then a new view: in that order.
        t.client(1, publish("a/b", false, None));
        let payload = t.published();
        let mut got = t.output(delivered(payload, member(1, 1), vec![member(1, 2)]));
        got.extend(t.output(view(3, "a", vec![member(1, 2), member(1, 1)])));
        assert!(
            matches!(
                &got[..],
                [(2, ServerMsg::Deliver(_)), (2, ServerMsg::GroupView(v))] if v.view == "v3@b7#1"
            ),
            "{got:?}"
        );
    }

    #[test]
    fn a_tap_joins_no_group_and_gets_the_messages_its_broker_delivers() {
        let mut t = setup(8);
        // Group "a" exists with session 1 as its only member.
        t.client(
            1,
            ClientMsg::Join {
                id: 1,
                group: "a".into(),
                state: false,
            },
        );
        t.output(view(2, "a", vec![member(1, 1)]));
        while t.cmds.try_recv().is_ok() {}
        // A tap on `**` is answered at once, with no views, and asks the
        // core to join nothing.
        let tap = ClientMsg::Tap {
            id: 5,
            pattern: "**".into(),
        };
        let got = t.client(2, tap);
        assert!(
            matches!(&got[..], [(2, ServerMsg::Subscribed { id: 5, views })] if views.is_empty()),
            "{got:?}"
        );
        let mut joins = Vec::new();
        while let Ok(cmd) = t.cmds.try_recv() {
            if let ClientCmd::Join { group, .. } = cmd {
                joins.push(group);
            }
        }
        assert!(joins.is_empty(), "a tap joined {joins:?}");
        // A later view of the group is not sent to it (it is no member);
        // a message of the group is.
        let got = t.output(view(3, "a", vec![member(1, 1)]));
        assert!(got.iter().all(|(s, _)| *s != 2), "{got:?}");
        t.client(1, publish("a/b", false, None));
        let payload = t.published();
        let got = t.output(delivered(payload, member(1, 1), vec![member(1, 1)]));
        assert!(
            got.iter()
                .any(|(s, m)| *s == 2 && matches!(m, ServerMsg::Deliver(d) if d.topic == "a/b")),
            "{got:?}"
        );
        // Unsubscribing ends it.
        let got = t.client(2, ClientMsg::Unsubscribe { id: 5 });
        assert!(matches!(&got[..], [(2, ServerMsg::Unsubscribed { id: 5 })]));
    }

    #[test]
    fn publisher_ids_differ_across_incarnations_sessions_and_brokers() {
        let mut t = setup(8);
        let sub = ClientMsg::Subscribe {
            id: 5,
            pattern: "a/**".into(),
        };
        t.client(2, sub);
        t.output(view(2, "a", vec![member(1, 2)]));
        // Session 1 of this broker publishes before and after a rejoin
        // (incarnation 1, then 2): two different publisher ids.
        let mut ids = Vec::new();
        for inc in [1, 2] {
            t.client(1, publish("a/b", false, None));
            let payload = t.published();
            let got = t.output(delivered(payload, member(inc, 1), vec![member(1, 2)]));
            let [(2, ServerMsg::Deliver(d))] = &got[..] else {
                panic!("{got:?}")
            };
            ids.push(d.publisher);
        }
        assert_ne!(ids[0], ids[1], "a rejoined session is a new publisher");
        assert_eq!(ids[0], publisher_id(member(1, 1)));
        // Sessions are numbered from 1 on every start: a restarted broker's
        // session 1 (a larger incarnation) never takes an old id, over a
        // grid of brokers, incarnations and sessions.
        let mut seen = std::collections::HashSet::new();
        for name in [0, 1, 7, u32::MAX] {
            for inc in 1..=40 {
                for session in 1..=500 {
                    let m = MemberId {
                        broker: NodeId::new(name, inc),
                        session,
                    };
                    assert!(seen.insert(publisher_id(m)), "{m:?} collides");
                }
            }
        }
    }

    #[test]
    fn a_blocked_broker_refuses_publishes_and_multicasts_instead_of_confirming_them() {
        let mut t = setup(8);
        t.output(Output::Blocked);
        for (msg, id) in [
            (publish("a/b", false, Some(10)), Some(10)),
            (publish("a/b", true, Some(11)), Some(11)),
            (publish("a/b", false, None), None),
            (
                ClientMsg::Multicast {
                    group: "a".into(),
                    ordering: Ordering::Total,
                    safe: false,
                    payload: Bytes::from_static(b"m"),
                    confirm: Some(12),
                },
                Some(12),
            ),
        ] {
            let got = t.client(1, msg);
            let [
                (
                    1,
                    ServerMsg::Rejected {
                        id: got_id,
                        code,
                        reason,
                    },
                ),
            ] = &got[..]
            else {
                panic!("{got:?}")
            };
            assert_eq!((*got_id, *code), (id, RejectCode::Blocked));
            assert!(reason.contains("primary component"), "{reason}");
        }
        assert!(t.cmds.try_recv().is_err(), "nothing reached the core");
        // Unblocked: accepted again, and confirmed once delivered here.
        t.output(Output::Unblocked);
        assert!(t.client(1, publish("a/b", false, Some(13))).is_empty());
        let payload = t.published();
        let got = t.output(delivered_as(payload, member(1, 1), Vec::new(), false, 1));
        assert_eq!(
            got,
            [(
                1,
                ServerMsg::Confirmed {
                    id: 13,
                    seq: 1,
                    stable: false
                }
            )]
        );
    }

    #[test]
    fn a_publish_the_core_never_sends_is_refused_as_blocked() {
        let mut t = setup(8);
        assert!(t.client(1, publish("a/b", false, Some(21))).is_empty());
        let confirmed = t.published();
        assert!(t.client(1, publish("a/b", true, None)).is_empty());
        let plain = t.published();
        for (payload, id) in [(confirmed, Some(21)), (plain, None)] {
            let got = t.output(Output::Unsent {
                session: 1,
                group: "a".into(),
                payload,
            });
            let [
                (
                    1,
                    ServerMsg::Rejected {
                        id: got_id,
                        code,
                        reason,
                    },
                ),
            ] = &got[..]
            else {
                panic!("{got:?}")
            };
            assert_eq!((*got_id, *code), (id, RejectCode::Blocked));
            assert!(reason.contains("was not sent"), "{reason}");
        }
        // Nothing is left awaiting: a rejoin has no confirmation to fail.
        let got = t.output(Output::Rejoining {
            old: node(1),
            new: node(2),
        });
        assert!(got.is_empty(), "{got:?}");
    }

    #[test]
    fn a_safe_publish_is_confirmed_once_delivered_and_the_table_is_bounded() {
        let mut t = setup(1);
        // Not safe: confirmed once delivered here (not on acceptance: a
        // broker cut off before sending it would drop it).
        assert!(t.client(1, publish("a/b", false, Some(10))).is_empty());
        let payload = t.published();
        let got = t.output(delivered_as(payload, member(1, 1), Vec::new(), false, 1));
        assert_eq!(
            got,
            [(
                1,
                ServerMsg::Confirmed {
                    id: 10,
                    seq: 1,
                    stable: false
                }
            )]
        );
        // Safe: only once delivered at this broker.
        assert!(t.client(1, publish("a/b", true, Some(11))).is_empty());
        let payload = t.published();
        // The bound: one awaited per session here.
        let got = t.client(1, publish("a/b", true, Some(12)));
        assert!(
            matches!(
                &got[..],
                [(
                    1,
                    ServerMsg::Rejected {
                        id: Some(12),
                        code: RejectCode::LimitReached,
                        ..
                    }
                )]
            ),
            "{got:?}"
        );
        let got = t.output(delivered_as(payload, member(1, 1), Vec::new(), true, 2));
        assert_eq!(
            got,
            [(
                1,
                ServerMsg::Confirmed {
                    id: 11,
                    seq: 2,
                    stable: true
                }
            )]
        );
        // Awaited when the broker is cut off: the outcome is unknown.
        assert!(t.client(1, publish("a/b", true, Some(13))).is_empty());
        let got = t.output(Output::Rejoining {
            old: node(1),
            new: node(2),
        });
        assert!(
            matches!(
                &got[..],
                [(
                    1,
                    ServerMsg::Rejected {
                        id: Some(13),
                        code: RejectCode::OutcomeUnknown,
                        ..
                    }
                )]
            ),
            "{got:?}"
        );
    }

    #[test]
    fn a_member_of_a_cut_off_broker_keeps_its_membership_and_gets_fresh_state() {
        let mut t = setup(8);
        let join = ClientMsg::Join {
            id: 3,
            group: "g".into(),
            state: true,
        };
        assert!(t.client(1, join).is_empty());
        let sub = ClientMsg::Subscribe {
            id: 4,
            pattern: "g/**".into(),
        };
        assert!(t.client(2, sub).is_empty());
        let got = t.output(view(2, "g", vec![member(1, 1), member(1, 2)]));
        assert!(
            matches!(
                &got[..],
                [
                    (1, ServerMsg::Joined { id: 3, .. }),
                    (2, ServerMsg::GroupView(_)),
                    (2, ServerMsg::Subscribed { id: 4, .. })
                ]
            ),
            "{got:?}"
        );
        // Cut off: the core rejoins as a new incarnation and re-joins both.
        let mut got = t.output(Output::Rejoining {
            old: node(1),
            new: node(2),
        });
        for s in [1, 2] {
            got.extend(t.output(Output::Expelled {
                group: "g".into(),
                member: member(1, s),
                reason: ExpelReason::Partitioned,
            }));
        }
        assert!(got.is_empty(), "nothing ends: {got:?}");
        // After the heal: a new view for both, a checkpoint only for the
        // member that joined with state.
        let got = t.output(view(5, "g", vec![member(2, 1), member(2, 2)]));
        assert!(
            matches!(
                &got[..],
                [(1, ServerMsg::GroupView(a)), (2, ServerMsg::GroupView(b))]
                    if a.members == ["b7#2/s1", "b7#2/s2"] && a.rank == 0 && b.rank == 1
            ),
            "{got:?}"
        );
        let mut got = Vec::new();
        for s in [1, 2] {
            let transfer = TransferId {
                group: "g".into(),
                joiner: member(2, s),
                view: ViewId {
                    counter: 5,
                    coordinator: node(1),
                },
            };
            got.extend(t.output(Output::StateDelivered {
                transfer,
                data: Some(b"state".to_vec()),
            }));
        }
        assert_eq!(
            got,
            [(
                1,
                ServerMsg::State {
                    group: "g".into(),
                    data: Some(Bytes::from_static(b"state"))
                }
            )]
        );
        // Any other expulsion ends the membership and the subscription.
        let got = t.output(Output::Expelled {
            group: "g".into(),
            member: member(2, 2),
            reason: ExpelReason::TransferFailed,
        });
        assert!(
            matches!(&got[..], [(2, ServerMsg::Expelled { group, .. })] if group == "g"),
            "{got:?}"
        );
    }

    #[test]
    fn views_installed_while_a_joiner_awaits_its_checkpoint_follow_the_held_back_messages() {
        let mut t = setup(8);
        // Session 2 publishes on `a/x`, to get a real mesh payload.
        assert!(t.client(2, publish("a/x", false, None)).is_empty());
        let payload = t.published();
        let join = ClientMsg::Join {
            id: 3,
            group: "a".into(),
            state: true,
        };
        assert!(t.client(1, join).is_empty());
        let other = MemberId {
            broker: NodeId::new(ME + 1, 1),
            session: 9,
        };
        let joined_view = |counter, members: Vec<MemberId>, with_state: Vec<MemberId>| {
            Output::GroupView(GroupViewChange {
                view: GroupView {
                    group: "a".into(),
                    id: ViewId {
                        counter,
                        coordinator: node(1),
                    },
                    members,
                },
                joined: with_state.clone(),
                with_state,
                withdrawn: Vec::new(),
            })
        };
        // The join view goes out at once: `join` returns with it.
        let got = t.output(joined_view(
            2,
            vec![other, member(1, 1)],
            vec![member(1, 1)],
        ));
        assert!(
            matches!(&got[..], [(1, ServerMsg::Joined { id: 3, .. })]),
            "{got:?}"
        );
        // A later view while the checkpoint is awaited is held back.
        let third = MemberId {
            broker: NodeId::new(ME + 2, 1),
            session: 4,
        };
        let got = t.output(joined_view(3, vec![other, member(1, 1), third], Vec::new()));
        assert!(got.is_empty(), "{got:?}");
        // One batch: the checkpoint, then a message held back for the
        // joiner (ordered in view 2), then the batch ends.
        let transfer = TransferId {
            group: "a".into(),
            joiner: member(1, 1),
            view: ViewId {
                counter: 2,
                coordinator: node(1),
            },
        };
        let mut out = Vec::new();
        let outputs = [
            Output::StateDelivered {
                transfer,
                data: Some(b"state".to_vec()),
            },
            Output::Deliver(CoreDelivery {
                deferred: true,
                ..match delivered(payload, other, vec![member(1, 1)]) {
                    Output::Deliver(d) => d,
                    _ => unreachable!(),
                }
            }),
        ];
        for o in outputs {
            t.bridge.output(&mut t.router, o, &mut out);
        }
        t.bridge.end_of_batch(&mut out);
        let got = sent(&mut out);
        let kinds: Vec<&str> = got
            .iter()
            .map(|(_, m)| match m {
                ServerMsg::State { .. } => "state",
                ServerMsg::GroupMessage(_) => "message",
                ServerMsg::GroupView(v) if v.members.len() == 3 => "view 3",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["state", "message", "view 3"], "{got:?}");
    }

    #[test]
    fn a_wildcard_subscriber_gets_no_second_copy_of_a_joiner_s_held_back_message() {
        let mut t = setup(8);
        assert!(t.client(2, publish("a/x", false, None)).is_empty());
        let payload = t.published();
        let sub = ClientMsg::Subscribe {
            id: 5,
            pattern: "**".into(),
        };
        let got = t.client(2, sub);
        assert!(
            matches!(&got[..], [(2, ServerMsg::Subscribed { id: 5, .. })]),
            "{got:?}"
        );
        let d = match delivered(payload, member(1, 1), Vec::new()) {
            Output::Deliver(d) => d,
            _ => unreachable!(),
        };
        // The original delivery reaches the wildcard subscription.
        let got = t.output(Output::Deliver(d.clone()));
        assert!(matches!(&got[..], [(2, ServerMsg::Deliver(_))]), "{got:?}");
        // The copy held back for a joiner on session 1 goes to it only.
        let held = CoreDelivery {
            deferred: true,
            targets: vec![member(1, 1)],
            ..d
        };
        let got = t.output(Output::Deliver(held));
        assert!(got.iter().all(|(s, _)| *s == 1), "{got:?}");
    }

    #[test]
    fn joining_with_state_a_group_the_session_reaches_by_subscription_is_refused() {
        let mut t = setup(8);
        let sub = ClientMsg::Subscribe {
            id: 5,
            pattern: "a/**".into(),
        };
        t.client(1, sub);
        let join = ClientMsg::Join {
            id: 6,
            group: "a".into(),
            state: true,
        };
        let got = t.client(1, join);
        assert!(
            matches!(
                &got[..],
                [(
                    1,
                    ServerMsg::Rejected {
                        id: Some(6),
                        code: RejectCode::InvalidGroup,
                        ..
                    }
                )]
            ),
            "{got:?}"
        );
    }

    /// What each message is, for comparing orders.
    fn kind(m: &ServerMsg) -> String {
        match m {
            ServerMsg::Deliver(_) => "message".into(),
            ServerMsg::GroupMessage(_) => "message".into(),
            ServerMsg::GroupView(v) => format!("view {}", v.view),
            ServerMsg::Joined { .. } => "joined".into(),
            ServerMsg::Subscribed { .. } => "subscribed".into(),
            ServerMsg::State { .. } => "state".into(),
            ServerMsg::MeshState { blocked: true } => "blocked".into(),
            ServerMsg::MeshState { blocked: false } => "unblocked".into(),
            ServerMsg::Rejoined { member, .. } => format!("rejoined {member}"),
            other => format!("{other:?}"),
        }
    }

    /// The kinds `session` got, in order.
    fn kinds_of(got: &[(SessionId, ServerMsg)], session: SessionId) -> Vec<String> {
        got.iter()
            .filter(|(s, _)| *s == session)
            .map(|(_, m)| kind(m))
            .collect()
    }

    /// A client's join of group `a` with state.
    fn join_with_state(id: u64) -> ClientMsg {
        ClientMsg::Join {
            id,
            group: "a".into(),
            state: true,
        }
    }

    /// `joiner`'s checkpoint of group `a`, of its transfer at view `counter`.
    fn state_of(joiner: MemberId, counter: u64, data: &[u8]) -> Output {
        Output::StateDelivered {
            transfer: TransferId {
                group: "a".into(),
                joiner,
                view: ViewId {
                    counter,
                    coordinator: node(1),
                },
            },
            data: Some(data.to_vec()),
        }
    }

    fn leave_taken(session: SessionId, group: &str) -> Output {
        Output::LeaveTaken {
            session,
            group: group.into(),
        }
    }

    fn mesh_view(counter: u64, members: Vec<NodeId>) -> Output {
        Output::MeshView(meshcast_protocol::MeshView {
            id: ViewId {
                counter,
                coordinator: NodeId::new(ME + 1, 1),
            },
            members,
        })
    }

    /// Session 1 a member of `a` by join, session 2 by subscription.
    fn two_members(t: &mut T) {
        let join = ClientMsg::Join {
            id: 3,
            group: "a".into(),
            state: false,
        };
        t.client(1, join);
        let sub = ClientMsg::Subscribe {
            id: 4,
            pattern: "a/**".into(),
        };
        t.client(2, sub);
        let got = t.output(view(2, "a", vec![member(1, 1), member(1, 2)]));
        assert_eq!(kinds_of(&got, 1), ["joined"]);
        assert_eq!(kinds_of(&got, 2), ["view v2@b7#1", "subscribed"]);
    }

    #[test]
    fn blocked_and_unblocked_reach_every_session_in_place_among_deliveries() {
        let mut t = setup(8);
        two_members(&mut t);
        let both = vec![member(1, 1), member(1, 2)];
        t.client(1, publish("a/b", false, None));
        let first = t.published();
        t.client(1, publish("a/b", false, None));
        let second = t.published();
        // One batch: a delivery, the cut, the heal, a delivery.
        let mut out = Vec::new();
        for o in [
            delivered(first, member(1, 1), both.clone()),
            Output::Blocked,
            Output::Unblocked,
            delivered_as(second, member(1, 1), both, true, 2),
        ] {
            t.bridge.output(&mut t.router, o, &mut out);
        }
        t.bridge.end_of_batch(&mut out);
        let got = sent(&mut out);
        for s in [1, 2] {
            assert_eq!(
                kinds_of(&got, s),
                ["message", "blocked", "unblocked", "message"],
                "session {s}: {got:?}"
            );
        }
    }

    #[test]
    fn a_rejoin_is_announced_with_the_new_publisher_id_before_the_new_incarnation_s_views() {
        let mut t = setup(8);
        two_members(&mut t);
        assert_eq!(t.bridge.publisher_of(1), publisher_id(member(1, 1)));
        let mut got = t.output(Output::Blocked);
        got.extend(t.output(Output::Rejoining {
            old: node(1),
            new: node(2),
        }));
        for s in [1, 2] {
            got.extend(t.output(Output::Expelled {
                group: "a".into(),
                member: member(1, s),
                reason: ExpelReason::Partitioned,
            }));
        }
        // A session opened during the rejoin starts under the new
        // incarnation: its welcome already has the new id, it has no old
        // membership, and it is not told `Rejoined`.
        t.router.open(3);
        assert_eq!(t.bridge.publisher_of(3), publisher_id(member(2, 3)));
        assert_eq!(t.bridge.publisher_of(1), publisher_id(member(2, 1)));
        // Admitted: the mesh view, the group's new view, then unblocked (the
        // core's order).
        let mut out = Vec::new();
        for o in [
            mesh_view(9, vec![NodeId::new(ME + 1, 1), node(2)]),
            // The members re-joined under the new incarnation.
            t.joins(view(10, "a", vec![member(2, 1), member(2, 2)])),
            Output::Unblocked,
        ] {
            t.bridge.output(&mut t.router, o, &mut out);
        }
        t.bridge.end_of_batch(&mut out);
        got.extend(sent(&mut out));
        for s in [1, 2] {
            assert_eq!(
                kinds_of(&got, s),
                [
                    "blocked".to_string(),
                    format!("rejoined b7#2/s{s}"),
                    "view v10@b7#1".to_string(),
                    "unblocked".to_string()
                ],
                "session {s}: {got:?}"
            );
            let publisher = got.iter().find_map(|(x, m)| match m {
                ServerMsg::Rejoined {
                    publisher,
                    incarnation,
                    ..
                } if *x == s => Some((*publisher, *incarnation)),
                _ => None,
            });
            assert_eq!(publisher, Some((publisher_id(member(2, s)), 2)));
        }
        assert_eq!(kinds_of(&got, 3), ["unblocked"], "{got:?}");
        // A later mesh view announces nothing more.
        let got = t.output(mesh_view(11, vec![NodeId::new(ME + 1, 1), node(2)]));
        assert!(got.is_empty(), "{got:?}");
    }

    /// Session 1 joins `a` with state in view 2; view 3 comes while its
    /// checkpoint is awaited (held back).
    fn joiner_with_a_held_view(t: &mut T) -> (Bytes, MemberId) {
        assert!(t.client(2, publish("a/x", false, None)).is_empty());
        let payload = t.published();
        let join = ClientMsg::Join {
            id: 3,
            group: "a".into(),
            state: true,
        };
        t.client(1, join);
        let other = MemberId {
            broker: NodeId::new(ME + 1, 1),
            session: 9,
        };
        let with_state = |counter, members: Vec<MemberId>, joiners: Vec<MemberId>| {
            Output::GroupView(GroupViewChange {
                view: GroupView {
                    group: "a".into(),
                    id: ViewId {
                        counter,
                        coordinator: node(1),
                    },
                    members,
                },
                joined: joiners.clone(),
                with_state: joiners,
                withdrawn: Vec::new(),
            })
        };
        let got = t.output(with_state(2, vec![other, member(1, 1)], vec![member(1, 1)]));
        assert_eq!(kinds_of(&got, 1), ["joined"]);
        let got = t.output(with_state(3, vec![other, member(1, 1)], Vec::new()));
        assert!(got.is_empty(), "held: {got:?}");
        (payload, other)
    }

    #[test]
    fn views_held_for_a_joiner_go_out_before_a_blocked_in_the_same_batch() {
        let mut t = setup(8);
        let (payload, other) = joiner_with_a_held_view(&mut t);
        let transfer = TransferId {
            group: "a".into(),
            joiner: member(1, 1),
            view: ViewId {
                counter: 2,
                coordinator: node(1),
            },
        };
        let held_back = match delivered(payload, other, vec![member(1, 1)]) {
            Output::Deliver(d) => Output::Deliver(CoreDelivery {
                deferred: true,
                ..d
            }),
            _ => unreachable!(),
        };
        let mut out = Vec::new();
        for o in [
            Output::StateDelivered {
                transfer,
                data: Some(b"state".to_vec()),
            },
            held_back,
            Output::Blocked,
        ] {
            t.bridge.output(&mut t.router, o, &mut out);
        }
        t.bridge.end_of_batch(&mut out);
        let got = sent(&mut out);
        assert_eq!(
            kinds_of(&got, 1),
            ["state", "message", "view v3@b7#1", "blocked"],
            "{got:?}"
        );
    }

    #[test]
    fn views_held_for_a_joiner_of_the_old_incarnation_never_follow_a_rejoin() {
        let mut t = setup(8);
        let (_, other) = joiner_with_a_held_view(&mut t);
        let mut got = t.output(Output::Blocked);
        got.extend(t.output(Output::Rejoining {
            old: node(1),
            new: node(2),
        }));
        got.extend(t.output(Output::Expelled {
            group: "a".into(),
            member: member(1, 1),
            reason: ExpelReason::Partitioned,
        }));
        // The old checkpoint never comes. Admitted again: a new view with a
        // transfer for the new member, its checkpoint, unblocked.
        let rejoin_view = Output::GroupView(GroupViewChange {
            view: GroupView {
                group: "a".into(),
                id: ViewId {
                    counter: 6,
                    coordinator: node(1),
                },
                members: vec![other, member(2, 1)],
            },
            joined: vec![member(2, 1)],
            with_state: vec![member(2, 1)],
            withdrawn: Vec::new(),
        });
        let transfer = TransferId {
            group: "a".into(),
            joiner: member(2, 1),
            view: ViewId {
                counter: 6,
                coordinator: node(1),
            },
        };
        let mut out = Vec::new();
        for o in [
            mesh_view(5, vec![NodeId::new(ME + 1, 1), node(2)]),
            rejoin_view,
            Output::Unblocked,
            Output::StateDelivered {
                transfer,
                data: Some(b"fresh".to_vec()),
            },
        ] {
            t.bridge.output(&mut t.router, o, &mut out);
        }
        t.bridge.end_of_batch(&mut out);
        got.extend(sent(&mut out));
        assert_eq!(
            kinds_of(&got, 1),
            [
                "blocked",
                "rejoined b7#2/s1",
                "view v6@b7#1",
                "unblocked",
                "state"
            ],
            "{got:?}"
        );
    }
}
