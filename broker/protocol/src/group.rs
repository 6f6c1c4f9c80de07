//! Per-group state inside one mesh view: sender streams, the delivery rule
//! (fifo per sending broker, causal vector timestamps, total order from the
//! group's sequencer, `safe` stability), and garbage collection of stable
//! messages.

use std::collections::{BTreeMap, HashMap};

use crate::config::Defects;
use crate::id::{MemberId, Ordering, ViewId};
use crate::wire::{DataMsg, Frontier, GroupReport};

/// One sender broker's stream of messages in a group.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stream {
    /// Contiguous messages received (seq 1..=recv).
    pub recv: u64,
    /// Messages delivered (seq 1..=delivered).
    pub delivered: u64,
    /// Held messages (not yet freed), including out-of-order arrivals.
    pub msgs: BTreeMap<u64, DataMsg>,
    /// Per sender rank, the largest causal dependency of any message
    /// delivered from this stream (empty until a causal one is). With the
    /// stream's own prefix, it is the causal past of the stream's next
    /// message, whatever that message's ordering.
    pub past: Vec<u64>,
}

/// A group in the current mesh view.
#[derive(Debug, Clone)]
pub(crate) struct GroupState {
    pub name: String,
    /// Group view id.
    pub view_id: ViewId,
    /// Members oldest first.
    pub members: Vec<MemberId>,
    /// Members that joined with state (`GroupInstall::stateful`).
    pub stateful: Vec<MemberId>,
    /// Streams by sender rank.
    pub streams: Vec<Stream>,
    /// `acks[r][s]`: contiguous messages of sender `s` known received by rank `r`.
    pub acks: Vec<Vec<u64>>,
    /// Decisions known received by rank `r`.
    pub dec_acks: Vec<u64>,
    /// Own stream counter.
    pub my_seq: u64,
    /// Known total-order decisions not yet trimmed: position
    /// `dec_base + i + 1` at index `i`.
    pub decisions: Vec<(u32, u64)>,
    /// Positions trimmed because every broker delivered them.
    pub dec_base: u64,
    /// Positions known delivered by rank `r`.
    pub del_acks: Vec<u64>,
    /// Reverse index of `decisions`.
    pub pos_of: HashMap<(u32, u64), u64>,
    /// Decision batches that arrived ahead of a gap.
    pub early_orders: BTreeMap<u64, Vec<(u32, u64)>>,
    /// Positions delivered.
    pub total_delivered: u64,
    /// Decisions assigned here (as sequencer) and not yet sent.
    pub unsent: Vec<(u32, u64)>,
    /// Rank of the group's sequencer.
    pub sequencer: usize,
    /// `Defects::swap_decisions`: a decision batch held back.
    pub defect_held: Option<(u64, Vec<(u32, u64)>)>,
    /// [`GroupState::progress`] when this broker last sent its frontier.
    pub acked: u64,
}

/// Deterministic sequencer rank for a group in a view of `n` brokers.
pub(crate) fn sequencer_rank(group: &str, n: usize) -> usize {
    // FNV-1a: stable across platforms and releases.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % n.max(1) as u64) as usize
}

/// Checks a data message against the shape of a view of `n` brokers.
pub(crate) fn validate(n: usize, msg: &DataMsg) -> Result<(), &'static str> {
    if msg.rank as usize >= n {
        return Err("sender rank outside the view");
    }
    if msg.seq == 0 {
        return Err("stream seq 0");
    }
    let needs_deps = msg.ordering >= Ordering::Causal;
    if needs_deps && msg.deps.len() != n {
        return Err("vector timestamp length differs from the view size");
    }
    if !needs_deps && !msg.deps.is_empty() {
        return Err("vector timestamp on a non-causal message");
    }
    Ok(())
}

