//! Delivery logs of real clients, for the shared DESIGN §2 checker
//! (`meshcast_protocol::history`, the one the simulator runs on its
//! members).
//!
//! A [`Member`] owns a joined [`Group`] and a [`Subscriber`] owns a
//! [`Subscription`]; each reads its stream in a task and appends every view,
//! message and checkpoint to its log, the application state of a member
//! being the keys (payloads) of its checkpoint and messages in order, which
//! it also hands to joiners that ask. A test waits on the logs' contents
//! (never on time), then builds a [`History`] from them and what it
//! published and calls `assert_ok`.
//!
//! Payloads are the message keys: tests publish unique UTF-8 payloads
//! without newlines (a checkpoint is the keys joined by `\n`).
//!
//! Include it with `#[path = "common/logs.rs"] mod logs;` next to `mod
//! common;`.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use meshcast_client::{ClientError, Group, GroupEvent, Publish, Subscription, SubscriptionEvent};
use meshcast_protocol::history::{self, Event, History, Log, Published, Text};
use tokio::sync::{mpsc, oneshot};

use crate::common::GUARD;

/// The checker's ordering for a client's.
pub fn ordering(o: meshcast_client::Ordering) -> meshcast_protocol::Ordering {
    use meshcast_client::Ordering as C;
    use meshcast_protocol::Ordering as P;
    match o {
        C::Reliable => P::Reliable,
        C::Fifo => P::Fifo,
        C::Causal => P::Causal,
        C::Total => P::Total,
    }
}

/// A message to record as published to `group`.
pub fn published(
    group: &str,
    key: &str,
    o: meshcast_client::Ordering,
    safe: bool,
) -> Published<Text> {
    Published::new(group, key, ordering(o)).safe(safe)
}

/// A log shared between its recording task and the test.
#[derive(Clone)]
pub struct SharedLog {
    log: Arc<Mutex<Log<Text>>>,
    ended: Arc<Mutex<Option<String>>>,
    /// When the stream reported its broker blocked or rejoined.
    cut_off: Arc<Mutex<Vec<std::time::Instant>>>,
}

impl SharedLog {
    fn new(name: &str) -> SharedLog {
        SharedLog {
            log: Arc::new(Mutex::new(Log::new(name))),
            ended: Arc::new(Mutex::new(None)),
            cut_off: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn cut_off_now(&self) {
        self.cut_off.lock().unwrap().push(std::time::Instant::now());
    }

    /// Did the stream report its broker blocked or rejoined after `t`?
    /// (Then it may miss what was sent around `t`: DESIGN §2.7.)
    pub fn cut_off_after(&self, t: std::time::Instant) -> bool {
        self.cut_off.lock().unwrap().iter().any(|c| *c >= t)
    }

    fn push(&self, e: Event<Text>) {
        self.log.lock().unwrap().push(e);
    }

    fn end(&self, why: String) {
        *self.ended.lock().unwrap() = Some(why);
    }

    /// A copy of the log so far.
    pub fn snapshot(&self) -> Log<Text> {
        self.log.lock().unwrap().clone()
    }

    /// Why the stream ended, if it did.
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap().clone()
    }

    /// Waits (under [`GUARD`]) until `ok` holds for the log; panics with
    /// the log's summary otherwise.
    pub async fn wait_for(&self, what: &str, ok: impl Fn(&Log<Text>) -> bool) {
        let done = tokio::time::timeout(GUARD, async {
            loop {
                if ok(&self.log.lock().unwrap()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if done.is_err() {
            let log = self.snapshot();
            panic!(
                "`{}` never saw {what} (stream ended: {:?}); its log: {}",
                log.name,
                self.ended(),
                summary(&log)
            );
        }
    }

    /// Waits until the log holds message `key`.
    pub async fn wait_for_key(&self, key: &str) {
        self.wait_for(&format!("message {key:?}"), |l| has(l, key))
            .await;
    }

    /// Waits until the log holds `n` messages.
    pub async fn wait_for_count(&self, n: usize) {
        self.wait_for(&format!("{n} messages"), |l| keys(l).len() >= n)
            .await;
    }

    /// Waits until the last view of `group` has `n` members.
    pub async fn wait_for_view_size(&self, group: &str, n: usize) {
        self.wait_for(&format!("a view of {group} with {n} members"), |l| {
            last_view(l, group).is_some_and(|v| v.members.len() == n)
        })
        .await;
    }
}

/// The message keys of a log, in delivery order.
pub fn keys(log: &Log<Text>) -> Vec<String> {
    log.events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.key.clone()),
            _ => None,
        })
        .collect()
}

/// Whether the log delivered `key`.
pub fn has(log: &Log<Text>, key: &str) -> bool {
    log.events
        .iter()
        .any(|e| matches!(e, Event::Message(m) if m.key == key))
}

/// The last view of `group` in the log.
pub fn last_view<'a>(log: &'a Log<Text>, group: &str) -> Option<&'a history::View<Text>> {
    log.events.iter().rev().find_map(|e| match e {
        Event::View(v) if v.group == group => Some(v),
        _ => None,
    })
}

