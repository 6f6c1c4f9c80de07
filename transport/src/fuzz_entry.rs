//! Entry points of the fuzz targets in `transport/fuzz/` (cargo-fuzz),
//! shared with the replay tests below, which feed every file of the
//! targets' corpora (`transport/fuzz/corpus/<target>/`) through the same
//! functions in `cargo test`. Built with the `fuzzing` feature (the fuzz
//! crate enables it) and in this crate's tests.

use bytes::{Bytes, BytesMut};

use crate::client_proto::{
    self, ClientHello, ClientMsg, GroupDelivery, GroupViewInfo, Ordering, Publish, RejectCode,
    ServerMsg, Welcome, decode_client, decode_server, encode_client, encode_server,
};
use crate::handshake;
use crate::peer::{PEER_PROTOCOL_VERSION, PeerHello};

/// `client_msg`: `data` as a client message body. Decoding never panics,
/// and whatever decodes re-encodes to a body that decodes to the same
/// message.
pub fn client_msg(data: &[u8]) {
    if let Ok(msg) = decode_client(data) {
        let mut buf = BytesMut::new();
        encode_client(&msg, &mut buf).expect("a decoded message re-encodes");
        assert_eq!(decode_client(&buf[4..]).expect("round trip"), msg);
    }
}

/// `server_msg`: `data` as a broker message body; as [`client_msg`].
pub fn server_msg(data: &[u8]) {
    if let Ok(msg) = decode_server(data) {
        let frame = encode_server(&msg).expect("a decoded message re-encodes");
        assert_eq!(decode_server(&frame[4..]).expect("round trip"), msg);
    }
}

/// `handshake`: `data` as the first frame of a client or peer stream, in
/// each direction. Decoding never panics.
pub fn handshake(data: &[u8]) {
    let _ = client_proto::decode_hello(data);
    let _ = client_proto::decode_welcome(data);
    let _ = handshake::decode_hello::<PeerHello>("peer hello", PEER_PROTOCOL_VERSION, data);
    let _ = handshake::decode_answer::<PeerHello>("peer hello", PEER_PROTOCOL_VERSION, data);
}

/// Seed bodies for `client_msg`: one of each message, as the client encodes them.
pub fn client_msg_seeds() -> Vec<Vec<u8>> {
    let publish = |confirm: Option<u64>, reply_to: Option<&str>| {
        ClientMsg::Publish(Publish {
            topic: "orders/eu/created".into(),
            ordering: Ordering::Total,
            safe: confirm.is_some(),
            payload: Bytes::from_static(b"order 1"),
            reply_to: reply_to.map(String::from),
            confirm,
        })
    };
    let msgs = vec![
        ClientMsg::Subscribe {
            id: 1,
            pattern: "orders/**".into(),
        },
        ClientMsg::Subscribe {
            id: u64::MAX,
            pattern: "a/{b,c}/[de]?/*".into(),
        },
        ClientMsg::Unsubscribe { id: 1 },
        publish(None, None),
        publish(Some(7), None),
        publish(None, Some("_inbox/1")),
        ClientMsg::Ping { id: 300 },
        ClientMsg::Join {
            id: 2,
            group: "chat".into(),
            state: true,
        },
        ClientMsg::StateReply {
            token: 9,
            data: Bytes::from_static(b"checkpoint"),
        },
        ClientMsg::Leave {
            id: 3,
            group: "chat".into(),
        },
        ClientMsg::Multicast {
            group: "chat".into(),
            ordering: Ordering::Causal,
            safe: true,
            payload: Bytes::from_static(b"hello"),
            confirm: Some(4),
        },
        ClientMsg::Tap {
            id: 5,
            pattern: "**".into(),
        },
    ];
    msgs.iter()
        .map(|m| {
            let mut buf = BytesMut::new();
            encode_client(m, &mut buf).expect("encodes");
            buf[4..].to_vec()
        })
        .collect()
}

/// Seed bodies for `server_msg`: one of each message, as the broker encodes them.
pub fn server_msg_seeds() -> Vec<Vec<u8>> {
    let view = GroupViewInfo {
        group: "chat".into(),
        view: "v3@b1".into(),
        members: vec!["b1/s1".into(), "b2#1/s4".into()],
        rank: 1,
    };
    let mut msgs = vec![
        ServerMsg::Subscribed {
            id: 1,
            views: vec![view.clone()],
        },
        ServerMsg::Unsubscribed { id: 1 },
        ServerMsg::Pong { id: 2 },
        ServerMsg::Deliver(client_proto::Delivery {
            topic: "orders/eu".into(),
            publisher: 17,
            seq: 3,
            ordering: Ordering::Fifo,
            safe: false,
            payload: Bytes::from_static(b"order"),
            reply_to: Some("_inbox/x".into()),
        }),
        ServerMsg::Joined {
            id: 4,
            view: view.clone(),
        },
        ServerMsg::Left { id: 4 },
        ServerMsg::GroupView(view),
        ServerMsg::GroupMessage(GroupDelivery {
            group: "chat".into(),
            publisher: 5,
            seq: 6,
            ordering: Ordering::Total,
            safe: true,
            payload: Bytes::from_static(b"hi"),
        }),
        ServerMsg::StateRequest {
            group: "chat".into(),
            token: 8,
        },
        ServerMsg::MeshState { blocked: true },
        ServerMsg::Rejoined {
            incarnation: 2,
            publisher: 99,
            member: "b1#1/s2".into(),
        },
        ServerMsg::Expelled {
            group: "chat".into(),
            reason: "slow".into(),
        },
        ServerMsg::State {
            group: "chat".into(),
            data: Some(Bytes::from_static(b"state")),
        },
        ServerMsg::State {
            group: "chat".into(),
            data: None,
        },
        ServerMsg::Confirmed {
            id: 10,
            seq: 11,
            stable: true,
        },
    ];
    for code in [
        RejectCode::InvalidTopic,
        RejectCode::LimitReached,
        RejectCode::Blocked,
        RejectCode::PermissionDenied,
        RejectCode::RateLimited,
    ] {
        msgs.push(ServerMsg::Rejected {
            id: Some(1),
            code,
            reason: format!("{code:?}"),
        });
    }
    msgs.iter()
        .map(|m| encode_server(m).expect("encodes")[4..].to_vec())
        .collect()
}

