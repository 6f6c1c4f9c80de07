//! Entry point of the fuzz target in `config/fuzz/` (cargo-fuzz), shared
//! with the replay test below, which feeds every file of the seed corpus
//! (`config/fuzz/corpus/config_text/`) through it in `cargo test`. Built
//! with the `fuzzing` feature (the fuzz crate enables it) and in this
//! crate's tests.

use std::path::Path;

use crate::{Config, ConfigError};

/// The environment the fuzzed loads see (fixed, so the derived data
/// directory is too).
fn env() -> Vec<(String, String)> {
    vec![("HOME".to_string(), "/home/fuzz".to_string())]
}

/// The config-parser fuzz target: `data` as the text of a configuration
/// file (TOML), then each of its first 16 lines as a `--set` override.
///
/// Checks that nothing panics; that a configuration that loads is valid
/// and reads back equal from the TOML it writes; and that every refusal
/// other than a TOML syntax error names the key it is about.
pub fn config_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    check(Config::load_text(Some((path, text)), env(), &[]));
    let overrides: Vec<(String, String)> = text
        .lines()
        .take(16)
        .filter_map(|l| Config::parse_override(l).ok())
        .collect();
    check(Config::load_text(None, env(), &overrides));
}

fn check(loaded: Result<Config, ConfigError>) {
    match loaded {
        Ok(config) => {
            if let Err(e) = config.validate() {
                panic!("a loaded configuration does not validate: {e}");
            }
            let written = config.to_toml_string();
            match Config::load_text(Some((Path::new("written.toml"), &written)), env(), &[]) {
                Ok(again) => assert_eq!(again, config, "read back differs:\n{written}"),
                Err(e) => panic!("the written configuration does not load: {e}\n{written}"),
            }
        }
        Err(e) => {
            let text = e.to_string();
            match &e {
                ConfigError::Parse { .. } | ConfigError::Read { .. } => {}
                ConfigError::BadOverride { .. } => unreachable!("overrides were parsed"),
                _ => assert!(e.key().is_some_and(|k| !k.is_empty()), "{text}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn corpus() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/config_text")
    }

    /// Replays the corpus (seeds, minimized fuzzer finds and crashing
    /// inputs kept as regressions) through [`config_text`].
    #[test]
    fn replay_config_text_corpus() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 20, "{} files", files.len());
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let result = std::panic::catch_unwind(|| config_text(&data));
            assert!(result.is_ok(), "corpus file {} panicked", f.display());
        }
    }
}
