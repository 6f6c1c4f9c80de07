//! State transfer: at a member's join point the oldest surviving member
//! that keeps state (joined with state; any member only if none does) is
//! asked for a checkpoint; the provider's broker sends it in bounded chunks
//! to the joiner's broker, which holds back the joiner's deliveries until
//! the whole checkpoint has been handed over.
//!
//! If the provider goes away first (its broker leaves the view, it leaves the
//! group, or it cannot serve from the right cut because it is itself still
//! waiting for a checkpoint that was re-based), the joiner's broker asks for
//! a new transfer through the next view change (`GroupRequest::Restate`).
//! The new provider is asked at that view's installation, so its checkpoint
//! already covers everything delivered since the original join point: the
//! joiner's held-back deliveries of earlier views are dropped, the later ones
//! replayed. Only if no older member that keeps state is left is the
//! joiner expelled (`ExpelReason::TransferFailed`). A provider that was
//! expelled and awaits its removal (it is handed nothing any more) gives up
//! like one that left.

use crate::broker::Broker;
use crate::error::Error;
use crate::id::{MemberId, NodeId, Time, TransferId};
use crate::io::{Delivery, ExpelReason, Output};
use crate::wire::{GroupRequest, Install, PeerMsg, StateChunk};

/// A checkpoint this broker is waiting for.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    /// Broker hosting the provider.
    pub provider: NodeId,
    /// Bytes received so far.
    pub buf: Vec<u8>,
    /// Deliveries held back for the joiner.
    pub deferred: Vec<Delivery>,
    /// The provider went away; a new transfer was requested.
    pub failed: bool,
    /// Transfers this joiner must provide once its own checkpoint arrived:
    /// each is asked right before the first held-back delivery of its view.
    pub chained: Vec<(TransferId, MemberId)>,
    /// When to give up waiting (`transfer_timeout` after the transfer
    /// started or the last chunk arrived).
    pub deadline: Time,
}

/// A checkpoint this broker provides.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    /// Broker hosting the joiner.
    pub joiner: NodeId,
    /// The local member asked for the checkpoint.
    pub provider: MemberId,
    /// The checkpoint once the local provider answered.
    pub data: Option<Vec<u8>>,
}

impl Broker {
    /// The provider of `t` gave up (or is gone): ask for a new transfer.
    pub(crate) fn abort_incoming(&mut self, from: NodeId, t: TransferId) {
        let Some(inc) = self.incoming.get_mut(&t) else {
            if self.view_id().is_none_or(|v| t.view > v) {
                let to = self.id;
                self.buffer_future(crate::wire::Envelope {
                    from,
                    to,
                    msg: PeerMsg::StateAbort(t),
                });
            }
            return;
        };
        if inc.provider != from || inc.failed {
            return;
        }
        self.restate(t);
    }

    /// Marks `t` failed, releases what was chained to it and requests a new
    /// transfer for its joiner in the next view.
    fn restate(&mut self, t: TransferId) {
        let Some(inc) = self.incoming.get_mut(&t) else {
            return;
        };
        inc.failed = true;
        inc.buf.clear();
        // Checkpoints chained to this joiner would come from the wrong cut
        // once it is re-based: their joiners must be re-based too.
        let chained = std::mem::take(&mut inc.chained);
        for (ct, _) in chained {
            self.abort_outgoing(ct);
        }
        self.push_request(GroupRequest::Restate {
            group: t.group.clone(),
            member: t.joiner,
        });
    }

