//! Brokers started as separate processes link to each other over QUIC with
//! mutual TLS under a cluster CA made by `meshcast certs`.

mod common;
#[path = "common/logs.rs"]
mod logs;
#[path = "common/mesh.rs"]
mod mesh;

use common::{BrokerProc, GUARD, TempDir, run_cli};
use logs::{Member, SharedLog, Subscriber};
use mesh::{broker, certs, free_udp_addr, full_mesh, wait_for};
use meshcast_protocol::history::Event;

/// [`mesh::fast`] plus whether this broker starts the mesh.
fn fast(bootstrap: bool) -> Vec<String> {
    let mut sets = mesh::fast();
    sets.push(format!("mesh.bootstrap={bootstrap}"));
    sets
}

#[tokio::test]
async fn three_brokers_link_every_pair_and_relink_a_restarted_one() {
    let dir = TempDir::new("mesh3");
    certs(dir.path(), &["b1", "b2", "b3"]);
    let (a1, a2, a3) = (free_udp_addr(), free_udp_addr(), free_udp_addr());
    // Each broker only lists the next one: links are learned both ways.
    // A short idle timeout lets the links notice a killed peer quickly.
    let fast = ["limits.idle_timeout_ms=1500".to_string()];
    let b1 = broker(dir.path(), "b1", a1, &[("b2", a2)], &fast);
    let b2 = broker(dir.path(), "b2", a2, &[("b3", a3)], &fast);
    let b3 = broker(dir.path(), "b3", a3, &[("b1", a1)], &fast);
    for b in [&b1, &b2, &b3] {
        let s = wait_for(b.admin, "two links", |s| {
            s["links"].as_array().map(Vec::len) == Some(2)
        })
        .await;
        let names: Vec<&str> = s["links"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["broker"].as_str().unwrap())
            .collect();
        assert!(!names.contains(&s["broker"].as_str().unwrap()), "{s}");
    }
    let old = common::status(b2.admin).await["incarnation"]
        .as_u64()
        .unwrap();
    // SIGKILL b2: the others drop it; b2 restarted with its data directory
    // is linked again as a new incarnation (the next one it persisted).
    let data = mesh::kill_keep_dir(b2);
    wait_for(b1.admin, "b2 gone", |s| {
        s["links"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    let b2 = mesh::broker_in(data, dir.path(), "b2", a2, &[("b3", a3)], &fast);
    let new = common::status(b2.admin).await["incarnation"]
        .as_u64()
        .unwrap();
    assert_eq!(new, old + 1);
    wait_for(b1.admin, "b2's new incarnation", |s| {
        s["links"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l["incarnation"].as_u64() == Some(new)))
    })
    .await;
}

#[tokio::test]
async fn a_group_map_mismatch_is_refused_naming_both_digests() {
    let dir = TempDir::new("mismatch");
    certs(dir.path(), &["m1", "m2"]);
    let (a1, a2) = (free_udp_addr(), free_udp_addr());
    let m1 = broker(
        dir.path(),
        "m1",
        a1,
        &[("m2", a2)],
        &["groups=[{prefix=\"a\",group=\"x\"}]".into()],
    );
    let m2 = broker(
        dir.path(),
        "m2",
        a2,
        &[("m1", a1)],
        &["groups=[{prefix=\"a\",group=\"y\"}]".into()],
    );
    for b in [&m1, &m2] {
        let s = wait_for(b.admin, "a refusal", |s| {
            s["link_errors"].as_array().is_some_and(|e| !e.is_empty())
        })
        .await;
        let err = s["link_errors"][0][1].as_str().unwrap();
        assert!(err.contains("configuration digest mismatch"), "{err}");
        assert!(
            err.contains("broker m1") && err.contains("broker m2"),
            "{err}"
        );
        assert_eq!(s["links"].as_array().unwrap().len(), 0);
    }
}

/// Publishers on every broker, a subscriber on every broker: the
/// subscribers' logs pass the DESIGN §2 checker (all of them get every
/// message, in one total order, each publisher's in its order, numbered
/// 1, 2, 3, ...), and every broker shows the same mesh view.
async fn one_total_order_across(n: usize, prefix: &str) {
    use futures_util::StreamExt;
    use meshcast_client::Ordering;
    let dir = TempDir::new(prefix);
    let brokers = full_mesh(dir.path(), prefix, n, &[]);
    // One subscriber per broker; subscribe returns once the join is
    // installed mesh-wide.
    let mut subs = Vec::new();
    for (i, b) in brokers.iter().enumerate() {
        let c = b.client("sub").await;
        let s = tokio::time::timeout(GUARD, c.subscribe("orders/**"))
            .await
            .expect("subscribe never completed")
            .unwrap();
        let name = format!("subscriber on {prefix}{}", i + 1);
        subs.push((c, Subscriber::start(&name, s, orders)));
    }
    const N: usize = 30;
    let mut pubs = Vec::new();
    for (i, b) in brokers.iter().enumerate() {
        let c = b.client("pub").await;
        let p = c
            .publisher(&format!("orders/site{i}"), Ordering::Total)
            .unwrap();
        pubs.push((c, p));
    }
    let mut published = Vec::new();
    for m in 0..N {
        for (i, (_, p)) in pubs.iter().enumerate() {
            let key = format!("{i}:{m}");
            p.publish(key.clone()).await.unwrap();
            let mut record = logs::published("orders", &key, Ordering::Total, false);
            record.pseq = Some(m as u64 + 1);
            published.push(record);
        }
    }
    for (c, _) in &pubs {
        c.flush().await.unwrap();
    }
    for (_, s) in &subs {
        s.log.wait_for_count(n * N).await;
    }
    let logs: Vec<_> = subs
        .iter()
        .map(|(_, s)| s.log.snapshot().complete())
        .collect();
    let publishers: std::collections::HashSet<u64> = logs[0]
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.publisher),
            _ => None,
        })
        .collect();
    assert_eq!(publishers.len(), n, "one publisher id per publisher");
    logs::check(logs, published);
    // Every broker's status shows the same n-broker mesh view, and the
    // orders group with the n subscribers as members (publishers are not
    // members).
    let mut views = Vec::new();
    for b in &brokers {
        let s = common::status(b.admin).await;
        let mesh = &s["core"]["mesh"];
        assert_eq!(mesh["view"][1].as_array().unwrap().len(), n, "{s}");
        let orders = mesh["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g[0] == "orders")
            .expect("orders group in status");
        assert_eq!(orders[2].as_array().unwrap().len(), n, "{s}");
        views.push(mesh["view"].clone());
    }
    assert!(views.windows(2).all(|w| w[0] == w[1]), "{views:?}");
    // A request from the first broker is answered by a subscriber on the last.
    let responder = brokers[n - 1].client("responder").await;
    let mut asked = tokio::time::timeout(GUARD, responder.subscribe("svc/echo"))
        .await
        .unwrap()
        .unwrap();
    let answering = tokio::spawn(async move {
        let m = asked.next().await.unwrap().unwrap();
        responder.reply(&m, m.payload.clone()).await.unwrap();
        responder.flush().await.unwrap();
        responder
    });
    let asker = brokers[0].client("asker").await;
    let answers = asker
        .request("svc/echo", "ping", meshcast_client::Gather::First, GUARD)
        .await
        .unwrap();
    assert_eq!(answers.len(), 1, "no answer across the mesh");
    assert_eq!(answers[0].payload, "ping");
    answering.await.unwrap();
}

