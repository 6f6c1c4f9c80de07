//! One client connection: handshake, a reader feeding the core, a writer
//! draining the session's outbound queue.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use meshcast_transport::client_proto::{self, CloseCode, HandshakeError, Welcome};
use meshcast_transport::{FrameError, FrameReader};
use tokio::sync::{mpsc, watch};

use super::Shared;
use super::core::{CoreMsg, Queued, SessionOut};
use super::limits::{self, Identity, PublishRate};

/// Longest close reason sent to a peer (QUIC carries it in one packet).
const MAX_REASON: usize = 256;

/// Largest hello accepted (it only carries a client name).
const MAX_HELLO: usize = 4096;

/// Frames at least this large are written without copying them.
const ZERO_COPY_AT: usize = 16 * 1024;

/// Time between resetting a slow session's stream and closing its
/// connection, so the reset (which carries the close code) gets through.
const KILL_GRACE: Duration = Duration::from_millis(250);

fn close(conn: &quinn::Connection, code: CloseCode, reason: &str) {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    conn.close(code.code().into(), &reason.as_bytes()[..end]);
}

/// How the core ends a session: the first reason wins, and every task of
/// the session sees it.
#[derive(Debug)]
pub(crate) struct Kill {
    reason: OnceLock<(CloseCode, String)>,
    fired: watch::Sender<bool>,
}

impl Default for Kill {
    fn default() -> Self {
        Kill {
            reason: OnceLock::new(),
            fired: watch::Sender::new(false),
        }
    }
}

impl Kill {
    /// Asks the session to end with `code` and `reason`.
    pub(crate) fn fire(&self, code: CloseCode, reason: String) {
        if self.reason.set((code, reason)).is_ok() {
            self.fired.send_replace(true);
        }
    }

    fn reason(&self) -> Option<&(CloseCode, String)> {
        self.reason.get()
    }

