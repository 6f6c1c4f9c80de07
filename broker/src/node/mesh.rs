//! The mesh runtime: drives the sans-IO protocol core ([`meshcast_protocol`])
//! with real time and real peer links.
//!
//! One task owns the core. It feeds it link events and frames from the link
//! manager, commands from the local side and timeouts, in batches of
//! whatever is waiting (so the core sends and delivers once per batch), and
//! then drains the core's outputs: messages for peers are encoded once into
//! one buffer per peer and queued on its link; everything else (deliveries,
//! views, state-transfer requests, ...) goes to the local side on one
//! bounded channel, one batch at a time.
//!
//! Links are reliable and ordered while they live. If a link's queue is full
//! the link is reset, so the core sees it go down and resends what is
//! unacknowledged once it is back, rather than a frame silently missing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use meshcast_protocol::{Broker, ClientCmd, Envelope, GroupStats, Input, NodeId, Output, Time};
use meshcast_transport::wire;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::membership_store::{MembershipStore, StoredView};
use super::names::Names;
use super::peers::{PeerEvent, PeerHandle, SendError};

/// Handle to a running mesh task.
#[derive(Clone)]
pub struct MeshHandle {
    cmds: mpsc::Sender<ClientCmd>,
    stats: mpsc::Sender<oneshot::Sender<CoreFigures>>,
}

/// The protocol core's figures, read from the task that owns it.
#[derive(Debug, Clone, Default)]
pub struct CoreFigures {
    /// Per group: sequencer, held and unstable messages, queued publishes.
    pub groups: Vec<GroupStats>,
    /// Memberships of a mesh view change in progress here (the value this
    /// broker accepted, the round it coordinates); empty when none is.
    pub pending_views: Vec<Vec<meshcast_protocol::NodeId>>,
}

impl MeshHandle {
    /// The command channel itself (for callers that must not wait).
    pub(crate) fn sender(&self) -> mpsc::Sender<ClientCmd> {
        self.cmds.clone()
    }

    /// Hands a command from a local session to the core.
    pub async fn command(&self, cmd: ClientCmd) -> Result<(), ClientCmd> {
        self.cmds.send(cmd).await.map_err(|e| e.0)
    }

    /// The core's figures for every group (sequencer, held and unstable
    /// messages, queued publishes); empty if the mesh task is gone.
    pub async fn group_stats(&self) -> Vec<GroupStats> {
        self.figures().await.groups
    }

    /// The core's figures: per group, and any view change in progress;
    /// empty if the mesh task is gone.
    pub async fn figures(&self) -> CoreFigures {
        let (tx, rx) = oneshot::channel();
        if self.stats.send(tx).await.is_err() {
            return CoreFigures::default();
        }
        rx.await.unwrap_or_default()
    }
}

/// Starts the task that owns `core`. `peers`/`peer_events` are the link
/// manager and its events; `local` receives every output that is not a
/// message for a peer. `queue` bounds the command channel.
///
/// Commands are read only while the core's outbox has room for a whole
/// batch of them (`max_outbox`, see [`meshcast_protocol::ProtocolConfig`]):
/// a publisher faster than the mesh fills the command channel and is held
/// back there, never refused by the core.
///
/// `store` is this broker's membership file: a view the core installs
/// ([`Output::MeshView`]) with other brokers than the stored one, and a new
/// incarnation it takes
/// ([`Output::Rejoining`]) are written to it before anything else of that
/// batch of outputs is sent to peers or handed to the local side. If it
/// cannot be written, the task stops (the broker leaves the mesh) rather
/// than act on a view it could forget.
pub fn spawn(
    core: Broker,
    bounds: Bounds,
    peers: PeerHandle,
    peer_events: mpsc::Receiver<PeerEvent>,
    local: mpsc::Sender<Vec<Output>>,
    store: MembershipStore,
    names: Names,
) -> MeshHandle {
    let Bounds {
        max_outbox,
        queue,
        links: limits,
    } = bounds;
    let (tx, rx) = mpsc::channel(queue);
    let (stats_tx, stats_rx) = mpsc::channel(8);
    let chans = Channels {
        peer_events,
        cmds: rx,
        stats: stats_rx,
        local,
    };
    tokio::spawn(run(core, max_outbox, peers, chans, store, limits, names));
    MeshHandle {
        cmds: tx,
        stats: stats_tx,
    }
}

