//! Tests of loading, overriding and validating the configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use meshcast_config::{Config, ConfigError, GroupRule, Origin, default_data_dir, known_keys};

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
    assert_eq!(c.limits.handshake_timeout_ms, 5_000);
    assert_eq!(
        c.limits.handshake_timeout(),
        std::time::Duration::from_secs(5)
    );
    assert_eq!(c.limits.idle_timeout_ms, 30_000);
    assert_eq!(c.limits.idle_timeout(), std::time::Duration::from_secs(30));
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
    // Uncommenting every `# key = value` line must still give a valid file.
    let uncommented: String = EXAMPLE
        .lines()
        .map(|l| {
            let t = l.trim_start_matches("# ");
            let is_setting = t.contains(" = \"") || t.starts_with("[[");
            if l.starts_with("# ") && is_setting {
                t
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let c = load_file(&uncommented).unwrap();
    assert_eq!(c.groups.len(), 2);
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
    let header = if section == "groups" {
        "[[groups]]".to_string()
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
                for k in t.keys() {
                    let key = format!("{section}.{k}");
                    assert!(keys.contains(&key), "{key} not in known_keys()");
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
        "max_subscriptions_per_session",
        "handshake_timeout_ms",
        "idle_timeout_ms",
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
fn limit_relations_and_bounds() {
    let (_, msg) = expect_invalid(
        load_sets(&["limits.max_payload_bytes=4194304"]),
        "limits.max_payload_bytes",
    );
    assert!(msg.contains("less than limits.max_frame_bytes"), "{msg}");
    load_sets(&["limits.max_payload_bytes=4194303"]).unwrap();
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
