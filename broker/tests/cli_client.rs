//! `meshcast pub` / `meshcast sub` telling the truth: failing fast with the
//! cause, host names, `--server-name`, `--confirm`, several servers and
//! warnings for another system's syntax.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{BrokerProc, TempDir, meshcast_bin, run_cli};

#[test]
fn cli_pub_fails_fast_saying_why_and_takes_host_names() {
    let broker = BrokerProc::start(&[]);
    let ca = broker.ca.to_str().unwrap().to_string();

    // Nothing listening: non-zero, naming the address and the likely cause
    // (it used to wait 30 s and print "timed out").
    let nothing = mesh::free_udp_addr().to_string();
    let (status, _, err) = run_cli(
        &[
            "pub",
            "--server",
            &nothing,
            "--ca",
            &ca,
            "--connect-timeout",
            "2",
            "a",
            "x",
        ],
        None,
    );
    assert!(!status.success());
    assert!(err.contains(&nothing), "{err}");
    assert!(err.contains("nothing is listening"), "{err}");

    // `localhost:PORT` (it used to be refused: addresses had to be IPs).
    let by_name = format!("localhost:{}", broker.addr.port());
    let (status, _, err) = run_cli(&["pub", "--server", &by_name, "--ca", &ca, "a", "x"], None);
    assert!(status.success(), "{err}");

    // A name the certificate was not made for: says which flag sets it.
    let (status, _, err) = run_cli(
        &[
            "pub",
            "--server",
            &broker.addr.to_string(),
            "--server-name",
            "elsewhere.example",
            "--ca",
            &ca,
            "a",
            "x",
        ],
        None,
    );
    assert!(!status.success());
    assert!(err.contains("elsewhere.example"), "{err}");
    assert!(err.contains("--server-name"), "{err}");

    // Several servers: the first that answers takes the session.
    let list = format!("{nothing},{}", broker.addr);
    let (status, _, err) = run_cli(
        &[
            "pub",
            "--server",
            &list,
            "--ca",
            &ca,
            "--connect-timeout",
            "2",
            "a",
            "x",
        ],
        None,
    );
    assert!(status.success(), "{err}");
}

#[test]
fn cli_pub_confirm_exits_non_zero_when_nothing_confirms() {
    // A broker that is in no mesh (its only peer does not exist and it may
    // not start one): it holds publishes, it neither refuses nor accepts.
    let dir = TempDir::new("unconfirmed");
    mesh::certs(dir.path(), &["u1"]);
    let b = mesh::broker(
        dir.path(),
        "u1",
        mesh::free_udp_addr(),
        &[("ghost", mesh::free_udp_addr())],
        &["mesh.bootstrap=false".to_string()],
    );
    let addr = b.addr.to_string();
    let ca = b.ca.to_str().unwrap().to_string();
    let (status, _, err) = run_cli(
        &[
            "pub",
            "--server",
            &addr,
            "--ca",
            &ca,
            "--ordering",
            "total",
            "--safe",
            "--confirm",
            "--confirm-timeout",
            "1",
            "orders/x",
            "one",
        ],
        None,
    );
    assert!(!status.success(), "exited 0 without a confirmation");
    assert!(err.contains("not confirmed"), "{err}");
}

#[test]
fn cli_pub_confirm_succeeds_once_confirmed() {
    let broker = BrokerProc::start(&[]);
    let (status, _, err) = run_cli(
        &[
            "pub",
            "--server",
            &broker.addr.to_string(),
            "--ca",
            broker.ca.to_str().unwrap(),
            "--safe",
            "--confirm",
            "a/b",
        ],
        Some("one\ntwo\n"),
    );
    assert!(status.success(), "{err}");
}