/// The member ids a log had in `group`, in order (a member whose broker
/// was cut off from the primary component comes back with a new one).
pub fn my_ids(log: &Log<Text>, group: &str) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for e in &log.events {
        if let Event::View(v) = e {
            if v.group == group && ids.last() != Some(&v.me) {
                ids.push(v.me.clone());
            }
        }
    }
    ids
}

/// The number of members of each view of `group` in the log, in order.
pub fn view_sizes(log: &Log<Text>, group: &str) -> Vec<usize> {
    log.events
        .iter()
        .filter_map(|e| match e {
            Event::View(v) if v.group == group => Some(v.members.len()),
            _ => None,
        })
        .collect()
}

/// The events of a log, one view per line.
pub fn summary(log: &Log<Text>) -> String {
    let mut s = String::new();
    for e in &log.events {
        match e {
            Event::View(v) => s.push_str(&format!("\n  view {} {} {:?}", v.group, v.id, v.members)),
            Event::Message(m) => s.push_str(&format!(" {:?}", m.key)),
            Event::State { keys, .. } => s.push_str(&format!("\n  checkpoint {keys:?}\n ")),
            Event::Join { group, with_state } => {
                s.push_str(&format!("\n  join {group} (state: {with_state})"))
            }
        }
    }
    s
}

/// A member's causal past in `group`: its state (checkpoint, then what it
/// delivered) in its current membership, which starts again when its id
/// changes (its broker was cut off and it rejoined as a new member).
pub fn causal_past(log: &Log<Text>, group: &str) -> Vec<String> {
    let mut s = Vec::new();
    let mut me: Option<&str> = None;
    for e in &log.events {
        match e {
            Event::View(v) if v.group == group => {
                if me.is_some_and(|m| m != v.me) {
                    s.clear();
                }
                me = Some(&v.me);
            }
            Event::State { group: g, keys, .. } if g == group => {
                s = keys.clone().unwrap_or_default()
            }
            Event::Message(m) if m.group == group => s.push(m.key.clone()),
            _ => {}
        }
    }
    s
}

/// The application state a log stands for: its last checkpoint's keys,
/// then the keys delivered after it.
pub fn state(log: &Log<Text>) -> Vec<String> {
    let mut s = Vec::new();
    let mut me: Option<&str> = None;
    for e in &log.events {
        match e {
            Event::State { keys, .. } => s = keys.clone().unwrap_or_default(),
            Event::Message(m) => s.push(m.key.clone()),
            // A new member id (its broker was cut off and rejoined) starts a
            // new membership (DESIGN §2.7): what the old one delivered is
            // not its state any more. One that joined with state gets a
            // fresh checkpoint; one without state starts empty.
            Event::View(v) => {
                if me.is_some_and(|m| m != v.me) {
                    s.clear();
                }
                me = Some(&v.me);
            }
            _ => {}
        }
    }
    s
}