/// What the mesh task listens to and talks to.
struct Channels {
    peer_events: mpsc::Receiver<PeerEvent>,
    cmds: mpsc::Receiver<ClientCmd>,
    stats: mpsc::Receiver<oneshot::Sender<CoreFigures>>,
    local: mpsc::Sender<Vec<Output>>,
}

/// Most inputs handed to the core in one batch.
const MAX_BATCH: usize = 1024;

/// Most addresses taken from one gossip message.
const MAX_GOSSIP: usize = 256;

/// What travels on a peer link: protocol messages, and the addresses of the
/// brokers the sender has linked to (sent whenever a link comes up), so a
/// broker configured with a single peer still links to every other one.
/// A protocol message too large for one frame (a view change's report
/// or install with many large unstable messages) travels as `Fragment`s of
/// its encoding, in order on the link, the last one marked.
#[derive(Serialize)]
enum LinkMsgRef<'a> {
    Protocol(&'a Envelope),
    Peers(&'a [(String, String)]),
    Fragment { last: bool, bytes: &'a [u8] },
}

/// Decoding side of [`LinkMsgRef`] (same encoding).
#[derive(Deserialize)]
enum LinkMsg {
    Protocol(Envelope),
    Peers(Vec<(String, String)>),
    Fragment { last: bool, bytes: Bytes },
}

/// The mesh task's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The core's `max_outbox` (commands are read only while a whole batch
    /// fits).
    pub max_outbox: usize,
    /// Bound of the command channel.
    pub queue: usize,
    /// Frames and messages on peer links.
    pub links: LinkLimits,
}

/// Frame and message bounds on peer links.
#[derive(Debug, Clone, Copy)]
pub struct LinkLimits {
    /// Largest frame a peer accepts (`limits.max_frame_bytes`).
    pub max_frame: usize,
    /// Largest message put together from fragments (`mesh.max_message_bytes`).
    pub max_message: usize,
}

/// Room in a fragment's frame for the variant, flag and length prefix.
const FRAGMENT_OVERHEAD: usize = 32;

/// Appends `env` to `buf` as one frame, or, if its encoding is larger than
/// `limits.max_frame`, as fragments of it (up to `limits.max_message`).
pub(crate) fn encode_protocol(
    env: &Envelope,
    limits: LinkLimits,
    buf: &mut BytesMut,
) -> Result<(), wire::WireError> {
    let start = buf.len();
    let msg = LinkMsgRef::Protocol(env);
    if wire::encode_frame("peer message", &msg, buf).is_ok()
        && buf.len() - start - wire::LEN_PREFIX <= limits.max_frame
    {
        return Ok(());
    }
    buf.truncate(start);
    let body = wire::encode_body("peer message", &msg, limits.max_message)?;
    let chunk = limits.max_frame.saturating_sub(FRAGMENT_OVERHEAD).max(1);
    let mut pieces = body.chunks(chunk).peekable();
    while let Some(bytes) = pieces.next() {
        let last = pieces.peek().is_none();
        let msg = LinkMsgRef::Fragment { last, bytes };
        wire::encode_frame("peer message fragment", &msg, buf)?;
    }
    Ok(())
}

/// Fragments received so far, per peer (a link delivers in order).
#[derive(Default)]
pub(crate) struct Reassembly {
    parts: HashMap<u32, BytesMut>,
}

impl Reassembly {
    /// Adds a fragment from peer `name`; returns the whole message's body
    /// with the last one, or an error if it would exceed `max`.
    fn push(
        &mut self,
        name: u32,
        last: bool,
        bytes: &[u8],
        max: usize,
    ) -> Result<Option<BytesMut>, String> {
        let part = self.parts.entry(name).or_default();
        if part.len() + bytes.len() > max {
            self.parts.remove(&name);
            return Err(format!(
                "a fragmented message exceeds mesh.max_message_bytes ({max})"
            ));
        }
        part.extend_from_slice(bytes);
        Ok(if last { self.parts.remove(&name) } else { None })
    }

    /// A link went down or up: what was partly received is lost with it.
    fn reset(&mut self, name: u32) {
        self.parts.remove(&name);
    }
}

/// What is known of the brokers linked to: node name to (broker id, the
/// peer address it announced).
type Known = HashMap<u32, (String, String)>;

async fn run(
    mut core: Broker,
    max_outbox: usize,
    peers: PeerHandle,
    chans: Channels,
    mut store: MembershipStore,
    limits: LinkLimits,
    names: Names,
) {
    let Channels {
        mut peer_events,
        mut cmds,
        mut stats,
        local,
    } = chans;
    let epoch = Instant::now();
    let now = || Time(epoch.elapsed().as_millis() as u64);
    // Node names (u32) of the brokers we have linked to, to their ids and
    // peer addresses (for the membership file).
    let mut links = LinkState {
        readable: names,
        names: HashMap::new(),
        reassembly: Reassembly::default(),
        limits,
    };
    // Encoded frames for each peer, sent once per batch.
    let mut outgoing: HashMap<u32, BytesMut> = HashMap::new();
    loop {
        let deadline = core
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(epoch + Duration::from_millis(t.0)));
        // Room for a whole batch of publishes, so the core never refuses one.
        let room = core.queued_publishes() + MAX_BATCH <= max_outbox;
        let mut inputs = Vec::new();
        tokio::select! {
            ev = peer_events.recv() => match ev {
                Some(ev) => peer_input(ev, &mut links, &peers, &mut inputs),
                None => return,
            },
            cmd = cmds.recv(), if room => match cmd {
                Some(cmd) => inputs.push(Input::Client(cmd)),
                None => return,
            },
            _ = sleep_until(deadline) => inputs.push(Input::Timeout),
            Some(reply) = stats.recv() => {
                let _ = reply.send(CoreFigures {
                    groups: core.group_stats(),
                    pending_views: core.pending_views(),
                });
                continue;
            }
        }
        // Whatever else is already waiting joins the batch, so the core
        // sends decisions, deliveries and acknowledgements once for all.
        while inputs.len() < MAX_BATCH {
            match peer_events.try_recv() {
                Ok(ev) => peer_input(ev, &mut links, &peers, &mut inputs),
                Err(_) => break,
            }
        }
        while room && inputs.len() < MAX_BATCH {
            match cmds.try_recv() {
                Ok(cmd) => inputs.push(Input::Client(cmd)),
                Err(_) => break,
            }
        }
        for e in core.handle_batch(now(), inputs) {
            tracing::debug!(error = %e, "protocol input refused");
        }
        // A value that removes a broker, accepted in this batch: durable
        // before the acceptance leaves (a restarted broker must be able to
        // say it accepted it, see docs/protocol.md §4b).
        if let Some(base) = core.accepted_base() {
            if let Err(e) = store.set_accepted(base) {
                tracing::error!(error = %e, "cannot persist the mesh membership: this broker stops taking part in the mesh");
                return;
            }
        }
        let mut batch = Vec::new();
        let (mut view, mut incarnation) = (None, None);
        while let Some(out) = core.poll_output() {
            match &out {
                Output::MeshView(v) => view = Some(v.clone()),
                Output::Rejoining { new, .. } => incarnation = Some(new.incarnation),
                _ => {}
            }
            match out {
                Output::Send { to, envelope } => {
                    let buf = outgoing.entry(to.name).or_default();
                    if let Err(e) = encode_protocol(&envelope, links.limits, buf) {
                        tracing::error!(error = %e, "cannot encode a peer message");
                    }
                }
                other => batch.push(other),
            }
        }
        // The membership file first: nothing of this batch leaves the task
        // before the view and incarnation it acts under are durable.
        if let Err(e) = persist(&mut store, &links.names, &peers, view, incarnation) {
            tracing::error!(error = %e, "cannot persist the mesh membership: this broker stops taking part in the mesh");
            return;
        }
        // One send per batch: the local side sees each batch whole (a
        // checkpoint and the deliveries held back for it arrive together).
        if !batch.is_empty() && local.send(batch).await.is_err() {
            return;
        }
        for (name, buf) in outgoing.iter_mut() {
            if buf.is_empty() {
                continue;
            }
            let frames = buf.split().freeze();
            let Some((broker, _)) = links.names.get(name) else {
                continue; // no link yet: the core resends after LinkUp
            };
            match peers.send(broker, frames) {
                Ok(()) | Err(SendError::NoLink(_)) => {}
                Err(SendError::Full(_)) => {
                    tracing::warn!(peer = %broker, "peer link queue full: resetting the link");
                    peers.reset(broker);
                }
            }
        }
    }
}

