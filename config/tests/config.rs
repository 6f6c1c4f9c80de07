//! Tests of loading, overriding and validating the configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use meshcast_config::{
    Config, ConfigError, GroupRule, MeshConfig, Origin, PeerConfig, default_data_dir, known_keys,
    node_name,
};

const EXAMPLE: &str = include_str!("../meshcast.example.toml");

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sets(args: &[&str]) -> Vec<(String, String)> {
    args.iter()
        .map(|a| Config::parse_override(a).unwrap())
        .collect()
}

fn home() -> Vec<(String, String)> {
    env(&[("HOME", "/home/test")])
}

/// A temporary config file, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> TempFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "meshcast-config-test-{}-{n}.toml",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn load_file(contents: &str) -> Result<Config, ConfigError> {
    let f = TempFile::new(contents);
    Config::load(Some(f.path()), home(), &[])
}

fn load_sets(args: &[&str]) -> Result<Config, ConfigError> {
    Config::load(None, home(), &sets(args))
}

/// Expects an `Invalid` error for `key`, returning (value, message).
fn expect_invalid(result: Result<Config, ConfigError>, key: &str) -> (String, String) {
    match result {
        Err(e @ ConfigError::Invalid { .. }) => {
            let msg = e.to_string();
            assert_eq!(e.key(), Some(key), "{msg}");
            assert!(msg.starts_with(key), "{msg}");
            let ConfigError::Invalid { value, .. } = e else {
                unreachable!()
            };
            (value, msg)
        }
        other => panic!("expected an invalid-value error for {key}, got {other:?}"),
    }
}

// ---------------------------------------------------------------- defaults

#[test]
fn no_file_gives_working_defaults() {
    let c = Config::load(None, home(), &[]).unwrap();
    assert_eq!(c.broker.site, "local");
    assert_eq!(c.broker.id, "");
    assert_eq!(c.broker_id(), "broker-4700");
    assert_eq!(
        c.broker.client_listen,
        "127.0.0.1:4700".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        c.broker.peer_listen,
        "127.0.0.1:4701".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        c.broker.admin_listen,
        Some("127.0.0.1:4702".parse().unwrap())
    );
    assert_eq!(
        c.broker.data_dir,
        PathBuf::from("/home/test/.local/share/meshcast")
    );
    assert_eq!(c.limits.max_frame_bytes, 4_194_304);
    assert_eq!(c.limits.max_payload_bytes, 1_048_576);
    assert_eq!(c.limits.subscriber_queue, 65_536);
    assert_eq!(c.limits.max_sessions, 10_000);
    assert_eq!(c.limits.max_subscriptions_per_session, 10_000);
    assert_eq!(c.limits.max_connections_per_address, 1000);
    assert_eq!(c.limits.max_connections_per_user, 1000);
    assert_eq!(c.limits.max_streams_per_session, 1);
    assert_eq!(c.limits.publish_messages_per_s, 0);
    assert_eq!(c.limits.publish_burst, 1000);
    assert_eq!(c.limits.publish_bytes_per_s, 0);
    assert_eq!(c.limits.handshake_timeout_ms, 5_000);
    assert_eq!(
        c.limits.handshake_timeout(),
        std::time::Duration::from_secs(5)
    );
    assert_eq!(c.limits.idle_timeout_ms, 30_000);
    assert_eq!(c.limits.idle_timeout(), std::time::Duration::from_secs(30));
    assert_eq!(c.limits.session_timeout_ms, 30_000);
    assert_eq!(
        c.limits.session_timeout(),
        std::time::Duration::from_secs(30)
    );
    assert_eq!(c.limits.max_pending_confirms, 10_000);
    assert_eq!(c.limits.match_cache_entries, 4096);
    assert_eq!(c.limits.publish_queue, 1024);
    assert!(c.tls.uses_dev_ca());
    assert!(c.groups.is_empty());
    assert_eq!(c.log.level, "info");
    let mut d = Config::default();
    d.broker.data_dir = c.broker.data_dir.clone();
    assert_eq!(c, d);
    Config::default().validate().unwrap();
}

#[test]
fn empty_file_equals_no_file() {
    assert_eq!(
        load_file("").unwrap(),
        Config::load(None, home(), &[]).unwrap()
    );
}

