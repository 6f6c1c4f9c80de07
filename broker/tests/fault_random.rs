//! A randomized fault test with real broker processes (issue 8, item 8).
//!
//! 3–5 `meshcast broker` processes linked through fault-injecting UDP
//! relays, a workload of publishers (every ordering, `safe`, confirmed or
//! not), subscribers and group members (joining with state or not,
//! leaving and joining again) on every broker, and a schedule of faults
//! drawn from a seed: SIGKILL and restart with the same configuration and
//! data directory, minority partitions and heals, a three-way split with
//! no majority and its heal, loss and delay on some links. Every fault
//! stays inside what the mesh must survive: one at a time (two with five
//! brokers), a majority of the view alive and connected except during the
//! split, everything healed or restarted before the next.
//!
//! At the end everything is healed, every broker must be in one mesh view
//! of all brokers (`/status`), a final marker is published in every group
//! and every live client's log is read up to it; then every client's log
//! goes through the history checker (DESIGN §2). On top: a publish
//! confirmed ok by a broker that had no fault afterwards, and a `safe`
//! publish confirmed stable, must reach every member that stayed connected
//! (`must_arrive`); one refused with `Blocked` must be delivered nowhere;
//! refused or unknown ones are not required.
//!
//! Partitions are made by freezing brokers (SIGSTOP/SIGCONT), not by
//! cutting relays: brokers learn each other's real peer addresses from
//! handshakes and gossip and dial them directly once a relayed link drops,
//! so a relay cut only holds until the first relink. The relays still add
//! loss and delay while a link goes through them.
//!
//! `cargo test` runs the randomized test on `DEFAULT_SEEDS` and the
//! rolling restart. `MESHCAST_FAULT_SEED` / `MESHCAST_FAULT_SEEDS`
//! choose other seeds; a seed fixes the schedule, not the processes'
//! timing. `MESHCAST_FAULT_DUMP=<dir>` writes every client log in full
//! there before the check, and `MESHCAST_BROKER_LOG=<filter>` sets the
//! brokers' log filter (e.g. `warn,meshcast_broker::node::bridge=trace`):
//!
//! ```sh
//! MESHCAST_FAULT_SEED=17 cargo test --release -p meshcast-broker --test fault_random -- --nocapture random_faults
//! MESHCAST_FAULT_SEED=1 MESHCAST_FAULT_SEEDS=200 cargo test --release -p meshcast-broker --test fault_random -- --nocapture random_faults
//! ```

mod common;
#[path = "common/logs.rs"]
mod logs;
#[path = "common/mesh.rs"]
mod mesh;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BrokerProc, GUARD, TempDir};
use logs::{Member, SharedLog, Subscriber};
use mesh::RelayedMesh;
use meshcast_client::{Client, ClientError, ClientOptions, Ordering, Publish};
use meshcast_protocol::history::{Event, Published, Text};
use meshcast_transport::client_proto::RejectCode;

/// The seeds `cargo test` runs.
const DEFAULT_SEEDS: &[u64] = &[1, 4, 5];

/// splitmix64: a small deterministic generator.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
    fn ordering(&mut self) -> Ordering {
        match self.below(4) {
            0 => Ordering::Reliable,
            1 => Ordering::Fifo,
            2 => Ordering::Causal,
            _ => Ordering::Total,
        }
    }
}

/// The group of a topic: its first segment (the default group map).
fn group_of(topic: &str) -> String {
    topic.split('/').next().unwrap_or_default().to_string()
}

/// How a publish ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Confirmed (or, unconfirmed, flushed without a refusal).
    Ok { stable: bool },
    /// Refused: the broker was blocked; it was not sent (confirmed
    /// publishes only: their refusal names them).
    Blocked,
    /// The broker could not say (`OutcomeUnknown`), or an unconfirmed
    /// publish's flush reported a refusal.
    Unknown,
    /// The session failed first (e.g. its broker was killed).
    Lost,
}

/// The outcome of an unconfirmed publish, from the flush after it: a
/// refusal the flush reports may be an earlier publish's (one queued, then
/// dropped when the broker rejoined), so it says nothing certain.
fn plain(o: Outcome) -> Outcome {
    match o {
        Outcome::Blocked => Outcome::Unknown,
        o => o,
    }
}

fn outcome<T>(r: &Result<T, ClientError>, stable: bool) -> Outcome {
    match r {
        Ok(_) => Outcome::Ok { stable },
        Err(ClientError::Blocked { .. }) => Outcome::Blocked,
        Err(ClientError::Rejected {
            code: RejectCode::OutcomeUnknown,
            ..
        }) => Outcome::Unknown,
        Err(_) => Outcome::Lost,
    }
}

