//! Configuration of a meshcast broker.
//!
//! A [`Config`] is assembled from four layers, each overriding the one before:
//!
//! 1. built-in defaults: with nothing else, a single broker on the loopback
//!    interface with a development CA in its data directory;
//! 2. a TOML file (see `meshcast.example.toml` next to this crate's
//!    `Cargo.toml`, which documents every key);
//! 3. environment variables `MESHCAST_<SECTION>__<KEY>`, e.g.
//!    `MESHCAST_LIMITS__SUBSCRIBER_QUEUE=100` (note the double underscore
//!    between section and key; variables without `__` are ignored);
//! 4. command-line overrides `--set <section>.<key>=<value>`, e.g.
//!    `--set broker.client_listen=127.0.0.1:5000`.
//!
//! [`Config::load`] does all of this, then fills the derived default of
//! `broker.data_dir` and runs [`Config::validate`]. Unknown keys are errors in
//! every layer, and every error names the key (dotted, `limits.subscriber_queue`)
//! and the offending value and where it came from.
//!
//! ```
//! use meshcast_config::Config;
//!
//! let env = vec![("MESHCAST_LIMITS__SUBSCRIBER_QUEUE".to_string(), "100".to_string())];
//! let set = vec![Config::parse_override("broker.site=paris").unwrap()];
//! let config = Config::load(None, env, &set).unwrap();
//! assert_eq!(config.limits.subscriber_queue, 100);
//! assert_eq!(config.broker.site, "paris");
//! assert_eq!(config.broker_id(), "broker-4700");
//! ```

#![forbid(unsafe_code)]

mod auth;
mod error;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_entry;
mod load;
mod validate;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use auth::{
    Action, AuthConfig, CertName, MAX_USER_NAME_LEN, PermissionRule, TokenHash, UserConfig,
    auth_digest,
};
pub use error::{ConfigError, Origin};
pub use load::{ENV_PREFIX, default_data_dir, known_keys, process_env};
pub use validate::{
    MAX_FRAME_BYTES_LIMIT, MAX_GROUP_FIELD_LEN, MAX_NAME_LEN, MAX_STREAMS_PER_SESSION,
    MAX_TIMEOUT_MS,
};

/// Default address for client connections (QUIC): `127.0.0.1:4700`.
pub const DEFAULT_CLIENT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4700);
/// Default address for links from other brokers (QUIC): `127.0.0.1:4701`.
pub const DEFAULT_PEER_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4701);
/// Default address of the admin HTTP endpoint (metrics, status): `127.0.0.1:4702`.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4702);

