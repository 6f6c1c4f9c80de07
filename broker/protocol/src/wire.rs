//! Messages exchanged between brokers. The runtime encodes them with serde;
//! the core only sees decoded values.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::id::{MemberId, MeshView, MsgId, NodeId, Ordering, TransferId, ViewId};

/// One peer message with its addressing. `to` carries the incarnation so a
/// message meant for a dead incarnation is never acted on by its successor;
/// incarnation 0 means "whichever incarnation" and is accepted only on
/// [`PeerMsg::JoinRequest`] (a joiner does not know its seeds' incarnations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Sending broker incarnation.
    pub from: NodeId,
    /// Addressed broker incarnation.
    pub to: NodeId,
    /// Body.
    pub msg: PeerMsg,
}

/// Body of a peer message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMsg {
    /// Liveness plus stability frontiers.
    Heartbeat(Heartbeat),
    /// Receive frontiers sent as soon as enough progress was made (rather
    /// than on the next heartbeat), so stability, credit and `safe`
    /// delivery move at the speed of the traffic.
    Ack(AckMsg),
    /// A broker outside the mesh asks to be admitted; a restarted broker
    /// says which view it was last a member of (see [`Returning`]).
    JoinRequest(Option<Returning>),
    /// Tells a broker it is no longer a member of the primary view `view`.
    Excluded {
        /// The newer view that does not contain the addressee.
        view: ViewId,
    },
    /// An application message.
    Data(DataMsg),
    /// Total-order decisions of a group's sequencer.
    Order(OrderMsg),
    /// View change phase 1: the coordinator asks for a report.
    Propose(Propose),
    /// View change phase 1 answer: what a broker holds.
    Report(Box<Report>),
    /// View change phase 2: the coordinator asks brokers to accept a value.
    Accept {
        /// Ballot of the round.
        ballot: ViewId,
        /// The proposed next configuration.
        install: Box<Install>,
    },
    /// View change phase 2 answer.
    Accepted {
        /// Ballot accepted.
        ballot: ViewId,
    },
    /// View change phase 3: apply this configuration.
    Commit(Box<Install>),
    /// One chunk of a state transfer checkpoint.
    StateChunk(StateChunk),
    /// The joiner's broker has the whole checkpoint; the provider may drop it.
    StateDone(TransferId),
    /// The provider cannot give a checkpoint from the right cut (it never
    /// got its own); the joiner must rejoin.
    StateAbort(TransferId),
    /// A member that received a [`PeerMsg::JoinRequest`] passes it on to
    /// the coordinator (joiners only know their seeds, which need not
    /// include the coordinator). Accepted only from a member of the
    /// receiver's view.
    JoinForward {
        /// The broker asking for admission.
        joiner: NodeId,
    },
}

/// Periodic liveness message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Sender's installed view.
    pub view: Option<ViewId>,
    /// Highest ballot the sender has promised, so a coordinator can outbid it.
    pub promised: Option<ViewId>,
    /// Ballot of the value the sender accepted for its installed view, so a
    /// broker whose coordinator vanished can learn that value was chosen.
    pub accepted: Option<ViewId>,
    /// The sender has local group joins or leaves waiting for a view change.
    pub wants_change: bool,
    /// The sender is flushing: it answered a view change based on `view`
    /// that has not installed yet, so it sends and delivers nothing more in
    /// `view`.
    pub flushing: bool,
    /// Per-group receive frontiers in `view`.
    pub frontiers: Vec<Frontier>,
    /// The sender's clock (ms) when it sent this heartbeat: a member that
    /// echoes it back grants the sender a delivery lease (see `lease.rs`).
    pub stamp: u64,
    /// Lease grants: for each member whose heartbeat of `view` the sender
    /// heard, the latest stamp it heard from it. Empty while the sender is
    /// flushing: a member answering a view change grants nothing.
    pub echoes: Vec<(NodeId, u64)>,
}

/// What a restarted broker remembers of the mesh (from its data
/// directory): the members of the last view it installed and the base view
/// of the last value it accepted in a view change, if any. A member whose
/// view has exactly these members may count the restarted broker in place
/// of its old incarnation towards the majority that a view change needs
/// (see `docs/protocol.md` §4b): the old incarnation is dead, and what it
/// promised is void, but what it *accepted* is not known, so a broker that
/// accepted a value for that view is never counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Returning {
    /// Id of its last installed view as stored (views that changed only
    /// groups, not brokers, may have followed it); `None` if unknown.
    pub view: Option<ViewId>,
    /// Members of its last installed view (its old incarnation among them).
    pub members: Vec<NodeId>,
    /// Base view of the last value its old incarnation accepted.
    pub accepted: Option<ViewId>,
}

