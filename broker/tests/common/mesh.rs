//! Starting meshes of `meshcast broker` processes for tests: a cluster CA
//! from `meshcast certs`, brokers that list each other, optional
//! fault-injecting relays between them, and waiting on `GET /status`.
//!
//! Include it next to `common` with
//! `#[path = "common/mesh.rs"] mod mesh;` (or as `common::mesh` once
//! `common/mod.rs` declares it).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use crate::common::relay::Relay;
use crate::common::{BrokerProc, GUARD, TempDir, run_cli, status};

/// A loopback UDP address that was free a moment ago, for a broker that
/// binds it later (its peers must know it first). Taken below the kernel's
/// ephemeral range (32768 and up), so no socket bound to port 0 meanwhile
/// (a client, a relay) can take it before the broker binds it (or binds it
/// again after a restart), and never handed out twice by this process.
pub fn free_udp_addr() -> SocketAddr {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::Mutex;
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap();
    let given = given.get_or_insert_with(HashSet::new);
    for _ in 0..10_000 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        if given.contains(&port) {
            continue;
        }
        if let Ok(s) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            given.insert(port);
            return s.local_addr().unwrap();
        }
    }
    panic!("no free UDP port between 20000 and 32000")
}

/// Creates a cluster CA and a certificate for each of `names` in `dir`.
pub fn certs(dir: &Path, names: &[&str]) {
    let mut args = vec!["certs", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(names);
    let (status, _, err) = run_cli(&args, None);
    assert!(status.success(), "{err}");
}

/// Starts broker `id` listening for peers on `addr`, linked to `peers`
/// (reached at the given addresses), with the certificates in `certs`.
pub fn broker(
    certs: &Path,
    id: &str,
    addr: SocketAddr,
    peers: &[(&str, SocketAddr)],
    extra: &[String],
) -> BrokerProc {
    broker_in(TempDir::new("broker"), certs, id, addr, peers, extra)
}

/// The `--set` overrides [`broker`] gives broker `id`.
pub fn broker_sets(
    certs: &Path,
    id: &str,
    addr: SocketAddr,
    peers: &[(&str, SocketAddr)],
    extra: &[String],
) -> Vec<String> {
    let p = |f: String| certs.join(f).to_str().unwrap().to_string();
    let peer_list: Vec<String> = peers
        .iter()
        .map(|(pid, a)| format!("{{id=\"{pid}\",addr=\"{a}\"}}"))
        .collect();
    let mut sets = vec![
        format!("broker.id={id}"),
        format!("broker.peer_listen={addr}"),
        format!("tls.ca_cert={}", p("ca.pem".into())),
        format!("tls.cert={}", p(format!("{id}.pem"))),
        format!("tls.key={}", p(format!("{id}-key.pem"))),
        format!("mesh.peers=[{}]", peer_list.join(",")),
    ];
    sets.extend_from_slice(extra);
    sets
}

/// [`broker`] with a given data directory (e.g. a killed broker's, to
/// restart it with its history).
pub fn broker_in(
    dir: TempDir,
    certs: &Path,
    id: &str,
    addr: SocketAddr,
    peers: &[(&str, SocketAddr)],
    extra: &[String],
) -> BrokerProc {
    let sets = broker_sets(certs, id, addr, peers, extra);
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let mut b = BrokerProc::start_in(dir, &sets);
    b.ca = certs.join("ca.pem");
    b
}

/// Kills broker `b` (SIGKILL) and hands back its data directory.
pub fn kill_keep_dir(mut b: BrokerProc) -> TempDir {
    let _ = b.child.kill();
    let _ = b.child.wait();
    std::mem::replace(&mut b.dir, TempDir(std::path::PathBuf::new()))
}

/// Overrides for quick failure detection. No test relies on the timing;
/// they only shorten the waits.
pub fn fast() -> Vec<String> {
    vec![
        "mesh.heartbeat_ms=50".to_string(),
        "mesh.suspect_timeout_ms=500".to_string(),
        "mesh.flush_timeout_ms=800".to_string(),
        "mesh.reconnect_max_ms=200".to_string(),
        "limits.idle_timeout_ms=1000".to_string(),
    ]
}

/// The names `{prefix}1..{prefix}n`.
pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

/// Starts `n` brokers named `{prefix}1..{prefix}n` in `dir`, each listing
/// all the others; the first one starts the mesh. `extra` overrides go to
/// every broker.
pub fn full_mesh(dir: &Path, prefix: &str, n: usize, extra: &[String]) -> Vec<BrokerProc> {
    let names = names(prefix, n);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    certs(dir, &refs);
    let addrs: Vec<SocketAddr> = names.iter().map(|_| free_udp_addr()).collect();
    (0..n)
        .map(|i| {
            let peers: Vec<(&str, SocketAddr)> = (0..n)
                .filter(|j| *j != i)
                .map(|j| (refs[j], addrs[j]))
                .collect();
            let mut sets = extra.to_vec();
            sets.push(format!("mesh.bootstrap={}", i == 0));
            broker(dir, refs[i], addrs[i], &peers, &sets)
        })
        .collect()
}

/// A full mesh whose every link goes through a fault-injecting relay, so
/// brokers can be cut off from each other.
pub struct RelayedMesh {
    /// The brokers, in name order.
    pub brokers: Vec<BrokerProc>,
    /// `relays[i][j]` carries broker i's dials to broker j.
    pub relays: Vec<Vec<Option<Relay>>>,
    /// The `--set` overrides each broker was started with (to start it
    /// again with the same configuration: [`RelayedMesh::start_broker`]).
    pub sets: Vec<Vec<String>>,
    /// Where the certificates are.
    pub certs: std::path::PathBuf,
}

impl RelayedMesh {
    /// Starts `n` brokers as [`full_mesh`] does, linked through relays.
    pub async fn start(dir: &Path, prefix: &str, n: usize, extra: &[String]) -> RelayedMesh {
        let names = names(prefix, n);
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        certs(dir, &refs);
        let real: Vec<SocketAddr> = names.iter().map(|_| free_udp_addr()).collect();
        let mut relays = Vec::new();
        for i in 0..n {
            let mut row = Vec::new();
            for (j, addr) in real.iter().enumerate() {
                row.push(if i == j {
                    None
                } else {
                    Some(Relay::start(*addr).await)
                });
            }
            relays.push(row);
        }
        let sets: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let peers: Vec<(&str, SocketAddr)> = (0..n)
                    .filter(|j| *j != i)
                    .map(|j| (refs[j], relays[i][j].as_ref().unwrap().addr))
                    .collect();
                let mut extra = extra.to_vec();
                extra.push(format!("mesh.bootstrap={}", i == 0));
                // Only the relays lead to the others: a broker must not dial
                // the real addresses it learns, or cuts would not hold.
                extra.push("mesh.learn_peer_addresses=false".to_string());
                broker_sets(dir, refs[i], real[i], &peers, &extra)
            })
            .collect();
        let mut mesh = RelayedMesh {
            brokers: Vec::new(),
            relays,
            sets,
            certs: dir.to_path_buf(),
        };
        mesh.brokers = (0..n)
            .map(|i| mesh.start_broker(i, TempDir::new("broker")))
            .collect();
        mesh
    }

    /// Starts broker `i` with its configuration and the data directory
    /// `data` (a killed broker's, to restart it with its history).
    pub fn start_broker(&self, i: usize, data: TempDir) -> BrokerProc {
        let sets: Vec<&str> = self.sets[i].iter().map(String::as_str).collect();
        let mut b = BrokerProc::start_in(data, &sets);
        b.ca = self.certs.join("ca.pem");
        b
    }

    /// Cuts (or heals) every link between a broker of `a` and one of `b`.
    pub fn cut_between(&self, a: &[usize], b: &[usize], cut: bool) {
        for &i in a {
            for &j in b {
                if i != j {
                    self.relays[i][j].as_ref().unwrap().cut(cut);
                    self.relays[j][i].as_ref().unwrap().cut(cut);
                }
            }
        }
    }

    /// Cuts broker `i` off from every other broker (both directions), or
    /// heals those links.
    pub fn isolate(&self, i: usize, cut: bool) {
        for j in 0..self.brokers.len() {
            if j != i {
                self.relays[i][j].as_ref().unwrap().cut(cut);
                self.relays[j][i].as_ref().unwrap().cut(cut);
            }
        }
    }
}

/// Polls `GET /status` until `ok` holds; panics naming `what` after
/// [`GUARD`].
pub async fn wait_for(
    admin: SocketAddr,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    tokio::time::timeout(GUARD, async {
        loop {
            let s = status(admin).await;
            if ok(&s) {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits until broker `b` has installed a mesh view of `n` brokers and is
/// not blocked.
pub async fn wait_mesh(b: &BrokerProc, n: usize) -> serde_json::Value {
    wait_for(b.admin, &format!("a {n}-broker view"), |s| {
        s["core"]["mesh"]["view"][1].as_array().map(Vec::len) == Some(n)
            && s["core"]["mesh"]["blocked"] == false
    })
    .await
}
