//! Deterministic simulator: 3-7 broker cores and their clients in one
//! thread, a seeded network with random delays, connection cuts (messages
//! in flight are lost, then the link reconnects), crashes and restarts as
//! new incarnations (with their persisted membership, or with it lost),
//! minority partitions and heals, majority losses, and a random workload;
//! per seed also (see [`ExtraFaults`]) clocks with their own offset and
//! rate, brokers frozen for seconds, links losing one direction,
//! three-way splits, and a second process with a running broker's id. The
//! [`checker`] sees every event and verifies DESIGN.md §2 plus liveness
//! once faults stop. A run is a pure function of its seed.
//!
//! Environment: `MESHCAST_SEED=<n>` replays one seed, `MESHCAST_SEED_START=<s>`
//! offsets the sweep, `MESHCAST_TRACE=1` prints an event trace, `MESHCAST_SEEDS=<n>`
//! sets how many seeds the sweep tests run.

pub mod checker;

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::Broker;
use crate::config::{Defects, ProtocolConfig};
use crate::id::{MemberId, NodeId, Ordering, Time};
use crate::io::{ClientCmd, ExpelReason, Input, Output};
use crate::wire::{Envelope, PeerMsg};
use checker::{Checker, Clause, Published, Violation};

/// Options of one simulated run (derived from the seed unless overridden).
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Number of brokers (3..=7).
    pub brokers: usize,
    /// Simulated milliseconds of workload and faults.
    pub fault_ms: u64,
    /// Simulated milliseconds after faults stop before liveness is checked.
    pub settle_ms: u64,
    /// Inject crashes, cuts and partitions.
    pub faults: bool,
    /// Mean milliseconds between workload operations.
    pub op_interval: u64,
    /// Mean milliseconds between faults.
    pub fault_interval: u64,
    /// Deliberate protocol defects.
    pub defects: Defects,
    /// Groups used by the workload.
    pub groups: usize,
    /// Member queue bound given to the brokers (slow-member detection).
    pub member_queue: Option<usize>,
    /// A session that stops consuming deliveries for a while:
    /// `(broker name, session, from ms, until ms)`.
    pub slow_session: Option<(u32, u64, u64, u64)>,
    /// Give every broker but `0` a single seed, its predecessor (broker `i`
    /// seeds `i - 1`, also after a restart or exclusion), so most joins
    /// reach the coordinator only through join forwarding. The chain has no
    /// cycle, so every joiner eventually finds a member.
    pub single_seed: bool,
    /// Hand a broker all peer messages that arrive at the same instant in
    /// one [`Broker::handle_batch`] call (as the runtime does) instead of
    /// one [`Broker::handle`] call each.
    pub batch_inputs: bool,
    /// No broker is told to start the mesh: every broker starts with
    /// `auto_bootstrap` (the smallest reachable fresh one starts it). A
    /// restarted or excluded broker has history and never starts one.
    pub auto_bootstrap: bool,
    /// Once during the faults, crash a majority of the mesh at once (when
    /// no view change is under way) and restart it with its persisted
    /// membership: the survivors must recover with the restarted brokers
    /// standing in for their old incarnations.
    pub majority_loss: bool,
    /// Faults beyond cuts, crashes, partitions and the majority loss.
    pub extra: ExtraFaults,
}

/// Faults beyond link cuts, crashes, minority partitions and the majority
/// loss. They are drawn from their own stream of the seed, so the other
/// options of a seed stay what they were before these existed, and a seed
/// with none of them runs exactly as it did.
#[derive(Debug, Clone, Default)]
pub struct ExtraFaults {
    /// Every broker's clock has its own offset (up to 10 s) and rate (up to
    /// ±4 % off, so two clocks differ by at most 8 %: leases assume 10 %).
    pub clocks: bool,
    /// The largest rate error of a clock in parts per million (40,000 =
    /// 4 %) when `clocks` is set.
    pub clock_ppm: u64,
    /// A broker freezes for 0.1–3 s (a stopped process, a long GC pause):
    /// its input waits until it wakes, its timers do not fire, and a pause
    /// over a second ends its links (as the peers' idle timeouts would).
    pub pauses: bool,
    /// A link loses one direction for 50–1500 ms, then closes (as QUIC
    /// does when one side hears nothing) and reconnects.
    pub one_way: bool,
    /// The mesh splits into three sides (often none with a majority) for
    /// 0.3–1.8 s, then heals.
    pub three_way: bool,
    /// A second process with the id of a running broker starts (a copied
    /// config with an empty data directory) while the first is cut off
    /// from everyone (the runtime's identity check refuses the second
    /// incarnation wherever the first still holds a link); the first keeps
    /// running, alone, for 0.5–3 s.
    pub duplicates: bool,
    /// Providers answer state requests 1–80 ms later (from their state at
    /// the request), not at once: views, deliveries and failures happen
    /// in between, as with real clients.
    pub late_replies: bool,
}

impl ExtraFaults {
    /// Any of them?
    pub fn any(&self) -> bool {
        self.clocks
            || self.pauses
            || self.one_way
            || self.three_way
            || self.duplicates
            || self.late_replies
    }

    /// Drawn from their own stream of `seed`: each with probability 1/2.
    pub fn from_seed(seed: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x0e47_7a0f_a017);
        let mut flip = || r.next_u64() % 2 == 0;
        ExtraFaults {
            clocks: flip(),
            clock_ppm: 40_000,
            pauses: flip(),
            one_way: flip(),
            three_way: flip(),
            duplicates: flip(),
            late_replies: flip(),
        }
    }
}

impl SimOptions {
    /// Options derived from a seed.
    pub fn from_seed(seed: u64) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_5eed);
        let brokers = 3 + (r.next_u64() % 5) as usize;
        let slow = r.next_u64() % 2 == 0;
        let slow_name = (r.next_u64() % brokers as u64) as u32;
        let slow_from = 500 + r.next_u64() % 1_000;
        let slow_len = 500 + r.next_u64() % 3_000;
        let fault_ms = 2_000 + r.next_u64() % 2_000;
        let single_seed = r.next_u64() % 3 == 0;
        let batch_inputs = r.next_u64() % 2 == 0;
        let auto_bootstrap = r.next_u64() % 4 == 0;
        let majority_loss = r.next_u64() % 5 == 0;
        SimOptions {
            brokers,
            fault_ms,
            settle_ms: 6_000,
            faults: true,
            op_interval: 8 + r.next_u64() % 20,
            fault_interval: 250 + r.next_u64() % 400,
            defects: Defects::default(),
            groups: 3,
            member_queue: if slow { Some(16) } else { None },
            slow_session: if slow {
                Some((
                    slow_name,
                    1,
                    slow_from,
                    (slow_from + slow_len).min(300 + fault_ms),
                ))
            } else {
                None
            },
            single_seed,
            batch_inputs,
            auto_bootstrap,
            majority_loss,
            extra: ExtraFaults::from_seed(seed),
        }
    }

    /// The same options without the [`ExtraFaults`] (the run a seed had
    /// before they existed).
    pub fn without_extra(mut self) -> Self {
        self.extra = ExtraFaults::default();
        self
    }
}

