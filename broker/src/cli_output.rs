//! What the `meshcast` command prints for people: one-line errors, the
//! `bench` summary table and progress, and `config check`'s findings.

use std::error::Error;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use meshcast_config::Config;

use crate::bench::{FanoutResult, LatencyResult, MeshResult};

/// An error and its causes as one line: `outer: cause: root`, leaving out
/// a cause whose text the line already holds (many errors repeat their
/// source in their own message).
pub fn error_line(e: &(dyn Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = s.source();
    }
    line
}

/// What is wrong with a configuration that loaded (its keys and values are
/// valid) but would not start a working broker: TLS files that cannot be
/// used, a mesh without a cluster CA, a peer at this broker's own peer
/// address, a peer listed twice, an invalid group map. Empty when nothing is.
pub fn config_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    let tls = &config.tls;
    match (&tls.cert, &tls.key, &tls.ca_cert) {
        (Some(cert), Some(key), Some(ca)) => {
            if let Err(e) = meshcast_transport::pki::load_identity(cert, key, ca) {
                problems.push(format!("tls: {}", error_line(&e)));
            }
        }
        (None, None, None) => {
            if !config.mesh.peers.is_empty() {
                problems.push(
                    "mesh.peers is set but tls.ca_cert/cert/key are not: brokers of a mesh \
                     need certificates from one cluster CA (create them with `meshcast certs`)"
                        .to_string(),
                );
            }
        }
        _ => problems
            .push("tls: give all three of tls.ca_cert, tls.cert and tls.key, or none".to_string()),
    }
    let mut seen = std::collections::HashSet::new();
    for p in &config.mesh.peers {
        if p.addr == config.broker.peer_listen {
            problems.push(format!(
                "mesh.peers: {:?} has this broker's own broker.peer_listen address {}",
                p.id, p.addr
            ));
        }
        if !seen.insert(p.id.as_str()) {
            problems.push(format!("mesh.peers lists {:?} twice", p.id));
        }
    }
    let rules = config
        .groups
        .iter()
        .map(|r| meshcast_topics::GroupRule {
            prefix: r.prefix.clone(),
            group: r.group.clone(),
        })
        .collect();
    if let Err(e) = meshcast_topics::GroupMap::new(rules) {
        problems.push(format!("groups: {}", error_line(&e)));
    }
    if let Some(ca) = &config.auth.client_ca {
        if let Err(e) = meshcast_transport::pki::load_certs(ca) {
            problems.push(format!("auth.client_ca: {}", error_line(&e)));
        }
    }
    if config.auth.enabled() && config.permissions.is_empty() {
        problems.push(
            "[auth] is set but there is no [[permissions]] rule: authenticated clients would be \
             refused every publish, subscribe and join (deny by default)"
                .to_string(),
        );
    }
    problems
}

/// The effective settings an operator checks first, one per line.
pub fn config_summary(config: &Config) -> String {
    let b = &config.broker;
    let m = &config.mesh;
    let mut out = String::new();
    let _ = writeln!(out, "  broker.id      {}", config.broker_id());
    let _ = writeln!(out, "  broker.site    {}", b.site);
    let _ = writeln!(out, "  client_listen  {}", b.client_listen);
    let _ = writeln!(out, "  peer_listen    {}", b.peer_listen);
    let admin = b.admin_listen.map_or("off".to_string(), |a| a.to_string());
    let _ = writeln!(out, "  admin_listen   {admin}");
    let _ = writeln!(out, "  data_dir       {}", b.data_dir.display());
    if m.peers.is_empty() {
        let _ = writeln!(out, "  mesh           single broker (no mesh.peers)");
    } else {
        let peers: Vec<String> = m
            .peers
            .iter()
            .map(|p| format!("{}@{}", p.id, p.addr))
            .collect();
        let bootstrap = match m.bootstrap {
            Some(true) => "true",
            Some(false) => "false",
            None => "auto",
        };
        let _ = writeln!(out, "  mesh.peers     {}", peers.join(", "));
        let _ = writeln!(out, "  mesh.bootstrap {bootstrap}");
        let _ = writeln!(
            out,
            "  failure detection: heartbeat {} ms, suspect after {} ms",
            m.heartbeat_ms, m.suspect_timeout_ms
        );
    }
    let tls = match &config.tls.cert {
        Some(cert) => format!("certificate {}", cert.display()),
        None => "development CA in data_dir".to_string(),
    };
    let _ = writeln!(out, "  tls            {tls}");
    let auth = &config.auth;
    let auth_line = if auth.enabled() {
        format!(
            "{}{} user(s), {} permission rule(s), digest {:016x}",
            match &auth.client_ca {
                Some(ca) => format!("client certificates under {}, ", ca.display()),
                None => String::new(),
            },
            auth.users.len(),
            config.permissions.len(),
            config.auth_digest()
        )
    } else {
        "off (development mode: clients are not authenticated)".to_string()
    };
    let _ = writeln!(out, "  auth           {auth_line}");
    let _ = writeln!(out, "  groups         {} rule(s)", config.groups.len());
    let _ = writeln!(out, "  log.level      {}", config.log.level);
    out
}

