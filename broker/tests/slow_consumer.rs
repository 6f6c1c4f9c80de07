//! A subscriber that cannot keep up is disconnected with a clear reason,
//! and the publisher and other subscribers carry on.

mod common;

use common::{BrokerProc, GUARD};
use futures_util::StreamExt;
use meshcast_client::{ClientError, Ordering};
use meshcast_transport::client_proto::CloseCode;

#[tokio::test]
async fn slow_subscriber_is_disconnected_with_reason_and_others_continue() {
    let broker = BrokerProc::start(&["limits.subscriber_queue=64"]);
    let mut slow_opts = broker.options("slow");
    slow_opts.subscription_buffer = 1;
    let slow = meshcast_client::Client::connect(slow_opts).await.unwrap();
    let mut slow_sub = slow.subscribe("flood").await.unwrap();
    let fast = broker.client("fast").await;
    let mut fast_sub = fast.subscribe("flood").await.unwrap();
    let publisher = broker.client("pub").await;
    let p = publisher.publisher("flood", Ordering::Fifo, false).unwrap();
    let payload = bytes::Bytes::from(vec![7u8; 1024]);
    // Far more than the QUIC windows and the 64-message queue can absorb.
    // The publisher stays within 32 messages of the fast subscriber, so only
    // the subscriber that never reads can overflow its queue.
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
    assert_eq!(received, N);
    // The slow one gets whatever was queued, then the reason.
    let reason = loop {
        match tokio::time::timeout(GUARD, slow_sub.next())
            .await
            .expect("no close")
        {
            Some(Ok(_)) => continue,
            Some(Err(e)) => break e,
            None => panic!("stream ended without a reason"),
        }
    };
    match reason {
        ClientError::Closed { code, reason } => {
            assert_eq!(code, Some(CloseCode::SlowConsumer));
            assert!(reason.contains("limits.subscriber_queue"), "{reason}");
        }
        other => panic!("{other}"),
    }
}
