//! The client API over a mesh of real broker processes: the views a
//! subscription delivers, the view a subscription is installed in, awaited
//! (confirmed) publishes, members that survive a partition of their broker,
//! the session timeout, and the per-group status.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use std::time::Duration;

use common::{BrokerProc, GUARD, TempDir};
use futures_util::StreamExt;
use mesh::{RelayedMesh, fast, full_mesh, wait_for, wait_mesh};
use meshcast_client::{
    Client, ClientError, Confirmation, Group, GroupEvent, Ordering, Publish, Subscription,
    SubscriptionEvent, View,
};
use tokio::sync::mpsc;

/// What a subscriber saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A view: its id and members.
    View(String, Vec<String>),
    /// A message: publisher and sequence number.
    Msg(u64, u64),
}

fn seen_view(v: &View) -> Seen {
    Seen::View(v.id.clone(), v.members.clone())
}

async fn subscribe(c: &Client, pattern: &str) -> Subscription {
    tokio::time::timeout(GUARD, c.subscribe(pattern))
        .await
        .expect("subscribe never completed")
        .expect("subscribe")
}

/// This session's entry in a view's member list.
fn me_in(v: &View, c: &Client) -> bool {
    v.members
        .get(v.rank as usize)
        .is_some_and(|m| m.ends_with(&format!("/s{}", c.session_id())))
}

