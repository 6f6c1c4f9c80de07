//! Semantic checks of a deserialized [`Config`].

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::{Config, ConfigError, node_name};

/// Longest `broker.id` / `broker.site`, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest group prefix or group name accepted here, in bytes (the broker may be stricter).
pub const MAX_GROUP_FIELD_LEN: usize = 1024;
/// Largest accepted `limits.max_frame_bytes` (64 MiB, the transport's hard frame limit).
pub const MAX_FRAME_BYTES_LIMIT: u32 = 64 << 20;
/// Bytes of a frame kept free beside the largest payload: the topic (at most
/// 512 bytes) and the message header.
pub const FRAME_HEADROOM: u64 = 1024;
/// Largest accepted timeout in `[limits]` and `[mesh]`, in milliseconds (one day).
pub const MAX_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// Largest accepted `limits.max_streams_per_session`.
pub const MAX_STREAMS_PER_SESSION: u32 = 1024;

/// Smallest `mesh.publish_backlog`: the runtime reads client commands in
/// batches of up to 1024 and needs room for one whole batch.
pub const MIN_PUBLISH_BACKLOG: usize = 2048;

impl Config {
    /// Checks the values against each other and against their bounds.
    ///
    /// Rules: `broker.id` (if set) and `broker.site` are 1 to 64 printable
    /// ASCII characters without spaces; `broker.data_dir` is not empty; the
    /// listen addresses differ (except port 0, which picks a free port);
    /// every `[limits]` value is at least 1 (except `publish_messages_per_s`
    /// and `publish_bytes_per_s`, where 0 means no limit; a non-zero
    /// `publish_bytes_per_s` is at least `max_payload_bytes`),
    /// `max_streams_per_session` is at most 1024, `max_payload_bytes` is less than
    /// `max_frame_bytes`, which is at most 64 MiB, and timeouts are at most one
    /// day; `[tls]` has all three files or none, none of them empty; each
    /// group rule has a non-empty prefix and group without control
    /// characters, and no prefix appears twice; `log.level` is not empty.
    ///
    /// `[mesh]`: every timeout and size is at least 1, timeouts at most one
    /// day; `suspect_timeout_ms` is greater than `heartbeat_ms`;
    /// `reconnect_min_ms` is at most `reconnect_max_ms`; `state_chunk_bytes`
    /// is less than `limits.max_frame_bytes`; `bootstrap = false` needs
    /// peers; with peers, `broker.id` must be set explicitly; each peer id
    /// follows the rules of `broker.id`, and the peer ids and this broker's id
    /// are all different, as are their [`node_name`]s; peer addresses are
    /// distinct, not port 0, and none is one of this broker's listen
    /// addresses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.broker;
        if !b.id.is_empty() {
            check_name("broker.id", &b.id)?;
        }
        check_name("broker.site", &b.site)?;
        if b.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                "broker.data_dir",
                "\"\"",
                "must not be empty (Config::load fills in the platform default)",
            ));
        }

        let mut addrs: Vec<(&str, SocketAddr)> = vec![
            ("broker.client_listen", b.client_listen),
            ("broker.peer_listen", b.peer_listen),
        ];
        if let Some(a) = b.admin_listen {
            addrs.push(("broker.admin_listen", a));
        }
        for (i, (key, addr)) in addrs.iter().enumerate() {
            for (other_key, other) in &addrs[..i] {
                if addr == other && addr.port() != 0 {
                    return Err(ConfigError::invalid(
                        *key,
                        format!("\"{addr}\""),
                        format!("must differ from {other_key}"),
                    ));
                }
            }
        }

        let l = &self.limits;
        at_least_one("limits.max_frame_bytes", u64::from(l.max_frame_bytes))?;
        at_least_one("limits.max_payload_bytes", u64::from(l.max_payload_bytes))?;
        at_least_one("limits.subscriber_queue", l.subscriber_queue as u64)?;
        at_least_one(
            "limits.subscriber_queue_bytes",
            l.subscriber_queue_bytes as u64,
        )?;
        at_least_one("limits.max_sessions", l.max_sessions as u64)?;
        at_least_one(
            "limits.max_connections_per_address",
            l.max_connections_per_address as u64,
        )?;
        at_least_one(
            "limits.max_connections_per_user",
            l.max_connections_per_user as u64,
        )?;
        at_least_one(
            "limits.max_streams_per_session",
            u64::from(l.max_streams_per_session),
        )?;
        at_least_one("limits.publish_burst", u64::from(l.publish_burst))?;
        if l.max_streams_per_session > MAX_STREAMS_PER_SESSION {
            return Err(ConfigError::invalid(
                "limits.max_streams_per_session",
                l.max_streams_per_session,
                format!("must be at most {MAX_STREAMS_PER_SESSION}"),
            ));
        }
        if l.publish_bytes_per_s != 0 && l.publish_bytes_per_s < u64::from(l.max_payload_bytes) {
            return Err(ConfigError::invalid(
                "limits.publish_bytes_per_s",
                l.publish_bytes_per_s,
                format!(
                    "must be 0 (no limit) or at least limits.max_payload_bytes ({}), or the \
                     largest message could never be published",
                    l.max_payload_bytes
                ),
            ));
        }
        at_least_one(
            "limits.max_subscriptions_per_session",
            l.max_subscriptions_per_session as u64,
        )?;
        at_least_one("limits.handshake_timeout_ms", l.handshake_timeout_ms)?;
        at_least_one("limits.idle_timeout_ms", l.idle_timeout_ms)?;
        at_least_one("limits.session_timeout_ms", l.session_timeout_ms)?;
        at_least_one("limits.max_pending_confirms", l.max_pending_confirms as u64)?;
        at_least_one("limits.match_cache_entries", l.match_cache_entries as u64)?;
        at_least_one("limits.publish_queue", l.publish_queue as u64)?;
        at_least_one("limits.metrics_max_groups", l.metrics_max_groups as u64)?;
        at_least_one("log.peer_warn_interval_ms", self.log.peer_warn_interval_ms)?;
        if l.max_frame_bytes > MAX_FRAME_BYTES_LIMIT {
            return Err(ConfigError::invalid(
                "limits.max_frame_bytes",
                l.max_frame_bytes,
                format!("must be at most {MAX_FRAME_BYTES_LIMIT} (64 MiB)"),
            ));
        }
        if u64::from(l.max_payload_bytes) + FRAME_HEADROOM > u64::from(l.max_frame_bytes) {
            return Err(ConfigError::invalid(
                "limits.max_payload_bytes",
                l.max_payload_bytes,
                format!(
                    "must be less than limits.max_frame_bytes ({}) by at least {FRAME_HEADROOM} bytes, \
                     which the frame also holds (topic and header)",
                    l.max_frame_bytes
                ),
            ));
        }
        if l.subscriber_queue_bytes < l.max_frame_bytes as usize {
            return Err(ConfigError::invalid(
                "limits.subscriber_queue_bytes",
                l.subscriber_queue_bytes,
                format!(
                    "must be at least limits.max_frame_bytes ({}), or one large message would mark any subscriber slow",
                    l.max_frame_bytes
                ),
            ));
        }
        for (key, ms) in [
            ("limits.handshake_timeout_ms", l.handshake_timeout_ms),
            ("limits.idle_timeout_ms", l.idle_timeout_ms),
            ("limits.session_timeout_ms", l.session_timeout_ms),
        ] {
            if ms > MAX_TIMEOUT_MS {
                return Err(ConfigError::invalid(
                    key,
                    ms,
                    format!("must be at most {MAX_TIMEOUT_MS} (one day)"),
                ));
            }
        }

        self.validate_mesh()?;

        let t = &self.tls;
        let files = [
            ("tls.ca_cert", &t.ca_cert),
            ("tls.cert", &t.cert),
            ("tls.key", &t.key),
        ];
        for (key, path) in files {
            if path.as_deref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(ConfigError::invalid(
                    key,
                    "\"\"",
                    "must not be empty; leave it out instead",
                ));
            }
        }
        if !t.uses_dev_ca() {
            let given: Vec<&str> = files
                .iter()
                .filter(|(_, p)| p.is_some())
                .map(|(k, _)| *k)
                .collect();
            if let Some((missing, _)) = files.iter().find(|(_, p)| p.is_none()) {
                return Err(ConfigError::Missing {
                    key: missing.to_string(),
                    reason: format!(
                        "tls.ca_cert, tls.cert and tls.key must be given together (or none, to use the \
                         development CA), and {} {} set",
                        given.join(" and "),
                        if given.len() == 1 { "is" } else { "are" }
                    ),
                });
            }
        }

        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in self.groups.iter().enumerate() {
            check_group_field(&format!("groups[{i}].prefix"), &rule.prefix)?;
            check_group_field(&format!("groups[{i}].group"), &rule.group)?;
            if let Some(first) = seen.insert(rule.prefix.as_str(), i) {
                return Err(ConfigError::invalid(
                    format!("groups[{i}].prefix"),
                    format!("{:?}", rule.prefix),
                    format!("duplicates groups[{first}].prefix"),
                ));
            }
        }

        crate::auth::validate(&self.auth, &self.permissions)?;

        let level = &self.log.level;
        if level.trim().is_empty() || level.chars().any(char::is_control) {
            return Err(ConfigError::invalid(
                "log.level",
                format!("{level:?}"),
                "must be a non-empty tracing filter directive such as \"info\" or \"info,meshcast=debug\"",
            ));
        }
        Ok(())
    }
}

