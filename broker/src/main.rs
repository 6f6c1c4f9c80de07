//! The `meshcast` command: broker, pub, sub, demo, bench, status, certs
//! and config.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use futures_util::StreamExt;
use meshcast_broker::{bench, cli_output, node};
use meshcast_client::{Client, ClientOptions, Ordering, Publish, SubscriptionEvent};
use meshcast_config::Config;

#[derive(Parser)]
#[command(
    name = "meshcast",
    version,
    about = "A publish/subscribe broker mesh with virtual synchrony"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (no arguments: a single broker on embedded defaults).
    Broker(BrokerArgs),
    /// Publish a message, or one message per line of standard input.
    Pub(PubArgs),
    /// Subscribe to a pattern and print `topic payload` per message.
    Sub(SubArgs),
    /// Start a broker, do a first publish/subscribe, and keep serving.
    Demo(DemoArgs),
    /// Measure throughput and latency; prints a summary table (or, with
    /// --json, one JSON line per result).
    Bench(BenchArgs),
    /// Print a running broker's status (JSON from its admin endpoint).
    Status(StatusArgs),
    /// Create a cluster CA (or reuse the one in --out) and a certificate per broker.
    Certs(CertsArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Client authentication helpers.
    #[command(subcommand)]
    Auth(AuthCommand),
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Print the stored form (an argon2id PHC string) of a secret, for
    /// `[[auth.users]] token_hashes`. The secret is read from standard
    /// input (its first line), or asked for without echo on a terminal;
    /// never from the command line. A client then authenticates with the
    /// token `USER:SECRET`.
    Hash,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file: print what is wrong, or "ok" and the
    /// effective settings (exit status 1 on an error).
    Check(ConfigCheckArgs),
}

#[derive(Args)]
struct ConfigCheckArgs {
    /// The configuration file (TOML).
    file: PathBuf,
    /// Also apply the MESHCAST_* environment variables, as a broker
    /// started here would.
    #[arg(long)]
    env: bool,
}

#[derive(Args)]
struct CertsArgs {
    /// Directory for ca.pem, ca-key.pem and NAME.pem / NAME-key.pem.
    #[arg(long, default_value = "certs")]
    out: PathBuf,
    /// Extra DNS names or IP addresses every certificate is valid for
    /// (localhost and the loopback addresses are always included).
    #[arg(long = "host")]
    hosts: Vec<String>,
    /// Broker ids to issue certificates for (each is also a DNS name in it).
    #[arg(required = true)]
    brokers: Vec<String>,
}

#[derive(Args)]
struct StatusArgs {
    /// The broker's admin address (broker.admin_listen).
    #[arg(long, env = "MESHCAST_ADMIN", default_value = "127.0.0.1:4702")]
    admin: SocketAddr,
    /// Print the mesh view, the links and each group (view, members,
    /// sequencer, what is queued for each local member) as text instead of
    /// the whole JSON document.
    #[arg(long)]
    groups: bool,
}

#[derive(Args)]
struct ConfigArgs {
    /// Configuration file (TOML); see config/meshcast.example.toml.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Override one key, e.g. `--set limits.subscriber_queue=1000` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Shorthand for `--set broker.data_dir=DIR`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shorthand for `--set broker.client_listen=ADDR`.
    #[arg(long)]
    listen: Option<SocketAddr>,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config> {
        let mut overrides = Vec::new();
        for s in &self.sets {
            overrides.push(Config::parse_override(s)?);
        }
        if let Some(d) = &self.data_dir {
            overrides.push(("broker.data_dir".into(), d.display().to_string()));
        }
        if let Some(l) = &self.listen {
            overrides.push(("broker.client_listen".into(), l.to_string()));
        }
        Ok(Config::load(
            self.config.as_deref(),
            meshcast_config::process_env(),
            &overrides,
        )?)
    }
}

#[derive(Args)]
struct BrokerArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Start a new mesh even though this broker's last mesh view (kept in
    /// its data directory) held other brokers: only for when a majority of
    /// that view is gone for good. Refused if any of them answers on its
    /// peer link within a few seconds.
    #[arg(long)]
    force_new_mesh: bool,
}