/// A progress line on standard error while a benchmark runs, only when
/// standard error is a terminal (nothing in pipes and logs).
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts showing `label` with the elapsed time. Must be called inside
    /// a tokio runtime.
    pub fn start(label: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { task: None };
        }
        let label = label.to_string();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let frames = ['|', '/', '-', '\\'];
            let mut i = 0;
            loop {
                eprint!(
                    "\r{} {label} ({:.0} s)\x1b[K",
                    frames[i % frames.len()],
                    started.elapsed().as_secs_f64()
                );
                i += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Progress { task: Some(task) }
    }

    /// Stops and clears the progress line.
    pub fn stop(self) {
        if let Some(t) = self.task {
            t.abort();
            eprint!("\r\x1b[K");
        }
    }
}

/// The results of `meshcast bench` as a table for people.
#[derive(Debug, Default)]
pub struct BenchTable {
    fanout: Vec<[String; 7]>,
    latency: Vec<[String; 8]>,
    mesh: Vec<[String; 6]>,
}

fn yes_no(ok: bool) -> String {
    if ok { "yes" } else { "NO" }.to_string()
}

fn rate(msgs_per_s: f64) -> String {
    if msgs_per_s >= 10_000.0 {
        format!("{:.0}k", msgs_per_s / 1000.0)
    } else {
        format!("{msgs_per_s:.0}")
    }
}

impl BenchTable {
    /// Adds a fanout result.
    pub fn fanout(&mut self, r: &FanoutResult) {
        self.fanout.push([
            format!("{} B", r.size),
            r.messages.to_string(),
            r.subscribers.to_string(),
            rate(r.min_msgs_per_s),
            format!("{:.1}", r.min_mb_per_s),
            yes_no(r.all_arrived && r.in_order),
            format!("{:.2}", r.elapsed_s),
        ]);
    }

    /// Adds a latency result.
    pub fn latency(&mut self, r: &LatencyResult) {
        self.latency.push([
            format!("{} B", r.size),
            r.rate.to_string(),
            r.messages.to_string(),
            r.p50_us.to_string(),
            r.p90_us.to_string(),
            r.p99_us.to_string(),
            r.p999_us.to_string(),
            r.max_us.to_string(),
        ]);
    }

    /// Adds a mesh result.
    pub fn mesh(&mut self, r: &MeshResult) {
        self.mesh.push([
            r.mode.to_string(),
            r.brokers.to_string(),
            format!("{} B", r.size),
            r.messages.to_string(),
            rate(r.min_msgs_per_s),
            yes_no(r.all_arrived && r.in_order && r.same_order),
        ]);
    }

    /// The table, one section per scenario that has results.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.fanout.is_empty() {
            out += "fanout (1 publisher, N subscribers; slowest subscriber)\n";
            out += &grid(
                &[
                    "size",
                    "messages",
                    "subs",
                    "msg/s",
                    "MB/s",
                    "all in order",
                    "seconds",
                ],
                &self.fanout,
            );
        }
        if !self.latency.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out += "latency (one-way, microseconds)\n";
            out += &grid(
                &[
                    "size", "rate/s", "messages", "p50", "p90", "p99", "p99.9", "max",
                ],
                &self.latency,
            );
        }
        if !self.mesh.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out += "mesh (publisher on the first broker, a subscriber on each; slowest)\n";
            out += &grid(
                &[
                    "mode",
                    "brokers",
                    "size",
                    "messages",
                    "msg/s",
                    "same order everywhere",
                ],
                &self.mesh,
            );
        }
        out
    }
}

/// Left-aligned columns, two spaces apart.
fn grid<const N: usize>(head: &[&str; N], rows: &[[String; N]]) -> String {
    let mut width = head.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let _ = write!(l, "{c:<w$}  ", w = width[i]);
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(head.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read {0}: {1}")]
    struct Repeats(String, #[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("starting the broker")]
    struct Outer(#[source] Repeats);

    #[test]
    fn a_cause_is_printed_once_and_only_when_it_adds_something() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Outer(Repeats("a.pem".into(), io));
        assert_eq!(
            error_line(&e),
            "starting the broker: cannot read a.pem: no such file"
        );
    }

    #[test]
    fn the_table_has_a_header_and_a_row_per_result() {
        let mut t = BenchTable::default();
        t.latency(&LatencyResult {
            scenario: "latency",
            size: 128,
            rate: 500,
            messages: 500,
            p50_us: 80,
            p90_us: 120,
            p99_us: 300,
            p999_us: 900,
            max_us: 1200,
        });
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "latency (one-way, microseconds)");
        assert!(
            lines[1].starts_with("size   rate/s  messages  p50"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("128 B  500     500       80"),
            "{text}"
        );
    }

    #[test]
    fn config_problems_name_the_key() {
        let mut c = Config::load(None, Vec::new(), &[]).unwrap();
        let peer = meshcast_config::PeerConfig {
            id: "other".into(),
            addr: c.broker.peer_listen,
        };
        c.mesh.peers = vec![peer.clone(), peer];
        let p = config_problems(&c);
        assert!(
            p.iter().any(|p| p.contains("own broker.peer_listen")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|p| p.contains("lists \"other\" twice")),
            "{p:?}"
        );
        assert!(p.iter().any(|p| p.contains("tls.ca_cert")), "{p:?}");
    }
}