/// Figures of one run.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// Faults injected (crashes, cuts, partitions).
    pub faults: u64,
    /// Crashes.
    pub crashes: u64,
    /// Partitions.
    pub partitions: u64,
    /// Link cuts.
    pub cuts: u64,
    /// Messages published.
    pub published: u64,
    /// Broker-level deliveries.
    pub deliveries: u64,
    /// Mesh views installed (distinct).
    pub views: u64,
    /// Longest time from the first proposal of a view change to the last
    /// install of its view, in simulated ms.
    pub max_view_change_ms: u64,
    /// Time from the end of faults until all brokers agreed on one view with
    /// every member joined, in simulated ms.
    pub recovery_ms: u64,
    /// Peer messages sent.
    pub messages: u64,
    /// Members expelled because their queue stayed full.
    pub slow_expulsions: u64,
    /// Joiners expelled because their state provider vanished.
    pub transfer_failures: u64,
    /// Publishes reported unsent (accepted while cut off, or still queued
    /// when the broker rejoined as a new incarnation).
    pub unsent: u64,
    /// Majority losses injected (all but a minority crashed at once, then
    /// restarted with their membership).
    pub majority_losses: u64,
    /// Brokers frozen for a while.
    pub pauses: u64,
    /// Links that lost one direction.
    pub one_way: u64,
    /// Three-way splits.
    pub three_way: u64,
    /// Second incarnations started while the first was still running.
    pub duplicates: u64,
}

/// Result of a run: the violations found (empty if correct) and figures.
#[derive(Debug)]
pub struct SimResult {
    /// Seed.
    pub seed: u64,
    /// Options used.
    pub options: SimOptions,
    /// Violations.
    pub violations: Vec<Violation>,
    /// Figures.
    pub stats: SimStats,
}

impl SimResult {
    /// True if any violation of `clause` was found.
    pub fn has(&self, clause: Clause) -> bool {
        self.violations.iter().any(|v| v.clause == clause)
    }
}

#[derive(Debug)]
enum Event {
    Net {
        epoch: u64,
        env: Envelope,
    },
    LinkUp {
        a: u32,
        b: u32,
        epoch: u64,
    },
    Restart(u32),
    Heal,
    Client {
        name: u32,
        cmd: ClientCmd,
    },
    CatchUp,
    /// An input that reached a paused broker, handed over when it wakes.
    Input {
        name: u32,
        input: Input,
    },
    /// A long pause outlasted the peers' idle timeouts: its links close.
    PauseCut {
        name: u32,
        until: u64,
    },
    /// The end of a one-way loss: the link closes and reconnects.
    OneWayEnd {
        from: u32,
        to: u32,
    },
}

/// Who produced a batch of outputs: a broker of the mesh, or a first
/// incarnation still running alone after a second one took its id.
#[derive(Debug, Clone, Copy)]
enum Who {
    Node(u32),
    Zombie(usize),
}

/// A first incarnation that keeps running, cut off from everyone, after a
/// second process with its id started (`ExtraFaults::duplicates`).
struct Zombie {
    id: NodeId,
    broker: Broker,
    /// Global time at which it is stopped.
    until: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Link {
    up: bool,
    epoch: u64,
    last: [u64; 2],
}

struct Node {
    broker: Option<Broker>,
    id: NodeId,
    restarts: u64,
    /// The incarnation the process started with: as in the runtime, links
    /// are named by it, also after the core rejoined as a later one.
    started_as: NodeId,
    /// What the crashed broker's data directory keeps for its restart
    /// (its last view and accepted base), unless the state is lost.
    memory: Option<crate::wire::Returning>,
}

struct Sim {
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<Node>,
    links: BTreeMap<(u32, u32), Link>,
    isolated: BTreeSet<u32>,
    opts: SimOptions,
    checker: Checker,
    stats: SimStats,
    pseq: BTreeMap<(u32, u64), u64>,
    tag: u64,
    /// Client-wanted memberships: (name, session) -> groups.
    wanted: BTreeMap<(u32, u64), BTreeSet<String>>,
    /// Whether a client's membership of a group keeps application state
    /// (joins with state) or not (a subscription-like member that answers
    /// state requests with an empty checkpoint): fixed per (name, session,
    /// group) for the whole run, so every join of it, the core's re-joins
    /// after a partition included, must carry the same flag.
    keeps_state: BTreeMap<(u32, u64, String), bool>,
    /// Per (name, session, group): tags delivered to that session, in order.
    logs: BTreeMap<(u32, u64, String), Vec<u64>>,
    propose_start: BTreeMap<crate::id::ViewId, u64>,
    install_times: BTreeMap<crate::id::ViewId, (u64, u64)>,
    view_prev_seen: BTreeMap<crate::id::ViewId, crate::id::ViewId>,
    trace: bool,
    /// Deliveries a slow session has not consumed yet.
    unconsumed: BTreeMap<(u32, u64, String), usize>,
    /// Per broker name: clock offset (ms) and rate error (parts per
    /// million); the same across restarts (the same machine).
    clocks: Vec<(u64, i64)>,
    /// Per broker name: global time until which it is paused.
    paused_until: Vec<u64>,
    /// Directions `(from, to)` losing everything until a global time.
    one_way: BTreeMap<(u32, u32), u64>,
    /// Side of each broker not on side 0 during a partition (a minority
    /// partition has sides 0 and 1, a three-way split 0, 1 and 2).
    sides: BTreeMap<u32, u8>,
    /// First incarnations still running after a duplicate started.
    zombies: Vec<Zombie>,
    /// Draws for the extra faults (kept apart from `rng`).
    xrng: ChaCha8Rng,
}

fn short(m: &PeerMsg) -> String {
    match m {
        PeerMsg::Propose(p) => format!("Propose {} base {} {:?}", p.ballot, p.base, p.members),
        PeerMsg::Report(r) => format!(
            "Report {} cur {:?} acc {:?} req {:?} groups {:?}",
            r.ballot,
            r.current,
            r.accepted.as_ref().map(|a| a.0),
            r.requests,
            r.groups
                .iter()
                .map(|g| (
                    g.group.clone(),
                    g.delivered.clone(),
                    g.held.iter().map(|m| (m.rank, m.seq)).collect::<Vec<_>>(),
                    g.decisions.len()
                ))
                .collect::<Vec<_>>()
        ),
        PeerMsg::Accept { ballot, install } => format!(
            "Accept {ballot} view {} prev {}",
            install.view.id, install.prev
        ),
        PeerMsg::Commit(i) => format!("Commit {} prev {} {:?}", i.view.id, i.prev, i.view.members),
        m => format!("{m:?}"),
    }
}

const SESSIONS: u64 = 2;

fn key(a: u32, b: u32) -> (u32, u32) {
    if a < b { (a, b) } else { (b, a) }
}

impl Sim {
    fn new(seed: u64, opts: SimOptions) -> Sim {
        let mut nodes = Vec::new();
        for i in 0..opts.brokers as u32 {
            let id = NodeId::new(i, 1);
            let cfg = ProtocolConfig {
                bootstrap: i == 0 && !opts.auto_bootstrap,
                auto_bootstrap: opts.auto_bootstrap.then_some(150),
                seeds: if opts.single_seed && i > 0 {
                    vec![i - 1]
                } else {
                    (0..opts.brokers as u32).collect()
                },
                defects: opts.defects.clone(),
                chunk_size: 64,
                member_queue: opts.member_queue,
                slow_timeout: 300,
                ..ProtocolConfig::default()
            };
            nodes.push(Node {
                broker: Some(Broker::new(id, cfg, seed.wrapping_add(u64::from(i)))),
                id,
                restarts: 0,
                started_as: id,
                memory: None,
            });
        }
        let mut links = BTreeMap::new();
        for a in 0..opts.brokers as u32 {
            for b in a + 1..opts.brokers as u32 {
                links.insert(
                    (a, b),
                    Link {
                        up: true,
                        epoch: 0,
                        last: [0, 0],
                    },
                );
            }
        }
        let mut xrng = ChaCha8Rng::seed_from_u64(seed ^ 0x7a11_c10c_0ff5);
        let clocks = (0..opts.brokers)
            .map(|_| {
                if opts.extra.clocks {
                    let offset = xrng.next_u64() % 10_000;
                    let max = opts.extra.clock_ppm;
                    let ppm = (xrng.next_u64() % (2 * max + 1)) as i64 - max as i64;
                    (offset, ppm)
                } else {
                    (0, 0)
                }
            })
            .collect();
        let brokers = opts.brokers;
        Sim {
            clocks,
            paused_until: vec![0; brokers],
            one_way: BTreeMap::new(),
            sides: BTreeMap::new(),
            zombies: Vec::new(),
            xrng,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            links,
            isolated: BTreeSet::new(),
            opts,
            checker: Checker::default(),
            stats: SimStats::default(),
            pseq: BTreeMap::new(),
            tag: 0,
            wanted: BTreeMap::new(),
            keeps_state: BTreeMap::new(),
            logs: BTreeMap::new(),
            propose_start: BTreeMap::new(),
            install_times: BTreeMap::new(),
            view_prev_seen: BTreeMap::new(),
            trace: std::env::var("MESHCAST_TRACE").is_ok(),
            unconsumed: BTreeMap::new(),
        }
    }