/// Acknowledgement of progress in some groups of `view`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckMsg {
    /// View the frontiers belong to.
    pub view: ViewId,
    /// Frontiers of the groups that advanced since the last acknowledgement.
    pub frontiers: Vec<Frontier>,
}

/// A broker's progress in one group of the current view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontier {
    /// Group.
    pub group: String,
    /// Contiguous messages received from each sender rank.
    pub received: Vec<u64>,
    /// Contiguous total-order decisions received.
    pub decisions: u64,
    /// Total-order positions delivered.
    pub delivered_positions: u64,
}

/// An application message as multicast by its origin broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataMsg {
    /// View in which it was sent.
    pub view: ViewId,
    /// Group.
    pub group: String,
    /// Rank of the sending broker in `view`.
    pub rank: u32,
    /// Position in the sender's stream for this group and view (from 1).
    pub seq: u64,
    /// Mesh-wide id.
    pub id: MsgId,
    /// Publishing session.
    pub publisher: MemberId,
    /// The publisher's own sequence number (from 1 for each publisher
    /// session of each broker incarnation): a rejoined broker's publishers
    /// start new streams.
    pub pub_seq: u64,
    /// Declared ordering.
    pub ordering: Ordering,
    /// Deliver only when stable.
    pub safe: bool,
    /// Vector timestamp (per sender rank, messages delivered at the sender
    /// when sending); empty unless causal or total.
    pub deps: Vec<u64>,
    /// Application bytes.
    pub payload: Bytes,
}

/// A batch of total-order decisions: positions `first..first+entries.len()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderMsg {
    /// View.
    pub view: ViewId,
    /// Group.
    pub group: String,
    /// Position of the first entry (from 1).
    pub first: u64,
    /// `(sender rank, stream seq)` per position.
    pub entries: Vec<(u32, u64)>,
}

/// Phase 1 of a view change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Propose {
    /// Ballot; becomes the new view id unless an earlier value is re-proposed.
    pub ballot: ViewId,
    /// The coordinator's installed view.
    pub base: ViewId,
    /// Proposed members.
    pub members: Vec<NodeId>,
}

/// What one broker holds for one group when a view change starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupReport {
    /// Group.
    pub group: String,
    /// Delivered count per sender rank.
    pub delivered: Vec<u64>,
    /// Messages held (received, not yet garbage collected).
    pub held: Vec<DataMsg>,
    /// Positions before `decisions` (delivered by every broker, trimmed).
    pub decisions_from: u64,
    /// Known total-order decisions from position `decisions_from + 1`.
    pub decisions: Vec<(u32, u64)>,
}

/// A local group membership request carried in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupRequest {
    /// Join, optionally with state transfer.
    Join {
        /// Group.
        group: String,
        /// Member.
        member: MemberId,
        /// Wants a checkpoint.
        state: bool,
    },
    /// Leave.
    Leave {
        /// Group.
        group: String,
        /// Member.
        member: MemberId,
    },
    /// Expel (slow consumer, failed transfer).
    Expel {
        /// Group.
        group: String,
        /// Member.
        member: MemberId,
    },
    /// The member's state provider went away: ask another one at the next
    /// view (re-based join point).
    Restate {
        /// Group.
        group: String,
        /// Member.
        member: MemberId,
    },
}

/// Phase 1 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Ballot answered.
    pub ballot: ViewId,
    /// Reporter's installed view (None while joining).
    pub current: Option<ViewId>,
    /// Highest accepted value, if any (Paxos rule).
    pub accepted: Option<(ViewId, Install)>,
    /// Per-group holdings.
    pub groups: Vec<GroupReport>,
    /// Local membership requests, numbered by the reporter.
    pub requests: Vec<(u64, GroupRequest)>,
}

/// The value agreed by a view change: the next configuration plus what
/// must be delivered before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Install {
    /// The new mesh view.
    pub view: MeshView,
    /// The view it replaces.
    pub prev: ViewId,
    /// Members of `prev`.
    pub prev_members: Vec<NodeId>,
    /// Every group of the new view.
    pub groups: Vec<GroupInstall>,
    /// Per reporting broker, the highest request number this install
    /// applied (those requests are done, whatever their outcome).
    pub applied: Vec<(NodeId, u64)>,
}

/// One group in an [`Install`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInstall {
    /// Group.
    pub group: String,
    /// Group view id (unchanged if the membership did not change).
    pub view_id: ViewId,
    /// Members oldest first.
    pub members: Vec<MemberId>,
    /// Members that were expelled rather than leaving.
    pub expelled: Vec<MemberId>,
    /// Members that joined (or re-joined) in this view.
    pub joined: Vec<MemberId>,
    /// Messages of the old view to deliver before the new view, in an order
    /// valid for every ordering declaration.
    pub flush: Vec<DataMsg>,
    /// State transfers starting at this join point: `(joiner, provider)`.
    pub transfers: Vec<(MemberId, Option<MemberId>)>,
    /// The members (of `members`, oldest first) that joined with state:
    /// they keep the group's application state, so state providers are
    /// chosen among them. A member that joined without state (a
    /// subscription, say) answers a state request with an empty checkpoint,
    /// and re-joins without state after a partition.
    pub stateful: Vec<MemberId>,
}