    pub(crate) fn after_install_transfers(&mut self, inst: &Install) {
        // A member that re-joined starts over: drop its older transfers.
        for gi in &inst.groups {
            self.incoming
                .retain(|t, _| !(t.group == gi.group && gi.joined.contains(&t.joiner)));
        }
        for gi in &inst.groups {
            for m in &gi.expelled {
                // Expulsions are for slow members (already reported when
                // muted) or for members whose state nobody holds any more.
                let slow = self.muted.contains(&(gi.group.clone(), *m));
                if m.broker == self.id && !slow {
                    self.out.push_back(Output::Expelled {
                        group: gi.group.clone(),
                        member: *m,
                        reason: ExpelReason::TransferFailed,
                    });
                }
            }
            for (joiner, provider) in &gi.transfers {
                let tid = TransferId {
                    group: gi.group.clone(),
                    joiner: *joiner,
                    view: inst.view.id,
                };
                if joiner.broker == self.id {
                    // A re-based transfer keeps the deliveries held so far.
                    let old: Vec<TransferId> = self
                        .incoming
                        .keys()
                        .filter(|t| t.group == gi.group && t.joiner == *joiner)
                        .cloned()
                        .collect();
                    let mut deferred = Vec::new();
                    for t in old {
                        if let Some(i) = self.incoming.remove(&t) {
                            deferred.extend(i.deferred);
                        }
                    }
                    match provider {
                        None => self.out.push_back(Output::StateDelivered {
                            transfer: tid.clone(),
                            data: None,
                        }),
                        Some(p) => {
                            self.incoming.insert(
                                tid.clone(),
                                Incoming {
                                    provider: p.broker,
                                    buf: Vec::new(),
                                    deferred,
                                    failed: false,
                                    chained: Vec::new(),
                                    deadline: self.now.plus(self.cfg.transfer_timeout),
                                },
                            );
                        }
                    }
                }
                if let Some(p) = provider {
                    if p.broker == self.id {
                        self.outgoing.insert(
                            tid.clone(),
                            Outgoing {
                                joiner: joiner.broker,
                                provider: *p,
                                data: None,
                            },
                        );
                        let awaiting = self
                            .incoming
                            .iter_mut()
                            .find(|(t, i)| t.group == gi.group && t.joiner == *p && !i.failed);
                        if let Some((_, inc)) = awaiting {
                            inc.chained.push((tid, *p));
                        } else if self
                            .incoming
                            .keys()
                            .any(|t| t.group == gi.group && t.joiner == *p)
                        {
                            // The provider is being re-based itself.
                            self.abort_outgoing(tid);
                        } else if self.cfg.defects.late_checkpoint {
                            self.late_requests.push((tid, *p));
                        } else {
                            self.ask_provider(tid, *p);
                        }
                    }
                }
            }
        }
        let Some(e) = &self.epoch else { return };
        let view = e.view.clone();
        let mut lost = Vec::new();
        let mut gone = Vec::new();
        for (tid, inc) in &self.incoming {
            let still_member = e
                .groups
                .get(&tid.group)
                .is_some_and(|g| g.members.contains(&tid.joiner));
            if !still_member {
                gone.push(tid.clone());
            } else if !inc.failed && !view.contains(inc.provider) {
                lost.push(tid.clone());
            }
        }
        for t in gone {
            // A joiner that left cannot provide the checkpoints chained to it.
            let chained = self
                .incoming
                .remove(&t)
                .map(|i| i.chained)
                .unwrap_or_default();
            for (ct, _) in chained {
                self.abort_outgoing(ct);
            }
        }
        for t in lost {
            self.restate(t);
        }
        // Checkpoints for joiners that are gone are dropped.
        self.outgoing.retain(|t, o| {
            view.contains(o.joiner)
                && inst
                    .groups
                    .iter()
                    .any(|g| g.group == t.group && g.members.contains(&t.joiner))
        });
        // Give-ups matter until the joiner re-joins, is re-based or leaves.
        self.aborted.retain(|t, j| {
            view.contains(*j)
                && (t.view == inst.view.id
                    || inst.groups.iter().any(|g| {
                        g.group == t.group
                            && g.members.contains(&t.joiner)
                            && !g.joined.contains(&t.joiner)
                            && !g.transfers.iter().any(|(x, _)| *x == t.joiner)
                    }))
        });
        // A provider that left before answering will not answer; neither
        // will one that left and joined again (the same session, now a new
        // membership that starts in this view).
        let unanswered: Vec<TransferId> = self
            .outgoing
            .iter()
            .filter(|(t, o)| {
                let rejoined = inst
                    .groups
                    .iter()
                    .any(|g| g.group == t.group && g.joined.contains(&o.provider));
                o.data.is_none()
                    && (rejoined
                        || !self.epoch.as_ref().is_some_and(|e| {
                            e.groups
                                .get(&t.group)
                                .is_some_and(|g| g.members.contains(&o.provider))
                        }))
            })
            .map(|(t, _)| t.clone())
            .collect();
        for t in unanswered {
            self.abort_outgoing(t);
        }
    }

