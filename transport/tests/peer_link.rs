//! Peer links over real QUIC on loopback: mutual TLS under a cluster CA and
//! the handshake's compatibility checks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::BytesMut;
use meshcast_transport::peer::{self, ALPN_PEER, PeerError, PeerHello};
use meshcast_transport::{pki, quic, wire};

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(tag: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("meshcast-peer-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    Dir(d)
}

/// A CA in `dir` and a broker certificate for `name` under it.
fn identity(dir: &Path, name: &str) -> pki::TlsIdentity {
    let (ca_key, _) = pki::ensure_ca(dir).unwrap();
    let cert = dir.join(format!("{name}.pem"));
    let key = dir.join(format!("{name}-key.pem"));
    pki::issue_files(&ca_key, name, &[name.to_string()], &cert, &key).unwrap();
    pki::load_identity(&cert, &key, &dir.join("ca.pem")).unwrap()
}

fn hello(name: &str, digest: u64) -> PeerHello {
    PeerHello {
        broker: name.into(),
        incarnation: 1,
        site: "local".into(),
        group_map_digest: digest,
        peer_addr: "127.0.0.1:0".into(),
    }
}

/// A broker endpoint that both accepts and dials with mutual TLS.
fn endpoint(id: &pki::TlsIdentity) -> (quinn::Endpoint, SocketAddr) {
    let idle = Duration::from_secs(10);
    let server = quic::server_config(
        id,
        &[ALPN_PEER],
        quic::ClientCerts::Required(&id.trust),
        idle,
    )
    .unwrap();
    let mut ep = quic::bind_server("127.0.0.1:0".parse().unwrap(), server).unwrap();
    ep.set_default_client_config(
        quic::client_config(&id.trust, Some(id), ALPN_PEER, idle).unwrap(),
    );
    let addr = ep.local_addr().unwrap();
    (ep, addr)
}

async fn accept_one(ep: &quinn::Endpoint, local: &PeerHello) -> Result<peer::PeerLink, PeerError> {
    let incoming = ep.accept().await.unwrap();
    let conn = incoming.await.map_err(|e| PeerError::Connect {
        addr: "0.0.0.0:0".parse().unwrap(),
        detail: e.to_string(),
    })?;
    peer::accept(conn, local, 1 << 20).await
}

#[tokio::test]
async fn linked_brokers_exchange_frames_both_ways() {
    let dir = tempdir("ok");
    let (a_id, b_id) = (identity(&dir.0, "a"), identity(&dir.0, "b"));
    let (a, _) = endpoint(&a_id);
    let (b, b_addr) = endpoint(&b_id);
    let (ha, hb) = (hello("a", 7), hello("b", 7));
    let (dialed, accepted) = tokio::join!(
        peer::dial(&a, b_addr, "b", &ha, 1 << 20),
        accept_one(&b, &hb)
    );
    let (mut dialed, mut accepted) = (dialed.unwrap(), accepted.unwrap());
    assert_eq!(dialed.remote, hb);
    assert_eq!(accepted.remote, ha);
    let mut buf = BytesMut::new();
    wire::encode_frame("test", &"ping".to_string(), &mut buf).unwrap();
    dialed.send.write_all(&buf).await.unwrap();
    let body = accepted.frames.read_one().await.unwrap().unwrap();
    assert_eq!(wire::decode_body::<String>("test", &body).unwrap(), "ping");
    accepted.send.write_all(&buf).await.unwrap();
    assert!(dialed.frames.read_one().await.unwrap().is_some());
}

#[tokio::test]
async fn group_map_mismatch_is_refused_naming_both_digests() {
    let dir = tempdir("digest");
    let (a_id, b_id) = (identity(&dir.0, "a"), identity(&dir.0, "b"));
    let (a, _) = endpoint(&a_id);
    let (b, b_addr) = endpoint(&b_id);
    let (ha, hb) = (hello("a", 0xaaaa), hello("b", 0xbbbb));
    let (dialed, accepted) = tokio::join!(
        peer::dial(&a, b_addr, "b", &ha, 1 << 20),
        accept_one(&b, &hb)
    );
    for err in [dialed.unwrap_err(), accepted.unwrap_err()] {
        let text = err.to_string();
        assert!(matches!(err, PeerError::Incompatible { .. }), "{text}");
        assert!(
            text.contains("000000000000aaaa") && text.contains("000000000000bbbb"),
            "{text}"
        );
        assert!(
            text.contains("broker a") && text.contains("broker b"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn unknown_peer_protocol_version_is_refused() {
    let dir = tempdir("version");
    let (a_id, b_id) = (identity(&dir.0, "a"), identity(&dir.0, "b"));
    let (a, _) = endpoint(&a_id);
    let (b, b_addr) = endpoint(&b_id);
    let (ha, hb) = (hello("a", 1), hello("b", 1));
    let (dialed, accepted) = tokio::join!(
        peer::dial_with_version(&a, b_addr, "b", &ha, 1 << 20, 9),
        accept_one(&b, &hb)
    );
    let text = dialed.unwrap_err().to_string();
    assert!(text.contains("unsupported protocol version 9"), "{text}");
    let text = accepted.unwrap_err().to_string();
    assert!(text.contains("unsupported protocol version 9"), "{text}");
}

#[tokio::test]
async fn a_broker_from_another_ca_cannot_link() {
    let (dir1, dir2) = (tempdir("ca1"), tempdir("ca2"));
    let a_id = identity(&dir1.0, "a");
    let b_id = identity(&dir2.0, "b");
    let (a, _) = endpoint(&a_id);
    let (b, b_addr) = endpoint(&b_id);
    let accepting = tokio::spawn(async move {
        let incoming = b.accept().await.unwrap();
        incoming.await.is_err()
    });
    let err = peer::dial(&a, b_addr, "b", &hello("a", 1), 1 << 20)
        .await
        .unwrap_err();
    assert!(matches!(err, PeerError::Connect { .. }), "{err}");
    assert!(
        accepting.await.unwrap(),
        "the foreign broker's connection must fail"
    );
}