#[derive(Args)]
struct ConnectArgs {
    /// Broker client address, `IP:PORT` or `HOST:PORT`; several, separated
    /// by commas, are tried in order, and the client moves to the next one
    /// when its connection is lost.
    #[arg(
        long,
        short = 's',
        env = "MESHCAST_SERVER",
        default_value = "127.0.0.1:4700"
    )]
    server: String,
    /// Name the broker's certificate must carry (default: the host name of
    /// --server, or `localhost` for an IP address).
    #[arg(long, env = "MESHCAST_SERVER_NAME")]
    server_name: Option<String>,
    /// CA certificate to trust (default: the dev CA in the default data directory).
    #[arg(long, env = "MESHCAST_CA")]
    ca: Option<PathBuf>,
    /// Data directory whose dev CA to trust (default: the broker's default).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seconds one connection attempt may take before the broker is
    /// reported unreachable.
    #[arg(long, default_value_t = 5.0)]
    connect_timeout: f64,
    /// Seconds to keep trying the brokers after a lost connection (0: do not
    /// reconnect). Default: 60 with several --server addresses, 0 with one.
    #[arg(long)]
    reconnect: Option<f64>,
    /// Seconds of silence after which the connection counts as lost: how
    /// long a broker that vanished without closing (killed, unplugged) takes
    /// to be noticed, and left for the next --server address.
    #[arg(long, default_value_t = 30.0)]
    idle_timeout: f64,
    /// Token to authenticate with, `USER:SECRET`. Prefer the environment
    /// variable or --token-file: a command line is visible to other users
    /// of the machine.
    #[arg(
        long,
        env = "MESHCAST_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// File whose first line is the token (`USER:SECRET`).
    #[arg(long, env = "MESHCAST_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Client certificate (PEM) to authenticate with (with --key).
    #[arg(long, env = "MESHCAST_CERT", requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, env = "MESHCAST_KEY", requires = "cert")]
    key: Option<PathBuf>,
}

impl ConnectArgs {
    fn options(&self, name: &str) -> Result<ClientOptions> {
        let ca = match (&self.ca, &self.data_dir) {
            (Some(ca), _) => ca.clone(),
            (None, Some(dir)) => dir.join("ca.pem"),
            (None, None) => {
                meshcast_config::default_data_dir(&meshcast_config::process_env()).join("ca.pem")
            }
        };
        let seconds = |s: f64, what: &str| {
            Duration::try_from_secs_f64(s)
                .with_context(|| format!("--{what} {s}: not a number of seconds"))
        };
        let mut opts = ClientOptions::parse(&self.server)?
            .ca_file(ca)
            .name(name)
            .connect_timeout(seconds(self.connect_timeout, "connect-timeout")?)
            .idle_timeout(seconds(self.idle_timeout, "idle-timeout")?);
        if let Some(n) = &self.server_name {
            opts = opts.server_name(n);
        }
        if let Some(r) = self.reconnect {
            let r = seconds(r, "reconnect")?;
            opts = opts.reconnect((!r.is_zero()).then_some(r));
        }
        if let Some(t) = &self.token {
            opts = opts.token(t.as_str());
        }
        if let Some(f) = &self.token_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--token-file {}", f.display()))?;
            let token = meshcast_client::Secret::new(text.lines().next().unwrap_or("").trim());
            if token.is_empty() {
                bail!("--token-file {}: the first line is empty", f.display());
            }
            opts = opts.token(token);
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            opts = opts.client_cert(cert, key);
        }
        Ok(opts)
    }
}

#[derive(Args)]
struct PubArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Ordering declared for the topic: reliable, fifo, causal or total.
    #[arg(long, default_value = "fifo")]
    ordering: Ordering,
    /// Deliver only once stable at every broker hosting subscribers.
    #[arg(long)]
    safe: bool,
    /// Wait for the broker's confirmation of each message (with --safe:
    /// until it is stable, every broker holds it) and exit non-zero if one
    /// is refused or not confirmed within --confirm-timeout. Without it,
    /// the exit status says whether the broker accepted the messages.
    #[arg(long)]
    confirm: bool,
    /// Seconds to wait for each confirmation (--confirm).
    #[arg(long, default_value_t = 10.0)]
    confirm_timeout: f64,
    /// Topic to publish on.
    topic: String,
    /// The message; without it, each line of standard input is one message.
    message: Option<String>,
}