#[test]
fn data_dir_default_follows_environment() {
    assert_eq!(
        default_data_dir(&env(&[("XDG_DATA_HOME", "/xdg"), ("HOME", "/h")])),
        PathBuf::from("/xdg/meshcast")
    );
    // A relative or empty XDG_DATA_HOME is ignored, as the XDG spec says.
    assert_eq!(
        default_data_dir(&env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")])),
        PathBuf::from("/h/.local/share/meshcast")
    );
    assert_eq!(
        default_data_dir(&env(&[("XDG_DATA_HOME", ""), ("HOME", "/h")])),
        PathBuf::from("/h/.local/share/meshcast")
    );
    assert_eq!(
        default_data_dir(&env(&[("HOME", "")])),
        PathBuf::from("./meshcast-data")
    );
    assert_eq!(default_data_dir(&[]), PathBuf::from("./meshcast-data"));

    let c = Config::load(None, env(&[("XDG_DATA_HOME", "/xdg")]), &[]).unwrap();
    assert_eq!(c.broker.data_dir, PathBuf::from("/xdg/meshcast"));
    // Set explicitly, it wins; set to "", the default applies.
    let c = load_file("[broker]\ndata_dir = \"/srv/mc\"\n").unwrap();
    assert_eq!(c.broker.data_dir, PathBuf::from("/srv/mc"));
    let c = load_file("[broker]\ndata_dir = \"\"\n").unwrap();
    assert_eq!(
        c.broker.data_dir,
        PathBuf::from("/home/test/.local/share/meshcast")
    );
}

#[test]
fn broker_id_configured_or_derived() {
    let c = load_sets(&["broker.client_listen=127.0.0.1:5000"]).unwrap();
    assert_eq!(c.broker_id(), "broker-5000");
    let c = load_sets(&["broker.id=b1"]).unwrap();
    assert_eq!(c.broker_id(), "b1");
}

// ---------------------------------------------------------------- example file

#[test]
fn example_file_parses_to_the_defaults() {
    let parsed: Config = toml::from_str(EXAMPLE).unwrap();
    let mut default = Config::default();
    default.broker.data_dir = parsed.broker.data_dir.clone();
    assert_eq!(parsed, default);

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("meshcast.example.toml");
    let loaded = Config::load(Some(&path), home(), &[]).unwrap();
    assert_eq!(loaded, Config::load(None, home(), &[]).unwrap());
}

#[test]
fn example_file_commented_lines_are_valid() {
    // Uncommenting every `# key = value` line must still give a valid file
    // (indented lines, `#   peers = [...]`, are alternatives shown in prose).
    let uncommented: String = EXAMPLE
        .lines()
        .map(|l| {
            let t = l.trim_start_matches("# ");
            let is_setting = t.contains(" = \"") || t.starts_with("[[");
            if l.starts_with("# ") && !l.starts_with("#  ") && is_setting {
                t
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    // Peers need an explicit broker.id, which the example leaves derived.
    let f = TempFile::new(&uncommented);
    let c = Config::load(Some(f.path()), home(), &sets(&["broker.id=b1"])).unwrap();
    assert_eq!(c.groups.len(), 2);
    assert_eq!(
        c.mesh.peers,
        vec![
            PeerConfig {
                id: "b2".into(),
                addr: "10.0.0.2:4701".parse().unwrap()
            },
            PeerConfig {
                id: "b3".into(),
                addr: "10.0.0.3:4701".parse().unwrap()
            },
        ]
    );
    assert!(!c.mesh.bootstraps());
    assert_eq!(c.tls.cert, Some(PathBuf::from("/etc/meshcast/broker.pem")));
    assert_eq!(c.broker.data_dir, PathBuf::from("/var/lib/meshcast"));
}

/// The lines of the example file's section `header` (e.g. `[limits]`), up to
/// the next section header (headers may be commented out).
fn example_section(header: &str) -> Vec<&'static str> {
    let is_header = |l: &str| {
        let t = l.trim_start_matches('#').trim();
        t.starts_with('[') && t.ends_with(']') && !t.contains(' ')
    };
    let mut lines = EXAMPLE
        .lines()
        .skip_while(|l| l.trim_start_matches('#').trim() != header);
    assert!(
        lines.next().is_some(),
        "section {header} missing from the example file"
    );
    lines.take_while(|l| !is_header(l)).collect()
}

fn assert_documented(key: &str) {
    let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    // Array-of-tables sections (`groups`, `mesh.peers`) have `[[...]]` headers.
    let array_header = format!("[[{section}]]");
    let header = if EXAMPLE
        .lines()
        .any(|l| l.trim_start_matches('#').trim() == array_header)
    {
        array_header
    } else {
        format!("[{section}]")
    };
    let lines = example_section(&header);
    let documented = lines.iter().any(|l| {
        let t = l.trim_start_matches('#').trim_start();
        t.starts_with(&format!("{leaf} = "))
    });
    assert!(
        documented,
        "key {key} is not documented in meshcast.example.toml"
    );
}

#[test]
fn example_file_documents_every_key() {
    let keys = known_keys();
    assert!(keys.len() >= 20, "{keys:?}");
    for key in &keys {
        assert_documented(key);
    }
    // Also every key of the serialized defaults, as the brief demands.
    let table: toml::Table = toml::from_str(&toml::to_string(&Config::default()).unwrap()).unwrap();
    for (section, value) in &table {
        match value {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = format!("{section}.{k}");
                    if v.is_array() {
                        // An array of tables (`mesh.peers`): known by its fields.
                        assert!(
                            keys.iter().any(|k| k.starts_with(&format!("{key}."))),
                            "{key} not in known_keys()"
                        );
                    } else {
                        assert!(keys.contains(&key), "{key} not in known_keys()");
                    }
                    assert_documented(&key);
                }
            }
            _ => assert!(
                keys.iter().any(|k| k.starts_with(section.as_str())),
                "{section}"
            ),
        }
    }
}

#[test]
fn serialization_round_trips() {
    let mut c = load_sets(&[
        "broker.admin_listen=off",
        "tls.ca_cert=/c",
        "tls.cert=/a",
        "tls.key=/b",
        "groups=[{prefix = \"a/b\", group = \"ab\"}]",
    ])
    .unwrap();
    c.broker.id = "x".into();
    let text = c.to_toml_string();
    assert!(text.contains("admin_listen = \"off\""), "{text}");
    assert!(text.contains("bootstrap = \"auto\""), "{text}");
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(back, c);

    c.mesh.bootstrap = Some(false);
    c.mesh.peers = vec![
        PeerConfig {
            id: "b2".into(),
            addr: "127.0.0.1:4711".parse().unwrap(),
        },
        PeerConfig {
            id: "b3".into(),
            addr: "[::1]:4712".parse().unwrap(),
        },
    ];
    c.validate().unwrap();
    let text = c.to_toml_string();
    assert!(text.contains("bootstrap = false"), "{text}");
    let back: Config = toml::from_str(&text).unwrap();
    assert_eq!(back, c);
}

// ---------------------------------------------------------------- overrides

#[test]
fn env_overrides() {
    let e = env(&[
        ("HOME", "/h"),
        ("MESHCAST_LIMITS__SUBSCRIBER_QUEUE", "100"),
        ("MESHCAST_BROKER__CLIENT_LISTEN", "127.0.0.1:5000"),
        ("MESHCAST_BROKER__SITE", "paris"),
        ("MESHCAST_BROKER__ADMIN_LISTEN", "off"),
        ("MESHCAST_LOG__LEVEL", "info,meshcast=debug"),
        ("MESHCAST_TLS__CA_CERT", "/ca.pem"),
        ("MESHCAST_TLS__CERT", "/c.pem"),
        ("MESHCAST_TLS__KEY", "/k.pem"),
        // Lower case works too.
        ("MESHCAST_limits__publish_queue", "7"),
        // Ignored: no `__`, or not ours.
        ("MESHCAST_CONFIG", "/somewhere.toml"),
        ("MESHCAST_LOG_LEVEL", "trace"),
        ("OTHER__THING", "1"),
    ]);
    let c = Config::load(None, e, &[]).unwrap();
    assert_eq!(c.limits.subscriber_queue, 100);
    assert_eq!(c.broker.client_listen, "127.0.0.1:5000".parse().unwrap());
    assert_eq!(c.broker.site, "paris");
    assert_eq!(c.broker.admin_listen, None);
    assert_eq!(c.log.level, "info,meshcast=debug");
    assert_eq!(c.tls.key, Some(PathBuf::from("/k.pem")));
    assert_eq!(c.limits.publish_queue, 7);
    assert_eq!(c.broker.data_dir, PathBuf::from("/h/.local/share/meshcast"));
}

#[test]
fn cli_overrides() {
    let c = load_sets(&[
        "limits.subscriber_queue=100",
        "broker.peer_listen = [::1]:4801",
        "broker.site=123",
        "broker.id=\"q\"",
        "broker.admin_listen=",
        "groups=[{ prefix = \"atc/paris\", group = \"paris\" }, { prefix = \"atc/rome\", group = \"rome\" }]",
        "log.level=debug",
    ])
    .unwrap();
    assert_eq!(c.limits.subscriber_queue, 100);
    assert_eq!(c.broker.peer_listen, "[::1]:4801".parse().unwrap());
    // A number given for a string key stays a string.
    assert_eq!(c.broker.site, "123");
    assert_eq!(c.broker.id, "q");
    assert_eq!(c.broker.admin_listen, None);
    assert_eq!(
        c.groups,
        vec![
            GroupRule {
                prefix: "atc/paris".into(),
                group: "paris".into()
            },
            GroupRule {
                prefix: "atc/rome".into(),
                group: "rome".into()
            },
        ]
    );
    assert_eq!(c.log.level, "debug");
}

#[test]
fn precedence_cli_over_env_over_file_over_default() {
    let f =
        TempFile::new("[limits]\nsubscriber_queue = 10\nmax_sessions = 11\npublish_queue = 12\n");
    let e = env(&[
        ("MESHCAST_LIMITS__SUBSCRIBER_QUEUE", "20"),
        ("MESHCAST_LIMITS__MAX_SESSIONS", "21"),
    ]);
    let s = sets(&["limits.subscriber_queue=30"]);
    let c = Config::load(Some(f.path()), e.clone(), &s).unwrap();
    assert_eq!(c.limits.subscriber_queue, 30); // CLI
    assert_eq!(c.limits.max_sessions, 21); // env
    assert_eq!(c.limits.publish_queue, 12); // file
    assert_eq!(c.limits.match_cache_entries, 4096); // default

    let c = Config::load(Some(f.path()), e, &[]).unwrap();
    assert_eq!(c.limits.subscriber_queue, 20);
    let c = Config::load(Some(f.path()), Vec::new(), &[]).unwrap();
    assert_eq!(c.limits.subscriber_queue, 10);
    // The last --set of a key wins.
    let c = load_sets(&["limits.subscriber_queue=5", "limits.subscriber_queue=6"]).unwrap();
    assert_eq!(c.limits.subscriber_queue, 6);
    // An override of groups replaces the file's rules.
    let f = TempFile::new("[[groups]]\nprefix = \"a\"\ngroup = \"a\"\n");
    let c = Config::load(Some(f.path()), Vec::new(), &sets(&["groups=[]"])).unwrap();
    assert!(c.groups.is_empty());
}

#[test]
fn parse_override_forms() {
    assert_eq!(
        Config::parse_override("a.b=c").unwrap(),
        ("a.b".into(), "c".into())
    );
    assert_eq!(
        Config::parse_override(" a.b = c=d ").unwrap(),
        ("a.b".into(), "c=d".into())
    );
    assert_eq!(
        Config::parse_override("a.b=").unwrap(),
        ("a.b".into(), String::new())
    );
    for bad in ["a.b", "=c", "", " = 1"] {
        let e = Config::parse_override(bad).unwrap_err();
        assert!(matches!(e, ConfigError::BadOverride { .. }), "{bad}: {e}");
        assert!(e.to_string().contains("invalid override"), "{e}");
    }
}

// ---------------------------------------------------------------- unknown keys

#[test]
fn unknown_key_in_file_names_section_key_and_file() {
    let f = TempFile::new("[limits]\nsubscriber_queu = 100\n");
    let e = Config::load(Some(f.path()), home(), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{msg}");
    assert!(
        msg.contains("unknown key `limits.subscriber_queu`"),
        "{msg}"
    );
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    assert!(
        msg.contains("did you mean `limits.subscriber_queue`"),
        "{msg}"
    );
    assert!(
        msg.contains("limits.max_frame_bytes"),
        "expected keys listed: {msg}"
    );

    let e = load_file("[brokr]\nid = \"a\"\n").unwrap_err();
    assert!(e.to_string().contains("unknown key `brokr`"), "{e}");
    assert!(e.to_string().contains("did you mean `broker`"), "{e}");
    let e = load_file("color = true\n").unwrap_err();
    assert!(e.to_string().contains("unknown key `color`"), "{e}");
    assert!(!e.to_string().contains("did you mean"), "{e}");
    let e = load_file("[[groups]]\nprefix = \"a\"\ngroup = \"a\"\nweight = 2\n").unwrap_err();
    assert!(
        e.to_string().contains("unknown key `groups[0].weight`"),
        "{e}"
    );
}

/// Keys that are not bare TOML keys are named quoted: an empty key (found
/// by the `config_text` fuzzer: the error named the key as nothing at
/// all), and a quoted dotted key, which is one key, not a key in a section.
#[test]
fn unknown_keys_that_need_quotes_are_named_quoted() {
    let e = load_file("\"\" = \"\"\n").unwrap_err();
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
    assert_eq!(e.key(), Some("\"\""), "{e}");
    assert!(e.to_string().contains("unknown key `\"\"`"), "{e}");
    let e = load_file("\"limits.max_sessions\" = 5\n").unwrap_err();
    assert_eq!(e.key(), Some("\"limits.max_sessions\""), "{e}");
    let e = load_file("[limits]\n\"max sessions\" = 5\n").unwrap_err();
    assert_eq!(e.key(), Some("limits.\"max sessions\""), "{e}");
    assert!(
        e.to_string().contains("did you mean `limits.max_sessions`"),
        "{e}"
    );
}

#[test]
fn unknown_key_in_env_names_the_variable() {
    let e = Config::load(None, env(&[("MESHCAST_LIMITS__SUBSCRIBER_QUEU", "1")]), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, ConfigError::UnknownKey { origin: Origin::Env(v), .. } if v == "MESHCAST_LIMITS__SUBSCRIBER_QUEU"),
        "{msg}"
    );
    assert!(
        msg.contains("environment variable MESHCAST_LIMITS__SUBSCRIBER_QUEU"),
        "{msg}"
    );
    assert!(msg.contains("`limits.subscriber_queu`"), "{msg}");

    let e = Config::load(None, env(&[("MESHCAST_NOPE__X", "1")]), &[]).unwrap_err();
    assert!(e.to_string().contains("MESHCAST_NOPE__X"), "{e}");
    let e = Config::load(None, env(&[("MESHCAST_BROKER__ID__X", "1")]), &[]).unwrap_err();
    assert!(e.to_string().contains("`broker.id.x`"), "{e}");
}

#[test]
fn unknown_key_in_cli() {
    let e = load_sets(&["limits.subscriber_queu=1"]).unwrap_err();
    assert!(
        matches!(
            &e,
            ConfigError::UnknownKey {
                origin: Origin::Override,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("`limits.subscriber_queu`"), "{e}");
    for key in ["nope=1", "limits.=1", ".limits=1", "broker.id.more=1"] {
        let e = load_sets(&[key]).unwrap_err();
        assert!(matches!(e, ConfigError::UnknownKey { .. }), "{key}: {e}");
    }
    // A whole section is not a value.
    let e = load_sets(&["broker=1"]).unwrap_err();
    assert!(matches!(e, ConfigError::NotAValue { .. }), "{e}");
    assert!(e.to_string().contains("broker.client_listen"), "{e}");
}

// ---------------------------------------------------------------- bad values

#[test]
fn bad_value_names_key_value_and_origin() {
    let (value, msg) = expect_invalid(
        load_file("[broker]\nclient_listen = \"nonsense\"\n"),
        "broker.client_listen",
    );
    assert_eq!(value, "\"nonsense\"");
    assert!(msg.contains("broker.client_listen = \"nonsense\""), "{msg}");
    assert!(msg.contains("config file"), "{msg}");
    assert!(msg.contains("IP address and port"), "{msg}");

    let r = Config::load(
        None,
        env(&[("MESHCAST_BROKER__PEER_LISTEN", "localhost")]),
        &[],
    );
    let (_, msg) = expect_invalid(r, "broker.peer_listen");
    assert!(
        msg.contains("environment variable MESHCAST_BROKER__PEER_LISTEN"),
        "{msg}"
    );

    let (value, msg) = expect_invalid(
        load_sets(&["limits.subscriber_queue=abc"]),
        "limits.subscriber_queue",
    );
    assert_eq!(value, "\"abc\"");
    assert!(msg.contains("--set"), "{msg}");
    let (value, _) = expect_invalid(
        load_sets(&["limits.max_sessions=-1"]),
        "limits.max_sessions",
    );
    assert_eq!(value, "-1");
    expect_invalid(
        load_sets(&["limits.max_frame_bytes=5000000000"]),
        "limits.max_frame_bytes",
    );
    expect_invalid(
        load_sets(&["broker.admin_listen=nowhere"]),
        "broker.admin_listen",
    );
    expect_invalid(load_file("[log]\nlevel = 3\n"), "log.level");
    expect_invalid(load_file("broker = 5\n"), "broker");
    expect_invalid(load_file("groups = 5\n"), "groups");
    let (_, msg) = expect_invalid(load_file("[[groups]]\nprefix = \"a\"\n"), "groups[0]");
    assert!(msg.contains("group"), "{msg}");
    let (_, msg) = expect_invalid(
        load_sets(&["groups=[{prefix=\"a\",group=\"a\"}, 7]"]),
        "groups[1]",
    );
    assert!(msg.contains("--set"), "{msg}");
    // A file section given as a value cannot be overridden key by key.
    let f = TempFile::new("limits = 5\n");
    let e = Config::load(
        Some(f.path()),
        Vec::new(),
        &sets(&["limits.publish_queue=1"]),
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("limits"), "{e}");
}

#[test]
fn file_errors_name_the_file() {
    let f = TempFile::new("[broker]\nid = \n");
    let e = Config::load(Some(f.path()), home(), &[]).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConfigError::Parse { .. }), "{msg}");
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");

    let missing = Path::new("/nonexistent/meshcast.toml");
    let e = Config::load(Some(missing), home(), &[]).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/meshcast.toml"), "{e}");
}

// ---------------------------------------------------------------- validation

#[test]
fn every_limit_must_be_nonzero() {
    for key in [
        "max_frame_bytes",
        "max_payload_bytes",
        "subscriber_queue",
        "max_sessions",
        "max_connections_per_address",
        "max_connections_per_user",
        "max_streams_per_session",
        "publish_burst",
        "max_subscriptions_per_session",
        "handshake_timeout_ms",
        "idle_timeout_ms",
        "session_timeout_ms",
        "max_pending_confirms",
        "match_cache_entries",
        "publish_queue",
    ] {
        let full = format!("limits.{key}");
        let (value, msg) = expect_invalid(load_sets(&[&format!("{full}=0")]), &full);
        assert_eq!(value, "0");
        assert_eq!(
            msg,
            format!("{full} = 0 (from --set override): must be at least 1")
        );
    }
    // Without an origin (plain validate), the message has no origin part.
    let mut c = Config::default();
    c.limits.subscriber_queue = 0;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "limits.subscriber_queue = 0: must be at least 1"
    );
}

