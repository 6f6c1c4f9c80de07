//! The client against real brokers: failing fast with the likely cause,
//! host names and TLS names, moving to another broker when the connection
//! is lost, taps, and requests nobody answers.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use std::path::Path;
use std::time::Duration;

use common::relay::Relay;
use common::{BrokerProc, GUARD, TempDir};
use futures_util::StreamExt;
use meshcast_client::{
    Client, ClientError, ClientOptions, ConnectCause, Gather, GroupEvent, Publish,
    SubscriptionEvent,
};

/// A broker in single-broker mode using the certificate `certs/<id>.pem`
/// (from `meshcast certs`) instead of a development CA.
fn broker_with_cert(certs: &Path, id: &str, extra: &[&str]) -> BrokerProc {
    let p = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let mut sets = vec![
        format!("broker.id={id}"),
        format!("tls.ca_cert={}", p("ca.pem")),
        format!("tls.cert={}", p(&format!("{id}.pem"))),
        format!("tls.key={}", p(&format!("{id}-key.pem"))),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let mut b = BrokerProc::start(&sets);
    b.ca = certs.join("ca.pem");
    b
}

fn cause(r: Result<Client, ClientError>) -> (ConnectCause, String) {
    match r {
        Err(ClientError::Connect { cause, addr, .. }) => (cause, addr),
        Err(other) => panic!("expected a connect error, got {other}"),
        Ok(_) => panic!("expected a connect error, got a session"),
    }
}

async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
    tokio::time::timeout(GUARD, Client::connect(opts))
        .await
        .expect("connect did not return")
}

#[tokio::test]
async fn connect_names_the_address_and_the_likely_cause() {
    let peer_port = mesh::free_udp_addr();
    let broker = BrokerProc::start(&[&format!("broker.peer_listen={peer_port}")]);

    // Nothing listening: an error naming the address, not a 30 s hang
    // ending in "timed out".
    let nothing = mesh::free_udp_addr();
    let opts = ClientOptions::new(nothing)
        .ca_file(&broker.ca)
        .connect_timeout(Duration::from_secs(2));
    let (c, addr) = cause(connect(opts).await);
    assert!(matches!(c, ConnectCause::NoAnswer { .. }), "{c:?}");
    assert_eq!(addr, nothing.to_string());
    assert!(c.to_string().contains("nothing is listening"), "{c}");

    // A peer port: the wrong kind of port, said so.
    let opts = ClientOptions::new(peer_port).ca_file(&broker.ca);
    let (c, _) = cause(connect(opts).await);
    assert_eq!(c, ConnectCause::WrongProtocol);
    assert!(c.to_string().contains("peer port"), "{c}");

    // Another CA: the CA file is named.
    let other = TempDir::new("other-ca");
    mesh::certs(other.path(), &["x"]);
    let other_ca = other.path().join("ca.pem");
    let opts = ClientOptions::new(broker.addr).ca_file(&other_ca);
    let (c, _) = cause(connect(opts).await);
    assert!(
        matches!(&c, ConnectCause::UnknownCa { ca } if ca == other_ca.to_str().unwrap()),
        "{c:?}"
    );

    // A host name with its port resolves (`localhost:PORT` was refused).
    let opts = ClientOptions::parse(&format!("localhost:{}", broker.addr.port()))
        .unwrap()
        .ca_file(&broker.ca);
    let c = connect(opts).await.expect("localhost:PORT");
    assert!(c.server().starts_with("localhost:"), "{}", c.server());
    c.close().await;
}

