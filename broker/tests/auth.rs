//! Client authentication and permissions with real `meshcast broker`
//! processes: refusals at the handshake, certificate identities, topics a
//! user may not read kept out of every subscription and view, typed
//! refusals of operations, no token in any log, and development mode.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{BrokerProc, GUARD, TempDir, run_cli};
use futures_util::FutureExt;
use meshcast_client::{
    Client, ClientError, ClientOptions, Gather, Publish, Subscription, SubscriptionEvent,
};

#[path = "common/mesh.rs"]
mod mesh;

/// The stored form of `secret`, as `meshcast auth hash` prints it.
fn hash(secret: &str) -> String {
    let (status, out, err) = run_cli(&["auth", "hash"], Some(&format!("{secret}\n")));
    assert!(status.success(), "{err}");
    let line = out.trim().to_string();
    assert!(line.starts_with("$argon2id$"), "{line}");
    if secret.len() >= 8 {
        assert!(!line.contains(secret) && !err.contains(secret));
    }
    line
}

/// `--set` overrides for `[[auth.users]]` (name, secret, roles) and
/// `[[permissions]]` (TOML inline tables).
fn auth_sets(users: &[(&str, &str, &[&str])], rules: &[&str]) -> Vec<String> {
    let users: Vec<String> = users
        .iter()
        .map(|(name, secret, roles)| {
            let roles: Vec<String> = roles.iter().map(|r| format!("\"{r}\"")).collect();
            let hashes = if secret.is_empty() {
                String::new()
            } else {
                format!("\"{}\"", hash(secret))
            };
            format!(
                "{{name=\"{name}\",roles=[{}],token_hashes=[{hashes}]}}",
                roles.join(",")
            )
        })
        .collect();
    vec![
        format!("auth.users=[{}]", users.join(",")),
        format!("permissions=[{}]", rules.join(",")),
    ]
}

async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
    tokio::time::timeout(GUARD, Client::connect(opts))
        .await
        .expect("connect timed out")
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    text
}

const OPEN_RULE: &str =
    "{name=\"everything\",users=[\"*\"],allow=[\"*\"],topics=[\"**\"],groups=[\"*\"]}";