#[test]
fn cli_warns_about_another_systems_syntax() {
    let broker = BrokerProc::start(&[]);
    let addr = broker.addr.to_string();
    let ca = broker.ca.to_str().unwrap().to_string();
    let (status, _, err) = run_cli(
        &["pub", "--server", &addr, "--ca", &ca, "orders.eu", "x"],
        None,
    );
    assert!(status.success(), "{err}");
    assert!(err.contains("warning"), "{err}");
    assert!(err.contains("\"orders/eu\""), "{err}");

    let mut sub = Command::new(meshcast_bin())
        .args(["sub", "--server", &addr, "--ca", &ca, "orders.>"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sub.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    let _ = sub.kill();
    let _ = sub.wait();
    assert!(first.starts_with("warning:"), "{first}");
    assert!(first.contains("\"orders/**\""), "{first}");
    assert!(second.starts_with("subscribed to orders.>"), "{second}");
}

#[test]
fn cli_sub_moves_to_the_next_broker_and_prints_it() {
    let certs = TempDir::new("cli-move");
    mesh::certs(certs.path(), &["m1", "m2"]);
    let start = |id: &str| {
        let p = |f: String| certs.path().join(f).to_str().unwrap().to_string();
        let sets = [
            format!("broker.id={id}"),
            format!("tls.ca_cert={}", p("ca.pem".into())),
            format!("tls.cert={}", p(format!("{id}.pem"))),
            format!("tls.key={}", p(format!("{id}-key.pem"))),
        ];
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        BrokerProc::start(&sets)
    };
    let mut a = start("m1");
    let b = start("m2");
    let ca = certs.path().join("ca.pem").to_str().unwrap().to_string();
    let list = format!("{},{}", a.addr, b.addr);
    let mut sub = Command::new(meshcast_bin())
        .args([
            "sub",
            "--server",
            &list,
            "--ca",
            &ca,
            "--idle-timeout",
            "2",
            "--count",
            "1",
            "m/**",
        ])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(sub.stderr.take().unwrap()).lines();
    let line = err.next().unwrap().unwrap();
    assert!(line.starts_with("subscribed to m/**"), "{line}");

    // Its broker is killed (SIGKILL: nothing tells the client; after two
    // seconds of silence the connection counts as lost).
    let _ = a.child.kill();
    let _ = a.child.wait();
    let line = err.next().unwrap().unwrap();
    assert!(line.starts_with("* reconnected to broker m2"), "{line}");
    assert!(line.contains("may be missing"), "{line}");

    // It reads on at m2. A publish right after the reconnect line may come
    // before the subscription is made again there: publish until one is
    // printed (sub exits after one message).
    let addr_b = b.addr.to_string();
    let deadline = std::time::Instant::now() + common::GUARD;
    let status = loop {
        let (status, _, e) = run_cli(
            &["pub", "--server", &addr_b, "--ca", &ca, "m/after", "hello"],
            None,
        );
        assert!(status.success(), "{e}");
        if let Some(s) = sub.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sub printed nothing after the reconnect"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut sub.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(out, "m/after hello\n");
}

#[test]
fn cli_on_a_blocked_broker_sub_says_so_and_pub_exits_non_zero() {
    let dir = TempDir::new("cli-blocked");
    let mut brokers = mesh::full_mesh(dir.path(), "c", 2, &mesh::fast());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for b in &brokers {
        rt.block_on(mesh::wait_mesh(b, 2));
    }
    let addr = brokers[0].addr.to_string();
    let ca = dir.path().join("ca.pem").to_str().unwrap().to_string();
    let mut sub = Command::new(meshcast_bin())
        .args(["sub", "--server", &addr, "--ca", &ca, "orders/**"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(sub.stderr.take().unwrap()).lines();
    let line = err.next().unwrap().unwrap();
    assert!(line.starts_with("subscribed to orders/**"), "{line}");

    // Without c2, c1 holds no majority of its view: it blocks.
    let _ = brokers[1].child.kill();
    let _ = brokers[1].child.wait();
    rt.block_on(mesh::wait_for(brokers[0].admin, "c1 blocked", |s| {
        s["core"]["mesh"]["blocked"] == true
    }));
    let line = err.next().unwrap().unwrap();
    let _ = sub.kill();
    let _ = sub.wait();
    assert!(line.starts_with("* blocked: broker c1"), "{line}");

    // A publish the broker refuses is an error exit, with the reason.
    let (status, _, e) = run_cli(
        &[
            "pub", "--server", &addr, "--ca", &ca, "orders/x", "refused?",
        ],
        None,
    );
    assert!(!status.success(), "pub exited 0 on a blocked broker");
    assert!(e.contains("blocked"), "{e}");
}