#[test]
fn abuse_limits_are_checked_naming_the_key() {
    // Rates may be 0 (no limit); the byte rate must let the largest payload through.
    let c = load_sets(&[
        "limits.publish_messages_per_s=0",
        "limits.publish_bytes_per_s=0",
    ])
    .unwrap();
    assert_eq!(c.limits.publish_messages_per_s, 0);
    let (value, msg) = expect_invalid(
        load_sets(&["limits.publish_bytes_per_s=1000"]),
        "limits.publish_bytes_per_s",
    );
    assert_eq!(value, "1000");
    assert!(
        msg.contains("at least limits.max_payload_bytes (1048576)"),
        "{msg}"
    );
    load_sets(&["limits.publish_bytes_per_s=1048576"]).unwrap();
    let (_, msg) = expect_invalid(
        load_sets(&["limits.max_streams_per_session=1025"]),
        "limits.max_streams_per_session",
    );
    assert!(msg.contains("at most 1024"), "{msg}");
    load_sets(&["limits.max_streams_per_session=1024"]).unwrap();
    let (_, msg) = expect_invalid(
        load_sets(&["limits.max_connections_per_address=-1"]),
        "limits.max_connections_per_address",
    );
    assert!(msg.contains("-1"), "{msg}");
}

#[test]
fn limit_relations_and_bounds() {
    let (_, msg) = expect_invalid(
        load_sets(&["limits.max_payload_bytes=4194304"]),
        "limits.max_payload_bytes",
    );
    assert!(msg.contains("less than limits.max_frame_bytes"), "{msg}");
    load_sets(&["limits.max_payload_bytes=4193280"]).unwrap();
    let (_, msg) = expect_invalid(
        load_sets(&["limits.max_payload_bytes=4193281"]),
        "limits.max_payload_bytes",
    );
    assert!(msg.contains("at least 1024 bytes"), "{msg}");
    let (_, msg) = expect_invalid(
        load_sets(&["limits.subscriber_queue_bytes=1000"]),
        "limits.subscriber_queue_bytes",
    );
    assert!(msg.contains("at least limits.max_frame_bytes"), "{msg}");
    expect_invalid(
        load_sets(&["limits.max_frame_bytes=100", "limits.max_payload_bytes=100"]),
        "limits.max_payload_bytes",
    );
    expect_invalid(
        load_sets(&["limits.max_frame_bytes=67108865"]),
        "limits.max_frame_bytes",
    );
    load_sets(&["limits.max_frame_bytes=67108864"]).unwrap();
    expect_invalid(
        load_sets(&["limits.idle_timeout_ms=86400001"]),
        "limits.idle_timeout_ms",
    );
    expect_invalid(
        load_sets(&["limits.handshake_timeout_ms=86400001"]),
        "limits.handshake_timeout_ms",
    );
}