/// Turns a link event into core inputs (none for a bad frame: the link of
/// its sender is reset instead).
/// What the mesh task keeps about its links.
struct LinkState {
    /// Readable names, shared with the rest of the runtime.
    readable: Names,
    /// Node names of the brokers linked to, to their ids and addresses.
    names: Known,
    /// Fragmented messages being put together.
    reassembly: Reassembly,
    limits: LinkLimits,
}

fn peer_input(ev: PeerEvent, links: &mut LinkState, peers: &PeerHandle, inputs: &mut Vec<Input>) {
    match ev {
        PeerEvent::Up { peer, hello } => {
            let name = meshcast_config::node_name(&peer.broker);
            links.reassembly.reset(name);
            links.readable.learn(&peer.broker, Some(hello.incarnation));
            links.readable.note_up(&peer.broker);
            tracing::info!(peer = %peer.broker, site = %hello.site, addr = %hello.peer_addr, "peer link up");
            links.names.insert(name, (peer.broker, hello.peer_addr));
            inputs.push(Input::LinkUp(NodeId::new(name, peer.incarnation)));
            gossip(peers);
        }
        PeerEvent::Down { peer, reason } => {
            if reason.contains("duplicate link") {
                tracing::debug!(peer = %peer.broker, %reason, "peer link down");
            } else {
                tracing::info!(peer = %peer.broker, %reason, "peer link down");
            }
            links.readable.note_down(&peer.broker, &reason);
            let name = meshcast_config::node_name(&peer.broker);
            links.reassembly.reset(name);
            inputs.push(Input::LinkDown(NodeId::new(name, peer.incarnation)));
        }
        PeerEvent::Frames { peer, bodies } => {
            let name = meshcast_config::node_name(&peer.broker);
            for body in bodies {
                let max = links.limits.max_message;
                match read_frame(&mut links.reassembly, name, &body, max) {
                    Ok(LinkFrame::Peers(list)) => {
                        let list = if peers.learns_addresses() {
                            list
                        } else {
                            Vec::new()
                        };
                        for (broker, addr) in list.into_iter().take(MAX_GOSSIP) {
                            if let Ok(addr) = addr.parse() {
                                peers.connect(addr, &broker);
                            }
                        }
                    }
                    // The link is authenticated (mutual TLS, hello): a
                    // message must come from the broker at its other end.
                    // That process's core starts at the incarnation of its
                    // hello and only goes up (by 1 on each rejoin), so a
                    // smaller one is not it.
                    Ok(LinkFrame::Protocol(env))
                        if env.from.name != name || env.from.incarnation < peer.incarnation =>
                    {
                        tracing::warn!(peer = %peer.broker, from = %links.readable.node_exact(env.from), "dropping the link of a peer that sent as another broker");
                        peers.reset(&peer.broker);
                        return;
                    }
                    Ok(LinkFrame::Protocol(env)) => inputs.push(Input::Peer(env)),
                    Ok(LinkFrame::Partial) => {}
                    Err(LinkFault::Oversize(reason)) => {
                        tracing::warn!(peer = %peer.broker, %reason, "dropping the link of a peer");
                        peers.reset(&peer.broker);
                        return;
                    }
                    Err(LinkFault::Bad(e)) => {
                        tracing::warn!(peer = %peer.broker, error = %e, "dropping the link of a peer that sent a bad frame");
                        peers.reset(&peer.broker);
                        return;
                    }
                }
            }
        }
    }
}