#[derive(Args)]
struct SubArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    /// Exit after this many messages.
    #[arg(long, short = 'n')]
    count: Option<u64>,
    /// Mesh mode: also print the views of the groups the pattern reaches,
    /// in their place among the messages, as
    /// `* view <group> <view id> <member>,<member>,...`. (Whether or not
    /// this is given, the broker leaving and coming back to the primary
    /// component and a move to another broker are printed on stderr in
    /// their place: `* blocked: ...`, `* unblocked: ...`, `* rejoined:
    /// ...`, `* reconnected: ...`.)
    #[arg(long)]
    views: bool,
    /// Read without becoming a member of any group (mesh mode): the
    /// subscription is in no view, so members counting each other (the kv
    /// example's replicas) do not count it. It sees the matching messages
    /// its broker delivers, without a member's guarantees across failures.
    #[arg(long, conflicts_with = "views")]
    tap: bool,
    /// Glob pattern, e.g. `orders/*/created` or `orders/**`.
    pattern: String,
}

#[derive(Args)]
struct DemoArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Stop after the first publish/subscribe instead of serving on.
    #[arg(long)]
    once: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Which scenario: fanout, latency, all (both), or mesh (three brokers
    /// in this process: fifo, total and total+safe).
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Messages per payload size (fanout).
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Payload sizes in bytes (fanout), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128,1024")]
    sizes: Vec<usize>,
    /// Subscribers (fanout).
    #[arg(long, default_value_t = 3)]
    subscribers: usize,
    /// Most messages the publisher may run ahead of the slowest subscriber
    /// (fanout); keep it below the broker's limits.subscriber_queue.
    #[arg(long, default_value_t = 2000)]
    window: u64,
    /// Messages per second (latency).
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Seconds to publish (latency).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Use a running broker instead of starting one in-process.
    #[arg(long)]
    server: Option<SocketAddr>,
    /// Mesh scenario against running brokers (one subscriber on each, the
    /// publisher on the first), comma-separated client addresses, instead
    /// of three brokers in this process.
    #[arg(long, value_delimiter = ',')]
    servers: Vec<SocketAddr>,
    /// CA of that broker (or of those brokers).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Print one JSON line per result (for scripts) instead of the table.
    #[arg(long)]
    json: bool,
}

fn init_logs(level: &str) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person watching a terminal: log files and journald
    // get plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", cli_output::error_line(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Broker(args) => run_broker(args).await,
        Command::Pub(args) => run_pub(args).await,
        Command::Sub(args) => run_sub(args).await,
        Command::Demo(args) => run_demo(args).await,
        Command::Bench(args) => run_bench(args).await,
        Command::Status(args) => run_status(args).await,
        Command::Certs(args) => run_certs(args),
        Command::Config(ConfigCommand::Check(args)) => run_config_check(args),
        Command::Auth(AuthCommand::Hash) => run_auth_hash(),
    }
}

/// `meshcast auth hash`: the secret from standard input (or a prompt),
/// its argon2id PHC string on standard output.
fn run_auth_hash() -> Result<()> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    use std::io::IsTerminal;
    let secret = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("secret: ").context("reading the secret")?;
        let again = rpassword::prompt_password("again: ").context("reading the secret")?;
        if first != again {
            bail!("the two entries differ");
        }
        meshcast_client::Secret::new(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the secret from standard input")?;
        meshcast_client::Secret::new(line.trim_end_matches(['\n', '\r']))
    };
    if secret.is_empty() {
        bail!("empty secret: give it on standard input (e.g. from a file) or at the prompt");
    }
    let salt = SaltString::generate(&mut OsRng);
    let hash = argon2::Argon2::default()
        .hash_password(secret.expose().as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the secret: {e}"))?;
    println!("{hash}");
    Ok(())
}