#[test]
fn listen_addresses_must_differ() {
    let (value, msg) = expect_invalid(
        load_sets(&["broker.peer_listen=127.0.0.1:4700"]),
        "broker.peer_listen",
    );
    assert_eq!(value, "\"127.0.0.1:4700\"");
    assert!(
        msg.contains("must differ from broker.client_listen"),
        "{msg}"
    );
    let (_, msg) = expect_invalid(
        load_sets(&["broker.admin_listen=127.0.0.1:4701"]),
        "broker.admin_listen",
    );
    assert!(msg.contains("broker.peer_listen"), "{msg}");
    // Same port on different IPs, port 0 everywhere, or admin off: fine.
    load_sets(&["broker.peer_listen=127.0.0.2:4700"]).unwrap();
    load_sets(&[
        "broker.client_listen=127.0.0.1:0",
        "broker.peer_listen=127.0.0.1:0",
        "broker.admin_listen=127.0.0.1:0",
    ])
    .unwrap();
    load_sets(&[
        "broker.admin_listen=off",
        "broker.peer_listen=127.0.0.1:4702",
    ])
    .unwrap();
}

#[test]
fn id_and_site_rules() {
    let long = "x".repeat(65);
    for bad in ["has space", "tab\t", "é", long.as_str()] {
        expect_invalid(load_sets(&[&format!("broker.id=\"{bad}\"")]), "broker.id");
        expect_invalid(
            load_sets(&[&format!("broker.site=\"{bad}\"")]),
            "broker.site",
        );
    }
    let (value, _) = expect_invalid(load_sets(&["broker.site="]), "broker.site");
    assert_eq!(value, "\"\"");
    let ok = "x".repeat(64);
    load_sets(&[&format!("broker.id={ok}"), "broker.site=eu-west_1.a"]).unwrap();
}

