//! Delivery leases: a broker delivers and sends in a view only while a
//! majority of that view (itself included) has recently confirmed, for that
//! very view, that it will not help exclude it.
//!
//! *Granting.* Every heartbeat carries the sender's clock (`stamp`) and, for
//! each member of the view it heard from in that view, the latest stamp it
//! heard (`echoes`). Echoing member X's stamp at local time `g` is a
//! *grant*: the granter promises not to accept any view change that
//! excludes X before `g + lease` on its own clock. A broker that is flushing
//! (it answered a view change) grants nothing.
//!
//! *Holding.* When X receives an echo of its own stamp `t` from member M
//! in X's current view, it holds a lease from M until `t + lease − margin`
//! on X's clock: `t` was taken before M's grant, and the margin covers clock
//! rates that differ by up to `1 / LEASE_MARGIN_DIV`. X is *leased* while
//! the members it holds a valid lease from, plus itself, are a majority of
//! its view. Never-heard members, data, acknowledgements and stamps of an
//! older view never count.
//!
//! *Why a cut-off broker cannot deliver.* A successor of X's view that
//! excludes X is chosen only once every proposed member — a majority of the
//! view — accepted it. If X delivers at time `T`, a majority granted it
//! leases valid at `T`; the two majorities share a member, which accepted
//! only after its grant expired, that is after `T`. So every install of
//! such a successor happens after X's last delivery in the old view.
//!
//! The cost: after a view change a broker delivers again only once a
//! majority echoed a stamp of the new view (about one round trip; the
//! first heartbeat of a view is answered at once), and excluding a live but
//! cut-off broker waits for the grants it got before the change started.

use crate::broker::Broker;
use crate::id::{NodeId, Time};
use crate::wire::{Heartbeat, Install, PeerMsg};

/// The holder ends its lease `lease / LEASE_MARGIN_DIV` before the granter
/// is free, so brokers whose clocks run at rates up to 10 % apart agree.
const LEASE_MARGIN_DIV: u64 = 10;

impl Broker {
    /// How long a grant binds its granter (ms).
    pub(crate) fn lease_ms(&self) -> u64 {
        self.cfg.lease.unwrap_or(self.cfg.suspect_timeout)
    }

    /// The stamps to echo in a heartbeat sent now: none while flushing.
    fn echoes(&self) -> Vec<(NodeId, u64)> {
        if self.flushing() {
            return Vec::new();
        }
        self.stamps_heard.iter().map(|(m, t)| (*m, *t)).collect()
    }

    /// Sends a heartbeat of the current view to `to`, recording the grants
    /// it carries.
    pub(crate) fn send_heartbeat(&mut self, to: &[NodeId]) {
        let mut hb = self.heartbeat();
        hb.stamp = self.now.0;
        hb.echoes = self.echoes();
        for m in to {
            if *m == self.id {
                continue;
            }
            if hb.echoes.iter().any(|(n, _)| n == m) {
                self.granted.insert(*m, self.now);
                self.echoed.insert(*m);
            }
            self.send(*m, PeerMsg::Heartbeat(hb.clone()));
        }
    }

    /// A heartbeat of the current view from member `from`: note its stamp
    /// (to echo) and the lease it grants this broker. Answers at once the
    /// first heartbeat of a member in this view, so leases of a new view
    /// are in place after about one round trip.
    pub(crate) fn on_lease_heartbeat(&mut self, from: NodeId, hb: &Heartbeat) {
        let t = self.stamps_heard.entry(from).or_insert(0);
        *t = (*t).max(hb.stamp);
        let me = self.id;
        let since = self.view_since;
        let end = hb
            .echoes
            .iter()
            .filter(|(n, t)| *n == me && Time(*t) >= since)
            .map(|(_, t)| Time(*t).plus(self.lease_ms() - self.lease_ms() / LEASE_MARGIN_DIV))
            .max();
        if let Some(end) = end {
            let l = self.lease_until.entry(from).or_insert(Time(0));
            *l = (*l).max(end);
        }
        // A member suspected by force (it ignored two rounds) that echoes a
        // stamp sent after the force was set hears this broker again: both
        // directions work, so the force ends (a broker that was frozen for a
        // moment is not excluded by the next view change, which could leave
        // a view one more failure blocks; fault seed 103).
        if let Some(until) = self.forced.get(&from).copied() {
            let set = until.0.saturating_sub(2 * self.cfg.flush_timeout);
            if hb.echoes.iter().any(|(n, t)| *n == me && *t > set) {
                self.forced.remove(&from);
                self.round_failures.remove(&from);
            }
        }
        if !self.flushing() && !self.echoed.contains(&from) {
            self.send_heartbeat(&[from]);
        }
    }

    /// Does a majority of the current view (this broker included) hold
    /// this broker to its view right now?
    pub(crate) fn leased(&self) -> bool {
        let Some(e) = &self.epoch else { return false };
        let valid = e
            .view
            .members
            .iter()
            .filter(|m| **m == self.id || self.lease_until.get(m).is_some_and(|t| *t > self.now))
            .count();
        valid * 2 > e.view.members.len()
    }

    /// Earliest time this broker may accept `inst`: once every grant it
    /// gave to a member of the old view that `inst` excludes has expired.
    pub(crate) fn accept_hold(&self, inst: &Install) -> Time {
        inst.prev_members
            .iter()
            .filter(|m| !inst.view.contains(**m))
            .filter_map(|m| self.granted.get(m))
            .map(|g| g.plus(self.lease_ms()))
            .max()
            .unwrap_or(Time(0))
    }

    /// A new view: leases and stamps are per view; grants outlive it (they
    /// bind the granter whatever it installs) until they expire.
    pub(crate) fn reset_leases(&mut self) {
        self.lease_until.clear();
        self.stamps_heard.clear();
        self.echoed.clear();
        self.view_since = self.now;
        let (now, l) = (self.now, self.lease_ms());
        self.granted.retain(|_, g| g.plus(l) > now);
        self.next_heartbeat = self.now;
    }
}