/// `meshcast config check FILE`.
fn run_config_check(args: ConfigCheckArgs) -> Result<()> {
    let env = if args.env {
        meshcast_config::process_env()
    } else {
        Vec::new()
    };
    let config = Config::load(Some(&args.file), env, &[])
        .with_context(|| format!("{} is not a valid configuration", args.file.display()))?;
    let problems = cli_output::config_problems(&config);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{}: {p}", args.file.display());
        }
        bail!("{} has {} problem(s)", args.file.display(), problems.len());
    }
    println!("ok: {}", args.file.display());
    print!("{}", cli_output::config_summary(&config));
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// One line on stdout that scripts and tests can wait for.
fn print_banner(broker: &node::BrokerHandle) {
    println!(
        "meshcast broker {} listening on {} (CA {})",
        broker.broker_id,
        broker.client_addr,
        broker.ca_cert.display()
    );
}

async fn run_broker(args: BrokerArgs) -> Result<()> {
    let config = args.config.load()?;
    init_logs(&config.log.level);
    let opts = node::StartOptions {
        force_new_mesh: args.force_new_mesh,
    };
    let broker = node::start_with(config, opts)
        .await
        .context("starting the broker")?;
    print_banner(&broker);
    if let Some(admin) = broker.admin_addr {
        println!("admin endpoint on {admin} (GET /status, GET /healthz, GET /metrics)");
    }
    shutdown_signal().await;
    tracing::info!("shutdown requested");
    broker.shutdown().await;
    Ok(())
}

async fn run_pub(args: PubArgs) -> Result<()> {
    init_logs("warn");
    if let Some(w) = meshcast_client::foreign_syntax_warning(&args.topic) {
        eprintln!("warning: {w}");
    }
    let confirm_timeout = Duration::try_from_secs_f64(args.confirm_timeout)
        .with_context(|| format!("--confirm-timeout {}", args.confirm_timeout))?;
    let client = Client::connect(args.connect.options("meshcast-pub")?).await?;
    let declared = Publish::with(args.ordering).safe_if(args.safe);
    let publisher = client.publisher(&args.topic, declared)?;
    let send = |text: String| {
        let publisher = &publisher;
        async move {
            if !args.confirm {
                return publisher
                    .publish(text.into_bytes())
                    .await
                    .map_err(anyhow::Error::from);
            }
            match tokio::time::timeout(confirm_timeout, publisher.publish_confirmed(text)).await {
                Ok(r) => r.map(drop).context("not confirmed"),
                Err(_) => bail!(
                    "not confirmed within {confirm_timeout:?} (--confirm-timeout): the broker \
                     did not accept it{}; its outcome is unknown",
                    if args.safe {
                        " or it is not stable yet"
                    } else {
                        ""
                    }
                ),
            }
        }
    };
    match args.message {
        Some(m) => send(m).await?,
        None => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(1024);
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            });
            while let Some(line) = rx.recv().await {
                send(line).await?;
            }
        }
    }
    // The broker answers a flush once it processed everything before it,
    // with the first publish it refused (or a lost connection) if any.
    client
        .flush()
        .await
        .context("not every message was accepted")?;
    client.close().await;
    Ok(())
}