#[test]
fn data_dir_must_not_be_empty_after_load() {
    let mut c = Config::default();
    c.broker.data_dir = PathBuf::new();
    let e = c.validate().unwrap_err();
    assert_eq!(e.key(), Some("broker.data_dir"), "{e}");
}

#[test]
fn tls_files_all_or_none() {
    load_sets(&["tls.ca_cert=/ca", "tls.cert=/c", "tls.key=/k"]).unwrap();
    for given in [
        &["tls.cert=/c"][..],
        &["tls.key=/k"],
        &["tls.ca_cert=/ca"],
        &["tls.cert=/c", "tls.key=/k"],
        &["tls.ca_cert=/ca", "tls.cert=/c"],
    ] {
        let e = load_sets(given).unwrap_err();
        assert!(matches!(e, ConfigError::Missing { .. }), "{given:?}: {e}");
        let key = e.key().unwrap().to_string();
        assert!(key.starts_with("tls."), "{e}");
        assert!(
            !given.iter().any(|g| g.starts_with(&format!("{key}="))),
            "{given:?}: {e}"
        );
        assert!(e.to_string().contains("together"), "{e}");
    }
    let e = load_sets(&["tls.cert=/c", "tls.key=/k"]).unwrap_err();
    assert_eq!(e.to_string().split(' ').next(), Some("tls.ca_cert"));
    expect_invalid(
        load_sets(&["tls.ca_cert=\"\"", "tls.cert=/c", "tls.key=/k"]),
        "tls.ca_cert",
    );
}

#[test]
fn group_rules_checked_lightly() {
    let rule = |p: &str, g: &str| format!("{{ prefix = {p:?}, group = {g:?} }}");
    let c = load_sets(&[&format!(
        "groups=[{}, {}]",
        rule("a/b", "ab"),
        rule("a", "a")
    )])
    .unwrap();
    assert_eq!(c.groups.len(), 2);

    expect_invalid(
        load_sets(&[&format!("groups=[{}]", rule("", "g"))]),
        "groups[0].prefix",
    );
    expect_invalid(
        load_sets(&[&format!("groups=[{}]", rule("p", " "))]),
        "groups[0].group",
    );
    expect_invalid(
        load_sets(&[&format!("groups=[{}]", rule("p\n", "g"))]),
        "groups[0].prefix",
    );
    let (_, msg) = expect_invalid(
        load_sets(&[&format!(
            "groups=[{}, {}, {}]",
            rule("a", "x"),
            rule("b", "y"),
            rule("a", "z")
        )]),
        "groups[2].prefix",
    );
    assert!(msg.contains("duplicates groups[0].prefix"), "{msg}");
    assert!(msg.contains("--set"), "{msg}");
    let (_, msg) = expect_invalid(
        load_file("[[groups]]\nprefix = \"a\"\ngroup = \"\"\n"),
        "groups[0].group",
    );
    assert!(msg.contains("config file"), "{msg}");
}

#[test]
fn log_level_not_empty() {
    expect_invalid(load_sets(&["log.level="]), "log.level");
    expect_invalid(load_sets(&["log.level=\"a\\nb\""]), "log.level");
}

// ---------------------------------------------------------------- mesh

fn peer(id: &str, addr: &str) -> PeerConfig {
    PeerConfig {
        id: id.into(),
        addr: addr.parse().unwrap(),
    }
}

/// `--set mesh.peers=[...]` with the given `(id, addr)` pairs.
fn peers_arg(peers: &[(&str, &str)]) -> String {
    let items: Vec<String> = peers
        .iter()
        .map(|(id, addr)| format!("{{ id = {id:?}, addr = {addr:?} }}"))
        .collect();
    format!("mesh.peers=[{}]", items.join(", "))
}

/// Loads with `broker.id=b1`, the given peers and further overrides.
fn load_mesh(peers: &[(&str, &str)], more: &[&str]) -> Result<Config, ConfigError> {
    let arg = peers_arg(peers);
    let mut args = vec!["broker.id=b1", arg.as_str()];
    args.extend_from_slice(more);
    load_sets(&args)
}

