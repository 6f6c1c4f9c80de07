//! The flush: from the reports of the surviving brokers, the coordinator
//! computes, per group, the messages of the old view that every survivor
//! must have delivered before the new view, in one order that respects
//! every declaration (sender fifo, causal dependencies, known total-order
//! positions).

use std::collections::{BTreeMap, HashMap};

use crate::id::Ordering;
use crate::wire::{DataMsg, GroupReport};

/// Computes the flush list of one group for a view of `n` brokers from the
/// reports of the old members (a missing report entry means "nothing
/// delivered, nothing held").
///
/// Every survivor delivers, in list order, the entries it has not delivered
/// yet. The list starts at the least-advanced survivor's delivered prefix,
/// so it is a valid continuation for every survivor.
pub(crate) fn compute_flush(n: usize, reports: &[Option<&GroupReport>]) -> Vec<DataMsg> {
    let mut base = vec![u64::MAX; n];
    let mut held: BTreeMap<(u32, u64), &DataMsg> = BTreeMap::new();
    let mut decisions: &[(u32, u64)] = &[];
    let mut decisions_end = 0u64;
    if reports.is_empty() {
        return Vec::new();
    }
    for r in reports {
        match r {
            None => base.iter_mut().for_each(|b| *b = 0),
            Some(r) => {
                for (s, b) in base.iter_mut().enumerate() {
                    *b = (*b).min(r.delivered.get(s).copied().unwrap_or(0));
                }
                for m in &r.held {
                    if (m.rank as usize) < n {
                        held.entry((m.rank, m.seq)).or_insert(m);
                    }
                }
                // All lists are views of one sequence; positions before a
                // list's start were delivered everywhere, so the list that
                // reaches furthest is the one to follow.
                if r.decisions_from + r.decisions.len() as u64 > decisions_end {
                    decisions_end = r.decisions_from + r.decisions.len() as u64;
                    decisions = &r.decisions;
                }
            }
        }
    }
    let limit = deliverable(n, &base, &held);
    // Positions usable in the flush: the prefix whose messages can be
    // delivered. After a message that is lost or can never be delivered
    // (it depends on a lost one), positions are dropped: the messages
    // still go out, unpositioned, after the usable ones.
    let mut valid = 0usize;
    for (rank, seq) in decisions {
        let s = *rank as usize;
        if s >= n || (*seq > base[s] && *seq > limit[s]) {
            break;
        }
        valid += 1;
    }
    let pos_of: HashMap<(u32, u64), usize> = decisions[..valid]
        .iter()
        .enumerate()
        .map(|(i, k)| (*k, i))
        .collect();
    let mut del = base;
    let mut next = 0usize; // index into decisions[..valid]
    let mut out = Vec::new();
    let skip_done = |next: &mut usize, del: &[u64]| {
        while *next < valid {
            let (s, seq) = decisions[*next];
            if seq <= del[s as usize] {
                *next += 1;
            } else {
                break;
            }
        }
    };
    loop {
        let mut progress = false;
        for s in 0..n {
            loop {
                skip_done(&mut next, &del);
                let seq = del[s] + 1;
                let Some(m) = held.get(&(s as u32, seq)) else {
                    break;
                };
                if m.ordering >= Ordering::Causal
                    && (m.deps.len() != n
                        || m.deps
                            .iter()
                            .enumerate()
                            .any(|(r, d)| r != s && del[r] < *d))
                {
                    break;
                }
                if m.ordering == Ordering::Total {
                    match pos_of.get(&(s as u32, seq)) {
                        Some(p) if *p != next => break,
                        Some(_) => {}
                        None if next < valid => break,
                        None => {}
                    }
                }
                out.push((*m).clone());
                del[s] = seq;
                progress = true;
            }
        }
        if !progress {
            break;
        }
    }
    out
}