    /// Gives up on checkpoints that did not arrive within `transfer_timeout`
    /// (a provider that never answers would otherwise hold the joiner back
    /// forever, its held deliveries growing).
    pub(crate) fn check_transfers(&mut self) {
        let now = self.now;
        let late: Vec<TransferId> = self
            .incoming
            .iter()
            .filter(|(_, i)| !i.failed && now >= i.deadline)
            .map(|(t, _)| t.clone())
            .collect();
        for t in late {
            self.give_up_transfer(t);
        }
    }

    /// Earliest transfer deadline.
    pub(crate) fn transfer_deadline(&self) -> Option<Time> {
        self.incoming
            .values()
            .filter(|i| !i.failed)
            .map(|i| i.deadline)
            .min()
    }

    /// Stops waiting for `t`: its held deliveries are dropped and the
    /// joiner is expelled (`TransferFailed`) through the next view change;
    /// until then it receives nothing. Its client may join again.
    pub(crate) fn give_up_transfer(&mut self, t: TransferId) {
        let Some(inc) = self.incoming.remove(&t) else {
            return;
        };
        for (ct, _) in inc.chained {
            self.abort_outgoing(ct);
        }
        self.expel(t.group, t.joiner, ExpelReason::TransferFailed);
    }

    /// Gives up providing `t`: the joiner's broker asks for another transfer.
    fn abort_outgoing(&mut self, t: TransferId) {
        let Some(o) = self.outgoing.remove(&t) else {
            return;
        };
        self.late_requests.retain(|(x, _)| *x != t);
        if o.joiner == self.id {
            let me = self.id;
            self.abort_incoming(me, t);
        } else {
            self.aborted.insert(t.clone(), o.joiner);
            self.send(o.joiner, PeerMsg::StateAbort(t));
        }
    }

