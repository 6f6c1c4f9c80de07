//! Loading: file, environment and `--set` layers merged into one TOML table,
//! checked key by key, then deserialized and validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use crate::{
    Action, Config, ConfigError, GroupRule, Origin, PeerConfig, PermissionRule, TlsConfig,
    TokenHash, UserConfig,
};

/// Prefix of the environment variables that override configuration keys:
/// `MESHCAST_<SECTION>__<KEY>`, e.g. `MESHCAST_BROKER__CLIENT_LISTEN`.
pub const ENV_PREFIX: &str = "MESHCAST_";

/// The process environment as `(name, value)` pairs, skipping variables whose
/// name or value is not valid UTF-8 (unlike `std::env::vars`, this never panics).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// The default data directory for the given environment:
/// `$XDG_DATA_HOME/meshcast` if `XDG_DATA_HOME` is set to an absolute path,
/// else `$HOME/.local/share/meshcast` if `HOME` is set and non-empty,
/// else `./meshcast-data`.
pub fn default_data_dir(env: &[(String, String)]) -> PathBuf {
    let get = |name: &str| {
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    if let Some(xdg) = get("XDG_DATA_HOME").filter(|v| Path::new(v).is_absolute()) {
        return Path::new(xdg).join("meshcast");
    }
    if let Some(home) = get("HOME") {
        return Path::new(home)
            .join(".local")
            .join("share")
            .join("meshcast");
    }
    PathBuf::from("./meshcast-data")
}

impl Config {
    /// Builds the configuration: defaults, then `file` (if any), then the
    /// `MESHCAST_<SECTION>__<KEY>` variables of `env`, then `overrides`
    /// (dotted key, value; as returned by [`Config::parse_override`]); later
    /// layers win. Then derives `broker.data_dir` from `env` if it is unset or
    /// empty (see [`default_data_dir`]) and runs [`Config::validate`].
    ///
    /// Override values (environment and `--set`) are read as TOML values
    /// (`100`, `true`, `[{ prefix = "a", group = "b" }]`, `"quoted"`); for
    /// keys whose value is a string, or when the text is not valid TOML, the
    /// text is taken as a plain string, so `--set broker.site=paris` works.
    ///
    /// Environment variables starting with `MESHCAST_` but without `__` are
    /// ignored (they may be meant for the command line); one with `__` that
    /// names an unknown key is an error. `env` is normally [`process_env()`].
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let file = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.to_path_buf(),
                    error,
                })?;
                Some((path, text))
            }
            None => None,
        };
        let file = file.as_ref().map(|(path, text)| (*path, text.as_str()));
        Config::load_text(file, env, overrides)
    }

    /// [`Config::load`] with the configuration file's text already read:
    /// `file` is its path (for error messages) and contents.
    pub fn load_text(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let template = template();
        let mut origins: BTreeMap<String, Origin> = BTreeMap::new();

        let mut table = match file {
            Some((path, text)) => {
                let table: Table = toml::from_str(text).map_err(|error| ConfigError::Parse {
                    path: path.to_path_buf(),
                    error,
                })?;
                let origin = Origin::File(path.to_path_buf());
                check_known(&table, &template, "", &origin)?;
                record_origins(&table, &template, "", &origin, &mut origins);
                table
            }
            None => Table::new(),
        };

        let mut env_sets: Vec<(&str, String, &str)> = env
            .iter()
            .filter_map(|(var, value)| {
                let rest = var.strip_prefix(ENV_PREFIX)?;
                rest.contains("__").then(|| {
                    (
                        var.as_str(),
                        rest.split("__")
                            .collect::<Vec<_>>()
                            .join(".")
                            .to_ascii_lowercase(),
                        value.as_str(),
                    )
                })
            })
            .collect();
        env_sets.sort();
        for (var, key, value) in env_sets {
            set_override(
                &mut table,
                &template,
                &key,
                value,
                Origin::Env(var.to_string()),
                &mut origins,
            )?;
        }
        for (key, value) in overrides {
            set_override(
                &mut table,
                &template,
                key.trim(),
                value,
                Origin::Override,
                &mut origins,
            )?;
        }

        check_values(&table, &template, &[], &origins)?;
        let mut config: Config =
            table
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    key: "(configuration)".to_string(),
                    value: String::new(),
                    reason: e.message().to_string(),
                    origin: None,
                })?;
        if config.broker.data_dir.as_os_str().is_empty() {
            config.broker.data_dir = default_data_dir(&env);
        }
        config.validate().map_err(|e| attach_origin(e, &origins))?;
        Ok(config)
    }

    /// Splits one `--set` argument `key=value` at its first `=`, trimming both
    /// sides. The key is checked against the known keys only by [`Config::load`].
    pub fn parse_override(arg: &str) -> Result<(String, String), ConfigError> {
        let bad = |reason: &str| ConfigError::BadOverride {
            arg: arg.to_string(),
            reason: reason.to_string(),
        };
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| bad("expected key=value, e.g. limits.subscriber_queue=100"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(bad("the key before `=` is empty"));
        }
        Ok((key.to_string(), value.trim().to_string()))
    }
}