#[tokio::test]
async fn subscribers_on_the_survivors_of_a_sigkill_see_the_same_views_among_the_same_messages() {
    let dir = TempDir::new("mc-views");
    let mut brokers = full_mesh(dir.path(), "v", 3, &fast());
    for b in &brokers {
        wait_mesh(b, 3).await;
    }
    // A subscriber on each broker. `subscribe` returns with the view it was
    // installed in, which holds the new member.
    let mut subs = Vec::new();
    for b in &brokers {
        let c = b.client("sub").await;
        let s = subscribe(&c, "orders/**").await;
        assert_eq!(s.views().len(), 1, "{:?}", s.views());
        let v = s.view("orders").expect("the view of group orders").clone();
        assert!(me_in(&v, &c), "{v:?}");
        subs.push((c, s, v));
    }
    let installed: Vec<View> = subs.iter().map(|(_, _, v)| v.clone()).collect();
    assert_eq!(installed[2].members.len(), 3, "{installed:?}");
    // Every broker's status shows the group with its three members, the
    // same sequencer (a mesh member) and this broker's one member with its
    // buffers.
    let mut sequencers = Vec::new();
    let orders = |s: &serde_json::Value| {
        s["core"]["mesh"]["group_status"]
            .as_array()
            .and_then(|gs| gs.iter().find(|g| g["group"] == "orders"))
            .cloned()
    };
    for b in &brokers {
        let s = wait_for(b.admin, "the view of all three subscribers", |s| {
            orders(s).is_some_and(|g| g["view"] == installed[2].id.as_str())
        })
        .await;
        let mesh = &s["core"]["mesh"];
        let g = orders(&s).unwrap();
        assert_eq!(g["members"].as_array().unwrap().len(), 3, "{g}");
        let sequencer = g["sequencer"].as_str().unwrap_or_else(|| panic!("{g}"));
        let view: Vec<&str> = mesh["view"][1]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap())
            .collect();
        assert!(view.contains(&sequencer), "{sequencer} not in {view:?}");
        sequencers.push(sequencer.to_string());
        for field in ["held", "unstable_own", "decisions_held", "queued_publishes"] {
            assert!(g[field].is_u64(), "{field} missing in {g}");
        }
        let local = g["local"].as_array().unwrap();
        assert_eq!(local.len(), 1, "{g}");
        assert_eq!(local[0]["by"], "subscription", "{g}");
        for field in [
            "session",
            "queued_frames",
            "queued_bytes",
            "pending_confirms",
        ] {
            assert!(local[0][field].is_u64(), "{field} missing in {g}");
        }
    }
    assert!(
        sequencers.windows(2).all(|w| w[0] == w[1]),
        "{sequencers:?}"
    );
    // `meshcast status --groups` says the same as text.
    let admin = brokers[0].admin.to_string();
    let (ok, text, err) = tokio::task::spawn_blocking(move || {
        common::run_cli(&["status", "--admin", &admin, "--groups"], None)
    })
    .await
    .unwrap();
    assert!(ok.success(), "{err}");
    let line = format!(
        "group orders view {}: 3 member(s) {}, sequencer {}",
        installed[2].id,
        installed[2].members.join(","),
        sequencers[0]
    );
    assert!(text.contains(&line), "{line:?} not in {text}");
    assert!(text.contains("(subscription): 0 frame(s)"), "{text}");
    assert!(text.contains("  held "), "{text}");

    let mut pubs = Vec::new();
    for (i, b) in brokers.iter().enumerate() {
        let c = b.client("pub").await;
        let p = c
            .publisher(&format!("orders/p{i}"), Ordering::Total)
            .unwrap();
        pubs.push((c, p));
    }
    const BEFORE: usize = 30;
    const AFTER: usize = 30;
    let mut survivors: Vec<u64> = Vec::new();
    for (i, (c, _)) in pubs[..2].iter().enumerate() {
        survivors.push(publisher_id(c, &brokers[i]).await);
    }
    // The survivors' subscribers record everything until they have every
    // message of the surviving publishers and a view without v3.
    let mut readers = Vec::new();
    // Sessions and subscriptions stay open until both readers are done.
    for (c, mut s, v) in subs.drain(..2) {
        let survivors = survivors.clone();
        let full = installed[2].clone();
        readers.push(tokio::spawn(async move {
            let mut log = vec![seen_view(&v)];
            let mut from_survivors = 0;
            // A view after the one of all three subscribers, without v3's.
            let (mut all_in, mut shrunk) = (v.id == full.id, false);
            let mut shrunk_at = None;
            while !(shrunk && from_survivors == 2 * (BEFORE + AFTER)) {
                let next = tokio::time::timeout(GUARD, s.next_event()).await;
                let Ok(next) = next else {
                    let views: Vec<&Seen> =
                        log.iter().filter(|e| matches!(e, Seen::View(..))).collect();
                    let tail = &log[log.len().saturating_sub(5)..];
                    panic!(
                        "stalled with {from_survivors} messages of the survivors \
                         ({} events), views {views:?}, last {tail:?}",
                        log.len()
                    )
                };
                match next {
                    Some(Ok(SubscriptionEvent::View(v))) => {
                        if all_in && v.members.len() == 2 && !shrunk {
                            shrunk_at = Some(std::time::Instant::now());
                        }
                        shrunk |= all_in && v.members.len() == 2;
                        all_in |= v.id == full.id;
                        log.push(seen_view(&v));
                    }
                    Some(Ok(SubscriptionEvent::Message(m))) => {
                        from_survivors += usize::from(survivors.contains(&m.publisher));
                        log.push(Seen::Msg(m.publisher, m.seq));
                    }
                    other => panic!("{other:?} after {log:?}"),
                }
            }
            (log, c, s, shrunk_at)
        }));
    }
    for n in 0..BEFORE {
        for (_, p) in &pubs {
            p.publish(format!("{n}")).await.unwrap();
        }
    }
    pubs[2].0.flush().await.unwrap();
    let killed = std::time::Instant::now();
    brokers[2].child.kill().unwrap();
    brokers[2].child.wait().unwrap();
    // Published while the survivors change their view.
    for n in BEFORE..BEFORE + AFTER {
        for (_, p) in &pubs[..2] {
            p.publish(format!("{n}")).await.unwrap();
        }
    }
    for (c, _) in &pubs[..2] {
        c.flush().await.unwrap();
    }
    let mut logs = Vec::new();
    let mut keep = Vec::new();
    for r in readers {
        // Each reader has its own guard, and reports what it saw.
        let (log, c, s, shrunk_at) = r.await.unwrap();
        // A figure for the notes, never asserted (timing varies).
        if let Some(t) = shrunk_at {
            eprintln!(
                "failover: SIGKILL to the new view at a subscriber: {} ms \
                 (mesh.suspect_timeout_ms=500, heartbeat_ms=50)",
                t.duration_since(killed).as_millis()
            );
        }
        logs.push(log);
        keep.push((c, s));
    }
    // From the view all three were in, the survivors saw the same views at
    // the same places among the same messages (in one total order).
    let full = seen_view(&installed[2]);
    let from: Vec<usize> = logs
        .iter()
        .map(|l| {
            l.iter()
                .position(|e| *e == full)
                .unwrap_or_else(|| panic!("the three-member view is missing from {l:?}"))
        })
        .collect();
    assert_eq!(
        logs[0][from[0]..],
        logs[1][from[1]..],
        "the survivors' subscribers disagree"
    );
    let tail = &logs[0][from[0]..];
    let views: Vec<&Seen> = tail
        .iter()
        .filter(|e| matches!(e, Seen::View(..)))
        .collect();
    assert_eq!(views.len(), 2, "{views:?}");
    // The earlier subscribers saw the later ones join, in the views the
    // later ones were installed in.
    assert!(logs[0].contains(&seen_view(&installed[1])), "{:?}", logs[0]);
}

