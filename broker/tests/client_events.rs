//! Mesh events in the client's streams, with real broker processes: a
//! subscriber and a member (joined without state, so no state transfer is
//! involved) on a broker cut off from the primary component see `Blocked`
//! in its place, nothing of the old membership after it, then after the
//! heal `Rejoined` before the new view that lists them as it says.

mod common;
#[path = "common/mesh.rs"]
mod mesh;

use common::GUARD;
use common::TempDir;
use mesh::{RelayedMesh, fast, wait_for, wait_mesh};
use meshcast_client::{Group, GroupEvent, Ordering, Subscription, SubscriptionEvent};

/// One stream event, reduced to what the test compares.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Msg(String),
    View(Vec<String>, u32),
    Blocked,
    Unblocked,
    Rejoined(meshcast_client::Rejoined),
}

async fn next_sub(s: &mut Subscription) -> Ev {
    match tokio::time::timeout(GUARD, s.next_event()).await {
        Ok(Some(Ok(SubscriptionEvent::Message(m)))) => {
            Ev::Msg(String::from_utf8_lossy(&m.payload).into_owned())
        }
        Ok(Some(Ok(SubscriptionEvent::View(v)))) => Ev::View(v.members, v.rank),
        Ok(Some(Ok(SubscriptionEvent::Blocked))) => Ev::Blocked,
        Ok(Some(Ok(SubscriptionEvent::Unblocked))) => Ev::Unblocked,
        Ok(Some(Ok(SubscriptionEvent::Rejoined(r)))) => Ev::Rejoined(r),
        other => panic!("subscription: {other:?}"),
    }
}

async fn next_member(g: &mut Group) -> Ev {
    match tokio::time::timeout(GUARD, g.next()).await {
        Ok(Some(Ok(GroupEvent::Message(m)))) => {
            Ev::Msg(String::from_utf8_lossy(&m.payload).into_owned())
        }
        Ok(Some(Ok(GroupEvent::View(v)))) => Ev::View(v.members, v.rank),
        Ok(Some(Ok(GroupEvent::Blocked))) => Ev::Blocked,
        Ok(Some(Ok(GroupEvent::Unblocked))) => Ev::Unblocked,
        Ok(Some(Ok(GroupEvent::Rejoined(r)))) => Ev::Rejoined(r),
        other => panic!("member: {other:?}"),
    }
}

