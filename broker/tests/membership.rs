//! Persisted membership (DESIGN §2.7, issue 8): a broker keeps its
//! incarnation counter and last mesh view in its data directory, so an
//! ordinary restart rejoins the mesh instead of starting a second one, and
//! only an operator's `--force-new-mesh` (refused while the others answer)
//! starts a new mesh from a broker with history.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use std::net::SocketAddr;

use common::{BrokerProc, GUARD, TempDir, run_cli};
use futures_util::StreamExt;
use mesh::{broker_sets, certs, free_udp_addr, wait_for, wait_mesh};
use meshcast_client::{Ordering, Publish};

/// Three brokers configured like `examples/mesh/b*.toml`: each lists the
/// other two, b1 has `bootstrap = true`, b2 and b3 leave it unset ("auto").
struct Mesh {
    dir: TempDir,
    addrs: Vec<SocketAddr>,
    /// More `--set` overrides for every broker.
    extra: Vec<String>,
}

impl Mesh {
    fn new(tag: &str) -> Mesh {
        let dir = TempDir::new(tag);
        certs(dir.path(), &["b1", "b2", "b3"]);
        Mesh {
            dir,
            addrs: (0..3).map(|_| free_udp_addr()).collect(),
            extra: Vec::new(),
        }
    }

    fn sets(&self, i: usize) -> Vec<String> {
        let names = ["b1", "b2", "b3"];
        let peers: Vec<(&str, SocketAddr)> = (0..3)
            .filter(|j| *j != i)
            .map(|j| (names[j], self.addrs[j]))
            .collect();
        let mut extra = mesh::fast();
        extra.extend(self.extra.iter().cloned());
        if i == 0 {
            extra.push("mesh.bootstrap=true".into());
        }
        broker_sets(self.dir.path(), names[i], self.addrs[i], &peers, &extra)
    }

    /// Starts broker `i` (0-based) with the data directory `data`.
    fn start(&self, i: usize, data: TempDir) -> BrokerProc {
        let sets = self.sets(i);
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let mut b = BrokerProc::start_in(data, &sets);
        b.ca = self.dir.path().join("ca.pem");
        b
    }

    /// Broker `i` started with `--force-new-mesh`.
    fn start_forced(&self, i: usize, data: TempDir) -> BrokerProc {
        let sets = self.sets(i);
        let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
        let mut b = BrokerProc::start_with_args(data, &sets, &["--force-new-mesh"]);
        b.ca = self.dir.path().join("ca.pem");
        b
    }