#[test]
fn mesh_defaults() {
    let c = Config::load(None, home(), &[]).unwrap();
    let m = &c.mesh;
    assert_eq!(m, &MeshConfig::default());
    assert_eq!(m.bootstrap, None);
    assert!(m.bootstraps());
    assert!(m.peers.is_empty());
    assert_eq!(m.heartbeat_ms, 100);
    assert_eq!(m.suspect_timeout_ms, 1_000);
    assert_eq!(m.flush_timeout_ms, 1_500);
    assert_eq!(m.join_retry_ms, 300);
    assert_eq!(m.state_chunk_bytes, 65_536);
    assert_eq!(m.link_queue, 65_536);
    assert_eq!(m.reconnect_min_ms, 50);
    assert_eq!(m.reconnect_max_ms, 2_000);
    use std::time::Duration;
    assert_eq!(m.heartbeat(), Duration::from_millis(100));
    assert_eq!(m.suspect_timeout(), Duration::from_secs(1));
    assert_eq!(m.flush_timeout(), Duration::from_millis(1_500));
    assert_eq!(m.join_retry(), Duration::from_millis(300));
    assert_eq!(m.reconnect_min(), Duration::from_millis(50));
    assert_eq!(m.reconnect_max(), Duration::from_secs(2));
    assert_eq!(c.node_name(), node_name("broker-4700"));
}

#[test]
fn node_name_is_fnv1a_32() {
    // Reference values of 32-bit FNV-1a; they must never change, since
    // brokers of different versions have to agree on them.
    assert_eq!(node_name(""), 0x811c_9dc5);
    assert_eq!(node_name("a"), 0xe40c_292c);
    assert_eq!(node_name("foobar"), 0xbf9c_f968);
    assert_eq!(node_name("broker-4700"), 0x33eb_7cce);
    assert_eq!(node_name("b1"), 0x8c2c_24bc);
    assert_eq!(peer("b1", "127.0.0.1:1").node_name(), 0x8c2c_24bc);
    // A known collision, used below.
    assert_eq!(node_name("broker-360299"), 0x479d_73ca);
    assert_eq!(node_name("broker-1061706"), 0x479d_73ca);
}

#[test]
fn bootstraps_rule() {
    let mut m = MeshConfig::default();
    assert!(m.bootstraps()); // auto, no peers
    m.peers = vec![peer("b2", "127.0.0.1:4711")];
    assert!(!m.bootstraps()); // auto, peers
    m.bootstrap = Some(true);
    assert!(m.bootstraps());
    m.bootstrap = Some(false);
    assert!(!m.bootstraps());
    m.peers.clear();
    m.bootstrap = Some(true);
    assert!(m.bootstraps());
    m.bootstrap = Some(false);
    assert!(!m.bootstraps()); // (rejected by validation)
}

#[test]
fn mesh_cli_overrides() {
    let c = load_sets(&[
        "broker.id=b1",
        "mesh.peers=[{id=\"b2\",addr=\"127.0.0.1:4711\"}]",
        "mesh.heartbeat_ms=20",
        "mesh.suspect_timeout_ms=200",
        "mesh.flush_timeout_ms=300",
        "mesh.join_retry_ms=40",
        "mesh.state_chunk_bytes=1024",
        "mesh.link_queue=16",
        "mesh.reconnect_min_ms=5",
        "mesh.reconnect_max_ms=500",
    ])
    .unwrap();
    assert_eq!(c.mesh.peers, vec![peer("b2", "127.0.0.1:4711")]);
    assert_eq!(c.mesh.bootstrap, None);
    assert!(!c.mesh.bootstraps());
    assert_eq!(c.mesh.heartbeat_ms, 20);
    assert_eq!(c.mesh.suspect_timeout_ms, 200);
    assert_eq!(c.mesh.flush_timeout_ms, 300);
    assert_eq!(c.mesh.join_retry_ms, 40);
    assert_eq!(c.mesh.state_chunk_bytes, 1024);
    assert_eq!(c.mesh.link_queue, 16);
    assert_eq!(c.mesh.reconnect_min_ms, 5);
    assert_eq!(c.mesh.reconnect_max_ms, 500);

    for (text, want) in [
        ("true", Some(true)),
        ("false", Some(false)),
        ("auto", None),
        ("\"auto\"", None),
        ("AUTO", None),
        ("\"true\"", Some(true)),
    ] {
        let c = load_mesh(
            &[("b2", "127.0.0.1:4711")],
            &[&format!("mesh.bootstrap={text}")],
        )
        .unwrap();
        assert_eq!(c.mesh.bootstrap, want, "{text}");
    }
    // A later override replaces the file's peers; `[]` clears them.
    let f = TempFile::new(
        "[broker]\nid = \"b1\"\n[[mesh.peers]]\nid = \"b2\"\naddr = \"127.0.0.1:4711\"\n",
    );
    let c = Config::load(Some(f.path()), home(), &sets(&["mesh.peers=[]"])).unwrap();
    assert!(c.mesh.peers.is_empty());
    assert!(c.mesh.bootstraps());
}

#[test]
fn mesh_env_overrides() {
    let e = env(&[
        ("HOME", "/h"),
        ("MESHCAST_BROKER__ID", "b1"),
        (
            "MESHCAST_MESH__PEERS",
            "[{ id = \"b2\", addr = \"127.0.0.1:4711\" }, { id = \"b3\", addr = \"127.0.0.1:4712\" }]",
        ),
        ("MESHCAST_MESH__BOOTSTRAP", "true"),
        ("MESHCAST_MESH__HEARTBEAT_MS", "50"),
        ("MESHCAST_MESH__LINK_QUEUE", "8"),
        ("MESHCAST_mesh__reconnect_max_ms", "100"),
    ]);
    let c = Config::load(None, e, &[]).unwrap();
    assert_eq!(
        c.mesh.peers,
        vec![peer("b2", "127.0.0.1:4711"), peer("b3", "127.0.0.1:4712")]
    );
    assert_eq!(c.mesh.bootstrap, Some(true));
    assert!(c.mesh.bootstraps());
    assert_eq!(c.mesh.heartbeat_ms, 50);
    assert_eq!(c.mesh.link_queue, 8);
    assert_eq!(c.mesh.reconnect_max_ms, 100);

    // --set wins over the environment.
    let e = env(&[("MESHCAST_MESH__HEARTBEAT_MS", "50")]);
    let c = Config::load(None, e, &sets(&["mesh.heartbeat_ms=60"])).unwrap();
    assert_eq!(c.mesh.heartbeat_ms, 60);
}

