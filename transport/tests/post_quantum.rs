//! The TLS configurations meshcast builds for its links negotiate the hybrid
//! post-quantum key exchange X25519MLKEM768 over TLS 1.3: a client link
//! (server authentication, optionally a client certificate) and a peer
//! link (mutual TLS under the cluster CA). The handshakes run in memory with
//! the very `rustls` configurations that the QUIC endpoints wrap.

use std::path::PathBuf;
use std::sync::Arc;

use meshcast_transport::client_proto::ALPN_CLIENT;
use meshcast_transport::peer::ALPN_PEER;
use meshcast_transport::quic::{self, ClientCerts};
use meshcast_transport::{DevPki, TlsIdentity};
use rustls::NamedGroup;

struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn identity(tag: &str) -> (Dir, TlsIdentity) {
    let d = std::env::temp_dir().join(format!("meshcast-pq-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let id = DevPki::ensure(&d).and_then(|p| p.load()).unwrap();
    (Dir(d), id)
}

/// Runs one handshake in memory; returns what the client negotiated.
fn handshake(
    client: rustls::ClientConfig,
    server: rustls::ServerConfig,
) -> (NamedGroup, NamedGroup, rustls::ProtocolVersion) {
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
    let mut buf = Vec::new();
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets().unwrap();
    }
    assert!(
        !c.is_handshaking() && !s.is_handshaking(),
        "handshake did not finish"
    );
    (
        c.negotiated_key_exchange_group().unwrap().name(),
        s.negotiated_key_exchange_group().unwrap().name(),
        c.protocol_version().unwrap(),
    )
}

#[test]
fn a_client_link_negotiates_x25519mlkem768() {
    let (_dir, id) = identity("client");
    // As the broker's client port and the Rust client build them.
    let server = quic::tls_server_config(&id, &[ALPN_CLIENT], ClientCerts::None).unwrap();
    let client = quic::tls_client_config(&id.trust, None, ALPN_CLIENT).unwrap();
    let (c, s, version) = handshake(client, server);
    assert_eq!(c, NamedGroup::X25519MLKEM768);
    assert_eq!(s, NamedGroup::X25519MLKEM768);
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);

    // With client certificate authentication (auth.client_ca) and a client
    // certificate presented.
    let server =
        quic::tls_server_config(&id, &[ALPN_CLIENT], ClientCerts::Optional(&id.trust)).unwrap();
    let client = quic::tls_client_config(&id.trust, Some(&id), ALPN_CLIENT).unwrap();
    let (c, _, _) = handshake(client, server);
    assert_eq!(c, NamedGroup::X25519MLKEM768);
}

#[test]
fn a_peer_link_negotiates_x25519mlkem768() {
    let (_dir, id) = identity("peer");
    // As `start_links` builds the peer endpoint: mutual TLS.
    let server =
        quic::tls_server_config(&id, &[ALPN_PEER], ClientCerts::Required(&id.trust)).unwrap();
    let client = quic::tls_client_config(&id.trust, Some(&id), ALPN_PEER).unwrap();
    let (c, s, version) = handshake(client, server);
    assert_eq!(c, NamedGroup::X25519MLKEM768);
    assert_eq!(s, NamedGroup::X25519MLKEM768);
    assert_eq!(version, rustls::ProtocolVersion::TLSv1_3);
}

#[test]
fn the_provider_offers_only_tls13_and_prefers_the_hybrid_group() {
    let p = quic::provider();
    assert_eq!(p.kx_groups[0].name(), NamedGroup::X25519MLKEM768);
    assert!(
        p.cipher_suites
            .iter()
            .all(|s| s.version() == &rustls::version::TLS13),
        "the tls12 feature is off: only TLS 1.3 suites"
    );
}
