//! Test harness: real `meshcast` processes on loopback ports.
#![allow(dead_code)]

pub mod relay;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use meshcast_client::{Client, ClientOptions};

/// Generous guard against hangs; no test relies on it for correctness.
pub const GUARD: Duration = Duration::from_secs(30);

pub fn meshcast_bin() -> &'static str {
    env!("CARGO_BIN_EXE_meshcast")
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "meshcast-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A broker child process; killed on drop.
pub struct BrokerProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub ca: PathBuf,
    pub dir: TempDir,
}

impl BrokerProc {
    /// Starts `meshcast broker` on a free port with extra `--set` overrides.
    pub fn start(sets: &[&str]) -> BrokerProc {
        Self::start_in(TempDir::new("broker"), sets)
    }

    /// Like [`BrokerProc::start`] but with a given data directory.
    pub fn start_in(dir: TempDir, sets: &[&str]) -> BrokerProc {
        Self::start_with_args(dir, sets, &[])
    }

    /// Like [`BrokerProc::start_in`] with extra `meshcast broker` arguments.
    pub fn start_with_args(dir: TempDir, sets: &[&str], args: &[&str]) -> BrokerProc {
        Self::start_with_stderr(dir, sets, args, Stdio::inherit())
    }

    /// Like [`BrokerProc::start_with_args`], with the broker's standard
    /// error (its log) going to `stderr`, e.g. a file a test reads.
    pub fn start_with_stderr(
        dir: TempDir,
        sets: &[&str],
        args: &[&str],
        stderr: Stdio,
    ) -> BrokerProc {
        let mut cmd = Command::new(meshcast_bin());
        cmd.arg("broker")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(["--set", "broker.peer_listen=127.0.0.1:0"])
            .args(["--set", "broker.admin_listen=127.0.0.1:0"])
            .args(["--set", "log.level=warn"]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        cmd.args(args);
        cmd.env_remove("RUST_LOG");
        if let Ok(filter) = std::env::var("MESHCAST_BROKER_LOG") {
            // For a failure's post-mortem: e.g.
            // `MESHCAST_BROKER_LOG=warn,meshcast_broker::node::bridge=trace`.
            cmd.env("RUST_LOG", filter);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().expect("spawn meshcast broker");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("broker printed nothing")
            .expect("read broker stdout");
        // "meshcast broker ID listening on ADDR (CA PATH)"
        let addr: SocketAddr = line
            .split(" listening on ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected broker banner: {line}"));
        let admin_line = lines
            .next()
            .expect("broker printed no admin line")
            .expect("read broker stdout");
        let admin: SocketAddr = admin_line
            .strip_prefix("admin endpoint on ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected admin banner: {admin_line}"));
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        BrokerProc {
            child,
            addr,
            admin,
            ca: dir.path().join("ca.pem"),
            dir,
        }
    }

    pub fn options(&self, name: &str) -> ClientOptions {
        ClientOptions::new(self.addr).ca_file(&self.ca).name(name)
    }

