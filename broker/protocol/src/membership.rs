//! Mesh membership: heartbeats, suspicion, admission of joiners, exclusion
//! and rejoin, and the coordinator-led view change (propose / report,
//! accept / accepted, commit) that agrees on the next configuration and the
//! flush that precedes it.
//!
//! The view change is a Paxos instance per base view: a ballot is a
//! [`ViewId`]; a broker promises the highest ballot for its base view and
//! reports the highest value it accepted, and a coordinator that finds an
//! accepted value for its base re-proposes it. Accept and commit need every
//! proposed member, and the proposed members always contain a majority of
//! the base view, so two different successors of one view can never both
//! be committed.

use std::collections::{BTreeMap, BTreeSet};

use crate::broker::{Broker, Epoch};
use crate::error::Error;
use crate::flush::compute_flush;
use crate::group::GroupState;
use crate::id::{MemberId, MeshView, NodeId, Time, ViewId};
use crate::io::{ExpelReason, GroupViewChange, Output};
use crate::wire::{
    GroupInstall, GroupRequest, Heartbeat, Install, PeerMsg, Propose, Report, Returning,
};

/// A promise given in phase 1.
#[derive(Debug, Clone)]
pub(crate) struct Promise {
    pub ballot: ViewId,
    pub coordinator: NodeId,
    pub base: ViewId,
    pub at: Time,
}

/// A view change run by this broker as coordinator.
#[derive(Debug, Clone)]
pub(crate) struct Round {
    pub ballot: ViewId,
    pub base: ViewId,
    pub base_members: Vec<NodeId>,
    pub members: Vec<NodeId>,
    pub reports: BTreeMap<NodeId, Report>,
    pub value: Option<Install>,
    pub acks: BTreeSet<NodeId>,
    pub deadline: Time,
}

/// How many recent commits are kept to catch up lagging brokers.
const COMMIT_HISTORY: usize = 8;
/// Most brokers a joiner remembers hearing from (see `heard_seeds`).
const MAX_HEARD_SEEDS: usize = 64;

impl Broker {
    /// Periodic work: heartbeats, join retries, suspicion, round timeouts,
    /// minority detection and starting view changes.
    pub(crate) fn on_tick(&mut self) {
        let now = self.now;
        let Some(e) = &self.epoch else {
            if self.may_auto_bootstrap() || self.may_recover_restarted_mesh() {
                self.bootstrap_now();
                return;
            }
            if now >= self.next_join {
                self.next_join = now.plus(self.cfg.join_retry);
                for s in self.cfg.seeds.clone() {
                    if s != self.id.name {
                        let r = self.join_request();
                        self.send(NodeId::new(s, 0), r);
                    }
                }
                // A restarted broker also asks every broker of the view it
                // remembers (one of them may be left alone in it).
                let remembered: Vec<u32> = match &self.cfg.returning {
                    Some(r) if !self.had_view => r
                        .members
                        .iter()
                        .map(|m| m.name)
                        .filter(|n| *n != self.id.name && !self.cfg.seeds.contains(n))
                        .collect(),
                    _ => Vec::new(),
                };
                for n in remembered {
                    let r = self.join_request();
                    self.send(NodeId::new(n, 0), r);
                }
                for s in std::mem::take(&mut self.heard_seeds) {
                    if !self.cfg.seeds.contains(&s.name) {
                        let r = self.join_request();
                        self.send(s, r);
                    }
                }
            }
            return;
        };
        let members = e.view.members.clone();
        if now >= self.next_heartbeat {
            self.next_heartbeat = now.plus(self.cfg.heartbeat_interval);
            self.send_heartbeat(&members);
            self.acked_by_heartbeat();
        }
        for m in &members {
            if *m == self.id {
                continue;
            }
            let heard = self.last_heard.get(m).copied().unwrap_or(now);
            if now.since(heard) > self.cfg.suspect_timeout {
                self.suspects.insert(*m);
            }
        }
        let stale = self.cfg.suspect_timeout + 3 * self.cfg.join_retry;
        self.joiners.retain(|_, (_, t)| now.since(*t) <= stale);
        self.standins.retain(|_, (_, t)| now.since(*t) <= stale);
        if let Some(r) = &self.round {
            if now >= r.deadline {
                let me = self.id;
                let silent: Vec<NodeId> = r
                    .members
                    .iter()
                    .filter(|m| **m != me)
                    .filter(|m| {
                        if r.value.is_none() {
                            !r.reports.contains_key(m)
                        } else {
                            !r.acks.contains(m)
                        }
                    })
                    .copied()
                    .collect();
                for m in silent {
                    let n = self.round_failures.entry(m).or_insert(0);
                    *n += 1;
                    if *n >= 2 || self.suspects.contains(&m) {
                        let until = now.plus(2 * self.cfg.flush_timeout);
                        self.forced.insert(m, until);
                    }
                }
                self.round = None;
            }
        }
        self.forced.retain(|_, until| now < *until);
        let alive = members
            .iter()
            .filter(|m| !self.suspects.contains(*m))
            .count();
        let minority = alive * 2 <= members.len();
        if minority && !self.minority {
            self.minority = true;
            self.out.push_back(Output::Blocked);
        } else if !minority && self.minority && self.may_unblock() {
            self.minority = false;
            self.out.push_back(Output::Unblocked);
        }
        self.check_slow();
        self.check_transfers();
        self.accept_when_free();
        self.learn_chosen();
        self.maybe_start_round();
    }

    /// A join request; a restarted broker that has not been admitted yet
    /// says what it remembers (see [`crate::wire::Returning`]).
    fn join_request(&self) -> PeerMsg {
        PeerMsg::JoinRequest(self.cfg.returning.clone().filter(|_| !self.had_view))
    }