#[tokio::test]
async fn a_certificate_for_a_dns_name_is_checked_against_the_server_name() {
    let certs = TempDir::new("dns-certs");
    let (status, _, err) = common::run_cli(
        &[
            "certs",
            "--out",
            certs.path().to_str().unwrap(),
            "--host",
            "broker1.meshcast.test",
            "--host",
            "10.1.2.3",
            "b1",
        ],
        None,
    );
    assert!(status.success(), "{err}");
    let broker = broker_with_cert(certs.path(), "b1", &[]);

    // The name it was made for: accepted.
    let opts = broker.options("dns").server_name("broker1.meshcast.test");
    let c = connect(opts).await.expect("the certificate's DNS name");
    c.publish("t/x", "hello").await.unwrap();
    c.flush().await.unwrap();
    c.close().await;
    // An IP address given with --host is an IP address entry of it.
    let opts = broker.options("ip").server_name("10.1.2.3");
    let c = connect(opts).await.expect("the certificate's IP address");
    c.close().await;

    // Another name: refused, naming the name checked and how to change it.
    let opts = broker.options("dns").server_name("broker2.meshcast.test");
    let (c, _) = cause(connect(opts).await);
    assert_eq!(
        c,
        ConnectCause::ServerName {
            name: "broker2.meshcast.test".into()
        }
    );
    assert!(c.to_string().contains("--server-name"), "{c}");
}

#[tokio::test]
async fn a_lost_connection_moves_to_the_next_broker_and_says_so() {
    let certs = TempDir::new("reconnect-certs");
    mesh::certs(certs.path(), &["r1", "r2"]);
    let a = broker_with_cert(certs.path(), "r1", &[]);
    let b = broker_with_cert(certs.path(), "r2", &[]);
    // The client reaches r1 through a relay that can cut it off.
    let relay = Relay::start(a.addr).await;
    let opts = ClientOptions::with_servers([relay.addr.into(), b.addr.into()])
        .ca_file(certs.path().join("ca.pem"))
        .name("mover")
        .idle_timeout(Duration::from_secs(2))
        .reconnect(Some(GUARD));
    let client = connect(opts).await.unwrap();
    assert_eq!(client.broker_id(), "r1");
    let mut sub = client.subscribe("r/**").await.unwrap();
    let on_a = a.client("pub-a").await;
    on_a.publish("r/before", "1").await.unwrap();
    on_a.flush().await.unwrap();
    let first = tokio::time::timeout(GUARD, sub.next_event())
        .await
        .expect("nothing before the cut")
        .unwrap()
        .unwrap();
    assert!(
        matches!(&first, SubscriptionEvent::Message(m) if m.topic == "r/before"),
        "{first:?}"
    );

    // Cut r1 off; a confirmed publish sent now cannot be confirmed by r1.
    relay.cut(true);
    let p = client.publisher("r/in-flight", Publish::fifo()).unwrap();
    let in_flight = tokio::time::timeout(GUARD, p.publish_confirmed("lost?"))
        .await
        .expect("the confirmation wait never ended");
    assert!(
        matches!(in_flight, Err(ClientError::ConnectionLost { .. })),
        "a publish in flight was reported as {in_flight:?}"
    );

    let event = tokio::time::timeout(GUARD, sub.next_event())
        .await
        .expect("no event after the cut")
        .expect("the subscription ended")
        .expect("the subscription failed");
    let SubscriptionEvent::Reconnected(r) = &event else {
        panic!("expected Reconnected, got {event:?}");
    };
    assert_eq!(r.broker, "r2");
    assert_eq!(client.broker_id(), "r2");
    assert!(r.to_string().contains("may be missing"), "{r}");

    // The next flush reports that publishes may have been lost; the one
    // after it is clean. (A flush also means the subscription is installed
    // again: the broker answers in order.)
    let first = client.flush().await;
    assert!(
        matches!(first, Err(ClientError::ConnectionLost { .. })),
        "{first:?}"
    );
    client.flush().await.unwrap();

    // The subscription goes on at r2.
    let on_b = b.client("pub-b").await;
    on_b.publish("r/after", "2").await.unwrap();
    on_b.flush().await.unwrap();
    let m = tokio::time::timeout(GUARD, sub.next())
        .await
        .expect("nothing after the reconnect")
        .unwrap()
        .unwrap();
    assert_eq!(m.topic, "r/after");
}