    /// `meshcast broker` arguments for broker `i` with data directory `data`
    /// (for runs that are expected to exit).
    fn cli_args(&self, i: usize, data: &TempDir, more: &[&str]) -> Vec<String> {
        let mut args = vec![
            "broker".to_string(),
            "--data-dir".into(),
            data.path().display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        for s in self.sets(i) {
            args.push("--set".into());
            args.push(s);
        }
        args.extend(more.iter().map(|s| s.to_string()));
        args
    }

    /// All three, b1 first; returns once every one is in a 3-broker view.
    async fn start_all(&self) -> Vec<BrokerProc> {
        let mut brokers = Vec::new();
        for i in 0..3 {
            brokers.push(self.start(i, TempDir::new(&format!("data-b{}", i + 1))));
        }
        for b in &brokers {
            wait_mesh(b, 3).await;
        }
        brokers
    }
}

fn view_members(s: &serde_json::Value) -> Vec<String> {
    s["core"]["mesh"]["view"][1]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_restarted_bootstrap_broker_rejoins_its_mesh_instead_of_starting_its_own() {
    let mesh = Mesh::new("mem-restart");
    let mut brokers = mesh.start_all().await;
    let first = common::status(brokers[0].admin).await;
    let old_inc = first["incarnation"].as_u64().unwrap();
    // The view of three is on disk before it is used.
    let file = std::fs::read_to_string(brokers[0].dir.path().join("membership.json")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&file).unwrap();
    assert_eq!(stored["broker"], "b1", "{file}");
    assert_eq!(
        stored["view"]["members"].as_array().unwrap().len(),
        3,
        "{file}"
    );

    // SIGKILL b1; b2 and b3 go on as the primary component.
    let b1 = brokers.remove(0);
    let data = mesh::kill_keep_dir(b1);
    for b in &brokers {
        wait_mesh(b, 2).await;
    }
    // Start it again with the same configuration (bootstrap = true) and data.
    let b1 = mesh.start(0, data);
    let s = wait_mesh(&b1, 3).await;
    assert!(
        s["incarnation"].as_u64().unwrap() > old_inc,
        "a restart is a new, larger incarnation: {s}"
    );
    // Everyone agrees on one view of three that holds the new b1.
    let members = view_members(&s);
    for b in &brokers {
        let other = wait_mesh(b, 3).await;
        assert_eq!(view_members(&other), members, "{other}");
    }
    // A message published on b1 reaches a subscriber on b3.
    let sub_client = brokers[1].client("sub-b3").await;
    let mut sub = sub_client.subscribe("orders/**").await.unwrap();
    let pub_client = b1.client("pub-b1").await;
    let publisher = pub_client
        .publisher("orders/eu/created", Ordering::Total)
        .unwrap();
    publisher.publish("after the restart").await.unwrap();
    let msg = tokio::time::timeout(GUARD, sub.next())
        .await
        .expect("the message published on the restarted b1 never reached b3")
        .expect("subscription ended")
        .unwrap();
    assert_eq!(&msg.payload[..], b"after the restart");
    assert_eq!(msg.topic, "orders/eu/created");
}

/// Issue 8, situation 6: a mesh that lost its majority to restarts stayed
/// blocked for ever, even once the lost brokers were back (as new
/// incarnations they were joiners, and the blocked survivor could not run a
/// view change). Now a restarted broker that remembers the survivor's view
/// stands in for its old incarnation.
#[tokio::test]
async fn a_mesh_that_lost_its_majority_to_restarts_recovers_when_they_come_back() {
    let mesh = Mesh::new("mem-majority");
    let mut brokers = mesh.start_all().await;
    // b3 dies: b1 and b2 go on (a view of two). Then b2 dies too: b1 is
    // alone in a view of two, blocked.
    let data3 = mesh::kill_keep_dir(brokers.remove(2));
    for b in &brokers {
        wait_mesh(b, 2).await;
    }
    let data2 = mesh::kill_keep_dir(brokers.remove(1));
    wait_for(brokers[0].admin, "b1 blocked after losing b2", |s| {
        s["core"]["mesh"]["blocked"] == true
    })
    .await;
    // b2 comes back (it remembers the view of two: it stands in for its
    // old incarnation), then b3 (it remembers the older view of three: a
    // plain joiner). One mesh of three, unblocked, delivering.
    let b2 = mesh.start(1, data2);
    wait_mesh(&b2, 2).await;
    wait_mesh(&brokers[0], 2).await;
    let b3 = mesh.start(2, data3);
    let s = wait_mesh(&b3, 3).await;
    let members = view_members(&s);
    for b in [&brokers[0], &b2] {
        let other = wait_mesh(b, 3).await;
        assert_eq!(view_members(&other), members, "{other}");
    }
    delivers(&brokers[0], &b3, "after the recovery").await;
}

/// A `safe` total-order message published on `from` reaches a subscriber
/// on `to`.
async fn delivers(from: &BrokerProc, to: &BrokerProc, text: &'static str) {
    let sub_client = to.client("sub").await;
    let mut sub = sub_client.subscribe("orders/**").await.unwrap();
    let pub_client = from.client("pub").await;
    let publisher = pub_client
        .publisher("orders/eu/created", Publish::total().safe())
        .unwrap();
    publisher.publish(text).await.unwrap();
    let msg = tokio::time::timeout(GUARD, sub.next())
        .await
        .unwrap_or_else(|_| panic!("{text:?} was never delivered"))
        .expect("subscription ended")
        .unwrap();
    assert_eq!(&msg.payload[..], text.as_bytes());
}

/// The whole mesh restarted (a power cut, or `restart` of every broker):
/// nobody is left in the old view, so no view change can start from it.
/// Every broker remembers the same view and none had accepted a value that
/// removes a broker: the smallest starts a new mesh and the others join it.
#[tokio::test]
async fn a_mesh_whose_brokers_all_restarted_forms_again() {
    let mesh = Mesh::new("mem-all");
    let brokers = mesh.start_all().await;
    let before = common::status(brokers[0].admin).await;
    let counter = before["core"]["mesh"]["view"][0].as_str().and_then(|v| {
        v.trim_start_matches('v')
            .split('@')
            .next()?
            .parse::<u64>()
            .ok()
    });
    let dirs: Vec<TempDir> = brokers.into_iter().map(mesh::kill_keep_dir).collect();
    let mut back = Vec::new();
    for (i, data) in dirs.into_iter().enumerate() {
        back.push(mesh.start(i, data));
    }
    let s = wait_mesh(&back[0], 3).await;
    let members = view_members(&s);
    for b in &back[1..] {
        let other = wait_mesh(b, 3).await;
        assert_eq!(view_members(&other), members, "{other}");
    }
    // View ids keep growing across the recovery.
    let after = s["core"]["mesh"]["view"][0].as_str().and_then(|v| {
        v.trim_start_matches('v')
            .split('@')
            .next()?
            .parse::<u64>()
            .ok()
    });
    assert!(after > counter, "{before} then {s}");
    delivers(&back[0], &back[2], "after the restart of all").await;
}

/// Issue 8, situation 6: a view change's report carries every unstable
/// message, so a few large ones made it larger than a frame; the link
/// closed and the same report was resent for ever. Now it travels in
/// fragments (`mesh.max_message_bytes`).
#[tokio::test]
async fn a_view_change_with_large_unstable_messages_completes() {
    let mut mesh = Mesh::new("mem-large");
    mesh.extra = vec![
        "limits.max_frame_bytes=1048576".into(),
        "limits.max_payload_bytes=900000".into(),
    ];
    let brokers = mesh.start_all().await;
    let sub_client = brokers[1].client("sub").await;
    let mut subs = Vec::new();
    for g in ["ga", "gb", "gc"] {
        subs.push(sub_client.subscribe(&format!("{g}/**")).await.unwrap());
    }
    // b3 frozen: nothing it has not acknowledged becomes stable, so the
    // three messages stay in b1's report of the coming view change.
    let b3 = brokers[2].child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-STOP", &b3])
            .status()
            .unwrap()
            .success()
    );
    let pub_client = brokers[0].client("pub").await;
    for g in ["ga", "gb", "gc"] {
        let p = pub_client
            .publisher(&format!("{g}/big"), Publish::total().safe())
            .unwrap();
        p.publish(vec![b'x'; 800_000]).await.unwrap();
    }
    pub_client.flush().await.unwrap();
    // b3 is excluded: b1's report holds about 2.4 MB.
    for b in &brokers[..2] {
        wait_mesh(b, 2).await;
    }
    for sub in &mut subs {
        let msg = tokio::time::timeout(GUARD, sub.next())
            .await
            .expect("a large message was never delivered")
            .expect("subscription ended")
            .unwrap();
        assert_eq!(msg.payload.len(), 800_000);
    }
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &b3])
        .status();
}