    /// `auto_bootstrap`: a broker with no history that nobody admitted,
    /// that heard from no member of a mesh and that has the smallest name
    /// among the brokers it can reach starts the mesh once its wait is over.
    fn may_auto_bootstrap(&self) -> bool {
        let Some(wait) = self.cfg.auto_bootstrap else {
            return false;
        };
        self.epoch.is_none()
            && !self.had_view
            && !self.mesh_seen
            && self.heard_seeds.is_empty()
            && self.now >= self.started_at.plus(wait)
            && self.reachable.iter().all(|n| *n > self.id.name)
    }

    /// Every broker of the newest view the restarted brokers remember
    /// restarted too: nobody is left to run a view change from it. If all
    /// of its brokers are back, none remembers a later view and none
    /// accepted a value that removes a broker based on it (or a later
    /// view), that view has no successor anywhere; the broker with the
    /// smallest name among its members then starts a new mesh and the
    /// others join it (see `docs/protocol.md` §4b).
    fn may_recover_restarted_mesh(&self) -> bool {
        let Some(mine) = &self.cfg.returning else {
            return false;
        };
        if self.epoch.is_some() || self.had_view {
            return false;
        }
        // The newest view any of them remembers (some may have crashed
        // lagging one view behind).
        let Some((newest, members)) = std::iter::once(mine)
            .chain(self.restarted_peers.values())
            .filter_map(|r| r.view.map(|v| (v, &r.members)))
            .max_by_key(|(v, _)| *v)
        else {
            return false;
        };
        // A member of a mesh answered with that view or a later one: it is
        // alive, so it runs the view change (a broker left behind in an
        // older view, blocked, does not count).
        if self.seen_view.is_some_and(|v| v >= newest) {
            return false;
        }
        let me = self.id.name;
        if !members.iter().any(|m| m.name == me) || members.iter().any(|m| m.name < me) {
            return false;
        }
        members.iter().all(|m| {
            let r = if m.name == me {
                Some(mine)
            } else {
                self.restarted_peers.get(&m.name)
            };
            r.is_some_and(|r| {
                r.view.is_some_and(|v| v <= newest) && r.accepted.is_none_or(|a| a < newest)
            })
        })
    }

    /// If the coordinator of the value this broker accepted vanished, the
    /// value may still be chosen: the coordinator accepted it itself, and
    /// heartbeats tell which other members accepted it. Once a majority of
    /// the base view is known to have accepted it, any later ballot would
    /// re-propose it, so committing it here is safe — and it is the only way
    /// forward when the base view has lost its majority but the new one has
    /// not.
    fn learn_chosen(&mut self) {
        let Some((ballot, value)) = self.accepted.clone() else {
            return;
        };
        let Some(e) = &self.epoch else {
            return;
        };
        if value.prev != e.view.id || self.round.is_some() {
            return;
        }
        let stalled = self.is_suspected(ballot.coordinator)
            || self
                .promise
                .as_ref()
                .is_none_or(|p| self.now.since(p.at) > 2 * self.cfg.flush_timeout);
        if !stalled {
            return;
        }
        let base = &e.view.members;
        // The coordinator counts only once it is seen to have accepted: it
        // may hold its own acceptance (its grants to excluded brokers) and
        // accept a higher ballot meanwhile (sim seed 2024823: a member
        // committed a value its coordinator never accepted, while the
        // coordinator accepted and installed another successor).
        let known = |m: &NodeId| *m == self.id || self.accept_seen.get(m) == Some(&ballot);
        // A value that removes a broker is made durable by whoever accepts
        // it, so a restarted broker standing in for its old incarnation
        // still reports it: a majority of the base view is enough. One that
        // removes nobody is not kept across a restart (`accepted_base`), so
        // a later ballot counting a restarted stand-in could miss it: only
        // every proposed member's acceptance proves it (sim seed 2032346:
        // a broker committed such a value on the coordinator's and its own
        // acceptance, the coordinator restarted, and the third broker with
        // the stand-in chose another successor of the same view).
        let removes = value.prev_members.iter().any(|m| !value.view.contains(*m));
        if removes {
            if base.iter().filter(|m| known(m)).count() * 2 <= base.len() {
                return;
            }
        } else if !value.view.members.iter().all(known) {
            return;
        }
        let mut to: BTreeSet<NodeId> = value.view.members.iter().copied().collect();
        to.extend(value.prev_members.iter().copied());
        for m in to {
            self.send(m, PeerMsg::Commit(Box::new(value.clone())));
        }
        self.commit_locally(value);
    }

    /// A blocked broker unblocks only once a majority of its view holds
    /// it again (leases), not as soon as it hears from enough members: any
    /// frame of a member that already installed a view without it (after
    /// a heal) would otherwise unblock it for a moment, and its clients
    /// would see `Unblocked` before learning they were excluded.
    fn may_unblock(&self) -> bool {
        let d = &self.cfg.defects;
        self.leased() || d.deliver_in_minority || d.ignore_minority
    }

    pub(crate) fn is_suspected(&self, m: NodeId) -> bool {
        self.suspects.contains(&m) || self.forced.contains_key(&m)
    }

