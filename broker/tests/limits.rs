//! Limits against abuse (`[limits]`): each one refuses cleanly, with a
//! typed error or close code the Rust client surfaces and a reason naming
//! the key, while a well-behaved client of the same broker keeps working.
//!
//! Brokers are real `meshcast` processes on loopback. No test depends on
//! timing: waits are bounded by [`GUARD`] only, and the rate tests allow
//! for however long the machine took.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use common::relay::Relay;
use common::{
    BrokerProc, Bystander, GUARD, RawSession, TempDir, raw_connection, read_msg, wait_log,
};
use futures_util::StreamExt;
use meshcast_client::{Client, ClientError, Publish, RejectCode};
use meshcast_transport::client_proto::{ClientMsg, CloseCode, ServerMsg};

/// Connects, expecting the broker to refuse with `code`; returns the reason.
async fn refused(broker: &BrokerProc, name: &str, code: CloseCode) -> String {
    let err = tokio::time::timeout(GUARD, Client::connect(broker.options(name)))
        .await
        .expect("connect timed out")
        .err()
        .unwrap_or_else(|| panic!("{name} was let in"));
    match err {
        ClientError::Closed {
            code: Some(got),
            reason,
        } if got == code => reason,
        other => panic!("expected a close with {code:?}, got {other:?}"),
    }
}

