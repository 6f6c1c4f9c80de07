//! Handshake cost of meshcast's TLS configuration, for comparing crypto
//! providers: `cargo run --release -p meshcast-transport --example handshake [N]`.
//!
//! 1. N TLS 1.3 handshakes in memory (rustls only, no network) with the
//!    peer-link configurations ([`quic::tls_server_config`] /
//!    [`quic::tls_client_config`], mutual TLS), printing the key-exchange
//!    group they agreed on.
//! 2. N QUIC connections over loopback to a client-port endpoint (server
//!    authentication only), each opened, used for one round trip and closed.
//!
//! Prints the mean and median time per handshake.

use std::time::{Duration, Instant};

use meshcast_transport::DevPki;
use meshcast_transport::quic::{self, ClientCerts};

fn summary(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let median = times[times.len() / 2];
    println!(
        "{what}: {} handshakes, mean {:.0} µs, median {:.0} µs",
        times.len(),
        mean.as_secs_f64() * 1e6,
        median.as_secs_f64() * 1e6
    );
}

/// Drives one in-memory TLS handshake to completion; returns the group.
fn handshake(
    client: &std::sync::Arc<rustls::ClientConfig>,
    server: &std::sync::Arc<rustls::ServerConfig>,
) -> String {
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("valid name");
    let mut c = rustls::ClientConnection::new(client.clone(), name).expect("client");
    let mut s = rustls::ServerConnection::new(server.clone()).expect("server");
    let mut buf = Vec::new();
    while c.is_handshaking() || s.is_handshaking() {
        buf.clear();
        while c.wants_write() {
            c.write_tls(&mut buf).expect("client write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).expect("server read");
        }
        s.process_new_packets().expect("server handshake");
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).expect("server write");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).expect("client read");
        }
        c.process_new_packets().expect("client handshake");
    }
    c.negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()))
        .unwrap_or_default()
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let dir = std::env::temp_dir().join(format!("meshcast-hs-bench-{}", std::process::id()));
    let id = DevPki::ensure(&dir)
        .and_then(|p| p.load())
        .expect("dev PKI");

    let server = std::sync::Arc::new(
        quic::tls_server_config(&id, &[b"x"], ClientCerts::Required(&id.trust)).expect("server"),
    );
    let client =
        std::sync::Arc::new(quic::tls_client_config(&id.trust, Some(&id), b"x").expect("client"));
    let mut group = String::new();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        group = handshake(&client, &server);
        times.push(t.elapsed());
    }
    println!("key exchange group: {group}");
    summary("in-memory TLS 1.3, mutual (peer link)", times);

    let idle = Duration::from_secs(10);
    let alpn = b"meshcast-bench";
    let scfg = quic::server_config(&id, &[alpn], ClientCerts::None, idle).expect("server");
    let ep = quic::bind_server("127.0.0.1:0".parse().expect("addr"), scfg).expect("bind");
    let addr = ep.local_addr().expect("addr");
    let server_ep = ep.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server_ep.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = incoming.await {
                    if let Ok((mut send, mut recv)) = conn.accept_bi().await {
                        let mut b = [0u8; 1];
                        if recv.read_exact(&mut b).await.is_ok() {
                            let _ = send.write_all(&b).await;
                            let _ = send.finish();
                        }
                    }
                    let _ = conn.closed().await;
                }
            });
        }
    });
    let ccfg = quic::client_config(&id.trust, None, alpn, idle).expect("client");
    let mut client_ep = quic::bind_client(addr).expect("bind client");
    client_ep.set_default_client_config(ccfg);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let conn = client_ep
            .connect(addr, "localhost")
            .expect("connect")
            .await
            .expect("handshake");
        let (mut send, mut recv) = conn.open_bi().await.expect("stream");
        send.write_all(b"x").await.expect("write");
        let mut b = [0u8; 1];
        recv.read_exact(&mut b).await.expect("read");
        times.push(t.elapsed());
        conn.close(0u32.into(), b"");
    }
    summary(
        "QUIC connect + 1 round trip over loopback (client link)",
        times,
    );
    let _ = std::fs::remove_dir_all(&dir);
}