#[tokio::test]
async fn unauthenticated_and_wrong_token_clients_are_refused_at_the_handshake() {
    let mut sets = auth_sets(&[("alice", "alice-secret", &[])], &[OPEN_RULE]);
    sets.push("log.level=info".into());
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let b = BrokerProc::start(&sets);

    for (what, opts) in [
        ("no credentials", b.options("anon")),
        (
            "wrong token",
            b.options("bad").token("alice:not-her-secret"),
        ),
        (
            "unknown user",
            b.options("who").token("mallory:alice-secret"),
        ),
        ("not USER:SECRET", b.options("odd").token("alice-secret")),
    ] {
        match connect(opts).await {
            Err(ClientError::Unauthenticated { reason, .. }) => {
                assert!(reason.contains("authentic"), "{what}: {reason}");
                assert!(!reason.contains("secret"), "{what}: {reason}");
            }
            Err(other) => panic!("{what}: expected Unauthenticated, got {other:?}"),
            Ok(_) => panic!("{what}: connected"),
        }
    }
    // Nothing happened on the broker: no session was ever opened.
    let status = common::status(b.admin).await;
    assert_eq!(status["core"]["sessions"], 0, "{status}");
    let metrics = http_get(b.admin, "/metrics").await;
    assert!(
        metrics.contains("meshcast_auth_failures_total 4"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("meshcast_client_connects_total 1"),
        "{metrics}"
    );

    // The right token gets in, as alice.
    let c = connect(b.options("good").token("alice:alice-secret"))
        .await
        .unwrap();
    assert_eq!(c.user().as_deref(), Some("alice"));
    c.publish("a/b", "x").await.unwrap();
    c.flush().await.unwrap();
    c.close().await;
}

#[tokio::test]
async fn a_token_never_appears_in_logs_status_metrics_or_the_data_directory() {
    let good = "Tok3n-G00d-b5e1d0c7";
    let bad = "Tok3n-Wr0ng-77aa01f2";
    let dir = TempDir::new("auth-logs");
    let log = dir.path().join("broker.log");
    let data = TempDir::new("auth-logs-data");
    let mut sets = auth_sets(&[("alice", good, &[])], &[OPEN_RULE]);
    sets.push("log.level=trace".into());
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let file = std::fs::File::create(&log).unwrap();
    let b = BrokerProc::start_with_stderr(data, &sets, &[], Stdio::from(file));

    let refused = connect(b.options("bad").token(format!("alice:{bad}"))).await;
    let err = refused.expect_err("refused");
    assert!(!format!("{err} {err:?}").contains(bad), "{err:?}");
    let opts = b.options("good").token(format!("alice:{good}"));
    assert!(!format!("{opts:?}").contains(good));
    let c = connect(opts).await.unwrap();
    let mut sub = c.subscribe("t/**").await.unwrap();
    c.publish("t/x", "hello").await.unwrap();
    let m = tokio::time::timeout(GUARD, sub.next_event()).await.unwrap();
    assert!(matches!(m, Some(Ok(SubscriptionEvent::Message(_)))));
    let status = http_get(b.admin, "/status").await;
    let metrics = http_get(b.admin, "/metrics").await;
    drop(sub);
    c.close().await;
    let mut b = b;
    b.terminate();

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.len() > 1000, "a trace-level log was written");
    assert!(text.contains("client refused"), "the refusal is logged");
    for secret in [good, bad] {
        assert!(!text.contains(secret), "the log holds a secret");
        assert!(!status.contains(secret) && !metrics.contains(secret));
        for entry in walk(b.dir.path()) {
            let bytes = std::fs::read(&entry).unwrap_or_default();
            let hay = String::from_utf8_lossy(&bytes);
            assert!(!hay.contains(secret), "{} holds a secret", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_client_certificate_names_its_user() {
    let certs = TempDir::new("auth-client-ca");
    let other = TempDir::new("auth-other-ca");
    // Client certificates from a client CA of their own (`meshcast certs`
    // issues certificates usable for TLS client authentication, with the
    // name as CN and as a DNS name).
    mesh::certs(certs.path(), &["carol"]);
    mesh::certs(other.path(), &["carol"]);
    let ca = certs.path().join("ca.pem");
    let rule = "{users=[\"carol\"],allow=[\"publish\",\"subscribe\"],topics=[\"c/**\"]}";
    let mut sets = auth_sets(&[("bob", "bob-secret", &[])], &[rule]);
    sets.push(format!("auth.client_ca={}", ca.display()));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let b = BrokerProc::start(&sets);

    let cert = |dir: &TempDir| {
        (
            dir.path().join("carol.pem"),
            dir.path().join("carol-key.pem"),
        )
    };
    let (c, k) = cert(&certs);
    let carol = connect(b.options("carol").client_cert(&c, &k))
        .await
        .unwrap();
    assert_eq!(carol.user().as_deref(), Some("carol"));
    let mut sub = carol.subscribe("c/**").await.unwrap();
    carol.publish("c/1", "hi").await.unwrap();
    let m = tokio::time::timeout(GUARD, sub.next_event()).await.unwrap();
    assert!(matches!(m, Some(Ok(SubscriptionEvent::Message(m))) if m.topic == "c/1"));
    // Her permissions are carol's: nothing outside c/**.
    let err = carol.subscribe("d/x").await.unwrap_err();
    assert!(
        matches!(err, ClientError::PermissionDenied { .. }),
        "{err:?}"
    );

    // A certificate from another CA is refused, with the typed error.
    let (c2, k2) = cert(&other);
    let err = connect(b.options("carol2").client_cert(&c2, &k2))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, ClientError::Unauthenticated { .. }),
        "{err:?}"
    );
    // Tokens still work beside certificates.
    let bob = connect(b.options("bob").token("bob:bob-secret"))
        .await
        .unwrap();
    assert_eq!(bob.user().as_deref(), Some("bob"));
}

/// `limits.max_connections_per_user` with `[auth]`: a session's user is
/// the one it authenticated as, counted only once it has authenticated
/// (so a client without the right token cannot use up another user's
/// sessions, and is refused as unauthenticated, not for the limit); two
/// users from one address are two users.
#[tokio::test]
async fn sessions_per_user_count_the_authenticated_user() {
    let mut sets = auth_sets(
        &[("alice", "alice-secret", &[]), ("bob", "bob-secret", &[])],
        &[OPEN_RULE],
    );
    sets.push("limits.max_connections_per_user=1".into());
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let b = BrokerProc::start(&sets);

    let alice = connect(b.options("a1").token("alice:alice-secret"))
        .await
        .unwrap();
    assert_eq!(alice.user().as_deref(), Some("alice"));
    // A wrong token naming alice is refused for what it is.
    let err = connect(b.options("fake").token("alice:not-her-secret"))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, ClientError::Unauthenticated { .. }),
        "{err:?}"
    );
    // A second session of alice is over her limit.
    match connect(b.options("a2").token("alice:alice-secret")).await {
        Err(ClientError::Closed {
            code: Some(meshcast_client::CloseCode::TooManyForUser),
            reason,
        }) => assert!(
            reason.contains("user alice already has 1 sessions open")
                && reason.contains("limits.max_connections_per_user = 1"),
            "{reason}"
        ),
        Err(other) => panic!("expected TooManyForUser, got {other:?}"),
        Ok(_) => panic!("a second session of alice was let in"),
    }
    // Bob, from the same address, is another user.
    let bob = connect(b.options("b1").token("bob:bob-secret"))
        .await
        .unwrap();
    assert_eq!(bob.user().as_deref(), Some("bob"));
    alice.publish("a/b", "x").await.unwrap();
    alice.flush().await.unwrap();
    bob.close().await;
    alice.close().await;
}

