//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format),
//! `GET /status` (JSON) and `GET /healthz` (200 when ready, 503 with the
//! reason otherwise). A deliberately tiny HTTP/1.1 responder: one request
//! per connection, bounded request size and time.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head accepted, in bytes.
const MAX_REQUEST: usize = 8 * 1024;

/// The process-wide Prometheus recorder (installed on first use).
fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}

/// Produces the JSON status document on demand.
pub(crate) type StatusFn =
    std::sync::Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, String> + Send + Sync>;

/// Says whether the broker is ready (`Ok`) or why not (`Err`).
pub(crate) type HealthFn = std::sync::Arc<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Result<String, String>> + Send + Sync,
>;

/// Sets the state gauges before `/metrics` is rendered.
pub(crate) type RefreshFn =
    std::sync::Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, ()> + Send + Sync>;

/// What the endpoint answers with.
#[derive(Clone)]
pub(crate) struct Endpoints {
    /// `GET /status`.
    pub status: StatusFn,
    /// `GET /healthz`.
    pub health: HealthFn,
    /// Before `GET /metrics`.
    pub refresh: RefreshFn,
}

/// Binds the admin listener and serves it in a background task until
/// `stop` turns true.
pub(crate) async fn serve(
    addr: SocketAddr,
    endpoints: Endpoints,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let _ = prometheus();
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Ok((stream, _)) = accepted else {
                // E.g. out of file descriptors: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let endpoints = endpoints.clone();
            tokio::spawn(async move {
                let answered = answer(stream, endpoints);
                let _ = tokio::time::timeout(Duration::from_secs(5), answered).await;
            });
        }
    });
    Ok(local)
}

async fn answer(mut stream: TcpStream, endpoints: Endpoints) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request too large\n",
            )
            .await;
        }
    }
    let line = String::from_utf8_lossy(&head);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path) {
        ("GET", "/metrics") => {
            (endpoints.refresh)().await;
            let body = prometheus().map(|h| h.render()).unwrap_or_default();
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4", &body).await
        }
        ("GET", "/status") => {
            let body = (endpoints.status)().await;
            respond(&mut stream, "200 OK", "application/json", &body).await
        }
        ("GET", "/healthz") => match (endpoints.health)().await {
            Ok(why) => respond(&mut stream, "200 OK", "text/plain", &(why + "\n")).await,
            Err(why) => {
                let body = format!("not ready: {why}\n");
                respond(&mut stream, "503 Service Unavailable", "text/plain", &body).await
            }
        },
        ("GET", _) => {
            respond(
                &mut stream,
                "404 Not Found",
                "text/plain",
                "try /status, /healthz or /metrics\n",
            )
            .await
        }
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "only GET\n",
            )
            .await
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