/// Per sender rank, the last sequence number the flush can reach: its
/// messages up to there are held by a survivor (or delivered everywhere),
/// and so are their causal dependencies, recursively. A message after a
/// hole in its own stream, or depending on a message after a hole, can
/// never be delivered (so neither can anything after it in its stream).
fn deliverable(n: usize, base: &[u64], held: &BTreeMap<(u32, u64), &DataMsg>) -> Vec<u64> {
    let mut limit: Vec<u64> = (0..n)
        .map(|s| {
            let mut l = base[s];
            while held.contains_key(&(s as u32, l + 1)) {
                l += 1;
            }
            l
        })
        .collect();
    loop {
        let mut changed = false;
        for (&(rank, seq), m) in held {
            let s = rank as usize;
            if seq <= base[s] || seq > limit[s] || m.ordering < Ordering::Causal {
                continue;
            }
            let lost = m.deps.len() != n
                || m.deps
                    .iter()
                    .enumerate()
                    .any(|(r, d)| r != s && *d > limit[r]);
            if lost {
                limit[s] = seq - 1;
                changed = true;
            }
        }
        if !changed {
            return limit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{MemberId, MsgId, NodeId, ViewId};

    fn msg(rank: u32, seq: u64, ordering: Ordering, deps: Vec<u64>) -> DataMsg {
        DataMsg {
            view: ViewId {
                counter: 1,
                coordinator: NodeId::new(0, 1),
            },
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

    fn rep(delivered: Vec<u64>, held: Vec<DataMsg>, decisions: Vec<(u32, u64)>) -> GroupReport {
        GroupReport {
            group: "g".into(),
            delivered,
            held,
            decisions_from: 0,
            decisions,
        }
    }

    fn keys(v: &[DataMsg]) -> Vec<(u32, u64)> {
        v.iter().map(|m| (m.rank, m.seq)).collect()
    }

    #[test]
    fn union_starts_at_least_advanced_survivor() {
        let a = rep(
            vec![2, 0, 0],
            vec![
                msg(0, 1, Ordering::Fifo, vec![]),
                msg(0, 2, Ordering::Fifo, vec![]),
            ],
            vec![],
        );
        let b = rep(
            vec![1, 0, 0],
            vec![
                msg(0, 2, Ordering::Fifo, vec![]),
                msg(2, 1, Ordering::Fifo, vec![]),
            ],
            vec![],
        );
        let out = compute_flush(3, &[Some(&a), Some(&b)]);
        assert_eq!(keys(&out), vec![(0, 2), (2, 1)]);
    }

    #[test]
    fn total_positions_then_unpositioned_and_missing_dependency_dropped() {
        let t = |r, s| msg(r, s, Ordering::Total, vec![0, 0, 0]);
        // Positions: (1,1) then (0,1). (2,1) is unpositioned. (2,2) depends
        // on (1,2), which nobody holds.
        let a = rep(
            vec![0, 0, 0],
            vec![t(0, 1), t(2, 1), msg(2, 2, Ordering::Causal, vec![0, 2, 1])],
            vec![(1, 1), (0, 1)],
        );
        let b = rep(vec![0, 0, 0], vec![t(1, 1)], vec![(1, 1)]);
        let out = compute_flush(3, &[Some(&a), Some(&b)]);
        assert_eq!(keys(&out), vec![(1, 1), (0, 1), (2, 1)]);
    }

    #[test]
    fn trimmed_decision_lists_are_followed_from_the_furthest_report() {
        let t = |r, s| msg(r, s, Ordering::Total, vec![0, 0]);
        // Positions 1 = (0,1), 2 = (1,1), 3 = (0,2), 4 = (1,2). Everyone
        // delivered 1 and 2; A trimmed them, B did not and knows less.
        let mut a = rep(vec![1, 1], vec![t(0, 2), t(1, 2)], vec![(0, 2), (1, 2)]);
        a.decisions_from = 2;
        let b = rep(
            vec![1, 1],
            vec![t(1, 2), t(0, 2)],
            vec![(0, 1), (1, 1), (0, 2)],
        );
        let out = compute_flush(2, &[Some(&a), Some(&b)]);
        assert_eq!(keys(&out), vec![(0, 2), (1, 2)]);
    }

    #[test]
    fn positions_after_a_lost_message_become_unpositioned() {
        let t = |r, s| msg(r, s, Ordering::Total, vec![0, 0]);
        let a = rep(vec![0, 0], vec![t(1, 1)], vec![(0, 1), (1, 1)]);
        let out = compute_flush(2, &[Some(&a)]);
        assert_eq!(keys(&out), vec![(1, 1)]);
    }

    /// Sim seed 2050338: a majority crashed; the survivor held a total
    /// message of a dead broker positioned first but depending on a message
    /// nobody holds, and its own messages after it. The lost dependency
    /// used to stop the whole flush, dropping the survivor's messages.
    #[test]
    fn a_positioned_message_with_a_lost_dependency_does_not_stop_the_flush() {
        let a = rep(
            vec![0, 0, 0, 0],
            vec![
                msg(2, 1, Ordering::Total, vec![2, 0, 0, 0]),
                msg(3, 1, Ordering::Total, vec![0, 0, 0, 0]),
                msg(3, 2, Ordering::Causal, vec![0, 0, 0, 0]),
                msg(3, 3, Ordering::Fifo, vec![]),
                msg(3, 4, Ordering::Reliable, vec![]),
            ],
            vec![(2, 1), (3, 1)],
        );
        let out = compute_flush(4, &[Some(&a)]);
        assert_eq!(keys(&out), vec![(3, 1), (3, 2), (3, 3), (3, 4)]);
    }

    /// What depends on an undeliverable message is undeliverable too, and
    /// so is the rest of its stream; other streams go on.
    #[test]
    fn messages_depending_on_undeliverable_ones_are_dropped_with_their_stream() {
        let a = rep(
            vec![0, 0, 0],
            vec![
                msg(0, 2, Ordering::Fifo, vec![]),
                msg(1, 1, Ordering::Causal, vec![2, 0, 0]),
                msg(1, 2, Ordering::Reliable, vec![]),
                msg(2, 1, Ordering::Causal, vec![0, 1, 0]),
                msg(2, 2, Ordering::Fifo, vec![]),
            ],
            vec![],
        );
        assert_eq!(
            keys(&compute_flush(3, &[Some(&a)])),
            Vec::<(u32, u64)>::new()
        );
        let b = rep(
            vec![0, 0, 0],
            vec![
                msg(1, 1, Ordering::Causal, vec![0, 0, 0]),
                msg(2, 1, Ordering::Causal, vec![0, 1, 0]),
                msg(0, 2, Ordering::Total, vec![0, 0, 0]),
            ],
            vec![(0, 2), (1, 1)],
        );
        assert_eq!(keys(&compute_flush(3, &[Some(&b)])), vec![(1, 1), (2, 1)]);
    }
}