#[tokio::test]
async fn development_mode_needs_no_credentials_and_says_so_once() {
    let dir = TempDir::new("dev-log");
    let log = dir.path().join("broker.log");
    let file = std::fs::File::create(&log).unwrap();
    let b = BrokerProc::start_with_stderr(TempDir::new("dev"), &[], &[], Stdio::from(file));
    let c = b.client("dev").await;
    assert_eq!(c.user(), None);
    let mut sub = c.subscribe("**").await.unwrap();
    c.publish("any/topic", "x").await.unwrap();
    let m = tokio::time::timeout(GUARD, sub.next_event()).await.unwrap();
    assert!(matches!(m, Some(Ok(SubscriptionEvent::Message(_)))));
    // A token is simply not needed (and not checked) without [auth].
    let t = connect(b.options("t").token("x:y")).await.unwrap();
    assert_eq!(t.user(), None);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("clients are not authenticated").count(),
        1,
        "{text}"
    );
}

/// Everything queued for a subscription right now (after a flush of its
/// client, every frame sent before it has been routed).
fn drain(sub: &mut Subscription) -> Vec<SubscriptionEvent> {
    let mut out = Vec::new();
    while let Some(Some(e)) = sub.next_event().now_or_never() {
        out.push(e.expect("subscription failed"));
    }
    out
}

fn topics_and_view_groups(events: &[SubscriptionEvent]) -> (Vec<String>, Vec<String>) {
    let mut topics = Vec::new();
    let mut groups = Vec::new();
    for e in events {
        match e {
            SubscriptionEvent::Message(m) => topics.push(m.topic.clone()),
            SubscriptionEvent::View(v) => groups.push(v.group.clone()),
            _ => {}
        }
    }
    (topics, groups)
}