async fn run_sub(args: SubArgs) -> Result<()> {
    init_logs("warn");
    if let Some(w) = meshcast_client::foreign_syntax_warning(&args.pattern) {
        eprintln!("warning: {w}");
    }
    let client = Client::connect(args.connect.options("meshcast-sub")?).await?;
    let mut sub = if args.tap {
        client.tap(&args.pattern).await?
    } else {
        client.subscribe(&args.pattern).await?
    };
    eprintln!(
        "subscribed to {}{}",
        args.pattern,
        if args.tap {
            " (tap: member of no group)"
        } else {
            ""
        }
    );
    let print_view = |v: &meshcast_client::View| {
        println!("* view {} {} {}", v.group, v.id, v.members.join(","));
    };
    if args.views {
        sub.views().iter().for_each(print_view);
    }
    let mut seen = 0;
    while args.count.is_none_or(|n| seen < n) {
        tokio::select! {
            event = sub.next_event() => match event {
                Some(Ok(SubscriptionEvent::Message(m))) => {
                    println!("{} {}", m.topic, String::from_utf8_lossy(&m.payload));
                    seen += 1;
                }
                Some(Ok(SubscriptionEvent::View(v))) => {
                    if args.views {
                        print_view(&v);
                    }
                }
                Some(Ok(SubscriptionEvent::Blocked)) => eprintln!(
                    "* blocked: broker {} is cut off from the primary component of the mesh; \
                     nothing is delivered until it is back",
                    client.broker_id()
                ),
                Some(Ok(SubscriptionEvent::Unblocked)) => eprintln!(
                    "* unblocked: broker {} is back in the primary component; nothing was missed",
                    client.broker_id()
                ),
                Some(Ok(SubscriptionEvent::Rejoined(r))) => eprintln!(
                    "* rejoined: broker {} was excluded while cut off and rejoined the mesh as \
                     incarnation {} (this session is now {}); messages delivered meanwhile \
                     may be missing",
                    client.broker_id(),
                    r.incarnation,
                    r.member
                ),
                Some(Ok(SubscriptionEvent::Reconnected(r))) => eprintln!("* {r}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("{e}"),
                None => break,
            },
            _ = shutdown_signal() => break,
        }
    }
    drop(sub);
    client.close().await;
    Ok(())
}

async fn run_demo(args: DemoArgs) -> Result<()> {
    let config = args.config.load()?;
    init_logs(&config.log.level);
    let broker = node::start(config).await.context("starting the broker")?;
    print_banner(&broker);
    let opts = ClientOptions::new(broker.client_addr).ca_file(&broker.ca_cert);
    let sub_client = Client::connect(opts.clone().name("demo-sub")).await?;
    let mut sub = sub_client.subscribe("demo/**").await?;
    println!("subscribed to demo/**");
    let pub_client = Client::connect(opts.name("demo-pub")).await?;
    for (topic, text) in [
        ("demo/hello", "hello, meshcast"),
        ("demo/orders/eu", "order 1"),
        ("demo/orders/us", "order 2"),
    ] {
        pub_client.publish(topic, text).await?;
        println!("published {topic} {text}");
    }
    pub_client.flush().await?;
    for _ in 0..3 {
        match tokio::time::timeout(Duration::from_secs(10), sub.next()).await {
            Ok(Some(Ok(m))) => println!(
                "received  {} {} (publisher {}, seq {})",
                m.topic,
                String::from_utf8_lossy(&m.payload),
                m.publisher,
                m.seq
            ),
            other => bail!("demo subscriber did not receive its message: {other:?}"),
        }
    }
    drop(sub);
    pub_client.close().await;
    sub_client.close().await;
    if !args.once {
        println!(
            "the broker keeps running: try `meshcast sub 'demo/**'` and `meshcast pub demo/x hi` in other terminals; Ctrl-C stops it"
        );
        shutdown_signal().await;
    }
    broker.shutdown().await;
    Ok(())
}

fn run_certs(args: CertsArgs) -> Result<()> {
    use meshcast_transport::pki;
    let (ca_key, created) = pki::ensure_ca(&args.out)?;
    println!(
        "{} CA {}",
        if created { "created" } else { "reusing" },
        args.out.join("ca.pem").display()
    );
    for name in &args.brokers {
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            bail!("invalid broker id {name:?} for a certificate file name");
        }
        let cert = args.out.join(format!("{name}.pem"));
        let key = args.out.join(format!("{name}-key.pem"));
        let mut names = vec![name.clone()];
        names.extend(args.hosts.iter().cloned());
        pki::issue_files(&ca_key, name, &names, &cert, &key)?;
        println!("issued {} and {}", cert.display(), key.display());
    }
    Ok(())
}

async fn run_status(args: StatusArgs) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(args.admin).await?;
        stream
            .write_all(b"GET /status HTTP/1.1\r\nhost: meshcast\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .context("timed out")?
        .with_context(|| format!("cannot reach the admin endpoint at {}", args.admin))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "admin endpoint answered: {}",
            head.lines().next().unwrap_or("")
        );
    }
    if args.groups {
        let status: serde_json::Value =
            serde_json::from_str(body).context("the admin endpoint's status is not JSON")?;
        print!("{}", group_summary(&status));
    } else {
        print!("{body}");
    }
    Ok(())
}