/// Every topic used here belongs to the group `orders`.
fn orders(topic: &str) -> String {
    assert!(topic.starts_with("orders/"), "{topic}");
    "orders".to_string()
}

#[tokio::test]
async fn publishers_on_three_brokers_reach_every_subscriber_in_one_total_order() {
    one_total_order_across(3, "t").await;
}

#[tokio::test]
async fn publishers_on_five_brokers_reach_every_subscriber_in_one_total_order() {
    one_total_order_across(5, "f").await;
}

#[tokio::test]
async fn survivors_of_a_sigkill_under_load_agree_on_views_and_deliveries() {
    use meshcast_client::{Ordering, Publish};
    let dir = TempDir::new("mesh-kill");
    certs(dir.path(), &["k1", "k2", "k3"]);
    let (a1, a2, a3) = (free_udp_addr(), free_udp_addr(), free_udp_addr());
    let k1 = broker(dir.path(), "k1", a1, &[("k2", a2), ("k3", a3)], &fast(true));
    let k2 = broker(
        dir.path(),
        "k2",
        a2,
        &[("k1", a1), ("k3", a3)],
        &fast(false),
    );
    let mut k3 = broker(
        dir.path(),
        "k3",
        a3,
        &[("k1", a1), ("k2", a2)],
        &fast(false),
    );
    // Subscribers on the survivors, and a member of the group on every
    // broker (members see the views too).
    let mut subs = Vec::new();
    for (i, b) in [&k1, &k2].into_iter().enumerate() {
        let c = b.client("sub").await;
        let s = tokio::time::timeout(GUARD, c.subscribe("orders/**"))
            .await
            .unwrap()
            .unwrap();
        let name = format!("subscriber on k{}", i + 1);
        subs.push((c, Subscriber::start(&name, s, orders)));
    }
    let mut members = Vec::new();
    for (i, b) in [&k1, &k2, &k3].into_iter().enumerate() {
        let c = b.client("member").await;
        let g = tokio::time::timeout(GUARD, c.join("orders"))
            .await
            .unwrap()
            .unwrap();
        let name = format!("member on k{}", i + 1);
        members.push((c, Member::start(&name, g, None)));
    }
    let mut pubs = Vec::new();
    // The publisher on k3 sends `safe` messages: whichever of them a
    // survivor delivers before the view change, the other one must too.
    for (i, b) in [&k1, &k2, &k3].into_iter().enumerate() {
        let c = b.client("pub").await;
        let p = c
            .publisher(
                &format!("orders/p{i}"),
                Publish::with(Ordering::Total).safe_if(i == 2),
            )
            .unwrap();
        pubs.push((c, p));
    }
    const BEFORE: usize = 30;
    const AFTER: usize = 30;
    let mut published = Vec::new();
    for n in 0..BEFORE {
        for (i, (_, p)) in pubs.iter().enumerate() {
            let key = format!("p{i}:{n}");
            p.publish(key.clone()).await.unwrap();
            let record = logs::published("orders", &key, Ordering::Total, i == 2);
            // k3's own messages die with it unless they reached the others.
            published.push(if i == 2 { record.may_be_lost() } else { record });
        }
    }
    // k3 has accepted its publisher's messages (they may still be in flight
    // to the others) when it is killed.
    pubs[2].0.flush().await.unwrap();
    k3.child.kill().unwrap();
    k3.child.wait().unwrap();
    let killed = std::time::Instant::now();
    for n in BEFORE..BEFORE + AFTER {
        for (i, (_, p)) in pubs[..2].iter().enumerate() {
            let key = format!("p{i}:{n}");
            p.publish(key.clone()).await.unwrap();
            published.push(logs::published("orders", &key, Ordering::Total, false));
        }
    }
    for (c, _) in &pubs[..2] {
        c.flush().await.unwrap();
    }
    // The survivors install a two-broker view.
    for b in [&k1, &k2] {
        wait_for(b.admin, "a view without k3", |s| {
            s["core"]["mesh"]["view"][1].as_array().map(Vec::len) == Some(2)
        })
        .await;
    }
    let failover = killed.elapsed();
    // A last message marks the end every surviving log is read to.
    pubs[0].1.publish("end").await.unwrap();
    pubs[0].0.flush().await.unwrap();
    published.push(logs::published("orders", "end", Ordering::Total, false));
    let survivors = subs.iter().map(|(_, s)| &s.log);
    let survivors: Vec<&SharedLog> = survivors
        .chain(members[..2].iter().map(|(_, m)| &m.log))
        .collect();
    for log in &survivors {
        log.wait_for_key("end").await;
    }
    let mut all: Vec<_> = survivors.iter().map(|l| l.snapshot().complete()).collect();
    // The members' logs hold the view change the checker compares them
    // across: five members (two subscribers, three members), then four.
    let sizes = logs::view_sizes(&all[2], "orders");
    assert!(sizes.windows(2).any(|w| w == [5, 4]), "views {sizes:?}");
    // The member on k3 saw what it saw before the kill.
    all.push(members[2].1.log.snapshot());
    let from_k3 = logs::keys(&all[0])
        .iter()
        .filter(|k| k.starts_with("p2:"))
        .count();
    logs::check(all, published);
    eprintln!(
        "failover: new view visible {} ms after SIGKILL; {from_k3} of k3's {BEFORE} messages delivered",
        failover.as_millis()
    );
}