struct Sent {
    record: Published<Text>,
    outcome: Outcome,
    /// Broker index and its fault generation when the publish started.
    broker: usize,
    epoch: u64,
    /// Seconds since the start when the publish ended.
    at: f64,
    /// Seconds since the start when the publish was sent.
    sent_at: f64,
    /// A confirmed publish: its session and the publisher id it had when
    /// the confirmation came (a broker that rejoined gives a new one).
    confirmed: Option<(Client, u64)>,
}

/// What the test shares with its workload tasks.
struct Shared {
    /// Client addresses of the live brokers.
    addrs: Mutex<Vec<Option<SocketAddr>>>,
    /// Admin addresses of the live brokers (for diagnostics).
    admins: Mutex<Vec<Option<SocketAddr>>>,
    /// When the run started (for diagnostics).
    t0: Instant,
    /// Per broker: how many faults touched it so far.
    epoch: Vec<AtomicU64>,
    ca: PathBuf,
    stop: AtomicBool,
    sent: Mutex<Vec<Sent>>,
    /// Publishes that ended `Ok`, for waiting on progress.
    oks: AtomicUsize,
    /// Every recorded log (subscribers, members).
    logs: Mutex<Vec<SharedLog>>,
    /// Live sessions and memberships kept open to the end (their logs
    /// must be complete).
    keep: Mutex<Vec<Client>>,
    keep_members: Mutex<Vec<Member>>,
    /// Subscriptions as they were installed: log name, group, seconds
    /// since the start.
    installed: Mutex<Vec<(String, String, f64)>>,
}

impl Shared {
    /// Says what happens, with the time since the start.
    fn note(&self, what: &str) {
        eprintln!("  [{:7.2} s] {what}", self.t0.elapsed().as_secs_f64());
    }

    /// The mesh part of every live broker's status (a frozen broker does
    /// not answer within a second and is shown so).
    async fn diag(&self) -> String {
        let admins = self.admins.lock().unwrap().clone();
        let mut out = String::new();
        for (i, a) in admins.iter().enumerate() {
            let Some(a) = a else {
                out.push_str(&format!("\n  b{}: down", i + 1));
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(1), common::status(*a)).await {
                Ok(s) => out.push_str(&format!("\n  b{}: {}", i + 1, s["core"]["mesh"])),
                Err(_) => out.push_str(&format!("\n  b{}: no answer (frozen?)", i + 1)),
            }
        }
        out
    }

    /// Panics with `what`, the time and every broker's status.
    async fn fail(&self, what: String) -> ! {
        let d = self.diag().await;
        panic!(
            "[{:.2} s] {what}; brokers:{d}",
            self.t0.elapsed().as_secs_f64()
        )
    }

    fn epoch(&self, i: usize) -> u64 {
        self.epoch[i].load(AtomicOrdering::SeqCst)
    }

    fn bump(&self, i: usize) {
        self.epoch[i].fetch_add(1, AtomicOrdering::SeqCst);
    }

    fn record(
        &self,
        record: Published<Text>,
        outcome: Outcome,
        broker: usize,
        epoch: u64,
        sent_at: f64,
        confirmed: Option<&Client>,
    ) {
        if matches!(outcome, Outcome::Ok { .. }) {
            self.oks.fetch_add(1, AtomicOrdering::SeqCst);
        }
        self.sent.lock().unwrap().push(Sent {
            record,
            outcome,
            broker,
            epoch,
            at: self.t0.elapsed().as_secs_f64(),
            sent_at,
            confirmed: confirmed.map(|c| (c.clone(), c.publisher_id())),
        });
    }

    fn stopped(&self) -> bool {
        self.stop.load(AtomicOrdering::SeqCst)
    }

    /// Connects to a live broker, trying `preferred` first; returns the
    /// client and the broker's index.
    async fn connect(&self, preferred: usize, name: &str) -> Option<(Client, usize)> {
        let addrs = self.addrs.lock().unwrap().clone();
        let n = addrs.len();
        for k in 0..n {
            let i = (preferred + k) % n;
            let Some(addr) = addrs[i] else { continue };
            // A session whose broker was killed ends after the idle
            // timeout (30 s by default): the client reconnects sooner.
            let mut opts = ClientOptions::new(addr).ca_file(&self.ca).name(name);
            opts.idle_timeout = Duration::from_secs(3);
            if let Ok(Ok(c)) = tokio::time::timeout(GUARD, Client::connect_any(&[addr], opts)).await
            {
                return Some((c, i));
            }
        }
        None
    }
}