/// The complete configuration of one broker.
///
/// Every section has defaults, so an empty file (or none) yields a working
/// single broker. Build one with [`Config::load`]; `Config::default()` gives the
/// defaults with `broker.data_dir` derived from the process environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "Config::unresolved")]
pub struct Config {
    /// `[broker]`: identity, addresses and data directory.
    pub broker: BrokerConfig,
    /// `[mesh]`: the other brokers of the mesh and the membership timing.
    pub mesh: MeshConfig,
    /// `[limits]`: sizes, queue bounds and timeouts.
    pub limits: LimitsConfig,
    /// `[tls]`: certificates; all unset means "use the development CA".
    pub tls: TlsConfig,
    /// `[[groups]]`: the group map rules, in order (see the design, §3).
    pub groups: Vec<GroupRule>,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[auth]`: client authentication; unset means development mode
    /// (clients need no credentials).
    pub auth: AuthConfig,
    /// `[[permissions]]`: what authenticated users may do (deny wins; with
    /// `[auth]` set, what no rule allows is refused).
    pub permissions: Vec<PermissionRule>,
}

impl Default for Config {
    /// The built-in defaults, with `broker.data_dir` derived from the process
    /// environment by [`default_data_dir`].
    fn default() -> Self {
        let mut config = Config::unresolved();
        config.broker.data_dir = default_data_dir(&process_env());
        config
    }
}

impl Config {
    /// The defaults with `broker.data_dir` left empty (to be resolved by `load`).
    fn unresolved() -> Self {
        Config {
            broker: BrokerConfig::unresolved(),
            mesh: MeshConfig::default(),
            limits: LimitsConfig::default(),
            tls: TlsConfig::default(),
            groups: Vec::new(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            permissions: Vec::new(),
        }
    }

    /// [`auth_digest`] of `[auth]` and `[[permissions]]`: what brokers of
    /// one mesh compare, with the group map, when they link.
    pub fn auth_digest(&self) -> u64 {
        auth_digest(&self.auth, &self.permissions)
    }

    /// The broker id to use: `broker.id` if set, otherwise `broker-<client port>`
    /// (e.g. `broker-4700`).
    ///
    /// The derived id is only unique among brokers on one host; in a mesh
    /// spanning several hosts, set `broker.id` explicitly on every broker.
    pub fn broker_id(&self) -> String {
        if self.broker.id.is_empty() {
            format!("broker-{}", self.broker.client_listen.port())
        } else {
            self.broker.id.clone()
        }
    }

    /// This broker's node name: [`node_name`] of [`Config::broker_id`].
    pub fn node_name(&self) -> u32 {
        node_name(&self.broker_id())
    }

    /// Writes this configuration as a TOML document (for `meshcast config show` and the like).
    pub fn to_toml_string(&self) -> String {
        // Every field serializes to plain TOML types, so this cannot fail.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot serialize configuration: {e}\n"))
    }
}

/// `[broker]`: who this broker is and where it listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default = "BrokerConfig::unresolved")]
pub struct BrokerConfig {
    /// The stable broker id; empty (the default) means "derive one", see
    /// [`Config::broker_id`]. At most 64 printable ASCII characters, no spaces.
    pub id: String,
    /// The site (data centre) label; default `local`. Same character rules as `id`.
    pub site: String,
    /// Directory for the development CA, certificates and other state.
    ///
    /// Default (when unset or empty): `$XDG_DATA_HOME/meshcast`, else
    /// `$HOME/.local/share/meshcast`, else `./meshcast-data`; see
    /// [`default_data_dir`]. A relative path is relative to the broker's
    /// working directory.
    pub data_dir: PathBuf,
    /// Address for client connections (QUIC over UDP); default `127.0.0.1:4700`.
    #[serde(with = "addr")]
    pub client_listen: SocketAddr,
    /// Address for links from other brokers (QUIC over UDP); default `127.0.0.1:4701`.
    #[serde(with = "addr")]
    pub peer_listen: SocketAddr,
    /// Address of the admin HTTP endpoint (Prometheus metrics, JSON status);
    /// default `127.0.0.1:4702`. In TOML, `"off"` or `""` disables it (`None`).
    #[serde(with = "opt_addr")]
    pub admin_listen: Option<SocketAddr>,
}

impl BrokerConfig {
    fn unresolved() -> Self {
        BrokerConfig {
            id: String::new(),
            site: "local".to_string(),
            data_dir: PathBuf::new(),
            client_listen: DEFAULT_CLIENT_LISTEN,
            peer_listen: DEFAULT_PEER_LISTEN,
            admin_listen: Some(DEFAULT_ADMIN_LISTEN),
        }
    }
}

impl Default for BrokerConfig {
    /// The defaults, with `data_dir` derived from the process environment.
    fn default() -> Self {
        BrokerConfig {
            data_dir: default_data_dir(&process_env()),
            ..BrokerConfig::unresolved()
        }
    }
}

/// The 32-bit number by which the protocol core names the broker with id `id`:
/// the FNV-1a hash (32-bit) of the id's UTF-8 bytes.
///
/// Stable across versions and platforms, so every broker computes the same
/// name for the same id. [`Config::validate`] rejects a configuration in
/// which this broker and its peers do not all have distinct names.
///
/// ```
/// assert_eq!(meshcast_config::node_name(""), 0x811c_9dc5);
/// assert_eq!(meshcast_config::node_name("a"), 0xe40c_292c);
/// ```
pub fn node_name(id: &str) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    id.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    })
}

