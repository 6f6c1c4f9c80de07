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
            // The brokers of a mesh share their [auth]: the others would
            // refuse the same credentials.
            Err(e @ ClientError::Unauthenticated { .. }) => return Err(e),
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
    let identity = match &opts.client_cert {
        Some((cert, key)) => Some(pki::TlsIdentity {
            cert_chain: pki::load_certs(cert).map_err(|e| ClientError::Tls(e.to_string()))?,
            key: pki::load_key(key).map_err(|e| ClientError::Tls(e.to_string()))?,
            trust: trust.clone(),
        }),
        None => None,
    };
    let config = quic::client_config(&trust, identity.as_ref(), ALPN_CLIENT, opts.idle_timeout)
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
        refused_by(&e, label).unwrap_or_else(|| {
            let cause = classify(&e, name, opts);
            failed(&e, cause)
        })
    })?;
    // A step failing after the QUIC handshake may be the broker's refusal
    // (a certificate it does not accept, one of its limits): its close
    // says so.
    let (mut send, recv) = match conn.open_bi().await {
        Ok(streams) => streams,
        Err(e) => {
            return Err(refusal(&conn, label)
                .await
                .unwrap_or_else(|| failed(&e, ConnectCause::Other)));
        }
    };
    let hello = client_proto::encode_hello(
        opts.protocol_version,
        &ClientHello {
            name: opts.name.clone(),
            token: opts.token.clone(),
        },
    )
    .map_err(|e| ClientError::Handshake(e.to_string()))?;
    if let Err(e) = send.write_all(&hello).await {
        return Err(refusal(&conn, label)
            .await
            .unwrap_or_else(|| failed(&e, ConnectCause::Other)));
    }
    // The broker's frames are bounded by its own limit; accept generously.
    let mut frames = FrameReader::new(recv, meshcast_transport::wire::HARD_MAX_FRAME);
    let welcome = match frames.read_one().await {
        Ok(Some(body)) => match client_proto::decode_welcome(&body) {
            Ok(w) => w,
            Err(HandshakeError::RefusedWith { code, reason })
                if code == CloseCode::Unauthenticated.code() =>
            {
                return Err(ClientError::Unauthenticated {
                    addr: label.to_string(),
                    reason,
                });
            }
            // Protocol 3: the refusal carries its close code; one of the
            // broker's limits is returned as the close it is followed by.
            Err(HandshakeError::RefusedWith { code, reason })
                if CloseCode::from_code(u64::from(code)).is_some_and(is_limit) =>
            {
                return Err(ClientError::Closed {
                    code: CloseCode::from_code(u64::from(code)),
                    reason,
                });
            }
            // An older broker's (or an older protocol's) refusal carries
            // only its reason: the close that follows has the code.
            Err(e @ (HandshakeError::Refused(_) | HandshakeError::RefusedWith { .. })) => {
                return Err(refusal(&conn, label)
                    .await
                    .unwrap_or_else(|| ClientError::Handshake(e.to_string())));
            }
            Err(e) => return Err(ClientError::Handshake(e.to_string())),
        },
        Ok(None) | Err(_) => {
            if let Some(refused) = refusal(&conn, label).await {
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

/// When the broker refused the session (a client certificate it does not
/// accept, missing credentials, or one of its limits), that refusal typed:
/// [`ClientError::Unauthenticated`], or [`ClientError::Closed`] with the
/// limit's close code. Waits briefly for the close, which follows the
/// refusal; `None` for any other failure.
async fn refusal(conn: &quinn::Connection, label: &str) -> Option<ClientError> {
    let closed = tokio::time::timeout(REFUSAL_CLOSE_WAIT, conn.closed())
        .await
        .ok()?;
    refused_by(&closed, label)
}

/// A connection closed by the broker's refusal, typed (see [`refusal`]).
/// In TLS 1.3 the broker judges a client certificate after the client
/// finished its side of the handshake, so its refusal may show up as the
/// connection's close reason at any later step.
fn refused_by(closed: &quinn::ConnectionError, label: &str) -> Option<ClientError> {
    if refused_certificate(closed) {
        return Some(ClientError::Unauthenticated {
            addr: label.to_string(),
            reason: format!("the broker refused the client certificate ({closed})"),
        });
    }
    match error::from_connection_error(closed) {
        ClientError::Closed {
            code: Some(CloseCode::Unauthenticated),
            reason,
        } => Some(ClientError::Unauthenticated {
            addr: label.to_string(),
            reason,
        }),
        e @ ClientError::Closed { code: Some(c), .. } if is_limit(c) => Some(e),
        _ => None,
    }
}

/// Whether `code` closes a connection for one of the broker's limits.
fn is_limit(code: CloseCode) -> bool {
    matches!(
        code,
        CloseCode::TooManySessions
            | CloseCode::TooManyFromAddress
            | CloseCode::TooManyForUser
            | CloseCode::HandshakeTimeout
    )
}

/// Whether the broker's TLS stack refused this client's certificate (one
/// not under its `auth.client_ca`): the broker closed the connection with
/// a TLS alert about the certificate (bad_certificate 42, unknown_ca 48,
/// access_denied 49, decrypt_error 51, certificate_required 116; QUIC
/// carries alert N as the crypto error 0x100 + N).
fn refused_certificate(e: &quinn::ConnectionError) -> bool {
    match e {
        quinn::ConnectionError::ConnectionClosed(c) => matches!(
            u64::from(c.error_code).checked_sub(0x100),
            Some(42 | 48 | 49 | 51 | 116)
        ),
        _ => false,
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