/// Waits until `sub` has received messages on every topic in `topics`.
async fn wait_topics(sub: &mut Subscription, topics: &[&str]) -> Vec<SubscriptionEvent> {
    let mut seen = Vec::new();
    tokio::time::timeout(GUARD, async {
        loop {
            let (t, _) = topics_and_view_groups(&seen);
            if topics.iter().all(|x| t.iter().any(|y| y == x)) {
                return;
            }
            seen.push(sub.next_event().await.unwrap().unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("never got {topics:?}; got {seen:?}"));
    seen
}

#[tokio::test]
async fn a_denied_topic_reaches_no_pattern_and_no_view_and_publishing_it_is_refused() {
    let dir = TempDir::new("auth-mesh");
    let everyone = "{name=\"everyone\",users=[\"*\"],allow=[\"publish\",\"subscribe\"],\
                    topics=[\"**\"],groups=[\"*\"]}";
    let no_secrets = "{name=\"no-secrets\",users=[\"bob\"],deny=[\"subscribe\",\"publish\"],\
                      topics=[\"secret/**\"],groups=[\"secret\"]}";
    let mut extra = mesh::fast();
    extra.extend(auth_sets(
        &[("alice", "pw-a", &[]), ("bob", "pw-b", &[])],
        &[everyone, no_secrets],
    ));
    let brokers = mesh::full_mesh(dir.path(), "p", 2, &extra);
    for b in &brokers {
        mesh::wait_mesh(b, 2).await;
    }
    let (b1, b2) = (&brokers[0], &brokers[1]);
    let as_user =
        |b: &BrokerProc, user: &str, pw: &str| b.options(user).token(format!("{user}:{pw}"));

    // Alice makes both groups exist, with members on b1.
    let alice1 = connect(as_user(b1, "alice", "pw-a")).await.unwrap();
    let _s1 = alice1.subscribe("secret/**").await.unwrap();
    let _p1 = alice1.subscribe("public/**").await.unwrap();
    // A control subscriber on b2, next to bob, allowed everything.
    let alice2 = connect(as_user(b2, "alice", "pw-a")).await.unwrap();
    let mut control = alice2.subscribe("**").await.unwrap();
    assert!(control.views().iter().any(|v| v.group == "secret"));

    let bob = connect(as_user(b2, "bob", "pw-b")).await.unwrap();
    let mut all = bob.subscribe("**").await.unwrap();
    let mut star_x = bob.subscribe("*/x").await.unwrap();
    // The views a subscription is installed in leave out the group whose
    // view bob may not read.
    let groups: Vec<&str> = all.views().iter().map(|v| v.group.as_str()).collect();
    assert!(
        groups.contains(&"public") && !groups.contains(&"secret"),
        "{groups:?}"
    );
    assert!(star_x.views().iter().all(|v| v.group != "secret"));
    // An exact pattern is refused at once, naming the topic and the rule.
    match bob.subscribe("secret/x").await {
        Err(ClientError::PermissionDenied { reason }) => {
            assert!(reason.contains("\"secret/x\""), "{reason}");
            assert!(reason.contains("no-secrets"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Joining the group is not allowed either (no rule allows join).
    let err = bob.join("secret").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::PermissionDenied { reason } if reason.contains("\"secret\"")),
        "{err:?}"
    );

    // Alice publishes on both topics from b1; a new member joins "secret".
    let pub_secret = alice1.publisher("secret/x", Publish::total()).unwrap();
    let pub_public = alice1.publisher("public/x", Publish::total()).unwrap();
    pub_secret.publish_confirmed("s1").await.unwrap();
    pub_public.publish_confirmed("p1").await.unwrap();
    let _late = alice1.subscribe("secret/y").await.unwrap();
    pub_secret.publish_confirmed("s2").await.unwrap();
    pub_public.publish_confirmed("p2").await.unwrap();
    // Wait until the control got both pairs and the new view of "secret".
    let mut seen = Vec::new();
    tokio::time::timeout(GUARD, async {
        loop {
            let (t, g) = topics_and_view_groups(&seen);
            let n = |x: &str| t.iter().filter(|y| *y == x).count();
            if n("secret/x") == 2 && n("public/x") == 2 && g.iter().any(|g| g == "secret") {
                return;
            }
            seen.push(control.next_event().await.unwrap().unwrap());
        }
    })
    .await
    .expect("the control subscriber got both messages and the view");

    // Everything delivered before bob's flush answer is in his streams.
    bob.flush().await.unwrap();
    for sub in [&mut all, &mut star_x] {
        let (topics, groups) = topics_and_view_groups(&drain(sub));
        assert_eq!(topics, ["public/x", "public/x"], "{topics:?}");
        assert!(groups.iter().all(|g| g != "secret"), "{groups:?}");
    }

    // Publishing the denied topic is refused, naming the topic and rule.
    let bob_secret = bob.publisher("secret/x", Publish::total()).unwrap();
    match bob_secret.publish_confirmed("leak").await {
        Err(ClientError::PermissionDenied { reason }) => {
            assert!(reason.contains("publish on topic \"secret/x\""), "{reason}");
            assert!(
                reason.contains("permissions[1] (\"no-secrets\")"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    bob.publish("secret/x", "leak2").await.unwrap();
    let err = bob.flush().await.unwrap_err();
    assert!(
        matches!(err, ClientError::PermissionDenied { .. }),
        "{err:?}"
    );
    // Bob's allowed publish still goes through the mesh.
    bob.publisher("public/x", Publish::total())
        .unwrap()
        .publish_confirmed("from bob")
        .await
        .unwrap();
    let got = wait_topics(&mut all, &["public/x"]).await;
    let (t, _) = topics_and_view_groups(&got);
    assert!(t.iter().all(|x| x == "public/x"));
}

#[tokio::test]
async fn answers_go_only_to_the_inbox_of_a_request_received() {
    let requester = "{users=[\"alice\"],allow=[\"request\"],topics=[\"svc/**\"]}";
    let responder = "{users=[\"carol\"],allow=[\"subscribe\",\"reply\"],topics=[\"svc/**\"]}";
    let snoop = "{users=[\"eve\"],allow=[\"subscribe\",\"publish\"],topics=[\"**\"]}";
    let sets = auth_sets(
        &[("alice", "a", &[]), ("carol", "c", &[]), ("eve", "e", &[])],
        &[requester, responder, snoop],
    );
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let b = BrokerProc::start(&sets);
    let alice = connect(b.options("alice").token("alice:a")).await.unwrap();
    let carol = connect(b.options("carol").token("carol:c")).await.unwrap();
    let eve = connect(b.options("eve").token("eve:e")).await.unwrap();
    // Eve's `**` does not cover inboxes; carol answers what she receives.
    let mut snooping = eve.subscribe("**").await.unwrap();
    let mut requests = carol.subscribe("svc/**").await.unwrap();
    let answering = tokio::spawn(async move {
        let m = match requests.next_event().await {
            Some(Ok(SubscriptionEvent::Message(m))) => m,
            other => panic!("{other:?}"),
        };
        carol.reply(&m, "pong").await.unwrap();
        carol.flush().await.unwrap();
        (carol, m)
    });
    let answers = alice
        .request("svc/ping", "ping", Gather::First, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(&answers[0].payload[..], b"pong");
    let (_carol, request) = answering.await.unwrap();
    // Eve saw the request (she may read svc/**) but no answer, and may not
    // write into alice's inbox: she has no `reply` right.
    let inbox = request.reply_to.clone().unwrap();
    eve.publish(&inbox, "forged").await.unwrap();
    let err = eve.flush().await.unwrap_err();
    match err {
        ClientError::PermissionDenied { reason } => {
            assert!(
                reason.contains("reply") && reason.contains("eve"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    let (topics, _) = topics_and_view_groups(&drain(&mut snooping));
    assert!(
        topics.iter().all(|t| !t.starts_with("_inbox")),
        "{topics:?}"
    );
    // Alice may not publish plainly (only requests).
    alice.publish("svc/ping", "x").await.unwrap();
    assert!(matches!(
        alice.flush().await,
        Err(ClientError::PermissionDenied { .. })
    ));
}

#[tokio::test]
async fn brokers_with_different_permissions_refuse_to_link() {
    let dir = TempDir::new("auth-digest");
    mesh::certs(dir.path(), &["d1", "d2"]);
    let (a1, a2) = (mesh::free_udp_addr(), mesh::free_udp_addr());
    let read = "{users=[\"*\"],allow=[\"subscribe\"],topics=[\"**\"]}";
    let write = "{users=[\"*\"],allow=[\"subscribe\",\"publish\"],topics=[\"**\"]}";
    let mut one = auth_sets(&[("alice", "pw-alice", &[])], &[read]);
    one.push("mesh.bootstrap=true".into());
    // Same users and roles, other token hash: not part of the digest (hashes
    // are rotated broker by broker); another rule: part of it.
    let mut two = auth_sets(&[("alice", "pw-alice-2", &[])], &[write]);
    two.push("mesh.bootstrap=false".into());
    let d1 = mesh::broker(dir.path(), "d1", a1, &[("d2", a2)], &one);
    let d2 = mesh::broker(dir.path(), "d2", a2, &[("d1", a1)], &two);
    for b in [&d1, &d2] {
        let s = mesh::wait_for(b.admin, "a refusal", |s| {
            s["link_errors"].as_array().is_some_and(|e| !e.is_empty())
        })
        .await;
        let err = s["link_errors"][0][1].as_str().unwrap();
        assert!(err.contains("configuration digest mismatch"), "{err}");
        assert!(err.contains("[[permissions]]"), "{err}");
        assert_eq!(s["links"].as_array().unwrap().len(), 0);
        assert_eq!(s["auth"], true);
    }
    let (s1, s2) = (
        common::status(d1.admin).await,
        common::status(d2.admin).await,
    );
    assert_eq!(s1["group_map_digest"], s2["group_map_digest"]);
    assert_ne!(s1["auth_digest"], s2["auth_digest"]);
}

#[tokio::test]
async fn a_token_is_rotated_broker_by_broker_with_the_mesh_linked() {
    let dir = TempDir::new("auth-rotate");
    mesh::certs(dir.path(), &["t1", "t2"]);
    let (a1, a2) = (mesh::free_udp_addr(), mesh::free_udp_addr());
    let (old, new) = (hash("old-secret-1"), hash("new-secret-2"));
    let users = |hashes: &[&str]| {
        let list: Vec<String> = hashes.iter().map(|h| format!("\"{h}\"")).collect();
        format!(
            "auth.users=[{{name=\"alice\",token_hashes=[{}]}}]",
            list.join(",")
        )
    };
    let rules = format!("permissions=[{OPEN_RULE}]");
    let mut extra = mesh::fast();
    extra.push(rules);
    // t2 already accepts the new secret beside the old one; t1 not yet.
    let mut one = extra.clone();
    one.extend([users(&[&old]), "mesh.bootstrap=true".into()]);
    let mut two = extra.clone();
    two.extend([users(&[&old, &new]), "mesh.bootstrap=false".into()]);
    let t1 = mesh::broker(dir.path(), "t1", a1, &[("t2", a2)], &one);
    let t2 = mesh::broker(dir.path(), "t2", a2, &[("t1", a1)], &two);
    for b in [&t1, &t2] {
        mesh::wait_mesh(b, 2).await;
    }
    for b in [&t1, &t2] {
        let c = connect(b.options("old").token("alice:old-secret-1")).await;
        assert_eq!(c.unwrap().user().as_deref(), Some("alice"));
    }
    assert!(
        connect(t2.options("new").token("alice:new-secret-2"))
            .await
            .is_ok()
    );
    let err = connect(t1.options("new").token("alice:new-secret-2"))
        .await
        .err();
    assert!(
        matches!(err, Some(ClientError::Unauthenticated { .. })),
        "{err:?}"
    );
}

/// Rotating the client CA (docs/security.md): `auth.client_ca` is not in
/// the configuration digest, so a broker trusting old and new client CAs
/// and one already on the new CA alone stay linked; a certificate from the
/// new CA works on both, one from the old CA only where the old CA is
/// still trusted.
#[tokio::test]
async fn the_client_ca_is_rotated_broker_by_broker_with_the_mesh_linked() {
    let dir = TempDir::new("auth-client-ca-rotate");
    let (old, new) = (
        TempDir::new("auth-client-ca-old"),
        TempDir::new("auth-client-ca-new"),
    );
    mesh::certs(dir.path(), &["t1", "t2"]);
    mesh::certs(old.path(), &["carol"]);
    mesh::certs(new.path(), &["carol"]);
    let both = dir.path().join("client-ca-both.pem");
    let text = std::fs::read_to_string(old.path().join("ca.pem")).unwrap()
        + &std::fs::read_to_string(new.path().join("ca.pem")).unwrap();
    std::fs::write(&both, text).unwrap();
    let (a1, a2) = (mesh::free_udp_addr(), mesh::free_udp_addr());
    let mut extra = mesh::fast();
    extra.push(format!("permissions=[{OPEN_RULE}]"));
    let mut one = extra.clone();
    one.extend([
        format!("auth.client_ca={}", both.display()),
        "mesh.bootstrap=true".into(),
    ]);
    let mut two = extra.clone();
    two.extend([
        format!("auth.client_ca={}", new.path().join("ca.pem").display()),
        "mesh.bootstrap=false".into(),
    ]);
    let t1 = mesh::broker(dir.path(), "t1", a1, &[("t2", a2)], &one);
    let t2 = mesh::broker(dir.path(), "t2", a2, &[("t1", a1)], &two);
    for b in [&t1, &t2] {
        mesh::wait_mesh(b, 2).await;
    }
    let cert = |d: &TempDir| (d.path().join("carol.pem"), d.path().join("carol-key.pem"));
    let (new_cert, new_key) = cert(&new);
    for b in [&t1, &t2] {
        let c = connect(b.options("new").client_cert(&new_cert, &new_key)).await;
        assert_eq!(c.unwrap().user().as_deref(), Some("carol"));
    }
    let (old_cert, old_key) = cert(&old);
    let c = connect(t1.options("old").client_cert(&old_cert, &old_key)).await;
    assert_eq!(c.unwrap().user().as_deref(), Some("carol"));
    let err = connect(t2.options("old").client_cert(&old_cert, &old_key))
        .await
        .err();
    assert!(
        matches!(err, Some(ClientError::Unauthenticated { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_cli_authenticates_with_a_token_from_the_environment_or_a_file() {
    let sets = auth_sets(&[("alice", "cli-secret-1", &[])], &[OPEN_RULE]);
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let b = BrokerProc::start(&sets);
    let (addr, ca) = (b.addr.to_string(), b.ca.display().to_string());
    let args = ["pub", "--server", &addr, "--ca", &ca, "cli/t", "hello"];
    let (status, _, err) = run_cli(&args, None);
    assert!(!status.success());
    assert!(err.contains("not authenticated"), "{err}");
    let token_file = b.dir.path().join("token");
    std::fs::write(&token_file, "alice:cli-secret-1\n").unwrap();
    let file = token_file.display().to_string();
    let with_file = [
        "pub",
        "--server",
        &addr,
        "--ca",
        &ca,
        "--token-file",
        &file,
        "cli/t",
        "hi",
    ];
    let (status, _, err) = run_cli(&with_file, None);
    assert!(status.success(), "{err}");
    let out = std::process::Command::new(common::meshcast_bin())
        .args(args)
        .env("MESHCAST_TOKEN", "alice:wrong-secret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not authenticated"),
        "{err}"
    );
    assert!(!err.contains("wrong-secret"), "{err}");
}