/// `[mesh]`: how this broker forms a mesh with others.
///
/// With the defaults (no peers) the broker starts a mesh of its own. To join
/// others, list them in `peers` and set `broker.id` explicitly (the others
/// name this broker by it in their own `peers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeshConfig {
    /// Start a new mesh alone (`true`) or join an existing one through
    /// `peers` (`false`). `None`, written `"auto"` in TOML (the default),
    /// means: bootstrap exactly when `peers` is empty; see
    /// [`MeshConfig::bootstraps`]. `false` with no peers is an error.
    #[serde(with = "auto_bool")]
    pub bootstrap: Option<bool>,
    /// The other brokers of the mesh (not this one), each with its id and
    /// peer address; default none. In TOML, `[[mesh.peers]]` tables or
    /// `peers = [{ id = "b2", addr = "10.0.0.2:4701" }]`.
    pub peers: Vec<PeerConfig>,
    /// Interval between heartbeats to each peer, in milliseconds; default 100.
    pub heartbeat_ms: u64,
    /// Silence after which a peer is suspected and removed by a view change,
    /// in milliseconds; default 1000. Must be greater than `heartbeat_ms`.
    pub suspect_timeout_ms: u64,
    /// Time a view-change coordinator waits for the others' flush reports
    /// before suspecting the silent ones, in milliseconds; default 1500.
    pub flush_timeout_ms: u64,
    /// Interval between join requests while joining, in milliseconds; default 300.
    pub join_retry_ms: u64,
    /// Largest chunk of a state transfer, in bytes; default 65536. Must be
    /// less than `limits.max_frame_bytes`.
    pub state_chunk_bytes: usize,
    /// Frames queued per peer link; when a link's queue is full, sending on
    /// it reports the link as full instead of buffering more. Default 65536
    /// (frames).
    pub link_queue: usize,
    /// Dial the peer addresses other brokers announce (in their hellos and
    /// in gossip), not only `peers`; default true, so one configured peer
    /// is enough. Set it to false where the announced addresses must not be
    /// used (brokers behind relays or NATs that only `peers` lead through).
    pub learn_peer_addresses: bool,
    /// Largest protocol message between brokers, in bytes; default 268435456
    /// (256 MiB). A message larger than `limits.max_frame_bytes` (a view
    /// change's report or install carrying many large unstable messages)
    /// travels in several frames and is put together again up to this size;
    /// at least `limits.max_frame_bytes`.
    pub max_message_bytes: u64,
    /// Shortest wait before redialling a peer, in milliseconds; default 50.
    pub reconnect_min_ms: u64,
    /// Longest wait between dial attempts (the backoff doubles from
    /// `reconnect_min_ms` up to this), in milliseconds; default 2000.
    pub reconnect_max_ms: u64,
    /// Credit window: this broker's messages per group that may be in
    /// flight (not yet known received by every broker) before its further
    /// publishes wait; default 1024.
    pub credit_window: usize,
    /// Publishes that may wait for credit, all groups together; the broker
    /// stops reading from its clients before this fills; default 16384.
    /// Must be at least 2048.
    pub publish_backlog: usize,
    /// Acknowledge receipt to the other brokers at once after this many
    /// messages or decisions; default 128. Must be at most
    /// `credit_window`.
    pub ack_every: u64,
    /// Otherwise acknowledge this long after the first unacknowledged
    /// message, in milliseconds; default 1. `safe` messages wait for these.
    pub ack_delay_ms: u64,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            bootstrap: None,
            peers: Vec::new(),
            heartbeat_ms: 100,
            suspect_timeout_ms: 1_000,
            flush_timeout_ms: 1_500,
            join_retry_ms: 300,
            state_chunk_bytes: 65_536,
            link_queue: 65_536,
            learn_peer_addresses: true,
            max_message_bytes: 256 << 20,
            reconnect_min_ms: 50,
            reconnect_max_ms: 2_000,
            credit_window: 1_024,
            publish_backlog: 16_384,
            ack_every: 128,
            ack_delay_ms: 1,
        }
    }
}

impl MeshConfig {
    /// Whether this broker starts a new mesh alone instead of joining through
    /// its peers: `bootstrap` if set, otherwise true exactly when `peers` is
    /// empty.
    pub fn bootstraps(&self) -> bool {
        self.bootstrap.unwrap_or(self.peers.is_empty())
    }