/// Seed bodies for `handshake`: hellos and answers of both protocols.
pub fn handshake_seeds() -> Vec<Vec<u8>> {
    let body = |frame: Bytes| frame[4..].to_vec();
    let hello = ClientHello {
        name: "meshcast-sub".into(),
        token: Some(client_proto::Secret::new("alice:s3cret-s3cret")),
    };
    let welcome = Welcome {
        session: 1,
        publisher: 1,
        broker: "b1".into(),
        site: "paris".into(),
        max_payload: 1 << 20,
        user: Some("alice".into()),
    };
    let peer = PeerHello {
        broker: "b1".into(),
        incarnation: 1_796_556_342,
        site: "local".into(),
        group_map_digest: 0x91ba_d1b5_3bcc_cf05,
        peer_addr: "127.0.0.1:4701".into(),
    };
    let v = client_proto::PROTOCOL_VERSION;
    vec![
        body(client_proto::encode_hello(v, &hello).expect("encodes")),
        body(client_proto::encode_hello(2, &hello).expect("encodes")),
        body(client_proto::encode_hello(42, &hello).expect("encodes")),
        body(client_proto::encode_welcome(Ok(&welcome)).expect("encodes")),
        body(client_proto::encode_welcome_for(2, Ok(&welcome)).expect("encodes")),
        body(
            client_proto::encode_refusal_for(
                v,
                client_proto::CloseCode::TooManyForUser,
                "user alice already has 1 sessions open",
            )
            .expect("encodes"),
        ),
        body(
            client_proto::encode_refusal_for(
                v,
                client_proto::CloseCode::Unauthenticated,
                "authentication failed",
            )
            .expect("encodes"),
        ),
        body(
            client_proto::encode_welcome(Err("broker has reached limits.max_sessions"))
                .expect("encodes"),
        ),
        body(handshake::encode_hello("peer hello", PEER_PROTOCOL_VERSION, &peer).expect("encodes")),
        body(
            handshake::encode_answer("peer hello", PEER_PROTOCOL_VERSION, Ok(&peer))
                .expect("encodes"),
        ),
        body(
            handshake::encode_answer::<PeerHello>(
                "peer hello",
                PEER_PROTOCOL_VERSION,
                Err("group map digests differ"),
            )
            .expect("encodes"),
        ),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        b"MCST".to_vec(),
        b"MCST\x02".to_vec(),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    type Entry = fn(&[u8]);
    type Seeds = fn() -> Vec<Vec<u8>>;

    const TARGETS: [(&str, Entry, Seeds); 3] = [
        ("client_msg", client_msg, client_msg_seeds),
        ("server_msg", server_msg, server_msg_seeds),
        ("handshake", handshake, handshake_seeds),
    ];

    fn corpus(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target)
    }

    /// Replays each target's corpus (seeds, minimized fuzzer finds and
    /// crashing inputs kept as regressions) through its entry point.
    #[test]
    fn replay_corpora() {
        for (target, entry, _) in TARGETS {
            let mut files: Vec<PathBuf> = std::fs::read_dir(corpus(target))
                .unwrap_or_else(|e| panic!("{target}: {e}"))
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            assert!(files.len() >= 10, "{target}: {} files", files.len());
            for f in files {
                let data = std::fs::read(&f).unwrap();
                let result = std::panic::catch_unwind(|| entry(&data));
                assert!(result.is_ok(), "corpus file {} panicked", f.display());
            }
        }
    }

    /// Every seed decodes (they are meaningful inputs, not noise).
    #[test]
    fn seeds_decode() {
        for s in client_msg_seeds() {
            decode_client(&s).unwrap();
        }
        for s in server_msg_seeds() {
            decode_server(&s).unwrap();
        }
    }

    /// Writes the seed corpora:
    /// `cargo test -p meshcast-transport --lib write_seed_corpora -- --ignored`.
    #[test]
    #[ignore = "writes transport/fuzz/corpus/*/seed-*"]
    fn write_seed_corpora() {
        for (target, _, seeds) in TARGETS {
            let dir = corpus(target);
            std::fs::create_dir_all(&dir).unwrap();
            for (i, s) in seeds().iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:03}")), s).unwrap();
            }
        }
    }
}