#[test]
fn the_types_users_match_on_are_reexported() {
    use meshcast_client::{CloseCode, Pattern, PatternError, RejectCode, Topic, TopicError};
    let bad: TopicError = Topic::new("a/**/b").unwrap_err();
    assert!(bad.to_string().contains("**"), "{bad}");
    let bad: PatternError = Pattern::new("a/[").unwrap_err();
    assert!(!bad.to_string().is_empty());
    let closed = ClientError::Closed {
        code: Some(CloseCode::SlowConsumer),
        reason: String::new(),
    };
    assert!(matches!(
        closed,
        ClientError::Closed {
            code: Some(CloseCode::SlowConsumer),
            ..
        }
    ));
    let _ = RejectCode::Blocked;
}

#[tokio::test]
async fn request_with_no_responders_is_a_typed_error() {
    let broker = BrokerProc::start(&[]);
    let c = broker.client("asker").await;
    let r = c
        .request(
            "svc/nobody",
            "hello?",
            Gather::First,
            Duration::from_millis(300),
        )
        .await;
    assert!(
        matches!(&r, Err(ClientError::NoResponders { topic, .. }) if topic == "svc/nobody"),
        "{r:?}"
    );
    c.close().await;
}

#[tokio::test]
async fn unsubscribe_and_close_are_bounded_when_the_broker_is_silent() {
    let broker = BrokerProc::start(&[]);
    let relay = Relay::start(broker.addr).await;
    let mut opts = broker
        .options("silent")
        .idle_timeout(Duration::from_secs(120))
        .close_timeout(Duration::from_secs(1));
    opts.servers = vec![relay.addr.into()];
    let client = connect(opts).await.unwrap();
    let sub = client.subscribe("s/**").await.unwrap();
    // The broker can no longer answer (nor is the loss noticed for two
    // minutes): the unsubscribe gives up after close_timeout, saying so,
    // instead of waiting for the idle timeout.
    relay.cut(true);
    let r = tokio::time::timeout(GUARD, sub.unsubscribe())
        .await
        .expect("unsubscribe was not bounded");
    assert!(matches!(r, Err(ClientError::TimedOut { .. })), "{r:?}");
    tokio::time::timeout(GUARD, client.close())
        .await
        .expect("close was not bounded");
}

#[tokio::test]
async fn a_tap_reads_without_becoming_a_member() {
    let dir = TempDir::new("tap");
    mesh::certs(dir.path(), &["t1"]);
    let ghost = mesh::free_udp_addr();
    let b = mesh::broker(
        dir.path(),
        "t1",
        mesh::free_udp_addr(),
        &[("ghost", ghost)],
        &["mesh.bootstrap=true".to_string()],
    );
    mesh::wait_mesh(&b, 1).await;
    let replica = b.client("replica").await;
    let mut group = replica.join("orders").await.unwrap();
    assert_eq!(group.view().members.len(), 1);

    // A tap on `**`: no new view of the group, and it reads the messages.
    let tapper = b.client("tapper").await;
    let mut tap = tapper.tap("**").await.unwrap();
    assert!(tap.views().is_empty());
    replica.publish("orders/x", "one").await.unwrap();
    let m = tokio::time::timeout(GUARD, tap.next())
        .await
        .expect("the tap got nothing")
        .unwrap()
        .unwrap();
    assert_eq!(m.topic, "orders/x");

    // A subscription on `**`, by contrast, joins the group: the replica
    // sees a second member. That is the first view since the replica
    // joined, so the tap made none (the replica's group also delivered
    // the message before it).
    let subscriber = b.client("subscriber").await;
    let _sub = subscriber.subscribe("**").await.unwrap();
    let view = tokio::time::timeout(GUARD, async {
        loop {
            match group.next().await {
                Some(Ok(GroupEvent::View(v))) => return v,
                Some(Ok(GroupEvent::Message(_))) => {}
                other => panic!("unexpected group event {other:?}"),
            }
        }
    })
    .await
    .expect("no view after the subscription");
    // Had the tap joined, this first view would list the replica and the
    // tap; it lists the replica and the subscriber.
    let subscriber_member = format!("/s{}", subscriber.session_id());
    assert_eq!(view.members.len(), 2, "{view:?}");
    assert!(
        view.members[1].ends_with(&subscriber_member),
        "{view:?} (subscriber {subscriber_member})"
    );
}

