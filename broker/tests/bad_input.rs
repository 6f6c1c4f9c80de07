//! Bad input gets a specific error naming what was wrong, and the broker
//! keeps serving everyone else.

mod common;

use bytes::{BufMut, BytesMut};
use common::{BrokerProc, Bystander, GUARD, RawSession, read_msg, run_cli};
use meshcast_client::{Client, ClientError, RejectCode};
use meshcast_transport::client_proto::{
    ClientMsg, CloseCode, PROTOCOL_VERSION, Publish, ServerMsg,
};

#[tokio::test]
async fn invalid_topic_is_refused_by_client_and_by_broker() {
    let broker = BrokerProc::start(&[]);
    let mut bystander = Bystander::new(&broker).await;
    let c = broker.client("bad-topic").await;
    let err = c.publish("a//b", "x").await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidTopic(_)), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    let err = c.publish("a/*", "x").await.unwrap_err();
    assert!(err.to_string().contains('*'), "{err}");

    // A client that skips local checks is refused by the broker, session kept.
    let mut raw = RawSession::open(&broker).await;
    let mut frames = raw.handshake().await;
    raw.send_msg(&ClientMsg::Publish(Publish {
        topic: "orders/*/x".into(),
        ordering: Default::default(),
        safe: false,
        payload: "x".into(),
        reply_to: None,
        confirm: None,
    }))
    .await;
    match read_msg(&mut frames).await {
        ServerMsg::Rejected {
            id: None,
            code: RejectCode::InvalidTopic,
            reason,
        } => {
            assert!(
                reason.contains('*') && reason.contains("orders/*/x"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    raw.send_msg(&ClientMsg::Ping { id: 5 }).await;
    assert_eq!(read_msg(&mut frames).await, ServerMsg::Pong { id: 5 });
    bystander.still_works().await;
}

#[tokio::test]
async fn invalid_pattern_is_refused_with_its_reason() {
    let broker = BrokerProc::start(&[]);
    let mut bystander = Bystander::new(&broker).await;
    let c = broker.client("bad-pattern").await;
    let err = c.subscribe("a/{b,c").await.unwrap_err();
    assert!(matches!(err, ClientError::InvalidPattern(_)), "{err}");
    let mut raw = RawSession::open(&broker).await;
    let mut frames = raw.handshake().await;
    raw.send_msg(&ClientMsg::Subscribe {
        id: 3,
        pattern: "a/x**".into(),
    })
    .await;
    match read_msg(&mut frames).await {
        ServerMsg::Rejected {
            id: Some(3),
            code: RejectCode::InvalidPattern,
            reason,
        } => {
            assert!(reason.contains("x**"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    bystander.still_works().await;
}

#[tokio::test]
async fn garbage_bytes_close_only_that_connection() {
    let broker = BrokerProc::start(&[]);
    let mut bystander = Bystander::new(&broker).await;
    // Garbage instead of a handshake.
    let mut raw = RawSession::open(&broker).await;
    raw.send
        .write_all(b"\x10\x00\x00\x00GET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (code, reason) = raw.closed().await;
    assert_eq!(code, CloseCode::ProtocolError.code() as u64);
    assert!(reason.contains("magic"), "{reason}");
    bystander.still_works().await;

    // Garbage after a good handshake.
    let mut raw = RawSession::open(&broker).await;
    let _frames = raw.handshake().await;
    let mut junk = BytesMut::new();
    junk.put_u32_le(6);
    junk.put_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    raw.send.write_all(&junk).await.unwrap();
    let (code, reason) = raw.closed().await;
    assert_eq!(code, CloseCode::ProtocolError.code() as u64);
    assert!(reason.contains("malformed client message"), "{reason}");
    bystander.still_works().await;
}

#[tokio::test]
async fn oversize_frame_closes_that_connection_naming_the_limit() {
    let broker = BrokerProc::start(&[
        "limits.max_frame_bytes=131072",
        "limits.max_payload_bytes=1024",
    ]);
    let mut bystander = Bystander::new(&broker).await;
    let mut raw = RawSession::open(&broker).await;
    let _frames = raw.handshake().await;
    let mut big = BytesMut::new();
    big.put_u32_le(1 << 20);
    big.put_slice(&[0u8; 1024]);
    raw.send.write_all(&big).await.unwrap();
    let (code, reason) = raw.closed().await;
    assert_eq!(code, CloseCode::FrameTooLarge.code() as u64);
    assert!(
        reason.contains("1048576") && reason.contains("131072"),
        "{reason}"
    );

    // An oversize payload inside a legal frame is refused, not fatal.
    let c = broker.client("big-payload").await;
    let err = c.publish("a/b", vec![0u8; 2000]).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::PayloadTooLarge {
                size: 2000,
                max: 1024
            }
        ),
        "{err}"
    );
    let mut raw = RawSession::open(&broker).await;
    let mut frames = raw.handshake().await;
    raw.send_msg(&ClientMsg::Publish(Publish {
        topic: "a/b".into(),
        ordering: Default::default(),
        safe: false,
        payload: vec![0u8; 2000].into(),
        reply_to: None,
        confirm: None,
    }))
    .await;
    match read_msg(&mut frames).await {
        ServerMsg::Rejected {
            code: RejectCode::PayloadTooLarge,
            reason,
            ..
        } => {
            assert!(reason.contains("limits.max_payload_bytes"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    bystander.still_works().await;
}

#[tokio::test]
async fn wrong_protocol_version_is_refused_naming_both_versions() {
    let broker = BrokerProc::start(&[]);
    let mut bystander = Bystander::new(&broker).await;
    let mut opts = broker.options("future-client");
    opts.protocol_version = 42;
    let err = Client::connect(opts).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ClientError::Handshake(_)), "{text}");
    assert!(text.contains("unsupported protocol version 42"), "{text}");
    assert!(
        text.contains(&format!("version {PROTOCOL_VERSION}")),
        "{text}"
    );
    bystander.still_works().await;
}

#[test]
fn unknown_config_key_stops_the_broker_naming_the_key() {
    let dir = common::TempDir::new("badcfg");
    let file = dir.path().join("meshcast.toml");
    std::fs::write(&file, "[limits]\nsubscriber_queu = 10\n").unwrap();
    let (status, _out, err) = run_cli(
        &[
            "broker",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    assert!(!status.success());
    assert!(err.contains("limits.subscriber_queu"), "{err}");
    assert!(
        err.contains("subscriber_queue"),
        "suggests the right key: {err}"
    );
    let (status, _out, err) = run_cli(&["broker", "--set", "limits.subscriber_queue=0"], None);
    assert!(!status.success());
    assert!(
        err.contains("limits.subscriber_queue") && err.contains('0'),
        "{err}"
    );
}

#[tokio::test]
async fn a_client_that_finishes_its_stream_still_gets_its_answers() {
    let broker = BrokerProc::start(&[]);
    let mut raw = RawSession::open(&broker).await;
    let mut frames = raw.handshake().await;
    raw.send_msg(&ClientMsg::Subscribe {
        id: 1,
        pattern: "half/**".into(),
    })
    .await;
    raw.send_msg(&ClientMsg::Publish(Publish {
        topic: "half/x".into(),
        ordering: Default::default(),
        safe: false,
        payload: "last words".into(),
        reply_to: None,
        confirm: None,
    }))
    .await;
    raw.send_msg(&ClientMsg::Ping { id: 2 }).await;
    raw.send.finish().unwrap();
    assert_eq!(
        read_msg(&mut frames).await,
        ServerMsg::Subscribed {
            id: 1,
            views: Vec::new()
        }
    );
    match read_msg(&mut frames).await {
        ServerMsg::Deliver(d) => assert_eq!(d.payload, "last words"),
        other => panic!("{other:?}"),
    }
    assert_eq!(read_msg(&mut frames).await, ServerMsg::Pong { id: 2 });
    // Then the broker finishes its side too and closes normally.
    let end = tokio::time::timeout(GUARD, frames.read_one())
        .await
        .unwrap();
    assert!(matches!(end, Ok(None)), "{end:?}");
    let (code, _) = raw.closed().await;
    assert_eq!(code, CloseCode::Normal.code() as u64);
}