/// One frame read from a peer link, decoded.
#[derive(Debug)]
pub(crate) enum LinkFrame {
    /// A protocol message (whole, or put together from fragments).
    Protocol(Envelope),
    /// Broker addresses the peer knows (gossip).
    Peers(Vec<(String, String)>),
    /// A fragment of a larger message; more follow.
    Partial,
}

/// Why a peer link's frame is refused (the link is then reset).
#[derive(Debug)]
pub(crate) enum LinkFault {
    /// The frame, or the message its fragments make, does not decode.
    Bad(wire::WireError),
    /// Fragments add up to more than `mesh.max_message_bytes`.
    Oversize(String),
}

/// Decodes one frame `body` from the link of peer `name`, putting
/// fragments together in `reassembly` up to `max_message` bytes.
pub(crate) fn read_frame(
    reassembly: &mut Reassembly,
    name: u32,
    body: &[u8],
    max_message: usize,
) -> Result<LinkFrame, LinkFault> {
    let msg = wire::decode_body::<LinkMsg>("peer message", body).map_err(LinkFault::Bad)?;
    match msg {
        LinkMsg::Protocol(env) => Ok(LinkFrame::Protocol(env)),
        LinkMsg::Peers(list) => Ok(LinkFrame::Peers(list)),
        LinkMsg::Fragment { last, bytes } => {
            match reassembly
                .push(name, last, &bytes, max_message)
                .map_err(LinkFault::Oversize)?
            {
                None => Ok(LinkFrame::Partial),
                Some(whole) => match wire::decode_body::<LinkMsg>("peer message", &whole) {
                    Ok(LinkMsg::Protocol(env)) => Ok(LinkFrame::Protocol(env)),
                    Ok(_) => Err(LinkFault::Bad(wire::WireError::Malformed {
                        what: "peer message",
                        detail: "fragments of something other than a protocol message".into(),
                    })),
                    Err(e) => Err(LinkFault::Bad(e)),
                },
            }
        }
    }
}

