//! The runtime: sockets, tasks and timers around the broker's state machines.
//!
//! [`start`] binds the client endpoint, creates the development PKI when no
//! TLS files are configured, spawns the core task and accepts sessions.

mod admin;
pub mod auth;
mod bridge;
mod core;
mod limits;
pub mod membership_store;
pub mod mesh;
pub mod names;
pub mod peers;
mod report;
mod session;
mod telemetry;
#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use meshcast_config::Config;
use meshcast_topics::GroupMap;
use meshcast_transport::client_proto::{ALPN_CLIENT, CloseCode};
use meshcast_transport::peer::{ALPN_PEER, PeerHello};
use meshcast_transport::{DevPki, pki, quic};
use tokio::sync::{mpsc, oneshot, watch};

use crate::router::{AuthLimits, Router, RouterLimits};

pub use self::bridge::{GroupStatus, LocalMember, MeshStatus};
pub use self::core::CoreStats;
use self::membership_store::{Bootstrap, MembershipStore, StoredMember};
use self::names::Names;
use self::peers::{PeerEvent, PeerHandle, PeerSettings};

/// How long `--force-new-mesh` waits for the brokers of the stored last
/// view to answer before it starts a new mesh.
pub const FORCE_PROBE: Duration = Duration::from_secs(3);