#[tokio::test]
async fn a_cut_off_broker_s_streams_show_blocked_then_rejoined_in_place() {
    let dir = TempDir::new("mc-events");
    let mesh = RelayedMesh::start(dir.path(), "e", 3, &fast()).await;
    let b = &mesh.brokers;
    for x in b {
        wait_mesh(x, 3).await;
    }
    // On e3 (to be cut off): a subscriber of news/** and a member of room.
    let c = b[2].client("c").await;
    let mut news = tokio::time::timeout(GUARD, c.subscribe("news/**"))
        .await
        .unwrap()
        .unwrap();
    let mut room = tokio::time::timeout(GUARD, c.join("room"))
        .await
        .unwrap()
        .unwrap();
    let publisher_before = c.publisher_id();
    let member_before = room.view().members[room.view().rank as usize].clone();
    // Publishers on e1 (stays in the primary component).
    let w = b[0].client("w").await;
    let news_pub = w.publisher("news/x", Ordering::Total).unwrap();
    // w's membership stays (unread) while its sending half is used.
    let w_group = w.join("room").await.unwrap();
    let room_tx = w_group.sender();
    news_pub.publish("news 1").await.unwrap();
    room_tx.multicast("room 1", Ordering::Total).await.unwrap();
    assert_eq!(next_sub(&mut news).await, Ev::Msg("news 1".into()));
    // The room's view with w, then its message.
    assert!(matches!(next_member(&mut room).await, Ev::View(m, _) if m.len() == 2));
    assert_eq!(next_member(&mut room).await, Ev::Msg("room 1".into()));

    // Cut e3 off; the others exclude it and go on delivering.
    mesh.isolate(2, true);
    wait_for(b[2].admin, "e3 to block", |s| {
        s["core"]["mesh"]["blocked"] == true
    })
    .await;
    for x in &b[..2] {
        wait_mesh(x, 2).await;
    }
    for n in 2..=4 {
        news_pub.publish(format!("news {n}")).await.unwrap();
        room_tx
            .multicast(format!("room {n}"), Ordering::Total)
            .await
            .unwrap();
    }
    w.flush().await.unwrap();
    // In place: right after the last message before the cut, `Blocked`.
    assert_eq!(next_sub(&mut news).await, Ev::Blocked);
    assert_eq!(next_member(&mut room).await, Ev::Blocked);

    // Heal: e3 comes back as a new incarnation.
    mesh.isolate(2, false);
    for x in b {
        wait_mesh(x, 3).await;
    }
    // Nothing of the old membership after `Blocked`: `Rejoined` next (not
    // `Unblocked`: e3 was excluded), then the new view listing the session
    // as the event says.
    let Ev::Rejoined(r) = next_sub(&mut news).await else {
        panic!("no Rejoined after Blocked")
    };
    assert_eq!(next_member(&mut room).await, Ev::Rejoined(r.clone()));
    assert_ne!(r.member, member_before);
    // Readable: the broker id, `#<rejoins>` since it started, the session.
    assert_eq!(
        r.member,
        format!("{}#1/s{}", c.broker_id(), c.session_id()),
        "{r:?}"
    );
    assert_ne!(r.publisher, publisher_before);
    assert_eq!(c.publisher_id(), r.publisher);
    for ev in [next_sub(&mut news).await, next_member(&mut room).await] {
        match ev {
            Ev::View(members, rank) => assert_eq!(members[rank as usize], r.member),
            other => panic!("{other:?} after Rejoined"),
        }
    }
    // Then messages published after the heal (not those of the partition).
    news_pub.publish("news 5").await.unwrap();
    room_tx.multicast("room 5", Ordering::Total).await.unwrap();
    assert_eq!(next_sub(&mut news).await, Ev::Msg("news 5".into()));
    assert_eq!(next_member(&mut room).await, Ev::Msg("room 5".into()));
    drop(w_group);
    // The session's messages now carry the new publisher id: w sees it.
    let mut w_room = w.subscribe("news/**").await.unwrap();
    let from_c = c.publisher("news/c", Ordering::Total).unwrap();
    from_c.publish_confirmed("from c").await.unwrap();
    loop {
        match tokio::time::timeout(GUARD, w_room.next_event()).await {
            Ok(Some(Ok(SubscriptionEvent::Message(m)))) if m.payload == "from c" => {
                assert_eq!(m.publisher, r.publisher);
                break;
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// Fault seed 114 of the randomized test: a member joining with state on a
/// broker that is cut off (and excluded) before its checkpoint comes is
/// rejoined by the broker; the checkpoint it then gets is the rejoined
/// membership's, taken at the rejoined view. `join_with_state` must return
/// that view with it (it returned the first join view, so the application
/// applied a later state as of an earlier view, then saw `Blocked` and
/// `Rejoined` of a membership it had not seen deliver anything).
#[tokio::test]
async fn a_checkpoint_after_a_rejoin_comes_with_the_rejoined_view() {
    let dir = TempDir::new("mc-events-state");
    let mesh = RelayedMesh::start(dir.path(), "f", 3, &fast()).await;
    let b = &mesh.brokers;
    for x in b {
        wait_mesh(x, 3).await;
    }
    let p = b[0].client("provider").await;
    let (mut provider, first) = tokio::time::timeout(GUARD, p.join_with_state("repl"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, None, "the first member gets no checkpoint");
    let c = b[2].client("joiner").await;
    let joining = tokio::spawn(async move {
        let r = c.join_with_state("repl").await;
        (c, r)
    });
    // The provider's view with the joiner, then the request for its state:
    // held unanswered (dropping it would answer with an empty checkpoint).
    let mut held = None;
    while held.is_none() {
        match tokio::time::timeout(GUARD, provider.next()).await {
            Ok(Some(Ok(GroupEvent::View(_)))) => {}
            Ok(Some(Ok(GroupEvent::StateRequest(r)))) => held = Some(r),
            other => panic!("provider: {other:?}"),
        }
    }
    // Cut the joiner's broker off until the others exclude it, then heal.
    mesh.isolate(2, true);
    wait_for(b[2].admin, "f3 to block", |s| {
        s["core"]["mesh"]["blocked"] == true
    })
    .await;
    for x in &b[..2] {
        wait_mesh(x, 2).await;
    }
    mesh.isolate(2, false);
    // The rejoined member asks again: this answer is its checkpoint.
    loop {
        match tokio::time::timeout(GUARD, provider.next()).await {
            Ok(Some(Ok(GroupEvent::View(_)))) => {}
            Ok(Some(Ok(GroupEvent::StateRequest(r)))) => {
                r.reply("fresh");
                break;
            }
            other => panic!("provider: {other:?}"),
        }
    }
    drop(held);
    let (c, joined) = tokio::time::timeout(GUARD, joining).await.unwrap().unwrap();
    let (mut g, state) = joined.unwrap();
    assert_eq!(state.as_deref(), Some(&b"fresh"[..]));
    // The view the checkpoint belongs to: the rejoined membership's.
    let me = &g.view().members[g.view().rank as usize];
    assert_eq!(
        *me,
        format!("{}#1/s{}", c.broker_id(), c.session_id()),
        "{:?}",
        g.view()
    );
    // Next comes what follows the checkpoint, not the cut-off's events.
    let tx = provider.sender();
    tx.multicast("after", Ordering::Total).await.unwrap();
    assert_eq!(next_member(&mut g).await, Ev::Msg("after".into()));
}
