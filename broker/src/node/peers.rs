//! Broker-to-broker links: dialing, accepting, one connection per broker
//! pair, reconnection with bounded backoff, and bounded per-link queues.
//!
//! The manager moves opaque frames. It reports [`PeerEvent`]s (a link up, a
//! frame, a link down) on one bounded channel and takes outgoing frames for a
//! peer through [`PeerHandle::send`]. What the frames mean is the protocol
//! core's business.
//!
//! When both brokers of a pair dial each other at once, each side ends up
//! with two connections and independently keeps the one dialed by the broker
//! with the smaller id, so both keep the same one. A broker re-dials every
//! peer address it knows (from its configuration, from peers' hellos, or
//! given by [`PeerHandle::connect`]) while it has no live link to it.

use std::collections::{HashMap, HashSet};

use rustls_pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use meshcast_transport::peer::{self, PeerHello, PeerLink};
use tokio::sync::mpsc;

/// Code used to close the losing connection of a duplicate pair.
const DUPLICATE: u32 = 10;

/// Most peer addresses remembered (configured, learned from hellos or from
/// other brokers' gossip); beyond it new addresses are ignored. Gossip only
/// comes from brokers holding a certificate of the cluster CA.
pub const MAX_KNOWN_ADDRS: usize = 1024;

/// Identity of one incarnation of a peer broker.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerId {
    /// Stable broker id.
    pub broker: String,
    /// Incarnation of that broker.
    pub incarnation: u64,
}

/// What the link manager reports.
#[derive(Debug)]
pub enum PeerEvent {
    /// A link to `peer` is up; frames can be sent to it.
    Up {
        /// The peer.
        peer: PeerId,
        /// Its hello.
        hello: PeerHello,
    },
    /// Frames from `peer` that arrived together, in the order they were
    /// sent (one event per read, not per frame).
    Frames {
        /// The peer.
        peer: PeerId,
        /// The frame bodies (without their length prefixes).
        bodies: Vec<Bytes>,
    },
    /// The link to `peer` is gone; frames in flight may be lost.
    Down {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
}

/// Settings of the link manager.
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// Who we are.
    pub local: PeerHello,
    /// Peer addresses to dial from the start, with the broker id expected
    /// there (its certificate must be valid for that name, or for
    /// `localhost` when the id is not a DNS name).
    pub seeds: Vec<(SocketAddr, String)>,
    /// Largest frame accepted.
    pub max_frame: usize,
    /// Frames queued per link before [`PeerHandle::send`] reports it full.
    pub link_queue: usize,
    /// First and longest wait between dial attempts.
    pub backoff: (Duration, Duration),
    /// Time allowed for a link's connection and handshake.
    pub handshake_timeout: Duration,
    /// A link heard from within this time (`mesh.suspect_timeout_ms`) is
    /// live: another process presenting the same broker id is refused
    /// (DESIGN §2.11) rather than allowed to replace it.
    pub live_within: Duration,
    /// Dial addresses learned from hellos and gossip (`mesh.learn_peer_addresses`).
    pub learn_addresses: bool,
    /// Least time between two warnings about the same unreachable peer
    /// address (`log.peer_warn_interval_ms`); the first failure is always
    /// logged.
    pub warn_every: Duration,
}

/// One link as the status document shows it.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    /// The peer.
    pub peer: PeerId,
    /// Milliseconds since frames last arrived on it.
    pub silent_ms: u64,
    /// The connection's current round-trip estimate.
    pub rtt: Duration,
    /// Whether the connection is open and was heard from within
    /// [`PeerSettings::live_within`]: a peer that was SIGKILLed stops
    /// being live after that time, though its connection lingers until
    /// the idle timeout.
    pub live: bool,
}

/// Why a frame could not be queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// No live link to that peer.
    #[error("no link to {0}")]
    NoLink(String),
    /// The link's queue is full.
    #[error("link queue to {0} is full")]
    Full(String),
}