/// The publisher id that receivers in a mesh see for client `c` of broker
/// `b` (in its current incarnation, from its status).
async fn publisher_id(c: &Client, b: &BrokerProc) -> u64 {
    let name = meshcast_config::node_name(&c.broker_id());
    let s = common::status(b.admin).await;
    let incarnation = s["core"]["mesh"]["incarnation"]
        .as_u64()
        .unwrap_or_else(|| panic!("no incarnation in {s}"));
    meshcast_client::mesh_publisher_id(name, incarnation, c.session_id())
}

#[tokio::test]
async fn a_confirmed_safe_publish_reaches_every_survivor_even_if_its_broker_dies_at_once() {
    let dir = TempDir::new("mc-safe");
    let mut brokers = full_mesh(dir.path(), "s", 3, &fast());
    for b in &brokers {
        wait_mesh(b, 3).await;
    }
    let mut subs = Vec::new();
    for b in &brokers[..2] {
        let c = b.client("sub").await;
        let s = subscribe(&c, "alerts/**").await;
        subs.push((c, s));
    }
    let c = brokers[2].client("pub").await;
    // Acceptance only: the broker took it.
    let plain = c.publisher("alerts/plain", Ordering::Fifo).unwrap();
    let Confirmation { seq, stable } = plain.publish_confirmed("accepted").await.unwrap();
    assert_eq!((seq, stable), (1, false));
    // Stability: each confirmation says every broker holds the message.
    let safe = c.publisher("alerts/safe", Publish::total().safe()).unwrap();
    const N: u64 = 20;
    for n in 0..N {
        let conf = tokio::time::timeout(GUARD, safe.publish_confirmed(format!("{n}")))
            .await
            .expect("no confirmation")
            .unwrap();
        assert_eq!(
            conf,
            Confirmation {
                seq: n + 2,
                stable: true
            }
        );
    }
    // Many awaited at once are confirmed each.
    const BATCH: u64 = 200;
    let batch = (N..N + BATCH).map(|n| safe.publish_confirmed(format!("{n}")));
    let batch = futures_util::future::join_all(batch);
    let confs = tokio::time::timeout(GUARD, batch)
        .await
        .expect("no confirmations");
    let mut seqs: Vec<u64> = confs.into_iter().map(|c| c.unwrap().seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (N + 2..N + BATCH + 2).collect::<Vec<_>>());
    // The publisher's broker dies right after the last confirmation: every
    // surviving subscriber still delivers every confirmed message.
    brokers[2].child.kill().unwrap();
    brokers[2].child.wait().unwrap();
    for (_, s) in subs.iter_mut() {
        let mut got = Vec::new();
        while got.len() < (N + BATCH) as usize {
            let m = tokio::time::timeout(GUARD, s.next())
                .await
                .unwrap_or_else(|_| panic!("only {} of the confirmed arrived: {got:?}", got.len()))
                .unwrap()
                .unwrap();
            if m.topic == "alerts/safe" {
                assert!(m.safe);
                got.push(String::from_utf8(m.payload.to_vec()).unwrap());
            }
        }
        let first: Vec<String> = (0..N).map(|n| n.to_string()).collect();
        assert_eq!(got[..N as usize], first, "awaited one by one, in order");
        got.sort_by_key(|p| p.parse::<u64>().unwrap());
        let all: Vec<String> = (0..N + BATCH).map(|n| n.to_string()).collect();
        assert_eq!(got, all);
    }
}