    /// Whether the client's membership of `group` keeps state (see
    /// `Sim::keeps_state`).
    fn keeps_state(&self, name: u32, session: u64, group: &str) -> bool {
        self.keeps_state
            .get(&(name, session, group.to_string()))
            .copied()
            .unwrap_or(true)
    }

    fn is_slow(&self, name: u32, session: u64) -> bool {
        self.opts.slow_session.is_some_and(|(n, s, from, until)| {
            n == name && s == session && self.now >= from && self.now < until
        })
    }

    /// A slow session catches up: it consumes everything it held back.
    fn catch_up_slow(&mut self) {
        let pending = std::mem::take(&mut self.unconsumed);
        for ((name, session, group), count) in pending {
            if self.is_slow(name, session) {
                self.unconsumed.insert((name, session, group), count);
                continue;
            }
            self.input(
                name,
                Input::Client(ClientCmd::Consumed {
                    session,
                    group,
                    count,
                }),
            );
        }
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn push(&mut self, at: u64, ev: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    fn alive(&self, name: u32) -> bool {
        self.nodes[name as usize].broker.is_some()
    }

    /// Broker `name`'s clock at global time `g`.
    fn local(&self, name: usize, g: u64) -> u64 {
        let (offset, ppm) = self.clocks[name];
        let scaled = i128::from(g) * (1_000_000 + i128::from(ppm)) / 1_000_000;
        offset + scaled as u64
    }

    /// The first global time at which broker `name`'s clock shows `l`.
    fn global_of(&self, name: usize, l: u64) -> u64 {
        let (offset, ppm) = self.clocks[name];
        if l <= offset {
            return 0;
        }
        let mut g = (i128::from(l - offset) * 1_000_000 / (1_000_000 + i128::from(ppm))) as u64;
        g = g.saturating_sub(2);
        while self.local(name, g) < l {
            g += 1;
        }
        g
    }

    fn paused(&self, name: u32) -> bool {
        self.now < self.paused_until[name as usize]
    }

    /// Runs `input` on broker `name` and processes its outputs.
    /// Tells the checker of a client's join or leave as its core gets it.
    fn note_client_membership(&mut self, name: u32, input: &Input) {
        let node = self.nodes[name as usize].id;
        match input {
            Input::Client(ClientCmd::Join { session, group, .. }) => {
                self.checker
                    .on_client_membership(node, *session, group, true);
            }
            Input::Client(ClientCmd::Leave { session, group }) => {
                self.checker
                    .on_client_membership(node, *session, group, false);
            }
            _ => {}
        }
    }

    fn input(&mut self, name: u32, input: Input) {
        if self.paused(name) {
            if !matches!(input, Input::Timeout) {
                let at = self.paused_until[name as usize];
                self.push(at, Event::Input { name, input });
            }
            return;
        }
        let now = Time(self.local(name as usize, self.now));
        if self.trace {
            if let Input::Client(c) = &input {
                if !matches!(c, ClientCmd::Publish { .. }) {
                    eprintln!("{:>6} b{name} client {c:?}", self.now);
                }
            }
        }
        if self.nodes[name as usize].broker.is_none() {
            return;
        }
        self.note_client_membership(name, &input);
        let Some(b) = self.nodes[name as usize].broker.as_mut() else {
            return;
        };
        let res = b.handle(now, input);
        if self.trace {
            if let Err(e) = res {
                eprintln!("{:>6} b{name}: error {e}", self.now);
            }
        }
        let mut outs = Vec::new();
        while let Some(o) = b.poll_output() {
            outs.push(o);
        }
        self.outputs(Who::Node(name), outs);
    }

    /// Several peer messages for `name` at once (`SimOptions::batch_inputs`).
    fn inputs(&mut self, name: u32, inputs: Vec<Input>) {
        if self.paused(name) {
            let at = self.paused_until[name as usize];
            for input in inputs {
                self.push(at, Event::Input { name, input });
            }
            return;
        }
        let now = Time(self.local(name as usize, self.now));
        if self.nodes[name as usize].broker.is_none() {
            return;
        }
        for input in &inputs {
            self.note_client_membership(name, input);
        }
        let Some(b) = self.nodes[name as usize].broker.as_mut() else {
            return;
        };
        let errors = b.handle_batch(now, inputs);
        if self.trace {
            for e in errors {
                eprintln!("{:>6} b{name}: error {e}", self.now);
            }
        }
        let mut outs = Vec::new();
        while let Some(o) = b.poll_output() {
            outs.push(o);
        }
        self.outputs(Who::Node(name), outs);
    }

    /// An input for a zombie (only its timers and its own answers reach it).
    fn zombie_input(&mut self, k: usize, input: Input) {
        let name = self.zombies[k].id.name;
        let now = Time(self.local(name as usize, self.now));
        let z = &mut self.zombies[k];
        let _ = z.broker.handle(now, input);
        let mut outs = Vec::new();
        while let Some(o) = z.broker.poll_output() {
            outs.push(o);
        }
        self.outputs(Who::Zombie(k), outs);
    }

    fn outputs(&mut self, who: Who, outs: Vec<Output>) {
        let name = match who {
            Who::Node(n) => n,
            Who::Zombie(k) => self.zombies[k].id.name,
        };
        self.checker.now = self.now;
        let mut replies = Vec::new();
        let mut consumed: BTreeMap<(u64, String), usize> = BTreeMap::new();
        let installs: Vec<usize> = outs
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o, Output::MeshView(_)))
            .map(|(i, _)| i)
            .collect();
        for (i, o) in outs.into_iter().enumerate() {
            let node = match who {
                Who::Node(n) => self.nodes[n as usize].id,
                Who::Zombie(k) => self.zombies[k].id,
            };
            if self.trace {
                match &o {
                    Output::Send { envelope, .. } => match &envelope.msg {
                        PeerMsg::Heartbeat(_) | PeerMsg::Data(_) | PeerMsg::Order(_) => {}
                        m => eprintln!("{:>6} {node} -> {}: {}", self.now, envelope.to, short(m)),
                    },
                    o => {
                        eprintln!("{:>6} {node}: {o:?}", self.now);
                        if matches!(o, Output::MeshView(_) | Output::Blocked | Output::Unblocked) {
                            self.trace_groups(who, node);
                        }
                    }
                }
            }
            match o {
                Output::Send { to, envelope } => {
                    if let Who::Node(name) = who {
                        self.send(name, to, envelope);
                    }
                }
                Output::MeshView(v) => {
                    self.checker.on_mesh_view(node, &v);
                    let t = self
                        .install_times
                        .entry(v.id)
                        .or_insert((self.now, self.now));
                    t.1 = self.now;
                    self.stats.views = self.install_times.len() as u64;
                }
                Output::GroupView(gv) => self.checker.on_group_view(node, &gv),
                Output::Deliver(d) => {
                    let flush = installs.iter().any(|j| *j > i);
                    self.checker.on_deliver(node, &d, flush);
                    if !d.deferred {
                        self.stats.deliveries += 1;
                    }
                    let tag = checker::tag_of(&d.payload);
                    if self.opts.member_queue.is_some() {
                        for m in &d.targets {
                            let key = (m.session, d.group.clone());
                            if matches!(who, Who::Node(_)) && self.is_slow(name, m.session) {
                                *self.unconsumed.entry((name, key.0, key.1)).or_default() += 1;
                            } else {
                                *consumed.entry(key).or_default() += 1;
                            }
                        }
                    }
                    if let Who::Node(name) = who {
                        for m in &d.targets {
                            self.logs
                                .entry((name, m.session, d.group.clone()))
                                .or_default()
                                .push(tag);
                        }
                    }
                }
                Output::StateRequest { transfer, provider } => {
                    self.checker
                        .on_state_request(&transfer.group, provider, transfer.view);
                    let state = self.checker.app_state(&transfer.group, provider);
                    let reply = ClientCmd::StateReply {
                        transfer,
                        data: checker::encode_state(&state),
                    };
                    match who {
                        // As a client does: it answers from its state at the
                        // request's place in its stream, some time later.
                        Who::Node(name) if self.opts.extra.late_replies => {
                            let at = self.now + 1 + self.xrand(80);
                            self.push(at, Event::Client { name, cmd: reply });
                        }
                        _ => replies.push(reply),
                    }
                }
                Output::StateDelivered { transfer, data } => {
                    self.checker.on_state_delivered(
                        &transfer.group,
                        transfer.joiner,
                        transfer.view,
                        data.as_deref(),
                    );
                }
                Output::Unsent { payload, .. } => {
                    self.checker.on_unsent(checker::tag_of(&payload));
                    self.stats.unsent += 1;
                }
                Output::Blocked => self.checker.on_blocked(node, true),
                Output::Unblocked => self.checker.on_blocked(node, false),
                // The simulated clients track their joins and leaves as
                // the core takes them (see `note_client_membership`).
                Output::LeaveTaken { .. } => {}
                Output::Rejoining { old, new } => {
                    self.checker.on_rejoining(old, new);
                    match who {
                        Who::Node(n) => self.nodes[n as usize].id = new,
                        Who::Zombie(k) => self.zombies[k].id = new,
                    }
                    // The core re-joins the old incarnation's members with state.
                }
                Output::Expelled {
                    group,
                    member,
                    reason,
                } => {
                    self.checker.on_expelled(&group, member, reason);
                    match reason {
                        ExpelReason::Slow => self.stats.slow_expulsions += 1,
                        ExpelReason::TransferFailed => self.stats.transfer_failures += 1,
                        ExpelReason::Partitioned => {}
                    }
                    if matches!(reason, ExpelReason::TransferFailed | ExpelReason::Slow)
                        && matches!(who, Who::Node(_))
                    {
                        // The client re-joins once it is out of the view.
                        let at = self.now + 50;
                        let state = self.keeps_state(name, member.session, &group);
                        self.push(
                            at,
                            Event::Client {
                                name,
                                cmd: ClientCmd::Join {
                                    session: member.session,
                                    group,
                                    state,
                                },
                            },
                        );
                    }
                }
            }
        }
        let mut answers: Vec<Input> = replies.into_iter().map(Input::Client).collect();
        for ((session, group), count) in consumed {
            answers.push(Input::Client(ClientCmd::Consumed {
                session,
                group,
                count,
            }));
        }
        self.checker.end_of_batch();
        for a in answers {
            match who {
                Who::Node(n) => self.input(n, a),
                Who::Zombie(k) => self.zombie_input(k, a),
            }
        }
    }