#[test]
fn mesh_peers_in_file_both_forms() {
    let tables = load_file(
        "[broker]\nid = \"b1\"\n\n[mesh]\nheartbeat_ms = 10\n\n\
         [[mesh.peers]]\nid = \"b2\"\naddr = \"10.0.0.2:4701\"\n\n\
         [[mesh.peers]]\nid = \"b3\"\naddr = \"[fe80::1]:4701\"\n",
    )
    .unwrap();
    let inline = load_file(
        "[broker]\nid = \"b1\"\n\n[mesh]\nheartbeat_ms = 10\npeers = [\n  \
         { id = \"b2\", addr = \"10.0.0.2:4701\" },\n  { id = \"b3\", addr = \"[fe80::1]:4701\" },\n]\n",
    )
    .unwrap();
    assert_eq!(tables, inline);
    assert_eq!(
        tables.mesh.peers,
        vec![peer("b2", "10.0.0.2:4701"), peer("b3", "[fe80::1]:4701")]
    );
    assert_eq!(tables.mesh.heartbeat_ms, 10);
    assert!(!tables.mesh.bootstraps());
}

#[test]
fn mesh_unknown_keys_and_bad_values() {
    let e = load_sets(&["mesh.heartbeat=1"]).unwrap_err();
    assert!(matches!(e, ConfigError::UnknownKey { .. }), "{e}");
    assert!(
        e.to_string().contains("did you mean `mesh.heartbeat_ms`"),
        "{e}"
    );
    let e = load_file(
        "[broker]\nid = \"b1\"\n[[mesh.peers]]\nid = \"b2\"\naddr = \"127.0.0.1:4711\"\nport = 1\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("unknown key `mesh.peers[0].port`"),
        "{e}"
    );
    let e =
        load_sets(&["mesh.peers=[{id=\"b2\",addr=\"127.0.0.1:4711\",site=\"x\"}]"]).unwrap_err();
    assert!(
        e.to_string().contains("unknown key `mesh.peers[0].site`"),
        "{e}"
    );
    // The same check applies to --set of `groups`.
    let e = load_sets(&["groups=[{prefix=\"a\",group=\"a\",weight=1}]"]).unwrap_err();
    assert!(
        matches!(&e, ConfigError::UnknownKey { key, origin: Origin::Override, .. } if key == "groups[0].weight"),
        "{e}"
    );
    let e = load_sets(&["mesh=1"]).unwrap_err();
    assert!(matches!(e, ConfigError::NotAValue { .. }), "{e}");

    let (value, msg) = expect_invalid(load_sets(&["mesh.bootstrap=maybe"]), "mesh.bootstrap");
    assert_eq!(value, "\"maybe\"");
    assert!(msg.contains("true, false or \"auto\""), "{msg}");
    let (_, msg) = expect_invalid(load_file("[mesh]\nbootstrap = 1\n"), "mesh.bootstrap");
    assert!(msg.contains("config file"), "{msg}");
    let (_, msg) = expect_invalid(load_mesh(&[("b2", "localhost:4711")], &[]), "mesh.peers[0]");
    assert!(msg.contains("IP address and port"), "{msg}");
    assert!(msg.contains("--set"), "{msg}");
    let (_, msg) = expect_invalid(
        load_sets(&["broker.id=b1", "mesh.peers=[{id=\"b2\"}]"]),
        "mesh.peers[0]",
    );
    assert!(msg.contains("addr"), "{msg}");
    let r = Config::load(None, env(&[("MESHCAST_MESH__LINK_QUEUE", "many")]), &[]);
    let (_, msg) = expect_invalid(r, "mesh.link_queue");
    assert!(msg.contains("MESHCAST_MESH__LINK_QUEUE"), "{msg}");
}

#[test]
fn mesh_values_at_least_one_and_at_most_a_day() {
    for key in [
        "heartbeat_ms",
        "suspect_timeout_ms",
        "flush_timeout_ms",
        "join_retry_ms",
        "state_chunk_bytes",
        "link_queue",
        "reconnect_min_ms",
        "reconnect_max_ms",
    ] {
        let full = format!("mesh.{key}");
        let (value, msg) = expect_invalid(load_sets(&[&format!("{full}=0")]), &full);
        assert_eq!(value, "0");
        assert_eq!(
            msg,
            format!("{full} = 0 (from --set override): must be at least 1")
        );
    }
    for key in [
        "heartbeat_ms",
        "suspect_timeout_ms",
        "flush_timeout_ms",
        "join_retry_ms",
        "reconnect_min_ms",
        "reconnect_max_ms",
    ] {
        let full = format!("mesh.{key}");
        // Keep the relations satisfied so that the bound is what fails.
        let (value, msg) = expect_invalid(
            load_sets(&[
                "mesh.suspect_timeout_ms=86400000",
                "mesh.reconnect_max_ms=86400000",
                &format!("{full}=86400001"),
            ]),
            &full,
        );
        assert_eq!(value, "86400001");
        assert!(msg.contains("at most 86400000"), "{msg}");
    }
    load_sets(&[
        "mesh.heartbeat_ms=1",
        "mesh.suspect_timeout_ms=86400000",
        "mesh.flush_timeout_ms=86400000",
        "mesh.join_retry_ms=86400000",
        "mesh.reconnect_min_ms=86400000",
        "mesh.reconnect_max_ms=86400000",
        "mesh.state_chunk_bytes=1",
        "mesh.link_queue=1",
    ])
    .unwrap();
}

#[test]
fn mesh_timing_relations() {
    let (value, msg) = expect_invalid(
        load_sets(&["mesh.suspect_timeout_ms=100"]),
        "mesh.suspect_timeout_ms",
    );
    assert_eq!(value, "100");
    assert!(
        msg.contains("greater than mesh.heartbeat_ms (100)"),
        "{msg}"
    );
    expect_invalid(
        load_sets(&["mesh.heartbeat_ms=2000"]),
        "mesh.suspect_timeout_ms",
    );
    load_sets(&["mesh.suspect_timeout_ms=101"]).unwrap();

    let (value, msg) = expect_invalid(
        load_sets(&["mesh.reconnect_min_ms=2001"]),
        "mesh.reconnect_min_ms",
    );
    assert_eq!(value, "2001");
    assert!(
        msg.contains("at most mesh.reconnect_max_ms (2000)"),
        "{msg}"
    );
    load_sets(&["mesh.reconnect_min_ms=2000"]).unwrap();

    let (_, msg) = expect_invalid(
        load_sets(&[
            "limits.max_frame_bytes=65536",
            "limits.max_payload_bytes=100",
        ]),
        "mesh.state_chunk_bytes",
    );
    assert!(
        msg.contains("less than limits.max_frame_bytes (65536)"),
        "{msg}"
    );
    load_sets(&[
        "limits.max_frame_bytes=65537",
        "limits.max_payload_bytes=100",
    ])
    .unwrap();
}

