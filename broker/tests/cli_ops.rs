//! The operator side of the `meshcast` command (issue 11): one readable
//! line per error, `config check`, and the `bench` summary table.

mod common;

use common::{TempDir, run_cli};

/// Every line of `stderr` that says "error".
fn error_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.to_ascii_lowercase().contains("error"))
        .collect()
}

#[test]
fn an_error_is_printed_once_on_one_line_with_a_failing_exit_status() {
    let (status, _, err) = run_cli(&["broker", "--config", "/nonexistent/meshcast.toml"], None);
    assert!(!status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: cannot read config file /nonexistent/meshcast.toml"),
        "{err}"
    );
    assert!(!err.contains("Caused by"), "{err}");

    // An error with a cause that adds something: both, once, on one line.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Nothing listens there any more.
    let (status, _, err) = run_cli(&["status", "--admin", &port.to_string()], None);
    assert!(!status.success());
    assert_eq!(error_lines(&err).len(), 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: cannot reach the admin endpoint at {port}: "
        )),
        "{err}"
    );
}

#[test]
fn config_check_says_ok_with_a_summary_or_what_is_wrong() {
    let dir = TempDir::new("config-check");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[broker]\nid = \"b1\"\nsite = \"paris\"\nclient_listen = \"127.0.0.1:4810\"\n",
    )
    .unwrap();
    let (status, out, err) = run_cli(&["config", "check", good.to_str().unwrap()], None);
    assert!(status.success(), "{err}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("broker.id      b1"), "{out}");
    assert!(out.contains("client_listen  127.0.0.1:4810"), "{out}");
    assert!(out.contains("single broker"), "{out}");

    // A key that does not exist: named, with a suggestion.
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[limits]\nsubscriber_queu = 10\n").unwrap();
    let (status, out, err) = run_cli(&["config", "check", typo.to_str().unwrap()], None);
    assert!(!status.success());
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("subscriber_queu"), "{err}");
    assert!(err.contains("subscriber_queue"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Valid keys, but no working broker: a mesh without certificates.
    let mesh = dir.path().join("mesh.toml");
    std::fs::write(
        &mesh,
        "[broker]\nid = \"b1\"\npeer_listen = \"127.0.0.1:4811\"\n\
         [mesh]\npeers = [{ id = \"b2\", addr = \"127.0.0.1:4821\" }]\n",
    )
    .unwrap();
    let (status, _, err) = run_cli(&["config", "check", mesh.to_str().unwrap()], None);
    assert!(!status.success());
    assert!(err.contains("tls.ca_cert/cert/key are not"), "{err}");
    assert!(err.contains("has 1 problem(s)"), "{err}");

    // The example configuration documents every key with its default.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/meshcast.example.toml"
    );
    let (status, out, err) = run_cli(&["config", "check", example], None);
    assert!(status.success(), "{err}");
    assert!(out.starts_with("ok: "), "{out}");
}

#[test]
fn bench_prints_a_table_by_default() {
    let (status, out, err) = run_cli(
        &[
            "bench",
            "--scenario",
            "latency",
            "--seconds",
            "1",
            "--rate",
            "200",
        ],
        None,
    );
    assert!(status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "latency (one-way, microseconds)", "{out}");
    assert!(lines[1].starts_with("size "), "{out}");
    assert!(lines[1].contains("p99.9"), "{out}");
    assert!(lines[2].starts_with("128 B "), "{out}");
    assert!(!out.contains('{'), "no JSON without --json: {out}");
    // Not a terminal: no progress line on stderr.
    assert!(!err.contains('\r'), "{err:?}");
}

/// On a terminal, `bench` shows what it is doing on stderr while it runs.
/// The terminal is a pseudo-terminal from util-linux `script`.
#[test]
fn bench_shows_progress_on_a_terminal() {
    let bin = common::meshcast_bin();
    let command = format!("{bin} bench --scenario latency --seconds 1 --rate 100");
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("util-linux `script` runs the command on a pseudo-terminal");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("latency: 100 message(s)/s for 1 s ("),
        "{text:?}"
    );
    assert!(text.contains("latency (one-way, microseconds)"), "{text:?}");
}