/// A publisher: publishes unique keys to `topic`, confirmed or not, and
/// reconnects to another broker when its session dies.
async fn publisher(
    sh: Arc<Shared>,
    name: String,
    home: usize,
    topic: String,
    (ordering, safe): (Ordering, bool),
    mut rng: Rng,
) {
    let mut session = 0;
    while !sh.stopped() {
        let Some((client, b)) = sh.connect(home, &name).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        session += 1;
        let p = client
            .publisher(&topic, Publish::with(ordering).safe_if(safe))
            .unwrap();
        let mut n = 0;
        while !sh.stopped() {
            n += 1;
            let key = format!("{name}.{session}:{n}");
            let record = logs::published(&group_of(&topic), &key, ordering, safe);
            let epoch = sh.epoch(b);
            let sent_at = sh.t0.elapsed().as_secs_f64();
            let confirm = rng.chance(50);
            let out = if confirm {
                let Ok(r) = tokio::time::timeout(GUARD, p.publish_confirmed(key.clone())).await
                else {
                    sh.fail(format!(
                        "{name}: the confirmation of {key:?} never came (b{})",
                        b + 1
                    ))
                    .await
                };
                outcome(&r, r.as_ref().is_ok_and(|c| c.stable))
            } else {
                let r = p.publish(key.clone()).await;
                let r = match r {
                    Ok(()) => match tokio::time::timeout(GUARD, client.flush()).await {
                        Ok(r) => r,
                        Err(_) => {
                            sh.fail(format!(
                                "{name}: flush after {key:?} never returned (b{})",
                                b + 1
                            ))
                            .await
                        }
                    },
                    Err(e) => Err(e),
                };
                plain(outcome(&r, false))
            };
            sh.record(record, out, b, epoch, sent_at, confirm.then_some(&client));
            match out {
                Outcome::Ok { .. } => {}
                Outcome::Blocked | Outcome::Unknown => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Outcome::Lost => break,
            }
            if client.close_reason().is_some() {
                break;
            }
            tokio::time::sleep(rng.ms(5, 30)).await;
        }
    }
}

/// A subscriber to `pattern`: records its log; subscribes again through
/// another broker when its session dies.
async fn subscriber(sh: Arc<Shared>, name: String, home: usize, pattern: String) {
    let mut session = 0;
    while !sh.stopped() {
        let Some((client, b)) = sh.connect(home, &name).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        session += 1;
        let sub = match tokio::time::timeout(GUARD, client.subscribe(&pattern)).await {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Err(_) => {
                sh.fail(format!("{name}: subscribe on b{} never completed", b + 1))
                    .await
            }
        };
        let log_name = format!("{name}.{session} on b{}", b + 1);
        let s = Subscriber::start(&log_name, sub, group_of);
        sh.logs.lock().unwrap().push(s.log.clone());
        sh.installed.lock().unwrap().push((
            log_name,
            group_of(&pattern),
            sh.t0.elapsed().as_secs_f64(),
        ));
        while !sh.stopped() && s.log.ended().is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if s.log.ended().is_none() {
            sh.keep.lock().unwrap().push(client);
            return;
        }
    }
}

/// A member of `group`: joins (with state or not), multicasts, sometimes
/// leaves and joins again; joins again through another broker when its
/// session dies.
async fn member(sh: Arc<Shared>, name: String, home: usize, group: String, mut rng: Rng) {
    let with_state = rng.chance(70);
    let mut session = 0;
    let mut joins = 0;
    'session: while !sh.stopped() {
        let Some((client, b)) = sh.connect(home, &name).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        session += 1;
        while !sh.stopped() {
            joins += 1;
            let log_name = format!("{name}.{session}.{joins} on b{}", b + 1);
            let m = if with_state {
                match tokio::time::timeout(GUARD, client.join_with_state(&group)).await {
                    Ok(Ok((g, state))) => Member::start(&log_name, g, Some(state)),
                    Ok(Err(_)) => continue 'session,
                    Err(_) => {
                        sh.fail(format!(
                            "{name}: join_with_state on b{} never completed",
                            b + 1
                        ))
                        .await
                    }
                }
            } else {
                match tokio::time::timeout(GUARD, client.join(&group)).await {
                    Ok(Ok(g)) => Member::start(&log_name, g, None),
                    Ok(Err(_)) => continue 'session,
                    Err(_) => {
                        sh.fail(format!("{name}: join on b{} never completed", b + 1))
                            .await
                    }
                }
            };
            sh.logs.lock().unwrap().push(m.log.clone());
            let mut n = 0;
            loop {
                if sh.stopped() {
                    if m.log.ended().is_none() {
                        sh.keep.lock().unwrap().push(client);
                        sh.keep_members.lock().unwrap().push(m);
                    }
                    return;
                }
                if m.log.ended().is_some() {
                    continue 'session;
                }
                if rng.chance(3) {
                    // Leave and join again (a new membership, new log).
                    match tokio::time::timeout(GUARD, m.try_leave()).await {
                        Ok(Ok(())) => break,
                        Ok(Err(_)) => continue 'session,
                        Err(_) => {
                            sh.fail(format!("{name}: leave on b{} never completed", b + 1))
                                .await
                        }
                    }
                }
                n += 1;
                let key = format!("{log_name}:{n}");
                let (ordering, safe) = (rng.ordering(), rng.chance(20));
                let epoch = sh.epoch(b);
                let sent_at = sh.t0.elapsed().as_secs_f64();
                let r = m.try_multicast(&key, ordering, safe).await;
                let (record, r) = match r {
                    Ok(rec) => {
                        let Ok(f) = tokio::time::timeout(GUARD, client.flush()).await else {
                            sh.fail(format!(
                                "{name}: flush after multicasting {key:?} never returned (b{})",
                                b + 1
                            ))
                            .await
                        };
                        (rec, f)
                    }
                    Err(e) => (logs::published(&group, &key, ordering, safe), Err(e)),
                };
                let out = plain(outcome(&r, false));
                sh.record(record, out, b, epoch, sent_at, None);
                if out == Outcome::Lost {
                    continue 'session;
                }
                tokio::time::sleep(rng.ms(10, 40)).await;
            }
        }
    }
}