    /// Traces a broker's queued publishes and per-group held messages.
    fn trace_groups(&self, who: Who, node: NodeId) {
        let b = match who {
            Who::Node(n) => self.nodes[n as usize].broker.as_ref(),
            Who::Zombie(k) => Some(&self.zombies[k].broker),
        };
        if let Some(b) = b {
            let stats: Vec<_> = b
                .group_stats()
                .iter()
                .map(|g| (g.group.clone(), g.held, g.unstable_own, g.queued))
                .collect();
            eprintln!(
                "{:>6} {node}: queued {}; per group (held, unstable own, queued) {stats:?}",
                self.now,
                b.queued_publishes()
            );
        }
    }

    fn send(&mut self, from: u32, to: NodeId, env: Envelope) {
        self.stats.messages += 1;
        if let PeerMsg::Propose(p) = &env.msg {
            self.propose_start.entry(p.base).or_insert(self.now);
        }
        let k = key(from, to.name);
        let Some(link) = self.links.get(&k).copied() else {
            return;
        };
        if !link.up {
            return;
        }
        if self
            .one_way
            .get(&(from, to.name))
            .is_some_and(|until| *until > self.now)
        {
            return;
        }
        let dir = usize::from(from > to.name);
        let delay = 1 + self.rand(12);
        let at = (self.now + delay).max(link.last[dir]);
        if let Some(l) = self.links.get_mut(&k) {
            l.last[dir] = at;
        }
        self.push(
            at,
            Event::Net {
                epoch: link.epoch,
                env,
            },
        );
    }

