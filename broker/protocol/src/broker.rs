//! The [`Broker`] state machine: entry points, the data path and the
//! client-command handlers. Membership and view changes live in
//! [`crate::membership`], state transfer in [`crate::transfer`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::config::ProtocolConfig;
use crate::error::Error;
use crate::group::GroupState;
use crate::id::{MemberId, MeshView, MsgId, NodeId, Ordering, Time, TransferId, ViewId};
use crate::io::{ClientCmd, Delivery, ExpelReason, Input, Output};
use crate::membership::{Promise, Round};
use crate::transfer::{Incoming, Outgoing};
use crate::wire::{DataMsg, Envelope, GroupRequest, Install, OrderMsg, PeerMsg};

/// Most messages of not-yet-installed views kept.
const MAX_FUTURE: usize = 100_000;

/// The installed configuration: mesh view plus every group's state.
#[derive(Debug, Clone)]
pub(crate) struct Epoch {
    pub view: MeshView,
    pub me: usize,
    pub groups: BTreeMap<String, GroupState>,
}

impl Epoch {
    pub fn group_mut(&mut self, name: &str) -> &mut GroupState {
        let n = self.view.members.len();
        let id = self.view.id;
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| GroupState::new(name.to_string(), id, Vec::new(), n))
    }
}

/// A publish accepted from a client and not yet multicast.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub session: u64,
    pub group: String,
    pub ordering: Ordering,
    pub safe: bool,
    pub payload: Bytes,
}

/// One broker's protocol core.
///
/// Drive it with [`Broker::handle`], then drain [`Broker::poll_output`] and
/// call `handle(now, Input::Timeout)` once [`Broker::poll_timeout`] is
/// reached. It performs no I/O, reads no clock and draws randomness only
/// from the seeded generator given to [`Broker::new`], so the same inputs
/// always produce the same outputs. A clone is an independent copy of the
/// state (for tests and fuzzing: one state, many inputs).
#[derive(Debug, Clone)]
pub struct Broker {
    pub(crate) id: NodeId,
    pub(crate) cfg: ProtocolConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) now: Time,
    pub(crate) started: bool,
    pub(crate) out: VecDeque<Output>,
    // Membership.
    pub(crate) epoch: Option<Epoch>,
    pub(crate) commits: VecDeque<Install>,
    pub(crate) round_failures: BTreeMap<NodeId, u32>,
    /// Ballots other members accepted for the current view (heartbeats).
    pub(crate) accept_seen: BTreeMap<NodeId, ViewId>,
    /// Members whose heartbeats say they are flushing the current view: a
    /// view change is under way, maybe without this broker.
    pub(crate) peers_flushing: BTreeSet<NodeId>,
    pub(crate) promise: Option<Promise>,
    pub(crate) accepted: Option<(ViewId, Install)>,
    pub(crate) max_counter: u64,
    pub(crate) round: Option<Round>,
    pub(crate) suspects: BTreeSet<NodeId>,
    /// Members suspected because they ignored a view change, until the
    /// given time.
    pub(crate) forced: BTreeMap<NodeId, Time>,
    pub(crate) last_heard: BTreeMap<NodeId, Time>,
    pub(crate) joiners: BTreeMap<u32, (NodeId, Time)>,
    /// Restarted brokers that may stand in for their old incarnation in
    /// the current view (see [`crate::wire::Returning`]), by name.
    pub(crate) standins: BTreeMap<u32, (NodeId, Time)>,
    pub(crate) change_wanted: bool,
    pub(crate) minority: bool,
    pub(crate) next_heartbeat: Time,
    pub(crate) next_join: Time,
    /// Brokers outside `cfg.seeds` heard from while joining (heartbeats of
    /// a view): asked for admission at the next join retry.
    pub(crate) heard_seeds: BTreeSet<NodeId>,
    /// Brokers this one reached while it had no view (a link came up, or
    /// it heard from them), for `auto_bootstrap`.
    pub(crate) reachable: BTreeSet<u32>,
    /// Restarted brokers heard while this one has no view, with what they
    /// remember (for the recovery of a mesh whose brokers all restarted).
    pub(crate) restarted_peers: BTreeMap<u32, crate::wire::Returning>,
    /// A member of some mesh answered (heartbeat or `Excluded`): never
    /// start a mesh of our own.
    pub(crate) mesh_seen: bool,
    /// The newest view a member of a mesh named while this broker had none.
    pub(crate) seen_view: Option<ViewId>,
    /// This broker installed a view at some point (so it has history).
    pub(crate) had_view: bool,
    /// When this broker started.
    pub(crate) started_at: Time,
    /// When progress not yet acknowledged must be (see `stability.rs`).
    pub(crate) ack_due: Option<Time>,
    // Delivery leases (see `lease.rs`).
    /// Until when each member of the current view holds this broker to it.
    pub(crate) lease_until: BTreeMap<NodeId, Time>,
    /// The latest heartbeat stamp heard from each member in this view.
    pub(crate) stamps_heard: BTreeMap<NodeId, u64>,
    /// Members sent a grant since the current view was installed.
    pub(crate) echoed: BTreeSet<NodeId>,
    /// When this broker last granted each broker a lease.
    pub(crate) granted: BTreeMap<NodeId, Time>,
    /// When the current view was installed (older stamps grant nothing).
    pub(crate) view_since: Time,
    /// An `Accept` waiting for this broker's grants to the brokers it
    /// excludes to expire: (coordinator, ballot, value).
    pub(crate) pending_accept: Option<(NodeId, ViewId, Install)>,
    // Client side.
    pub(crate) requests: Vec<(u64, GroupRequest)>,
    pub(crate) request_seq: u64,
    /// Publishes waiting for credit, per group in publish order.
    pub(crate) outbox: BTreeMap<String, VecDeque<Pending>>,
    /// Publishes in `outbox`, all groups together.
    pub(crate) outbox_len: usize,
    pub(crate) msg_counter: u64,
    /// Each local publisher session's sequence number in this incarnation.
    pub(crate) pub_seqs: BTreeMap<u64, u64>,
    pub(crate) future: Vec<Envelope>,
    // State transfer.
    pub(crate) incoming: BTreeMap<TransferId, Incoming>,
    pub(crate) outgoing: BTreeMap<TransferId, Outgoing>,
    pub(crate) late_requests: Vec<(TransferId, MemberId)>,
    /// Transfers given up here, by joiner broker: re-announced on reconnect
    /// until the joiner's membership moves on.
    pub(crate) aborted: BTreeMap<TransferId, NodeId>,
    // Flow control.
    pub(crate) backlog: BTreeMap<(String, MemberId), Backlog>,
    pub(crate) muted: BTreeSet<(String, MemberId)>,
}

