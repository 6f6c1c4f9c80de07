//! Helpers for the runtime's in-process tests: peer endpoints with
//! certificates from one test CA, free loopback ports, temporary folders.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshcast_transport::peer::{ALPN_PEER, PeerHello};
use meshcast_transport::{pki, quic};
use tokio::sync::mpsc;

use super::peers::{PeerEvent, PeerHandle, PeerSettings};

/// Guard against hangs; no test relies on it for correctness.
pub const GUARD: Duration = Duration::from_secs(20);

/// A peer endpoint for broker `name`, with a certificate from the CA in `dir`.
pub fn endpoint(dir: &Path, name: &str, addr: SocketAddr) -> quinn::Endpoint {
    let (ca_key, _) = pki::ensure_ca(dir).unwrap();
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    if !cert.exists() {
        pki::issue_files(&ca_key, name, &[name.to_string()], &cert, &key).unwrap();
    }
    let id = pki::load_identity(&cert, &key, &dir.join("ca.pem")).unwrap();
    let idle = Duration::from_secs(5);
    let server = quic::server_config(
        &id,
        &[ALPN_PEER],
        quic::ClientCerts::Required(&id.trust),
        idle,
    )
    .unwrap();
    let mut ep = quic::bind_server(addr, server).unwrap();
    ep.set_default_client_config(
        quic::client_config(&id.trust, Some(&id), ALPN_PEER, idle).unwrap(),
    );
    ep
}

/// A link manager for broker `name` on `addr`, dialing `seeds`.
pub fn link_node(
    dir: &Path,
    name: &str,
    incarnation: u64,
    addr: SocketAddr,
    seeds: Vec<(SocketAddr, &str)>,
) -> (PeerHandle, mpsc::Receiver<PeerEvent>) {
    let ep = endpoint(dir, name, addr);
    let (tx, events) = mpsc::channel(1024);
    let settings = PeerSettings {
        local: PeerHello {
            broker: name.into(),
            incarnation,
            site: "local".into(),
            group_map_digest: 1,
            peer_addr: addr.to_string(),
        },
        seeds: seeds.into_iter().map(|(a, n)| (a, n.to_string())).collect(),
        max_frame: 1 << 20,
        link_queue: 4096,
        backoff: (Duration::from_millis(10), Duration::from_millis(200)),
        handshake_timeout: Duration::from_secs(5),
        live_within: Duration::from_secs(1),
        learn_addresses: true,
        warn_every: Duration::from_secs(30),
    };
    (PeerHandle::start(ep, settings, tx), events)
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// A fresh temporary folder path (not created).
pub fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("meshcast-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}