    /// With the `late_checkpoint` defect, the provider is asked only after
    /// the next delivery of its group.
    pub(crate) fn release_late_requests(&mut self, group: &str) {
        if self.late_requests.is_empty() {
            return;
        }
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.late_requests)
            .into_iter()
            .partition(|(t, _)| t.group == group);
        self.late_requests = later;
        for (transfer, provider) in now {
            self.out
                .push_back(Output::StateRequest { transfer, provider });
        }
    }

    pub(crate) fn on_state_reply(&mut self, tid: TransferId, data: Vec<u8>) -> Result<(), Error> {
        let Some(o) = self.outgoing.get_mut(&tid) else {
            return Err(Error::InvalidCommand("no such state transfer"));
        };
        o.data = Some(data);
        let joiner = o.joiner;
        if joiner == self.id {
            let data = self
                .outgoing
                .remove(&tid)
                .and_then(|o| o.data)
                .unwrap_or_default();
            self.complete_transfer(tid, data);
        } else {
            self.send_chunks(&tid);
        }
        Ok(())
    }

    pub(crate) fn send_chunks(&mut self, tid: &TransferId) {
        let Some(o) = self.outgoing.get(tid) else {
            return;
        };
        let Some(data) = &o.data else { return };
        let to = o.joiner;
        let size = self.cfg.chunk_size.max(1);
        let total = data.len() as u64;
        let mut chunks = Vec::new();
        let mut off = 0usize;
        loop {
            let end = (off + size).min(data.len());
            chunks.push(StateChunk {
                transfer: tid.clone(),
                offset: off as u64,
                total,
                bytes: data[off..end].to_vec(),
            });
            off = end;
            if off >= data.len() {
                break;
            }
        }
        for c in chunks {
            self.send(to, PeerMsg::StateChunk(c));
        }
    }

    /// Resends checkpoints and give-ups to a reconnected joiner broker.
    pub(crate) fn resend_transfers(&mut self, peer: NodeId) {
        let aborts: Vec<TransferId> = self
            .aborted
            .iter()
            .filter(|(_, j)| **j == peer)
            .map(|(t, _)| t.clone())
            .collect();
        for t in aborts {
            self.send(peer, PeerMsg::StateAbort(t));
        }
        let tids: Vec<TransferId> = self
            .outgoing
            .iter()
            .filter(|(_, o)| o.joiner == peer && o.data.is_some())
            .map(|(t, _)| t.clone())
            .collect();
        for t in tids {
            self.send_chunks(&t);
        }
    }

    pub(crate) fn on_state_chunk(&mut self, from: NodeId, c: StateChunk) -> Result<(), Error> {
        let Some(inc) = self.incoming.get_mut(&c.transfer) else {
            // The provider may install the join view before this broker does.
            if self.view_id().is_none_or(|v| c.transfer.view > v) {
                let to = self.id;
                self.buffer_future(crate::wire::Envelope {
                    from,
                    to,
                    msg: PeerMsg::StateChunk(c),
                });
            }
            return Ok(());
        };
        if inc.failed {
            return Ok(());
        }
        if inc.provider != from {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "state chunk from a broker that is not the provider",
            });
        }
        if c.offset
            .checked_add(c.bytes.len() as u64)
            .is_none_or(|end| end > c.total)
        {
            return Err(Error::InvalidPeerMessage {
                from,
                reason: "state chunk beyond its total",
            });
        }
        if c.offset != inc.buf.len() as u64 {
            // A duplicate after a resend, or a gap after a broken link; the
            // provider resends everything on reconnect.
            if c.offset == 0 {
                inc.buf.clear();
            } else {
                return Ok(());
            }
        }
        inc.buf.extend_from_slice(&c.bytes);
        inc.deadline = self.now.plus(self.cfg.transfer_timeout);
        if inc.buf.len() as u64 == c.total {
            let data = std::mem::take(&mut inc.buf);
            self.send(from, PeerMsg::StateDone(c.transfer.clone()));
            self.complete_transfer(c.transfer, data);
        }
        Ok(())
    }

    /// Hands the checkpoint over, then the held-back deliveries ordered at
    /// or after the join point (earlier ones are covered by the checkpoint
    /// of a re-based transfer).
    fn complete_transfer(&mut self, tid: TransferId, data: Vec<u8>) {
        let Some(inc) = self.incoming.remove(&tid) else {
            return;
        };
        let join = tid.view;
        self.out.push_back(Output::StateDelivered {
            transfer: tid,
            data: Some(data),
        });
        let mut chained = inc.chained;
        for d in inc.deferred.into_iter().filter(|d| d.view >= join) {
            let (now, later): (Vec<_>, Vec<_>) =
                chained.into_iter().partition(|(t, _)| t.view <= d.view);
            chained = later;
            for (transfer, provider) in now {
                self.ask_provider(transfer, provider);
            }
            self.out.push_back(Output::Deliver(d));
        }
        for (transfer, provider) in chained {
            self.ask_provider(transfer, provider);
        }
    }

    /// Asks the local member `provider` for its checkpoint, unless it was
    /// expelled (slow, or its own transfer failed) and awaits its removal:
    /// it is handed nothing any more, so its state is stale, and the
    /// joiner's broker must ask for another provider.
    fn ask_provider(&mut self, transfer: TransferId, provider: MemberId) {
        if self.muted.contains(&(transfer.group.clone(), provider)) {
            self.abort_outgoing(transfer);
        } else {
            self.out
                .push_back(Output::StateRequest { transfer, provider });
        }
    }
}