/// The mesh under test: brokers (None while killed), their relays.
struct World {
    mesh: RelayedMesh,
    brokers: Vec<Option<BrokerProc>>,
    dirs: Vec<Option<TempDir>>,
    sh: Arc<Shared>,
    _dir: TempDir,
}

impl World {
    fn n(&self) -> usize {
        self.brokers.len()
    }

    fn live(&self) -> Vec<usize> {
        (0..self.n())
            .filter(|i| self.brokers[*i].is_some())
            .collect()
    }

    fn kill(&mut self, i: usize) {
        self.sh.bump(i);
        self.sh.addrs.lock().unwrap()[i] = None;
        self.sh.admins.lock().unwrap()[i] = None;
        self.sh.note(&format!("SIGKILL b{}", i + 1));
        let b = self.brokers[i].take().expect("killing a live broker");
        self.dirs[i] = Some(mesh::kill_keep_dir(b));
    }

    /// Stops broker `i` with SIGTERM (it must exit cleanly), keeping its
    /// data directory.
    fn terminate(&mut self, i: usize) {
        self.sh.bump(i);
        self.sh.addrs.lock().unwrap()[i] = None;
        self.sh.admins.lock().unwrap()[i] = None;
        self.sh.note(&format!("SIGTERM b{}", i + 1));
        let mut b = self.brokers[i].take().expect("stopping a live broker");
        let status = b.terminate();
        assert!(
            status.success(),
            "broker {} exited with {status} on SIGTERM",
            i + 1
        );
        self.dirs[i] = Some(std::mem::replace(&mut b.dir, TempDir(PathBuf::new())));
    }

    fn restart(&mut self, i: usize) {
        let dir = self.dirs[i].take().expect("a killed broker's directory");
        let b = self.mesh.start_broker(i, dir);
        self.sh.addrs.lock().unwrap()[i] = Some(b.addr);
        self.sh.admins.lock().unwrap()[i] = Some(b.admin);
        self.sh.note(&format!("restarted b{}", i + 1));
        self.brokers[i] = Some(b);
    }

    /// Freezes (SIGSTOP) or wakes (SIGCONT) broker `i`.
    fn pause(&mut self, i: usize, stop: bool) {
        if stop {
            self.sh.bump(i);
        }
        let pid = self.brokers[i].as_ref().unwrap().child.id().to_string();
        let sig = if stop { "-STOP" } else { "-CONT" };
        self.sh.note(&format!("SIG{} b{}", &sig[1..], i + 1));
        let st = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(st.success(), "kill {sig} {pid}");
    }