#[tokio::test]
async fn force_new_mesh_is_refused_while_the_last_view_answers_and_works_once_it_is_gone() {
    let mesh = Mesh::new("mem-force");
    let mut brokers = mesh.start_all().await;
    let b1 = brokers.remove(0);
    let data = mesh::kill_keep_dir(b1);
    for b in &brokers {
        wait_mesh(b, 2).await;
    }
    // b2 and b3 answer: refused, naming them, and nothing started.
    let args = mesh.cli_args(0, &data, &["--force-new-mesh"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, err) = run_cli(&args, None);
    assert!(!status.success(), "{err}");
    assert!(err.contains("--force-new-mesh refused"), "{err}");
    assert!(err.contains("b2 at") && err.contains("b3 at"), "{err}");

    // The majority is gone for good: without the override b1 stays out
    // of any mesh (it waits for its peers), with it b1 starts a new mesh.
    for b in brokers.drain(..) {
        drop(mesh::kill_keep_dir(b));
    }
    let waiting = mesh.start(0, data);
    // Once it has tried both peers (and failed), it still has no view.
    let s = wait_for(waiting.admin, "failed dials to b2 and b3", |s| {
        s["link_errors"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    assert!(
        view_members(&s).is_empty(),
        "a broker with history must not start a mesh alone: {s}"
    );
    let data = mesh::kill_keep_dir(waiting);
    let forced = mesh.start_forced(0, data);
    let s = wait_mesh(&forced, 1).await;
    assert!(view_members(&s)[0].starts_with('b'), "{s}");
}

#[tokio::test]
async fn a_corrupt_membership_file_stops_the_broker_naming_it() {
    let mesh = Mesh::new("mem-corrupt");
    let data = TempDir::new("data-corrupt");
    let path = data.path().join("membership.json");
    std::fs::write(&path, b"{\"format\":1,\"broker\":\"b1\",\"incarn").unwrap();
    let args = mesh.cli_args(0, &data, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, err) = run_cli(&args, None);
    assert!(!status.success(), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("corrupt"), "{err}");
    // Left as it was for the operator.
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"{\"format\":1,\"broker\":\"b1\",\"incarn"
    );
}

/// Broker `id` as a status document's view lists it (`b2`, or `b2#<n>`
/// after it rejoined n times).
fn member_of(members: &[String], id: &str) -> Option<String> {
    members
        .iter()
        .find(|m| *m == id || m.starts_with(&format!("{id}#")))
        .cloned()
}

/// The incarnation of the process at the other end of the link to `id`.
fn link_incarnation(s: &serde_json::Value, id: &str) -> Option<u64> {
    s["links"].as_array()?.iter().find(|l| l["broker"] == id)?["incarnation"].as_u64()
}

#[tokio::test]
async fn a_second_live_broker_with_the_same_id_is_refused_and_displaces_nobody() {
    let mesh = Mesh::new("mem-impostor");
    let brokers = mesh.start_all().await;
    let before = view_members(&common::status(brokers[0].admin).await);
    let real_b2 = member_of(&before, "b2").expect("b2 in the view");
    let real_incarnation =
        link_incarnation(&common::status(brokers[0].admin).await, "b2").expect("b1 linked to b2");
    // Another process presenting id b2 (b2's certificate, other ports),
    // pointed at b1.
    let impostor_addr = free_udp_addr();
    let mut extra = mesh::fast();
    extra.push("mesh.bootstrap=false".into());
    let impostor = mesh::broker(
        mesh.dir.path(),
        "b2",
        impostor_addr,
        &[("b1", mesh.addrs[0])],
        &extra,
    );
    // The impostor records the refusal it received, naming the id and both
    // peer addresses.
    let s = wait_for(impostor.admin, "the impostor's refusal", |s| {
        s["link_errors"].as_array().is_some_and(|errs| {
            errs.iter()
                .any(|e| e[1].as_str().is_some_and(|t| t.contains("already live")))
        })
    })
    .await;
    let refusal = s["link_errors"][0][1].as_str().unwrap().to_string();
    assert!(refusal.contains("broker id \"b2\""), "{refusal}");
    assert!(
        refusal.contains(&mesh.addrs[1].to_string())
            && refusal.contains(&impostor_addr.to_string()),
        "the refusal names both addresses: {refusal}"
    );
    assert!(view_members(&s).is_empty(), "{s}");
    // The real b2 stays linked and in the view, and keeps delivering: a
    // message published on b2 reaches a subscriber on b1 and vice versa.
    let sub_b1 = brokers[0].client("sub-b1").await;
    let mut from_b2 = sub_b1.subscribe("orders/b2").await.unwrap();
    let sub_b2 = brokers[1].client("sub-b2").await;
    let mut from_b1 = sub_b2.subscribe("orders/b1").await.unwrap();
    let c2 = brokers[1].client("pub-b2").await;
    let p2 = c2.publisher("orders/b2", Publish::total().safe()).unwrap();
    let c1 = brokers[0].client("pub-b1").await;
    let p1 = c1.publisher("orders/b1", Publish::total().safe()).unwrap();
    for i in 0..20 {
        p2.publish(format!("m{i}")).await.unwrap();
        p1.publish(format!("m{i}")).await.unwrap();
    }
    for sub in [&mut from_b2, &mut from_b1] {
        for i in 0..20 {
            let m = tokio::time::timeout(GUARD, sub.next())
                .await
                .expect("delivery")
                .expect("subscription ended")
                .unwrap();
            assert_eq!(m.payload, format!("m{i}").into_bytes());
        }
    }
    for b in &brokers {
        let s = common::status(b.admin).await;
        assert_eq!(
            member_of(&view_members(&s), "b2"),
            Some(real_b2.clone()),
            "{s}"
        );
        if b.admin != brokers[1].admin {
            // Still linked to the real b2's process, not the impostor.
            assert_eq!(link_incarnation(&s, "b2"), Some(real_incarnation), "{s}");
        }
        assert_eq!(s["core"]["mesh"]["blocked"], false, "{s}");
    }
    // Still refused (never let in) at the end.
    let s = common::status(impostor.admin).await;
    assert!(view_members(&s).is_empty(), "{s}");
    assert!(s["links"].as_array().is_some_and(Vec::is_empty), "{s}");
}