    fn cut(&mut self, a: u32, b: u32, down_for: Option<u64>) {
        let k = key(a, b);
        let Some(l) = self.links.get_mut(&k) else {
            return;
        };
        let was_up = l.up;
        if self.trace {
            eprintln!("{:>6} CUT b{a}-b{b} for {down_for:?}", self.now);
        }
        l.up = false;
        l.epoch += 1;
        let epoch = l.epoch;
        if was_up {
            for (x, y) in [(a, b), (b, a)] {
                if self.alive(x) && self.alive(y) {
                    let peer = self.nodes[y as usize].started_as;
                    self.input(x, Input::LinkDown(peer));
                }
            }
        }
        if let Some(d) = down_for {
            let at = self.now + d;
            self.push(
                at,
                Event::LinkUp {
                    a: k.0,
                    b: k.1,
                    epoch,
                },
            );
        }
    }

    /// Cuts every link of broker `v` (see [`Sim::cut`]).
    fn cut_all(&mut self, v: u32, down_for: Option<u64>) {
        for p in 0..self.opts.brokers as u32 {
            if p != v {
                self.cut(v, p, down_for);
            }
        }
    }

    fn link_up(&mut self, a: u32, b: u32) {
        if !self.alive(a) || !self.alive(b) || self.sides.get(&a) != self.sides.get(&b) {
            return;
        }
        let k = key(a, b);
        let Some(l) = self.links.get_mut(&k) else {
            return;
        };
        if l.up {
            return;
        }
        l.up = true;
        l.epoch += 1;
        l.last = [self.now, self.now];
        let ida = self.nodes[a as usize].started_as;
        let idb = self.nodes[b as usize].started_as;
        self.input(a, Input::LinkUp(idb));
        self.input(b, Input::LinkUp(ida));
    }

    fn deliver_net(&mut self, epoch: u64, env: Envelope) {
        let to = env.to.name;
        if self.paused(to) {
            // Waits in the socket; still lost if the link closes meanwhile.
            let at = self.paused_until[to as usize];
            self.push(at, Event::Net { epoch, env });
            return;
        }
        if !self.net_valid(epoch, &env) {
            return;
        }
        let mut batch = vec![env];
        if self.opts.batch_inputs {
            // Everything else arriving at `to` at this instant, in order.
            let now = self.now;
            let keys: Vec<(u64, u64)> = self
                .queue
                .range((now, 0)..=(now, u64::MAX))
                .filter(|(_, ev)| matches!(ev, Event::Net { env, .. } if env.to.name == to))
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                if let Some(Event::Net { epoch, env }) = self.queue.remove(&k) {
                    if self.net_valid(epoch, &env) {
                        batch.push(env);
                    }
                }
            }
        }
        let node = self.nodes[to as usize].id;
        for env in &batch {
            if let PeerMsg::Data(d) = &env.msg {
                self.checker.has.insert((node, checker::tag_of(&d.payload)));
            }
        }
        if batch.len() == 1 {
            let env = batch.pop().expect("one");
            self.input(to, Input::Peer(env));
        } else {
            self.inputs(to, batch.into_iter().map(Input::Peer).collect());
        }
    }

    /// Is a message on the simulated network still deliverable?
    fn net_valid(&self, epoch: u64, env: &Envelope) -> bool {
        let k = key(env.from.name, env.to.name);
        self.links
            .get(&k)
            .is_some_and(|l| l.up && l.epoch == epoch && self.alive(env.to.name))
    }

    fn down_count(&self) -> usize {
        (0..self.opts.brokers as u32)
            .filter(|n| !self.alive(*n) || self.isolated.contains(n) || self.paused(*n))
            .count()
    }

    /// May one more broker go down without losing the primary component?
    fn may_fault(&self) -> bool {
        let n = self.opts.brokers;
        if self.down_count() + 1 > (n - 1) / 2 {
            return false;
        }
        // Every view that is installed or may be about to be (an accepted
        // value, a running round) must keep a majority after one more loss;
        // live brokers outside a view may be joining it, so they count too.
        let mut views: Vec<Vec<NodeId>> = Vec::new();
        for node in &self.nodes {
            if let Some(b) = &node.broker {
                if let Some(v) = b.view() {
                    views.push(v.members.clone());
                }
                views.extend(b.pending_views());
            }
        }
        if views.is_empty() {
            return false;
        }
        views.iter().all(|members| {
            let up = members
                .iter()
                .filter(|m| {
                    self.alive(m.name)
                        && !self.isolated.contains(&m.name)
                        && !self.paused(m.name)
                        && self.nodes[m.name as usize].id == **m
                })
                .count();
            let joining = (0..n as u32)
                .filter(|i| self.alive(*i) && !members.contains(&self.nodes[*i as usize].id))
                .count();
            up.saturating_sub(1) * 2 > members.len() + joining
        })
    }