impl GroupState {
    pub fn new(name: String, view_id: ViewId, members: Vec<MemberId>, n: usize) -> Self {
        let sequencer = sequencer_rank(&name, n);
        GroupState {
            name,
            view_id,
            members,
            stateful: Vec::new(),
            streams: vec![Stream::default(); n],
            acks: vec![vec![0; n]; n],
            dec_acks: vec![0; n],
            my_seq: 0,
            decisions: Vec::new(),
            dec_base: 0,
            del_acks: vec![0; n],
            pos_of: HashMap::new(),
            early_orders: BTreeMap::new(),
            total_delivered: 0,
            unsent: Vec::new(),
            sequencer,
            defect_held: None,
            acked: 0,
        }
    }

    /// How far this broker got in the group, as one growing number: messages
    /// received from other brokers, decisions known and positions delivered.
    /// Its growth since the last frontier sent decides when to acknowledge.
    pub fn progress(&self, me: usize) -> u64 {
        let received: u64 = self
            .streams
            .iter()
            .enumerate()
            .filter(|(s, _)| *s != me)
            .map(|(_, st)| st.recv)
            .sum();
        received + self.dec_len() + self.total_delivered
    }

    /// Stores a received message; returns true if it was new.
    pub fn insert(&mut self, me: usize, msg: DataMsg) -> bool {
        let s = msg.rank as usize;
        let st = &mut self.streams[s];
        if msg.seq <= st.recv || st.msgs.contains_key(&msg.seq) {
            return false;
        }
        st.msgs.insert(msg.seq, msg);
        while st.msgs.contains_key(&(st.recv + 1)) {
            st.recv += 1;
        }
        self.acks[me][s] = st.recv;
        true
    }

    /// Positions known so far (trimmed ones included).
    pub fn dec_len(&self) -> u64 {
        self.dec_base + self.decisions.len() as u64
    }