/// What a replica task reports.
#[derive(Debug)]
enum Note {
    View(View),
    /// A checkpoint arrived and replaced the state.
    State(Vec<String>),
    /// An entry was applied: the state's new length, and the entry's
    /// publisher id.
    Applied(usize, u64),
    /// The broker was cut off, came back, or came back as a new
    /// incarnation (in their place among the other notes).
    Blocked,
    Unblocked,
    Rejoined(meshcast_client::Rejoined),
}

/// A replicated ledger member: applies entries, answers state requests in
/// stream order, replaces its state with every checkpoint it receives.
/// Ends with its state once it holds `total` entries.
fn replica(
    mut g: Group,
    mut state: Vec<String>,
    total: usize,
    notes: mpsc::UnboundedSender<Note>,
) -> tokio::task::JoinHandle<(Group, Vec<String>)> {
    tokio::spawn(async move {
        while state.len() < total {
            match g.next().await {
                Some(Ok(GroupEvent::Message(m))) => {
                    state.push(String::from_utf8(m.payload.to_vec()).unwrap());
                    let _ = notes.send(Note::Applied(state.len(), m.publisher));
                }
                Some(Ok(GroupEvent::StateRequest(r))) => r.reply(state.join("\n")),
                Some(Ok(GroupEvent::State(data))) => {
                    state = parse(data.as_deref());
                    let _ = notes.send(Note::State(state.clone()));
                }
                Some(Ok(GroupEvent::View(v))) => {
                    let _ = notes.send(Note::View(v));
                }
                Some(Ok(GroupEvent::Blocked)) => {
                    let _ = notes.send(Note::Blocked);
                }
                Some(Ok(GroupEvent::Unblocked)) => {
                    let _ = notes.send(Note::Unblocked);
                }
                Some(Ok(GroupEvent::Rejoined(r))) => {
                    let _ = notes.send(Note::Rejoined(r));
                }
                other => panic!("{other:?} with {} entries", state.len()),
            }
        }
        (g, state)
    })
}