/// Writes a new view and incarnation (whichever the batch had) to the
/// membership file, naming the members by broker id where known.
fn persist(
    store: &mut MembershipStore,
    names: &Known,
    peers: &PeerHandle,
    view: Option<meshcast_protocol::MeshView>,
    incarnation: Option<u64>,
) -> Result<(), super::membership_store::MembershipError> {
    if let Some(inc) = incarnation {
        store.set_incarnation(inc)?;
    }
    if let Some(v) = view {
        let (me_id, me_addr) = peers.local();
        let me = meshcast_config::node_name(&me_id);
        let stored = StoredView::of(&v, |name| {
            if name == me {
                return (Some(me_id.clone()), Some(me_addr.clone()));
            }
            match names.get(&name) {
                Some((b, a)) => (Some(b.clone()), Some(a.clone())),
                None => (None, None),
            }
        });
        // Only a change of brokers is written: a view change for a client
        // joining or leaving a group keeps the same brokers, and an fsync
        // per group join would slow every join (and the file's counter is
        // then that of the last change of brokers).
        let same = |a: &StoredView, b: &StoredView| {
            let key = |v: &StoredView| -> Vec<(u32, u64)> {
                v.members.iter().map(|m| (m.name, m.incarnation)).collect()
            };
            key(a) == key(b)
        };
        if store.view().is_some_and(|old| same(old, &stored)) {
            return Ok(());
        }
        tracing::info!(view = %stored.describe(), path = %store.path().display(), "mesh view persisted");
        store.set_view(stored)?;
    }
    Ok(())
}

