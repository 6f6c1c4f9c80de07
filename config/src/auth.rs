//! `[auth]` (client authentication) and `[[permissions]]` (what each
//! authenticated user may do): the configuration side. The broker enforces
//! them; `docs/security.md` explains the model.
//!
//! With neither `auth.client_ca` nor any `[[auth.users]]` entry, the broker
//! runs in development mode: clients connect with no credentials and may do
//! everything (and `[[permissions]]` must then be empty).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// Longest user or role name, in bytes.
pub const MAX_USER_NAME_LEN: usize = 128;

/// `[auth]`: how clients prove who they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// PEM file with the CA certificate(s) that client certificates must
    /// chain to; setting it enables client certificate authentication. A
    /// file with several certificates trusts each of them (used while the
    /// client CA is rotated). Unset (the default): no client certificates.
    pub client_ca: Option<PathBuf>,
    /// Which name of a client certificate is the user's name: `"cn"` (the
    /// subject's common name; the default) or `"dns"` (the certificate's
    /// first DNS subject alternative name).
    pub cert_name: CertName,
    /// Most token verifications (argon2, deliberately slow and
    /// memory-hungry) running at once; further handshakes wait their turn.
    /// Default 2.
    pub max_concurrent_verifications: usize,
    /// Topics per session whose read permission is remembered, so that a
    /// delivery is checked without matching the rules again; the cache is
    /// emptied when full. Default 1024.
    pub permission_cache_entries: usize,
    /// Requests delivered to a session that it may still answer (the
    /// newest ones); an answer to an older one is refused. Default 1024.
    pub reply_window: usize,
    /// The users known by name: token (or password) holders, and the roles
    /// of users authenticated by certificate. In TOML, `[[auth.users]]`.
    pub users: Vec<UserConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            client_ca: None,
            cert_name: CertName::Cn,
            max_concurrent_verifications: 2,
            permission_cache_entries: 1024,
            reply_window: 1024,
            users: Vec::new(),
        }
    }
}

impl AuthConfig {
    /// Whether clients must authenticate: `client_ca` is set or at least
    /// one user is configured. Otherwise the broker is in development mode.
    pub fn enabled(&self) -> bool {
        self.client_ca.is_some() || !self.users.is_empty()
    }
}

/// Which name of a client certificate identifies its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CertName {
    /// The subject's common name (CN).
    #[default]
    Cn,
    /// The first DNS name among the subject alternative names.
    Dns,
}

/// One `[[auth.users]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The user's name: what a token names before its `:`, and what a
    /// client certificate carries (see `auth.cert_name`). 1 to 128
    /// printable characters, no `:`.
    pub name: String,
    /// Roles of the user, which `[[permissions]]` rules may name.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Argon2 hashes (PHC strings, `$argon2id$...`, from `meshcast auth
    /// hash`) of the user's secrets: a token `NAME:SECRET` whose secret
    /// matches any of them authenticates the user. Several during a
    /// rotation; none for a user who authenticates by certificate only.
    #[serde(default)]
    pub token_hashes: Vec<TokenHash>,
}

/// The stored form of a secret: an argon2 PHC string. Not the secret
/// itself, but kept out of `Debug` output all the same (it allows offline
/// guessing).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenHash(pub String);

impl TokenHash {
    /// The PHC string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// What a `[[permissions]]` rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// Publish on a topic (`topics`), or multicast to a group (`groups`).
    #[serde(rename = "publish")]
    Publish,
    /// Subscribe to, and receive messages of, a topic (`topics`); see the
    /// views of a group the subscription reaches (`groups`).
    #[serde(rename = "subscribe")]
    Subscribe,
    /// Join a group (`groups`) without state transfer.
    #[serde(rename = "join")]
    Join,
    /// Join a group (`groups`) with state transfer; needs `join` too.
    #[serde(rename = "join_state")]
    JoinState,
    /// Publish a request (a message with a reply address) on a topic
    /// (`topics`), and receive the answers in one's own inbox.
    #[serde(rename = "request")]
    Request,
    /// Answer requests made on a topic (`topics`) that were delivered to
    /// one's own session.
    #[serde(rename = "reply")]
    Reply,
    /// Every action above.
    #[serde(rename = "*")]
    All,
}