/// What noting that a peer was heard changed (see `Broker::note_heard`).
#[derive(Debug, Default)]
struct Heard {
    /// Its name was added to `reachable`.
    reachable: bool,
    /// `last_heard` was set; its previous value.
    last_heard: Option<Option<Time>>,
    /// It was removed from `suspects`.
    suspected: bool,
}

/// Figures of one group at one broker (see [`Broker::group_stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStats {
    /// Group name.
    pub group: String,
    /// Current group view id.
    pub view: ViewId,
    /// Members in the group view (on all brokers).
    pub members: usize,
    /// The broker ordering `total` messages of the group.
    pub sequencer: Option<NodeId>,
    /// Messages held here: received and not yet freed (delivered and
    /// known received everywhere), out-of-order arrivals included.
    pub held: usize,
    /// This broker's own messages not yet known received everywhere (the
    /// credit window counts these against `max_unstable`).
    pub unstable_own: u64,
    /// Total-order decisions kept until every broker delivered them.
    pub decisions_held: usize,
    /// Total-order positions delivered here.
    pub delivered_positions: u64,
    /// Publishes waiting for credit in the outbox.
    pub queued: usize,
}

/// Deliveries handed to a local member and not yet consumed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Backlog {
    pub outstanding: usize,
    pub full_since: Option<Time>,
}