fn decode_checkpoint(data: &Option<Bytes>) -> Vec<String> {
    match data {
        Some(b) if !b.is_empty() => String::from_utf8(b.to_vec())
            .expect("checkpoint is UTF-8")
            .split('\n')
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

fn view_event(v: &meshcast_client::View) -> Event<Text> {
    Event::View(history::View {
        group: v.group.clone(),
        id: v.id.clone(),
        members: v.members.clone(),
        me: v.members[v.rank as usize].clone(),
    })
}

fn key_of(payload: &Bytes) -> String {
    String::from_utf8(payload.to_vec()).expect("payloads are UTF-8 keys")
}

enum Cmd {
    Multicast {
        key: String,
        ordering: meshcast_client::Ordering,
        safe: bool,
        done: oneshot::Sender<Result<Published<Text>, ClientError>>,
    },
    Leave(oneshot::Sender<Result<(), ClientError>>),
}

/// A group member whose stream is recorded; it answers state requests with
/// its log's state.
pub struct Member {
    /// Its log.
    pub log: SharedLog,
    /// The group.
    pub group: String,
    cmds: mpsc::UnboundedSender<Cmd>,
}

impl Member {
    /// Starts recording `g`, whose first view is the join view. `checkpoint`
    /// is what `join_with_state` returned with it (`None` for a plain
    /// join).
    pub fn start(name: &str, mut g: Group, checkpoint: Option<Option<Bytes>>) -> Member {
        let log = SharedLog::new(name);
        let group = g.name().to_string();
        log.push(Event::Join {
            group: group.clone(),
            with_state: checkpoint.is_some(),
        });
        log.push(view_event(g.view()));
        if let Some(data) = &checkpoint {
            log.push(Event::State {
                group: group.clone(),
                keys: Some(decode_checkpoint(data)),
                // A checkpoint is taken at the last view before it (the
                // join view, or a later one if the transfer was re-based).
                at: Some(g.view().id.clone()),
            });
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        let rec = log.clone();
        let gname = group.clone();
        tokio::spawn(async move {
            // What this member sent in its current membership: with its
            // state (what it delivered since it got its current id, after
            // its checkpoint), the causal predecessors of its next message.
            // A member whose broker was cut off comes back as a new member
            // (DESIGN §2.7): what its old membership delivered or sent is
            // not its causal past any more, the new checkpoint is.
            let mut sent: Vec<String> = Vec::new();
            let leave = loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Multicast { key, ordering: o, safe, done }) => {
                            let mut deps = causal_past(&rec.log.lock().unwrap(), &gname);
                            deps.extend(sent.iter().cloned());
                            let record = published(&gname, &key, o, safe).after(deps);
                            sent.push(key.clone());
                            let r = g.multicast(key, Publish::with(o).safe_if(safe)).await.map(|()| record);
                            let _ = done.send(r);
                        }
                        Some(Cmd::Leave(done)) => break Some(done),
                        None => {
                            // The test dropped this member (its session
                            // failed a publish): the log ends here, or the
                            // end-of-run check would wait for a membership
                            // nobody reads any more.
                            rec.end("dropped by the test".into());
                            break None;
                        }
                    },
                    ev = g.next() => match ev {
                        Some(Ok(GroupEvent::View(v))) => {
                            let old = last_view(&rec.log.lock().unwrap(), &gname).map(|x| x.me.clone());
                            let e = view_event(&v);
                            if matches!(&e, Event::View(x) if Some(&x.me) != old.as_ref()) {
                                sent.clear();
                            }
                            rec.push(e)
                        }
                        Some(Ok(GroupEvent::Message(m))) => {
                            rec.push(Event::Message(history::Message {
                                group: gname.clone(),
                                key: key_of(&m.payload),
                                publisher: m.publisher,
                                pseq: m.seq,
                                ordering: ordering(m.ordering),
                                safe: m.safe,
                                view: None,
                            }))
                        }
                        Some(Ok(GroupEvent::State(data))) => {
                            // Taken at the last view before it: views up to
                            // a re-based transfer's point come first.
                            let at = last_view(&rec.log.lock().unwrap(), &gname).map(|v| v.id.clone());
                            rec.push(Event::State {
                                group: gname.clone(),
                                keys: Some(decode_checkpoint(&data)),
                                at,
                            })
                        }
                        Some(Ok(GroupEvent::StateRequest(r))) => {
                            let s = state(&rec.log.lock().unwrap()).join("\n");
                            r.reply(s);
                        }
                        Some(Ok(GroupEvent::Blocked | GroupEvent::Rejoined(_))) => rec.cut_off_now(),
                        // Unblocked: the views and checkpoints around
                        // blocks and rejoins are what the checker uses.
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            rec.end(e.to_string());
                            break None;
                        }
                        None => {
                            rec.end("stream ended".into());
                            break None;
                        }
                    },
                }
            };
            if let Some(done) = leave {
                let _ = done.send(g.leave().await);
                rec.end("left".into());
            }
        });
        Member {
            log,
            group,
            cmds: tx,
        }
    }

    /// Multicasts `key` as payload; returns its record for the checker,
    /// whose causal predecessors are what this member had delivered and
    /// sent before it.
    pub async fn multicast(
        &self,
        key: &str,
        ordering: meshcast_client::Ordering,
        safe: bool,
    ) -> Result<Published<Text>, ClientError> {
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Multicast {
                key: key.to_string(),
                ordering,
                safe,
                done,
            })
            .expect("member task ended");
        rx.await.expect("member task ended")
    }

    /// [`Member::multicast`] that reports a member whose recording task
    /// ended (its session closed) as an error instead of panicking.
    pub async fn try_multicast(
        &self,
        key: &str,
        ordering: meshcast_client::Ordering,
        safe: bool,
    ) -> Result<Published<Text>, ClientError> {
        let gone = || ClientError::Closed {
            code: None,
            reason: "member task ended".into(),
        };
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Multicast {
                key: key.to_string(),
                ordering,
                safe,
                done,
            })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Leaves the group; `Err` if the session ended first or the leave
    /// failed (never panics; hangs are the caller's to guard).
    pub async fn try_leave(&self) -> Result<(), String> {
        let (done, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Leave(done))
            .map_err(|_| "member task ended".to_string())?;
        match rx.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err("member task ended".into()),
        }
    }

    /// Leaves the group and waits until the broker removed the member.
    pub async fn leave(&self) {
        let (done, rx) = oneshot::channel();
        self.cmds.send(Cmd::Leave(done)).expect("member task ended");
        tokio::time::timeout(GUARD, rx)
            .await
            .expect("leave never completed")
            .expect("member task ended")
            .expect("leave");
    }
}