struct LiveLink {
    id: u64,
    peer: PeerId,
    /// The hello of the process at the other end.
    hello: PeerHello,
    dialer: String,
    conn: quinn::Connection,
    out: mpsc::Sender<Bytes>,
    /// When frames last arrived, in ms since [`Inner::epoch`].
    heard: Arc<AtomicU64>,
}

#[derive(Default)]
struct Table {
    links: HashMap<String, LiveLink>,
    known_addrs: HashMap<SocketAddr, String>,
    /// The last failure to link to each address, cleared on success.
    errors: HashMap<SocketAddr, String>,
    /// Which broker answered at each dialed address.
    owners: HashMap<SocketAddr, String>,
    dialing: HashSet<SocketAddr>,
    next_id: u64,
}

/// Handle to the link manager.
#[derive(Clone)]
pub struct PeerHandle {
    inner: Arc<Inner>,
}

struct Inner {
    settings: PeerSettings,
    /// Origin of the links' `heard` times.
    epoch: Instant,
    endpoint: quinn::Endpoint,
    table: Mutex<Table>,
    events: mpsc::Sender<PeerEvent>,
}

impl PeerHandle {
    /// Starts accepting on `endpoint` (which must serve the peer ALPN with
    /// mutual TLS and have a default client config) and dials the seeds.
    pub fn start(
        endpoint: quinn::Endpoint,
        settings: PeerSettings,
        events: mpsc::Sender<PeerEvent>,
    ) -> PeerHandle {
        let seeds = settings.seeds.clone();
        let inner = Arc::new(Inner {
            settings,
            epoch: Instant::now(),
            endpoint,
            table: Mutex::new(Table::default()),
            events,
        });
        let handle = PeerHandle { inner };
        tokio::spawn(accept_loop(handle.clone()));
        for (addr, name) in seeds {
            handle.connect(addr, &name);
        }
        handle
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers `addr` (where broker `name` is expected) and keeps a link
    /// to whoever answers there.
    pub fn connect(&self, addr: SocketAddr, name: &str) {
        let local = self
            .inner
            .settings
            .local
            .peer_addr
            .parse::<SocketAddr>()
            .ok();
        // Gossip names this broker too, possibly at an address that only
        // leads here through a relay or a NAT.
        if Some(addr) == local || name == self.inner.settings.local.broker {
            return;
        }
        let mut t = self.table();
        if t.known_addrs.len() >= MAX_KNOWN_ADDRS && !t.known_addrs.contains_key(&addr) {
            return;
        }
        t.known_addrs.insert(addr, server_name(name));
        if t.dialing.insert(addr) {
            tokio::spawn(dial_task(self.clone(), addr));
        }
    }

    /// Whether addresses learned from other brokers are dialed
    /// (`mesh.learn_peer_addresses`).
    pub fn learns_addresses(&self) -> bool {
        self.inner.settings.learn_addresses
    }

    /// This broker's id and the peer address it announces.
    pub fn local(&self) -> (String, String) {
        let l = &self.inner.settings.local;
        (l.broker.clone(), l.peer_addr.clone())
    }

    /// Queues one encoded frame (length prefix included) for `broker`.
    pub fn send(&self, broker: &str, frame: Bytes) -> Result<(), SendError> {
        let t = self.table();
        let link = t
            .links
            .get(broker)
            .ok_or_else(|| SendError::NoLink(broker.to_string()))?;
        link.out.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full(broker.to_string()),
            mpsc::error::TrySendError::Closed(_) => SendError::NoLink(broker.to_string()),
        })
    }

    /// Closes the link to `broker` (its peers see it go down and come back
    /// up on the next dial), e.g. after its queue overflowed.
    pub fn reset(&self, broker: &str) {
        if let Some(l) = self.table().links.get(broker) {
            l.conn.close(1u32.into(), b"link reset");
        }
    }

    /// The last failure to link to each address that has no link now.
    pub fn errors(&self) -> Vec<(SocketAddr, String)> {
        let t = self.table();
        t.errors.iter().map(|(a, e)| (*a, e.clone())).collect()
    }

    /// Every broker address confirmed by a handshake (the broker that
    /// answered there, or announced it as its own), for gossip.
    pub fn known_peers(&self) -> Vec<(String, SocketAddr)> {
        let t = self.table();
        t.owners.iter().map(|(a, b)| (b.clone(), *a)).collect()
    }

    /// Every link held now, with how recently it was heard from.
    pub fn links(&self) -> Vec<LinkInfo> {
        let now = self.now_ms();
        let live_within = self.inner.settings.live_within.as_millis() as u64;
        let t = self.table();
        let mut out: Vec<LinkInfo> = t
            .links
            .values()
            .map(|l| {
                let silent_ms = now.saturating_sub(l.heard.load(Ordering::Relaxed));
                LinkInfo {
                    peer: l.peer.clone(),
                    silent_ms,
                    rtt: l.conn.rtt(),
                    live: l.conn.close_reason().is_none() && silent_ms <= live_within,
                }
            })
            .collect();
        out.sort_by(|a, b| a.peer.broker.cmp(&b.peer.broker));
        out
    }

    /// Peers with a link now (live or not; see [`PeerHandle::links`]).
    pub fn connected(&self) -> Vec<PeerId> {
        self.table()
            .links
            .values()
            .map(|l| l.peer.clone())
            .collect()
    }

    /// Closes every link and stops dialing.
    pub fn close(&self) {
        let mut t = self.table();
        for (_, l) in t.links.drain() {
            l.conn.close(0u32.into(), b"broker shutting down");
        }
        t.known_addrs.clear();
        drop(t);
        self.inner
            .endpoint
            .close(0u32.into(), b"broker shutting down");
    }

    /// Milliseconds since this manager started.
    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    /// Why a link with `remote` (at `addr`) must be refused: another
    /// process holds its broker id on a live link (open and heard from
    /// within [`PeerSettings::live_within`]). The reason names the id and
    /// both processes' addresses. `None` for the same process (a second
    /// connection, or a reconnect) or when the existing link is silent (a
    /// restarted broker whose old process died gets in).
    fn identity_conflict(&self, remote: &PeerHello, addr: SocketAddr) -> Option<String> {
        let t = self.table();
        let l = t.links.get(&remote.broker)?;
        if l.conn.close_reason().is_some() {
            return None;
        }
        if l.hello.incarnation == remote.incarnation && l.hello.peer_addr == remote.peer_addr {
            return None;
        }
        let silent = self
            .now_ms()
            .saturating_sub(l.heard.load(Ordering::Relaxed));
        if silent > self.inner.settings.live_within.as_millis() as u64 {
            return None;
        }
        Some(format!(
            "broker id {:?} is already live in this mesh (incarnation {} at {}, announced peer \
             address {}, heard {} ms ago): refusing a second broker with that id \
             (incarnation {} at {}, announced peer address {}). Two brokers must not share an \
             id; if {:?} was just restarted, it gets in once its old link has been silent for \
             mesh.suspect_timeout_ms",
            remote.broker,
            l.hello.incarnation,
            l.conn.remote_address(),
            l.hello.peer_addr,
            silent,
            remote.incarnation,
            addr,
            remote.peer_addr,
            remote.broker,
        ))
    }

    /// Registers an established link, resolving duplicates. Returns false if
    /// this connection lost against an existing one and was closed.
    async fn install(&self, link: PeerLink, dialer: String) -> bool {
        let PeerLink {
            remote,
            conn,
            send,
            frames,
        } = link;
        let peer = PeerId {
            broker: remote.broker.clone(),
            incarnation: remote.incarnation,
        };
        let (out_tx, out_rx) = mpsc::channel(self.inner.settings.link_queue);
        let heard = Arc::new(AtomicU64::new(self.now_ms()));
        let (id, replaced) = {
            let mut t = self.table();
            if let Some(existing) = t.links.get(&peer.broker) {
                let same = existing.peer == peer;
                // Of two connections to the same incarnation, keep the one
                // dialed by the smaller broker id; both sides agree on it.
                if same && existing.dialer <= dialer && existing.conn.close_reason().is_none() {
                    drop(t);
                    conn.close(DUPLICATE.into(), b"duplicate link");
                    return false;
                }
                if same && existing.conn.close_reason().is_none() {
                    existing.conn.close(DUPLICATE.into(), b"duplicate link");
                }
            }
            t.next_id += 1;
            let id = t.next_id;
            let replaced = t.links.insert(
                peer.broker.clone(),
                LiveLink {
                    id,
                    peer: peer.clone(),
                    hello: remote.clone(),
                    dialer,
                    conn: conn.clone(),
                    out: out_tx,
                    heard: heard.clone(),
                },
            );
            (id, replaced.map(|old| old.peer))
        };
        if let Ok(addr) = remote.peer_addr.parse::<SocketAddr>() {
            let mut t = self.table();
            t.known_addrs
                .entry(addr)
                .or_insert_with(|| server_name(&peer.broker));
            t.owners.insert(addr, peer.broker.clone());
            t.errors.remove(&addr);
        }
        let learned = remote
            .peer_addr
            .parse::<SocketAddr>()
            .ok()
            .filter(|_| self.inner.settings.learn_addresses);
        if let Some(addr) = learned {
            let start = self.table().dialing.insert(addr);
            if start {
                tokio::spawn(dial_task(self.clone(), addr));
            }
        }
        let events = &self.inner.events;
        if let Some(old) = replaced {
            // Frames sent on the replaced connection may be lost: report it
            // down so the protocol resends what is unacknowledged.
            // Another incarnation replaces the old link whether its number
            // is larger or not (a broker whose data directory was lost
            // starts again at 1).
            let reason = if old == peer {
                "duplicate link replaced"
            } else {
                "replaced by another incarnation"
            };
            let _ = events
                .send(PeerEvent::Down {
                    peer: old,
                    reason: reason.into(),
                })
                .await;
        }
        let _ = events
            .send(PeerEvent::Up {
                peer: peer.clone(),
                hello: remote,
            })
            .await;
        tokio::spawn(write_loop(send, out_rx));
        tokio::spawn(read_loop(self.clone(), id, peer, conn, frames, heard));
        true
    }

    /// Forgets link `id` (if it is still the current one) and reports it down.
    async fn remove(&self, id: u64, peer: PeerId, reason: String) {
        let removed = {
            let mut t = self.table();
            match t.links.get(&peer.broker) {
                Some(l) if l.id == id => t.links.remove(&peer.broker).is_some(),
                _ => false,
            }
        };
        if removed {
            let _ = self
                .inner
                .events
                .send(PeerEvent::Down { peer, reason })
                .await;
        }
    }

    fn has_link_at(&self, addr: SocketAddr) -> bool {
        let t = self.table();
        let live = |l: &LiveLink| l.conn.close_reason().is_none();
        match t.owners.get(&addr) {
            Some(broker) => t.links.get(broker).is_some_and(live),
            None => t
                .links
                .values()
                .any(|l| l.conn.remote_address() == addr && live(l)),
        }
    }
}

