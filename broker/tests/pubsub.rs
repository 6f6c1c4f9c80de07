//! Publish/subscribe through the real `meshcast` binary and the client library.

mod common;

use common::{BrokerProc, GUARD};
use futures_util::StreamExt;
use meshcast_client::{Ordering, Publish, Subscription};

async fn next(sub: &mut Subscription) -> meshcast_client::Message {
    tokio::time::timeout(GUARD, sub.next())
        .await
        .expect("timed out waiting for a message")
        .expect("subscription ended")
        .expect("session lost")
}

#[tokio::test]
async fn every_message_reaches_every_matching_subscriber_in_publisher_order() {
    let broker = BrokerProc::start(&[]);
    let a = broker.client("sub-a").await;
    let b = broker.client("sub-b").await;
    let mut sa = a.subscribe("orders/**").await.unwrap();
    let mut sb = b.subscribe("orders/*/created").await.unwrap();
    let p1 = broker.client("pub-1").await;
    let p2 = broker.client("pub-2").await;
    let eu = p1.publisher("orders/eu/created", Ordering::Fifo).unwrap();
    let us = p2
        .publisher("orders/us/created", Publish::total().safe())
        .unwrap();
    const N: u64 = 2000;
    let send1 = async {
        for i in 0..N {
            eu.publish(format!("eu {i}")).await.unwrap();
        }
    };
    let send2 = async {
        for i in 0..N {
            us.publish(format!("us {i}")).await.unwrap();
        }
    };
    tokio::join!(send1, send2);
    p1.flush().await.unwrap();
    p2.flush().await.unwrap();
    for sub in [&mut sa, &mut sb] {
        let mut next_seq = std::collections::HashMap::new();
        for _ in 0..2 * N {
            let m = next(sub).await;
            let expected = next_seq.entry(m.publisher).or_insert(1u64);
            assert_eq!(m.seq, *expected, "fifo per publisher");
            *expected += 1;
            let (region, n) = m
                .topic
                .split('/')
                .nth(1)
                .zip(
                    std::str::from_utf8(&m.payload)
                        .unwrap()
                        .split(' ')
                        .nth(1)
                        .map(|n| n.parse::<u64>().unwrap()),
                )
                .unwrap();
            assert_eq!(n + 1, m.seq, "payload {region} matches its sequence number");
            if m.publisher == p2.session_id() {
                assert_eq!((m.ordering, m.safe), (Ordering::Total, true));
            } else {
                assert_eq!(m.publisher, p1.session_id());
                assert_eq!((m.ordering, m.safe), (Ordering::Fifo, false));
            }
        }
        assert_eq!(next_seq.len(), 2);
    }
}

#[tokio::test]
async fn glob_subscriptions_receive_only_what_they_match() {
    let broker = BrokerProc::start(&[]);
    let c = broker.client("globs").await;
    let patterns = ["a/*", "a/**", "{x,y}/z", "a/[bc]/d", "**"];
    let mut subs = Vec::new();
    for p in patterns {
        subs.push(c.subscribe(p).await.unwrap());
    }
    let topics = ["a/b", "a/b/d", "a/c/d", "x/z", "y/z", "w/z", "a"];
    let publisher = broker.client("pub").await;
    for t in topics {
        publisher.publish(t, t.to_string()).await.unwrap();
    }
    // A sentinel every subscription matches ends each one's expected list.
    let sentinels = ["a/end", "a/x/end", "x/z", "a/b/d", "end"];
    publisher.flush().await.unwrap();
    let expected: [&[&str]; 5] = [
        &["a/b"],
        &["a/b", "a/b/d", "a/c/d"],
        &["x/z", "y/z"],
        &["a/b/d", "a/c/d"],
        &topics,
    ];
    for ((sub, want), sentinel) in subs.iter_mut().zip(expected).zip(sentinels) {
        publisher.publish(sentinel, "sentinel").await.unwrap();
        publisher.flush().await.unwrap();
        let mut got = Vec::new();
        loop {
            let m = next(sub).await;
            if m.payload == "sentinel" {
                break;
            }
            got.push(m.topic);
        }
        assert_eq!(got, want, "pattern {}", sub.pattern());
    }
}

#[tokio::test]
async fn subscribe_returns_only_once_installed_and_unsubscribe_stops_delivery() {
    let broker = BrokerProc::start(&[]);
    let c = broker.client("sub").await;
    let publisher = broker.client("pub").await;
    let sub = c.subscribe("t/1").await.unwrap();
    let mut other = c.subscribe("t/2").await.unwrap();
    // Published right after subscribe returned: must arrive.
    publisher.publish("t/1", "first").await.unwrap();
    publisher.flush().await.unwrap();
    let mut sub = sub;
    assert_eq!(next(&mut sub).await.payload, "first");
    sub.unsubscribe().await.unwrap();
    publisher.publish("t/1", "after").await.unwrap();
    publisher.publish("t/2", "marker").await.unwrap();
    publisher.flush().await.unwrap();
    // The t/2 marker arrives; nothing for the removed t/1 subscription was routed.
    assert_eq!(next(&mut other).await.payload, "marker");
}

#[tokio::test]
async fn sigterm_shuts_down_cleanly_and_clients_learn_why() {
    let mut broker = BrokerProc::start(&[]);
    let c = broker.client("watcher").await;
    let mut sub = c.subscribe("x").await.unwrap();
    let status = broker.terminate();
    assert!(status.success(), "broker exit status {status:?}");
    let end = tokio::time::timeout(GUARD, sub.next()).await.unwrap();
    match end {
        Some(Err(e)) => assert!(e.to_string().contains("shutting down"), "{e}"),
        other => panic!("expected the shutdown reason, got {other:?}"),
    }
}

#[tokio::test]
async fn requests_gather_the_answers_of_the_subscribers() {
    use meshcast_client::Gather;
    let broker = BrokerProc::start(&[]);
    let mut responders = Vec::new();
    for name in ["alpha", "beta"] {
        let c = broker.client(name).await;
        let mut s = c.subscribe("svc/time").await.unwrap();
        responders.push(tokio::spawn(async move {
            while let Some(Ok(m)) = s.next().await {
                assert!(m.reply_to.is_some());
                c.reply(
                    &m,
                    format!("{name} says {}", String::from_utf8_lossy(&m.payload)),
                )
                .await
                .unwrap();
            }
        }));
    }
    let asker = broker.client("asker").await;
    let mut all = asker
        .request("svc/time", "now?", Gather::Count(2), GUARD)
        .await
        .unwrap()
        .into_iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        .collect::<Vec<_>>();
    all.sort();
    assert_eq!(all, ["alpha says now?", "beta says now?"]);
    let first = asker
        .request("svc/time", "again", Gather::First, GUARD)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert!(first[0].payload.ends_with(b"says again"));
    // Nobody listens on this topic: the request ends at its timeout with
    // a typed error (client_connect.rs checks it further).
    let none = asker
        .request(
            "svc/nobody",
            "hello?",
            Gather::First,
            std::time::Duration::from_millis(200),
        )
        .await;
    assert!(
        matches!(none, Err(meshcast_client::ClientError::NoResponders { .. })),
        "{none:?}"
    );
    for r in responders {
        r.abort();
    }
}