/// The groups of a `/status` document as text, one block per group.
fn group_summary(status: &serde_json::Value) -> String {
    let mesh = &status["core"]["mesh"];
    let Some(groups) = mesh["group_status"].as_array() else {
        return "not in mesh mode: no groups\n".to_string();
    };
    let mut out = String::new();
    if let Some(node) = mesh["node"].as_str() {
        let blocked = if mesh["blocked"] == true {
            " (blocked: outside the primary component)"
        } else {
            ""
        };
        out += &format!("broker {node}{blocked}\n");
    }
    if let Some(view) = mesh["view"][0].as_str() {
        let brokers: Vec<&str> = mesh["view"][1]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b.as_str())
            .collect();
        out += &format!("mesh view {view}: {}\n", brokers.join(","));
    }
    let links: Vec<String> = status["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{} (rtt {:.1} ms)",
                l["broker"].as_str().unwrap_or("?"),
                l["rtt_ms"].as_f64().unwrap_or(0.0)
            )
        })
        .collect();
    let silent: Vec<String> = status["silent_links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            format!(
                "{} (silent {} ms)",
                l["broker"].as_str().unwrap_or("?"),
                l["heard_ms_ago"]
            )
        })
        .collect();
    if !links.is_empty() || !silent.is_empty() {
        out += &format!("links: {}", links.join(", "));
        if !silent.is_empty() {
            out += &format!("; silent: {}", silent.join(", "));
        }
        out += "\n";
    }
    for g in groups {
        let members = g["members"].as_array().map_or(0, Vec::len);
        let list: Vec<&str> = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            .collect();
        out += &format!(
            "group {} view {}: {members} member(s) {}, sequencer {}\n",
            g["group"].as_str().unwrap_or("?"),
            g["view"].as_str().unwrap_or("?"),
            list.join(","),
            g["sequencer"].as_str().unwrap_or("none"),
        );
        if !g["held"].is_null() {
            out += &format!(
                "  held {}, own unstable {}, decisions held {}, publishes queued {}\n",
                g["held"], g["unstable_own"], g["decisions_held"], g["queued_publishes"],
            );
        }
        for m in g["local"].as_array().into_iter().flatten() {
            let who = match (m["member"].as_str(), m["name"].as_str()) {
                (Some(member), Some(name)) if !name.is_empty() => format!("{member} {name}"),
                (Some(member), _) => member.to_string(),
                _ => format!("session {}", m["session"]),
            };
            out += &format!(
                "  {who} ({}): {} frame(s), {} byte(s) queued, {} awaiting confirmation\n",
                m["by"].as_str().unwrap_or("?"),
                m["queued_frames"],
                m["queued_bytes"],
                m["pending_confirms"],
            );
        }
    }
    out
}

async fn run_bench(args: BenchArgs) -> Result<()> {
    init_logs("warn");
    let scenarios: Vec<&str> = match args.scenario.as_str() {
        "all" => vec!["fanout", "latency"],
        "fanout" => vec!["fanout"],
        "latency" => vec!["latency"],
        "mesh" => return run_mesh_bench(&args).await,
        other => bail!("unknown scenario {other:?} (expected fanout, latency, mesh or all)"),
    };
    let mut embedded = None;
    let (target, _tmp) = match args.server {
        Some(addr) => {
            let ca = args
                .ca
                .clone()
                .context("--server needs --ca (the broker's CA certificate)")?;
            (ClientOptions::new(addr).ca_file(ca), None)
        }
        None => {
            let dir = std::env::temp_dir().join(format!("meshcast-bench-{}", std::process::id()));
            let overrides = vec![
                ("broker.data_dir".to_string(), dir.display().to_string()),
                ("broker.client_listen".into(), "127.0.0.1:0".into()),
                ("broker.peer_listen".into(), "127.0.0.1:0".into()),
                ("broker.admin_listen".into(), "off".into()),
            ];
            let config = Config::load(None, Vec::new(), &overrides)?;
            let b = node::start(config).await?;
            let opts = ClientOptions::new(b.client_addr).ca_file(&b.ca_cert);
            embedded = Some(b);
            (opts, Some(TempDir(dir)))
        }
    };
    let target = bench::Target { opts: target };
    let mut table = cli_output::BenchTable::default();
    for s in scenarios {
        match s {
            "fanout" => {
                let params = bench::FanoutParams {
                    messages: args.messages,
                    sizes: args.sizes.clone(),
                    subscribers: args.subscribers,
                    window: args.window,
                };
                let progress = cli_output::Progress::start(&format!(
                    "fanout: {} message(s) of {:?} B to {} subscriber(s)",
                    params.messages, params.sizes, params.subscribers
                ));
                let results = bench::fanout(&target, &params).await;
                progress.stop();
                for r in results? {
                    if args.json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        table.fanout(&r);
                    }
                }
            }
            _ => {
                let params = bench::LatencyParams {
                    rate: args.rate,
                    duration: Duration::from_secs(args.seconds),
                    size: 128,
                };
                let progress = cli_output::Progress::start(&format!(
                    "latency: {} message(s)/s for {} s",
                    params.rate, args.seconds
                ));
                let r = bench::latency(&target, &params).await;
                progress.stop();
                let r = r?;
                if args.json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    table.latency(&r);
                }
            }
        }
    }
    if let Some(b) = embedded {
        b.shutdown().await;
    }
    print!("{}", table.render());
    Ok(())
}

