//! Shared helpers for the meshcast example programs: flags, connecting, and
//! reading stdin lines from async code; [`roster`] names chat members.

pub mod roster;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use meshcast_client::{Client, ClientOptions, ServerAddr};
use tokio::sync::mpsc;

/// Flags every example takes (`--server`, `--ca`) plus its own.
pub struct Flags {
    /// The brokers' client addresses (default `127.0.0.1:4810`, broker b1
    /// of `examples/mesh`); `--server` takes `HOST:PORT` or `IP:PORT`, or
    /// several separated by commas (the client moves to the next one when
    /// its connection is lost).
    pub server: Vec<ServerAddr>,
    /// The CA to trust (default `examples/mesh/certs/ca.pem`).
    pub ca: PathBuf,
    /// The example's own flags, by name without `--`.
    pub extra: HashMap<String, String>,
}

impl Flags {
    /// Parses `--flag value` pairs; `own` lists the example's own flags.
    pub fn parse(own: &[&str]) -> Result<Flags> {
        let mut flags = Flags {
            server: ServerAddr::parse_list("127.0.0.1:4810")?,
            ca: PathBuf::from("examples/mesh/certs/ca.pem"),
            extra: HashMap::new(),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            match flag.trim_start_matches("--") {
                "server" => flags.server = ServerAddr::parse_list(&value).context("--server")?,
                "ca" => flags.ca = value.into(),
                name if own.contains(&name) => {
                    flags.extra.insert(name.to_string(), value);
                }
                _ => bail!(
                    "unknown flag {flag} (use --server, --ca{})",
                    own.iter().map(|o| format!(", --{o}")).collect::<String>()
                ),
            }
        }
        Ok(flags)
    }

    /// One of the example's own flags, or `default`.
    pub fn get(&self, name: &str, default: &str) -> String {
        self.extra
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    /// Connects to the broker as `name`.
    pub async fn connect(&self, name: &str) -> Result<Client> {
        let opts = ClientOptions::with_servers(self.server.clone())
            .ca_file(&self.ca)
            .name(name);
        Ok(Client::connect(opts).await?)
    }
}

/// Lines typed on stdin, read by a thread (stdin blocks) and handed over on
/// a bounded channel; it closes at the end of input.
pub fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}
