//! The error type of this crate and the description of where a setting came from.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from, so that an error can point at it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Origin {
    /// The configuration file at this path.
    File(PathBuf),
    /// The environment variable with this name (e.g. `MESHCAST_LIMITS__SUBSCRIBER_QUEUE`).
    Env(String),
    /// A command-line override (`--set key=value`).
    Override,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Override => f.write_str("--set override"),
        }
    }
}

/// Everything that can go wrong while reading, merging or validating the configuration.
///
/// Every variant names the offending key in dotted form (`limits.subscriber_queue`,
/// `groups[2].prefix`) and, where known, where the value came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {error}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        error: std::io::Error,
    },

    /// The configuration file is not valid TOML (the message carries line and column).
    #[error("cannot parse config file {}: {error}", path.display())]
    Parse {
        /// The file that was parsed.
        path: PathBuf,
        /// The TOML parser's error, with line, column and a snippet.
        error: toml::de::Error,
    },

    /// A key that meshcast does not know, in the file, an environment variable or a `--set`.
    #[error(
        "unknown key `{key}` in {origin}{}; expected one of: {}",
        suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(),
        expected.join(", ")
    )]
    UnknownKey {
        /// The unknown key, dotted (`limits.subscriber_queu`).
        key: String,
        /// Where it was found.
        origin: Origin,
        /// The keys that are valid at that place, dotted.
        expected: Vec<String>,
        /// The closest valid key, when one is close enough to be a likely typo.
        suggestion: Option<String>,
    },

    /// An override tried to set a whole section (e.g. `--set broker=1`) instead of one key.
    #[error(
        "`{key}` (in {origin}) is a section, not a single value; set one of its keys: {}",
        expected.join(", ")
    )]
    NotAValue {
        /// The section name.
        key: String,
        /// Where the override came from.
        origin: Origin,
        /// The keys of that section, dotted.
        expected: Vec<String>,
    },

    /// A key has a value of the wrong type or one that fails validation.
    #[error(
        "{key} = {value}{}: {reason}",
        origin.as_ref().map(|o| format!(" (from {o})")).unwrap_or_default()
    )]
    Invalid {
        /// The key, dotted (`broker.client_listen`, `groups[0].prefix`).
        key: String,
        /// The offending value, written as in TOML.
        value: String,
        /// What is wrong with it.
        reason: String,
        /// Where the value came from; `None` for a default or when unknown.
        origin: Option<Origin>,
    },

    /// A key that must be set (because of another key) is not.
    #[error("{key} is not set: {reason}")]
    Missing {
        /// The key that is missing, dotted.
        key: String,
        /// Why it is needed.
        reason: String,
    },

    /// A `--set` argument is not of the form `key=value`.
    #[error("invalid override `{arg}`: {reason}")]
    BadOverride {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    /// The dotted key this error is about, if it is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::NotAValue { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::Missing { key, .. } => Some(key),
            ConfigError::Read { .. }
            | ConfigError::Parse { .. }
            | ConfigError::BadOverride { .. } => None,
        }
    }

    /// Builds an [`ConfigError::Invalid`] without origin.
    pub(crate) fn invalid(
        key: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
            origin: None,
        }
    }
}
