//! Identities, time and small value types shared by every module.

use serde::{Deserialize, Serialize};

/// A point in time, in milliseconds, as chosen by the caller.
///
/// The core never reads a clock: every entry point takes a `Time`, so a
/// simulator can run hours of protocol in a few milliseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    /// `self + ms`, saturating.
    pub fn plus(self, ms: u64) -> Time {
        Time(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// One incarnation of a broker.
///
/// `name` is the broker's stable index (the runtime maps configured broker
/// ids to indices); `incarnation` grows on every restart or rejoin, so a
/// restarted broker is a *new* member of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId {
    /// Stable broker index.
    pub name: u32,
    /// Restart / rejoin counter; larger is newer.
    pub incarnation: u64,
}

impl NodeId {
    /// Builds a node id.
    pub fn new(name: u32, incarnation: u64) -> Self {
        NodeId { name, incarnation }
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b{}#{}", self.name, self.incarnation)
    }
}

/// A client session hosted by a broker; group members and publishers are
/// sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MemberId {
    /// The broker incarnation hosting the session.
    pub broker: NodeId,
    /// Session number, unique within the broker incarnation.
    pub session: u64,
}

/// Identifies one published message mesh-wide: the origin broker
/// incarnation and that broker's publish counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MsgId {
    /// Broker that accepted the publish.
    pub origin: NodeId,
    /// Counter at the origin, starting at 1.
    pub seq: u64,
}

/// Identifies a mesh view (and the ballot of the view change that made it).
///
/// Totally ordered: first by `counter`, then by the coordinator that
/// proposed it, so two coordinators never produce equal ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ViewId {
    /// Monotonic counter.
    pub counter: u64,
    /// Broker that proposed this view.
    pub coordinator: NodeId,
}

impl std::fmt::Display for ViewId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}@{}", self.counter, self.coordinator)
    }
}

/// Ordering declared by a publisher for one message.
///
/// Variants are ordered from weakest to strongest; between two messages the
/// weaker declaration applies (`min`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Ordering {
    /// Delivered once, in any order.
    Reliable,
    /// One publisher's messages in send order.
    Fifo,
    /// Causal order (vector timestamps over brokers).
    Causal,
    /// Same relative order everywhere, consistent with causal and fifo.
    Total,
}

/// An agreed set of live brokers, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MeshView {
    /// View id.
    pub id: ViewId,
    /// Members, oldest first; `members[0]` coordinates.
    pub members: Vec<NodeId>,
}

impl MeshView {
    /// Rank of `node` in this view.
    pub fn rank(&self, node: NodeId) -> Option<usize> {
        self.members.iter().position(|m| *m == node)
    }

    /// True if `node` is a member.
    pub fn contains(&self, node: NodeId) -> bool {
        self.members.contains(&node)
    }
}

/// A view of one group: id and members oldest first (rank = position).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupView {
    /// Group name.
    pub group: String,
    /// Id of the mesh view in which this group view was installed.
    pub id: ViewId,
    /// Members, oldest first.
    pub members: Vec<MemberId>,
}

/// Identifies one state transfer: the joiner and the view it joined in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TransferId {
    /// Group.
    pub group: String,
    /// The joining member.
    pub joiner: MemberId,
    /// The view whose installation is the join point.
    pub view: ViewId,
}

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/s{}", self.broker, self.session)
    }
}
