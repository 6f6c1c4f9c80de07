//! What goes into the core ([`Input`]) and what comes out ([`Output`]).

use bytes::Bytes;

use crate::id::{GroupView, MemberId, MeshView, MsgId, NodeId, Ordering, TransferId, ViewId};
use crate::wire::Envelope;

/// An event handed to [`crate::Broker::handle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A message from a peer broker.
    Peer(Envelope),
    /// A (re)connected link to a peer: unacknowledged traffic is resent.
    LinkUp(NodeId),
    /// A link broke; messages in flight on it may be lost.
    LinkDown(NodeId),
    /// A command from a local client session.
    Client(ClientCmd),
    /// The deadline returned by [`crate::Broker::poll_timeout`] passed.
    Timeout,
}

/// A command from a client session hosted by this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCmd {
    /// Join a group (completes with a [`Output::GroupView`] containing the
    /// member).
    Join {
        /// Session.
        session: u64,
        /// Group.
        group: String,
        /// Ask for a checkpoint from an existing member.
        state: bool,
    },
    /// Leave a group.
    Leave {
        /// Session.
        session: u64,
        /// Group.
        group: String,
    },
    /// Publish a message to a group.
    Publish {
        /// Session.
        session: u64,
        /// Group.
        group: String,
        /// Declared ordering.
        ordering: Ordering,
        /// Deliver only once stable at every broker.
        safe: bool,
        /// Application bytes.
        payload: Bytes,
    },
    /// The runtime handed `count` deliveries of `group` to the session's
    /// client (only meaningful with `ProtocolConfig::member_queue`).
    Consumed {
        /// Session.
        session: u64,
        /// Group.
        group: String,
        /// Deliveries consumed.
        count: usize,
    },
    /// Answer to an [`Output::StateRequest`].
    StateReply {
        /// The transfer asked for.
        transfer: TransferId,
        /// Checkpoint bytes.
        data: Vec<u8>,
    },
}

/// Why a member left a group view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpelReason {
    /// Its delivery queue stayed full.
    Slow,
    /// Its state provider vanished before the checkpoint arrived.
    TransferFailed,
    /// Its broker was cut off from the primary component.
    Partitioned,
}

/// An effect for the runtime, drained with [`crate::Broker::poll_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a message to a peer broker (on its ordered connection).
    Send {
        /// Addressee.
        to: NodeId,
        /// Message.
        envelope: Envelope,
    },
    /// A new mesh view is installed.
    MeshView(MeshView),
    /// A group view changed (emitted for every group whose view changed).
    GroupView(GroupViewChange),
    /// Deliver a message to local members.
    Deliver(Delivery),
    /// Ask a local member for a checkpoint of its state at the join point.
    /// The provider is a member that joined with state unless the group
    /// has none (then a member without state, such as a subscription,
    /// answers with an empty checkpoint).
    StateRequest {
        /// Transfer id (echo it in [`ClientCmd::StateReply`]).
        transfer: TransferId,
        /// Local member asked.
        provider: MemberId,
    },
    /// A joiner's checkpoint (`None` when it joined an empty group).
    StateDelivered {
        /// Transfer.
        transfer: TransferId,
        /// Checkpoint bytes.
        data: Option<Vec<u8>>,
    },
    /// This broker lost the primary component: it stops delivering.
    Blocked,
    /// This broker is in the primary component again.
    Unblocked,
    /// This broker was excluded and rejoins as a new incarnation; its
    /// sessions' member ids change and their groups are rejoined as they
    /// were joined: with state transfer for members that joined with
    /// state, without for the others.
    Rejoining {
        /// Old incarnation.
        old: NodeId,
        /// New incarnation.
        new: NodeId,
    },
    /// A publish of a local session that will never be sent: the broker
    /// was cut off from the primary component (it was still waiting when
    /// the broker rejoined as a new incarnation, or it arrived while the
    /// broker was blocked). It is delivered nowhere.
    Unsent {
        /// The publishing session.
        session: u64,
        /// Its group.
        group: String,
        /// Its payload, as given in [`ClientCmd::Publish`].
        payload: Bytes,
    },
    /// The core took a [`ClientCmd::Leave`]: a join of that session and
    /// group it reports after this is one asked for after the leave (a
    /// view may still apply a join asked for before it, the core's
    /// re-join after a partition included, until this output: such views
    /// belong to the membership the client left).
    LeaveTaken {
        /// The session that left.
        session: u64,
        /// The group it left.
        group: String,
    },
    /// A local member was removed from a group by the protocol.
    Expelled {
        /// Group.
        group: String,
        /// Member.
        member: MemberId,
        /// Why.
        reason: ExpelReason,
    },
}

/// A new group view with what changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupViewChange {
    /// The view.
    pub view: GroupView,
    /// Members that joined (or re-joined) in this view: their join completed.
    pub joined: Vec<MemberId>,
    /// Joiners that will get an [`Output::StateDelivered`] before any
    /// delivery.
    pub with_state: Vec<MemberId>,
    /// Members of this broker in `joined` whose join this broker had
    /// withdrawn (a `Leave` came after the coordinator had already
    /// collected the join): the view applies the old request, and the
    /// membership ends with the pending leave. It is not the client's
    /// current membership, nor a later join of the same session.
    pub withdrawn: Vec<MemberId>,
}

/// One message delivered to local members of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Group.
    pub group: String,
    /// Mesh view in which it was delivered (the sending view).
    pub view: ViewId,
    /// Message id.
    pub id: MsgId,
    /// Publishing session.
    pub publisher: MemberId,
    /// The publisher's sequence number ([`crate::DataMsg::pub_seq`]).
    pub pub_seq: u64,
    /// Declared ordering.
    pub ordering: Ordering,
    /// Safe flag.
    pub safe: bool,
    /// Application bytes.
    pub payload: Bytes,
    /// Local members to hand it to (may be empty: the broker still counts
    /// it as delivered).
    pub targets: Vec<MemberId>,
    /// True when this delivery was held back for a joiner awaiting its
    /// checkpoint; the broker-level delivery was reported earlier.
    pub deferred: bool,
}
