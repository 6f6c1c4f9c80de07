//! A subscriber that cannot keep up is removed with a clear reason, never
//! buffered without bound and never silently skipped; everyone else carries on.

mod common;

use bytes::BytesMut;
use common::{BrokerProc, GUARD, RawSession};
use futures_util::StreamExt;
use meshcast_client::{ClientError, Ordering};
use meshcast_transport::FrameReader;
use meshcast_transport::client_proto::{
    self, ClientHello, ClientMsg, CloseCode, PROTOCOL_VERSION, ServerMsg,
};

#[tokio::test]
async fn a_session_that_stops_reading_is_disconnected_with_the_reason() {
    let broker = BrokerProc::start(&["limits.subscriber_queue=64"]);
    // A raw session that subscribes and then never reads again.
    let mut raw = RawSession::open(&broker).await;
    let hello = client_proto::encode_hello(
        PROTOCOL_VERSION,
        &ClientHello {
            name: "stuck".into(),
            ..ClientHello::default()
        },
    )
    .unwrap();
    raw.send.write_all(&hello).await.unwrap();
    let mut buf = BytesMut::new();
    client_proto::encode_client(
        &ClientMsg::Subscribe {
            id: 1,
            pattern: "flood".into(),
        },
        &mut buf,
    )
    .unwrap();
    raw.send.write_all(&buf).await.unwrap();
    let recv = raw.recv.take().expect("the session's stream");
    let mut frames = FrameReader::new(recv, 1 << 20);
    client_proto::decode_welcome(&frames.read_one().await.unwrap().unwrap()).unwrap();
    let ack = client_proto::decode_server(&frames.read_one().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        ack,
        ServerMsg::Subscribed {
            id: 1,
            views: Vec::new()
        }
    );

    let fast = broker.client("fast").await;
    let mut fast_sub = fast.subscribe("flood").await.unwrap();
    let publisher = broker.client("pub").await;
    let p = publisher.publisher("flood", Ordering::Fifo).unwrap();
    let payload = bytes::Bytes::from(vec![7u8; 1024]);
    // Far more than the QUIC windows and the 64-message queue can absorb.
    // The publisher stays within 32 messages of the fast subscriber, so only
    // the session that never reads can overflow its queue.
    const N: u64 = 40_000;
    const WINDOW: u64 = 32;
    let mut received = 0u64;
    for sent in 1..=N {
        p.publish(payload.clone()).await.unwrap();
        if sent % WINDOW == 0 {
            while received < sent {
                match tokio::time::timeout(GUARD, fast_sub.next()).await {
                    Ok(Some(Ok(m))) => {
                        received += 1;
                        assert_eq!(m.seq, received);
                    }
                    other => panic!("fast subscriber failed after {received}: {other:?}"),
                }
            }
        }
    }
    let (code, reason) = raw.closed().await;
    assert_eq!(code, CloseCode::SlowConsumer.code() as u64);
    assert!(reason.contains("limits.subscriber_queue"), "{reason}");
    publisher.flush().await.unwrap();
}

#[tokio::test]
async fn a_subscription_the_application_does_not_read_ends_alone() {
    let broker = BrokerProc::start(&[]);
    let mut opts = broker.options("lazy");
    opts.subscription_buffer = 8;
    let lazy = meshcast_client::Client::connect(opts).await.unwrap();
    let mut burst = lazy.subscribe("burst").await.unwrap();
    let mut other = lazy.subscribe("other").await.unwrap();
    let publisher = broker.client("pub").await;
    for i in 0..100 {
        publisher.publish("burst", format!("{i}")).await.unwrap();
    }
    publisher.flush().await.unwrap();
    // The lazy client's control traffic is not stuck behind the full buffer.
    tokio::time::timeout(GUARD, lazy.flush())
        .await
        .unwrap()
        .unwrap();
    publisher.publish("other", "still here").await.unwrap();
    let m = tokio::time::timeout(GUARD, other.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.payload, "still here");
    // The burst subscription delivers what it buffered, then says why it ended.
    let mut got = 0;
    let err = loop {
        match tokio::time::timeout(GUARD, burst.next()).await.unwrap() {
            Some(Ok(m)) => {
                assert_eq!(m.payload, format!("{got}"));
                got += 1;
            }
            Some(Err(e)) => break e,
            None => panic!("ended without a reason"),
        }
    };
    assert_eq!(got, 8);
    assert!(
        matches!(err, ClientError::SlowSubscription { buffer: 8, .. }),
        "{err}"
    );
    assert!(burst.next().await.is_none());
}

#[tokio::test]
async fn dropping_a_client_or_a_pending_subscribe_frees_the_broker_session() {
    let broker = BrokerProc::start(&[]);
    let admin = broker.admin;
    let c = broker.client("dropped").await;
    let _s = c.subscribe("x/**").await.unwrap();
    let watcher = broker.client("watcher").await;
    // A subscribe whose caller gives up at once is taken back: polled once
    // (which sends it; the answer needs a round trip), then dropped. (A
    // zero timeout instead raced the broker's answer against the timer.)
    let cancelled = futures_util::FutureExt::now_or_never(watcher.subscribe("y/**"));
    assert!(cancelled.is_none(), "{cancelled:?}");
    drop(_s);
    drop(c);
    // Eventually the broker sees one session (the watcher) and no subscriptions.
    tokio::time::timeout(GUARD, async {
        loop {
            watcher.flush().await.unwrap();
            let status = common::status(admin).await;
            if status["core"]["sessions"] == 1 && status["core"]["subscriptions"] == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the dropped client's session or the cancelled subscription stayed");
}