/// A chunk of a checkpoint sent by the provider's broker to the joiner's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChunk {
    /// Transfer.
    pub transfer: TransferId,
    /// Byte offset of `bytes`.
    pub offset: u64,
    /// Total checkpoint length.
    pub total: u64,
    /// Bytes.
    pub bytes: Vec<u8>,
}

/// Largest counter, sequence number, position or byte offset a peer may
/// name. Honest values grow by one per view, message or decision and never
/// come near it; the bound leaves room for the core's `+ 1` arithmetic, so
/// a hostile or corrupted peer cannot make it overflow or wrap.
pub(crate) const MAX_PEER_NUMBER: u64 = 1 << 62;

fn ok_num(n: u64) -> bool {
    n <= MAX_PEER_NUMBER
}

fn ok_view(v: &ViewId) -> bool {
    ok_num(v.counter)
}

fn ok_data(m: &DataMsg) -> bool {
    ok_view(&m.view)
        && ok_num(m.seq)
        && ok_num(m.pub_seq)
        && ok_num(m.id.seq)
        && m.deps.iter().all(|d| ok_num(*d))
}

fn ok_install(i: &Install) -> bool {
    ok_view(&i.view.id)
        && ok_view(&i.prev)
        && i.groups
            .iter()
            .all(|g| ok_view(&g.view_id) && g.flush.iter().all(ok_data))
}

/// Rejects a message naming any number beyond [`MAX_PEER_NUMBER`] (checked
/// before the message touches any state).
fn ok_frontier(f: &Frontier) -> bool {
    f.received.iter().all(|r| ok_num(*r)) && ok_num(f.decisions) && ok_num(f.delivered_positions)
}

pub(crate) fn check_numbers(msg: &PeerMsg) -> Result<(), &'static str> {
    let ok = match msg {
        PeerMsg::Heartbeat(h) => {
            h.view
                .iter()
                .chain(&h.promised)
                .chain(&h.accepted)
                .all(ok_view)
                && h.frontiers.iter().all(ok_frontier)
                && ok_num(h.stamp)
                && h.echoes.iter().all(|(_, t)| ok_num(*t))
        }
        PeerMsg::Ack(a) => ok_view(&a.view) && a.frontiers.iter().all(ok_frontier),
        PeerMsg::JoinRequest(r) => r.as_ref().is_none_or(|r| {
            r.accepted.iter().chain(&r.view).all(ok_view) && r.members.len() <= 1 << 16
        }),
        PeerMsg::JoinForward { .. } => true,
        PeerMsg::Excluded { view } => ok_view(view),
        PeerMsg::Data(m) => ok_data(m),
        PeerMsg::Order(o) => {
            ok_view(&o.view)
                && ok_num(o.first)
                && (o.entries.len() as u64) < MAX_PEER_NUMBER - o.first.min(MAX_PEER_NUMBER)
                && o.entries.iter().all(|(_, s)| ok_num(*s))
        }
        PeerMsg::Propose(p) => ok_view(&p.ballot) && ok_view(&p.base),
        PeerMsg::Report(r) => {
            ok_view(&r.ballot)
                && r.current.iter().all(ok_view)
                && r.accepted.iter().all(|(b, i)| ok_view(b) && ok_install(i))
                && r.groups.iter().all(|g| {
                    g.delivered.iter().all(|d| ok_num(*d))
                        && g.held.iter().all(ok_data)
                        && ok_num(g.decisions_from)
                        && (g.decisions.len() as u64)
                            < MAX_PEER_NUMBER - g.decisions_from.min(MAX_PEER_NUMBER)
                        && g.decisions.iter().all(|(_, s)| ok_num(*s))
                })
        }
        PeerMsg::Accept { ballot, install } => ok_view(ballot) && ok_install(install),
        PeerMsg::Accepted { ballot } => ok_view(ballot),
        PeerMsg::Commit(i) => ok_install(i),
        PeerMsg::StateChunk(c) => {
            ok_view(&c.transfer.view)
                && ok_num(c.offset)
                && ok_num(c.total)
                && (c.bytes.len() as u64) <= MAX_PEER_NUMBER
        }
        PeerMsg::StateDone(t) | PeerMsg::StateAbort(t) => ok_view(&t.view),
    };
    if ok {
        Ok(())
    } else {
        Err("number out of range")
    }
}