#[tokio::test]
async fn a_partitioned_minority_blocks_and_rejoins_after_the_heal() {
    use meshcast_client::Ordering;
    let dir = TempDir::new("mesh-part");
    let mesh = mesh::RelayedMesh::start(dir.path(), "p", 3, &mesh::fast()).await;
    let brokers = mesh.brokers.as_slice();
    // A subscriber on p1 (majority) and one on p3 (to be cut off).
    let mut subs = Vec::new();
    for i in [0, 2] {
        let c = brokers[i].client("sub").await;
        let s = tokio::time::timeout(GUARD, c.subscribe("orders/**"))
            .await
            .unwrap()
            .unwrap();
        let name = format!("subscriber on p{}", i + 1);
        subs.push((c, Subscriber::start(&name, s, orders)));
    }
    let sub = &subs[0].1;
    for b in brokers {
        wait_for(b.admin, "a three-broker view", |s| {
            s["core"]["mesh"]["view"][1].as_array().map(Vec::len) == Some(3)
        })
        .await;
    }
    // A member of the group on every broker.
    let mut members = Vec::new();
    for (i, b) in brokers.iter().enumerate() {
        let c = b.client("member").await;
        let g = tokio::time::timeout(GUARD, c.join("orders"))
            .await
            .unwrap()
            .unwrap();
        let name = format!("member on p{}", i + 1);
        members.push((c, Member::start(&name, g, None)));
    }
    // A client of p3 is told when p3 leaves the primary component.
    let p3_client = brokers[2].client("p3-watcher").await;
    let mut p3_state = p3_client.mesh_state();
    assert!(!p3_client.is_blocked());
    // Cut p3 off from both others, in both directions.
    mesh.isolate(2, true);
    let cut = std::time::Instant::now();
    wait_for(brokers[2].admin, "p3 to block", |s| {
        s["core"]["mesh"]["blocked"] == true
    })
    .await;
    for b in &brokers[..2] {
        wait_for(b.admin, "a two-broker view", |s| {
            s["core"]["mesh"]["view"][1].as_array().map(Vec::len) == Some(2)
        })
        .await;
    }
    let partition_ms = cut.elapsed().as_millis();
    tokio::time::timeout(GUARD, p3_state.wait_for(|blocked| *blocked))
        .await
        .expect("p3's client was never told it is blocked")
        .unwrap();
    // The majority goes on delivering.
    let mut published = Vec::new();
    let p = brokers[1].client("pub").await;
    let publisher = p.publisher("orders/majority", Ordering::Total).unwrap();
    publisher.publish("during the partition").await.unwrap();
    published.push(logs::published(
        "orders",
        "during the partition",
        Ordering::Total,
        false,
    ));
    sub.log.wait_for_key("during the partition").await;
    // Heal: p3 comes back into the primary component.
    mesh.isolate(2, false);
    let healed = std::time::Instant::now();
    for b in brokers {
        wait_for(b.admin, "a three-broker view after the heal", |s| {
            s["core"]["mesh"]["view"][1].as_array().map(Vec::len) == Some(3)
                && s["core"]["mesh"]["blocked"] == false
        })
        .await;
    }
    tokio::time::timeout(GUARD, p3_state.wait_for(|blocked| !*blocked))
        .await
        .expect("p3's client was never told it is unblocked")
        .unwrap();
    eprintln!(
        "partition: minority blocked and majority view in {partition_ms} ms; heal: three-broker view again in {} ms",
        healed.elapsed().as_millis()
    );
    // p3's subscriber and member go on as new members (new ids).
    for log in [&subs[1].1.log, &members[2].1.log] {
        log.wait_for("a view with its new member id", |l| {
            logs::my_ids(l, "orders").len() == 2
        })
        .await;
    }
    // A publisher on the healed broker reaches the subscriber on p1.
    let p3 = brokers[2].client("pub3").await;
    let publisher3 = p3.publisher("orders/healed", Ordering::Total).unwrap();
    publisher3.publish("after the heal").await.unwrap();
    p3.flush().await.unwrap();
    published.push(logs::published(
        "orders",
        "after the heal",
        Ordering::Total,
        false,
    ));
    sub.log.wait_for_key("after the heal").await;
    // A last message from the majority marks the end of the logs.
    publisher.publish("end").await.unwrap();
    p.flush().await.unwrap();
    published.push(logs::published("orders", "end", Ordering::Total, false));
    // Every log, the cut-off ones included, is read up to it: their first
    // membership stops short, the second must be complete.
    let mut all = Vec::new();
    let every = subs.iter().map(|(_, s)| &s.log);
    for log in every.chain(members.iter().map(|(_, m)| &m.log)) {
        log.wait_for_key("end").await;
        all.push(log.snapshot().complete());
    }
    // The majority's members went from five members (two subscribers, a
    // member on each broker) to three, the cut-off ones from one id to
    // another.
    let sizes = logs::view_sizes(&all[2], "orders");
    assert!(sizes.windows(2).any(|w| w == [5, 3]), "views {sizes:?}");
    logs::check(all, published);
}