impl Action {
    /// Every action but [`Action::All`].
    pub const EACH: [Action; 6] = [
        Action::Publish,
        Action::Subscribe,
        Action::Join,
        Action::JoinState,
        Action::Request,
        Action::Reply,
    ];

    /// The name used in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Subscribe => "subscribe",
            Action::Join => "join",
            Action::JoinState => "join_state",
            Action::Request => "request",
            Action::Reply => "reply",
            Action::All => "*",
        }
    }

    /// Whether `self` (as written in a rule) covers `action`.
    pub fn covers(self, action: Action) -> bool {
        self == Action::All || self == action
    }

    /// Whether the action applies to topics (`topics` patterns).
    pub fn on_topics(self) -> bool {
        matches!(
            self,
            Action::Publish | Action::Subscribe | Action::Request | Action::Reply | Action::All
        )
    }

    /// Whether the action applies to groups (`groups` patterns).
    pub fn on_groups(self) -> bool {
        matches!(
            self,
            Action::Publish | Action::Subscribe | Action::Join | Action::JoinState | Action::All
        )
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One `[[permissions]]` rule: whom it is about, whether it allows or
/// denies, which actions, on which topics and groups. A user may do an
/// action on a topic or group when some rule allows it and no rule denies
/// it (deny wins); with `[auth]` enabled, nothing else is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PermissionRule {
    /// A name shown in refusals; default `permissions[<index>]`.
    pub name: String,
    /// User names the rule applies to; `"*"` is every authenticated user.
    pub users: Vec<String>,
    /// Roles the rule applies to (see `[[auth.users]] roles`).
    pub roles: Vec<String>,
    /// Actions allowed (`publish`, `subscribe`, `join`, `join_state`,
    /// `request`, `reply`, or `*`). Exactly one of `allow` and `deny`.
    pub allow: Vec<Action>,
    /// Actions denied; a deny beats every allow.
    pub deny: Vec<Action>,
    /// Topic glob patterns (`orders/**`, `*/created`) the topic actions
    /// apply to.
    pub topics: Vec<String>,
    /// Group name glob patterns (`orders`, `chat-*`) the group actions
    /// apply to.
    pub groups: Vec<String>,
}

impl PermissionRule {
    /// The rule's name in refusals: `name`, or `permissions[<index>]`.
    pub fn label(&self, index: usize) -> String {
        if self.name.is_empty() {
            format!("permissions[{index}]")
        } else {
            format!("permissions[{index}] ({:?})", self.name)
        }
    }

    /// Whether the rule denies (else it allows).
    pub fn is_deny(&self) -> bool {
        !self.deny.is_empty()
    }

    /// The actions it allows or denies.
    pub fn actions(&self) -> &[Action] {
        if self.is_deny() {
            &self.deny
        } else {
            &self.allow
        }
    }
}