/// A subscription whose views and messages are recorded; `group_of` names
/// the group of a topic.
pub struct Subscriber {
    /// Its log.
    pub log: SharedLog,
}

impl Subscriber {
    /// Starts recording `sub`, beginning with the views it was installed
    /// in.
    pub fn start(
        name: &str,
        mut sub: Subscription,
        group_of: impl Fn(&str) -> String + Send + 'static,
    ) -> Subscriber {
        let log = SharedLog::new(name);
        for v in sub.views() {
            log.push(view_event(v));
        }
        let rec = log.clone();
        tokio::spawn(async move {
            loop {
                match sub.next_event().await {
                    Some(Ok(SubscriptionEvent::View(v))) => rec.push(view_event(&v)),
                    Some(Ok(SubscriptionEvent::Message(m))) => {
                        rec.push(Event::Message(history::Message {
                            group: group_of(&m.topic),
                            key: key_of(&m.payload),
                            publisher: m.publisher,
                            pseq: m.seq,
                            ordering: ordering(m.ordering),
                            safe: m.safe,
                            view: None,
                        }))
                    }
                    Some(Ok(SubscriptionEvent::Blocked | SubscriptionEvent::Rejoined(_))) => {
                        rec.cut_off_now()
                    }
                    // Unblocked (see the group member above).
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        rec.end(e.to_string());
                        return;
                    }
                    None => {
                        rec.end("stream ended".into());
                        return;
                    }
                }
            }
        });
        Subscriber { log }
    }
}

/// Checks `logs` (each marked complete or not) against what was published.
#[track_caller]
pub fn check(logs: Vec<Log<Text>>, published: Vec<Published<Text>>) {
    let mut h: History<Text> = History::new();
    for l in logs {
        h.add(l);
    }
    for p in published {
        h.publish(p);
    }
    h.assert_ok();
}
