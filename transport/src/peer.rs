//! Broker-to-broker links: the peer handshake over a mutually authenticated
//! QUIC connection.
//!
//! Each link is one QUIC connection (ALPN [`ALPN_PEER`]) whose two ends both
//! present certificates signed by the cluster CA. The dialing broker opens
//! one bidirectional stream and sends its [`PeerHello`]; the accepting broker
//! checks the protocol version and that both run the same group map, then
//! answers with its own hello or a refusal naming both sides' values.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::framing::{FrameError, FrameReader};
use crate::handshake::{self, HandshakeError};

/// ALPN protocol name of broker-to-broker connections.
pub const ALPN_PEER: &[u8] = b"meshcast-peer";

/// Version of the peer protocol spoken by this build (3: heartbeats carry
/// lease stamps and echoes, data messages the publisher's own sequence
/// number, join requests what a restarted broker remembers).
pub const PEER_PROTOCOL_VERSION: u16 = 3;

/// Who a broker says it is when it links to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerHello {
    /// Stable broker id.
    pub broker: String,
    /// Incarnation: changes on every start, so a restarted broker is new.
    pub incarnation: u64,
    /// Site (data centre) label.
    pub site: String,
    /// Digest of the group map, mixed with that of `[auth]` and
    /// `[[permissions]]` when authentication is on; must be equal on every
    /// broker.
    pub group_map_digest: u64,
    /// Address other brokers dial to reach this one.
    pub peer_addr: String,
}

/// Errors while establishing a peer link.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The QUIC connection or stream could not be set up.
    #[error("peer link to {addr}: {detail}")]
    Connect {
        /// The remote address.
        addr: SocketAddr,
        /// What went wrong.
        detail: String,
    },
    /// The handshake failed (bad magic, version, malformed).
    #[error("peer handshake with {addr}: {source}")]
    Handshake {
        /// The remote address.
        addr: SocketAddr,
        /// The handshake error.
        source: HandshakeError,
    },
    /// The two brokers cannot form a mesh; the reason names both values.
    #[error("peer {addr} is incompatible: {reason}")]
    Incompatible {
        /// The remote address.
        addr: SocketAddr,
        /// Both sides' values.
        reason: String,
    },
    /// Reading the handshake failed.
    #[error("peer handshake with {addr}: {source}")]
    Frame {
        /// The remote address.
        addr: SocketAddr,
        /// The framing error.
        source: FrameError,
    },
}

/// Checks that `remote` may link with `local`; the error names both values.
pub fn compatibility(local: &PeerHello, remote: &PeerHello) -> Result<(), String> {
    if local.group_map_digest != remote.group_map_digest {
        return Err(format!(
            "configuration digest mismatch: broker {} has {:016x}, broker {} has {:016x} \
             (the [[groups]] rules, and with [auth] the users' names and roles, \
             auth.cert_name and the [[permissions]] rules, must be identical on every broker; \
             `meshcast status` shows group_map_digest and auth_digest separately)",
            local.broker, local.group_map_digest, remote.broker, remote.group_map_digest
        ));
    }
    if local.broker == remote.broker && local.incarnation == remote.incarnation {
        return Err(format!(
            "broker id {:?} (incarnation {}) is this broker itself: is {} in its own peer list?",
            local.broker, local.incarnation, remote.peer_addr
        ));
    }
    Ok(())
}

/// An established link: the remote's hello and the ordered stream to it.
pub struct PeerLink {
    /// What the remote broker said about itself.
    pub remote: PeerHello,
    /// The QUIC connection.
    pub conn: quinn::Connection,
    /// Our sending half of the link's stream.
    pub send: quinn::SendStream,
    /// Frames arriving from the remote.
    pub frames: FrameReader<quinn::RecvStream>,
}

impl std::fmt::Debug for PeerLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLink")
            .field("remote", &self.remote)
            .finish()
    }
}

/// Dials `addr`, sends our hello and waits for the answer.
pub async fn dial(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
    local: &PeerHello,
    max_frame: usize,
) -> Result<PeerLink, PeerError> {
    dial_with_version(
        endpoint,
        addr,
        server_name,
        local,
        max_frame,
        PEER_PROTOCOL_VERSION,
    )
    .await
}