/// A table with every key present (options set, one group rule, one peer), used to know
/// which keys exist and what type of value each one has.
fn template() -> Table {
    let mut config = Config::unresolved();
    config.tls = TlsConfig {
        ca_cert: Some(PathBuf::from("ca.pem")),
        cert: Some(PathBuf::from("cert.pem")),
        key: Some(PathBuf::from("key.pem")),
    };
    config.groups = vec![GroupRule {
        prefix: "p".to_string(),
        group: "g".to_string(),
    }];
    // A bool, so that an override `true`/`false` is read as one (and `auto`,
    // not being TOML, as a string).
    config.mesh.bootstrap = Some(true);
    config.mesh.peers = vec![PeerConfig {
        id: "p".to_string(),
        addr: crate::DEFAULT_PEER_LISTEN,
    }];
    config.auth.client_ca = Some(PathBuf::from("client-ca.pem"));
    config.auth.users = vec![UserConfig {
        name: "u".to_string(),
        roles: vec!["r".to_string()],
        token_hashes: vec![TokenHash("h".to_string())],
    }];
    config.permissions = vec![PermissionRule {
        name: "n".to_string(),
        users: vec!["u".to_string()],
        roles: vec!["r".to_string()],
        allow: vec![Action::Publish],
        deny: vec![Action::Publish],
        topics: vec!["t".to_string()],
        groups: vec!["g".to_string()],
    }];
    Table::try_from(&config).expect("the configuration serializes to a TOML table")
}

/// Every configuration key, dotted (`broker.id`, …, `groups.prefix` for the
/// fields of each `[[groups]]` rule, `mesh.peers.id` for those of each
/// `[[mesh.peers]]` entry), e.g. for a `--set` help text.
pub fn known_keys() -> Vec<String> {
    fn walk(table: &Table, prefix: &str, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = join(prefix, k);
            match v {
                Value::Table(t) => walk(t, &key, out),
                Value::Array(a) => match a.first() {
                    Some(Value::Table(t)) => walk(t, &key, out),
                    _ => out.push(key),
                },
                _ => out.push(key),
            }
        }
    }
    let mut out = Vec::new();
    walk(&template(), "", &mut out);
    out
}

