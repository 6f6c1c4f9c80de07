//! How to reach and trust brokers: [`ClientOptions`] and [`ServerAddr`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use meshcast_transport::Secret;
use meshcast_transport::client_proto::PROTOCOL_VERSION;

use crate::ClientError;

/// A broker's client address: an IP address with its port, or a host name
/// with its port (resolved when connecting, every time).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerAddr {
    /// `127.0.0.1:4700`, `[::1]:4700`.
    Ip(SocketAddr),
    /// `broker1.example.com:4700`, `localhost:4700`.
    Host {
        /// The host name.
        host: String,
        /// The port.
        port: u16,
    },
}

impl ServerAddr {
    /// The host name, if the address is one (its default TLS server name).
    pub fn host_name(&self) -> Option<&str> {
        match self {
            ServerAddr::Ip(_) => None,
            ServerAddr::Host { host, .. } => Some(host),
        }
    }

    /// Parses a comma-separated list (`a:4700,b:4700`); blanks around
    /// entries are ignored.
    pub fn parse_list(list: &str) -> Result<Vec<ServerAddr>, ClientError> {
        let addrs = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if addrs.is_empty() {
            return Err(ClientError::InvalidAddress {
                addr: list.to_string(),
                reason: "no address given".into(),
            });
        }
        Ok(addrs)
    }
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddr::Ip(a) => write!(f, "{a}"),
            ServerAddr::Host { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

impl From<SocketAddr> for ServerAddr {
    fn from(a: SocketAddr) -> ServerAddr {
        ServerAddr::Ip(a)
    }
}

impl std::str::FromStr for ServerAddr {
    type Err = ClientError;

    fn from_str(s: &str) -> Result<ServerAddr, ClientError> {
        let bad = |reason: &str| ClientError::InvalidAddress {
            addr: s.to_string(),
            reason: reason.to_string(),
        };
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(ServerAddr::Ip(a));
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| bad("expected HOST:PORT (the broker's client port, e.g. :4700)"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port is not a number from 0 to 65535"))?;
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
        if !valid {
            return Err(bad(
                "not an IP address and not a host name (letters, digits, '-', '.'); \
                 write IPv6 addresses as [ADDR]:PORT",
            ));
        }
        Ok(ServerAddr::Host {
            host: host.to_string(),
            port,
        })
    }
}

/// How long a client with several servers keeps trying to reconnect.
const DEFAULT_RECONNECT: Duration = Duration::from_secs(60);

/// How to reach and trust a broker (or several brokers of one mesh).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// The brokers' client addresses, tried in order when connecting; after
    /// a lost connection the client moves to the next one (see
    /// [`ClientOptions::reconnect`]).
    pub servers: Vec<ServerAddr>,
    /// PEM file of the CA that signed the brokers' certificates.
    pub ca_file: Option<PathBuf>,
    /// Name the broker's certificate must carry. `None` (the default): the
    /// host name of the address being connected to, or `localhost` for an
    /// IP address.
    pub server_name: Option<String>,
    /// A name for this client, shown in broker logs.
    pub name: String,
    /// The token to authenticate with, `USER:SECRET` (brokers with
    /// `[[auth.users]]`). Never printed: `{:?}` shows `<redacted>`.
    pub token: Option<Secret>,
    /// A client certificate (PEM, leaf first) and its private key (PEM) to
    /// authenticate with (brokers with `auth.client_ca`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Messages buffered per subscription before the client stops reading
    /// from the broker (which then, if it persists, disconnects it as slow).
    pub subscription_buffer: usize,
    /// Bytes of unsent frames buffered before publishers wait.
    pub outbox_bytes: usize,
    /// Close the connection after this long without hearing from the broker.
    /// The broker applies its own `limits.session_timeout_ms` the same way
    /// (the smaller of the two is used); keep-alives every third of it keep
    /// a live session open. A session that times out leaves its groups
    /// through a view change the other members see. It is also how long a
    /// broker that vanished without closing (killed, unplugged) takes to be
    /// noticed.
    pub idle_timeout: Duration,
    /// How long one connection attempt to one address may take, from the
    /// first packet to the broker's welcome (default 5 s). A broker that
    /// does not answer within it is reported as unreachable, with the
    /// likely cause.
    pub connect_timeout: Duration,
    /// After a lost connection, how long to keep trying the brokers of
    /// [`ClientOptions::servers`] (in turn, from the next one) before the
    /// session ends; `None` never reconnects. Default: 60 s when several
    /// servers are given, `None` with one (there is no other broker to
    /// move to; set it to wait for that broker's restart). A session that
    /// a broker ended on purpose (slow consumer, protocol error) or that
    /// the application closed is never resumed.
    pub reconnect: Option<Duration>,
    /// How long [`crate::Client::close`] waits for queued messages to reach
    /// the broker, and [`crate::Subscription::unsubscribe`] and
    /// [`crate::Group::leave`] for the broker's answer (default 5 s).
    pub close_timeout: Duration,
    /// Protocol version announced in the handshake (only tests change it).
    pub protocol_version: u16,
}

impl ClientOptions {
    /// Options for the broker at `addr` with defaults for everything else.
    pub fn new(addr: SocketAddr) -> ClientOptions {
        ClientOptions::with_servers([ServerAddr::Ip(addr)])
    }

    /// Options for the brokers `servers` (tried in order), with defaults
    /// for everything else.
    pub fn with_servers(servers: impl IntoIterator<Item = ServerAddr>) -> ClientOptions {
        let servers: Vec<ServerAddr> = servers.into_iter().collect();
        let reconnect = (servers.len() > 1).then_some(DEFAULT_RECONNECT);
        ClientOptions {
            servers,
            ca_file: None,
            server_name: None,
            name: "meshcast-client".into(),
            token: None,
            client_cert: None,
            subscription_buffer: 4096,
            outbox_bytes: 1 << 20,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            reconnect,
            close_timeout: Duration::from_secs(5),
            protocol_version: PROTOCOL_VERSION,
        }
    }

    /// Options for a comma-separated list of `HOST:PORT` or `IP:PORT`
    /// addresses (`"b1.example.com:4700,10.0.0.2:4700"`).
    pub fn parse(servers: &str) -> Result<ClientOptions, ClientError> {
        Ok(ClientOptions::with_servers(ServerAddr::parse_list(
            servers,
        )?))
    }

    /// Sets the CA file to trust.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> ClientOptions {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets the name the brokers' certificates must carry (instead of the
    /// host name, or `localhost` for IP addresses).
    pub fn server_name(mut self, name: impl Into<String>) -> ClientOptions {
        self.server_name = Some(name.into());
        self
    }

    /// Sets the token to authenticate with: `USER:SECRET`, as the broker's
    /// `[[auth.users]]` entry for USER has a hash of SECRET (`meshcast auth
    /// hash`).
    pub fn token(mut self, token: impl Into<Secret>) -> ClientOptions {
        self.token = Some(token.into());
        self
    }

    /// Sets the client certificate and key files (PEM) to present to
    /// brokers that authenticate clients by certificate.
    pub fn client_cert(
        mut self,
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> ClientOptions {
        self.client_cert = Some((cert.into(), key.into()));
        self
    }

    /// Sets the client name.
    pub fn name(mut self, name: impl Into<String>) -> ClientOptions {
        self.name = name.into();
        self
    }

    /// Sets [`ClientOptions::connect_timeout`].
    pub fn connect_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::reconnect`] (`None`: never reconnect).
    pub fn reconnect(mut self, give_up_after: Option<Duration>) -> ClientOptions {
        self.reconnect = give_up_after;
        self
    }

    /// Sets [`ClientOptions::idle_timeout`].
    pub fn idle_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.idle_timeout = timeout;
        self
    }

    /// Sets [`ClientOptions::close_timeout`].
    pub fn close_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.close_timeout = timeout;
        self
    }

    /// The TLS name to verify for `server`.
    pub(crate) fn tls_name(&self, server: &ServerAddr) -> String {
        match (&self.server_name, server.host_name()) {
            (Some(n), _) => n.clone(),
            (None, Some(h)) => h.to_string(),
            (None, None) => "localhost".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_as_ip_or_host_name() {
        assert_eq!(
            "127.0.0.1:4700".parse::<ServerAddr>().unwrap(),
            ServerAddr::Ip("127.0.0.1:4700".parse().unwrap())
        );
        assert_eq!(
            "[::1]:4700".parse::<ServerAddr>().unwrap(),
            ServerAddr::Ip("[::1]:4700".parse().unwrap())
        );
        assert_eq!(
            "localhost:4700".parse::<ServerAddr>().unwrap(),
            ServerAddr::Host {
                host: "localhost".into(),
                port: 4700
            }
        );
        let list = ServerAddr::parse_list("a.example:1, 10.0.0.1:2 ,b:3").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].to_string(), "a.example:1");
        for bad in ["localhost", "host:port", "a b:1", ":4700", "", "::1:99999"] {
            let err = ServerAddr::parse_list(bad).unwrap_err();
            assert!(
                matches!(err, ClientError::InvalidAddress { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_token_never_shows_in_debug_output() {
        let opts = ClientOptions::parse("127.0.0.1:4700")
            .unwrap()
            .token("alice:hunter2");
        let text = format!("{opts:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }

    #[test]
    fn the_server_name_defaults_to_the_host_name() {
        let opts = ClientOptions::parse("broker1.example.com:4700,10.0.0.2:4700").unwrap();
        assert_eq!(opts.tls_name(&opts.servers[0]), "broker1.example.com");
        assert_eq!(opts.tls_name(&opts.servers[1]), "localhost");
        assert_eq!(opts.reconnect, Some(DEFAULT_RECONNECT), "several servers");
        let one = ClientOptions::new("127.0.0.1:4700".parse().unwrap());
        assert_eq!(one.reconnect, None, "one server");
        let opts = opts.server_name("mesh.example.com");
        assert_eq!(opts.tls_name(&opts.servers[0]), "mesh.example.com");
        assert_eq!(opts.tls_name(&opts.servers[1]), "mesh.example.com");
    }
}