#[tokio::test]
async fn group_members_on_three_brokers_see_the_same_views_and_messages() {
    use meshcast_client::Ordering;
    let dir = TempDir::new("mesh-group");
    certs(dir.path(), &["g1", "g2", "g3"]);
    let (a1, a2, a3) = (free_udp_addr(), free_udp_addr(), free_udp_addr());
    let brokers = [
        broker(dir.path(), "g1", a1, &[("g2", a2), ("g3", a3)], &fast(true)),
        broker(
            dir.path(),
            "g2",
            a2,
            &[("g1", a1), ("g3", a3)],
            &fast(false),
        ),
        broker(
            dir.path(),
            "g3",
            a3,
            &[("g1", a1), ("g2", a2)],
            &fast(false),
        ),
    ];
    let mut members = Vec::new();
    for (i, b) in brokers.iter().enumerate() {
        let c = b.client("member").await;
        let g = tokio::time::timeout(GUARD, c.join("room"))
            .await
            .unwrap()
            .unwrap();
        // The first view already contains this member, at its rank.
        let me = &g.view().members[g.view().rank as usize];
        assert!(
            me.ends_with(&format!("/s{}", c.session_id())),
            "{:?}",
            g.view()
        );
        let name = format!("member on g{}", i + 1);
        members.push((c, Member::start(&name, g, None)));
    }
    // Wait until everyone sees the three-member view.
    for (_, m) in &members {
        m.log.wait_for_view_size("room", 3).await;
    }
    let last: Vec<_> = members
        .iter()
        .map(|(_, m)| logs::last_view(&m.log.snapshot(), "room").unwrap().clone())
        .collect();
    let mut ranks: Vec<usize> = last
        .iter()
        .map(|v| v.members.iter().position(|x| *x == v.me).unwrap())
        .collect();
    ranks.sort();
    assert_eq!(ranks, [0, 1, 2], "each member has its own rank");
    const N: usize = 10;
    let mut published = Vec::new();
    for n in 0..N {
        for (i, (_, m)) in members.iter().enumerate() {
            let key = format!("{i}:{n}");
            published.push(m.multicast(&key, Ordering::Total, false).await.unwrap());
        }
    }
    for (_, m) in &members {
        m.log.wait_for_count(3 * N).await;
    }
    // Causal rounds: each member sends once it delivered the previous
    // round from everyone (its record lists what it had delivered).
    const ROUNDS: usize = 3;
    for r in 0..ROUNDS {
        for (i, (_, m)) in members.iter().enumerate() {
            let key = format!("causal {i}:{r}");
            published.push(m.multicast(&key, Ordering::Causal, false).await.unwrap());
        }
        for (_, m) in &members {
            m.log.wait_for_count(3 * (N + r + 1)).await;
        }
    }
    // One member leaves: the others see a two-member view, then a last
    // message.
    let (_c3, leaving) = members.pop().unwrap();
    leaving.leave().await;
    for (_, m) in &members {
        m.log.wait_for_view_size("room", 2).await;
    }
    published.push(
        members[0]
            .1
            .multicast("end", Ordering::Total, false)
            .await
            .unwrap(),
    );
    let mut all = Vec::new();
    for (_, m) in &members {
        m.log.wait_for_key("end").await;
        all.push(m.log.snapshot().complete());
    }
    all.push(leaving.log.snapshot());
    logs::check(all, published);
}

