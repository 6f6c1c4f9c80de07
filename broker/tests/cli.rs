//! The `meshcast pub` / `meshcast sub` commands against a real broker.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{BrokerProc, meshcast_bin, run_cli};

#[test]
fn cli_sub_prints_what_cli_pub_sends_from_args_and_stdin() {
    let broker = BrokerProc::start(&[]);
    let addr = broker.addr.to_string();
    let ca = broker.ca.to_str().unwrap().to_string();
    let mut sub = Command::new(meshcast_bin())
        .args([
            "sub", "--server", &addr, "--ca", &ca, "--count", "3", "chat/**",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `sub` says "subscribed" on stderr once the subscription is installed.
    let mut err = BufReader::new(sub.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("subscribed to chat/**"), "{line}");

    let (status, _, stderr) = run_cli(
        &[
            "pub",
            "--server",
            &addr,
            "--ca",
            &ca,
            "chat/room1",
            "hello there",
        ],
        None,
    );
    assert!(status.success(), "{stderr}");
    let (status, _, stderr) = run_cli(
        &[
            "pub",
            "--server",
            &addr,
            "--ca",
            &ca,
            "--ordering",
            "total",
            "chat/room2",
        ],
        Some("line one\nline two\n"),
    );
    assert!(status.success(), "{stderr}");
    let out = sub.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "chat/room1 hello there\nchat/room2 line one\nchat/room2 line two\n"
    );
}

#[test]
fn cli_reports_bad_topic_and_unreachable_broker() {
    let broker = BrokerProc::start(&[]);
    let addr = broker.addr.to_string();
    let ca = broker.ca.to_str().unwrap().to_string();
    let (status, _, err) = run_cli(
        &["pub", "--server", &addr, "--ca", &ca, "a/**/b", "x"],
        None,
    );
    assert!(!status.success());
    assert!(err.contains("invalid topic"), "{err}");
    let (status, _, err) = run_cli(
        &[
            "pub",
            "--server",
            &addr,
            "--ca",
            &ca,
            "--ordering",
            "sorted",
            "a",
            "x",
        ],
        None,
    );
    assert!(!status.success());
    assert!(err.contains("sorted"), "{err}");
    let (status, _, err) = run_cli(
        &["sub", "--server", &addr, "--ca", "/nonexistent/ca.pem", "a"],
        None,
    );
    assert!(!status.success());
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn demo_runs_a_broker_and_a_first_publish_subscribe() {
    let dir = common::TempDir::new("demo");
    let (status, out, err) = run_cli(
        &[
            "demo",
            "--once",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--set",
            "broker.peer_listen=127.0.0.1:0",
            "--set",
            "broker.admin_listen=off",
        ],
        None,
    );
    assert!(status.success(), "{err}");
    assert!(
        out.contains("received  demo/hello hello, meshcast"),
        "{out}"
    );
    assert!(out.contains("received  demo/orders/us order 2"), "{out}");
}

#[tokio::test]
async fn status_and_metrics_report_live_counters() {
    let broker = BrokerProc::start(&["broker.id=status-test", "broker.site=paris"]);
    let c = broker.client("counted").await;
    let _sub = c.subscribe("s/**").await.unwrap();
    c.publish("s/1", "x").await.unwrap();
    c.flush().await.unwrap();
    let admin = broker.admin.to_string();
    let out = tokio::task::spawn_blocking(move || run_cli(&["status", "--admin", &admin], None))
        .await
        .unwrap();
    assert!(out.0.success(), "{}", out.2);
    let status: serde_json::Value = serde_json::from_str(&out.1).unwrap();
    assert_eq!(status["broker"], "status-test");
    assert_eq!(status["site"], "paris");
    assert_eq!(status["core"]["sessions"], 1);
    assert_eq!(status["core"]["subscriptions"], 1);
    assert_eq!(status["core"]["delivered"], 1);

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(broker.admin).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).await.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("meshcast_client_frames_total"), "{text}");
}

#[tokio::test]
async fn certs_command_makes_a_cluster_ca_that_brokers_and_clients_use() {
    let dir = common::TempDir::new("certs");
    let out = dir.path().join("pki");
    let out_s = out.to_str().unwrap().to_string();
    let (status, stdout, err) = tokio::task::spawn_blocking(move || {
        run_cli(
            &["certs", "--out", &out_s, "--host", "10.9.8.7", "b1", "b2"],
            None,
        )
    })
    .await
    .unwrap();
    assert!(status.success(), "{err}");
    assert!(stdout.contains("created CA"), "{stdout}");
    for f in [
        "ca.pem",
        "ca-key.pem",
        "b1.pem",
        "b1-key.pem",
        "b2.pem",
        "b2-key.pem",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let p = |f: &str| out.join(f).to_str().unwrap().to_string();
    let sets = [
        format!("tls.ca_cert={}", p("ca.pem")),
        format!("tls.cert={}", p("b1.pem")),
        format!("tls.key={}", p("b1-key.pem")),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    let mut broker = BrokerProc::start(&sets);
    broker.ca = out.join("ca.pem");
    let c = broker.client("tls").await;
    c.flush().await.unwrap();
    // A client trusting some other CA is refused by TLS.
    let other = common::TempDir::new("other-ca");
    meshcast_transport::pki::ensure_ca(other.path()).unwrap();
    let opts =
        meshcast_client::ClientOptions::new(broker.addr).ca_file(other.path().join("ca.pem"));
    let err = meshcast_client::Client::connect(opts).await.unwrap_err();
    assert!(
        matches!(err, meshcast_client::ClientError::Connect { .. }),
        "{err}"
    );
}

#[test]
fn bench_prints_one_json_line_per_result_and_checks_delivery() {
    let (status, out, err) = run_cli(
        &[
            "bench",
            "--json",
            "--messages",
            "3000",
            "--sizes",
            "128,1024",
            "--seconds",
            "1",
            "--rate",
            "500",
        ],
        None,
    );
    assert!(status.success(), "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "{out}");
    for fanout in &lines[..2] {
        assert_eq!(fanout["scenario"], "fanout");
        assert_eq!(fanout["all_arrived"], true, "{fanout}");
        assert_eq!(fanout["in_order"], true, "{fanout}");
        assert_eq!(
            fanout["per_subscriber_msgs_per_s"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
    }
    assert_eq!(lines[2]["scenario"], "latency");
    assert_eq!(lines[2]["messages"], 500);
}

#[test]
fn mesh_bench_checks_that_three_brokers_agree_on_the_order() {
    let (status, out, err) = run_cli(
        &[
            "bench",
            "--json",
            "--scenario",
            "mesh",
            "--messages",
            "300",
            "--window",
            "128",
        ],
        None,
    );
    assert!(status.success(), "{err}");
    let lines = json_lines(&out);
    let modes: Vec<&str> = lines.iter().map(|l| l["mode"].as_str().unwrap()).collect();
    assert_eq!(modes, ["fifo", "total", "total+safe"]);
    for l in &lines {
        assert_eq!(l["all_arrived"], true, "{l}");
        assert_eq!(l["in_order"], true, "{l}");
        assert_eq!(l["same_order"], true, "{l}");
        assert_eq!(l["order_hashes"].as_array().unwrap().len(), 3, "{l}");
    }
}

/// Parses one JSON document per line.
fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}