#[test]
fn bootstrap_false_needs_peers() {
    let (value, msg) = expect_invalid(load_sets(&["mesh.bootstrap=false"]), "mesh.bootstrap");
    assert_eq!(value, "false");
    assert!(msg.contains("nothing to join"), "{msg}");
    assert!(msg.contains("--set"), "{msg}");
    load_sets(&["mesh.bootstrap=true"]).unwrap();
    load_sets(&["mesh.bootstrap=auto"]).unwrap();
    load_mesh(&[("b2", "127.0.0.1:4711")], &["mesh.bootstrap=false"]).unwrap();
    load_mesh(&[("b2", "127.0.0.1:4711")], &["mesh.bootstrap=true"]).unwrap();
}

#[test]
fn peers_need_an_explicit_broker_id() {
    let e = load_sets(&[&peers_arg(&[("b2", "127.0.0.1:4711")])]).unwrap_err();
    assert!(matches!(e, ConfigError::Missing { .. }), "{e}");
    assert_eq!(e.key(), Some("broker.id"), "{e}");
    assert!(e.to_string().contains("mesh.peers"), "{e}");
    assert!(e.to_string().contains("broker-4700"), "{e}");
    load_mesh(&[("b2", "127.0.0.1:4711")], &[]).unwrap();
}

#[test]
fn peer_ids_checked_and_unique() {
    let long = "x".repeat(65);
    for bad in ["has space", "", "é", long.as_str()] {
        let (value, _) = expect_invalid(
            load_mesh(&[("b2", "127.0.0.1:4711"), (bad, "127.0.0.1:4712")], &[]),
            "mesh.peers[1].id",
        );
        assert_eq!(value, format!("{bad:?}"));
    }
    let (value, msg) = expect_invalid(
        load_mesh(
            &[
                ("b2", "127.0.0.1:4711"),
                ("b3", "127.0.0.1:4712"),
                ("b2", "127.0.0.1:4713"),
            ],
            &[],
        ),
        "mesh.peers[2].id",
    );
    assert_eq!(value, "\"b2\"");
    assert!(msg.contains("duplicates mesh.peers[0].id"), "{msg}");
    let (value, msg) = expect_invalid(
        load_mesh(&[("b2", "127.0.0.1:4711"), ("b1", "127.0.0.1:4712")], &[]),
        "mesh.peers[1].id",
    );
    assert_eq!(value, "\"b1\"");
    assert!(msg.contains("own id"), "{msg}");
}

#[test]
fn peer_addrs_unique_and_not_our_own() {
    let (value, msg) = expect_invalid(
        load_mesh(&[("b2", "127.0.0.1:4711"), ("b3", "127.0.0.1:4711")], &[]),
        "mesh.peers[1].addr",
    );
    assert_eq!(value, "\"127.0.0.1:4711\"");
    assert!(msg.contains("duplicates mesh.peers[0].addr"), "{msg}");
    let (value, msg) = expect_invalid(
        load_mesh(&[("b2", "127.0.0.1:4701")], &[]),
        "mesh.peers[0].addr",
    );
    assert_eq!(value, "\"127.0.0.1:4701\"");
    assert!(msg.contains("must differ from broker.peer_listen"), "{msg}");
    let (_, msg) = expect_invalid(
        load_mesh(&[("b2", "127.0.0.1:4700")], &[]),
        "mesh.peers[0].addr",
    );
    assert!(msg.contains("broker.client_listen"), "{msg}");
    let (_, msg) = expect_invalid(
        load_mesh(&[("b2", "127.0.0.1:0")], &[]),
        "mesh.peers[0].addr",
    );
    assert!(msg.contains("port 0"), "{msg}");
    // Same port elsewhere, or our own peer_listen on port 0: fine.
    load_mesh(&[("b2", "127.0.0.2:4701"), ("b3", "127.0.0.3:4701")], &[]).unwrap();
    load_mesh(
        &[("b2", "127.0.0.1:4701")],
        &["broker.peer_listen=127.0.0.1:0"],
    )
    .unwrap();
}

#[test]
fn node_names_must_be_distinct() {
    // "broker-360299" and "broker-1061706" have the same FNV-1a hash.
    let (value, msg) = expect_invalid(
        load_sets(&[
            "broker.id=broker-360299",
            &peers_arg(&[
                ("b2", "127.0.0.1:4711"),
                ("broker-1061706", "127.0.0.1:4712"),
            ]),
        ]),
        "mesh.peers[1].id",
    );
    assert_eq!(value, "\"broker-1061706\"");
    assert!(msg.contains("broker.id \"broker-360299\""), "{msg}");
    assert!(msg.contains("0x479d73ca"), "{msg}");

    let (value, msg) = expect_invalid(
        load_mesh(
            &[
                ("broker-360299", "127.0.0.1:4711"),
                ("b2", "127.0.0.1:4712"),
                ("broker-1061706", "127.0.0.1:4713"),
            ],
            &[],
        ),
        "mesh.peers[2].id",
    );
    assert_eq!(value, "\"broker-1061706\"");
    assert!(msg.contains("mesh.peers[0].id \"broker-360299\""), "{msg}");
}

#[test]
fn the_three_broker_mesh_example_files_load() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh");
    for name in ["b1", "b2", "b3"] {
        let file = dir.join(format!("{name}.toml"));
        let c = meshcast_config::Config::load(Some(&file), Vec::<(String, String)>::new(), &[])
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(c.broker_id(), name);
        assert_eq!(c.mesh.peers.len(), 2);
        // "auto" everywhere: the brokers pick who starts the mesh.
        assert_eq!(c.mesh.bootstrap, None, "{name} is not \"auto\"");
        assert!(!c.mesh.bootstraps());
        assert!(!c.tls.uses_dev_ca());
    }
}

#[test]
fn mesh_flow_control_keys_are_checked() {
    let c = load_sets(&[]).unwrap();
    assert_eq!(
        (
            c.mesh.credit_window,
            c.mesh.publish_backlog,
            c.mesh.ack_every,
            c.mesh.ack_delay_ms
        ),
        (1024, 16384, 128, 1)
    );
    let (value, msg) = expect_invalid(
        load_sets(&["mesh.credit_window=64", "mesh.ack_every=65"]),
        "mesh.ack_every",
    );
    assert_eq!(value, "65");
    assert!(msg.contains("at most mesh.credit_window (64)"), "{msg}");
    load_sets(&["mesh.credit_window=64", "mesh.ack_every=64"]).unwrap();
    let (_, msg) = expect_invalid(
        load_sets(&["mesh.publish_backlog=100"]),
        "mesh.publish_backlog",
    );
    assert!(msg.contains("at least 2048"), "{msg}");
    expect_invalid(load_sets(&["mesh.ack_delay_ms=0"]), "mesh.ack_delay_ms");
    expect_invalid(load_sets(&["mesh.credit_window=0"]), "mesh.credit_window");
}