/// Errors that stop a broker from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Certificates could not be created or loaded.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The QUIC endpoint could not be set up.
    #[error(transparent)]
    Transport(#[from] quic::TransportError),
    /// The group map in the configuration is invalid.
    #[error("groups: {0}")]
    GroupMap(#[from] meshcast_topics::GroupMapError),
    /// A mesh needs every broker's certificate to come from one cluster CA.
    #[error(
        "mesh.peers is set but tls.ca_cert/cert/key are not: brokers of a mesh need certificates \
         from one cluster CA (create them with `meshcast certs`)"
    )]
    MeshNeedsCa,
    /// The membership file (incarnation, last mesh view) is unusable.
    #[error(transparent)]
    Membership(#[from] membership_store::MembershipError),
    /// `--force-new-mesh` was refused: brokers of the last view answered.
    #[error(
        "--force-new-mesh refused: {} of this broker's last mesh view {view} answered on \
         their peer links, so its mesh is not gone; start without --force-new-mesh to rejoin it",
        answered.join(", ")
    )]
    ForceNewMeshRefused {
        /// The stored view.
        view: String,
        /// The brokers that answered, with their addresses.
        answered: Vec<String>,
    },
    /// `auth.client_ca` could not be loaded.
    #[error("auth.client_ca: {0}")]
    ClientCa(pki::PkiError),
    /// The admin HTTP endpoint could not be bound.
    #[error("binding the admin endpoint broker.admin_listen = {addr}: {source}")]
    Admin {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

pub(crate) struct Shared {
    config: Config,
    links: Links,
    /// Readable names of brokers (configured ids for node names).
    names: Names,
    /// Mesh mode: the task that owns the protocol core.
    mesh: Option<mesh::MeshHandle>,
    broker_id: String,
    core: mpsc::Sender<core::CoreMsg>,
    sessions: AtomicUsize,
    next_session: AtomicU64,
    /// Connections per source address and sessions per user.
    connections: Arc<limits::ConnectionCounts>,
    /// Client authentication (`[auth]`).
    auth: auth::Authenticator,
    /// `[[permissions]]`, compiled; `None` in development mode.
    policy: Option<crate::permissions::Policy>,
}

/// A running broker.
pub struct BrokerHandle {
    /// The address clients connect to.
    pub client_addr: SocketAddr,
    /// The CA certificate clients should trust.
    pub ca_cert: PathBuf,
    /// The admin HTTP endpoint, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// The address other brokers link to.
    pub peer_addr: SocketAddr,
    /// This broker's id.
    pub broker_id: String,
    stop: watch::Sender<bool>,
    core: mpsc::Sender<core::CoreMsg>,
    task: tokio::task::JoinHandle<()>,
}

impl BrokerHandle {
    /// Current counters of the core.
    pub async fn stats(&self) -> Option<CoreStats> {
        let (tx, rx) = oneshot::channel();
        self.core.send(core::CoreMsg::Stats(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Asks the broker to stop and waits until it has.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Waits until the broker stops (after [`BrokerHandle::shutdown`] elsewhere
    /// or a fatal error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Options of one start that are not configuration (command-line only).
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Start a new mesh even though the stored last view holds other
    /// brokers (a majority lost for good); refused if any of them answers
    /// on its peer link within [`FORCE_PROBE`].
    pub force_new_mesh: bool,
}

/// Starts a broker with `config`. Must be called inside a tokio runtime.
pub async fn start(config: Config) -> Result<BrokerHandle, StartError> {
    start_with(config, StartOptions::default()).await
}

/// [`start`] with command-line options.
pub async fn start_with(config: Config, opts: StartOptions) -> Result<BrokerHandle, StartError> {
    let group_rules = config
        .groups
        .iter()
        .map(|r| meshcast_topics::GroupRule {
            prefix: r.prefix.clone(),
            group: r.group.clone(),
        })
        .collect();
    let groups = GroupMap::new(group_rules)?;
    let (identity, ca_cert) = match (&config.tls.cert, &config.tls.key, &config.tls.ca_cert) {
        (Some(cert), Some(key), Some(ca)) => (pki::load_identity(cert, key, ca)?, ca.clone()),
        _ => {
            let dev = DevPki::ensure(&config.broker.data_dir)?;
            (dev.load()?, dev.ca_cert.clone())
        }
    };
    if !config.mesh.peers.is_empty() && config.tls.uses_dev_ca() {
        return Err(StartError::MeshNeedsCa);
    }
    let limits = &config.limits;
    // Client certificates are asked for only with `auth.client_ca`, and are
    // optional then (a client may present a token instead): the session
    // handshake refuses a client with neither.
    let client_ca = match &config.auth.client_ca {
        Some(path) => pki::load_certs(path).map_err(StartError::ClientCa)?,
        None => Vec::new(),
    };
    let client_certs = match config.auth.client_ca {
        Some(_) => quic::ClientCerts::Optional(&client_ca),
        None => quic::ClientCerts::None,
    };
    // A client session not heard from (keep-alives included) for
    // `session_timeout_ms` ends; its members then leave their groups.
    // A client may open `max_streams_per_session` bidirectional streams
    // and no unidirectional one.
    let mut server = quic::server_config(
        &identity,
        &[ALPN_CLIENT],
        client_certs,
        limits.session_timeout(),
    )?;
    server.transport_config(Arc::new(quic::client_session_transport_config(
        limits.session_timeout(),
        limits.max_streams_per_session,
    )));
    let endpoint = quic::bind_server(config.broker.client_listen, server)?;
    let client_addr = endpoint.local_addr().unwrap_or(config.broker.client_listen);
    let broker_id = if config.broker.id.is_empty() {
        format!("broker-{}", client_addr.port())
    } else {
        config.broker.id.clone()
    };
    let router = Router::new(RouterLimits {
        max_payload_bytes: limits.max_payload_bytes as usize,
        max_subscriptions_per_session: limits.max_subscriptions_per_session,
        match_cache_entries: limits.match_cache_entries,
    })
    .with_auth_limits(AuthLimits {
        cache_entries: config.auth.permission_cache_entries,
        reply_window: config.auth.reply_window,
    });
    let authenticator = auth::Authenticator::new(&config.auth);
    let policy = authenticator
        .enabled()
        .then(|| crate::permissions::Policy::new(&config.permissions));
    let (core_tx, core_rx) = mpsc::channel(limits.publish_queue);
    let queue = core::QueueLimits {
        frames: limits.subscriber_queue,
        bytes: limits.subscriber_queue_bytes,
    };
    // The next incarnation is persisted before anything uses it.
    let store = MembershipStore::open(&config.broker.data_dir, &broker_id)?;
    let me = meshcast_config::node_name(&broker_id);
    let mesh_mode = !config.mesh.peers.is_empty();
    let decision = membership_store::decide_bootstrap(
        config.mesh.bootstraps(),
        opts.force_new_mesh,
        store.previous_view(),
        me,
    );
    let previous = store.previous_view().cloned();
    let remembered: Vec<StoredMember> = previous
        .as_ref()
        .map(|v| v.others(me).cloned().collect())
        .unwrap_or_default();
    let probe = match &decision {
        Bootstrap::ForceNew { others } if mesh_mode => others.clone(),
        _ => Vec::new(),
    };
    let view_text = previous.as_ref().map(|v| v.describe()).unwrap_or_default();
    telemetry::set_max_groups(limits.metrics_max_groups);
    let names = Names::new(&broker_id, store.incarnation());
    for p in &config.mesh.peers {
        names.learn(&p.id, None);
    }
    for m in &remembered {
        if let Some(b) = &m.broker {
            names.learn(b, None);
        }
    }
    let (links, link_events) = start_links(
        &config,
        &identity,
        &broker_id,
        config_digest(groups.digest(), config.auth_digest()),
        store.incarnation(),
        &remembered,
        (&probe, &view_text),
    )
    .await?;
    let bootstrap = match decision {
        Bootstrap::New => true,
        Bootstrap::Join { overridden } => {
            if let Some(warning) = overridden {
                tracing::warn!(broker = %broker_id, last_view = %view_text, "{warning}");
            }
            false
        }
        Bootstrap::ForceNew { others } => {
            let names: Vec<String> = others.iter().map(StoredMember::label).collect();
            tracing::error!(
                broker = %broker_id,
                last_view = %view_text,
                lost = %names.join(", "),
                "--force-new-mesh: none of the other brokers of the last mesh view answered \
                 within {} s; STARTING A NEW MESH without them (they must not come back with \
                 their old data directories expecting the old mesh)",
                FORCE_PROBE.as_secs()
            );
            true
        }
    };
    if !mesh_mode && !remembered.is_empty() {
        tracing::warn!(
            last_view = %view_text,
            "mesh.peers is empty: running as a single broker although the last mesh view held \
             other brokers"
        );
    }
    // Mesh mode (peers configured): the protocol core orders everything.
    let mut mesh_handle = None;
    let mesh = if !mesh_mode {
        log_links(link_events, names.clone());
        None
    } else {
        let mut pcfg = protocol_config(&config);
        pcfg.bootstrap = bootstrap;
        // What this broker remembers of its mesh, so that a member left
        // alone in that view can count it in place of its old incarnation.
        if !bootstrap && !remembered.is_empty() {
            pcfg.returning = store.returning();
        }
        // `bootstrap = "auto"` and no history: the smallest fresh broker
        // that can reach no member of a mesh starts one (the core decides,
        // once its wait is over; see docs/protocol.md §4b).
        if !bootstrap && config.mesh.bootstrap.is_none() && remembered.is_empty() {
            let m = &config.mesh;
            pcfg.auto_bootstrap = Some((3 * m.join_retry_ms).max(2 * m.suspect_timeout_ms));
        }
        for m in &remembered {
            if !pcfg.seeds.contains(&m.name) {
                pcfg.seeds.push(m.name);
            }
        }
        let max_outbox = pcfg.max_outbox;
        let protocol = meshcast_protocol::Broker::new(
            meshcast_protocol::NodeId::new(me, links.incarnation),
            pcfg,
            random_seed(),
        );
        // Batches of core outputs (each bounded by one batch of inputs).
        let (out_tx, out_rx) = mpsc::channel(64);
        let bounds = mesh::Bounds {
            max_outbox,
            queue: limits.publish_queue,
            links: mesh::LinkLimits {
                max_frame: limits.max_frame_bytes as usize,
                max_message: usize::try_from(config.mesh.max_message_bytes).unwrap_or(usize::MAX),
            },
        };
        let handle = mesh::spawn(
            protocol,
            bounds,
            links.peers.clone(),
            link_events,
            out_tx,
            store,
            names.clone(),
        );
        mesh_handle = Some(handle.clone());
        Some(core::MeshSide {
            bridge: bridge::Bridge::new(
                handle.sender(),
                me,
                links.incarnation,
                groups.clone(),
                limits.max_pending_confirms,
                names.clone(),
            ),
            outputs: out_rx,
        })
    };
    tokio::spawn(core::run(router, core_rx, queue, mesh, groups.clone()));
    tracing::info!(
        broker = %broker_id,
        site = %config.broker.site,
        %client_addr,
        groups = groups.rules().len(),
        group_map_digest = format!("{:016x}", groups.digest()),
        auth_digest = format!("{:016x}", config.auth_digest()),
        "broker listening for clients"
    );
    if authenticator.enabled() {
        tracing::info!(
            client_certificates = config.auth.client_ca.is_some(),
            users = config.auth.users.len(),
            permission_rules = config.permissions.len(),
            "clients must authenticate ([auth]); what no [[permissions]] rule allows is refused"
        );
    } else {
        tracing::warn!(
            "clients are not authenticated (no [auth] configured: development mode): any \
             client that reaches broker.client_listen may publish, subscribe and join anything"
        );
    }
    let connections = Arc::new(limits::ConnectionCounts::new(&config.limits));
    let shared = Arc::new(Shared {
        links,
        names,
        mesh: mesh_handle,
        config,
        broker_id: broker_id.clone(),
        core: core_tx.clone(),
        sessions: AtomicUsize::new(0),
        next_session: AtomicU64::new(1),
        connections,
        auth: authenticator,
        policy,
    });
    let (stop, mut stopped) = watch::channel(false);
    let admin_addr = match shared.config.broker.admin_listen {
        Some(addr) => {
            let endpoints = report::admin_endpoints(&shared, &groups, client_addr);
            Some(
                admin::serve(addr, endpoints, stop.subscribe())
                    .await
                    .map_err(|source| StartError::Admin { addr, source })?,
            )
        }
        None => None,
    };
    let peer_addr = shared.links.addr;
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                incoming = endpoint.accept() => match incoming {
                    Some(incoming) => {
                        tokio::spawn(session::serve(shared.clone(), incoming));
                    }
                    None => break,
                },
                _ = stopped.changed() => break,
            }
        }
        shared.links.peers.close();
        endpoint.close(CloseCode::Shutdown.code().into(), b"broker shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(3), endpoint.wait_idle()).await;
        tracing::info!("broker stopped");
    });
    Ok(BrokerHandle {
        client_addr,
        ca_cert,
        admin_addr,
        peer_addr,
        broker_id,
        stop,
        core: core_tx,
        task,
    })
}

/// The broker-to-broker side: the peer endpoint and its link manager.
pub(crate) struct Links {
    peers: PeerHandle,
    addr: SocketAddr,
    incarnation: u64,
}

/// The digest brokers compare when they link (`PeerHello::group_map_digest`):
/// the group map's, mixed with `[auth]` and `[[permissions]]`'s when
/// authentication is on ([`meshcast_config::auth_digest`]), so brokers of
/// one mesh agree on both. In development mode it is the group map's alone,
/// as brokers of earlier versions send it.
pub fn config_digest(group_map: u64, auth: u64) -> u64 {
    if auth == 0 {
        return group_map;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in group_map
        .to_le_bytes()
        .into_iter()
        .chain(auth.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A seed for the protocol core's randomness, different on every start.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

/// Binds the peer endpoint (mutual TLS under the cluster CA) and starts the
/// link manager towards the configured peers and the brokers of the stored
/// last view (`remembered`).
///
/// `probe` (for `--force-new-mesh`) are brokers that must not answer on
/// their peer links within [`FORCE_PROBE`]; if any does, the start is
/// refused with [`StartError::ForceNewMeshRefused`].
///
/// In mesh mode the protocol core runs over these links; otherwise link
/// events are only logged and shown in the status.
async fn start_links(
    config: &Config,
    identity: &pki::TlsIdentity,
    broker_id: &str,
    digest: u64,
    incarnation: u64,
    remembered: &[StoredMember],
    (probe, view_text): (&[StoredMember], &str),
) -> Result<(Links, mpsc::Receiver<PeerEvent>), StartError> {
    let idle = config.limits.idle_timeout();
    let server = quic::server_config(
        identity,
        &[ALPN_PEER],
        quic::ClientCerts::Required(&identity.trust),
        idle,
    )?;
    let mut endpoint = quic::bind_server(config.broker.peer_listen, server)?;
    endpoint.set_default_client_config(quic::client_config(
        &identity.trust,
        Some(identity),
        ALPN_PEER,
        idle,
    )?);
    let addr = endpoint.local_addr().unwrap_or(config.broker.peer_listen);
    // The incarnation comes from the membership file: one more than the
    // last one used (the core adds 1 itself when it rejoins after being cut
    // off, and that is persisted too), so a restarted broker is a new member.
    let mesh = &config.mesh;
    // Where the brokers of the last view are: the address each announced,
    // else the configured one.
    let configured = |id: &str| mesh.peers.iter().find(|p| p.id == id).map(|p| p.addr);
    let addr_of = |m: &StoredMember| -> Option<(SocketAddr, String)> {
        let id = m.broker.clone()?;
        let addr = m
            .peer_addr
            .as_deref()
            .and_then(|a| a.parse().ok())
            .or_else(|| configured(&id))?;
        Some((addr, id))
    };
    let mut seeds: Vec<(SocketAddr, String)> =
        mesh.peers.iter().map(|p| (p.addr, p.id.clone())).collect();
    for m in remembered {
        if let Some((addr, id)) = addr_of(m) {
            if !seeds.iter().any(|(a, _)| *a == addr) {
                seeds.push((addr, id));
            }
        }
    }
    let local = PeerHello {
        broker: broker_id.to_string(),
        incarnation,
        site: config.broker.site.clone(),
        group_map_digest: digest,
        peer_addr: addr.to_string(),
    };
    if !probe.is_empty() {
        let targets: Vec<(SocketAddr, String)> = probe.iter().filter_map(addr_of).collect();
        let answered = peers::probe(
            &endpoint,
            &local,
            &targets,
            config.limits.max_frame_bytes as usize,
            FORCE_PROBE,
        )
        .await;
        if !answered.is_empty() {
            endpoint.close(0u32.into(), b"not starting");
            return Err(StartError::ForceNewMeshRefused {
                view: view_text.to_string(),
                answered,
            });
        }
    }
    let settings = PeerSettings {
        local,
        seeds,
        max_frame: config.limits.max_frame_bytes as usize,
        link_queue: mesh.link_queue,
        learn_addresses: mesh.learn_peer_addresses,
        backoff: (mesh.reconnect_min(), mesh.reconnect_max()),
        handshake_timeout: config.limits.handshake_timeout(),
        live_within: Duration::from_millis(mesh.suspect_timeout_ms),
        warn_every: Duration::from_millis(config.log.peer_warn_interval_ms),
    };
    let (tx, rx) = mpsc::channel(mesh.link_queue.min(65536));
    let peers = PeerHandle::start(endpoint, settings, tx);
    Ok((
        Links {
            peers,
            addr,
            incarnation,
        },
        rx,
    ))
}

/// Single-broker mode: links are only logged (nobody runs the protocol).
fn log_links(mut rx: mpsc::Receiver<PeerEvent>, names: Names) {
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            match event {
                PeerEvent::Up { peer, hello } => {
                    names.learn(&peer.broker, Some(hello.incarnation));
                    names.note_up(&peer.broker);
                    tracing::info!(
                        peer = %peer.broker, incarnation = peer.incarnation, site = %hello.site,
                        "peer link up"
                    )
                }
                PeerEvent::Down { peer, reason } => {
                    names.note_down(&peer.broker, &reason);
                    tracing::info!(peer = %peer.broker, %reason, "peer link down")
                }
                PeerEvent::Frames { peer, .. } => {
                    tracing::debug!(peer = %peer.broker, "frames ignored: not in mesh mode")
                }
            }
        }
    });
}

/// The protocol settings of mesh mode, from `[mesh]`.
fn protocol_config(config: &Config) -> meshcast_protocol::ProtocolConfig {
    let m = &config.mesh;
    meshcast_protocol::ProtocolConfig {
        bootstrap: m.bootstraps(),
        seeds: m.peers.iter().map(|p| p.node_name()).collect(),
        heartbeat_interval: m.heartbeat_ms,
        suspect_timeout: m.suspect_timeout_ms,
        flush_timeout: m.flush_timeout_ms,
        join_retry: m.join_retry_ms,
        chunk_size: m.state_chunk_bytes,
        max_unstable: m.credit_window,
        max_outbox: m.publish_backlog,
        ack_every: m.ack_every,
        ack_delay: m.ack_delay_ms,
        ..meshcast_protocol::ProtocolConfig::default()
    }
}