    pub async fn client(&self, name: &str) -> Client {
        tokio::time::timeout(GUARD, Client::connect(self.options(name)))
            .await
            .expect("connect timed out")
            .expect("connect")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("wait broker")
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw QUIC session to a broker, for sending arbitrary bytes.
pub struct RawSession {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    /// The receiving side of the session's stream (`take` it to read).
    pub recv: Option<quinn::RecvStream>,
}

/// A QUIC connection to a broker's client port from `local` (a loopback
/// address and port 0, e.g. `127.0.0.2:0` for another source address),
/// with `transport` tweaks; no stream opened.
pub async fn raw_connection(
    broker: &BrokerProc,
    local: SocketAddr,
    transport: impl FnOnce(&mut quinn::TransportConfig),
) -> Result<(quinn::Endpoint, quinn::Connection), quinn::ConnectionError> {
    use meshcast_transport::{client_proto::ALPN_CLIENT, pki, quic};
    let trust = pki::load_certs(&broker.ca).unwrap();
    let mut cfg = quic::client_config(&trust, None, ALPN_CLIENT, Duration::from_secs(10)).unwrap();
    let mut t = quic::transport_config(Duration::from_secs(10));
    transport(&mut t);
    cfg.transport_config(std::sync::Arc::new(t));
    let mut endpoint = quinn::Endpoint::client(local).unwrap();
    endpoint.set_default_client_config(cfg);
    let conn = endpoint.connect(broker.addr, "localhost").unwrap().await?;
    Ok((endpoint, conn))
}

impl RawSession {
    pub async fn open(broker: &BrokerProc) -> RawSession {
        Self::open_from(broker, "127.0.0.1:0".parse().unwrap()).await
    }

    /// [`RawSession::open`] from a given local address.
    pub async fn open_from(broker: &BrokerProc, local: SocketAddr) -> RawSession {
        let (endpoint, conn) = raw_connection(broker, local, |_| {}).await.unwrap();
        let (send, recv) = conn.open_bi().await.unwrap();
        RawSession {
            endpoint,
            conn,
            send,
            recv: Some(recv),
        }
    }

    /// Sends a hello (protocol version of this build, no token) and reads
    /// the welcome; returns the reader of the session's stream.
    pub async fn handshake(&mut self) -> meshcast_transport::FrameReader<quinn::RecvStream> {
        use meshcast_transport::client_proto::{self, ClientHello, PROTOCOL_VERSION};
        let hello = ClientHello {
            name: "raw".into(),
            ..ClientHello::default()
        };
        let hello = client_proto::encode_hello(PROTOCOL_VERSION, &hello).unwrap();
        self.send.write_all(&hello).await.unwrap();
        let recv = self.recv.take().expect("the session's stream");
        let mut frames = meshcast_transport::FrameReader::new(recv, 1 << 20);
        let welcome = frames.read_one().await.unwrap().unwrap();
        client_proto::decode_welcome(&welcome).unwrap();
        frames
    }

    /// Encodes and sends one client message.
    pub async fn send_msg(&mut self, msg: &meshcast_transport::client_proto::ClientMsg) {
        let mut buf = bytes::BytesMut::new();
        meshcast_transport::client_proto::encode_client(msg, &mut buf).unwrap();
        self.send.write_all(&buf).await.unwrap();
    }

    /// Waits until the broker closes the connection; returns (code, reason).
    pub async fn closed(&self) -> (u64, String) {
        let err = tokio::time::timeout(GUARD, self.conn.closed())
            .await
            .expect("broker never closed the connection");
        match err {
            quinn::ConnectionError::ApplicationClosed(c) => (
                c.error_code.into_inner(),
                String::from_utf8_lossy(&c.reason).into_owned(),
            ),
            other => panic!("unexpected close: {other}"),
        }
    }
}

/// A client that must keep working through every refusal or bad input of
/// others on its broker.
pub struct Bystander {
    client: Client,
    sub: meshcast_client::Subscription,
    n: u64,
}

impl Bystander {
    pub async fn new(broker: &BrokerProc) -> Bystander {
        let client = broker.client("bystander").await;
        let sub = client.subscribe("bystander/**").await.unwrap();
        Bystander { client, sub, n: 0 }
    }

    /// Publishes a probe and receives it back.
    pub async fn still_works(&mut self) {
        use futures_util::StreamExt;
        self.n += 1;
        let body = format!("probe {}", self.n);
        self.client
            .publish("bystander/probe", body.clone())
            .await
            .unwrap();
        let m = tokio::time::timeout(GUARD, self.sub.next())
            .await
            .expect("bystander timed out")
            .expect("bystander subscription ended")
            .expect("bystander session lost");
        assert_eq!(m.payload, body);
    }
}

/// Reads and decodes the next broker message of a raw session.
pub async fn read_msg(
    frames: &mut meshcast_transport::FrameReader<quinn::RecvStream>,
) -> meshcast_transport::client_proto::ServerMsg {
    let body = tokio::time::timeout(GUARD, frames.read_one())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    meshcast_transport::client_proto::decode_server(&body).unwrap()
}

/// Waits until `ok` holds for the log file at `path`; returns its text.
pub async fn wait_log(path: &Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
    tokio::time::timeout(GUARD, async {
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if ok(&text) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        panic!("timed out waiting for {what} in the log:\n{text}")
    })
}

/// Runs `meshcast` with arguments; returns (status, stdout, stderr).
/// Kills it and panics if it runs longer than two minutes.
pub fn run_cli(args: &[&str], stdin: Option<&str>) -> (std::process::ExitStatus, String, String) {
    use std::io::{Read, Write};
    let mut child = Command::new(meshcast_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("meshcast {args:?} did not finish within two minutes");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// Fetches `GET /status` from a broker's admin endpoint.
pub async fn status(admin: SocketAddr) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\n\r\n").await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    serde_json::from_str(body).unwrap()
}