    /// `heartbeat_ms` as a [`Duration`].
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }

    /// `suspect_timeout_ms` as a [`Duration`].
    pub fn suspect_timeout(&self) -> Duration {
        Duration::from_millis(self.suspect_timeout_ms)
    }

    /// `flush_timeout_ms` as a [`Duration`].
    pub fn flush_timeout(&self) -> Duration {
        Duration::from_millis(self.flush_timeout_ms)
    }

    /// `join_retry_ms` as a [`Duration`].
    pub fn join_retry(&self) -> Duration {
        Duration::from_millis(self.join_retry_ms)
    }

    /// `reconnect_min_ms` as a [`Duration`].
    pub fn reconnect_min(&self) -> Duration {
        Duration::from_millis(self.reconnect_min_ms)
    }

    /// `reconnect_max_ms` as a [`Duration`].
    pub fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_ms)
    }
}

/// One `[[mesh.peers]]` entry: another broker of the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's `broker.id` (same character rules).
    pub id: String,
    /// The peer's `broker.peer_listen` address, as reachable from this broker.
    #[serde(with = "addr")]
    pub addr: SocketAddr,
}

impl PeerConfig {
    /// The peer's node name, [`node_name`] of its id.
    pub fn node_name(&self) -> u32 {
        node_name(&self.id)
    }
}

/// `[limits]`: hard bounds that keep one client or peer from exhausting the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest frame accepted on any connection, in bytes; default 4 MiB.
    /// A larger frame closes the connection.
    pub max_frame_bytes: u32,
    /// Largest message payload, in bytes; default 1 MiB. Must be less than
    /// `max_frame_bytes`.
    pub max_payload_bytes: u32,
    /// Messages queued per subscriber session before the session is removed
    /// from its groups as `slow`; default 65536.
    pub subscriber_queue: usize,
    /// Bytes queued per subscriber session before it is treated as slow, like
    /// `subscriber_queue`; default 64 MiB. At least `max_frame_bytes`.
    pub subscriber_queue_bytes: usize,
    /// Most client sessions at once; default 10000.
    pub max_sessions: usize,
    /// Most client connections at once from one source IP address
    /// (handshakes in progress included); default 1000. A connection over
    /// it is closed at once with the close code `TooManyFromAddress`.
    pub max_connections_per_address: usize,
    /// Most client sessions at once of one user; default 1000. With
    /// `[auth]`, a session's user is the one it authenticated as (counted
    /// once authenticated); without it, its source IP address
    /// (`anonymous@<ip>`), so this acts like `max_connections_per_address`
    /// counted after the handshake. A session over it is refused with the
    /// close code `TooManyForUser`.
    pub max_connections_per_user: usize,
    /// Most bidirectional QUIC streams a client may have open at once;
    /// default 1 (the client protocol uses one). Clients may open no
    /// unidirectional stream. QUIC flow control enforces both: a client
    /// cannot open more.
    pub max_streams_per_session: u32,
    /// Publishes and multicasts one session may send per second, on
    /// average (a token bucket refilled at this rate, holding at most
    /// `publish_burst`); over it they are refused with `RateLimited` and
    /// the session stays open. Default 0: no limit (a publisher faster than
    /// the broker is held back by flow control instead).
    pub publish_messages_per_s: u32,
    /// Publishes and multicasts a session may send at once beyond
    /// `publish_messages_per_s` (the bucket's size); default 1000. Used
    /// only when `publish_messages_per_s` is set.
    pub publish_burst: u32,
    /// Payload bytes of publishes and multicasts one session may send per
    /// second, on average (a token bucket holding one second's worth);
    /// over it they are refused with `RateLimited`. Default 0: no limit.
    /// When set, at least `max_payload_bytes`.
    pub publish_bytes_per_s: u64,
    /// Most subscriptions (patterns and joins) per session; default 10000.
    pub max_subscriptions_per_session: usize,
    /// Time allowed for a connection's handshake, in milliseconds; default 5000.
    pub handshake_timeout_ms: u64,
    /// A connection silent for this long is closed, in milliseconds; default 30000.
    /// Client sessions use `session_timeout_ms` instead.
    pub idle_timeout_ms: u64,
    /// A client session not heard from for this long (its keep-alives
    /// included) is closed and its members leave their groups through a
    /// view change, in milliseconds; default 30000.
    pub session_timeout_ms: u64,
    /// Most `safe` publishes of one session awaiting their stability
    /// confirmation; default 10000.
    pub max_pending_confirms: usize,
    /// Entries of the topic → matching-subscriptions cache; default 4096.
    pub match_cache_entries: usize,
    /// Publish batches queued from client sessions to the broker core; default 1024.
    pub publish_queue: usize,
    /// Most distinct groups that get their own `group` label in the
    /// metrics; later groups are counted under `_other`; default 1000.
    pub metrics_max_groups: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_frame_bytes: 4 * 1024 * 1024,
            max_payload_bytes: 1024 * 1024,
            subscriber_queue: 65536,
            subscriber_queue_bytes: 64 * 1024 * 1024,
            max_sessions: 10_000,
            max_connections_per_address: 1000,
            max_connections_per_user: 1000,
            max_streams_per_session: 1,
            publish_messages_per_s: 0,
            publish_burst: 1000,
            publish_bytes_per_s: 0,
            max_subscriptions_per_session: 10_000,
            handshake_timeout_ms: 5_000,
            idle_timeout_ms: 30_000,
            session_timeout_ms: 30_000,
            max_pending_confirms: 10_000,
            match_cache_entries: 4096,
            publish_queue: 1024,
            metrics_max_groups: 1000,
        }
    }
}