/// Checks `[auth]` and `[[permissions]]`; errors name the key.
pub(crate) fn validate(auth: &AuthConfig, rules: &[PermissionRule]) -> Result<(), ConfigError> {
    if auth
        .client_ca
        .as_deref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        return Err(ConfigError::invalid(
            "auth.client_ca",
            "\"\"",
            "must not be empty; leave it out instead",
        ));
    }
    for (key, value) in [
        (
            "auth.max_concurrent_verifications",
            auth.max_concurrent_verifications,
        ),
        (
            "auth.permission_cache_entries",
            auth.permission_cache_entries,
        ),
        ("auth.reply_window", auth.reply_window),
    ] {
        if value == 0 {
            return Err(ConfigError::invalid(key, 0, "must be at least 1"));
        }
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, u) in auth.users.iter().enumerate() {
        check_user_name(&format!("auth.users[{i}].name"), &u.name)?;
        if u.name == "*" {
            return Err(ConfigError::invalid(
                format!("auth.users[{i}].name"),
                "\"*\"",
                "is reserved: in [[permissions]] users, \"*\" means every user",
            ));
        }
        if let Some(first) = names.insert(u.name.as_str(), i) {
            return Err(ConfigError::invalid(
                format!("auth.users[{i}].name"),
                format!("{:?}", u.name),
                format!("duplicates auth.users[{first}].name"),
            ));
        }
        for (j, r) in u.roles.iter().enumerate() {
            check_user_name(&format!("auth.users[{i}].roles[{j}]"), r)?;
        }
        for (j, h) in u.token_hashes.iter().enumerate() {
            check_hash(&format!("auth.users[{i}].token_hashes[{j}]"), h)?;
        }
    }
    if !rules.is_empty() && !auth.enabled() {
        return Err(ConfigError::invalid(
            "permissions",
            format!("[{} rule(s)]", rules.len()),
            "needs [auth] (auth.client_ca or [[auth.users]]): without authentication every \
             client is anonymous and may do everything (development mode)",
        ));
    }
    let roles: HashSet<&str> = auth
        .users
        .iter()
        .flat_map(|u| u.roles.iter().map(String::as_str))
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        validate_rule(i, rule, &roles)?;
    }
    Ok(())
}

fn validate_rule(
    i: usize,
    rule: &PermissionRule,
    roles: &HashSet<&str>,
) -> Result<(), ConfigError> {
    let key = |k: &str| format!("permissions[{i}].{k}");
    if rule.name.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            key("name"),
            format!("{:?}", rule.name),
            "must not contain control characters",
        ));
    }
    match (rule.allow.is_empty(), rule.deny.is_empty()) {
        (true, true) => {
            return Err(ConfigError::Missing {
                key: key("allow"),
                reason: format!(
                    "permissions[{i}] must list the actions it allows (allow = [...]) or denies \
                     (deny = [...])"
                ),
            });
        }
        (false, false) => {
            return Err(ConfigError::invalid(
                key("deny"),
                format!("{:?}", names(&rule.deny)),
                "a rule either allows or denies: put the denied actions in a rule of their own",
            ));
        }
        _ => {}
    }
    if rule.users.is_empty() && rule.roles.is_empty() {
        return Err(ConfigError::Missing {
            key: key("users"),
            reason: format!(
                "permissions[{i}] must say whom it applies to: users = [...] (\"*\" for every \
                 user) and/or roles = [...]"
            ),
        });
    }
    for (j, u) in rule.users.iter().enumerate() {
        if u != "*" {
            check_user_name(&format!("permissions[{i}].users[{j}]"), u)?;
        }
    }
    for (j, r) in rule.roles.iter().enumerate() {
        check_user_name(&format!("permissions[{i}].roles[{j}]"), r)?;
        if !roles.contains(r.as_str()) {
            return Err(ConfigError::invalid(
                format!("permissions[{i}].roles[{j}]"),
                format!("{r:?}"),
                "no [[auth.users]] entry has this role (a misspelt role would leave the rule \
                 without effect)",
            ));
        }
    }
    for (field, patterns) in [("topics", &rule.topics), ("groups", &rule.groups)] {
        for (j, p) in patterns.iter().enumerate() {
            if let Err(e) = meshcast_topics::Pattern::new(p.as_str()) {
                return Err(ConfigError::invalid(
                    format!("permissions[{i}].{field}[{j}]"),
                    format!("{p:?}"),
                    e.to_string(),
                ));
            }
        }
    }
    if rule.topics.is_empty() && rule.groups.is_empty() {
        return Err(ConfigError::Missing {
            key: key("topics"),
            reason: format!(
                "permissions[{i}] must name the topics (topics = [...]) and/or groups \
                 (groups = [...]) it applies to; \"**\" is all of them"
            ),
        });
    }
    let field = if rule.is_deny() { "deny" } else { "allow" };
    for a in rule.actions() {
        let usable = (a.on_topics() && !rule.topics.is_empty())
            || (a.on_groups() && !rule.groups.is_empty());
        if !usable {
            let needs = if a.on_groups() && !a.on_topics() {
                "groups"
            } else {
                "topics"
            };
            return Err(ConfigError::invalid(
                key(field),
                format!("{:?}", names(rule.actions())),
                format!("{a:?} applies to {needs}, and the rule has no {needs} = [...]"),
            ));
        }
    }
    Ok(())
}

