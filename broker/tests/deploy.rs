//! Syntax checks of the packaging in `deploy/`: the systemd unit (with
//! `systemd-analyze verify` where this machine has it, and by its keys in
//! any case) and the container recipe (by its instructions; no container
//! engine is needed). Also that the LICENSE file matches the manifest.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `(section, key, value)` of every setting of a unit file; panics on a
/// line that is neither a section, a setting, a comment nor blank.
fn unit_settings(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not `Key=value`: {line}", n + 1));
        assert!(
            !section.is_empty(),
            "line {}: setting before a section",
            n + 1
        );
        out.push((section.clone(), key.to_string(), value.to_string()));
    }
    out
}

#[test]
fn the_systemd_unit_is_valid_and_runs_the_broker() {
    let text = read("deploy/meshcast.service");
    let settings = unit_settings(&text);
    let get = |s: &str, k: &str| {
        settings
            .iter()
            .find(|(sec, key, _)| sec == s && key == k)
            .map(|(_, _, v)| v.as_str())
    };
    assert_eq!(
        get("Service", "ExecStart"),
        Some("/usr/local/bin/meshcast broker --config /etc/meshcast/meshcast.toml")
    );
    assert_eq!(get("Service", "StateDirectory"), Some("meshcast"));
    assert_eq!(
        get("Service", "Environment"),
        Some("MESHCAST_BROKER__DATA_DIR=/var/lib/meshcast")
    );
    assert_eq!(get("Install", "WantedBy"), Some("multi-user.target"));
    let sections: std::collections::BTreeSet<&str> =
        settings.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        sections.into_iter().collect::<Vec<_>>(),
        ["Install", "Service", "Unit"]
    );

    // systemd's own check, with the binary built for these tests in place
    // of /usr/local/bin/meshcast (verify wants an executable there).
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not found: only the keys were checked");
        return;
    };
    assert!(out.status.success());
    let dir = std::env::temp_dir().join(format!("meshcast-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = dir.join("meshcast.service");
    let bin = env!("CARGO_BIN_EXE_meshcast");
    std::fs::write(&unit, text.replace("/usr/local/bin/meshcast", bin)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // Unknown keys and bad values are warnings, not failures: none allowed.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("meshcast.service"))
        .collect();
    assert!(about_unit.is_empty(), "{stderr}");
}

/// Instructions a Containerfile may use.
const INSTRUCTIONS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "LABEL",
    "EXPOSE",
    "ENV",
    "ADD",
    "COPY",
    "ENTRYPOINT",
    "VOLUME",
    "USER",
    "WORKDIR",
    "ARG",
    "ONBUILD",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
];

#[test]
fn the_container_recipe_builds_the_locked_release_binary_and_runs_it() {
    let text = read("deploy/Containerfile");
    // Instructions, with continuation lines joined.
    let mut instructions: Vec<String> = Vec::new();
    let mut continued = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if !continued && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if continued {
            instructions.last_mut().unwrap().push_str(trimmed);
        } else {
            instructions.push(trimmed.to_string());
        }
        continued = trimmed.ends_with('\\');
        if continued {
            let last = instructions.last_mut().unwrap();
            last.pop();
            last.push(' ');
        }
    }
    assert!(!continued, "the file ends with a line continuation");
    for i in &instructions {
        let word = i.split_whitespace().next().unwrap();
        assert!(INSTRUCTIONS.contains(&word), "unknown instruction: {i}");
    }
    let find = |prefix: &str| -> Vec<&String> {
        instructions
            .iter()
            .filter(|i| i.starts_with(prefix))
            .collect()
    };
    assert_eq!(find("FROM").len(), 2, "a build stage and a runtime stage");
    assert!(find("FROM")[0].ends_with(" AS build"), "{instructions:?}");
    assert!(
        find("RUN cargo build --locked --release --bin meshcast").len() == 1,
        "{instructions:?}"
    );
    assert_eq!(
        find("COPY --from=build"),
        ["COPY --from=build /src/target/release/meshcast /usr/local/bin/meshcast"]
    );
    let entry = find("ENTRYPOINT")[0]
        .trim_start_matches("ENTRYPOINT")
        .trim();
    let entry: Vec<String> = serde_json::from_str(entry).expect("ENTRYPOINT is a JSON array");
    assert_eq!(entry, ["/usr/local/bin/meshcast"]);
    let cmd = find("CMD")[0].trim_start_matches("CMD").trim();
    let cmd: Vec<String> = serde_json::from_str(cmd).expect("CMD is a JSON array");
    assert_eq!(cmd, ["broker"]);
    // The ports it exposes are the ones the environment makes it listen on.
    let env = find("ENV")[0].clone();
    for (key, port) in [
        ("MESHCAST_BROKER__CLIENT_LISTEN=0.0.0.0:", "4700"),
        ("MESHCAST_BROKER__PEER_LISTEN=0.0.0.0:", "4701"),
        ("MESHCAST_BROKER__ADMIN_LISTEN=0.0.0.0:", "4702"),
    ] {
        assert!(env.contains(&format!("{key}{port}")), "{env}");
        assert!(find("EXPOSE")[0].contains(port), "{instructions:?}");
    }
    // Those variables are keys the broker accepts.
    let vars: Vec<(String, String)> = env
        .trim_start_matches("ENV")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = meshcast_config::Config::load(None, vars, &[]).expect("the image's environment");
    assert_eq!(config.broker.client_listen.to_string(), "0.0.0.0:4700");
    assert_eq!(
        config.broker.data_dir,
        std::path::PathBuf::from("/var/lib/meshcast")
    );
}

#[test]
fn the_license_file_matches_the_manifest() {
    let manifest = read("Cargo.toml");
    assert!(manifest.contains("license = \"Apache-2.0\""), "{manifest}");
    let license = read("LICENSE");
    assert!(license.contains("Apache License\n                        Version 2.0, January 2004"));
    assert!(license.contains("END OF TERMS AND CONDITIONS"));
    // The whole text: its nine sections.
    assert!(license.contains("9. Accepting Warranty or Additional Liability."));
}
