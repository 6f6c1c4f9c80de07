//! Opening one session: resolving the address, QUIC and TLS within the
//! connect timeout, the handshake, and telling the user why it failed.

use std::net::SocketAddr;
use std::time::Duration;

use meshcast_transport::client_proto::{
    self, ALPN_CLIENT, ClientHello, CloseCode, HandshakeError, Welcome,
};
use meshcast_transport::{FrameReader, pki, quic};

use crate::error::{self, ConnectCause};
use crate::{ClientError, ClientOptions, ServerAddr};

/// One open session with a broker.
pub(crate) struct Opened {
    pub conn: quinn::Connection,
    pub endpoint: quinn::Endpoint,
    pub welcome: Welcome,
    /// The address as given and as resolved, for messages.
    pub label: String,
    /// Its index in [`ClientOptions::servers`].
    pub index: usize,
    pub send: quinn::SendStream,
    pub frames: FrameReader<quinn::RecvStream>,
}

/// Tries the servers in turn, starting at `start`, once each; the first
/// that accepts wins. The error is the last address's (each one's failure
/// is logged at debug level).
pub(crate) async fn open_any(opts: &ClientOptions, start: usize) -> Result<Opened, ClientError> {
    let n = opts.servers.len();
    if n == 0 {
        return Err(ClientError::InvalidAddress {
            addr: String::new(),
            reason: "no broker address given".into(),
        });
    }
    let mut last = None;
    for k in 0..n {
        let index = (start + k) % n;
        match open(opts, index).await {
            Ok(o) => return Ok(o),
            Err(e) => {
                tracing::debug!(server = %opts.servers[index], error = %e, "broker unavailable");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| ClientError::InvalidAddress {
        addr: String::new(),
        reason: "no broker address given".into(),
    }))
}

/// Opens a session with `opts.servers[index]`.
pub(crate) async fn open(opts: &ClientOptions, index: usize) -> Result<Opened, ClientError> {
    let server = &opts.servers[index];
    let ca = opts.ca_file.as_ref().ok_or_else(|| {
        ClientError::Tls(
            "no CA file given: set ClientOptions::ca_file (the broker's ca.pem)".into(),
        )
    })?;
    let trust = pki::load_certs(ca).map_err(|e| ClientError::Tls(e.to_string()))?;
    let config = quic::client_config(&trust, None, ALPN_CLIENT, opts.idle_timeout)
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let addrs = resolve(server, opts.connect_timeout).await?;
    let name = opts.tls_name(server);
    let mut last = None;
    for addr in addrs {
        let label = match server {
            ServerAddr::Ip(_) => addr.to_string(),
            ServerAddr::Host { .. } => format!("{server} ({addr})"),
        };
        let attempt = attempt(opts, &config, addr, &name, &label);
        match tokio::time::timeout(opts.connect_timeout, attempt).await {
            Ok(Ok((conn, endpoint, welcome, send, frames))) => {
                return Ok(Opened {
                    conn,
                    endpoint,
                    welcome,
                    label,
                    index,
                    send,
                    frames,
                });
            }
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(ClientError::Connect {
                    addr: label,
                    cause: ConnectCause::NoAnswer {
                        after: opts.connect_timeout,
                    },
                    detail: "timed out".into(),
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Connect {
        addr: server.to_string(),
        cause: ConnectCause::Resolve,
        detail: "no addresses".into(),
    }))
}

async fn resolve(server: &ServerAddr, timeout: Duration) -> Result<Vec<SocketAddr>, ClientError> {
    let (host, port) = match server {
        ServerAddr::Ip(a) => return Ok(vec![*a]),
        ServerAddr::Host { host, port } => (host.as_str(), *port),
    };
    let failed = |detail: String| ClientError::Connect {
        addr: server.to_string(),
        cause: ConnectCause::Resolve,
        detail,
    };
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| failed(format!("no answer from the resolver within {timeout:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    let addrs: Vec<SocketAddr> = found.collect();
    if addrs.is_empty() {
        return Err(failed("no addresses".into()));
    }
    Ok(addrs)
}

type Attempt = (
    quinn::Connection,
    quinn::Endpoint,
    Welcome,
    quinn::SendStream,
    FrameReader<quinn::RecvStream>,
);

async fn attempt(
    opts: &ClientOptions,
    config: &quinn::ClientConfig,
    addr: SocketAddr,
    name: &str,
    label: &str,
) -> Result<Attempt, ClientError> {
    let failed = |e: &dyn std::fmt::Display, cause: ConnectCause| ClientError::Connect {
        addr: label.to_string(),
        cause,
        detail: e.to_string(),
    };
    let mut endpoint = quic::bind_client(addr).map_err(|e| failed(&e, ConnectCause::Other))?;
    endpoint.set_default_client_config(config.clone());
    let connecting = endpoint
        .connect(addr, name)
        .map_err(|e| failed(&e, ConnectCause::Other))?;
    let conn = connecting.await.map_err(|e| {
        limit_close(&e).unwrap_or_else(|| {
            let cause = classify(&e, name, opts);
            failed(&e, cause)
        })
    })?;
    let (mut send, recv) = match conn.open_bi().await {
        Ok(streams) => streams,
        Err(e) => {
            return Err(refusal(&conn)
                .await
                .unwrap_or_else(|| failed(&e, ConnectCause::Other)));
        }
    };
    let hello = client_proto::encode_hello(
        opts.protocol_version,
        &ClientHello {
            name: opts.name.clone(),
        },
    )
    .map_err(|e| ClientError::Handshake(e.to_string()))?;
    if let Err(e) = send.write_all(&hello).await {
        return Err(refusal(&conn)
            .await
            .unwrap_or_else(|| failed(&e, ConnectCause::Other)));
    }
    // The broker's frames are bounded by its own limit; accept generously.
    let mut frames = FrameReader::new(recv, meshcast_transport::wire::HARD_MAX_FRAME);
    let welcome = match frames.read_one().await {
        Ok(Some(body)) => match client_proto::decode_welcome(&body) {
            Ok(w) => w,
            Err(e @ HandshakeError::Refused(_)) => {
                return Err(refusal(&conn)
                    .await
                    .unwrap_or_else(|| ClientError::Handshake(e.to_string())));
            }
            Err(e) => return Err(ClientError::Handshake(e.to_string())),
        },
        Ok(None) | Err(_) => {
            if let Some(refused) = refusal(&conn).await {
                return Err(refused);
            }
            let reason = conn
                .close_reason()
                .map(|e| error::from_connection_error(&e).to_string())
                .unwrap_or_else(|| "stream closed during handshake".into());
            return Err(ClientError::Handshake(reason));
        }
    };
    Ok((conn, endpoint, welcome, send, frames))
}

/// How long a refused handshake waits for the broker's close (which
/// carries the refusal's code) after the refusal itself.
const REFUSAL_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// When the broker refused the session for one of its limits, that
/// refusal as [`ClientError::Closed`] with its close code (waiting briefly
/// for the close, which follows the refusal); otherwise `None`.
async fn refusal(conn: &quinn::Connection) -> Option<ClientError> {
    let closed = tokio::time::timeout(REFUSAL_CLOSE_WAIT, conn.closed())
        .await
        .ok()?;
    limit_close(&closed)
}

/// A connection closed by the broker for one of its limits, as
/// [`ClientError::Closed`] with the close code.
fn limit_close(closed: &quinn::ConnectionError) -> Option<ClientError> {
    match error::from_connection_error(closed) {
        e @ ClientError::Closed {
            code:
                Some(
                    CloseCode::TooManySessions
                    | CloseCode::TooManyFromAddress
                    | CloseCode::TooManyForUser
                    | CloseCode::HandshakeTimeout,
                ),
            ..
        } => Some(e),
        _ => None,
    }
}

/// The likely cause of a failed QUIC/TLS connection.
fn classify(e: &quinn::ConnectionError, name: &str, opts: &ClientOptions) -> ConnectCause {
    let text = e.to_string();
    if matches!(e, quinn::ConnectionError::TimedOut) {
        return ConnectCause::NoAnswer {
            after: opts.connect_timeout.min(opts.idle_timeout),
        };
    }
    // rustls: the broker's alert when no ALPN matches, and this side's
    // certificate verdicts.
    if text.contains("no_application_protocol")
        || text.contains("doesn't support any known protocol")
        || text.contains("NoApplicationProtocol")
    {
        return ConnectCause::WrongProtocol;
    }
    if text.contains("NotValidForName") || text.contains("not valid for name") {
        return ConnectCause::ServerName {
            name: name.to_string(),
        };
    }
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        return ConnectCause::UnknownCa {
            ca: opts
                .ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        };
    }
    ConnectCause::Other
}