/// `meshcast bench --scenario mesh`: three brokers in this process, linked
/// over loopback QUIC with a fresh cluster CA.
async fn run_mesh_bench(args: &BenchArgs) -> Result<()> {
    use meshcast_transport::pki;
    let params = bench::MeshParams {
        messages: args.messages,
        size: args.sizes.first().copied().unwrap_or(128),
        window: args.window,
    };
    if !args.servers.is_empty() {
        let opts: Vec<ClientOptions> = args
            .servers
            .iter()
            .map(|a| {
                let o = ClientOptions::new(*a);
                match &args.ca {
                    Some(ca) => o.ca_file(ca),
                    None => o,
                }
            })
            .collect();
        return print_mesh_results(args, &opts, &params).await;
    }
    let dir =
        TempDir(std::env::temp_dir().join(format!("meshcast-bench-mesh-{}", std::process::id())));
    let (ca_key, _) = pki::ensure_ca(&dir.0)?;
    let names = ["m1", "m2", "m3"];
    let mut addrs = Vec::new();
    for _ in names {
        // A port that was free a moment ago; peers must know it in advance.
        addrs.push(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?);
    }
    let mut brokers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let cert = dir.0.join(format!("{name}.pem"));
        let key = dir.0.join(format!("{name}-key.pem"));
        pki::issue_files(&ca_key, name, &[name.to_string()], &cert, &key)?;
        let peers: Vec<String> = names
            .iter()
            .zip(&addrs)
            .filter(|(n, _)| *n != name)
            .map(|(n, a)| format!("{{id=\"{n}\",addr=\"{a}\"}}"))
            .collect();
        let overrides = vec![
            ("broker.id".to_string(), name.to_string()),
            (
                "broker.data_dir".into(),
                dir.0.join(name).display().to_string(),
            ),
            ("broker.client_listen".into(), "127.0.0.1:0".into()),
            ("broker.peer_listen".into(), addrs[i].to_string()),
            ("broker.admin_listen".into(), "off".into()),
            (
                "tls.ca_cert".into(),
                dir.0.join("ca.pem").display().to_string(),
            ),
            ("tls.cert".into(), cert.display().to_string()),
            ("tls.key".into(), key.display().to_string()),
            ("mesh.peers".into(), format!("[{}]", peers.join(","))),
            ("mesh.bootstrap".into(), (i == 0).to_string()),
        ];
        let config = Config::load(None, Vec::new(), &overrides)?;
        brokers.push(node::start(config).await?);
    }
    let opts: Vec<ClientOptions> = brokers
        .iter()
        .map(|b| ClientOptions::new(b.client_addr).ca_file(&b.ca_cert))
        .collect();
    let printed = print_mesh_results(args, &opts, &params).await;
    for b in brokers {
        b.shutdown().await;
    }
    printed
}

/// Runs the mesh scenario and prints its results (table or JSON lines).
async fn print_mesh_results(
    args: &BenchArgs,
    opts: &[ClientOptions],
    params: &bench::MeshParams,
) -> Result<()> {
    let progress = cli_output::Progress::start(&format!(
        "mesh: {} message(s) over {} broker(s), fifo, total and total+safe",
        params.messages,
        opts.len()
    ));
    let results = bench::mesh(opts, params).await;
    progress.stop();
    let mut table = cli_output::BenchTable::default();
    for r in results? {
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            table.mesh(&r);
        }
    }
    print!("{}", table.render());
    Ok(())
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