impl LimitsConfig {
    /// `handshake_timeout_ms` as a [`Duration`].
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    /// `idle_timeout_ms` as a [`Duration`].
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// `session_timeout_ms` as a [`Duration`].
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }
}

/// `[tls]`: certificate files (PEM).
///
/// Either all three are set, or none: then the broker uses a development CA
/// kept in `broker.data_dir`, generating it and the broker's certificate on
/// first start. Whether the files exist is checked by the broker when it
/// opens them; a relative path is relative to its working directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The cluster CA certificate that peers' and clients' certificates must chain to.
    pub ca_cert: Option<PathBuf>,
    /// This broker's certificate (chain).
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
}

impl TlsConfig {
    /// True when no certificate file is configured, i.e. the development CA is used.
    pub fn uses_dev_ca(&self) -> bool {
        self.ca_cert.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

/// One `[[groups]]` rule: topics under `prefix` belong to `group`.
///
/// Only lightly checked here (non-empty, no control characters, no duplicate
/// prefix); the broker builds and fully validates the group map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// The topic prefix, e.g. `atc/paris`.
    pub prefix: String,
    /// The group name that topics under the prefix belong to.
    pub group: String,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` env-filter directive, e.g. `info` or `info,meshcast=debug`;
    /// default `info`. `RUST_LOG`, if the binary honours it, is separate.
    pub level: String,
    /// Least time between two warnings about the same unreachable peer
    /// address, in milliseconds (the first failure is always logged);
    /// default 30000.
    pub peer_warn_interval_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            peer_warn_interval_ms: 30_000,
        }
    }
}

/// Serde for a [`SocketAddr`] written as a string, with a helpful error.
mod addr {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(value: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(D::Error::custom)
    }

    pub(crate) fn parse(text: &str) -> Result<SocketAddr, String> {
        text.trim().parse().map_err(|_| {
            "expected an IP address and port, e.g. \"127.0.0.1:4700\" or \"[::1]:4700\"".to_string()
        })
    }
}

/// Serde for an optional [`SocketAddr`]: `"off"` or `""` means `None`.
mod opt_addr {
    use super::*;
    use serde::{Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(a) => s.collect_str(a),
            None => s.serialize_str("off"),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        let t = text.trim();
        if t.is_empty() || t.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        super::addr::parse(t)
            .map(Some)
            .map_err(|e| D::Error::custom(format!("{e}, or \"off\" to disable")))
    }
}

/// Serde for an optional bool written `true`, `false` or `"auto"` (`None`).
mod auto_bool {
    use serde::{Deserializer, Serializer, de};
    use std::fmt;

    pub(crate) fn serialize<S: Serializer>(value: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(b) => s.serialize_bool(*b),
            None => s.serialize_str("auto"),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = Option<bool>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("true, false or \"auto\"")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Option<bool>, E> {
                Ok(Some(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<bool>, E> {
                match v.trim().to_ascii_lowercase().as_str() {
                    "auto" => Ok(None),
                    "true" => Ok(Some(true)),
                    "false" => Ok(Some(false)),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
        }

        d.deserialize_any(Visitor)
    }
}