impl Broker {
    /// Creates a broker. `id` must carry a fresh incarnation on every start;
    /// `seed` seeds the only randomness the core uses.
    pub fn new(id: NodeId, config: ProtocolConfig, seed: u64) -> Self {
        Broker {
            id,
            cfg: config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Time(0),
            started: false,
            out: VecDeque::new(),
            epoch: None,
            commits: VecDeque::new(),
            round_failures: BTreeMap::new(),
            accept_seen: BTreeMap::new(),
            peers_flushing: BTreeSet::new(),
            promise: None,
            accepted: None,
            max_counter: 0,
            round: None,
            suspects: BTreeSet::new(),
            forced: BTreeMap::new(),
            last_heard: BTreeMap::new(),
            joiners: BTreeMap::new(),
            standins: BTreeMap::new(),
            change_wanted: false,
            minority: false,
            next_heartbeat: Time(0),
            next_join: Time(0),
            heard_seeds: BTreeSet::new(),
            ack_due: None,
            reachable: BTreeSet::new(),
            restarted_peers: BTreeMap::new(),
            mesh_seen: false,
            seen_view: None,
            had_view: false,
            started_at: Time(0),
            lease_until: BTreeMap::new(),
            stamps_heard: BTreeMap::new(),
            echoed: BTreeSet::new(),
            granted: BTreeMap::new(),
            view_since: Time(0),
            pending_accept: None,
            requests: Vec::new(),
            request_seq: 0,
            outbox: BTreeMap::new(),
            outbox_len: 0,
            msg_counter: 0,
            pub_seqs: BTreeMap::new(),
            future: Vec::new(),
            incoming: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            late_requests: Vec::new(),
            aborted: BTreeMap::new(),
            backlog: BTreeMap::new(),
            muted: BTreeSet::new(),
        }
    }

    /// This broker's current identity (changes when it rejoins).
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The installed mesh view, if any.
    pub fn view(&self) -> Option<&MeshView> {
        self.epoch.as_ref().map(|e| &e.view)
    }

    /// Memberships this broker may be about to install: the value it
    /// accepted and the members of the round it coordinates (for the
    /// simulator's fault budget, and the runtime's status: a test that
    /// injects faults waits until no view change is under way).
    pub fn pending_views(&self) -> Vec<Vec<NodeId>> {
        let mut v = Vec::new();
        if let Some((_, inst)) = &self.accepted {
            v.push(inst.view.members.clone());
        }
        if let Some(r) = &self.round {
            v.push(r.members.clone());
        }
        v
    }

    /// Base view of the value this broker accepted in a view change, if
    /// that value removes a broker of its base view: a runtime makes it
    /// durable before acting on the outputs of the same call, so that a
    /// restarted broker can say it (see [`crate::wire::Returning`]). Values
    /// that remove nobody need not be kept: they can only be chosen with
    /// the acceptance of every member of the base view, so any member a
    /// restarted broker could stand in with knows of them (and a member
    /// commits one it learned of only once every proposed member is known
    /// to have accepted it, never on a majority).
    pub fn accepted_base(&self) -> Option<ViewId> {
        self.accepted
            .as_ref()
            .filter(|(_, v)| v.prev_members.iter().any(|m| !v.view.contains(*m)))
            .map(|(_, v)| v.prev)
    }

    /// True while this broker is outside the primary component.
    pub fn is_blocked(&self) -> bool {
        self.minority
    }

    /// True if this broker still holds (has received and not freed) the
    /// message, or delivered it in the current view.
    pub fn holds(&self, group: &str, id: MsgId) -> bool {
        let Some(e) = &self.epoch else { return false };
        let Some(g) = e.groups.get(group) else {
            return false;
        };
        g.streams
            .iter()
            .any(|s| s.msgs.values().any(|m| m.id == id))
    }

    /// Publishes accepted by [`Broker::handle`] that still wait in the
    /// outbox for credit or for the view (bounded by `max_outbox`). A
    /// runtime uses it to push back on its clients before the bound.
    pub fn queued_publishes(&self) -> usize {
        self.outbox_len
    }

    /// Figures of every group in the installed view, for status pages.
    pub fn group_stats(&self) -> Vec<GroupStats> {
        let Some(e) = &self.epoch else {
            return Vec::new();
        };
        e.groups
            .values()
            .map(|g| {
                let stable = g.acks.iter().map(|a| a[e.me]).min().unwrap_or(0);
                GroupStats {
                    group: g.name.clone(),
                    view: g.view_id,
                    members: g.members.len(),
                    sequencer: e.view.members.get(g.sequencer).copied(),
                    held: g.streams.iter().map(|s| s.msgs.len()).sum(),
                    unstable_own: g.my_seq.saturating_sub(stable),
                    decisions_held: g.decisions.len(),
                    delivered_positions: g.total_delivered,
                    queued: self.outbox.get(&g.name).map_or(0, VecDeque::len),
                }
            })
            .collect()
    }

    /// Next output to act on.
    pub fn poll_output(&mut self) -> Option<Output> {
        loop {
            let o = self.out.pop_front()?;
            if self.cfg.defects.ignore_minority && matches!(o, Output::Blocked | Output::Unblocked)
            {
                continue;
            }
            return Some(o);
        }
    }