    fn fault(&mut self) {
        let n = self.opts.brokers as u32;
        if self.opts.extra.any() && self.xrng.next_u64() % 3 == 0 {
            self.extra_fault();
            return;
        }
        let kind = self.rand(10);
        if kind < 5 {
            let a = self.rand(u64::from(n)) as u32;
            let b = (a + 1 + self.rand(u64::from(n) - 1) as u32) % n;
            let d = 5 + self.rand(250);
            self.stats.cuts += 1;
            self.stats.faults += 1;
            self.cut(a, b, Some(d));
            return;
        }
        if !self.may_fault() {
            return;
        }
        if kind < 8 {
            let victims: Vec<u32> = (0..n)
                .filter(|i| self.alive(*i) && !self.isolated.contains(i) && !self.paused(*i))
                .collect();
            let v = victims[self.rand(victims.len() as u64) as usize];
            self.stats.crashes += 1;
            self.stats.faults += 1;
            self.cut_all(v, None);
            if self.trace {
                eprintln!("{:>6} CRASH b{v}", self.now);
            }
            self.crash(v, true);
            let at = self.now + 200 + self.rand(1200);
            self.push(at, Event::Restart(v));
        } else if self.isolated.is_empty() {
            let f = ((n - 1) / 2) as usize - self.down_count();
            let size = 1 + self.rand(f as u64) as usize;
            let mut cands: Vec<u32> = (0..n).filter(|i| self.alive(*i)).collect();
            let mut side = BTreeSet::new();
            while side.len() < size && !cands.is_empty() {
                let i = self.rand(cands.len() as u64) as usize;
                side.insert(cands.remove(i));
            }
            self.stats.partitions += 1;
            self.stats.faults += 1;
            if self.trace {
                eprintln!("{:>6} PARTITION {side:?}", self.now);
            }
            self.isolated = side.clone();
            self.sides = side.iter().map(|n| (*n, 1)).collect();
            for a in &side {
                for b in 0..n {
                    if !side.contains(&b) {
                        self.cut(*a, b, None);
                    }
                }
            }
            let at = self.now + 300 + self.rand(1500);
            self.push(at, Event::Heal);
        }
    }

    fn xrand(&mut self, n: u64) -> u64 {
        self.xrng.next_u64() % n.max(1)
    }

    /// Brokers that may be hit by a fault of their own right now.
    fn victims(&self) -> Vec<u32> {
        (0..self.opts.brokers as u32)
            .filter(|i| self.alive(*i) && !self.isolated.contains(i) && !self.paused(*i))
            .collect()
    }