fn parse(data: Option<&[u8]>) -> Vec<String> {
    match data {
        Some(d) if !d.is_empty() => String::from_utf8(d.to_vec())
            .unwrap()
            .split('\n')
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

/// Waits for the first note that `want` accepts, passing over the others.
async fn note<T>(
    rx: &mut mpsc::UnboundedReceiver<Note>,
    what: &str,
    mut want: impl FnMut(Note) -> Option<T>,
) -> T {
    tokio::time::timeout(GUARD, async {
        loop {
            let n = rx.recv().await.expect("the replica ended");
            if let Some(t) = want(n) {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[tokio::test]
async fn a_minority_member_that_joined_with_state_is_resynchronised_after_the_heal() {
    let dir = TempDir::new("mc-part");
    let mut extra = fast();
    extra.push("limits.max_pending_confirms=1".to_string());
    let mesh = RelayedMesh::start(dir.path(), "q", 3, &extra).await;
    let b = &mesh.brokers;
    for x in b {
        wait_mesh(x, 3).await;
    }
    const TOTAL: usize = 60;
    // Member A on q1 (the oldest, so the state provider), member C on the
    // broker that will be cut off, both with state; a writer on q2.
    let ca = b[0].client("a").await;
    let (a, init) = tokio::time::timeout(GUARD, ca.join_with_state("ledger"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(init, None);
    let (a_tx, mut a_notes) = mpsc::unbounded_channel();
    let a_task = replica(a, Vec::new(), TOTAL, a_tx);
    let cc = b[2].client("c").await;
    let (c, checkpoint) = tokio::time::timeout(GUARD, cc.join_with_state("ledger"))
        .await
        .unwrap()
        .unwrap();
    let c_before = c.view().clone();
    assert!(me_in(&c_before, &cc), "{c_before:?}");
    // The sending half, used after the heal while the replica task reads.
    let c_sender = c.sender();
    let c_publisher_before = cc.publisher_id();
    assert_ne!(c_publisher_before, cc.session_id(), "a mesh publisher id");
    let (c_tx, mut c_notes) = mpsc::unbounded_channel();
    let c_task = replica(c, parse(checkpoint.as_deref()), TOTAL, c_tx);
    // A subscriber on the same broker, in another group, with one message
    // before the cut.
    let mut news = subscribe(&cc, "news/**").await;
    let news_pub = b[0].client("news").await;
    let p = news_pub.publisher("news/today", Ordering::Total).unwrap();
    p.publish("before the cut").await.unwrap();
    match tokio::time::timeout(GUARD, news.next_event()).await {
        Ok(Some(Ok(SubscriptionEvent::Message(m)))) => assert_eq!(m.payload, "before the cut"),
        other => panic!("{other:?}"),
    }
    let writer_client = b[1].client("writer").await;
    let writer = writer_client
        .publisher("ledger/entries", Ordering::Total)
        .unwrap();
    let entry = |n: usize| format!("entry {n}");
    for n in 0..20 {
        writer.publish(entry(n)).await.unwrap();
    }
    note(&mut c_notes, "C to apply 20 entries", |n| {
        matches!(n, Note::Applied(20, _)).then_some(())
    })
    .await;

    // Cut q3 off: it blocks, the majority goes on.
    let cut = std::time::Instant::now();
    mesh.isolate(2, true);
    wait_for(b[2].admin, "q3 to block", |s| {
        s["core"]["mesh"]["blocked"] == true
    })
    .await;
    for x in &b[..2] {
        wait_mesh(x, 2).await;
    }
    let mut blocked = cc.mesh_state();
    tokio::time::timeout(GUARD, blocked.wait_for(|b| *b))
        .await
        .expect("C's client was never told")
        .unwrap();
    // In C's stream: `Blocked` in its place, after the 20 entries it
    // applied before the cut (the writer sent nothing after them yet).
    note(&mut c_notes, "Blocked in C's stream", |n| match n {
        Note::Blocked => Some(()),
        Note::Applied(n, _) => panic!("C applied entry {n} after the cut"),
        _ => None,
    })
    .await;
    // Figures for the notes, never asserted (timing varies).
    eprintln!(
        "partition: cut to the minority's client told it is blocked: {} ms",
        cut.elapsed().as_millis()
    );
    // A publish on the cut-off broker is refused at once with `Blocked`,
    // never accepted and confirmed `ok` (a `safe` one accepted just before
    // the cut ends with `OutcomeUnknown` instead: the bridge's unit tests).
    let p3 = cc.publisher("minority/x", Publish::total().safe()).unwrap();
    match tokio::time::timeout(GUARD, p3.publish_confirmed("from the minority")).await {
        Ok(Err(ClientError::Blocked { reason })) => {
            assert!(reason.contains("primary component"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let plain = cc.publisher("minority/y", Ordering::Fifo).unwrap();
    match tokio::time::timeout(GUARD, plain.publish_confirmed("not safe either")).await {
        Ok(Err(ClientError::Blocked { .. })) => {}
        other => panic!("{other:?}"),
    }
    for n in 20..40 {
        writer.publish(entry(n)).await.unwrap();
    }
    note(&mut a_notes, "A to apply 40 entries", |n| {
        matches!(n, Note::Applied(40, _)).then_some(())
    })
    .await;

    // Heal: q3 rejoins the primary component as a new incarnation.
    let healed = std::time::Instant::now();
    mesh.isolate(2, false);
    for x in b {
        wait_mesh(x, 3).await;
    }
    eprintln!(
        "heal: to the three-broker view in every status: {} ms",
        healed.elapsed().as_millis()
    );
    // C's membership went on: a new view holding it under the new
    // incarnation, then a checkpoint with everything the primary component
    // delivered, the entries of the partition included.
    // In C's stream, after `Blocked`: nothing of the old membership, then
    // `Rejoined` (never `Unblocked`: it was excluded), then the new view
    // listing it as the event says, then the fresh checkpoint.
    let mut views = Vec::new();
    let mut rejoined = None;
    let fresh = note(&mut c_notes, "C's checkpoint after the heal", |n| match n {
        Note::State(s) => Some(s),
        Note::View(v) => {
            assert!(rejoined.is_some(), "a view before Rejoined: {v:?}");
            views.push(v);
            None
        }
        Note::Rejoined(r) => {
            assert!(rejoined.is_none() && views.is_empty(), "{r:?} {views:?}");
            rejoined = Some(r);
            None
        }
        Note::Applied(n, _) => panic!("C applied entry {n} before its checkpoint"),
        other => panic!("{other:?} between Blocked and the checkpoint"),
    })
    .await;
    let rejoined = rejoined.expect("Rejoined before the checkpoint");
    eprintln!(
        "heal: to the fresh checkpoint at the minority's member: {} ms",
        healed.elapsed().as_millis()
    );
    let first_40: Vec<String> = (0..40).map(entry).collect();
    assert_eq!(
        fresh, first_40,
        "C's fresh state differs from the majority's"
    );
    let view = views.last().expect("a new view before the checkpoint");
    assert_eq!(view.members.len(), 2, "{views:?}");
    let me_now = &view.members[view.rank as usize];
    let me_then = &c_before.members[c_before.rank as usize];
    assert!(
        me_now.ends_with(&format!("/s{}", cc.session_id())),
        "{view:?}"
    );
    assert_ne!(
        me_now, me_then,
        "the member rejoined under a new incarnation"
    );
    assert_eq!(*me_now, rejoined.member, "{rejoined:?}");
    // Readable: the broker id, `#<rejoins>` since it started, the session.
    assert_eq!(
        *me_now,
        format!("{}#1/s{}", cc.broker_id(), cc.session_id())
    );
    // The session's publisher id from now on, also for the client.
    assert_ne!(rejoined.publisher, c_publisher_before);
    assert_eq!(cc.publisher_id(), rejoined.publisher);
    // Both replicas go on in step. Entry 40 comes from C itself, through
    // its group's sending half, confirmed while its replica task reads.
    let confirmed = tokio::time::timeout(
        GUARD,
        c_sender.multicast_confirmed(entry(40), Ordering::Total),
    )
    .await
    .expect("C's multicast was never confirmed");
    assert!(confirmed.is_ok(), "{confirmed:?}");
    for n in 41..TOTAL {
        writer.publish(entry(n)).await.unwrap();
    }
    let (_a, a_state) = tokio::time::timeout(GUARD, a_task).await.unwrap().unwrap();
    let (_c, c_state) = tokio::time::timeout(GUARD, c_task).await.unwrap().unwrap();
    assert_eq!(a_state, (0..TOTAL).map(entry).collect::<Vec<_>>());
    assert_eq!(c_state, a_state);
    // A saw C's entry under C's new publisher id.
    let mut from_c = None;
    while let Ok(n) = a_notes.try_recv() {
        if let Note::Applied(41, publisher) = n {
            from_c = Some(publisher);
        }
    }
    assert_eq!(from_c, Some(rejoined.publisher));
    // The subscription on the healed broker went on too, with the events in
    // place: right after the message before the cut, `Blocked`; then
    // `Rejoined` (the same as the member's: one session), a new view
    // listing it so, then messages published after the heal.
    match tokio::time::timeout(GUARD, news.next_event()).await {
        Ok(Some(Ok(SubscriptionEvent::Blocked))) => {}
        other => panic!("{other:?} after the message before the cut"),
    }
    match tokio::time::timeout(GUARD, news.next_event()).await {
        Ok(Some(Ok(SubscriptionEvent::Rejoined(r)))) => assert_eq!(r, rejoined),
        other => panic!("{other:?} after Blocked"),
    }
    match tokio::time::timeout(GUARD, news.next_event()).await {
        Ok(Some(Ok(SubscriptionEvent::View(v)))) => {
            assert_eq!(v.members[v.rank as usize], rejoined.member, "{v:?}")
        }
        other => panic!("{other:?} after Rejoined"),
    }
    tokio::time::timeout(GUARD, async {
        loop {
            p.publish("after the heal").await.unwrap();
            news_pub.flush().await.unwrap();
            match tokio::time::timeout(Duration::from_millis(500), news.next_event()).await {
                Ok(Some(Ok(SubscriptionEvent::View(v)))) => {
                    assert!(me_in(&v, &cc), "{v:?}");
                }
                Ok(Some(Ok(SubscriptionEvent::Message(m)))) => {
                    assert_eq!(m.payload, "after the heal");
                    return;
                }
                Ok(other) => panic!("{other:?}"),
                Err(_) => {}
            }
        }
    })
    .await
    .expect("the subscription on the healed broker never delivered again");
    assert!(
        news.view("news")
            .is_some_and(|v| v.members[v.rank as usize] != *me_then),
        "{:?}",
        news.views()
    );
}

#[tokio::test]
async fn a_client_that_vanishes_leaves_its_groups_through_a_view_change() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("mc-timeout");
    let mut extra = fast();
    // Only the session timeout is short: links and the client's own idle
    // timeout would take far longer than the test's guard.
    extra.push("limits.idle_timeout_ms=60000".to_string());
    extra.push("limits.session_timeout_ms=1500".to_string());
    let brokers = full_mesh(dir.path(), "t", 2, &extra);
    for b in &brokers {
        wait_mesh(b, 2).await;
    }
    let c = brokers[0].client("observer").await;
    let mut s = subscribe(&c, "orders/**").await;
    assert_eq!(s.view("orders").map(|v| v.members.len()), Some(1));
    // `meshcast sub` on the other broker, printing views too.
    let mut child = std::process::Command::new(common::meshcast_bin())
        .args(["sub", "--views", "--server"])
        .arg(brokers[1].addr.to_string())
        .arg("--ca")
        .arg(&brokers[1].ca)
        .arg("orders/**")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines_tx.send(line);
        }
    });
    let two = next_view(&mut s).await;
    assert_eq!(two.members.len(), 2, "{two:?}");
    let line = tokio::task::spawn_blocking(move || lines.recv_timeout(GUARD))
        .await
        .unwrap()
        .expect("meshcast sub printed nothing");
    assert_eq!(
        line,
        format!("* view orders {} {}", two.id, two.members.join(","))
    );
    // The client process dies without a word: after the session timeout
    // its broker ends the session, and the observer sees it leave.
    child.kill().unwrap();
    child.wait().unwrap();
    let one = next_view(&mut s).await;
    assert_eq!(one.members.len(), 1, "{one:?}");
    assert!(me_in(&one, &c), "{one:?}");
}

async fn next_view(s: &mut Subscription) -> View {
    match tokio::time::timeout(GUARD, s.next_event())
        .await
        .expect("no view")
    {
        Some(Ok(SubscriptionEvent::View(v))) => v,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn on_a_single_broker_a_confirmed_publish_is_accepted_and_a_safe_one_stable() {
    let b = BrokerProc::start(&[]);
    let sc = b.client("sub").await;
    let mut sub = subscribe(&sc, "a/**").await;
    assert!(sub.views().is_empty(), "a single broker has no groups");
    let c = b.client("pub").await;
    let plain = c.publisher("a/plain", Ordering::Fifo).unwrap();
    let safe = c.publisher("a/safe", Publish::total().safe()).unwrap();
    plain.publish("not awaited").await.unwrap();
    let conf = plain.publish_confirmed("accepted").await.unwrap();
    assert_eq!(
        conf,
        Confirmation {
            seq: 2,
            stable: false
        }
    );
    let conf = safe.publish_confirmed("stable").await.unwrap();
    assert_eq!(
        conf,
        Confirmation {
            seq: 3,
            stable: true
        }
    );
    for want in ["not awaited", "accepted", "stable"] {
        let m = tokio::time::timeout(GUARD, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(m.payload, want);
    }
}

#[tokio::test]
async fn a_publisher_faster_than_the_mesh_is_held_back_not_refused() {
    let dir = TempDir::new("mc-flood");
    // A tiny command channel, so the broker must hold the publisher back.
    let mut extra = fast();
    extra.push("limits.publish_queue=4".to_string());
    let brokers = full_mesh(dir.path(), "f", 3, &extra);
    for b in &brokers {
        wait_mesh(b, 3).await;
    }
    let sc = brokers[1].client("sub").await;
    let mut s = subscribe(&sc, "flood/**").await;
    let pc = brokers[0].client("pub").await;
    let p = pc.publisher("flood/x", Ordering::Fifo).unwrap();
    const N: usize = 5_000;
    // The subscriber reads as the messages come (more than its buffer of
    // 4096 are published: a reader that waited would rightly be cut off as
    // slow).
    let reader = tokio::spawn(async move {
        for n in 0..N {
            let m = tokio::time::timeout(GUARD, s.next())
                .await
                .unwrap_or_else(|_| panic!("message {n} of {N} never arrived"))
                .unwrap()
                .unwrap();
            assert_eq!(m.payload, n.to_string(), "in publish order");
        }
    });
    for n in 0..N {
        tokio::time::timeout(GUARD, p.publish(n.to_string()))
            .await
            .expect("publish never returned")
            .unwrap();
    }
    pc.flush().await.expect("no publish may be refused");
    reader.await.unwrap();
}

/// The next message of a subscription, skipping views.
async fn next_message(s: &mut Subscription) -> meshcast_client::Message {
    loop {
        match tokio::time::timeout(GUARD, s.next_event())
            .await
            .expect("no message")
        {
            Some(Ok(SubscriptionEvent::Message(m))) => return m,
            Some(Ok(SubscriptionEvent::View(_))) => {}
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn a_pattern_starting_with_a_wildcard_reaches_every_group_even_later_ones() {
    let dir = TempDir::new("mc-all");
    let brokers = full_mesh(dir.path(), "w", 3, &fast());
    for b in &brokers {
        wait_mesh(b, 3).await;
    }
    // A group with members before the wildcard subscription exists.
    let mc = brokers[0].client("member").await;
    let _early = mc.join("early").await.unwrap();
    let sc = brokers[1].client("sub").await;
    let mut every = subscribe(&sc, "**").await;
    assert!(
        every.view("early").is_some(),
        "installed in the existing group: {:?}",
        every.views()
    );
    // A group that gets its first member afterwards is joined too: its
    // view reaches the subscription.
    let mut later = mc.join("later").await.unwrap();
    loop {
        let v = next_view(&mut every).await;
        if v.group == "later" {
            assert!(
                v.members
                    .iter()
                    .any(|m| m.ends_with(&format!("/s{}", sc.session_id())))
            );
            break;
        }
    }
    // Messages of every group arrive, including groups nobody joined.
    let pc = brokers[2].client("pub").await;
    for topic in ["early/a", "later/b", "fresh/c", "x/y/z"] {
        let p = pc.publisher(topic, Ordering::Fifo).unwrap();
        p.publish(topic.to_string()).await.unwrap();
    }
    pc.flush().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        let m = next_message(&mut every).await;
        assert_eq!(m.payload, m.topic.as_str());
        got.push(m.topic.to_string());
    }
    got.sort();
    assert_eq!(got, ["early/a", "fresh/c", "later/b", "x/y/z"]);
    // The explicit member of `later` sees the subscription join its view.
    loop {
        match tokio::time::timeout(GUARD, later.next())
            .await
            .expect("no view")
        {
            Some(Ok(GroupEvent::View(v))) if v.members.len() == 2 => break,
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