    /// When to call `handle(now, Input::Timeout)` next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t = if self.epoch.is_some() {
            self.next_heartbeat
        } else {
            self.next_join
        };
        if let Some(wait) = self.cfg.auto_bootstrap {
            let due = self.started_at.plus(wait);
            if self.epoch.is_none() && !self.had_view && !self.mesh_seen && self.now < due {
                t = t.min(due);
            }
        }
        if let Some(r) = &self.round {
            t = t.min(r.deadline);
        }
        for (m, h) in &self.last_heard {
            if !self.suspects.contains(m) {
                t = t.min(h.plus(self.cfg.suspect_timeout + 1));
            }
        }
        if let Some(d) = self.slow_deadline() {
            t = t.min(d);
        }
        if let Some(d) = self.transfer_deadline() {
            t = t.min(d);
        }
        if let Some(d) = self.ack_due {
            t = t.min(d);
        }
        if let Some((_, _, inst)) = &self.pending_accept {
            t = t.min(self.accept_hold(inst));
        }
        if let Some(r) = &self.round {
            if r.value.is_some() && !r.acks.contains(&self.id) {
                if let Some(v) = &r.value {
                    t = t.min(self.accept_hold(v));
                }
            }
        }
        Some(t)
    }

    /// Feeds one input at time `now`. Invalid peer input returns an error
    /// and leaves the state unchanged.
    pub fn handle(&mut self, now: Time, input: Input) -> Result<(), Error> {
        self.begin(now);
        let res = self.dispatch(input);
        self.finish();
        res
    }

    /// Feeds several inputs that arrived together at time `now`, then sends
    /// and delivers once for all of them: total-order decisions, deliveries
    /// and acknowledgements are batched across the inputs. Equivalent to
    /// calling [`Broker::handle`] for each, except for that batching. Returns
    /// the errors of refused inputs (each left the state unchanged).
    pub fn handle_batch(
        &mut self,
        now: Time,
        inputs: impl IntoIterator<Item = Input>,
    ) -> Vec<Error> {
        self.begin(now);
        let errors = inputs
            .into_iter()
            .filter_map(|i| self.dispatch(i).err())
            .collect();
        self.finish();
        errors
    }

    fn begin(&mut self, now: Time) {
        if now > self.now {
            self.now = now;
        }
        if !self.started {
            self.start();
        }
    }

    fn dispatch(&mut self, input: Input) -> Result<(), Error> {
        match input {
            Input::Peer(env) => self.on_peer(env),
            Input::LinkUp(peer) => {
                self.reachable.insert(peer.name);
                self.on_link_up(peer);
                Ok(())
            }
            // Reached once is enough: a smaller broker this one ever
            // reached starts the mesh (or is in one), so this one never
            // does, even if the link drops before it is admitted.
            Input::LinkDown(_) => Ok(()),
            Input::Client(cmd) => self.on_client(cmd),
            Input::Timeout => Ok(()),
        }
    }

    fn finish(&mut self) {
        self.on_tick();
        self.pump();
        self.schedule_acks();
    }

    fn start(&mut self) {
        self.started = true;
        let jitter = self.rng.next_u64() % self.cfg.heartbeat_interval.max(1);
        self.next_heartbeat = self.now.plus(jitter);
        self.next_join = self.now;
        self.started_at = self.now;
        if self.cfg.bootstrap {
            self.bootstrap_now();
        }
    }

    /// Installs a singleton mesh view of this broker.
    pub(crate) fn bootstrap_now(&mut self) {
        {
            // Above every view this broker (or a restarted broker it heard)
            // remembers, so view ids keep growing across a recovery.
            let counter = self
                .cfg
                .returning
                .iter()
                .chain(self.restarted_peers.values())
                .filter_map(|r| r.view)
                .map(|v| v.counter)
                .max()
                .unwrap_or(0)
                .saturating_add(1);
            let view = MeshView {
                id: ViewId {
                    counter,
                    coordinator: self.id,
                },
                members: vec![self.id],
            };
            self.max_counter = counter;
            self.had_view = true;
            self.out.push_back(Output::MeshView(view.clone()));
            self.epoch = Some(Epoch {
                view,
                me: 0,
                groups: BTreeMap::new(),
            });
        }
    }

    pub(crate) fn send(&mut self, to: NodeId, msg: PeerMsg) {
        if to == self.id {
            return;
        }
        self.out.push_back(Output::Send {
            to,
            envelope: Envelope {
                from: self.id,
                to,
                msg,
            },
        });
    }

    pub(crate) fn view_id(&self) -> Option<ViewId> {
        self.epoch.as_ref().map(|e| e.view.id)
    }

    /// True while a view change based on the current view is in progress
    /// here (phase 1 answered): no sending, no delivering.
    pub(crate) fn flushing(&self) -> bool {
        match (&self.promise, self.view_id()) {
            (Some(p), Some(v)) => p.base >= v,
            _ => false,
        }
    }

    /// May this broker deliver and send in its current view? Only while
    /// it holds leases from a majority of it (see `lease.rs`).
    pub(crate) fn active(&self) -> bool {
        let d = &self.cfg.defects;
        let defect = d.deliver_in_minority || d.ignore_minority;
        self.epoch.is_some()
            && !self.flushing()
            && self.peers_flushing.is_empty()
            && (!self.minority || defect)
            && (defect || self.leased())
    }

    pub(crate) fn on_peer(&mut self, env: Envelope) -> Result<(), Error> {
        let any_incarnation = env.to.incarnation == 0
            && env.to.name == self.id.name
            && matches!(env.msg, PeerMsg::JoinRequest(_));
        if env.to != self.id && !any_incarnation {
            // A broker still in a view with our old incarnation (left behind
            // while the rest of the mesh restarted or moved on): tell it its
            // view is over, or nobody ever would.
            if let (PeerMsg::Heartbeat(hb), Some(cur)) = (&env.msg, self.view_id()) {
                let stale = env.to.name == self.id.name
                    && env.to.incarnation < self.id.incarnation
                    && hb.view.is_some_and(|v| v < cur);
                let outsider = self.view().is_some_and(|v| !v.contains(env.from));
                if stale && outsider {
                    self.send(env.from, PeerMsg::Excluded { view: cur });
                }
            }
            return Err(Error::WrongIncarnation {
                to: env.to,
                me: self.id,
            });
        }
        let from = env.from;
        crate::wire::check_numbers(&env.msg)
            .map_err(|reason| Error::InvalidPeerMessage { from, reason })?;
        // Hearing from `from` counts only if the message is accepted: a
        // refused one leaves the state unchanged (see `Error`), so what is
        // noted here is undone below when the handler refuses it.
        let heard = self.note_heard(from);
        let result = self.dispatch_peer(from, env.msg);
        if result.is_err() {
            self.unnote_heard(from, heard);
        }
        result
    }

    /// Notes that `from` was heard (reachable while this broker has no
    /// view; not suspected, heard now while it is in the view); returns
    /// what it changed, for [`Broker::unnote_heard`].
    fn note_heard(&mut self, from: NodeId) -> Heard {
        let mut heard = Heard::default();
        if self.epoch.is_none() && from.name != self.id.name {
            heard.reachable = self.reachable.insert(from.name);
        }
        if let Some(e) = &self.epoch {
            if e.view.contains(from) {
                heard.last_heard = Some(self.last_heard.insert(from, self.now));
                heard.suspected = self.suspects.remove(&from);
            }
        }
        heard
    }

    /// Undoes [`Broker::note_heard`].
    fn unnote_heard(&mut self, from: NodeId, heard: Heard) {
        if heard.reachable {
            self.reachable.remove(&from.name);
        }
        match heard.last_heard {
            Some(Some(at)) => {
                self.last_heard.insert(from, at);
            }
            Some(None) => {
                self.last_heard.remove(&from);
            }
            None => {}
        }
        if heard.suspected {
            self.suspects.insert(from);
        }
    }

    fn dispatch_peer(&mut self, from: NodeId, msg: PeerMsg) -> Result<(), Error> {
        match msg {
            PeerMsg::Heartbeat(hb) => self.on_heartbeat(from, hb),
            PeerMsg::Ack(a) => {
                self.on_ack(from, a);
                Ok(())
            }
            PeerMsg::JoinRequest(returning) => {
                self.on_join_request(from, returning);
                Ok(())
            }
            PeerMsg::JoinForward { joiner } => self.on_join_forward(from, joiner),
            PeerMsg::Excluded { view } => {
                self.on_excluded(view);
                Ok(())
            }
            PeerMsg::Data(m) => self.on_data(from, m),
            PeerMsg::Order(o) => self.on_order(from, o),
            PeerMsg::Propose(p) => self.on_propose(from, p),
            PeerMsg::Report(r) => self.on_report(from, *r),
            PeerMsg::Accept { ballot, install } => self.on_accept(from, ballot, *install),
            PeerMsg::Accepted { ballot } => {
                self.on_accepted(from, ballot);
                Ok(())
            }
            PeerMsg::Commit(inst) => self.on_commit(from, *inst),
            PeerMsg::StateChunk(c) => self.on_state_chunk(from, c),
            PeerMsg::StateAbort(t) => {
                self.abort_incoming(from, t);
                Ok(())
            }
            PeerMsg::StateDone(t) => {
                self.outgoing.remove(&t);
                Ok(())
            }
        }
    }

    /// Keeps a message of a view not installed yet (bounded; beyond the
    /// bound the sender's resend after reconnection or the flush recovers).
    pub(crate) fn buffer_future(&mut self, env: Envelope) {
        if self.future.len() < MAX_FUTURE {
            self.future.push(env);
        }
    }

    /// Data message from a peer.
    fn on_data(&mut self, from: NodeId, m: DataMsg) -> Result<(), Error> {
        let Some(e) = &mut self.epoch else {
            // A joiner may hear from its first view before installing it.
            self.buffer_future(Envelope {
                from,
                to: self.id,
                msg: PeerMsg::Data(m),
            });
            return Ok(());
        };
        if m.view > e.view.id {
            self.buffer_future(Envelope {
                from,
                to: self.id,
                msg: PeerMsg::Data(m),
            });
            return Ok(());
        }
        if m.view < e.view.id {
            return Ok(());
        }
        let n = e.view.members.len();
        crate::group::validate(n, &m)
            .map_err(|reason| Error::InvalidPeerMessage { from, reason })?;
        if e.view.rank(from) != Some(m.rank as usize) {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "data message for another sender's stream",
            });
        }
        if self.flushing() {
            // Reported already: receiving more now would let the sender
            // count it stable and free it although no report holds it.
            return Ok(());
        }
        let Some(e) = &mut self.epoch else {
            return Ok(());
        };
        let me = e.me;
        let g = e.group_mut(&m.group);
        // The sender holds everything it sent up to this message.
        let (s, seq) = (m.rank as usize, m.seq);
        g.acks[s][s] = g.acks[s][s].max(seq);
        g.insert(me, m);
        Ok(())
    }

    fn on_order(&mut self, from: NodeId, o: OrderMsg) -> Result<(), Error> {
        let Some(e) = &mut self.epoch else {
            self.buffer_future(Envelope {
                from,
                to: self.id,
                msg: PeerMsg::Order(o),
            });
            return Ok(());
        };
        if o.view > e.view.id {
            self.buffer_future(Envelope {
                from,
                to: self.id,
                msg: PeerMsg::Order(o),
            });
            return Ok(());
        }
        if o.view < e.view.id {
            return Ok(());
        }
        let n = e.view.members.len() as u32;
        if o.first == 0 || o.entries.iter().any(|(r, s)| *r >= n || *s == 0) {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "bad order batch",
            });
        }
        let sequencer = match e.groups.get(&o.group) {
            Some(g) => g.sequencer,
            None => crate::group::sequencer_rank(&o.group, e.view.members.len()),
        };
        if e.view.members.get(sequencer) != Some(&from) {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "order batch not from the sequencer",
            });
        }
        e.group_mut(&o.group).add_decisions(o.first, o.entries);
        Ok(())
    }

    fn on_client(&mut self, cmd: ClientCmd) -> Result<(), Error> {
        match cmd {
            ClientCmd::Publish {
                session,
                group,
                ordering,
                safe,
                payload,
            } => {
                if self.outbox_len >= self.cfg.max_outbox {
                    return Err(Error::Backpressure { group });
                }
                if self.minority
                    && !(self.cfg.defects.deliver_in_minority || self.cfg.defects.ignore_minority)
                {
                    // Cut off: it could only be sent after a rejoin, as a
                    // new incarnation, with its causal past maybe lost.
                    self.out.push_back(Output::Unsent {
                        session,
                        group,
                        payload,
                    });
                    return Ok(());
                }
                self.outbox_len += 1;
                self.outbox
                    .entry(group.clone())
                    .or_default()
                    .push_back(Pending {
                        session,
                        group,
                        ordering,
                        safe,
                        payload,
                    });
            }
            ClientCmd::Join {
                session,
                group,
                state,
            } => {
                let member = MemberId {
                    broker: self.id,
                    session,
                };
                self.push_request(GroupRequest::Join {
                    group,
                    member,
                    state,
                });
            }
            ClientCmd::Leave { session, group } => {
                let member = MemberId {
                    broker: self.id,
                    session,
                };
                // A join of this member still waiting here (its client's, or
                // the one a rejoin queued for it) is cancelled: its client
                // left, and a later join is a new membership, which must not
                // be confused with a view that applied the old join.
                self.requests.retain(|(_, r)| {
                    !matches!(r, GroupRequest::Join { group: g, member: m, .. }
                        if *g == group && *m == member)
                });
                self.out.push_back(Output::LeaveTaken {
                    session,
                    group: group.clone(),
                });
                self.push_request(GroupRequest::Leave { group, member });
            }
            ClientCmd::StateReply { transfer, data } => return self.on_state_reply(transfer, data),
            ClientCmd::Consumed {
                session,
                group,
                count,
            } => {
                let member = MemberId {
                    broker: self.id,
                    session,
                };
                if let Some(b) = self.backlog.get_mut(&(group, member)) {
                    b.outstanding = b.outstanding.saturating_sub(count);
                    if self.cfg.member_queue.is_some_and(|l| b.outstanding < l) {
                        b.full_since = None;
                    }
                }
            }
        }
        Ok(())
    }

    /// Reports a member of an installed group view as expelled (once) and
    /// asks for its removal through the next view change.
    pub(crate) fn expel(&mut self, group: String, member: MemberId, reason: ExpelReason) {
        let is_member = self
            .epoch
            .as_ref()
            .and_then(|e| e.groups.get(&group))
            .is_some_and(|g| g.members.contains(&member));
        if !is_member || !self.muted.insert((group.clone(), member)) {
            return;
        }
        self.out.push_back(Output::Expelled {
            group: group.clone(),
            member,
            reason,
        });
        self.push_request(GroupRequest::Expel { group, member });
    }

    /// Queues a local membership request for the next view change.
    pub(crate) fn push_request(&mut self, r: GroupRequest) {
        self.request_seq += 1;
        self.requests.push((self.request_seq, r));
    }

    /// Sends queued publishes, delivers what became deliverable and sends
    /// batched sequencer decisions. Runs after every input.
    pub(crate) fn pump(&mut self) {
        if !self.active() {
            return;
        }
        // Credit window: at most `max_unstable` own messages per group not
        // yet received everywhere; the rest wait in their group's queue.
        if self.outbox_len > 0 {
            let waiting: Vec<String> = self.outbox.keys().cloned().collect();
            for group in waiting {
                while self.has_credit(&group) {
                    let Some(p) = self.outbox.get_mut(&group).and_then(VecDeque::pop_front) else {
                        break;
                    };
                    self.outbox_len -= 1;
                    self.multicast(p);
                }
                if self.outbox.get(&group).is_some_and(VecDeque::is_empty) {
                    self.outbox.remove(&group);
                }
            }
        }
        let names: Vec<String> = match &self.epoch {
            Some(e) => e.groups.keys().cloned().collect(),
            None => return,
        };
        for name in names {
            self.deliver_group(&name);
        }
    }

    fn has_credit(&self, group: &str) -> bool {
        let Some(e) = &self.epoch else {
            return false;
        };
        let Some(g) = e.groups.get(group) else {
            return true;
        };
        let stable = g.acks.iter().map(|a| a[e.me]).min().unwrap_or(0);
        g.my_seq.saturating_sub(stable) < self.cfg.max_unstable as u64
    }

    fn multicast(&mut self, p: Pending) {
        let Some(e) = &mut self.epoch else { return };
        self.msg_counter += 1;
        let id = MsgId {
            origin: self.id,
            seq: self.msg_counter,
        };
        let me = e.me;
        let view = e.view.id;
        let members = e.view.members.clone();
        let pub_seq = self.pub_seqs.entry(p.session).or_insert(0);
        *pub_seq += 1;
        let pub_seq = *pub_seq;
        let g = e.group_mut(&p.group);
        g.my_seq += 1;
        let deps = if p.ordering >= Ordering::Causal {
            g.streams.iter().map(|s| s.delivered).collect()
        } else {
            Vec::new()
        };
        let msg = DataMsg {
            view,
            group: p.group,
            rank: me as u32,
            seq: g.my_seq,
            id,
            publisher: MemberId {
                broker: self.id,
                session: p.session,
            },
            pub_seq,
            ordering: p.ordering,
            safe: p.safe,
            deps,
            payload: p.payload,
        };
        g.insert(me, msg.clone());
        for to in members {
            if to != self.id {
                self.send(to, PeerMsg::Data(msg.clone()));
            }
        }
    }

    pub(crate) fn deliver_group(&mut self, name: &str) {
        let defects = self.cfg.defects.clone();
        let Some(e) = &mut self.epoch else { return };
        let me = e.me;
        let view = e.view.id;
        let members = e.view.members.clone();
        let Some(g) = e.groups.get_mut(name) else {
            return;
        };
        let msgs = g.try_deliver(me, &defects);
        let unsent = std::mem::take(&mut g.unsent);
        if !unsent.is_empty() {
            let first = g.dec_len() - unsent.len() as u64 + 1;
            let last = *members.last().unwrap_or(&self.id);
            for to in &members {
                if *to == self.id {
                    continue;
                }
                let mut entries = unsent.clone();
                let mut first = first;
                if defects.swap_decisions && *to == last {
                    // Defect: hold a lone decision back and send it swapped
                    // with the next one.
                    match g.defect_held.take() {
                        Some((held_first, mut held)) => {
                            held.extend(entries);
                            entries = held;
                            first = held_first;
                        }
                        None if entries.len() == 1 => {
                            g.defect_held = Some((first, entries));
                            continue;
                        }
                        None => {}
                    }
                    if entries.len() >= 2 {
                        entries.swap(0, 1);
                    }
                }
                let o = OrderMsg {
                    view,
                    group: name.to_string(),
                    first,
                    entries,
                };
                self.out.push_back(Output::Send {
                    to: *to,
                    envelope: Envelope {
                        from: self.id,
                        to: *to,
                        msg: PeerMsg::Order(o),
                    },
                });
            }
        }
        for m in msgs {
            self.emit_delivery(view, m, false);
        }
    }

    /// Emits the delivery of `m` (ordered in `view`) to the local members of
    /// its group, holding it back for joiners still waiting for their
    /// checkpoint.
    pub(crate) fn emit_delivery(&mut self, view: ViewId, m: DataMsg, flush: bool) {
        let Some(e) = &self.epoch else { return };
        let local: Vec<MemberId> = e
            .groups
            .get(&m.group)
            .map(|g| {
                g.members
                    .iter()
                    .filter(|x| x.broker == self.id)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        let d = Delivery {
            group: m.group.clone(),
            view,
            id: m.id,
            publisher: m.publisher,
            pub_seq: m.pub_seq,
            ordering: m.ordering,
            safe: m.safe,
            payload: m.payload,
            targets: Vec::new(),
            deferred: false,
        };
        if self.muted.is_empty() && self.incoming.is_empty() && self.cfg.member_queue.is_none() {
            // The common case: nobody muted, no transfer under way.
            self.out.push_back(Output::Deliver(Delivery {
                targets: local,
                ..d
            }));
            if !flush && !self.late_requests.is_empty() {
                let group = m.group;
                self.release_late_requests(&group);
            }
            return;
        }
        let mut targets = Vec::new();
        let mut overflow = Vec::new();
        for x in local {
            if self.muted.contains(&(d.group.clone(), x)) {
                continue;
            }
            match self
                .incoming
                .iter_mut()
                .find(|(t, _)| t.group == d.group && t.joiner == x)
            {
                Some((_, inc)) if inc.failed => {}
                Some((t, inc)) if inc.deferred.len() >= self.cfg.max_deferred => {
                    overflow.push(t.clone());
                }
                Some((_, inc)) => inc.deferred.push(Delivery {
                    targets: vec![x],
                    deferred: true,
                    ..d.clone()
                }),
                None => targets.push(x),
            }
        }
        for t in overflow {
            self.give_up_transfer(t);
        }
        if let Some(limit) = self.cfg.member_queue {
            for x in &targets {
                let b = self.backlog.entry((d.group.clone(), *x)).or_default();
                b.outstanding += 1;
                if b.outstanding >= limit && b.full_since.is_none() {
                    b.full_since = Some(self.now);
                }
            }
        }
        let group = d.group.clone();
        self.out
            .push_back(Output::Deliver(Delivery { targets, ..d }));
        if !flush {
            self.release_late_requests(&group);
        }
    }
}