#[tokio::test]
async fn a_member_joining_with_state_under_load_reaches_the_same_state() {
    use meshcast_client::Ordering;
    let dir = TempDir::new("mesh-state");
    certs(dir.path(), &["r1", "r2", "r3"]);
    let (a1, a2, a3) = (free_udp_addr(), free_udp_addr(), free_udp_addr());
    let brokers = [
        broker(dir.path(), "r1", a1, &[("r2", a2), ("r3", a3)], &fast(true)),
        broker(
            dir.path(),
            "r2",
            a2,
            &[("r1", a1), ("r3", a3)],
            &fast(false),
        ),
        broker(
            dir.path(),
            "r3",
            a3,
            &[("r1", a1), ("r2", a2)],
            &fast(false),
        ),
    ];
    // The state of this replicated "ledger" is the list of entries applied;
    // each member's recorder answers state requests with it, in stream
    // order.
    let c1 = brokers[0].client("first").await;
    let (g, initial) = tokio::time::timeout(GUARD, c1.join_with_state("ledger"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(initial, None, "the first member gets no checkpoint");
    let first = Member::start("first member, on r1", g, Some(initial));
    // A writer on r3 keeps adding entries while the second member joins.
    let c3 = brokers[2].client("writer").await;
    let g = tokio::time::timeout(GUARD, c3.join("ledger"))
        .await
        .unwrap()
        .unwrap();
    let writer = std::sync::Arc::new(Member::start("writer, on r3", g, None));
    const TOTAL: usize = 120;
    let w = writer.clone();
    let writing = tokio::spawn(async move {
        let mut published = Vec::new();
        for n in 0..TOTAL {
            let key = format!("entry {n}");
            published.push(w.multicast(&key, Ordering::Total, false).await.unwrap());
            if n % 10 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
        published
    });
    first.log.wait_for_count(20).await;
    let c2 = brokers[1].client("second").await;
    let (g, checkpoint) = tokio::time::timeout(GUARD, c2.join_with_state("ledger"))
        .await
        .expect("join with state never completed")
        .unwrap();
    let second = Member::start(
        "second member, on r2 (joined with state)",
        g,
        Some(checkpoint.clone()),
    );
    let published = writing.await.unwrap();
    let mut all = Vec::new();
    // Complete logs: every entry, and the view that admitted the second
    // member (when the join comes after the last write, the writer may
    // have every entry before that view reaches it).
    for m in [&first, &writer, &second] {
        m.log
            .wait_for(&format!("all {TOTAL} entries and the view of three"), |l| {
                logs::state(l).len() >= TOTAL
                    && logs::last_view(l, "ledger").is_some_and(|v| v.members.len() == 3)
            })
            .await;
        all.push(m.log.snapshot().complete());
    }
    let checkpoint = checkpoint.expect("an existing member provided a checkpoint");
    // Where the join point falls in the writes depends on timing; what must
    // hold is that checkpoint plus later messages equal the first's state.
    let text = String::from_utf8(checkpoint.to_vec()).unwrap();
    let held = if text.is_empty() {
        0
    } else {
        text.split('\n').count()
    };
    eprintln!("checkpoint held {held} of {TOTAL} entries");
    assert_eq!(
        logs::state(&all[2]),
        logs::state(&all[0]),
        "the joiner's state differs"
    );
    logs::check(all, published);
}

#[tokio::test]
async fn joining_a_group_needs_mesh_mode() {
    let b = BrokerProc::start(&[]);
    let c = b.client("lonely").await;
    let err = c.join("room").await.unwrap_err();
    assert!(err.to_string().contains("mesh mode"), "{err}");
    c.flush().await.unwrap();
}

#[test]
fn a_mesh_without_a_cluster_ca_is_refused_at_start() {
    let dir = TempDir::new("noca");
    let (status, _, err) = run_cli(
        &[
            "broker",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--set",
            "broker.id=x1",
            "--set",
            "mesh.peers=[{id=\"x2\",addr=\"127.0.0.1:9\"}]",
        ],
        None,
    );
    assert!(!status.success());
    assert!(err.contains("meshcast certs"), "{err}");
}