/// `prefix.key`, with `key` written as TOML would need it: a key that is
/// not a bare key (empty, or with a dot, space or other character) is
/// quoted, so an error never names an empty key, nor shows `"a.b"` (one
/// key) as if it were `a.b` (a key in a section).
fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// The element template of an array-of-tables key (`groups`, `mesh.peers`), if `v` is one.
fn table_array_element(v: &Value) -> Option<&Table> {
    match v {
        Value::Array(a) => match a.first() {
            Some(Value::Table(t)) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// The keys valid at one level of the template, dotted with `prefix`.
fn expected_keys(template: &Table, prefix: &str) -> Vec<String> {
    template.keys().map(|k| join(prefix, k)).collect()
}

fn unknown(key: String, seg: &str, template: &Table, prefix: &str, origin: &Origin) -> ConfigError {
    let suggestion = template
        .keys()
        .map(|k| (edit_distance(seg, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min()
        .map(|(_, k)| join(prefix, k));
    ConfigError::UnknownKey {
        key,
        origin: origin.clone(),
        expected: expected_keys(template, prefix),
        suggestion,
    }
}

/// Rejects keys of the file that do not exist (recursing into sections and
/// array-of-tables elements). Type errors are left to [`check_values`].
fn check_known(
    table: &Table,
    template: &Table,
    prefix: &str,
    origin: &Origin,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let key = join(prefix, k);
        let Some(t) = template.get(k) else {
            return Err(unknown(key, k, template, prefix, origin));
        };
        match (t, v) {
            (Value::Table(tt), Value::Table(vt)) => check_known(vt, tt, &key, origin)?,
            (Value::Array(_), Value::Array(elems)) => {
                if let Some(et) = table_array_element(t) {
                    for (i, e) in elems.iter().enumerate() {
                        if let Value::Table(e) = e {
                            check_known(e, et, &format!("{key}[{i}]"), origin)?;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Remembers that every leaf key of `table` came from `origin`.
fn record_origins(
    table: &Table,
    template: &Table,
    prefix: &str,
    origin: &Origin,
    out: &mut BTreeMap<String, Origin>,
) {
    for (k, v) in table {
        let key = join(prefix, k);
        match (template.get(k), v) {
            (Some(Value::Table(tt)), Value::Table(vt)) => record_origins(vt, tt, &key, origin, out),
            _ => {
                out.insert(key, origin.clone());
            }
        }
    }
}

/// Applies one environment or `--set` override to the merged table.
fn set_override(
    table: &mut Table,
    template: &Table,
    key: &str,
    raw: &str,
    origin: Origin,
    origins: &mut BTreeMap<String, Origin>,
) -> Result<(), ConfigError> {
    let segs: Vec<&str> = key.split('.').collect();
    let mut tmpl = template;
    let mut prefix = String::new();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match tmpl.get(*seg) {
            Some(Value::Table(t)) if !last => {
                tmpl = t;
                prefix = join(&prefix, seg);
            }
            Some(Value::Table(t)) => {
                return Err(ConfigError::NotAValue {
                    key: key.to_string(),
                    origin,
                    expected: expected_keys(t, key),
                });
            }
            Some(leaf) if last => {
                let value = parse_value(raw, leaf);
                // The elements of an array of tables (`groups`, `mesh.peers`)
                // get the same unknown-key check as in a file.
                if let (Some(et), Value::Array(elems)) = (table_array_element(leaf), &value) {
                    for (i, e) in elems.iter().enumerate() {
                        if let Value::Table(e) = e {
                            check_known(e, et, &format!("{key}[{i}]"), &origin)?;
                        }
                    }
                }
                insert(table, &segs, value, &origin, origins)?;
                origins.insert(key.to_string(), origin);
                return Ok(());
            }
            _ => return Err(unknown(key.to_string(), seg, tmpl, &prefix, &origin)),
        }
    }
    // `segs` is never empty (split yields at least one element).
    Err(unknown(key.to_string(), key, template, "", &origin))
}

/// Reads an override's text as a TOML value, or as a plain string when the key
/// holds a string or the text is not a TOML value.
fn parse_value(raw: &str, template_leaf: &Value) -> Value {
    match raw.parse::<Value>() {
        Ok(v @ Value::String(_)) => v,
        Ok(_) if template_leaf.is_str() => Value::String(raw.to_string()),
        Ok(v) => v,
        Err(_) => Value::String(raw.to_string()),
    }
}

/// Inserts `value` at the dotted path `segs`, creating sections as needed.
fn insert(
    table: &mut Table,
    segs: &[&str],
    value: Value,
    origin: &Origin,
    origins: &BTreeMap<String, Origin>,
) -> Result<(), ConfigError> {
    let (last, parents) = segs.split_last().expect("non-empty path");
    let mut cur = table;
    let mut path = String::new();
    for seg in parents {
        path = join(&path, seg);
        let entry = cur
            .entry(seg.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        cur = match entry {
            Value::Table(t) => t,
            other => {
                return Err(ConfigError::Invalid {
                    key: path.clone(),
                    value: other.to_string(),
                    reason: format!(
                        "must be a section (table), so that {} can be set",
                        segs.join(".")
                    ),
                    origin: origins.get(&path).cloned().or_else(|| Some(origin.clone())),
                });
            }
        };
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// One step of a path into the merged table.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn path_string(path: &[Seg<'_>]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Wraps `value` so it sits at `path` in an otherwise empty document.
fn singleton(path: &[Seg<'_>], value: Value) -> Value {
    match path.split_last() {
        None => value,
        Some((Seg::Key(k), rest)) => {
            let mut t = Table::new();
            t.insert(k.to_string(), value);
            singleton(rest, Value::Table(t))
        }
        Some((Seg::Index(_), rest)) => singleton(rest, Value::Array(vec![value])),
    }
}

/// Deserializes each leaf value on its own (in an otherwise default
/// configuration), so that a type error names its key, value and origin.
fn check_values(
    table: &Table,
    template: &Table,
    path: &[Seg<'_>],
    origins: &BTreeMap<String, Origin>,
) -> Result<(), ConfigError> {
    for (k, v) in table {
        let mut here = path.to_vec();
        here.push(Seg::Key(k));
        match (template.get(k), v) {
            (Some(Value::Table(tt)), Value::Table(vt)) => check_values(vt, tt, &here, origins)?,
            (Some(t), Value::Array(elems)) if table_array_element(t).is_some() => {
                for (i, e) in elems.iter().enumerate() {
                    let mut at = here.clone();
                    at.push(Seg::Index(i));
                    check_one(&at, e, origins)?;
                }
            }
            _ => check_one(&here, v, origins)?,
        }
    }
    Ok(())
}

fn check_one(
    path: &[Seg<'_>],
    value: &Value,
    origins: &BTreeMap<String, Origin>,
) -> Result<(), ConfigError> {
    let doc = match singleton(path, value.clone()) {
        Value::Table(t) => t,
        _ => return Ok(()),
    };
    match doc.try_into::<Config>() {
        Ok(_) => Ok(()),
        Err(e) => {
            let key = path_string(path);
            Err(ConfigError::Invalid {
                origin: lookup_origin(&key, origins),
                key,
                value: value.to_string(),
                reason: e.message().to_string(),
            })
        }
    }
}

/// The origin of `key` or of the nearest enclosing key that has one
/// (`groups[1].prefix` → `groups`).
fn lookup_origin(key: &str, origins: &BTreeMap<String, Origin>) -> Option<Origin> {
    let mut k = key;
    loop {
        if let Some(o) = origins.get(k) {
            return Some(o.clone());
        }
        let cut = k.rfind(['.', '['])?;
        k = &k[..cut];
    }
}

fn attach_origin(e: ConfigError, origins: &BTreeMap<String, Origin>) -> ConfigError {
    match e {
        ConfigError::Invalid {
            key,
            value,
            reason,
            origin: None,
        } => ConfigError::Invalid {
            origin: lookup_origin(&key, origins),
            key,
            value,
            reason,
        },
        other => other,
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("subscriber_queu", "subscriber_queue"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn lookup_origin_walks_up() {
        let mut m = BTreeMap::new();
        m.insert("groups".to_string(), Origin::Override);
        assert_eq!(
            lookup_origin("groups[1].prefix", &m),
            Some(Origin::Override)
        );
        assert_eq!(lookup_origin("limits.max_sessions", &m), None);
    }

    #[test]
    fn parse_value_kinds() {
        let s = Value::String("x".into());
        let n = Value::Integer(1);
        assert_eq!(parse_value("100", &n), Value::Integer(100));
        assert_eq!(parse_value("100", &s), Value::String("100".into()));
        assert_eq!(parse_value("\"a b\"", &s), Value::String("a b".into()));
        assert_eq!(
            parse_value("127.0.0.1:1", &s),
            Value::String("127.0.0.1:1".into())
        );
        assert_eq!(parse_value("abc", &n), Value::String("abc".into()));
        assert_eq!(parse_value("", &s), Value::String(String::new()));
    }
}