/// [`dial`] announcing a chosen protocol version (tests use others).
pub async fn dial_with_version(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
    local: &PeerHello,
    max_frame: usize,
    version: u16,
) -> Result<PeerLink, PeerError> {
    let connect = |e: &dyn std::fmt::Display| PeerError::Connect {
        addr,
        detail: e.to_string(),
    };
    let conn = endpoint
        .connect(addr, server_name)
        .map_err(|e| connect(&e))?
        .await
        .map_err(|e| connect(&e))?;
    let (mut send, recv) = conn.open_bi().await.map_err(|e| connect(&e))?;
    let hello = handshake::encode_hello("peer hello", version, local).map_err(|e| {
        PeerError::Handshake {
            addr,
            source: e.into(),
        }
    })?;
    send.write_all(&hello).await.map_err(|e| connect(&e))?;
    let mut frames = FrameReader::new(recv, max_frame);
    let body = match frames.read_one().await {
        Ok(Some(b)) => b,
        Ok(None) => return Err(connect(&"stream closed during handshake")),
        Err(source) => {
            return Err(match conn.close_reason() {
                Some(reason) => connect(&reason),
                None => PeerError::Frame { addr, source },
            });
        }
    };
    let remote: PeerHello =
        match handshake::decode_answer("peer hello", PEER_PROTOCOL_VERSION, &body) {
            Ok(r) => r,
            Err(HandshakeError::Refused(reason)) => {
                return Err(PeerError::Incompatible { addr, reason });
            }
            Err(source) => return Err(PeerError::Handshake { addr, source }),
        };
    if let Err(reason) = compatibility(local, &remote) {
        conn.close(1u32.into(), reason.as_bytes());
        return Err(PeerError::Incompatible { addr, reason });
    }
    Ok(PeerLink {
        remote,
        conn,
        send,
        frames,
    })
}

/// Completes the accepting side: reads the hello, checks it, answers.
/// A refused peer is told why before the connection closes.
pub async fn accept(
    conn: quinn::Connection,
    local: &PeerHello,
    max_frame: usize,
) -> Result<PeerLink, PeerError> {
    accept_checked(conn, local, max_frame, |_, _| Ok(())).await
}

/// [`accept`] with one more check of the remote's hello (and its address)
/// by the caller, e.g. that no other live broker holds that id: an `Err`
/// is sent to the dialer as the refusal's reason (it gets
/// [`PeerError::Incompatible`] with it) and returned here the same way.
pub async fn accept_checked(
    conn: quinn::Connection,
    local: &PeerHello,
    max_frame: usize,
    check: impl FnOnce(&PeerHello, SocketAddr) -> Result<(), String>,
) -> Result<PeerLink, PeerError> {
    let addr = conn.remote_address();
    let connect = |e: &dyn std::fmt::Display| PeerError::Connect {
        addr,
        detail: e.to_string(),
    };
    let (mut send, recv) = conn.accept_bi().await.map_err(|e| connect(&e))?;
    let mut frames = FrameReader::new(recv, max_frame);
    let body = match frames.read_one().await {
        Ok(Some(b)) => b,
        Ok(None) => return Err(connect(&"stream closed during handshake")),
        Err(source) => return Err(PeerError::Frame { addr, source }),
    };
    let refuse = async |send: &mut quinn::SendStream, reason: &str| {
        if let Ok(frame) =
            handshake::encode_answer::<PeerHello>("peer hello", PEER_PROTOCOL_VERSION, Err(reason))
        {
            let _ = send.write_all(&frame).await;
            let _ = send.finish();
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(500), send.stopped()).await;
        }
        conn.close(1u32.into(), reason.as_bytes());
    };
    let remote: PeerHello =
        match handshake::decode_hello("peer hello", PEER_PROTOCOL_VERSION, &body) {
            Ok(r) => r,
            Err(source) => {
                refuse(&mut send, &source.to_string()).await;
                return Err(PeerError::Handshake { addr, source });
            }
        };
    if let Err(reason) = compatibility(local, &remote).and_then(|()| check(&remote, addr)) {
        refuse(&mut send, &reason).await;
        return Err(PeerError::Incompatible { addr, reason });
    }
    let answer =
        handshake::encode_answer("peer hello", PEER_PROTOCOL_VERSION, Ok(local)).map_err(|e| {
            PeerError::Handshake {
                addr,
                source: e.into(),
            }
        })?;
    send.write_all(&answer).await.map_err(|e| connect(&e))?;
    Ok(PeerLink {
        remote,
        conn,
        send,
        frames,
    })
}