    /// Waits until the brokers `set` agree on one unblocked view of
    /// exactly `set.len()` brokers.
    async fn converged(&self, set: &[usize], what: &str) {
        let admins: Vec<SocketAddr> = set
            .iter()
            .map(|i| self.brokers[*i].as_ref().unwrap().admin)
            .collect();
        let n = set.len();
        let r = tokio::time::timeout(GUARD * 2, async {
            loop {
                let mut ids = HashSet::new();
                let mut ok = true;
                for a in &admins {
                    let s = common::status(*a).await;
                    let m = &s["core"]["mesh"];
                    // No view change under way either: one that started
                    // while a broker was unreachable may still remove it
                    // (fault seed 59: a view without a broker that had
                    // woken was installed after the mesh looked whole, and
                    // the next fault then took a majority of that view).
                    ok &= m["blocked"] == false
                        && m["view"][1].as_array().map(Vec::len) == Some(n)
                        && m["pending_views"].as_array().is_some_and(Vec::is_empty);
                    ids.insert(m["view"][0].to_string());
                }
                if ok && ids.len() == 1 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if r.is_err() {
            self.sh
                .fail(format!(
                    "timed out waiting for {what}: brokers {set:?} in one view of {n}"
                ))
                .await
        }
        self.sh.note(&format!("converged: {what}"));
    }

    /// Waits until every broker of `set` says it is blocked.
    async fn blocked(&self, set: &[usize]) {
        for i in set {
            mesh::wait_for(
                self.brokers[*i].as_ref().unwrap().admin,
                "a broker cut off from the majority to block",
                |s| s["core"]["mesh"]["blocked"] == true,
            )
            .await;
        }
    }

    /// Waits until `k` more publishes ended `Ok` (the workload goes on).
    async fn progress(&self, k: usize) {
        let start = self.sh.oks.load(AtomicOrdering::SeqCst);
        tokio::time::timeout(GUARD, async {
            while self.sh.oks.load(AtomicOrdering::SeqCst) < start + k {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the workload made no progress");
    }
}

#[derive(Debug, Default)]
struct Stats {
    kills: usize,
    pauses: usize,
    majority_pauses: usize,
    lossy_links: usize,
}

/// `k` distinct members of `all`.
fn pick(rng: &mut Rng, all: &[usize], k: usize) -> Vec<usize> {
    let mut side: Vec<usize> = Vec::new();
    while side.len() < k {
        let i = all[rng.below(all.len() as u64) as usize];
        if !side.contains(&i) {
            side.push(i);
        }
    }
    side
}

/// Starts `n` relayed brokers and the workload: on every broker a
/// subscriber of each topic group and a publisher (`orderings[i]`, or one
/// drawn from `rng`), members of gm on some brokers.
async fn start(
    tag: &str,
    n: usize,
    rng: &mut Rng,
    orderings: &[(Ordering, bool)],
) -> (World, Vec<tokio::task::JoinHandle<()>>) {
    let dir = TempDir::new(tag);
    let mut m = RelayedMesh::start(dir.path(), "r", n, &mesh::fast()).await;
    let brokers: Vec<Option<BrokerProc>> = m.brokers.drain(..).map(Some).collect();
    let sh = Arc::new(Shared {
        addrs: Mutex::new(brokers.iter().map(|b| b.as_ref().map(|b| b.addr)).collect()),
        admins: Mutex::new(
            brokers
                .iter()
                .map(|b| b.as_ref().map(|b| b.admin))
                .collect(),
        ),
        t0: Instant::now(),
        epoch: (0..n).map(|_| AtomicU64::new(0)).collect(),
        ca: m.certs.join("ca.pem"),
        stop: AtomicBool::new(false),
        sent: Mutex::new(Vec::new()),
        oks: AtomicUsize::new(0),
        logs: Mutex::new(Vec::new()),
        keep: Mutex::new(Vec::new()),
        keep_members: Mutex::new(Vec::new()),
        installed: Mutex::new(Vec::new()),
    });
    let w = World {
        mesh: m,
        brokers,
        dirs: (0..n).map(|_| None).collect(),
        sh: sh.clone(),
        _dir: dir,
    };
    let all: Vec<usize> = (0..n).collect();
    w.converged(&all, "the initial mesh").await;
    let mut tasks = Vec::new();
    for i in 0..n {
        for g in ["ga", "gb"] {
            tasks.push(tokio::spawn(subscriber(
                sh.clone(),
                format!("sub-{g}-{}", i + 1),
                i,
                format!("{g}/**"),
            )));
        }
    }
    // Publishing starts once every subscription is installed: a message
    // published to a group with no member yet is confirmed (delivered, to
    // nobody) and would be required of nobody's log.
    tokio::time::timeout(GUARD, async {
        while sh.logs.lock().unwrap().len() < 2 * n {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the initial subscriptions were never installed");
    for i in 0..n {
        let g = if i % 2 == 0 { "ga" } else { "gb" };
        let decl = orderings
            .get(i)
            .copied()
            .unwrap_or_else(|| (rng.ordering(), rng.chance(30)));
        tasks.push(tokio::spawn(publisher(
            sh.clone(),
            format!("pub{}", i + 1),
            i,
            format!("{g}/p{}", i + 1),
            decl,
            Rng(rng.next()),
        )));
        if i % 2 == 0 || rng.chance(50) {
            tasks.push(tokio::spawn(member(
                sh.clone(),
                format!("mem{}", i + 1),
                i,
                "gm".into(),
                Rng(rng.next()),
            )));
        }
    }
    (w, tasks)
}

async fn run_seed(seed: u64) {
    let started = Instant::now();
    let mut rng = Rng(seed);
    let n = 3 + rng.below(3) as usize;
    let (mut w, tasks) = start("fault", n, &mut rng, &[]).await;
    let all: Vec<usize> = (0..n).collect();
    let mut stats = Stats::default();
    // Loss and delay on up to two relayed links (while the link goes
    // through the relay: see `finish`).
    for _ in 0..rng.below(3) {
        let (i, j) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
        if i == j {
            continue;
        }
        let f = common::relay::Faults {
            cut: false,
            loss: rng.below(8) as f64 / 100.0,
            delay: rng.ms(0, 15),
        };
        w.mesh.relays[i][j].as_ref().unwrap().set(f.clone());
        w.mesh.relays[j][i].as_ref().unwrap().set(f);
        stats.lossy_links += 1;
    }
    w.progress(20).await;
    // The faults, one after another.
    let faults = 3 + rng.below(3);
    for _ in 0..faults {
        let minority = (n - 1) / 2;
        match rng.below(10) {
            0..=3 => {
                // SIGKILL and restart with the same config and data dir;
                // with five brokers, sometimes a second one too.
                let mut killed = vec![rng.below(n as u64) as usize];
                if minority >= 2 && rng.chance(40) {
                    let j = (killed[0] + 1 + rng.below(n as u64 - 1) as usize) % n;
                    killed.push(j);
                }
                for &i in &killed {
                    w.kill(i);
                    stats.kills += 1;
                }
                let live = w.live();
                w.converged(&live, "the survivors of a kill").await;
                w.progress(10).await;
                for &i in &killed {
                    w.restart(i);
                }
                w.converged(&all, "the mesh after a restart").await;
            }
            4..=7 => {
                // A minority frozen (SIGSTOP): to the others it is cut off;
                // it wakes (SIGCONT) to find itself excluded and rejoins.
                let k = 1 + rng.below(minority as u64) as usize;
                let side = pick(&mut rng, &all, k);
                let rest: Vec<usize> = all.iter().copied().filter(|i| !side.contains(i)).collect();
                for &i in &side {
                    w.pause(i, true);
                }
                stats.pauses += 1;
                w.converged(&rest, "the majority while a minority is frozen")
                    .await;
                w.progress(10).await;
                for &i in &side {
                    w.pause(i, false);
                }
                w.converged(&all, "the mesh after a minority woke").await;
            }
            _ => {
                // A majority frozen: no part of the view holds a majority;
                // the rest block until it wakes.
                let k = n - minority;
                let side = pick(&mut rng, &all, k);
                let rest: Vec<usize> = all.iter().copied().filter(|i| !side.contains(i)).collect();
                for i in &all {
                    w.sh.bump(*i);
                }
                for &i in &side {
                    w.pause(i, true);
                }
                stats.majority_pauses += 1;
                w.blocked(&rest).await;
                for &i in &side {
                    w.pause(i, false);
                }
                w.converged(&all, "the mesh after a frozen majority woke")
                    .await;
            }
        }
        w.progress(10).await;
    }
    let faults = format!(
        "{} kills, {} frozen minorities, {} frozen majorities, {} lossy links",
        stats.kills, stats.pauses, stats.majority_pauses, stats.lossy_links
    );
    finish(w, tasks, &format!("fault seed {seed}"), &faults, started).await;
}

/// Stops the workload, lifts every fault, waits for one view of all
/// brokers, publishes a final marker in every group, reads every live log
/// up to it and checks every log.
async fn finish(
    w: World,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    label: &str,
    faults: &str,
    started: Instant,
) {
    let sh = w.sh.clone();
    let all: Vec<usize> = (0..w.n()).collect();
    sh.stop.store(true, AtomicOrdering::SeqCst);
    for t in tasks {
        tokio::time::timeout(GUARD * 2, t)
            .await
            .expect("a workload task never stopped")
            .expect("a workload task failed");
    }
    for row in &w.mesh.relays {
        for r in row.iter().flatten() {
            r.set(Default::default());
        }
    }
    w.converged(&all, "the final mesh").await;
    // A final marker in every group, every live log read up to it.
    let c = w.brokers[0].as_ref().unwrap().client("end").await;
    let mut extra = Vec::new();
    for g in ["ga", "gb"] {
        let p = c.publisher(&format!("{g}/end"), Ordering::Total).unwrap();
        p.publish_confirmed(format!("end-{g}")).await.unwrap();
        extra.push(logs::published(
            g,
            &format!("end-{g}"),
            Ordering::Total,
            false,
        ));
    }
    let g = tokio::time::timeout(GUARD, c.join("gm"))
        .await
        .unwrap()
        .unwrap();
    let end_member = Member::start("end member", g, None);
    extra.push(
        end_member
            .try_multicast("end-gm", Ordering::Total, false)
            .await
            .unwrap(),
    );
    c.flush().await.unwrap();
    sh.logs.lock().unwrap().push(end_member.log.clone());
    let all_logs: Vec<SharedLog> = sh.logs.lock().unwrap().clone();
    let mut checked = Vec::new();
    let mut complete = 0;
    for l in &all_logs {
        if l.ended().is_some() {
            checked.push(l.snapshot());
            continue;
        }
        let group = l
            .snapshot()
            .events
            .iter()
            .find_map(|e| match e {
                Event::View(v) => Some(v.group.clone()),
                _ => None,
            })
            .expect("a live log with a view");
        // Read up to the marker, unless its session ends first (one on a
        // killed broker whose death the client had not noticed yet): then
        // it is checked as incomplete.
        let key = format!("end-{group}");
        let seen = tokio::time::timeout(GUARD, async {
            while l.ended().is_none() && !logs::has(&l.snapshot(), &key) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        if seen.is_err() {
            l.wait_for_key(&key).await; // panics with the log
        }
        let snap = l.snapshot();
        if l.ended().is_none() && logs::has(&snap, &key) {
            complete += 1;
            checked.push(snap.complete());
        } else {
            checked.push(snap);
        }
    }
    // What must arrive: confirmed ok by a broker with no fault since, or
    // confirmed stable (safe). Refused with Blocked: delivered nowhere.
    let delivered: HashSet<String> = checked.iter().flat_map(logs::keys).collect();
    // A message is required of someone only if a subscription of its group
    // was installed before it was sent and stayed to the end: one delivered
    // while its group had no member (every subscriber's session lost to a
    // fault and not yet back) is confirmed, to nobody.
    let complete_names: HashSet<&str> = checked
        .iter()
        .filter(|l| l.complete)
        .map(|l| l.name.as_str())
        .collect();
    // ... and its broker was not cut off from the primary component after
    // the message was sent (a subscriber whose broker was frozen or
    // excluded meanwhile comes back as a new member: it may miss what the
    // others delivered while it was away, DESIGN §2.7).
    let installed = sh.installed.lock().unwrap().clone();
    let cut_off = |name: &str, sent_at: f64| {
        let t = sh.t0 + Duration::from_secs_f64(sent_at);
        all_logs
            .iter()
            .any(|l| l.snapshot().name == name && l.cut_off_after(t))
    };
    let watched = |group: &str, sent_at: f64| {
        installed.iter().any(|(name, g, at)| {
            g == group
                && *at <= sent_at
                && complete_names.contains(name.as_str())
                && !cut_off(name, sent_at)
        })
    };
    let sent = std::mem::take(&mut *sh.sent.lock().unwrap());
    let mut published = extra;
    let (mut ok, mut refused, mut unknown, mut lost, mut required) = (0, 0, 0, 0, 0);
    let mut blocked_delivered = Vec::new();
    let mut nowhere = Vec::new();
    for s in sent {
        let must = match s.outcome {
            Outcome::Ok { stable } => {
                ok += 1;
                // Confirmed stable (safe): every surviving member gets it.
                // Confirmed (delivered by its broker): if that broker had
                // no fault since and never rejoined (same publisher id).
                // An unconfirmed publish's flush cannot say it was sent (a
                // refusal of a queued publish may come later).
                let group = s.record.group.clone();
                let watched = watched(&group, s.sent_at);
                match &s.confirmed {
                    Some((c, pid)) => {
                        watched
                            && (stable
                                || (sh.epoch(s.broker) == s.epoch && c.publisher_id() == *pid))
                    }
                    None => false,
                }
            }
            Outcome::Blocked => {
                refused += 1;
                if delivered.contains(&s.record.key) {
                    blocked_delivered.push(s.record.key.clone());
                }
                false
            }
            Outcome::Unknown => {
                unknown += 1;
                false
            }
            Outcome::Lost => {
                lost += 1;
                false
            }
        };
        if must && !delivered.contains(&s.record.key) {
            nowhere.push(format!(
                "{:?} ({:?}, b{}, ended at {:.2} s)",
                s.record.key,
                s.outcome,
                s.broker + 1,
                s.at
            ));
        }
        if must {
            required += 1;
            published.push(s.record);
        } else {
            published.push(s.record.may_be_lost());
        }
    }
    let msgs: usize = checked.iter().map(|l| logs::keys(l).len()).sum();
    eprintln!(
        "{label}: {} brokers; faults: {faults}; published {} (ok {ok}, of which required {required}; blocked {refused}, unknown {unknown}, lost with the session {lost}); {} logs ({complete} complete), {msgs} deliveries; {:.1} s",
        w.n(),
        ok + refused + unknown + lost,
        checked.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        blocked_delivered.is_empty(),
        "{label}: publishes refused with Blocked were delivered: {blocked_delivered:?}"
    );
    assert!(required > 0, "{label}: nothing was required to arrive");
    if !nowhere.is_empty() {
        eprintln!(
            "{label}: {} publishes that must arrive were delivered nowhere: {}",
            nowhere.len(),
            nowhere.join(", ")
        );
    }
    if let Ok(dir) = std::env::var("MESHCAST_FAULT_DUMP") {
        // Every log in full, one file each, for a failure's post-mortem.
        std::fs::create_dir_all(&dir).expect("dump dir");
        for l in &checked {
            let file = format!("{dir}/{}.txt", l.name.replace(' ', "_"));
            let text: String = l.events.iter().map(|e| format!("{e:?}\n")).collect();
            std::fs::write(file, text).expect("dump");
        }
    }
    logs::check(checked, published);
    drop(end_member);
    drop(c);
    sh.keep_members.lock().unwrap().clear();
    sh.keep.lock().unwrap().clear();
}

fn seeds() -> Vec<u64> {
    let start = std::env::var("MESHCAST_FAULT_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("MESHCAST_FAULT_SEED is a number"));
    let count = std::env::var("MESHCAST_FAULT_SEEDS")
        .ok()
        .map(|s| s.parse::<u64>().expect("MESHCAST_FAULT_SEEDS is a number"));
    match (start, count) {
        (None, None) => DEFAULT_SEEDS.to_vec(),
        (s, c) => {
            let s = s.unwrap_or(1);
            (s..s + c.unwrap_or(1)).collect()
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_faults_on_real_brokers_keep_every_log_correct() {
    let _one = ONE_MESH.lock().await;
    let seeds = seeds();
    let started = Instant::now();
    for (k, seed) in seeds.iter().enumerate() {
        let r = tokio::spawn(run_seed(*seed)).await;
        if let Err(e) = r {
            eprintln!(
                "fault seed {seed} FAILED ({k} seeds passed before it); replay with:\n  MESHCAST_FAULT_SEED={seed} cargo test --release -p meshcast-broker --test fault_random -- --nocapture random_faults"
            );
            std::panic::resume_unwind(e.into_panic());
        }
    }
    eprintln!(
        "{} fault seeds passed in {:.1} s",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Both tests start meshes of their own; one at a time on a small machine.
static ONE_MESH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Issue 8's rolling restart: three brokers under load (a publisher on
/// every broker, one of them `safe` total order, subscribers and members on
/// every broker); each broker in turn is stopped (SIGTERM, the second one
/// SIGKILL) and started again with the same configuration and data
/// directory, the next one only once it is back in a view of three. The
/// mesh must end as one view of three; members that stayed connected lose
/// nothing published by publishers that stayed connected (confirmed ok on
/// a broker not restarted since, or confirmed stable); every log passes the
/// history checker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_loses_nothing_for_members_that_stay() {
    let _one = ONE_MESH.lock().await;
    let started = Instant::now();
    let mut rng = Rng(7);
    let decl = [
        (Ordering::Total, true),
        (Ordering::Fifo, false),
        (Ordering::Causal, false),
    ];
    let (mut w, tasks) = start("rolling", 3, &mut rng, &decl).await;
    let all = [0, 1, 2];
    w.progress(20).await;
    for i in 0..3 {
        if i == 1 {
            w.kill(i);
        } else {
            w.terminate(i);
        }
        let rest: Vec<usize> = all.iter().copied().filter(|j| *j != i).collect();
        w.converged(&rest, "the two brokers left running").await;
        w.progress(10).await;
        w.restart(i);
        w.converged(&all, "the mesh with the restarted broker")
            .await;
        w.progress(10).await;
    }
    finish(
        w,
        tasks,
        "rolling restart",
        "b1 SIGTERM, b2 SIGKILL, b3 SIGTERM, each restarted",
        started,
    )
    .await;
}
