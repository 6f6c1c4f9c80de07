//! QUIC endpoint configuration (quinn + rustls with the aws-lc-rs provider,
//! TLS 1.3 only, hybrid post-quantum key exchange preferred).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::CertificateDer;

use crate::pki::TlsIdentity;

/// Errors while setting up QUIC endpoints or connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// rustls refused the configuration (bad certificate or key, ...).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused the TLS configuration.
    #[error("QUIC TLS configuration: {0}")]
    QuicTls(String),
    /// A trusted CA certificate could not be added.
    #[error("trusted CA certificate rejected: {0}")]
    BadCa(String),
    /// The UDP socket could not be bound.
    #[error("binding UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A connection could not be started.
    #[error("connecting to {addr}: {detail}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        detail: String,
    },
}

/// The one rustls crypto provider of meshcast: aws-lc-rs, whose key
/// exchange groups start with the hybrid post-quantum X25519MLKEM768 (the
/// `prefer-post-quantum` feature), then X25519, P-256 and P-384 for peers
/// without it. Used for every client and peer link, both ends.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Transport parameters tuned for many small messages on few connections.
pub fn transport_config(idle_timeout: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    let idle = quinn::IdleTimeout::try_from(idle_timeout)
        .unwrap_or_else(|_| quinn::IdleTimeout::from(quinn::VarInt::from_u32(30_000)));
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(idle_timeout / 3));
    t.stream_receive_window(quinn::VarInt::from_u32(8 << 20));
    t.receive_window(quinn::VarInt::from_u32(16 << 20));
    t.send_window(16 << 20);
    t
}

/// [`transport_config`] for the broker's side of client sessions: a client
/// may open at most `max_bidi_streams` bidirectional streams at once and no
/// unidirectional stream (QUIC flow control enforces it: a client cannot
/// open more), so a client cannot make the broker buffer data on streams
/// it never reads.
pub fn client_session_transport_config(
    idle_timeout: Duration,
    max_bidi_streams: u32,
) -> quinn::TransportConfig {
    let mut t = transport_config(idle_timeout);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(max_bidi_streams));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    t
}

/// Whether a server asks the other side for a certificate, and which CA
/// certificates that certificate must chain to.
#[derive(Debug, Clone, Copy)]
pub enum ClientCerts<'a> {
    /// No client certificate is asked for (client port without client
    /// certificate authentication).
    None,
    /// A certificate chaining to one of these CAs is required (peer links:
    /// the cluster CA).
    Required(&'a [CertificateDer<'static>]),
    /// A certificate is asked for but optional; one that is presented must
    /// chain to one of these CAs (client port with `auth.client_ca`: a
    /// client may also authenticate with a token instead).
    Optional(&'a [CertificateDer<'static>]),
}

/// The rustls side of [`server_config`]: TLS 1.3 only, our identity, the
/// accepted ALPN names and the client certificate policy.
pub fn tls_server_config(
    identity: &TlsIdentity,
    alpn: &[&[u8]],
    client_certs: ClientCerts<'_>,
) -> Result<rustls::ServerConfig, TransportError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let verifier = |roots: &[CertificateDer<'static>], optional: bool| {
        let roots = root_store(roots)?;
        let b =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider());
        let b = if optional {
            b.allow_unauthenticated()
        } else {
            b
        };
        b.build().map_err(|e| TransportError::BadCa(e.to_string()))
    };
    let builder = match client_certs {
        ClientCerts::None => builder.with_no_client_auth(),
        ClientCerts::Required(roots) => builder.with_client_cert_verifier(verifier(roots, false)?),
        ClientCerts::Optional(roots) => builder.with_client_cert_verifier(verifier(roots, true)?),
    };
    let mut tls =
        builder.with_single_cert(identity.cert_chain.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(tls)
}

/// Server side configuration: our identity, accepted ALPN names, and
/// whether and under which CA the other side must present a certificate
/// (mutual TLS).
pub fn server_config(
    identity: &TlsIdentity,
    alpn: &[&[u8]],
    client_certs: ClientCerts<'_>,
    idle_timeout: Duration,
) -> Result<quinn::ServerConfig, TransportError> {
    let tls = tls_server_config(identity, alpn, client_certs)?;
    let quic =
        QuicServerConfig::try_from(tls).map_err(|e| TransportError::QuicTls(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(Arc::new(transport_config(idle_timeout)));
    Ok(cfg)
}

/// The rustls side of [`client_config`]: TLS 1.3 only, the CA certificates
/// to trust, our own certificate if any, and the ALPN name to ask for.
pub fn tls_client_config(
    trust: &[CertificateDer<'static>],
    identity: Option<&TlsIdentity>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TransportError> {
    let roots = root_store(trust)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(id) => builder.with_client_auth_cert(id.cert_chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    Ok(tls)
}

/// Client side configuration: the CA certificates to trust, an optional
/// identity of our own (for mutual TLS), and the ALPN name to ask for.
pub fn client_config(
    trust: &[CertificateDer<'static>],
    identity: Option<&TlsIdentity>,
    alpn: &[u8],
    idle_timeout: Duration,
) -> Result<quinn::ClientConfig, TransportError> {
    let tls = tls_client_config(trust, identity, alpn)?;
    let quic =
        QuicClientConfig::try_from(tls).map_err(|e| TransportError::QuicTls(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(Arc::new(transport_config(idle_timeout)));
    Ok(cfg)
}

fn root_store(trust: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in trust {
        roots
            .add(c.clone())
            .map_err(|e| TransportError::BadCa(e.to_string()))?;
    }
    Ok(roots)
}

/// Binds a server endpoint on `addr`. Must be called inside a tokio runtime.
pub fn bind_server(
    addr: SocketAddr,
    config: quinn::ServerConfig,
) -> Result<quinn::Endpoint, TransportError> {
    quinn::Endpoint::server(config, addr).map_err(|source| TransportError::Bind { addr, source })
}

/// Binds a client-only endpoint on an ephemeral port of the right family.
pub fn bind_client(remote: SocketAddr) -> Result<quinn::Endpoint, TransportError> {
    let local: SocketAddr = if remote.is_ipv6() {
        "[::]:0".parse().expect("valid literal")
    } else {
        "0.0.0.0:0".parse().expect("valid literal")
    };
    quinn::Endpoint::client(local).map_err(|source| TransportError::Bind {
        addr: local,
        source,
    })
}