    /// Resolves once the session has been killed.
    async fn fired(&self) {
        let mut rx = self.fired.subscribe();
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

/// Counts a connection from accept to end (handshakes included), so
/// `limits.max_sessions` bounds both.
struct SessionCount(Arc<Shared>);

impl Drop for SessionCount {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one incoming connection until it ends.
pub(crate) async fn serve(shared: Arc<Shared>, incoming: quinn::Incoming) {
    let active = shared.sessions.fetch_add(1, Ordering::AcqRel) + 1;
    let _count = SessionCount(shared.clone());
    let limits = &shared.config.limits;
    // One deadline for the QUIC handshake and the hello (slow-loris).
    let deadline = tokio::time::Instant::now() + limits.handshake_timeout();
    let address_slot = shared.connections.admit_address(incoming.remote_address());
    let conn = match tokio::time::timeout_at(deadline, incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "connection attempt failed");
            return;
        }
        Err(_) => {
            tracing::info!("QUIC handshake timed out (limits.handshake_timeout_ms)");
            return;
        }
    };
    let remote = conn.remote_address();
    let _address_slot = match address_slot {
        Ok(slot) => slot,
        Err(refused) => {
            super::telemetry::client_refused();
            tracing::info!(%remote, reason = %refused.reason, "refusing client");
            close(&conn, refused.code, &refused.reason);
            return;
        }
    };
    let handshake = tokio::time::timeout_at(deadline, async {
        let (send, recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let mut frames = FrameReader::new(recv, MAX_HELLO);
        match frames.read_one().await {
            Ok(Some(body)) => Ok((send, frames, client_proto::decode_hello_versioned(&body))),
            Ok(None) => Err("stream ended before the handshake".to_string()),
            Err(e) => Err(format!("handshake: {e}")),
        }
    })
    .await;
    let (mut send, mut frames, hello) = match handshake {
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
    let (version, hello) = match hello {
        Ok(h) => h,
        Err(e) => {
            let code = match e {
                HandshakeError::UnsupportedVersion { .. } => CloseCode::UnsupportedVersion,
                _ => CloseCode::ProtocolError,
            };
            let reason = e.to_string();
            tracing::info!(%remote, %reason, "refusing client");
            refuse(
                &conn,
                &mut send,
                client_proto::MIN_PROTOCOL_VERSION,
                code,
                &reason,
            )
            .await;
            return;
        }
    };
    if active > limits.max_sessions {
        let reason = format!(
            "broker has reached limits.max_sessions = {}",
            limits.max_sessions
        );
        refuse(
            &conn,
            &mut send,
            version,
            CloseCode::TooManySessions,
            &reason,
        )
        .await;
        return;
    }
    // Authentication, before anything else happens for this client: no
    // session, no core message, no group change for a refused one.
    let certs = super::auth::peer_certs(&conn);
    let verdict = tokio::time::timeout(
        limits.handshake_timeout(),
        shared
            .auth
            .authenticate(hello.token.as_ref(), certs.as_deref()),
    )
    .await;
    let principal = match verdict {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            let reason = e.to_string();
            let user = hello
                .token
                .as_ref()
                .and_then(|t| shared.auth.known_user(t))
                .unwrap_or("");
            tracing::info!(%remote, name = %hello.name, user, %reason, "client refused");
            super::telemetry::auth_failed();
            refuse(
                &conn,
                &mut send,
                version,
                CloseCode::Unauthenticated,
                &reason,
            )
            .await;
            return;
        }
        Err(_) => {
            let reason = "authentication failed: the credentials could not be verified within \
                          limits.handshake_timeout_ms (the broker is busy verifying others)";
            tracing::info!(%remote, name = %hello.name, "client refused: verification timed out");
            super::telemetry::auth_failed();
            refuse(
                &conn,
                &mut send,
                version,
                CloseCode::Unauthenticated,
                reason,
            )
            .await;
            return;
        }
    };
    let grants = principal.as_ref().map(|p| {
        Arc::new(match &shared.policy {
            Some(policy) => policy.grants(&p.user, &p.roles),
            None => crate::permissions::Policy::new(&[]).grants(&p.user, &p.roles),
        })
    });
    let user = principal.as_ref().map(|p| p.user.clone());
    // `limits.max_connections_per_user` counts the authenticated user (its
    // source address without `[auth]`), so only once authentication has
    // succeeded: a client cannot use up another user's sessions by
    // claiming its name.
    let identity = match &user {
        Some(name) => Identity::user(name),
        None => Identity::anonymous(remote),
    };
    let _user_slot = match shared.connections.admit_user(&identity) {
        Ok(slot) => slot,
        Err(refused) => {
            tracing::info!(%remote, name = %hello.name, reason = %refused.reason, "refusing client");
            refuse(&conn, &mut send, version, refused.code, &refused.reason).await;
            return;
        }
    };
    frames.set_max(limits.max_frame_bytes as usize);
    let session = shared.next_session.fetch_add(1, Ordering::Relaxed);
    // Opened at the core first: it gives the publisher id for the welcome
    // at the same point of its order where the session starts hearing of
    // rejoins (so the id in the welcome is never stale unannounced). What
    // the core queues meanwhile is written after the welcome: the writer
    // starts after it.
    let (tx, rx) = mpsc::channel(limits.subscriber_queue);
    let queued = Arc::new(Queued::default());
    let kill = Arc::new(Kill::default());
    let out = SessionOut {
        tx,
        queued: queued.clone(),
        kill: kill.clone(),
    };
    let (publisher_tx, publisher_rx) = tokio::sync::oneshot::channel();
    let open = CoreMsg::Open {
        session,
        out,
        publisher: publisher_tx,
        grants,
    };
    if shared.core.send(open).await.is_err() {
        return;
    }
    let welcome = match publisher_rx.await {
        Ok(publisher) => Welcome {
            session,
            publisher,
            broker: shared.broker_id.clone(),
            site: shared.config.broker.site.clone(),
            max_payload: limits.max_payload_bytes,
            user: user.clone(),
        },
        Err(_) => return,
    };
    let written = match client_proto::encode_welcome_for(version, Ok(&welcome)) {
        Ok(frame) => send.write_all(&frame).await.is_ok(),
        Err(_) => false,
    };
    if !written {
        let _ = shared.core.send(CoreMsg::Close { session }).await;
        return;
    }
    let label = format!("{}/s{session}", shared.broker_id);
    shared.names.session_opened(session, &hello.name);
    match &principal {
        Some(p) => tracing::info!(
            session = %label, %remote, name = %hello.name, user = %p.user, auth = p.method.name(),
            "client session opened"
        ),
        None => {
            tracing::info!(session = %label, %remote, name = %hello.name, "client session opened")
        }
    }
    super::telemetry::client_connected();

    let writer = tokio::spawn(write_loop(send, rx, queued, kill.clone(), conn.clone()));
    let ended = tokio::select! {
        r = read_loop(&shared, &conn, session, frames) => r,
        _ = kill.fired() => ReadEnd::Failed("ended by the broker".into()),
    };
    let _ = shared.core.send(CoreMsg::Close { session }).await;
    let mut class = "error";
    let reason = match ended {
        ReadEnd::Finished => {
            class = "finished";
            // The client finished its stream: the core answers what it sent
            // before, the writer drains that and finishes, then we close.
            let _ = tokio::time::timeout(limits.session_timeout(), writer).await;
            close(&conn, CloseCode::Normal, "session finished");
            "client finished its stream".to_string()
        }
        ReadEnd::Failed(reason) => {
            // Give a kill in progress time to deliver its reason, then make
            // sure the connection is closed with it.
            let _ = tokio::time::timeout(KILL_GRACE * 4, writer).await;
            match kill.reason() {
                Some((code, r)) => {
                    class = match code {
                        CloseCode::SlowConsumer => "slow_consumer",
                        CloseCode::Shutdown => "shutdown",
                        _ => "closed_by_broker",
                    };
                    close(&conn, *code, r);
                    r.clone()
                }
                None => reason,
            }
        }
    };
    super::telemetry::client_disconnected(class);
    shared.names.session_closed(session);
    tracing::info!(session = %label, %remote, name = %hello.name, %reason, "client session closed");
}

async fn refuse(
    conn: &quinn::Connection,
    send: &mut quinn::SendStream,
    version: u16,
    code: CloseCode,
    reason: &str,
) {
    super::telemetry::client_refused();
    if let Ok(frame) = client_proto::encode_refusal_for(version, code, reason) {
        let _ = send.write_all(&frame).await;
        let _ = send.finish();
        // Give the refusal a moment to reach the client before closing.
        let _ = tokio::time::timeout(Duration::from_millis(200), send.stopped()).await;
    }
    close(conn, code, reason);
}

enum ReadEnd {
    /// The client finished its stream cleanly.
    Finished,
    /// The session failed; the connection is closed or closing.
    Failed(String),
}

/// Reads requests and forwards them to the core; returns how it stopped.
async fn read_loop(
    shared: &Shared,
    conn: &quinn::Connection,
    session: u64,
    mut frames: FrameReader<quinn::RecvStream>,
) -> ReadEnd {
    let mut bodies: Vec<Bytes> = Vec::with_capacity(256);
    let mut rate = PublishRate::new(&shared.config.limits, std::time::Instant::now());
    loop {
        bodies.clear();
        match frames.read_batch(&mut bodies).await {
            Ok(true) => {}
            Ok(false) => return ReadEnd::Finished,
            Err(FrameError::Oversize { len, max }) => {
                let reason = FrameError::Oversize { len, max }.to_string();
                close(conn, CloseCode::FrameTooLarge, &reason);
                return ReadEnd::Failed(reason);
            }
            Err(e) => {
                return ReadEnd::Failed(match conn.close_reason() {
                    Some(c) => c.to_string(),
                    None => {
                        let reason = e.to_string();
                        close(conn, CloseCode::ProtocolError, &reason);
                        reason
                    }
                });
            }
        }
        let mut msgs = Vec::with_capacity(bodies.len());
        for body in &bodies {
            match client_proto::decode_client(body) {
                Ok(m) => msgs.push(m),
                Err(e) => {
                    // Deliver what came before the bad frame, then close.
                    if !msgs.is_empty() {
                        let _ = limits::forward(&shared.core, session, rate.as_mut(), msgs).await;
                    }
                    let reason = e.to_string();
                    close(conn, CloseCode::ProtocolError, &reason);
                    return ReadEnd::Failed(reason);
                }
            }
        }
        metrics::counter!("meshcast_client_frames_total").increment(msgs.len() as u64);
        if limits::forward(&shared.core, session, rate.as_mut(), msgs)
            .await
            .is_err()
        {
            return ReadEnd::Failed("broker shutting down".into());
        }
    }
}

/// Writes queued frames in batches until the queue closes, the stream fails
/// or the core kills the session.
///
/// Small frames are copied into one buffer per batch (quinn handles one
/// large write far better than thousands of tiny chunks); large frames are
/// passed on without copying.
async fn write_loop(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Vec<Bytes>>,
    queued: Arc<Queued>,
    kill: Arc<Kill>,
    conn: quinn::Connection,
) {
    let mut chunks: Vec<Bytes> = Vec::new();
    loop {
        let batch = tokio::select! {
            b = rx.recv() => b,
            _ = kill.fired() => break,
        };
        let Some(batch) = batch else {
            // The core let go of the session: finish cleanly.
            let _ = send.finish();
            let _ = send.stopped().await;
            return;
        };
        let mut small = BytesMut::new();
        let (mut frames, mut bytes) = add(batch, &mut chunks, &mut small);
        while bytes < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => {
                    let (f, b) = add(more, &mut chunks, &mut small);
                    frames += f;
                    bytes += b;
                }
                Err(_) => break,
            }
        }
        if !small.is_empty() {
            chunks.push(small.freeze());
        }
        let written = tokio::select! {
            r = send.write_all_chunks(&mut chunks) => r,
            _ = kill.fired() => break,
        };
        if let Err(e) = written {
            if conn.close_reason().is_none() {
                kill.fire(
                    CloseCode::ProtocolError,
                    format!("cannot write to the client: {e}"),
                );
                break;
            }
            return;
        }
        chunks.clear();
        queued.frames.fetch_sub(frames, Ordering::AcqRel);
        queued.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
    // Killed: reset the stream first (the reset carries the code reliably,
    // even to a client too busy to read), then close with the full reason.
    if let Some((code, reason)) = kill.reason() {
        let _ = send.reset(code.code().into());
        let _ = tokio::time::timeout(KILL_GRACE, conn.closed()).await;
        close(&conn, *code, reason);
    }
}

/// Appends a batch to the chunks of one write, copying small frames into
/// `small`; returns (frames, bytes) added.
fn add(batch: Vec<Bytes>, chunks: &mut Vec<Bytes>, small: &mut BytesMut) -> (usize, usize) {
    let (frames, mut bytes) = (batch.len(), 0);
    for f in batch {
        bytes += f.len();
        if f.len() >= ZERO_COPY_AT {
            if !small.is_empty() {
                chunks.push(small.split().freeze());
            }
            chunks.push(f);
        } else {
            small.extend_from_slice(&f);
        }
    }
    (frames, bytes)
}