    /// Adds a batch of decisions; returns true if any was new.
    pub fn add_decisions(&mut self, first: u64, entries: Vec<(u32, u64)>) -> bool {
        if first == 0 {
            return false;
        }
        self.early_orders.insert(first, entries);
        let mut changed = false;
        loop {
            let next = self.dec_len() + 1;
            let Some((&f, _)) = self.early_orders.iter().next() else {
                break;
            };
            if f > next {
                break;
            }
            let entries = self.early_orders.remove(&f).unwrap_or_default();
            for (i, e) in entries.into_iter().enumerate() {
                let pos = f + i as u64;
                if pos == self.dec_len() + 1 {
                    self.decisions.push(e);
                    self.pos_of.insert(e, pos);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Has every member received message `seq` of stream `s` and
    /// everything that must be delivered before it: its stream's prefix,
    /// its own causal dependencies (`deps`) and those of every earlier
    /// message of its stream (`Stream::past`)? Only then can any survivor
    /// of a view change, even a lone one, deliver it in the flush, so only
    /// then may a `safe` message be delivered anywhere. (Sim seed 2065335:
    /// a member had the message but not a dependency whose sender was then
    /// excluded. Sim seed 2122330: a `reliable` safe message came after a
    /// causal one of its stream whose dependency a member lacked; that
    /// member, the only survivor, could not deliver either.)
    fn stable(&self, s: usize, seq: u64, deps: &[u64]) -> bool {
        let past = &self.streams[s].past;
        self.acks.iter().all(|a| {
            a[s] >= seq
                && a.iter().enumerate().all(|(r, x)| {
                    r == s
                        || (*x >= deps.get(r).copied().unwrap_or(0)
                            && *x >= past.get(r).copied().unwrap_or(0))
                })
        })
    }

    /// Delivers everything the ordering rules allow, in delivery order.
    /// `me` is this broker's rank.
    pub fn try_deliver(&mut self, me: usize, defects: &Defects) -> Vec<DataMsg> {
        let mut out = Vec::new();
        let n = self.streams.len();
        loop {
            let mut progress = false;
            for s in 0..n {
                loop {
                    let seq = self.streams[s].delivered + 1;
                    let Some(msg) = self.streams[s].msgs.get(&seq) else {
                        break;
                    };
                    if msg.ordering >= Ordering::Causal && !defects.ignore_causal {
                        let ok = msg
                            .deps
                            .iter()
                            .enumerate()
                            .all(|(r, d)| r == s || self.streams[r].delivered >= *d);
                        if !ok {
                            break;
                        }
                    }
                    if msg.safe && !defects.unsafe_safe && !self.stable(s, seq, &msg.deps) {
                        break;
                    }
                    if msg.ordering == Ordering::Total {
                        let key = (s as u32, seq);
                        let pos = match self.pos_of.get(&key) {
                            Some(p) => *p,
                            None if self.sequencer == me => {
                                self.decisions.push(key);
                                let p = self.dec_len();
                                self.pos_of.insert(key, p);
                                self.unsent.push(key);
                                p
                            }
                            None => break,
                        };
                        if pos != self.total_delivered + 1 {
                            break;
                        }
                        self.total_delivered += 1;
                        self.del_acks[me] = self.total_delivered;
                    }
                    let msg = msg.clone();
                    let st = &mut self.streams[s];
                    if !msg.deps.is_empty() {
                        st.past.resize(msg.deps.len(), 0);
                        for (p, d) in st.past.iter_mut().zip(&msg.deps) {
                            *p = (*p).max(*d);
                        }
                    }
                    st.delivered = seq;
                    out.push(msg);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        if !out.is_empty() {
            self.gc();
        }
        out
    }

    /// Frees messages delivered here and received everywhere, and
    /// total-order decisions delivered everywhere.
    pub fn gc(&mut self) {
        let everywhere = self
            .del_acks
            .iter()
            .copied()
            .min()
            .unwrap_or(0)
            .min(self.total_delivered);
        if everywhere > self.dec_base {
            let n = ((everywhere - self.dec_base) as usize).min(self.decisions.len());
            for k in self.decisions.drain(..n) {
                self.pos_of.remove(&k);
            }
            self.dec_base += n as u64;
        }
        for s in 0..self.streams.len() {
            let stable = self.acks.iter().map(|a| a[s]).min().unwrap_or(0);
            let limit = stable.min(self.streams[s].delivered);
            let st = &mut self.streams[s];
            while let Some((&k, _)) = st.msgs.iter().next() {
                if k > limit {
                    break;
                }
                st.msgs.remove(&k);
            }
        }
    }

    /// This broker's frontier for heartbeats.
    pub fn frontier(&self) -> Frontier {
        Frontier {
            group: self.name.clone(),
            received: self.streams.iter().map(|s| s.recv).collect(),
            decisions: self.dec_len(),
            delivered_positions: self.total_delivered,
        }
    }

    /// Applies a peer's frontier; returns true if anything advanced.
    pub fn apply_frontier(&mut self, rank: usize, f: &Frontier) -> bool {
        if f.received.len() != self.streams.len() {
            return false;
        }
        let mut changed = false;
        for (s, v) in f.received.iter().enumerate() {
            if *v > self.acks[rank][s] {
                self.acks[rank][s] = *v;
                changed = true;
            }
        }
        if f.decisions > self.dec_acks[rank] {
            self.dec_acks[rank] = f.decisions;
        }
        if f.delivered_positions > self.del_acks[rank] {
            self.del_acks[rank] = f.delivered_positions;
            changed = true;
        }
        if changed {
            self.gc();
        }
        changed
    }

    /// What this broker reports when a view change starts.
    pub fn report(&self) -> GroupReport {
        GroupReport {
            group: self.name.clone(),
            delivered: self.streams.iter().map(|s| s.delivered).collect(),
            held: self
                .streams
                .iter()
                .flat_map(|s| s.msgs.values().cloned())
                .collect(),
            decisions_from: self.dec_base,
            decisions: self.decisions.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{MsgId, NodeId};

    fn vid() -> ViewId {
        ViewId {
            counter: 1,
            coordinator: NodeId::new(0, 1),
        }
    }

    fn msg(rank: u32, seq: u64, ordering: Ordering, deps: Vec<u64>) -> DataMsg {
        DataMsg {
            view: vid(),
            group: "g".into(),
            rank,
            seq,
            id: MsgId {
                origin: NodeId::new(rank, 1),
                seq,
            },
            publisher: MemberId {
                broker: NodeId::new(rank, 1),
                session: 1,
            },
            pub_seq: seq,
            ordering,
            safe: false,
            deps,
            payload: bytes::Bytes::new(),
        }
    }

    fn ids(v: &[DataMsg]) -> Vec<(u32, u64)> {
        v.iter().map(|m| (m.rank, m.seq)).collect()
    }

    #[test]
    fn fifo_waits_for_gap() {
        let mut g = GroupState::new("g".into(), vid(), vec![], 2);
        assert!(g.insert(0, msg(1, 2, Ordering::Fifo, vec![])));
        assert!(g.try_deliver(0, &Defects::default()).is_empty());
        g.insert(0, msg(1, 1, Ordering::Fifo, vec![]));
        assert_eq!(
            ids(&g.try_deliver(0, &Defects::default())),
            vec![(1, 1), (1, 2)]
        );
    }

    #[test]
    fn causal_waits_for_dependency() {
        let mut g = GroupState::new("g".into(), vid(), vec![], 3);
        // (2,1) depends on (1,1).
        g.insert(0, msg(2, 1, Ordering::Causal, vec![0, 1, 0]));
        assert!(g.try_deliver(0, &Defects::default()).is_empty());
        g.insert(0, msg(1, 1, Ordering::Reliable, vec![]));
        assert_eq!(
            ids(&g.try_deliver(0, &Defects::default())),
            vec![(1, 1), (2, 1)]
        );
    }

    #[test]
    fn total_follows_decisions_and_sequencer_assigns() {
        let n = 2;
        let mut g = GroupState::new("g".into(), vid(), vec![], n);
        let seq_rank = g.sequencer;
        let other = 1 - seq_rank;
        g.insert(other, msg(0, 1, Ordering::Total, vec![0, 0]));
        g.insert(other, msg(1, 1, Ordering::Total, vec![0, 0]));
        assert!(g.try_deliver(other, &Defects::default()).is_empty());
        g.add_decisions(2, vec![(0, 1)]);
        assert!(g.try_deliver(other, &Defects::default()).is_empty());
        g.add_decisions(1, vec![(1, 1)]);
        assert_eq!(
            ids(&g.try_deliver(other, &Defects::default())),
            vec![(1, 1), (0, 1)]
        );

        let mut s = GroupState::new("g".into(), vid(), vec![], n);
        s.insert(seq_rank, msg(1, 1, Ordering::Total, vec![0, 0]));
        assert_eq!(
            ids(&s.try_deliver(seq_rank, &Defects::default())),
            vec![(1, 1)]
        );
        assert_eq!(s.unsent, vec![(1, 1)]);
    }

    #[test]
    fn decisions_delivered_everywhere_are_trimmed() {
        let mut g = GroupState::new("g".into(), vid(), vec![], 2);
        let me = g.sequencer;
        let other = 1 - me;
        g.insert(me, msg(other as u32, 1, Ordering::Total, vec![0, 0]));
        g.insert(me, msg(other as u32, 2, Ordering::Total, vec![0, 0]));
        assert_eq!(g.try_deliver(me, &Defects::default()).len(), 2);
        assert_eq!((g.dec_base, g.decisions.len()), (0, 2));
        let f = Frontier {
            group: "g".into(),
            received: vec![2, 2],
            decisions: 2,
            delivered_positions: 1,
        };
        g.apply_frontier(other, &f);
        assert_eq!((g.dec_base, g.decisions.len(), g.dec_len()), (1, 1, 2));
        let r = g.report();
        assert_eq!((r.decisions_from, r.decisions.len()), (1, 1));
    }

    #[test]
    fn safe_waits_for_stability_then_gc() {
        let mut g = GroupState::new("g".into(), vid(), vec![], 2);
        let mut m = msg(1, 1, Ordering::Reliable, vec![]);
        m.safe = true;
        g.insert(0, m);
        assert!(g.try_deliver(0, &Defects::default()).is_empty());
        let f = Frontier {
            group: "g".into(),
            received: vec![0, 1],
            decisions: 0,
            delivered_positions: 0,
        };
        assert!(g.apply_frontier(1, &f));
        assert_eq!(g.try_deliver(0, &Defects::default()).len(), 1);
        assert!(g.streams[1].msgs.is_empty());
    }

    /// A frontier of group "g" with these receive counts.
    fn frontier(received: Vec<u64>) -> Frontier {
        Frontier {
            group: "g".into(),
            received,
            decisions: 0,
            delivered_positions: 0,
        }
    }

    /// A `safe` causal message is stable only once every member has also
    /// received what it depends on: a member holding the message but not
    /// a dependency could not deliver it after a view change that loses
    /// the dependency's sender (sim seed 2065335).
    #[test]
    fn safe_waits_until_every_member_has_its_dependencies_too() {
        let mut g = GroupState::new("g".into(), vid(), vec![], 3);
        g.insert(0, msg(1, 1, Ordering::Reliable, vec![]));
        let mut m = msg(2, 1, Ordering::Causal, vec![0, 1, 0]);
        m.safe = true;
        g.insert(0, m);
        // Only (1, 1) goes out: (2, 1) waits for stability.
        assert_eq!(ids(&g.try_deliver(0, &Defects::default())), vec![(1, 1)]);
        // Everyone has (2, 1); member 2 lacks (1, 1): not stable yet.
        g.apply_frontier(0, &frontier(vec![0, 1, 1]));
        g.apply_frontier(1, &frontier(vec![0, 1, 1]));
        g.apply_frontier(2, &frontier(vec![0, 0, 1]));
        assert!(g.try_deliver(0, &Defects::default()).is_empty());
        g.apply_frontier(2, &frontier(vec![0, 1, 1]));
        assert_eq!(ids(&g.try_deliver(0, &Defects::default())), vec![(2, 1)]);
    }

    /// A `safe` message of any ordering waits until every member also has
    /// the causal past of the earlier messages of its stream: a member
    /// lacking it could not deliver the stream beyond them (sim seed
    /// 2122330: a `reliable` safe message after a causal one).
    #[test]
    fn safe_waits_for_the_causal_past_of_its_stream() {
        let mut g = GroupState::new("g".into(), vid(), vec![], 3);
        g.insert(0, msg(1, 1, Ordering::Reliable, vec![]));
        g.insert(0, msg(2, 1, Ordering::Causal, vec![0, 1, 0]));
        let mut m = msg(2, 2, Ordering::Reliable, vec![]);
        m.safe = true;
        g.insert(0, m);
        // (1, 1) and (2, 1) go out; (2, 2) waits for stability.
        assert_eq!(
            ids(&g.try_deliver(0, &Defects::default())),
            vec![(1, 1), (2, 1)]
        );
        // Everyone has stream 2's prefix; member 2 lacks (1, 1), which
        // (2, 1) depends on: not stable yet, though (2, 2) itself has no
        // dependency.
        g.apply_frontier(0, &frontier(vec![0, 1, 2]));
        g.apply_frontier(1, &frontier(vec![0, 1, 2]));
        g.apply_frontier(2, &frontier(vec![0, 0, 2]));
        assert!(g.try_deliver(0, &Defects::default()).is_empty());
        g.apply_frontier(2, &frontier(vec![0, 1, 2]));
        assert_eq!(ids(&g.try_deliver(0, &Defects::default())), vec![(2, 2)]);
    }
}
