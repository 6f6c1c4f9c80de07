//! One client connection: handshake, a reader feeding the core, a writer
//! draining the session's outbound queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use meshcast_transport::client_proto::{self, CloseCode, HandshakeError, Welcome};
use meshcast_transport::{FrameError, FrameReader};
use tokio::sync::mpsc;

use super::Shared;
use super::core::{CoreMsg, SessionOut};

/// Longest close reason sent to a peer (QUIC carries it in one packet).
const MAX_REASON: usize = 256;

fn close(conn: &quinn::Connection, code: CloseCode, reason: &str) {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    conn.close(code.code().into(), &reason.as_bytes()[..end]);
}

/// Serves one incoming connection until it ends.
pub(crate) async fn serve(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "connection attempt failed");
            return;
        }
    };
    let remote = conn.remote_address();
    let limits = &shared.config.limits;
    let handshake = tokio::time::timeout(limits.handshake_timeout(), async {
        let (send, recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let mut frames = FrameReader::new(recv, limits.max_frame_bytes as usize);
        match frames.read_one().await {
            Ok(Some(body)) => Ok((send, frames, client_proto::decode_hello(&body))),
            Ok(None) => Err("stream ended before the handshake".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let (mut send, frames, hello) = match handshake {
        Err(_) => {
            tracing::info!(%remote, "handshake timed out");
            close(
                &conn,
                CloseCode::HandshakeTimeout,
                "no handshake within limits.handshake_timeout_ms",
            );
            return;
        }
        Ok(Err(reason)) => {
            tracing::info!(%remote, %reason, "handshake failed");
            close(&conn, CloseCode::ProtocolError, &reason);
            return;
        }
        Ok(Ok(parts)) => parts,
    };
    let hello = match hello {
        Ok(h) => h,
        Err(e) => {
            let code = match e {
                HandshakeError::UnsupportedVersion { .. } => CloseCode::UnsupportedVersion,
                _ => CloseCode::ProtocolError,
            };
            let reason = e.to_string();
            tracing::info!(%remote, %reason, "refusing client");
            refuse(&conn, &mut send, code, &reason).await;
            return;
        }
    };
    let active = shared.sessions.fetch_add(1, Ordering::AcqRel) + 1;
    let _guard = SessionCount(shared.clone());
    if active > limits.max_sessions {
        let reason = format!(
            "broker has reached limits.max_sessions = {}",
            limits.max_sessions
        );
        refuse(&conn, &mut send, CloseCode::TooManySessions, &reason).await;
        return;
    }
    let session = shared.next_session.fetch_add(1, Ordering::Relaxed);
    let welcome = Welcome {
        session,
        broker: shared.broker_id.clone(),
        site: shared.config.broker.site.clone(),
        max_payload: limits.max_payload_bytes,
    };
    let Ok(frame) = client_proto::encode_welcome(Ok(&welcome)) else {
        return;
    };
    if send.write_all(&frame).await.is_err() {
        return;
    }
    tracing::info!(session, %remote, name = %hello.name, "client session opened");
    metrics::gauge!("meshcast_sessions").increment(1.0);

    let (tx, rx) = mpsc::channel(limits.subscriber_queue);
    let queued = Arc::new(AtomicUsize::new(0));
    let out = SessionOut {
        tx,
        queued: queued.clone(),
        conn: conn.clone(),
    };
    if shared
        .core
        .send(CoreMsg::Open { session, out })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(write_loop(send, rx, queued));
    let reason = read_loop(&shared, &conn, session, frames).await;
    let _ = shared.core.send(CoreMsg::Close { session }).await;
    writer.abort();
    metrics::gauge!("meshcast_sessions").decrement(1.0);
    tracing::info!(session, %remote, %reason, "client session closed");
}

struct SessionCount(Arc<Shared>);

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    code: CloseCode,
    reason: &str,
) {
    if let Ok(frame) = client_proto::encode_welcome(Err(reason)) {
        let _ = send.write_all(&frame).await;
        let _ = send.finish();
        // Give the refusal a moment to reach the client before closing.
        let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
    }
    close(conn, code, reason);
}

/// Reads requests and forwards them to the core; returns why it stopped.
async fn read_loop(
    shared: &Shared,
    conn: &quinn::Connection,
    session: u64,
    mut frames: FrameReader<quinn::RecvStream>,
) -> String {
    let mut bodies: Vec<Bytes> = Vec::with_capacity(256);
    loop {
        bodies.clear();
        match frames.read_batch(&mut bodies).await {
            Ok(true) => {}
            Ok(false) => return "client finished its stream".into(),
            Err(FrameError::Oversize { len, max }) => {
                let reason = FrameError::Oversize { len, max }.to_string();
                close(conn, CloseCode::FrameTooLarge, &reason);
                return reason;
            }
            Err(e) => {
                return match conn.close_reason() {
                    Some(c) => c.to_string(),
                    None => {
                        let reason = e.to_string();
                        close(conn, CloseCode::ProtocolError, &reason);
                        reason
                    }
                };
            }
        }
        let mut msgs = Vec::with_capacity(bodies.len());
        for body in &bodies {
            match client_proto::decode_client(body) {
                Ok(m) => msgs.push(m),
                Err(e) => {
                    // Deliver what came before the bad frame, then close.
                    if !msgs.is_empty() {
                        let _ = shared.core.send(CoreMsg::Batch { session, msgs }).await;
                    }
                    let reason = e.to_string();
                    close(conn, CloseCode::ProtocolError, &reason);
                    return reason;
                }
            }
        }
        metrics::counter!("meshcast_client_frames_total").increment(msgs.len() as u64);
        if shared
            .core
            .send(CoreMsg::Batch { session, msgs })
            .await
            .is_err()
        {
            return "broker shutting down".into();
        }
    }
}

/// Writes queued frames in batches until the queue closes or the stream fails.
///
/// Frames are copied into one contiguous buffer per batch: quinn handles one
/// large write far better than thousands of tiny chunks.
async fn write_loop(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Vec<Bytes>>,
    queued: Arc<AtomicUsize>,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    while let Some(batch) = rx.recv().await {
        let mut n = append(&mut buf, batch);
        while buf.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => n += append(&mut buf, more),
                Err(_) => break,
            }
        }
        if send.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
        queued.fetch_sub(n, Ordering::AcqRel);
    }
}

fn append(buf: &mut Vec<u8>, frames: Vec<Bytes>) -> usize {
    for f in &frames {
        buf.extend_from_slice(f);
    }
    frames.len()
}