    /// One of the enabled [`ExtraFaults`] (clocks need no event).
    fn extra_fault(&mut self) {
        let x = &self.opts.extra;
        let kinds: Vec<u8> = [
            (x.pauses, 0),
            (x.one_way, 1),
            (x.three_way, 2),
            (x.duplicates, 3),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, k)| *k)
        .collect();
        if kinds.is_empty() {
            return;
        }
        match kinds[self.xrand(kinds.len() as u64) as usize] {
            0 => self.pause(),
            1 => self.one_way_loss(),
            2 => self.three_way_split(),
            _ => self.duplicate(),
        }
    }

    /// Freezes a broker for 0.1–3 s.
    fn pause(&mut self) {
        if !self.may_fault() {
            return;
        }
        let cands = self.victims();
        if cands.is_empty() {
            return;
        }
        let v = cands[self.xrand(cands.len() as u64) as usize];
        let len = 100 + self.xrand(2_900);
        let until = self.now + len;
        self.paused_until[v as usize] = until;
        self.stats.pauses += 1;
        self.stats.faults += 1;
        if self.trace {
            eprintln!("{:>6} PAUSE b{v} for {len}", self.now);
        }
        if len > 1_000 {
            let at = self.now + 1_000;
            self.push(at, Event::PauseCut { name: v, until });
        }
    }

    /// One direction of a link loses everything for 50–1500 ms.
    fn one_way_loss(&mut self) {
        if !self.may_fault() {
            return;
        }
        let n = self.opts.brokers as u32;
        let a = self.xrand(u64::from(n)) as u32;
        let b = (a + 1 + self.xrand(u64::from(n) - 1) as u32) % n;
        if self.one_way.contains_key(&(a, b)) {
            return;
        }
        let len = 50 + self.xrand(1_450);
        self.one_way.insert((a, b), self.now + len);
        self.stats.one_way += 1;
        self.stats.faults += 1;
        if self.trace {
            eprintln!("{:>6} ONE-WAY b{a}->b{b} lost for {len}", self.now);
        }
        let at = self.now + len;
        self.push(at, Event::OneWayEnd { from: a, to: b });
    }

    /// Splits a fully connected mesh into three sides.
    fn three_way_split(&mut self) {
        let n = self.opts.brokers as u32;
        if !self.isolated.is_empty() || (0..n).any(|i| !self.alive(i) || self.paused(i)) {
            return;
        }
        let mut order: Vec<u32> = (0..n).collect();
        for i in (1..order.len()).rev() {
            let j = self.xrand(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        let c1 = 1 + self.xrand(u64::from(n) - 2) as usize;
        let c2 = c1 + 1 + self.xrand((n as usize - c1 - 1) as u64) as usize;
        self.sides.clear();
        for (i, b) in order.iter().enumerate() {
            if i >= c2 {
                self.sides.insert(*b, 2);
            } else if i >= c1 {
                self.sides.insert(*b, 1);
            }
        }
        self.isolated = order[c1..].iter().copied().collect();
        self.stats.three_way += 1;
        self.stats.partitions += 1;
        self.stats.faults += 1;
        if self.trace {
            eprintln!(
                "{:>6} THREE-WAY {:?} {:?} {:?}",
                self.now,
                &order[..c1],
                &order[c1..c2],
                &order[c2..]
            );
        }
        for a in 0..n {
            for b in a + 1..n {
                if self.sides.get(&a) != self.sides.get(&b) {
                    self.cut(a, b, None);
                }
            }
        }
        let at = self.now + 300 + self.xrand(1_500);
        self.push(at, Event::Heal);
    }

    /// A second process with a running broker's id: the first is cut off
    /// and keeps running alone for a while; the second starts with an
    /// empty data directory.
    fn duplicate(&mut self) {
        if !self.may_fault() {
            return;
        }
        let cands = self.victims();
        if cands.is_empty() {
            return;
        }
        let v = cands[self.xrand(cands.len() as u64) as usize];
        self.cut_all(v, None);
        let node = &mut self.nodes[v as usize];
        let Some(broker) = node.broker.take() else {
            return;
        };
        let id = node.id;
        node.memory = None;
        let fault_end = 300 + self.opts.fault_ms;
        let until = (self.now + 500 + self.xrand(2_500)).min(fault_end);
        self.zombies.push(Zombie { id, broker, until });
        self.stats.duplicates += 1;
        self.stats.faults += 1;
        if self.trace {
            eprintln!(
                "{:>6} DUPLICATE of {id} (runs alone until {until})",
                self.now
            );
        }
        let at = self.now + 20 + self.xrand(300);
        self.push(at, Event::Restart(v));
    }

    /// Crashes broker `v`; its data directory keeps its last view and
    /// accepted base, except (`may_lose`) on one crash in four.
    fn crash(&mut self, v: u32, may_lose: bool) {
        let lost = may_lose && self.rand(4) == 0;
        let node = &mut self.nodes[v as usize];
        node.memory = node.broker.as_ref().and_then(|b| {
            let view = b.view()?;
            (!lost).then(|| crate::wire::Returning {
                view: Some(view.id),
                members: view.members.clone(),
                accepted: b.accepted_base(),
            })
        });
        node.broker = None;
    }

    /// The majority-loss fault: with every broker up, connected and idle
    /// (no view change under way), crash all but a minority of the brokers
    /// at once, or all of them; they restart with their membership.
    fn majority_crash(&mut self) -> bool {
        let n = self.opts.brokers as u32;
        let idle = (0..n).all(|i| {
            self.alive(i)
                && !self.paused(i)
                && self.nodes[i as usize]
                    .broker
                    .as_ref()
                    .is_some_and(|b| b.pending_views().is_empty() && b.view().is_some())
        });
        if !idle || !self.isolated.is_empty() {
            return false;
        }
        // A third of the time every broker (a whole-mesh restart).
        let victims = if self.rand(3) == 0 { n } else { n / 2 + 1 };
        let mut cands: Vec<u32> = (0..n).collect();
        let mut down = Vec::new();
        while (down.len() as u32) < victims {
            let i = self.rand(cands.len() as u64) as usize;
            down.push(cands.remove(i));
        }
        self.stats.crashes += down.len() as u64;
        self.stats.majority_losses += 1;
        self.stats.faults += 1;
        if self.trace {
            eprintln!("{:>6} MAJORITY CRASH {down:?}", self.now);
        }
        for v in down {
            self.cut_all(v, None);
            // Kept: with a majority gone, a lost data directory is gone for
            // good (only an operator's `--force-new-mesh` helps then).
            self.crash(v, false);
            let at = self.now + 200 + self.rand(1200);
            self.push(at, Event::Restart(v));
        }
        true
    }

    fn restart(&mut self, name: u32) {
        let seeds = if self.opts.single_seed && name > 0 {
            vec![name - 1]
        } else {
            (0..self.opts.brokers as u32).collect()
        };
        let node = &mut self.nodes[name as usize];
        node.restarts += 1;
        let id = NodeId::new(name, (node.restarts + 1) * 1_000_000);
        node.id = id;
        node.started_as = id;
        let returning = node.memory.take();
        let cfg = ProtocolConfig {
            bootstrap: false,
            returning,
            seeds,
            defects: self.opts.defects.clone(),
            chunk_size: 64,
            member_queue: self.opts.member_queue,
            slow_timeout: 300,
            ..ProtocolConfig::default()
        };
        let seed = self.rng.next_u64();
        node.broker = Some(Broker::new(id, cfg, seed));
        // Sessions of a crashed broker are gone; their clients come back.
        for s in 1..=SESSIONS {
            let groups = self.wanted.get(&(name, s)).cloned().unwrap_or_default();
            for g in groups {
                let state = self.keeps_state(name, s, &g);
                self.input(
                    name,
                    Input::Client(ClientCmd::Join {
                        session: s,
                        group: g,
                        state,
                    }),
                );
            }
        }
        for p in 0..self.opts.brokers as u32 {
            if p != name {
                let at = self.now + 1 + self.rand(20);
                let epoch = self.links.get(&key(name, p)).map(|l| l.epoch).unwrap_or(0);
                self.push(
                    at,
                    Event::LinkUp {
                        a: name,
                        b: p,
                        epoch,
                    },
                );
            }
        }
        self.input(name, Input::Timeout);
    }

    fn heal(&mut self) {
        let side = std::mem::take(&mut self.isolated);
        self.sides.clear();
        let n = self.opts.brokers as u32;
        for a in side {
            for b in 0..n {
                self.link_up(a, b);
            }
        }
    }

    fn workload(&mut self) {
        let n = self.opts.brokers as u32;
        let name = self.rand(u64::from(n)) as u32;
        if !self.alive(name) || self.paused(name) {
            return;
        }
        let session = 1 + self.rand(SESSIONS);
        let group = format!("g{}", self.rand(self.opts.groups as u64));
        let id = self.nodes[name as usize].id;
        let r = self.rand(100);
        let member = self
            .wanted
            .entry((name, session))
            .or_default()
            .contains(&group);
        if r < 12 && !member {
            self.wanted
                .entry((name, session))
                .or_default()
                .insert(group.clone());
            // Mostly stateful members, some that keep no state (like
            // subscriptions); the choice sticks to this session and group.
            let draw = self.rand(4) != 0;
            let state = *self
                .keeps_state
                .entry((name, session, group.clone()))
                .or_insert(draw);
            self.checker.on_keeps_state(name, session, &group, state);
            self.input(
                name,
                Input::Client(ClientCmd::Join {
                    session,
                    group,
                    state,
                }),
            );
        } else if r < 16 && member {
            if let Some(w) = self.wanted.get_mut(&(name, session)) {
                w.remove(&group);
            }
            self.input(name, Input::Client(ClientCmd::Leave { session, group }));
        } else {
            let ordering = match self.rand(4) {
                0 => Ordering::Reliable,
                1 => Ordering::Fifo,
                2 => Ordering::Causal,
                _ => Ordering::Total,
            };
            let safe = self.rand(5) == 0;
            self.tag += 1;
            let tag = self.tag;
            let p = self.pseq.entry((name, session)).or_insert(0);
            *p += 1;
            let pseq = *p;
            let mut deps: Vec<u64> = Vec::new();
            if ordering >= Ordering::Causal {
                deps = self
                    .logs
                    .get(&(name, session, group.clone()))
                    .cloned()
                    .unwrap_or_default();
                deps.extend(
                    self.checker
                        .published
                        .iter()
                        .filter(|(_, q)| q.publisher == (name, session) && q.group == group)
                        .map(|(t, _)| *t),
                );
            }
            self.checker.on_publish(
                tag,
                Published {
                    group: group.clone(),
                    publisher: (name, session),
                    origin: id,
                    pseq,
                    ordering,
                    safe,
                    deps,
                    at: self.now,
                },
            );
            self.stats.published += 1;
            if self.trace {
                eprintln!(
                    "{:>6} b{name} s{session} publishes tag {tag} to {group} ({ordering:?}, safe {safe})",
                    self.now
                );
            }
            let payload = tag.to_le_bytes().to_vec();
            self.input(
                name,
                Input::Client(ClientCmd::Publish {
                    session,
                    group,
                    ordering,
                    safe,
                    payload: payload.into(),
                }),
            );
        }
    }

    fn converged(&self) -> bool {
        let mut id = None;
        for n in &self.nodes {
            let Some(b) = &n.broker else { continue };
            let Some(v) = b.view() else { return false };
            if b.is_blocked()
                || v.members.len() != self.nodes.iter().filter(|n| n.broker.is_some()).count()
            {
                return false;
            }
            if *id.get_or_insert(v.id) != v.id {
                return false;
            }
        }
        true
    }

    fn run(mut self) -> (Checker, SimStats) {
        let fault_end = 300 + self.opts.fault_ms;
        let end = fault_end + self.opts.settle_ms;
        let mut next_op = 300u64;
        let mut next_fault = 600 + self.rand(self.opts.fault_interval);
        let mut recovered_at = None;
        let mut majority_done = false;
        if let Some((_, _, _, until)) = self.opts.slow_session {
            self.push(until, Event::CatchUp);
        }
        for i in 0..self.opts.brokers as u32 {
            self.input(i, Input::Timeout);
        }
        if self.opts.auto_bootstrap {
            // As the runtime does once its links are up: every broker
            // learns which others it can reach (what `auto_bootstrap` needs
            // to let only the smallest one start the mesh).
            let n = self.opts.brokers as u32;
            for a in 0..n {
                for b in 0..n {
                    if a != b {
                        let peer = self.nodes[b as usize].id;
                        self.input(a, Input::LinkUp(peer));
                    }
                }
            }
        }
        loop {
            let mut t = end;
            if let Some(((at, _), _)) = self.queue.iter().next() {
                t = t.min(*at);
            }
            if next_op < fault_end {
                t = t.min(next_op);
            }
            if self.opts.faults && next_fault < fault_end {
                t = t.min(next_fault);
            }
            for (i, n) in self.nodes.iter().enumerate() {
                if let Some(b) = &n.broker {
                    if let Some(to) = b.poll_timeout() {
                        let at = self.global_of(i, to.0).max(self.paused_until[i]);
                        t = t.min(at.max(self.now));
                    }
                }
            }
            for z in &self.zombies {
                t = t.min(z.until.max(self.now));
                if let Some(to) = z.broker.poll_timeout() {
                    let at = self.global_of(z.id.name as usize, to.0);
                    t = t.min(at.max(self.now));
                }
            }
            if t >= end {
                break;
            }
            self.now = t;
            if self.now >= fault_end
                && recovered_at.is_none()
                && self.isolated.is_empty()
                && self.converged()
            {
                recovered_at = Some(self.now);
            }
            if let Some(((at, _), _)) = self.queue.iter().next() {
                if *at <= t {
                    let (_, ev) = self.queue.pop_first().expect("event");
                    match ev {
                        Event::Net { epoch, env } => self.deliver_net(epoch, env),
                        Event::LinkUp { a, b, epoch } => {
                            if self.links.get(&key(a, b)).is_some_and(|l| l.epoch == epoch) {
                                self.link_up(a, b);
                            }
                        }
                        Event::Restart(n) => self.restart(n),
                        Event::Heal => self.heal(),
                        Event::Client { name, cmd } => self.input(name, Input::Client(cmd)),
                        Event::CatchUp => self.catch_up_slow(),
                        Event::Input { name, input } => self.input(name, input),
                        Event::PauseCut { name, until } => {
                            let d = until.saturating_sub(self.now) + 1 + self.xrand(20);
                            self.cut_all(name, Some(d));
                        }
                        Event::OneWayEnd { from, to } => {
                            self.one_way.remove(&(from, to));
                            let d = 5 + self.xrand(100);
                            self.cut(from, to, Some(d));
                        }
                    }
                    continue;
                }
            }
            if next_op <= t && next_op < fault_end {
                self.workload();
                next_op = t + 1 + self.rand(2 * self.opts.op_interval);
                continue;
            }
            if self.opts.faults && next_fault <= t && next_fault < fault_end {
                if self.opts.majority_loss && !majority_done && t > 1_000 {
                    majority_done = self.majority_crash();
                    if majority_done {
                        next_fault = t + 1 + self.rand(2 * self.opts.fault_interval);
                        continue;
                    }
                }
                self.fault();
                next_fault = t + 1 + self.rand(2 * self.opts.fault_interval);
                continue;
            }
            for i in 0..self.nodes.len() {
                if self.paused(i as u32) {
                    continue;
                }
                let local = self.local(i, t);
                let due = self.nodes[i]
                    .broker
                    .as_ref()
                    .and_then(|b| b.poll_timeout())
                    .is_some_and(|to| to.0 <= local);
                if due {
                    self.input(i as u32, Input::Timeout);
                }
            }
            self.zombies.retain(|z| z.until > t);
            for k in 0..self.zombies.len() {
                let local = self.local(self.zombies[k].id.name as usize, t);
                let due = self.zombies[k]
                    .broker
                    .poll_timeout()
                    .is_some_and(|to| to.0 <= local);
                if due {
                    self.zombie_input(k, Input::Timeout);
                }
            }
        }
        let alive: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.broker.is_some())
            .map(|n| n.id)
            .collect();
        self.checker.finish(&alive);
        let views: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| {
                n.broker
                    .as_ref()
                    .map(|b| (n.id, b.view().cloned(), b.is_blocked()))
            })
            .collect();
        let mut wanted = Vec::new();
        for ((name, s), groups) in &self.wanted {
            let Some(_) = self.nodes[*name as usize].broker else {
                continue;
            };
            let id = self.nodes[*name as usize].id;
            for g in groups {
                wanted.push((
                    g.clone(),
                    MemberId {
                        broker: id,
                        session: *s,
                    },
                ));
            }
        }
        self.checker.check_liveness(&alive, &views, &wanted, end);
        for (base, start) in &self.propose_start {
            if let Some(next) = self.next_of(*base) {
                if let Some((_, last)) = self.install_times.get(&next) {
                    self.stats.max_view_change_ms = self
                        .stats
                        .max_view_change_ms
                        .max(last.saturating_sub(*start));
                }
            }
        }
        self.stats.recovery_ms = recovered_at.map_or(u64::MAX, |r| r - fault_end);
        (self.checker, self.stats)
    }

    fn next_of(&self, base: crate::id::ViewId) -> Option<crate::id::ViewId> {
        let _ = &self.view_prev_seen;
        self.install_times.keys().copied().find(|v| *v > base)
    }
}

/// Runs one seed with options derived from it.
pub fn run_seed(seed: u64) -> SimResult {
    run_with(seed, SimOptions::from_seed(seed))
}

/// Runs one seed with explicit options.
pub fn run_with(seed: u64, options: SimOptions) -> SimResult {
    let sim = Sim::new(seed, options.clone());
    let (checker, stats) = sim.run();
    SimResult {
        seed,
        options,
        violations: checker.violations,
        stats,
    }
}

#[cfg(test)]
mod tests;
