//! Prompt acknowledgements. Every broker tells the others how far it got in
//! each group (its receive frontier, see [`crate::wire::Frontier`]).
//! Heartbeats carry all frontiers, but waiting a heartbeat interval would cap
//! throughput at `max_unstable` messages per interval (senders wait for
//! credit) and delay every `safe` delivery. So a broker also sends an
//! [`AckMsg`] with the groups that moved: at once after `ack_every` units of
//! progress, otherwise `ack_delay` after the first unacknowledged progress.

use crate::broker::Broker;
use crate::id::NodeId;
use crate::wire::{AckMsg, PeerMsg};

impl Broker {
    /// After an input: acknowledges now if a group moved far enough,
    /// otherwise makes sure an acknowledgement is due soon.
    pub(crate) fn schedule_acks(&mut self) {
        let Some(e) = &self.epoch else {
            self.ack_due = None;
            return;
        };
        let me = e.me;
        let mut pending = false;
        let mut urgent = false;
        for g in e.groups.values() {
            let moved = g.progress(me).saturating_sub(g.acked);
            pending |= moved > 0;
            urgent |= moved >= self.cfg.ack_every;
        }
        let due = self.ack_due.is_some_and(|t| t <= self.now);
        if urgent || (pending && due) {
            self.send_acks();
        } else if pending && self.ack_due.is_none() {
            self.ack_due = Some(self.now.plus(self.cfg.ack_delay));
        } else if !pending {
            self.ack_due = None;
        }
    }

    /// Sends the frontiers of every group that moved to every other member.
    fn send_acks(&mut self) {
        self.ack_due = None;
        let Some(e) = &mut self.epoch else { return };
        let me = e.me;
        let mut frontiers = Vec::new();
        for g in e.groups.values_mut() {
            let p = g.progress(me);
            if p > g.acked {
                g.acked = p;
                frontiers.push(g.frontier());
            }
        }
        if frontiers.is_empty() {
            return;
        }
        let view = e.view.id;
        let to: Vec<NodeId> = e.view.members.clone();
        for m in to {
            if m != self.id {
                let msg = PeerMsg::Ack(AckMsg {
                    view,
                    frontiers: frontiers.clone(),
                });
                self.send(m, msg);
            }
        }
    }

    /// A heartbeat carries every frontier: nothing is left to acknowledge.
    pub(crate) fn acked_by_heartbeat(&mut self) {
        self.ack_due = None;
        if let Some(e) = &mut self.epoch {
            let me = e.me;
            for g in e.groups.values_mut() {
                g.acked = g.progress(me);
            }
        }
    }

    /// Applies a member's acknowledgement for the current view.
    pub(crate) fn on_ack(&mut self, from: NodeId, a: AckMsg) {
        let Some(e) = &mut self.epoch else { return };
        if a.view != e.view.id {
            return;
        }
        let Some(rank) = e.view.rank(from) else {
            return;
        };
        // Only groups that exist here: a peer's names create no state.
        for f in &a.frontiers {
            if let Some(g) = e.groups.get_mut(&f.group) {
                g.apply_frontier(rank, f);
            }
        }
    }
}