/// Connects, retrying while the broker still counts connections that
/// just ended (it notices a closed connection a moment later).
async fn connect_eventually(broker: &BrokerProc, name: &str) -> Client {
    tokio::time::timeout(GUARD, async {
        loop {
            match Client::connect(broker.options(name)).await {
                Ok(c) => return c,
                Err(ClientError::Closed { code: Some(_), .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("never let in again")
}

/// Waits until `conn` is closed by the broker; returns its code and reason.
async fn closed(conn: &quinn::Connection) -> (u64, String) {
    match tokio::time::timeout(GUARD, conn.closed())
        .await
        .expect("the broker never closed the connection")
    {
        quinn::ConnectionError::ApplicationClosed(c) => (
            c.error_code.into_inner(),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        other => panic!("unexpected close: {other}"),
    }
}

/// `limits.max_connections_per_address`: a third connection from
/// 127.0.0.1 is closed at once with `TooManyFromAddress`; the two open
/// sessions keep working; another source address (127.0.0.2) is let in;
/// a place freed by a closed session is given again.
#[tokio::test]
async fn connections_per_address_are_limited() {
    let broker = BrokerProc::start(&["limits.max_connections_per_address=2"]);
    let mut bystander = Bystander::new(&broker).await;
    let second = broker.client("second").await;
    let reason = refused(&broker, "third", CloseCode::TooManyFromAddress).await;
    assert!(
        reason.contains("127.0.0.1 already has 2 connections open")
            && reason.contains("limits.max_connections_per_address = 2"),
        "{reason}"
    );
    bystander.still_works().await;
    second.flush().await.unwrap();

    // Another source address has its own count.
    let mut raw = RawSession::open_from(&broker, "127.0.0.2:0".parse().unwrap()).await;
    let mut frames = raw.handshake().await;
    raw.send_msg(&ClientMsg::Ping { id: 1 }).await;
    assert_eq!(read_msg(&mut frames).await, ServerMsg::Pong { id: 1 });

    // A closed session's place is free again.
    second.close().await;
    let again = connect_eventually(&broker, "again").await;
    again.flush().await.unwrap();
    bystander.still_works().await;
}

/// `limits.max_connections_per_user`: without `[auth]` (development mode),
/// a session's user is `anonymous@<source address>` (with it, the
/// authenticated user: `tests/auth.rs`); a second session of
/// that user is refused at the handshake with `TooManyForUser`, the first
/// keeps working.
#[tokio::test]
async fn sessions_per_user_are_limited() {
    let broker = BrokerProc::start(&["limits.max_connections_per_user=1"]);
    let mut bystander = Bystander::new(&broker).await;
    let reason = refused(&broker, "second", CloseCode::TooManyForUser).await;
    assert!(
        reason.contains("user anonymous@127.0.0.1 already has 1 sessions open")
            && reason.contains("limits.max_connections_per_user = 1"),
        "{reason}"
    );
    bystander.still_works().await;
    // The user of another source address is another user.
    let mut raw = RawSession::open_from(&broker, "127.0.0.3:0".parse().unwrap()).await;
    let mut frames = raw.handshake().await;
    raw.send_msg(&ClientMsg::Ping { id: 1 }).await;
    assert_eq!(read_msg(&mut frames).await, ServerMsg::Pong { id: 1 });
    bystander.still_works().await;
}

/// `limits.max_streams_per_session` (default 1): QUIC flow control keeps a
/// client from opening a second bidirectional stream or any
/// unidirectional one (the opens wait for credit that never comes); its
/// session stream keeps working. With the limit at 2, a second stream
/// opens (and is never read by the broker).
#[tokio::test]
async fn streams_per_session_are_limited_by_quic_flow_control() {
    let broker = BrokerProc::start(&[]);
    let mut bystander = Bystander::new(&broker).await;
    let mut raw = RawSession::open(&broker).await;
    let mut frames = raw.handshake().await;
    // Waiting a while proves nothing by itself; the limit of 2 below shows
    // that the same open completes when the broker allows it.
    let wait = Duration::from_millis(500);
    assert!(
        tokio::time::timeout(wait, raw.conn.open_bi())
            .await
            .is_err(),
        "a second bidirectional stream was opened"
    );
    assert!(
        tokio::time::timeout(wait, raw.conn.open_uni())
            .await
            .is_err(),
        "a unidirectional stream was opened"
    );
    raw.send_msg(&ClientMsg::Ping { id: 2 }).await;
    assert_eq!(read_msg(&mut frames).await, ServerMsg::Pong { id: 2 });
    bystander.still_works().await;

    let wider = BrokerProc::start(&["limits.max_streams_per_session=2"]);
    let mut raw = RawSession::open(&wider).await;
    let mut frames = raw.handshake().await;
    let (mut extra, _) = tokio::time::timeout(GUARD, raw.conn.open_bi())
        .await
        .expect("the second stream is allowed")
        .unwrap();
    extra.write_all(b"ignored").await.unwrap();
    raw.send_msg(&ClientMsg::Ping { id: 3 }).await;
    assert_eq!(read_msg(&mut frames).await, ServerMsg::Pong { id: 3 });
}

/// `limits.max_subscriptions_per_session` on a single broker: a third
/// subscription is refused with `LimitReached` naming the key; the
/// session keeps its two and another session subscribes freely. (Mesh
/// mode counts explicit group joins against the same limit:
/// `bridge::tests::subscriptions_and_joins_share_the_per_session_limit`.)
#[tokio::test]
async fn subscriptions_per_session_are_limited() {
    let broker = BrokerProc::start(&["limits.max_subscriptions_per_session=2"]);
    let mut bystander = Bystander::new(&broker).await;
    let c = broker.client("greedy").await;
    let mut first = c.subscribe("a/**").await.unwrap();
    let _second = c.subscribe("b/**").await.unwrap();
    match c.subscribe("c/**").await {
        Err(ClientError::Rejected {
            code: RejectCode::LimitReached,
            reason,
        }) => assert!(
            reason.contains("limits.max_subscriptions_per_session"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    c.publish("a/x", "still subscribed").await.unwrap();
    let m = tokio::time::timeout(GUARD, first.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "still subscribed");
    bystander.still_works().await;
}

/// Publishes as fast as possible with confirmations; returns how many were
/// confirmed, the refusals' reasons and how long it took.
async fn publish_burst(
    client: &Client,
    topic: &str,
    n: usize,
    size: usize,
) -> (usize, Vec<String>, f64) {
    let publisher = client.publisher(topic, Publish::fifo()).unwrap();
    let started = Instant::now();
    let (mut ok, mut refused) = (0, Vec::new());
    for _ in 0..n {
        match publisher.publish_confirmed(vec![b'x'; size]).await {
            Ok(_) => ok += 1,
            Err(ClientError::RateLimited { reason }) => refused.push(reason),
            Err(e) => panic!("{e}"),
        }
    }
    (ok, refused, started.elapsed().as_secs_f64())
}

/// `limits.publish_messages_per_s` with `limits.publish_burst`: a session
/// publishing faster gets `ClientError::RateLimited` for the excess (its
/// confirmation, or the next `flush` without one); the session stays open,
/// its subscriptions get exactly the accepted messages, and another
/// session publishes at its own rate.
#[tokio::test]
async fn publish_rate_refuses_the_excess_and_keeps_the_session() {
    let (rate, burst) = (2.0, 5);
    let broker = BrokerProc::start(&["limits.publish_messages_per_s=2", "limits.publish_burst=5"]);
    let mut bystander = Bystander::new(&broker).await;
    let c = broker.client("fast").await;
    let mut sub = c.subscribe("fast/**").await.unwrap();
    let (ok, refused, secs) = publish_burst(&c, "fast/x", 20, 10).await;
    // At most the burst plus what the rate refilled meanwhile.
    assert!(ok >= burst, "{ok} accepted");
    assert!(
        ok as f64 <= burst as f64 + (secs * rate).ceil(),
        "{ok} accepted in {secs} s"
    );
    assert_eq!(ok + refused.len(), 20);
    assert!(
        refused[0].contains("message on fast/x not sent")
            && refused[0].contains("limits.publish_messages_per_s"),
        "{}",
        refused[0]
    );
    // Without a confirmation, the next flush reports the refusal.
    let mut flood_refused = false;
    for _ in 0..20 {
        c.publish("fast/y", "unconfirmed").await.unwrap();
    }
    match c.flush().await {
        Err(ClientError::RateLimited { .. }) => flood_refused = true,
        Ok(()) => {}
        Err(e) => panic!("{e}"),
    }
    assert!(flood_refused, "20 more publishes all passed a rate of 2/s");
    // The session is open and its subscription got what was accepted.
    c.flush().await.unwrap();
    let mut got = 0;
    while got < ok {
        let m = tokio::time::timeout(GUARD, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if m.topic.as_str() == "fast/x" {
            got += 1;
        }
    }
    // Other sessions have their own buckets.
    bystander.still_works().await;
}

/// `limits.publish_bytes_per_s`: payload bytes over the rate are refused
/// with `RateLimited` naming the key; the session stays open.
#[tokio::test]
async fn publish_byte_rate_refuses_the_excess() {
    let broker = BrokerProc::start(&[
        "limits.max_payload_bytes=1000",
        "limits.publish_bytes_per_s=1000",
    ]);
    let mut bystander = Bystander::new(&broker).await;
    let c = broker.client("bulky").await;
    let (ok, refused, secs) = publish_burst(&c, "bulk/x", 10, 1000).await;
    assert!(ok >= 1);
    assert!(ok as f64 <= 1.0 + secs.ceil(), "{ok} accepted in {secs} s");
    assert!(!refused.is_empty());
    assert!(
        refused[0].contains("limits.publish_bytes_per_s"),
        "{}",
        refused[0]
    );
    c.flush().await.unwrap();
    bystander.still_works().await;
}

/// `limits.handshake_timeout_ms` against slow-loris clients: a QUIC
/// connection that never sends a hello, and one that sends half of one,
/// are closed with `HandshakeTimeout`; they no longer count against
/// `limits.max_connections_per_address` once closed; a client that
/// connects normally meanwhile is served.
#[tokio::test]
async fn slow_handshakes_are_closed_after_the_handshake_timeout() {
    let broker = BrokerProc::start(&[
        "limits.handshake_timeout_ms=500",
        "limits.max_connections_per_address=3",
    ]);
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // No hello at all (not even a stream).
    let (_e1, silent) = raw_connection(&broker, local, |_| {}).await.unwrap();
    // Half a hello: a length prefix of 100 bytes, then 10 of them.
    let (_e2, half) = raw_connection(&broker, local, |_| {}).await.unwrap();
    let (mut send, _recv) = half.open_bi().await.unwrap();
    let mut partial = BytesMut::new();
    partial.put_u32_le(100);
    partial.put_slice(b"MCST\x02\x00abcd");
    send.write_all(&partial).await.unwrap();
    // A well-behaved client at the same time.
    let mut bystander = Bystander::new(&broker).await;

    for conn in [&silent, &half] {
        let (code, reason) = closed(conn).await;
        assert_eq!(code, CloseCode::HandshakeTimeout.code() as u64, "{reason}");
        assert!(reason.contains("limits.handshake_timeout_ms"), "{reason}");
    }
    bystander.still_works().await;
    // Their places are free: two more sessions fit beside the bystander.
    let a = connect_eventually(&broker, "a").await;
    let b = connect_eventually(&broker, "b").await;
    a.flush().await.unwrap();
    b.flush().await.unwrap();
    bystander.still_works().await;
}

/// The idle timeout for clients (`limits.session_timeout_ms`): a client
/// that completed its handshake and then falls silent (here: cut off by a
/// UDP relay, as a frozen process or a broken network would be; a client
/// whose QUIC stack still answers the broker's keep-alives is alive) is
/// closed by the broker, which logs the session's end; a client with
/// keep-alives stays.
#[tokio::test]
async fn a_silent_session_is_closed_after_the_session_timeout() {
    let dir = TempDir::new("idle");
    let log = dir.path().join("broker.log");
    let file = std::fs::File::create(&log).unwrap();
    let broker = BrokerProc::start_with_stderr(
        TempDir::new("idle-broker"),
        &["limits.session_timeout_ms=1000", "log.level=info"],
        &[],
        Stdio::from(file),
    );
    let mut bystander = Bystander::new(&broker).await;
    let relay = Relay::start(broker.addr).await;
    let mut opts = broker.options("sleeper");
    opts.servers = vec![relay.addr.into()];
    // The client's own timeout is long: only the broker's can end it.
    opts.idle_timeout = Duration::from_secs(3600);
    let sleeper = Client::connect(opts).await.unwrap();
    sleeper.flush().await.unwrap();
    relay.cut(true);
    wait_log(&log, "the silent session's end", |t| {
        t.lines()
            .any(|l| l.contains("client session closed") && l.contains("name=sleeper"))
    })
    .await;
    bystander.still_works().await;
    drop(sleeper);
}

/// A broker whose certificate comes from another CA, trying to join a
/// two-broker mesh, is refused at the TLS handshake; the accepting broker
/// logs a warning naming its address and the cluster CA; the mesh keeps
/// its view and carries messages.
#[tokio::test]
async fn a_broker_from_another_ca_is_refused_with_a_clear_log_line() {
    let dir = TempDir::new("foreign-ca");
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    std::fs::create_dir_all(&ours).unwrap();
    std::fs::create_dir_all(&theirs).unwrap();
    mesh::certs(&ours, &["m1", "m2"]);
    mesh::certs(&theirs, &["rogue"]);
    let (a1, a2, rogue_addr) = (
        mesh::free_udp_addr(),
        mesh::free_udp_addr(),
        mesh::free_udp_addr(),
    );
    let log = dir.path().join("m1.log");
    let mut sets = mesh::broker_sets(
        &ours,
        "m1",
        a1,
        &[("m2", a2)],
        &[
            "mesh.bootstrap=true".to_string(),
            "log.level=info".to_string(),
        ],
    );
    sets.extend(mesh::fast());
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let mut m1 = BrokerProc::start_with_stderr(
        TempDir::new("m1"),
        &sets,
        &[],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    m1.ca = ours.join("ca.pem");
    let mut extra = mesh::fast();
    extra.push("mesh.bootstrap=false".to_string());
    let m2 = mesh::broker(&ours, "m2", a2, &[("m1", a1)], &extra);
    let view_of_two = |s: &serde_json::Value| {
        s["core"]["mesh"]["view"][1]
            .as_array()
            .is_some_and(|m| m.len() == 2)
    };
    wait_status(m1.admin, "a mesh of two", view_of_two).await;

    let rogue = mesh::broker(&theirs, "rogue", rogue_addr, &[("m1", a1)], &extra);
    let text = wait_log(&log, "the refusal of the rogue broker", |t| {
        t.lines().any(|l| {
            l.contains("WARN")
                && l.contains("refused a peer link")
                && l.contains(&rogue_addr.to_string())
        })
    })
    .await;
    let line = text
        .lines()
        .find(|l| l.contains("refused a peer link") && l.contains(&rogue_addr.to_string()))
        .unwrap();
    assert!(
        line.contains("TLS handshake failed") && line.contains("cluster CA (tls.ca_cert)"),
        "{line}"
    );

    // The mesh is unaffected: the same two brokers, and messages flow.
    let s = common::status(m1.admin).await;
    assert!(view_of_two(&s), "{s}");
    let members = s["core"]["mesh"]["view"][1].to_string();
    assert!(!members.contains("rogue"), "{members}");
    let sub_client = m2.client("sub").await;
    let mut sub = sub_client.subscribe("orders/**").await.unwrap();
    let pub_client = m1.client("pub").await;
    pub_client
        .publisher("orders/eu", Publish::total())
        .unwrap()
        .publish_confirmed("across the mesh")
        .await
        .unwrap();
    let m = tokio::time::timeout(GUARD, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "across the mesh");
    drop(rogue);
}

/// Waits until the broker's `/status` satisfies `ok`.
async fn wait_status(
    admin: SocketAddr,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + GUARD;
    loop {
        let s = common::status(admin).await;
        if ok(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
