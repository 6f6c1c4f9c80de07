//! Rotating the cluster CA with no downtime, as docs/security.md describes
//! it, with real `meshcast broker` processes:
//!
//! 1. every broker trusts the old and the new CA (a `tls.ca_cert` file
//!    holding both), restarted one at a time, still with its old
//!    certificate;
//! 2. each broker gets its certificate from the new CA, one at a time;
//! 3. each broker stops trusting the old CA, one at a time.
//!
//! While a broker is down, the other two keep the mesh's primary component
//! and a message published on one reaches a subscriber on the other; after
//! every restart all three are in one mesh view again.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{BrokerProc, GUARD, TempDir};
use meshcast_client::{Client, ClientOptions, Publish, SubscriptionEvent};

#[path = "common/mesh.rs"]
mod mesh;

const NAMES: [&str; 3] = ["r1", "r2", "r3"];

/// A directory laid out as `mesh::broker` expects (`ca.pem`, `ID.pem`,
/// `ID-key.pem`): the trusted CA file `ca` and each broker's certificate
/// from `certs`.
fn phase_dir(root: &Path, name: &str, ca: &str, certs: &Path) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca).unwrap();
    for n in NAMES {
        for f in [format!("{n}.pem"), format!("{n}-key.pem")] {
            std::fs::copy(certs.join(&f), dir.join(&f)).unwrap();
        }
    }
    dir
}

struct Rotation {
    addrs: Vec<SocketAddr>,
    brokers: Vec<Option<BrokerProc>>,
    /// Clients trust both CAs throughout.
    client_ca: PathBuf,
}

impl Rotation {
    fn start(&mut self, i: usize, certs: &Path, data: TempDir) {
        let peers: Vec<(&str, SocketAddr)> = (0..NAMES.len())
            .filter(|j| *j != i)
            .map(|j| (NAMES[j], self.addrs[j]))
            .collect();
        let mut extra = mesh::fast();
        extra.push(format!("mesh.bootstrap={}", i == 0));
        let b = mesh::broker_in(data, certs, NAMES[i], self.addrs[i], &peers, &extra);
        self.brokers[i] = Some(b);
    }

    fn options(&self, i: usize, name: &str) -> ClientOptions {
        let b = self.brokers[i].as_ref().unwrap();
        ClientOptions::new(b.addr)
            .ca_file(&self.client_ca)
            .name(name)
    }

    /// A message published through broker `from` reaches a subscriber on
    /// broker `to`.
    async fn message_flows(&self, from: usize, to: usize, tag: &str) {
        let sub_client = Client::connect(self.options(to, "rot-sub")).await.unwrap();
        let mut sub = sub_client.subscribe("rot/**").await.unwrap();
        let pub_client = Client::connect(self.options(from, "rot-pub"))
            .await
            .unwrap();
        let topic = format!("rot/{tag}");
        pub_client
            .publisher(&topic, Publish::total())
            .unwrap()
            .publish_confirmed(tag.to_string())
            .await
            .unwrap();
        let got = tokio::time::timeout(GUARD, async {
            loop {
                match sub.next_event().await {
                    Some(Ok(SubscriptionEvent::Message(m))) if m.topic == topic => return,
                    Some(Ok(_)) => {}
                    other => panic!("{tag}: {other:?}"),
                }
            }
        })
        .await;
        assert!(
            got.is_ok(),
            "{tag}: message from broker {from} never reached broker {to}"
        );
        pub_client.close().await;
        sub_client.close().await;
    }

    async fn all_linked(&self) {
        for b in self.brokers.iter().flatten() {
            mesh::wait_mesh(b, NAMES.len()).await;
        }
    }

    /// Restarts broker `i` with the files in `certs`, keeping its data
    /// directory; while it is down the other two carry messages.
    async fn restart(&mut self, i: usize, certs: &Path, tag: &str) {
        let mut b = self.brokers[i].take().unwrap();
        b.terminate();
        let data = std::mem::replace(&mut b.dir, TempDir(PathBuf::new()));
        drop(b);
        let others: Vec<usize> = (0..NAMES.len()).filter(|j| *j != i).collect();
        for &j in &others {
            mesh::wait_mesh(self.brokers[j].as_ref().unwrap(), NAMES.len() - 1).await;
        }
        self.message_flows(others[0], others[1], &format!("{tag}-down{i}"))
            .await;
        self.start(i, certs, data);
        self.all_linked().await;
        self.message_flows(i, others[0], &format!("{tag}-up{i}"))
            .await;
    }
}

#[tokio::test]
async fn the_cluster_ca_is_rotated_broker_by_broker_with_the_mesh_up() {
    let root = TempDir::new("ca-rotation");
    let (old, new) = (root.path().join("old"), root.path().join("new"));
    mesh::certs(&old, &NAMES);
    mesh::certs(&new, &NAMES);
    let old_ca = std::fs::read_to_string(old.join("ca.pem")).unwrap();
    let new_ca = std::fs::read_to_string(new.join("ca.pem")).unwrap();
    assert_ne!(old_ca, new_ca);
    let both = format!("{old_ca}{new_ca}");
    let before = phase_dir(root.path(), "0-old", &old_ca, &old);
    let trust_both = phase_dir(root.path(), "1-both-old-certs", &both, &old);
    let new_certs = phase_dir(root.path(), "2-both-new-certs", &both, &new);
    let after = phase_dir(root.path(), "3-new", &new_ca, &new);
    let client_ca = root.path().join("clients-ca.pem");
    std::fs::write(&client_ca, &both).unwrap();

    let mut r = Rotation {
        addrs: NAMES.iter().map(|_| mesh::free_udp_addr()).collect(),
        brokers: NAMES.iter().map(|_| None).collect(),
        client_ca,
    };
    for i in 0..NAMES.len() {
        r.start(i, &before, TempDir::new("rot"));
    }
    r.all_linked().await;
    r.message_flows(0, 2, "start").await;

    for (step, certs) in [
        ("trust-both", &trust_both),
        ("new-certs", &new_certs),
        ("drop-old", &after),
    ] {
        for i in 0..NAMES.len() {
            r.restart(i, certs, step).await;
        }
    }
    // Every broker now runs on the new CA alone: a peer still presenting a
    // certificate of the old CA is refused at the TLS handshake.
    use meshcast_transport::{peer::ALPN_PEER, pki, quic};
    let stale = pki::load_identity(
        &old.join("r1.pem"),
        &old.join("r1-key.pem"),
        &new.join("ca.pem"),
    )
    .unwrap();
    let cfg = quic::client_config(&stale.trust, Some(&stale), ALPN_PEER, GUARD).unwrap();
    let mut ep = quic::bind_client(r.addrs[1]).unwrap();
    ep.set_default_client_config(cfg);
    let refused = tokio::time::timeout(GUARD, async {
        let conn = ep.connect(r.addrs[1], "r2").unwrap().await?;
        // TLS 1.3: the server judges the client certificate after the
        // client's side of the handshake; its verdict closes the connection.
        let (mut send, _recv) = conn.open_bi().await?;
        let _ = send.write_all(b"x").await;
        Err::<(), _>(conn.closed().await)
    })
    .await
    .expect("the stale peer was neither let in nor refused");
    let err = refused.unwrap_err().to_string();
    assert!(
        err.contains("certificate") || err.contains("51") || err.contains("48"),
        "{err}"
    );
    let status = common::status(r.brokers[0].as_ref().unwrap().admin).await;
    assert_eq!(
        status["core"]["mesh"]["view"][1].as_array().map(Vec::len),
        Some(3)
    );
}