#[tokio::test]
async fn a_member_whose_broker_is_killed_rejoins_through_another_broker() {
    let dir = TempDir::new("rejoin");
    let mut brokers = mesh::full_mesh(dir.path(), "k", 3, &mesh::fast());
    for b in &brokers {
        mesh::wait_mesh(b, 3).await;
    }
    // A member that answers state requests, on k3.
    let keeper = brokers[2].client("keeper").await;
    let (mut kept, _) = keeper.join_with_state("ledger").await.unwrap();
    let answering = tokio::spawn(async move {
        while let Some(Ok(e)) = kept.next().await {
            if let GroupEvent::StateRequest(r) = e {
                r.reply("the ledger");
            }
        }
    });
    // The mover joins through k1, with k2 as the other address; a short
    // idle timeout so that a killed broker is noticed soon.
    let opts = ClientOptions::with_servers([brokers[0].addr.into(), brokers[1].addr.into()])
        .ca_file(dir.path().join("ca.pem"))
        .name("mover")
        .idle_timeout(Duration::from_secs(2))
        .reconnect(Some(GUARD));
    let mover = connect(opts).await.unwrap();
    let (mut group, state) = mover.join_with_state("ledger").await.unwrap();
    assert_eq!(state.as_deref(), Some(&b"the ledger"[..]));
    let mut sub = mover.subscribe("ledger/**").await.unwrap();

    // SIGKILL k1: nothing tells the client; its idle timeout does.
    let _ = brokers[0].child.kill();
    let _ = brokers[0].child.wait();

    // The group: Reconnected, then the view of the new membership, then a
    // fresh checkpoint.
    let events = tokio::time::timeout(GUARD, async {
        let mut events = Vec::new();
        loop {
            let e = group.next().await.expect("membership ended").unwrap();
            let done = matches!(e, GroupEvent::State(_));
            events.push(e);
            if done {
                return events;
            }
        }
    })
    .await
    .expect("no fresh checkpoint after the reconnect");
    let GroupEvent::Reconnected(r) = &events[0] else {
        panic!("expected Reconnected first, got {events:?}");
    };
    assert_eq!(r.broker, "k2");
    // Before the checkpoint, a view of the group with the keeper and the
    // new member (the old one, on k1, is gone by then or goes later).
    assert!(
        events
            .iter()
            .any(|e| matches!(e, GroupEvent::View(v) if v.members.len() >= 2)),
        "no view of the new membership: {events:?}"
    );
    assert!(
        matches!(events.last(), Some(GroupEvent::State(Some(s))) if s.as_ref() == b"the ledger"),
        "{events:?}"
    );

    // The subscription: Reconnected too, and it reads on.
    let e = tokio::time::timeout(GUARD, sub.next_event())
        .await
        .expect("nothing on the subscription")
        .unwrap()
        .unwrap();
    assert!(matches!(e, SubscriptionEvent::Reconnected(_)), "{e:?}");
    mover.flush().await.expect_err("the loss is reported once");
    keeper.publish("ledger/entry", "1").await.unwrap();
    let m = tokio::time::timeout(GUARD, sub.next())
        .await
        .expect("nothing after the reconnect")
        .unwrap()
        .unwrap();
    assert_eq!(m.topic, "ledger/entry");
    answering.abort();
}