/// Tells every linked broker the addresses of all brokers known here.
fn gossip(peers: &PeerHandle) {
    let list: Vec<(String, String)> = peers
        .known_peers()
        .into_iter()
        .map(|(b, a)| (b, a.to_string()))
        .collect();
    if list.is_empty() {
        return;
    }
    let frame = match wire::frame("peer addresses", &LinkMsgRef::Peers(&list)) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode peer addresses");
            return;
        }
    };
    for p in peers.connected() {
        // A full queue drops this one; the next link event gossips again.
        let _ = peers.send(&p.broker, frame.clone());
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::{GUARD, free_addr, link_node, tempdir};
    use meshcast_protocol::{Ordering, PeerMsg, ProtocolConfig};

    /// The frame bodies in `buf` (length-prefixed frames).
    fn bodies(mut buf: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while buf.len() >= wire::LEN_PREFIX {
            let len = u32::from_le_bytes(buf[..4].try_into().unwrap()) as usize;
            out.push(buf[4..4 + len].to_vec());
            buf = &buf[4 + len..];
        }
        out
    }

    #[test]
    fn a_message_larger_than_a_frame_travels_in_fragments_and_is_put_together() {
        let env = Envelope {
            from: NodeId::new(1, 1),
            to: NodeId::new(2, 1),
            msg: PeerMsg::JoinForward {
                joiner: NodeId::new(3, 1),
            },
        };
        let big = Envelope {
            msg: PeerMsg::JoinRequest(Some(meshcast_protocol::Returning {
                view: None,
                members: (0..40)
                    .map(|i| NodeId::new(i, 1_000_000 + u64::from(i)))
                    .collect(),
                accepted: None,
            })),
            ..env.clone()
        };
        // A frame limit far below the message: it must be split.
        let limits = LinkLimits {
            max_frame: 64,
            max_message: 1 << 20,
        };
        let mut buf = BytesMut::new();
        encode_protocol(&env, limits, &mut buf).unwrap();
        encode_protocol(&big, limits, &mut buf).unwrap();
        let frames = bodies(&buf);
        assert!(
            frames.iter().all(|f| f.len() <= limits.max_frame),
            "{frames:?}"
        );
        let mut reasm = Reassembly::default();
        let mut got = Vec::new();
        let mut fragments = 0;
        for f in frames {
            match wire::decode_body::<LinkMsg>("peer message", &f).unwrap() {
                LinkMsg::Protocol(e) => got.push(e),
                LinkMsg::Fragment { last, bytes } => {
                    fragments += 1;
                    if let Some(whole) = reasm.push(2, last, &bytes, limits.max_message).unwrap() {
                        match wire::decode_body::<LinkMsg>("peer message", &whole).unwrap() {
                            LinkMsg::Protocol(e) => got.push(e),
                            _ => panic!("not a protocol message"),
                        }
                    }
                }
                LinkMsg::Peers(_) => panic!("gossip"),
            }
        }
        assert!(fragments >= 2, "nothing was split");
        assert_eq!(got, vec![env, big]);
        // Beyond mesh.max_message_bytes: refused (the link is reset).
        let mut reasm = Reassembly::default();
        assert!(reasm.push(2, false, &[0; 30], 40).unwrap().is_none());
        assert!(reasm.push(2, true, &[0; 30], 40).is_err());
    }

    struct Node {
        mesh: MeshHandle,
        out: mpsc::Receiver<Vec<Output>>,
        pending: std::collections::VecDeque<Output>,
    }

    impl Node {
        /// The next output for the local side.
        async fn next(&mut self) -> Option<Output> {
            while self.pending.is_empty() {
                self.pending.extend(self.out.recv().await?);
            }
            self.pending.pop_front()
        }
    }

    /// A node linked to every address in `links` that joins the mesh
    /// through `seed` (or bootstraps it when `seed` is `None`).
    fn node(
        dir: &std::path::Path,
        name: &str,
        addr: SocketAddr,
        links: Vec<(SocketAddr, &str)>,
        seed: Option<&str>,
    ) -> Node {
        let (peers, events) = link_node(dir, name, 1, addr, links);
        let cfg = ProtocolConfig {
            bootstrap: seed.is_none(),
            seeds: seed.map(meshcast_config::node_name).into_iter().collect(),
            ..ProtocolConfig::default()
        };
        let core = Broker::new(NodeId::new(meshcast_config::node_name(name), 1), cfg, 7);
        let (tx, out) = mpsc::channel(4096);
        let store = MembershipStore::open(&dir.join(format!("{name}-data")), name).unwrap();
        Node {
            mesh: spawn(
                core,
                Bounds {
                    max_outbox: ProtocolConfig::default().max_outbox,
                    queue: 1024,
                    links: LinkLimits {
                        max_frame: 1 << 20,
                        max_message: 1 << 28,
                    },
                },
                peers,
                events,
                tx,
                store,
                Names::new(name, 1),
            ),
            out,
            pending: Default::default(),
        }
    }

    use std::net::SocketAddr;

    /// Waits for the group view of `g` to have `n` members.
    async fn wait_members(node: &mut Node, n: usize) {
        tokio::time::timeout(GUARD, async {
            loop {
                match node.next().await {
                    Some(Output::GroupView(gv))
                        if gv.view.group == "g" && gv.view.members.len() == n =>
                    {
                        return;
                    }
                    Some(_) => {}
                    None => panic!("mesh task ended"),
                }
            }
        })
        .await
        .expect("group view never reached its members");
    }

    #[tokio::test]
    async fn three_cores_over_quic_agree_on_one_total_order() {
        let dir = tempdir("mesh-core");
        let (a0, a1, a2) = (free_addr(), free_addr(), free_addr());
        // Every broker lists every other; n0 bootstraps, the others join.
        let mut nodes = [
            node(&dir, "n0", a0, vec![(a1, "n1"), (a2, "n2")], None),
            node(&dir, "n1", a1, vec![(a0, "n0"), (a2, "n2")], Some("n0")),
            node(&dir, "n2", a2, vec![(a0, "n0"), (a1, "n1")], Some("n0")),
        ];
        agree_on_total_order(&mut nodes).await;
        // Every core names the same sequencer for the group.
        let mut sequencers = Vec::new();
        for n in &nodes {
            let stats = n.mesh.group_stats().await;
            let g = stats.iter().find(|s| s.group == "g").expect("group g");
            assert_eq!(g.members, 3, "{g:?}");
            sequencers.push(g.sequencer.expect("a sequencer"));
        }
        assert!(
            sequencers.windows(2).all(|w| w[0] == w[1]),
            "{sequencers:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn brokers_that_know_only_one_peer_link_through_gossip() {
        let dir = tempdir("mesh-star");
        let (a0, a1, a2) = (free_addr(), free_addr(), free_addr());
        // n1 and n2 know only n0: they learn each other's address from it.
        let mut nodes = [
            node(&dir, "n0", a0, vec![], None),
            node(&dir, "n1", a1, vec![(a0, "n0")], Some("n0")),
            node(&dir, "n2", a2, vec![(a0, "n0")], Some("n0")),
        ];
        agree_on_total_order(&mut nodes).await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every node joins group `g`, publishes, and all deliver one order.
    async fn agree_on_total_order(nodes: &mut [Node; 3]) {
        for n in nodes.iter() {
            let join = ClientCmd::Join {
                session: 1,
                group: "g".into(),
                state: false,
            };
            n.mesh.command(join).await.unwrap();
        }
        for n in nodes.iter_mut() {
            wait_members(n, 3).await;
        }
        const PER_NODE: usize = 30;
        for round in 0..PER_NODE {
            for (i, n) in nodes.iter().enumerate() {
                let publish = ClientCmd::Publish {
                    session: 1,
                    group: "g".into(),
                    ordering: Ordering::Total,
                    safe: false,
                    payload: format!("n{i}-{round}").into_bytes().into(),
                };
                n.mesh.command(publish).await.unwrap();
            }
        }
        let mut orders = Vec::new();
        for n in nodes.iter_mut() {
            let mut got = Vec::new();
            tokio::time::timeout(GUARD, async {
                while got.len() < 3 * PER_NODE {
                    match n.next().await {
                        Some(Output::Deliver(d)) if !d.deferred => {
                            got.push(String::from_utf8(d.payload.to_vec()).unwrap())
                        }
                        Some(_) => {}
                        None => panic!("mesh task ended"),
                    }
                }
            })
            .await
            .unwrap_or_else(|_| {
                panic!("only {} of {} delivered: {got:?}", got.len(), 3 * PER_NODE)
            });
            orders.push(got);
        }
        assert_eq!(orders[0], orders[1]);
        assert_eq!(orders[0], orders[2]);
        // Each publisher's messages keep their order inside the total order.
        for i in 0..3 {
            let mine: Vec<&String> = orders[0]
                .iter()
                .filter(|m| m.starts_with(&format!("n{i}-")))
                .collect();
            let want: Vec<String> = (0..PER_NODE).map(|r| format!("n{i}-{r}")).collect();
            assert_eq!(mine, want.iter().collect::<Vec<_>>());
        }
    }
}