impl Config {
    fn validate_mesh(&self) -> Result<(), ConfigError> {
        let m = &self.mesh;
        let timeouts = [
            ("mesh.heartbeat_ms", m.heartbeat_ms),
            ("mesh.suspect_timeout_ms", m.suspect_timeout_ms),
            ("mesh.flush_timeout_ms", m.flush_timeout_ms),
            ("mesh.join_retry_ms", m.join_retry_ms),
            ("mesh.reconnect_min_ms", m.reconnect_min_ms),
            ("mesh.reconnect_max_ms", m.reconnect_max_ms),
            ("mesh.ack_delay_ms", m.ack_delay_ms),
        ];
        for (key, ms) in timeouts {
            at_least_one(key, ms)?;
            if ms > MAX_TIMEOUT_MS {
                return Err(ConfigError::invalid(
                    key,
                    ms,
                    format!("must be at most {MAX_TIMEOUT_MS} (one day)"),
                ));
            }
        }
        at_least_one("mesh.state_chunk_bytes", m.state_chunk_bytes as u64)?;
        at_least_one("mesh.link_queue", m.link_queue as u64)?;
        at_least_one("mesh.credit_window", m.credit_window as u64)?;
        at_least_one("mesh.ack_every", m.ack_every)?;
        if m.ack_every > m.credit_window as u64 {
            return Err(ConfigError::invalid(
                "mesh.ack_every",
                m.ack_every,
                format!(
                    "must be at most mesh.credit_window ({}), or senders wait for \
                     acknowledgements that come only with heartbeats",
                    m.credit_window
                ),
            ));
        }
        if m.publish_backlog < MIN_PUBLISH_BACKLOG {
            return Err(ConfigError::invalid(
                "mesh.publish_backlog",
                m.publish_backlog,
                format!("must be at least {MIN_PUBLISH_BACKLOG} (two batches of client commands)"),
            ));
        }
        if m.suspect_timeout_ms <= m.heartbeat_ms {
            return Err(ConfigError::invalid(
                "mesh.suspect_timeout_ms",
                m.suspect_timeout_ms,
                format!(
                    "must be greater than mesh.heartbeat_ms ({}), or peers are suspected between two \
                     heartbeats",
                    m.heartbeat_ms
                ),
            ));
        }
        if m.reconnect_min_ms > m.reconnect_max_ms {
            return Err(ConfigError::invalid(
                "mesh.reconnect_min_ms",
                m.reconnect_min_ms,
                format!(
                    "must be at most mesh.reconnect_max_ms ({})",
                    m.reconnect_max_ms
                ),
            ));
        }
        if m.max_message_bytes < u64::from(self.limits.max_frame_bytes) {
            return Err(ConfigError::invalid(
                "mesh.max_message_bytes",
                m.max_message_bytes,
                format!(
                    "must be at least limits.max_frame_bytes ({})",
                    self.limits.max_frame_bytes
                ),
            ));
        }
        if m.state_chunk_bytes as u64 >= u64::from(self.limits.max_frame_bytes) {
            return Err(ConfigError::invalid(
                "mesh.state_chunk_bytes",
                m.state_chunk_bytes,
                format!(
                    "must be less than limits.max_frame_bytes ({}), which also holds the frame header",
                    self.limits.max_frame_bytes
                ),
            ));
        }

        if m.peers.is_empty() {
            if m.bootstrap == Some(false) {
                return Err(ConfigError::invalid(
                    "mesh.bootstrap",
                    false,
                    "nothing to join: mesh.peers is empty; list the brokers to join through in \
                     mesh.peers, or set mesh.bootstrap to true or \"auto\"",
                ));
            }
            return Ok(());
        }
        if self.broker.id.is_empty() {
            return Err(ConfigError::Missing {
                key: "broker.id".to_string(),
                reason: format!(
                    "mesh.peers is not empty, so this broker needs an explicit id that the other \
                     brokers can list as one of their peers (the derived id would be {:?})",
                    self.broker_id()
                ),
            });
        }

        let own_id = self.broker_id();
        let mut own_addrs: Vec<(&str, SocketAddr)> = vec![
            ("broker.peer_listen", self.broker.peer_listen),
            ("broker.client_listen", self.broker.client_listen),
        ];
        if let Some(a) = self.broker.admin_listen {
            own_addrs.push(("broker.admin_listen", a));
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut addrs: HashMap<SocketAddr, usize> = HashMap::new();
        for (i, peer) in m.peers.iter().enumerate() {
            let id_key = format!("mesh.peers[{i}].id");
            check_name(&id_key, &peer.id)?;
            if peer.id == own_id {
                return Err(ConfigError::invalid(
                    id_key,
                    format!("{:?}", peer.id),
                    "is this broker's own id (broker.id); list only the other brokers",
                ));
            }
            if let Some(first) = ids.insert(peer.id.as_str(), i) {
                return Err(ConfigError::invalid(
                    id_key,
                    format!("{:?}", peer.id),
                    format!("duplicates mesh.peers[{first}].id"),
                ));
            }

            let addr_key = format!("mesh.peers[{i}].addr");
            let addr = peer.addr;
            if addr.port() == 0 {
                return Err(ConfigError::invalid(
                    addr_key,
                    format!("\"{addr}\""),
                    "must name the peer's port (port 0 cannot be dialled)",
                ));
            }
            if let Some((own_key, _)) = own_addrs.iter().find(|(_, own)| *own == addr) {
                return Err(ConfigError::invalid(
                    addr_key,
                    format!("\"{addr}\""),
                    format!("must differ from {own_key}, this broker's own address"),
                ));
            }
            if let Some(first) = addrs.insert(addr, i) {
                return Err(ConfigError::invalid(
                    addr_key,
                    format!("\"{addr}\""),
                    format!("duplicates mesh.peers[{first}].addr"),
                ));
            }
        }

        let mut names: HashMap<u32, (String, &str)> = HashMap::new();
        names.insert(node_name(&own_id), ("broker.id".to_string(), &own_id));
        for (i, peer) in m.peers.iter().enumerate() {
            let name = node_name(&peer.id);
            let key = format!("mesh.peers[{i}].id");
            if let Some((other_key, other_id)) = names.get(&name) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{:?}", peer.id),
                    format!(
                        "has the same node name ({name:#010x}, the FNV-1a hash of the id) as \
                         {other_key} {other_id:?}; rename one of the two brokers"
                    ),
                ));
            }
            names.insert(name, (key, &peer.id));
        }
        Ok(())
    }
}

fn at_least_one(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, value, "must be at least 1"));
    }
    Ok(())
}

fn check_name(key: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAME_LEN
        && value.bytes().all(|c| c.is_ascii_graphic());
    if !ok {
        return Err(ConfigError::invalid(
            key,
            format!("{value:?}"),
            format!("must be 1 to {MAX_NAME_LEN} printable ASCII characters without spaces"),
        ));
    }
    Ok(())
}

fn check_group_field(key: &str, value: &str) -> Result<(), ConfigError> {
    let reason = if value.trim().is_empty() {
        Some("must not be empty".to_string())
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".to_string())
    } else if value.len() > MAX_GROUP_FIELD_LEN {
        Some(format!("must be at most {MAX_GROUP_FIELD_LEN} bytes"))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConfigError::invalid(key, format!("{value:?}"), reason)),
        None => Ok(()),
    }
}