/// Dials each of `targets` (address, broker id) once with `local`'s hello
/// and returns those that answered within `limit`, as `id at addr`: a
/// completed handshake or a refusal both count (a broker is running there);
/// only silence does not. Links that come up are closed at once.
pub async fn probe(
    endpoint: &quinn::Endpoint,
    local: &PeerHello,
    targets: &[(SocketAddr, String)],
    max_frame: usize,
    limit: Duration,
) -> Vec<String> {
    let dials = targets.iter().map(|(addr, id)| async move {
        let name = server_name(id);
        let dial = peer::dial(endpoint, *addr, &name, local, max_frame);
        let answered = match tokio::time::timeout(limit, dial).await {
            Ok(Ok(link)) => {
                link.conn.close(0u32.into(), b"probe only");
                true
            }
            Ok(Err(peer::PeerError::Connect { .. })) | Err(_) => false,
            Ok(Err(_)) => true,
        };
        answered.then(|| format!("{id} at {addr}"))
    });
    futures_util::future::join_all(dials)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn accept_loop(handle: PeerHandle) {
    let s = &handle.inner.settings;
    while let Some(incoming) = handle.inner.endpoint.accept().await {
        let handle = handle.clone();
        let (local, max, limit) = (s.local.clone(), s.max_frame, s.handshake_timeout);
        let remote = incoming.remote_address();
        tokio::spawn(async move {
            let checker = handle.clone();
            let accepted = tokio::time::timeout(limit, async {
                let conn = incoming.await.map_err(|e| {
                    if tls_refused(&e) {
                        format!(
                            "TLS handshake failed: its certificate is not signed by this \
                             mesh's cluster CA (tls.ca_cert), or it does not trust this \
                             broker's (a broker of another mesh or CA?): {e}"
                        )
                    } else {
                        e.to_string()
                    }
                })?;
                peer::accept_checked(conn, &local, max, |remote, addr| {
                    match checker.identity_conflict(remote, addr) {
                        Some(reason) => {
                            tracing::error!(peer = %remote.broker, %addr, %reason, "refused a peer link: duplicate broker id");
                            Err(reason)
                        }
                        None => Ok(()),
                    }
                })
                .await
                .map_err(|e| e.to_string())
            })
            .await;
            match accepted {
                Ok(Ok(link)) => {
                    let dialer = link.remote.broker.clone();
                    handle.install(link, dialer).await;
                }
                Ok(Err(e)) => tracing::warn!(%remote, error = %e, "refused a peer link"),
                Err(_) => tracing::warn!(%remote, "a peer link handshake timed out"),
            }
        });
    }
}

/// Whether a connection failed in its TLS handshake: a certificate this
/// side refused (QUIC CRYPTO_ERROR sent) or the other side's alert (one
/// received): the two brokers do not share a cluster CA.
fn tls_refused(e: &quinn::ConnectionError) -> bool {
    let crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match e {
        quinn::ConnectionError::TransportError(t) => crypto(t.code),
        quinn::ConnectionError::ConnectionClosed(c) => crypto(c.error_code),
        _ => false,
    }
}

/// [`dial_loop`] as a boxed task (it installs links, which may start more
/// dial loops; the box breaks that cycle for the compiler).
fn dial_task(
    handle: PeerHandle,
    addr: SocketAddr,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(dial_loop(handle, addr))
}

/// Keeps a link to `addr` while the address is known, with bounded backoff.
async fn dial_loop(handle: PeerHandle, addr: SocketAddr) {
    let s = handle.inner.settings.clone();
    let mut wait = s.backoff.0;
    // Failed attempts since the last link, and when the last warning went out.
    let mut failures = 0u64;
    let mut warned: Option<Instant> = None;
    loop {
        let Some(name) = handle.table().known_addrs.get(&addr).cloned() else {
            break;
        };
        if !handle.has_link_at(addr) {
            let dial = peer::dial(&handle.inner.endpoint, addr, &name, &s.local, s.max_frame);
            let dialed = match tokio::time::timeout(s.handshake_timeout, dial).await {
                Ok(r) => r,
                Err(_) => Err(peer::PeerError::Connect {
                    addr,
                    detail: "handshake timed out".into(),
                }),
            };
            match dialed {
                Ok(link) => {
                    if let Some(reason) = handle.identity_conflict(&link.remote, addr) {
                        tracing::error!(%addr, peer = %link.remote.broker, %reason, "refused a peer link: duplicate broker id");
                        link.conn.close(1u32.into(), reason.as_bytes());
                        handle.table().errors.insert(addr, reason);
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(s.backoff.1);
                        continue;
                    }
                    let conn = link.conn.clone();
                    {
                        let mut t = handle.table();
                        t.owners.insert(addr, link.remote.broker.clone());
                        t.errors.remove(&addr);
                    }
                    wait = s.backoff.0;
                    if failures > 0 {
                        tracing::info!(
                            peer = %link.remote.broker, %addr, failures,
                            "peer link up after failed attempts"
                        );
                    }
                    failures = 0;
                    warned = None;
                    if handle.install(link, s.local.broker.clone()).await {
                        let _ = conn.closed().await;
                        continue;
                    }
                }
                Err(e) => {
                    // Both brokers of a pair dial at once and close the
                    // second link ("duplicate link"): nothing is wrong.
                    let duplicate = e.to_string().contains("duplicate link");
                    if !duplicate {
                        failures += 1;
                    }
                    let due = !duplicate && warned.is_none_or(|w| w.elapsed() >= s.warn_every);
                    if matches!(e, peer::PeerError::Incompatible { .. }) {
                        if due {
                            tracing::error!(peer = %name, %addr, error = %e, "peer is incompatible");
                            warned = Some(Instant::now());
                        }
                    } else if due {
                        tracing::warn!(
                            peer = %name, %addr, failures, error = %e,
                            "cannot link to peer (retrying with backoff; this warning repeats \
                             at most every log.peer_warn_interval_ms)"
                        );
                        warned = Some(Instant::now());
                    } else {
                        tracing::debug!(peer = %name, %addr, error = %e, "peer dial failed");
                    }
                    handle.table().errors.insert(addr, e.to_string());
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(s.backoff.1);
    }
    handle.table().dialing.remove(&addr);
}

/// The TLS name to expect from broker `id`: the id itself when it is a DNS
/// name (`meshcast certs` puts it in the certificate), else `localhost`.
fn server_name(id: &str) -> String {
    match ServerName::try_from(id) {
        Ok(ServerName::DnsName(_)) => id.to_string(),
        _ => "localhost".to_string(),
    }
}

/// Writes queued buffers as they are (quinn takes `Bytes` without copying),
/// up to 256 buffers or 1 MiB per write.
async fn write_loop(mut send: quinn::SendStream, mut rx: mpsc::Receiver<Bytes>) {
    let mut chunks: Vec<Bytes> = Vec::with_capacity(256);
    while let Some(first) = rx.recv().await {
        let mut len = first.len();
        chunks.push(first);
        while len < 1 << 20 && chunks.len() < 256 {
            match rx.try_recv() {
                Ok(more) => {
                    len += more.len();
                    chunks.push(more);
                }
                Err(_) => break,
            }
        }
        if send.write_all_chunks(&mut chunks).await.is_err() {
            return;
        }
        chunks.clear();
    }
}

async fn read_loop(
    handle: PeerHandle,
    id: u64,
    peer: PeerId,
    conn: quinn::Connection,
    mut frames: meshcast_transport::FrameReader<quinn::RecvStream>,
    heard: Arc<AtomicU64>,
) {
    let reason = loop {
        let mut bodies = Vec::with_capacity(64);
        match frames.read_batch(&mut bodies).await {
            Ok(true) => {
                heard.store(handle.now_ms(), Ordering::Relaxed);
                let ev = PeerEvent::Frames {
                    peer: peer.clone(),
                    bodies,
                };
                if handle.inner.events.send(ev).await.is_err() {
                    return;
                }
            }
            Ok(false) => break "peer finished the stream".to_string(),
            Err(e) => {
                break match conn.close_reason() {
                    Some(c) => c.to_string(),
                    None => {
                        conn.close(1u32.into(), e.to_string().as_bytes());
                        e.to_string()
                    }
                };
            }
        }
    };
    handle.remove(id, peer, reason).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::testing::{GUARD, free_addr, link_node, tempdir};
    use meshcast_transport::wire;

    struct Node {
        handle: PeerHandle,
        events: mpsc::Receiver<PeerEvent>,
    }

    fn node(
        dir: &std::path::Path,
        name: &str,
        incarnation: u64,
        addr: SocketAddr,
        seeds: Vec<(SocketAddr, &str)>,
    ) -> Node {
        let (handle, events) = link_node(dir, name, incarnation, addr, seeds);
        Node { handle, events }
    }

    fn frame(text: &str) -> Bytes {
        wire::frame("test", &text.to_string()).unwrap()
    }

    /// Waits until `text` arrives from `from`, skipping link events.
    async fn expect_frame(n: &mut Node, from: &str, text: &str) {
        loop {
            match tokio::time::timeout(GUARD, n.events.recv())
                .await
                .unwrap()
                .unwrap()
            {
                PeerEvent::Frames { peer, bodies } => {
                    assert_eq!(peer.broker, from);
                    let texts: Vec<String> = bodies
                        .iter()
                        .map(|b| wire::decode_body::<String>("test", b).unwrap())
                        .collect();
                    assert_eq!(texts, vec![text.to_string()]);
                    return;
                }
                PeerEvent::Up { .. } | PeerEvent::Down { .. } => {}
            }
        }
    }

    /// Sends until the link exists (it may still be coming up).
    async fn send_when_linked(n: &Node, to: &str, text: &str) {
        tokio::time::timeout(GUARD, async {
            while n.handle.send(to, frame(text)).is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_ring_of_seeds_links_every_pair_once() {
        let dir = tempdir("ring");
        let (aa, ab, ac) = (free_addr(), free_addr(), free_addr());
        let mut a = node(&dir, "a", 1, aa, vec![(ab, "b")]);
        let mut b = node(&dir, "b", 1, ab, vec![(ac, "c")]);
        let mut c = node(&dir, "c", 1, ac, vec![(aa, "a")]);
        for (from, to, text) in [
            ("a", "b", "ab"),
            ("b", "c", "bc"),
            ("c", "a", "ca"),
            ("b", "a", "ba"),
            ("c", "b", "cb"),
            ("a", "c", "ac"),
        ] {
            let sender = match from {
                "a" => &a,
                "b" => &b,
                _ => &c,
            };
            send_when_linked(sender, to, text).await;
            let receiver = match to {
                "a" => &mut a,
                "b" => &mut b,
                _ => &mut c,
            };
            expect_frame(receiver, from, text).await;
        }
        for n in [&a, &b, &c] {
            assert_eq!(n.handle.connected().len(), 2);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_restarted_peer_is_relinked_as_a_new_incarnation() {
        let dir = tempdir("restart");
        let (aa, ab) = (free_addr(), free_addr());
        let mut a = node(&dir, "a", 1, aa, vec![(ab, "b")]);
        let b = node(&dir, "b", 1, ab, vec![(aa, "a")]);
        send_when_linked(&b, "a", "hello").await;
        expect_frame(&mut a, "b", "hello").await;
        b.handle.close();
        drop(b);
        // a reports b's first incarnation down...
        loop {
            match tokio::time::timeout(GUARD, a.events.recv())
                .await
                .unwrap()
                .unwrap()
            {
                PeerEvent::Down { peer, .. } if peer.incarnation == 1 => break,
                _ => {}
            }
        }
        // ...and links to the second one at the same address without help
        // (once the first one's socket is released).
        let b2 = tokio::time::timeout(GUARD, async {
            loop {
                if std::net::UdpSocket::bind(ab).is_ok() {
                    break node(&dir, "b", 2, ab, vec![]);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap();
        loop {
            match tokio::time::timeout(GUARD, a.events.recv())
                .await
                .unwrap()
                .unwrap()
            {
                PeerEvent::Up { peer, .. } if peer.incarnation == 2 => break,
                _ => {}
            }
        }
        send_when_linked(&b2, "a", "again").await;
        expect_frame(&mut a, "b", "again").await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
