//! What the admin endpoint reports: the `/status` document, the
//! readiness behind `/healthz`, and the gauges set before `/metrics` is
//! rendered, all from one snapshot of the broker gathered per request.

use std::net::SocketAddr;
use std::sync::Arc;

use meshcast_topics::GroupMap;
use tokio::sync::oneshot;

use super::{CoreStats, Shared, admin, core, peers, telemetry};

/// The JSON status document served on `/status`.
#[derive(Debug, serde::Serialize)]
struct Status {
    broker: String,
    site: String,
    version: &'static str,
    client_addr: SocketAddr,
    uptime_s: u64,
    group_map_digest: String,
    /// Digest of `[auth]` and `[[permissions]]` (0 in development mode),
    /// compared between brokers with the group map's.
    auth_digest: String,
    /// Whether clients must authenticate (`[auth]`).
    auth: bool,
    group_rules: Vec<(String, String)>,
    core: Option<CoreStats>,
    peer_addr: SocketAddr,
    incarnation: u64,
    /// Links heard from within `mesh.suspect_timeout_ms`.
    links: Vec<LinkStatus>,
    /// Links still open but silent for longer than that (a peer that
    /// crashed, until the connection's idle timeout closes it).
    silent_links: Vec<LinkStatus>,
    link_errors: Vec<(SocketAddr, String)>,
}

/// One peer link in the status document.
#[derive(Debug, serde::Serialize)]
struct LinkStatus {
    broker: String,
    incarnation: u64,
    /// Milliseconds since frames last arrived.
    heard_ms_ago: u64,
    /// The connection's round-trip estimate, in milliseconds.
    rtt_ms: f64,
}

/// Everything the admin endpoint reports, gathered once per request.
struct Snapshot {
    core: Option<CoreStats>,
    links: Vec<peers::LinkInfo>,
}

/// Gathers a [`Snapshot`]: the core's counters with the protocol core's
/// figures per group, and the links.
async fn snapshot(shared: &Shared) -> Snapshot {
    let (tx, rx) = oneshot::channel();
    let mut core = match shared.core.send(core::CoreMsg::Stats(tx)).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    // The protocol core's own figures per group (sequencer, held
    // and unstable messages), from the task that owns it.
    let status = core.as_mut().and_then(|c| c.mesh.as_mut());
    if let (Some(mesh), Some(status)) = (&shared.mesh, status) {
        status.add_core_figures(&mesh.figures().await, &shared.names);
    }
    Snapshot {
        core,
        links: shared.links.peers.links(),
    }
}

/// Whether the broker is ready to serve (`GET /healthz`): in mesh mode, in
/// an installed mesh view and not blocked; a single broker once its core
/// answers. `Err` says why not.
fn readiness(shared: &Shared, snap: &Snapshot) -> Result<String, String> {
    let Some(core) = &snap.core else {
        return Err("the broker core does not answer".into());
    };
    if shared.mesh.is_none() {
        return Ok("ready: single broker".into());
    }
    let Some(mesh) = &core.mesh else {
        return Err("no mesh status".into());
    };
    let Some((view, members)) = &mesh.view else {
        return Err("not in a mesh view yet (joining or waiting for peers)".into());
    };
    if mesh.blocked {
        return Err(format!(
            "blocked: outside the primary component (last view {view} of {})",
            members.join(",")
        ));
    }
    Ok(format!("ready: mesh view {view} of {}", members.join(",")))
}

/// The admin endpoint's answers for the broker `shared`.
pub(super) fn admin_endpoints(
    shared: &Arc<Shared>,
    groups: &GroupMap,
    client_addr: SocketAddr,
) -> admin::Endpoints {
    let started = std::time::Instant::now();
    let digest = format!("{:016x}", groups.digest());
    let rules: Vec<(String, String)> = groups
        .rules()
        .iter()
        .map(|r| (r.prefix.clone(), r.group.clone()))
        .collect();
    let for_status = shared.clone();
    let status: admin::StatusFn = Arc::new(move || {
        let shared = for_status.clone();
        let digest = digest.clone();
        let rules = rules.clone();
        Box::pin(async move {
            let snap = snapshot(&shared).await;
            let link = |l: &peers::LinkInfo| LinkStatus {
                broker: l.peer.broker.clone(),
                incarnation: l.peer.incarnation,
                heard_ms_ago: l.silent_ms,
                rtt_ms: l.rtt.as_secs_f64() * 1000.0,
            };
            let status = Status {
                broker: shared.broker_id.clone(),
                site: shared.config.broker.site.clone(),
                version: env!("CARGO_PKG_VERSION"),
                client_addr,
                uptime_s: started.elapsed().as_secs(),
                group_map_digest: digest,
                auth_digest: format!("{:016x}", shared.config.auth_digest()),
                auth: shared.auth.enabled(),
                group_rules: rules,
                core: snap.core,
                peer_addr: shared.links.addr,
                incarnation: shared.links.incarnation,
                links: snap.links.iter().filter(|l| l.live).map(link).collect(),
                silent_links: snap.links.iter().filter(|l| !l.live).map(link).collect(),
                link_errors: shared.links.peers.errors(),
            };
            serde_json::to_string_pretty(&status).unwrap_or_default() + "\n"
        })
    });
    let for_health = shared.clone();
    let health: admin::HealthFn = Arc::new(move || {
        let shared = for_health.clone();
        Box::pin(async move {
            let snap = snapshot(&shared).await;
            readiness(&shared, &snap)
        })
    });
    let for_metrics = shared.clone();
    let refresh: admin::RefreshFn = Arc::new(move || {
        let shared = for_metrics.clone();
        Box::pin(async move {
            let snap = snapshot(&shared).await;
            telemetry::refresh(&metrics_snapshot(&snap));
        })
    });
    admin::Endpoints {
        status,
        health,
        refresh,
    }
}

/// The gauges of `/metrics` from a snapshot.
fn metrics_snapshot(snap: &Snapshot) -> telemetry::Snapshot {
    let mut out = telemetry::Snapshot {
        links: snap
            .links
            .iter()
            .map(|l| telemetry::LinkFigures {
                peer: l.peer.broker.clone(),
                up: l.live,
                rtt_s: l.rtt.as_secs_f64(),
            })
            .collect(),
        ..telemetry::Snapshot::default()
    };
    let Some(core) = &snap.core else {
        return out;
    };
    out.sessions = core.sessions;
    out.queued_frames = core.queued_frames;
    out.queued_bytes = core.queued_bytes;
    out.max_session_frames = core.max_session_frames;
    if let Some(mesh) = &core.mesh {
        out.mesh_brokers = mesh.view.as_ref().map(|(_, m)| m.len());
        for g in &mesh.group_status {
            out.groups.push((
                g.group.clone(),
                g.held.unwrap_or(0),
                g.unstable_own.unwrap_or(0),
                g.decisions_held.unwrap_or(0),
                g.queued_publishes.unwrap_or(0),
            ));
        }
    }
    out
}