fn names(actions: &[Action]) -> Vec<&'static str> {
    actions.iter().map(|a| a.name()).collect()
}

fn check_user_name(key: &str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_USER_NAME_LEN
        && !value.contains(':')
        && !value.chars().any(char::is_control);
    if !ok {
        return Err(ConfigError::invalid(
            key,
            format!("{value:?}"),
            format!("must be 1 to {MAX_USER_NAME_LEN} bytes of printable characters without ':'"),
        ));
    }
    Ok(())
}

fn check_hash(key: &str, hash: &TokenHash) -> Result<(), ConfigError> {
    let reason = match argon2::PasswordHash::new(hash.as_str()) {
        Ok(h) if h.algorithm.as_str().starts_with("argon2") && h.hash.is_some() => return Ok(()),
        Ok(h) => format!(
            "is a {} hash; expected an argon2 one (meshcast auth hash prints it)",
            h.algorithm
        ),
        Err(e) => format!(
            "is not an argon2 PHC string ({e}); `meshcast auth hash` prints one from the secret"
        ),
    };
    // The hash is not the secret, but is not echoed either.
    Err(ConfigError::invalid(key, "(not shown)", reason))
}

/// A 64-bit digest of what must be identical on every broker of a mesh:
/// whether authentication is on, `auth.cert_name`, each user's name and
/// roles, and every `[[permissions]]` rule. Not the client CA (it differs
/// while it is rotated) nor token hashes (they change when a secret is
/// rotated, broker by broker). 0 in development mode.
pub fn auth_digest(auth: &AuthConfig, rules: &[PermissionRule]) -> u64 {
    if !auth.enabled() {
        return 0;
    }
    let mut h = Fnv::new();
    h.field(b"meshcast auth v1");
    h.field(if auth.client_ca.is_some() {
        b"certs"
    } else {
        b"nocerts"
    });
    h.field(match auth.cert_name {
        CertName::Cn => b"cn",
        CertName::Dns => b"dns",
    });
    let mut users: Vec<(&str, Vec<&str>)> = auth
        .users
        .iter()
        .map(|u| {
            let mut roles: Vec<&str> = u.roles.iter().map(String::as_str).collect();
            roles.sort_unstable();
            roles.dedup();
            (u.name.as_str(), roles)
        })
        .collect();
    users.sort();
    h.count(users.len());
    for (name, roles) in users {
        h.field(name.as_bytes());
        h.list(roles.iter().map(|r| r.as_bytes()));
    }
    h.count(rules.len());
    for r in rules {
        h.field(r.name.as_bytes());
        h.list(r.users.iter().map(String::as_bytes));
        h.list(r.roles.iter().map(String::as_bytes));
        h.list(r.allow.iter().map(|a| a.name().as_bytes()));
        h.list(r.deny.iter().map(|a| a.name().as_bytes()));
        h.list(r.topics.iter().map(String::as_bytes));
        h.list(r.groups.iter().map(String::as_bytes));
    }
    h.0
}

/// FNV-1a (64-bit) over length-prefixed fields, so that field boundaries
/// count (`["ab","c"]` differs from `["a","bc"]`).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, b: &[u8]) {
        for byte in b {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn count(&mut self, n: usize) {
        self.bytes(&(n as u64).to_le_bytes());
    }

    fn field(&mut self, b: &[u8]) {
        self.count(b.len());
        self.bytes(b);
    }

    fn list<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a [u8]>) {
        self.count(items.len());
        for i in items {
            self.field(i);
        }
    }
}