    pub(crate) fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            view: self.view_id(),
            promised: self.promise.as_ref().map(|p| p.ballot),
            accepted: self
                .accepted
                .as_ref()
                .filter(|(_, v)| Some(v.prev) == self.view_id())
                .map(|(b, _)| *b),
            // A flush whose coordinator gave up (or moved on) must be
            // finished by someone: ask the current coordinator for a round.
            wants_change: !self.requests.is_empty()
                || (self.flushing()
                    && self
                        .promise
                        .as_ref()
                        .is_some_and(|p| self.now.since(p.at) > 2 * self.cfg.flush_timeout)),
            flushing: self.flushing(),
            frontiers: match &self.epoch {
                Some(e) => e.groups.values().map(GroupState::frontier).collect(),
                None => Vec::new(),
            },
            stamp: self.now.0,
            echoes: Vec::new(),
        }
    }

    pub(crate) fn on_heartbeat(&mut self, from: NodeId, hb: Heartbeat) -> Result<(), Error> {
        let Some(e) = &mut self.epoch else {
            // A joiner hearing from a member of some view may already be in
            // that view (its commit lost with a crashed coordinator): ask
            // the sender too, which answers a member with a catch-up.
            if hb.view.is_some() {
                self.mesh_seen = true;
                self.seen_view = self.seen_view.max(hb.view);
                if self.heard_seeds.len() < MAX_HEARD_SEEDS {
                    self.heard_seeds.insert(from);
                }
            }
            return Ok(());
        };
        let cur = e.view.id;
        if let Some(rank) = e.view.rank(from) {
            // Ballot fields count only from members (and are bounded by
            // `check_numbers`), so no outsider can inflate the counter.
            if let Some(p) = hb.promised {
                self.max_counter = self.max_counter.max(p.counter);
            }
            if hb.view == Some(cur) {
                match hb.accepted {
                    Some(b) => self.accept_seen.insert(from, b),
                    None => self.accept_seen.remove(&from),
                };
                // A member is flushing our view for a view change we may be
                // left out of (cut off while it started): deliver no more in
                // this view until we learn how the change ends.
                if hb.flushing {
                    self.peers_flushing.insert(from);
                } else {
                    self.peers_flushing.remove(&from);
                }
                for f in &hb.frontiers {
                    e.group_mut(&f.group).apply_frontier(rank, f);
                }
                if hb.wants_change {
                    self.change_wanted = true;
                }
                self.on_lease_heartbeat(from, &hb);
            } else if hb.view < Some(cur) {
                self.catch_up(from, hb.view);
            }
        } else {
            self.note_restart(from);
            if hb.view.is_some() && hb.view < Some(cur) {
                self.send(from, PeerMsg::Excluded { view: cur });
            }
        }
        Ok(())
    }

    /// A newer incarnation of a member's name shows the member is dead.
    pub(crate) fn note_restart(&mut self, from: NodeId) {
        let Some(e) = &self.epoch else { return };
        if let Some(old) = e
            .view
            .members
            .iter()
            .find(|m| m.name == from.name && m.incarnation < from.incarnation)
        {
            self.forced
                .insert(*old, self.now.plus(2 * self.cfg.flush_timeout));
        }
    }

    /// Sends a lagging broker the commit that moves it forward from `their`.
    pub(crate) fn catch_up(&mut self, to: NodeId, their: Option<ViewId>) {
        let pick = self.commits.iter().rev().find(|c| match their {
            Some(v) => c.prev == v,
            None => c.view.contains(to) && !c.prev_members.contains(&to),
        });
        if let Some(c) = pick.cloned() {
            self.send(to, PeerMsg::Commit(Box::new(c)));
        }
    }

    pub(crate) fn on_join_request(&mut self, from: NodeId, returning: Option<Returning>) {
        let Some(e) = &self.epoch else {
            if let Some(r) = returning {
                if self.restarted_peers.len() < MAX_HEARD_SEEDS
                    || self.restarted_peers.contains_key(&from.name)
                {
                    self.restarted_peers.insert(from.name, r);
                }
            }
            return;
        };
        if e.view.contains(from) {
            self.catch_up(from, None);
            return;
        }
        // A restart of a member of exactly this view, whose old incarnation
        // accepted no value based on it: it may stand in for that
        // incarnation towards a majority (see `maybe_start_round`).
        if let Some(r) = returning {
            let old = e
                .view
                .members
                .iter()
                .find(|m| m.name == from.name && m.incarnation < from.incarnation);
            // It remembers this view or an older one (a broker that lagged
            // behind when it crashed): its old incarnation is a member here.
            let not_newer = r.view.is_some_and(|v| v <= e.view.id);
            let accepted_nothing = r.accepted.is_none_or(|a| a < e.view.id);
            if old.is_some() && not_newer && accepted_nothing {
                self.standins.insert(from.name, (from, self.now));
            }
        }
        self.note_restart(from);
        self.note_joiner(from);
        // Tell the joiner a mesh exists (so it never starts one of its own,
        // see `auto_bootstrap`); to a broker with a view this is the usual
        // "you are not in it".
        if let Some(cur) = self.view_id() {
            self.send(from, PeerMsg::Excluded { view: cur });
        }
        // Only the coordinator admits joiners, and a joiner's seeds need not
        // include it: pass the request on.
        if let Some(c) = self.coordinator() {
            if c != self.id {
                self.send(c, PeerMsg::JoinForward { joiner: from });
            }
        }
    }

    fn note_joiner(&mut self, j: NodeId) {
        match self.joiners.get(&j.name) {
            Some((old, _)) if old.incarnation > j.incarnation => {}
            _ => {
                self.joiners.insert(j.name, (j, self.now));
            }
        }
    }

    /// A member passed on a joiner's request (see [`Self::on_join_request`]).
    /// Not forwarded again, so forwards cannot loop.
    pub(crate) fn on_join_forward(&mut self, from: NodeId, joiner: NodeId) -> Result<(), Error> {
        let Some(e) = &self.epoch else { return Ok(()) };
        if !e.view.contains(from) {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "join forwarded by a non-member",
            });
        }
        if joiner == self.id || joiner.name == self.id.name {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "join forwarded for this broker",
            });
        }
        if e.view.contains(joiner) {
            self.catch_up(joiner, None);
            return Ok(());
        }
        self.note_restart(joiner);
        self.note_joiner(joiner);
        Ok(())
    }

    pub(crate) fn on_excluded(&mut self, view: ViewId) {
        if self.epoch.is_none() {
            self.mesh_seen = true;
            self.seen_view = self.seen_view.max(Some(view));
        }
        if self.view_id().is_some_and(|v| view > v) {
            self.rejoin();
        }
    }

    fn coordinator(&self) -> Option<NodeId> {
        let e = self.epoch.as_ref()?;
        e.view
            .members
            .iter()
            .copied()
            .find(|m| *m == self.id || !self.is_suspected(*m))
    }

    fn maybe_start_round(&mut self) {
        let Some(e) = &self.epoch else { return };
        // Restarted members standing in for their dead old incarnations
        // (they remember this very view and accepted nothing based on it):
        // with them a member left in a minority can still gather a
        // majority of the view, so a mesh that lost a majority to restarts
        // recovers once they are back.
        let standing_in = e
            .view
            .members
            .iter()
            .filter(|m| {
                self.is_suspected(**m)
                    && self
                        .standins
                        .get(&m.name)
                        .is_some_and(|(n, _)| n.incarnation > m.incarnation)
            })
            .count();
        let alive = e
            .view
            .members
            .iter()
            .filter(|m| **m == self.id || !self.is_suspected(**m))
            .count();
        let quorum = (alive + standing_in) * 2 > e.view.members.len();
        if (self.minority && !quorum) || self.round.is_some() || self.coordinator() != Some(self.id)
        {
            return;
        }
        let base = e.view.id;
        let flushing = self.promise.as_ref().is_some_and(|p| p.base == base);
        if let Some(p) = &self.promise {
            if p.base == base
                && p.coordinator != self.id
                && !self.is_suspected(p.coordinator)
                && self.now.since(p.at) < 2 * self.cfg.flush_timeout
            {
                return;
            }
        }
        let base_members = e.view.members.clone();
        let mut members: Vec<NodeId> = base_members
            .iter()
            .copied()
            .filter(|m| !self.is_suspected(*m))
            .collect();
        let excluding = members.len() < base_members.len();
        let new_joiners: Vec<NodeId> = self
            .joiners
            .values()
            .map(|(j, _)| *j)
            .filter(|j| !members.iter().any(|m| m.name == j.name))
            .collect();
        if !(excluding
            || !new_joiners.is_empty()
            || self.change_wanted
            || !self.requests.is_empty()
            || flushing)
        {
            return;
        }
        if (members.len() + standing_in) * 2 <= base_members.len() {
            return;
        }
        let Some(counter) = self.max_counter.checked_add(1) else {
            return;
        };
        members.extend(new_joiners);
        self.max_counter = counter;
        let ballot = ViewId {
            counter,
            coordinator: self.id,
        };
        self.promise = Some(Promise {
            ballot,
            coordinator: self.id,
            base,
            at: self.now,
        });
        self.change_wanted = false;
        let report = self.make_report(ballot);
        let mut reports = BTreeMap::new();
        reports.insert(self.id, report);
        self.round = Some(Round {
            ballot,
            base,
            base_members,
            members: members.clone(),
            reports,
            value: None,
            acks: BTreeSet::new(),
            deadline: self.now.plus(self.cfg.flush_timeout),
        });
        let p = Propose {
            ballot,
            base,
            members: members.clone(),
        };
        for m in members {
            self.send(m, PeerMsg::Propose(p.clone()));
        }
        self.check_round();
    }

    pub(crate) fn make_report(&self, ballot: ViewId) -> Report {
        let base = self.promise.as_ref().map(|p| p.base);
        Report {
            ballot,
            current: self.view_id(),
            accepted: self.accepted.clone().filter(|(_, v)| Some(v.prev) == base),
            groups: match &self.epoch {
                Some(e) => e.groups.values().map(GroupState::report).collect(),
                None => Vec::new(),
            },
            requests: self.requests.clone(),
        }
    }

    pub(crate) fn send_report(&mut self) {
        let Some(p) = self.promise.clone() else {
            return;
        };
        let r = self.make_report(p.ballot);
        if p.coordinator == self.id {
            if let Some(round) = &mut self.round {
                if round.ballot == p.ballot {
                    round.reports.insert(self.id, r);
                }
            }
            return;
        }
        self.send(p.coordinator, PeerMsg::Report(Box::new(r)));
    }

    pub(crate) fn on_propose(&mut self, from: NodeId, p: Propose) -> Result<(), Error> {
        if p.ballot.coordinator != from {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "ballot of another coordinator",
            });
        }
        self.max_counter = self.max_counter.max(p.ballot.counter);
        let cur = self.view_id();
        if cur.is_some_and(|c| c > p.base) {
            self.catch_up(from, Some(p.base));
            return Ok(());
        }
        if !p.members.contains(&self.id) {
            return Ok(());
        }
        if let Some(pr) = &self.promise {
            if pr.base == p.base {
                if p.ballot < pr.ballot {
                    return Ok(());
                }
                if p.ballot == pr.ballot {
                    self.send_report();
                    return Ok(());
                }
            }
        }
        self.promise = Some(Promise {
            ballot: p.ballot,
            coordinator: from,
            base: p.base,
            at: self.now,
        });
        if self.round.as_ref().is_some_and(|r| r.ballot < p.ballot) {
            self.round = None;
        }
        self.send_report();
        Ok(())
    }

    pub(crate) fn on_report(&mut self, from: NodeId, r: Report) -> Result<(), Error> {
        if r.requests
            .iter()
            .any(|(_, q)| request_member(q).broker != from)
        {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "request for another broker's member",
            });
        }
        let Some(round) = &mut self.round else {
            return Ok(());
        };
        if r.ballot != round.ballot || !round.members.contains(&from) {
            return Ok(());
        }
        let base = round.base;
        if round.base_members.contains(&from) {
            if r.current != Some(base) {
                if r.current < Some(base) {
                    self.catch_up(from, r.current);
                }
                return Ok(());
            }
        } else if r.current.is_some() {
            return Ok(());
        }
        round.reports.insert(from, r);
        self.check_round();
        Ok(())
    }

    fn check_round(&mut self) {
        let Some(round) = &self.round else { return };
        if round.value.is_none() {
            if !round.members.iter().all(|m| round.reports.contains_key(m)) {
                return;
            }
            let value = self.choose_value();
            let Some(round) = &mut self.round else { return };
            round.value = Some(value.clone());
            let ballot = round.ballot;
            let members = round.members.clone();
            for m in members {
                self.send(
                    m,
                    PeerMsg::Accept {
                        ballot,
                        install: Box::new(value.clone()),
                    },
                );
            }
        }
        // Our own acceptance, once our grants to excluded brokers expired.
        if let Some(round) = &self.round {
            if let Some(v) = &round.value {
                if !round.acks.contains(&self.id) && self.now >= self.accept_hold(v) {
                    let (ballot, v) = (round.ballot, v.clone());
                    self.accepted = Some((ballot, v));
                    if let Some(round) = &mut self.round {
                        round.acks.insert(self.id);
                    }
                }
            }
        }
        let Some(round) = &self.round else { return };
        if round.members.iter().all(|m| round.acks.contains(m)) {
            let value = round.value.clone().expect("value chosen");
            let mut to: BTreeSet<NodeId> = value.view.members.iter().copied().collect();
            to.extend(value.prev_members.iter().copied());
            to.extend(round.members.iter().copied());
            for m in to {
                self.send(m, PeerMsg::Commit(Box::new(value.clone())));
            }
            self.round = None;
            self.commit_locally(value);
        }
    }

    /// Paxos value choice: re-propose the highest accepted value for this
    /// base, else build a new configuration from the reports.
    fn choose_value(&self) -> Install {
        let round = self.round.as_ref().expect("round");
        if let Some((_, v)) = round
            .reports
            .values()
            .filter_map(|r| r.accepted.as_ref())
            .filter(|(_, v)| v.prev == round.base)
            .max_by_key(|(b, _)| *b)
        {
            return v.clone();
        }
        let e = self.epoch.as_ref().expect("coordinator has a view");
        let n = round.base_members.len();
        let old_reports: Vec<&Report> = round
            .base_members
            .iter()
            .filter_map(|m| round.reports.get(m))
            .collect();
        let mut names: BTreeSet<String> = e.groups.keys().cloned().collect();
        for r in round.reports.values() {
            names.extend(r.groups.iter().map(|g| g.group.clone()));
            names.extend(r.requests.iter().map(|(_, q)| request_group(q).to_string()));
        }
        let mut groups = Vec::new();
        for name in names {
            let old = e.groups.get(&name).map(|g| (g.members.clone(), g.view_id));
            let old_members = old.as_ref().map(|o| o.0.clone()).unwrap_or_default();
            let old_stateful = e
                .groups
                .get(&name)
                .map(|g| g.stateful.clone())
                .unwrap_or_default();
            let mut members: Vec<MemberId> = old_members
                .iter()
                .copied()
                .filter(|m| round.members.contains(&m.broker))
                .collect();
            let mut expelled = Vec::new();
            let mut joined_with_state = Vec::new();
            let mut joined = Vec::new();
            let mut restating: Vec<MemberId> = Vec::new();
            for r in round.reports.values() {
                for (_, q) in &r.requests {
                    if request_group(q) != name {
                        continue;
                    }
                    match q {
                        GroupRequest::Join { member, state, .. } => {
                            if !members.contains(member) {
                                members.push(*member);
                                joined.retain(|m| m != member);
                                joined.push(*member);
                                joined_with_state.retain(|m| m != member);
                                if *state {
                                    joined_with_state.push(*member);
                                }
                            }
                        }
                        GroupRequest::Leave { member, .. } => members.retain(|m| m != member),
                        GroupRequest::Expel { member, .. } => {
                            if members.contains(member) {
                                members.retain(|m| m != member);
                                expelled.push(*member);
                            }
                        }
                        GroupRequest::Restate { member, .. } => {
                            if !restating.contains(member) {
                                restating.push(*member);
                            }
                        }
                    }
                }
            }
            joined.retain(|m| members.contains(m));
            joined_with_state.retain(|m| members.contains(m));
            // An expulsion undone by a later join in the same batch is not
            // an expulsion.
            expelled.retain(|m| !members.contains(m));
            restating.retain(|m| members.contains(m) && !joined.contains(m));
            // A member keeps the group's state if it joined with state (this
            // view's join decides for a member that re-joins in it).
            let any_provider = self.cfg.defects.any_provider;
            let keeps_state = |m: &MemberId| {
                if joined.contains(m) {
                    joined_with_state.contains(m)
                } else {
                    old_stateful.contains(m)
                }
            };
            // Providers: old members, preferring ones that have their state.
            let candidates: Vec<MemberId> = old_members
                .iter()
                .copied()
                .filter(|m| members.contains(m) && !joined.contains(m))
                .collect();
            // The members holding the group's state: old members that keep
            // state, except those whose own checkpoint is being re-based
            // (their state is incomplete).
            let holders: Vec<MemberId> = candidates
                .iter()
                .copied()
                .filter(|m| (any_provider || keeps_state(m)) && !restating.contains(m))
                .collect();
            // The oldest holder (older than `j` if `older`).
            let oldest_holder = |j: &MemberId, older: bool| {
                candidates
                    .iter()
                    .copied()
                    .take_while(|c| !older || c != j)
                    .find(|c| holders.contains(c))
            };
            let mut transfers: Vec<(MemberId, Option<MemberId>)> = Vec::new();
            for m in &restating {
                // A re-based checkpoint must cover everything since the
                // restater joined, so only an older holder can provide it.
                // If none is left, the state is gone with its last holder
                // (a member without state could only answer with an empty
                // checkpoint, losing what the restater has been held back).
                match oldest_holder(m, true) {
                    Some(p) => transfers.push((*m, Some(p))),
                    None => {
                        members.retain(|x| x != m);
                        expelled.push(*m);
                    }
                }
            }
            let stateful: Vec<MemberId> = members.iter().copied().filter(keeps_state).collect();
            let greports: Vec<Option<&crate::wire::GroupReport>> = old_reports
                .iter()
                .map(|r| r.groups.iter().find(|g| g.group == name))
                .collect();
            let flush = compute_flush(n, &greports);
            if members.is_empty() && flush.is_empty() && expelled.is_empty() {
                continue;
            }
            let view_id = match &old {
                Some((m, id))
                    if *m == members
                        && expelled.is_empty()
                        && joined.is_empty()
                        && restating.is_empty() =>
                {
                    *id
                }
                _ => round.ballot,
            };
            for j in &joined_with_state {
                // The oldest holder; only if no holder is left at all, the
                // oldest member that is not re-based (one without state
                // answers with an empty checkpoint, which is then the
                // group's state), or none (the joiner starts from nothing).
                let p = oldest_holder(j, false)
                    .or_else(|| candidates.iter().copied().find(|c| !restating.contains(c)));
                transfers.push((*j, p));
            }
            groups.push(GroupInstall {
                group: name,
                view_id,
                members,
                expelled,
                joined,
                flush,
                transfers,
                stateful,
            });
        }
        Install {
            view: MeshView {
                id: round.ballot,
                members: round.members.clone(),
            },
            prev: round.base,
            prev_members: round.base_members.clone(),
            groups,
            applied: round
                .reports
                .iter()
                .filter_map(|(n, r)| r.requests.iter().map(|(s, _)| *s).max().map(|s| (*n, s)))
                .collect(),
        }
    }

    pub(crate) fn on_accept(
        &mut self,
        from: NodeId,
        ballot: ViewId,
        inst: crate::wire::Install,
    ) -> Result<(), Error> {
        if ballot.coordinator != from {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "ballot of another coordinator",
            });
        }
        let Some(p) = &mut self.promise else {
            return Ok(());
        };
        if inst.prev != p.base || ballot < p.ballot {
            return Ok(());
        }
        p.ballot = ballot;
        p.coordinator = from;
        if self.now < self.accept_hold(&inst) {
            // Grants to a broker this value excludes still bind us.
            self.pending_accept = Some((from, ballot, inst));
            return Ok(());
        }
        self.pending_accept = None;
        self.accepted = Some((ballot, inst));
        self.send(from, PeerMsg::Accepted { ballot });
        Ok(())
    }

    /// Accepts what waited for grants to expire: a coordinator's `Accept`,
    /// or, as coordinator, the value of this broker's own round.
    fn accept_when_free(&mut self) {
        if let Some((from, ballot, inst)) = &self.pending_accept {
            if self.now >= self.accept_hold(inst) {
                let (from, ballot) = (*from, *ballot);
                let Some((_, _, inst)) = self.pending_accept.take() else {
                    return;
                };
                let current = self
                    .promise
                    .as_ref()
                    .is_some_and(|p| p.base == inst.prev && p.ballot == ballot);
                if current {
                    self.accepted = Some((ballot, inst));
                    self.send(from, PeerMsg::Accepted { ballot });
                }
            }
        }
        let waiting = self
            .round
            .as_ref()
            .is_some_and(|r| r.value.is_some() && !r.acks.contains(&self.id));
        if waiting {
            self.check_round();
        }
    }

    pub(crate) fn on_accepted(&mut self, from: NodeId, ballot: ViewId) {
        let Some(round) = &mut self.round else { return };
        if round.ballot != ballot || round.value.is_none() || !round.members.contains(&from) {
            return;
        }
        round.acks.insert(from);
        self.check_round();
    }

    pub(crate) fn on_commit(&mut self, from: NodeId, inst: Install) -> Result<(), Error> {
        if inst.view.members.is_empty() || inst.view.id <= inst.prev {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "malformed install",
            });
        }
        self.commit_locally(inst);
        Ok(())
    }

    fn commit_locally(&mut self, inst: Install) {
        let member = inst.view.contains(self.id);
        match self.view_id() {
            Some(cur) => {
                if inst.view.id <= cur {
                    return;
                }
                if inst.prev == cur && member {
                    self.apply_install(inst);
                } else if !member {
                    self.rejoin();
                }
            }
            None => {
                if member && !inst.prev_members.contains(&self.id) {
                    self.apply_install(inst);
                }
            }
        }
    }

    /// Flushes the old view, installs the new one, starts state transfers.
    fn apply_install(&mut self, inst: Install) {
        let old_view = self.view_id();
        // Requests raised before this install (as opposed to those its own
        // transfers raise below).
        let raised_before = self.request_seq;
        if let Some(old) = old_view {
            if !self.cfg.defects.skip_flush {
                for gi in &inst.groups {
                    for m in &gi.flush {
                        let Some(e) = &mut self.epoch else { break };
                        let g = e.group_mut(&gi.group);
                        let Some(st) = g.streams.get_mut(m.rank as usize) else {
                            continue;
                        };
                        if m.seq <= st.delivered {
                            continue;
                        }
                        st.delivered = m.seq;
                        self.emit_delivery(old, m.clone(), true);
                    }
                }
            }
        }
        let old_groups: BTreeMap<String, (Vec<MemberId>, ViewId)> = match &self.epoch {
            Some(e) => e
                .groups
                .iter()
                .map(|(k, g)| (k.clone(), (g.members.clone(), g.view_id)))
                .collect(),
            None => BTreeMap::new(),
        };
        let n = inst.view.members.len();
        let me = inst
            .view
            .rank(self.id)
            .expect("member of the installed view");
        self.out.push_back(Output::MeshView(inst.view.clone()));
        // Joins of this broker's members this install applies: requests
        // still live here. A local member listed as joined without one
        // had its join withdrawn by a leave after the coordinator
        // collected it (fault seed 172).
        let applied_here = inst
            .applied
            .iter()
            .find(|(n, _)| *n == self.id)
            .map_or(0, |a| a.1);
        let live_join = |group: &str, member: &MemberId| {
            self.requests.iter().any(|(seq, r)| {
                *seq <= applied_here
                    && matches!(r, GroupRequest::Join { group: g, member: m, .. }
                        if g == group && m == member)
            })
        };
        let withdrawn: BTreeMap<String, Vec<MemberId>> = inst
            .groups
            .iter()
            .map(|gi| {
                let w = gi
                    .joined
                    .iter()
                    .filter(|m| m.broker == self.id && !live_join(&gi.group, m))
                    .copied()
                    .collect();
                (gi.group.clone(), w)
            })
            .collect();
        self.peers_flushing.clear();
        self.pending_accept = None;
        let mut groups = BTreeMap::new();
        for gi in &inst.groups {
            let changed = match old_groups.get(&gi.group) {
                Some((m, id)) => *m != gi.members || *id != gi.view_id,
                None => !gi.members.is_empty(),
            };
            if changed {
                self.out.push_back(Output::GroupView(GroupViewChange {
                    view: crate::id::GroupView {
                        group: gi.group.clone(),
                        id: gi.view_id,
                        members: gi.members.clone(),
                    },
                    joined: gi.joined.clone(),
                    with_state: gi.transfers.iter().map(|t| t.0).collect(),
                    withdrawn: withdrawn.get(&gi.group).cloned().unwrap_or_default(),
                }));
            }
            if !gi.members.is_empty() {
                let mut g = GroupState::new(gi.group.clone(), gi.view_id, gi.members.clone(), n);
                g.stateful = gi.stateful.clone();
                groups.insert(gi.group.clone(), g);
            }
        }
        for (name, (before, _)) in &old_groups {
            if !before.is_empty() && !inst.groups.iter().any(|g| &g.group == name) {
                self.out.push_back(Output::GroupView(GroupViewChange {
                    view: crate::id::GroupView {
                        group: name.clone(),
                        id: inst.view.id,
                        members: Vec::new(),
                    },
                    joined: Vec::new(),
                    with_state: Vec::new(),
                    withdrawn: Vec::new(),
                }));
            }
        }
        self.epoch = Some(Epoch {
            view: inst.view.clone(),
            me,
            groups,
        });
        self.round = None;
        self.accepted = None;
        self.suspects.clear();
        self.forced.clear();
        self.round_failures.clear();
        self.accept_seen.clear();
        self.reset_leases();
        self.joiners.retain(|_, (j, _)| !inst.view.contains(*j));
        self.standins.clear();
        // An install proves the view was chosen, not that its members are
        // still around: the primary component may have moved on already
        // (a view learned alone, or a catch-up commit from another cut-off
        // broker). So the liveness clock carries over (no fresh
        // `suspect_timeout` of grace), and the broker is blocked in the new
        // view unless a majority of it is heard.
        let heard = std::mem::take(&mut self.last_heard);
        for m in &inst.view.members {
            if *m == self.id {
                continue;
            }
            match heard.get(m) {
                Some(h) => {
                    self.last_heard.insert(*m, *h);
                    if self.now.since(*h) > self.cfg.suspect_timeout {
                        self.suspects.insert(*m);
                    }
                }
                None => {
                    self.last_heard.insert(*m, self.now);
                }
            }
        }
        let alive = inst
            .view
            .members
            .iter()
            .filter(|m| !self.suspects.contains(*m))
            .count();
        let minority = alive * 2 <= inst.view.members.len();
        if minority && !self.minority {
            self.minority = true;
            self.out.push_back(Output::Blocked);
        } else if !minority && self.minority && self.may_unblock() {
            self.minority = false;
            self.out.push_back(Output::Unblocked);
        }
        self.after_install_transfers(&inst);
        self.after_install_flow(&inst);
        let groups_now = self
            .epoch
            .as_ref()
            .map(|e| e.groups.clone())
            .unwrap_or_default();
        let _ = groups_now;
        let me = self.id;
        let applied = inst
            .applied
            .iter()
            .find(|(n, _)| *n == me)
            .map_or(0, |a| a.1);
        self.requests.retain(|(s, _)| *s > applied);
        self.had_view = true;
        // Expulsions and re-based transfers concern a membership; once it
        // ended they are stale (a later re-join is a new membership).
        let groups_now = self
            .epoch
            .as_ref()
            .map(|e| e.groups.clone())
            .unwrap_or_default();
        // A member that left and joined again in this very install has a
        // new membership: requests raised for the old one are stale too
        // (seed 1078598: a re-base asked while flushing survived a
        // leave-and-rejoin and the member got two checkpoints).
        let rejoined = |group: &String, member: &MemberId| {
            inst.groups
                .iter()
                .any(|g| &g.group == group && g.joined.contains(member))
        };
        self.requests.retain(|(seq, r)| match r {
            GroupRequest::Expel { group, member } | GroupRequest::Restate { group, member } => {
                groups_now
                    .get(group)
                    .is_some_and(|g| g.members.contains(member))
                    && !(*seq <= raised_before && rejoined(group, member))
            }
            _ => true,
        });
        self.commits.push_back(inst);
        while self.commits.len() > COMMIT_HISTORY {
            self.commits.pop_front();
        }
        if self
            .promise
            .as_ref()
            .is_some_and(|p| Some(p.base) == self.view_id())
        {
            self.send_report();
        }
        let cur = self.view_id();
        let fut = std::mem::take(&mut self.future);
        for env in fut {
            let v = match &env.msg {
                PeerMsg::Data(d) => Some(d.view),
                PeerMsg::Order(o) => Some(o.view),
                PeerMsg::StateChunk(c) => Some(c.transfer.view),
                PeerMsg::StateAbort(t) => Some(t.view),
                _ => None,
            };
            if v == cur {
                let _ = self.on_peer(env);
            } else if v > cur {
                self.future.push(env);
            }
        }
    }

    /// This broker was excluded from the primary component: become a new
    /// incarnation and ask to be admitted again, re-joining local members
    /// as they joined (with state transfer for those that joined with
    /// state, so their state is brought up to date).
    pub(crate) fn rejoin(&mut self) {
        let old = self.id;
        let new = NodeId::new(old.name, old.incarnation + 1);
        // Publishes still waiting were accepted by the old incarnation, and
        // their causal past may be lost with its view. They are not sent:
        // their sessions are told (first, so the runtime tells them apart
        // from sent ones whose fate is unknown) and publish anew under the
        // new incarnation (new publisher streams, from sequence number 1).
        for q in std::mem::take(&mut self.outbox).into_values() {
            for p in q {
                self.out.push_back(Output::Unsent {
                    session: p.session,
                    group: p.group,
                    payload: p.payload,
                });
            }
        }
        self.outbox_len = 0;
        self.out.push_back(Output::Rejoining { old, new });
        if !self.minority {
            self.minority = true;
            self.out.push_back(Output::Blocked);
        }
        let all_state = self.cfg.defects.rejoin_with_state;
        let mut rejoins = Vec::new();
        if let Some(e) = &self.epoch {
            for g in e.groups.values() {
                for m in g.members.iter().filter(|m| m.broker == old) {
                    let state = all_state || g.stateful.contains(m);
                    rejoins.push((g.name.clone(), *m, state));
                }
            }
        }
        for (group, m, _) in &rejoins {
            self.out.push_back(Output::Expelled {
                group: group.clone(),
                member: *m,
                reason: ExpelReason::Partitioned,
            });
        }
        let mut requests: Vec<(String, MemberId, bool)> = Vec::new();
        for (_, r) in std::mem::take(&mut self.requests) {
            match r {
                GroupRequest::Join {
                    group,
                    member,
                    state,
                } => {
                    let member = MemberId {
                        broker: new,
                        session: member.session,
                    };
                    requests.retain(|(g, m, _)| !(*g == group && *m == member));
                    requests.push((group, member, state || all_state));
                }
                GroupRequest::Leave { group, member } => {
                    // The old membership is gone with the old incarnation.
                    let member = MemberId {
                        broker: new,
                        session: member.session,
                    };
                    requests.retain(|(g, m, _)| !(*g == group && *m == member));
                    rejoins.retain(|(g, m, _)| !(*g == group && m.session == member.session));
                }
                GroupRequest::Expel { .. } | GroupRequest::Restate { .. } => {}
            }
        }
        for (group, m, state) in rejoins {
            let member = MemberId {
                broker: new,
                session: m.session,
            };
            if !requests.iter().any(|(g, x, _)| *g == group && *x == member) {
                requests.push((group, member, state));
            }
        }
        for (group, member, state) in requests {
            self.push_request(GroupRequest::Join {
                group,
                member,
                state,
            });
        }
        self.pub_seqs.clear();
        self.id = new;
        self.epoch = None;
        self.commits.clear();
        self.promise = None;
        self.accepted = None;
        self.round = None;
        self.suspects.clear();
        self.forced.clear();
        self.round_failures.clear();
        self.accept_seen.clear();
        self.last_heard.clear();
        self.pending_accept = None;
        self.lease_until.clear();
        self.stamps_heard.clear();
        self.echoed.clear();
        self.granted.clear();
        self.joiners.clear();
        self.standins.clear();
        self.change_wanted = false;
        self.future.clear();
        self.incoming.clear();
        self.outgoing.clear();
        self.late_requests.clear();
        self.aborted.clear();
        self.backlog.clear();
        self.muted.clear();
        self.next_join = self.now;
    }

    /// Resends what a broken connection may have lost.
    pub(crate) fn on_link_up(&mut self, peer: NodeId) {
        // The runtime names a link by the incarnation its process started
        // with; a peer that rejoined since runs a later one in our view and
        // rounds. Resend to that one (else what was sent while the link was
        // down would never be sent again).
        let later = self
            .epoch
            .iter()
            .flat_map(|e| e.view.members.iter())
            .chain(self.round.iter().flat_map(|r| r.members.iter()))
            .chain(self.promise.iter().map(|p| &p.coordinator))
            .find(|m| m.name == peer.name && m.incarnation > peer.incarnation)
            .copied();
        let peer = later.unwrap_or(peer);
        self.note_restart(peer);
        if let Some(e) = &self.epoch {
            if let Some(pr) = e.view.rank(peer) {
                let me = e.me;
                let view = e.view.id;
                let mut sends = Vec::new();
                for g in e.groups.values() {
                    let acked = g.acks[pr][me];
                    for m in g.streams[me].msgs.values().filter(|m| m.seq > acked) {
                        sends.push(PeerMsg::Data(m.clone()));
                    }
                    if g.sequencer == me {
                        // Trimmed positions were delivered everywhere.
                        let from = g.dec_acks[pr].max(g.dec_base);
                        if from < g.dec_len() {
                            let i = (from - g.dec_base) as usize;
                            sends.push(PeerMsg::Order(crate::wire::OrderMsg {
                                view,
                                group: g.name.clone(),
                                first: from + 1,
                                entries: g.decisions[i..].to_vec(),
                            }));
                        }
                    }
                }
                for s in sends {
                    self.send(peer, s);
                }
                self.send_heartbeat(&[peer]);
            }
        } else if self.cfg.seeds.contains(&peer.name) {
            let r = self.join_request();
            self.send(peer, r);
        }
        if let Some(r) = &self.round {
            if r.members.contains(&peer) {
                let msg = match &r.value {
                    None if !r.reports.contains_key(&peer) => Some(PeerMsg::Propose(Propose {
                        ballot: r.ballot,
                        base: r.base,
                        members: r.members.clone(),
                    })),
                    Some(v) if !r.acks.contains(&peer) => Some(PeerMsg::Accept {
                        ballot: r.ballot,
                        install: Box::new(v.clone()),
                    }),
                    _ => None,
                };
                if let Some(m) = msg {
                    self.send(peer, m);
                }
            }
        }
        if let Some(p) = self.promise.clone() {
            if p.coordinator == peer
                && (self.flushing() || self.view_id().is_none_or(|v| v < p.base))
            {
                self.send_report();
                if let Some((b, _)) = &self.accepted {
                    if *b == p.ballot {
                        self.send(peer, PeerMsg::Accepted { ballot: *b });
                    }
                }
            }
        }
        self.resend_transfers(peer);
    }
}

pub(crate) fn request_group(r: &GroupRequest) -> &str {
    match r {
        GroupRequest::Join { group, .. }
        | GroupRequest::Leave { group, .. }
        | GroupRequest::Expel { group, .. }
        | GroupRequest::Restate { group, .. } => group,
    }
}

pub(crate) fn request_member(r: &GroupRequest) -> MemberId {
    match r {
        GroupRequest::Join { member, .. }
        | GroupRequest::Leave { member, .. }
        | GroupRequest::Expel { member, .. }
        | GroupRequest::Restate { member, .. } => *member,
    }
}
