//! The fault-injecting relay itself, exercised with a real broker and client
//! (the mesh tests use it between brokers).

mod common;

use std::time::Duration;

use common::relay::{Faults, Relay};
use common::{BrokerProc, GUARD};
use futures_util::StreamExt;
use meshcast_client::{Client, ClientError};

#[tokio::test]
async fn traffic_survives_loss_and_delay_and_a_cut_ends_the_session() {
    let broker = BrokerProc::start(&[]);
    let relay = Relay::start(broker.addr).await;
    let mut opts = broker.options("through-relay");
    opts.servers = vec![relay.addr.into()];
    opts.idle_timeout = Duration::from_secs(2);
    let client = Client::connect(opts).await.unwrap();
    let mut sub = client.subscribe("r/**").await.unwrap();

    // 10% loss and 5 ms delay: QUIC retransmits, nothing is lost or reordered.
    relay.set(Faults {
        cut: false,
        loss: 0.1,
        delay: Duration::from_millis(5),
    });
    const N: u64 = 200;
    for i in 0..N {
        client.publish("r/x", format!("{i}")).await.unwrap();
    }
    for i in 0..N {
        let m = tokio::time::timeout(GUARD, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m.payload, format!("{i}"));
    }

    // A cut: the client's idle timeout ends the session with a reason.
    relay.cut(true);
    let end = tokio::time::timeout(GUARD, sub.next())
        .await
        .expect("cut never noticed");
    match end {
        Some(Err(ClientError::Closed { reason, .. })) => {
            assert!(reason.contains("timed out"), "{reason}")
        }
        other => panic!("expected the session to end, got {other:?}"),
    }
}
