//! DESIGN.md §2 checked on **delivery histories**: for each member (a group
//! member or a subscriber), the ordered views and messages it saw.
//!
//! This is what the simulator's checker (`sim::checker`, with the `sim`
//! feature or in this crate's tests) runs on every simulated member at the
//! end of each run, and what the real-process tests (`broker/tests/`) run
//! on the logs their clients recorded. It needs nothing but the logs and, optionally,
//! the list of what was published:
//!
//! ```
//! use meshcast_protocol::Ordering;
//! use meshcast_protocol::history::{History, Log, Published, Text};
//!
//! let mut h = History::<Text>::new();
//! for name in ["alice", "bob"] {
//!     let mut log = Log::new(name);
//!     log.view("chat", "v1", &["alice", "bob"], name);
//!     log.message("chat", "hello", 7, 1, Ordering::Total, false);
//!     h.add(log.complete());
//! }
//! h.publish(Published::new("chat", "hello", Ordering::Total).from(7, 1));
//! h.assert_ok();
//! ```
//!
//! What is checked, per group (DESIGN §2; "segment" = one membership of
//! one log in one group, split where the member's id changes or a
//! [`Event::Join`] starts a new membership):
//!
//! - **View agreement** (§2.1): a view id names the same member list
//!   everywhere; a view has one successor everywhere; a member installs
//!   every view that lists it while it is a member (a complete segment may
//!   not end before a view that lists it, nor skip one).
//! - **Virtual synchrony** (§2.2): segments that pass from view V to V'
//!   delivered the same set of messages in V; a message is delivered in a
//!   view the segment installed, never before its first view.
//! - **Ordering** (§2.3): fifo per publisher (`pseq` increasing among
//!   messages declared fifo or stronger); causal over the dependencies the
//!   publisher declared ([`Published::deps`]); total: one order of the
//!   `total` messages that every segment follows (the union of the
//!   segments' orders has no cycle), ignoring what a segment that did not
//!   survive its last view delivered in it (DESIGN §2.7).
//! - **Safe** (§2.4): a safe message delivered by anyone in view V is
//!   delivered in V by every segment that moves on to the next view or
//!   stays in V to the end.
//! - **Integrity** (§2.5): no duplicate in a segment (nor a message already
//!   in its checkpoint); every copy of a message carries the same metadata;
//!   nothing that was not published (when [`History::publish`] was used); a
//!   message that must arrive ([`Published::must_arrive`]) reaches every
//!   complete segment that installed a view it was delivered in (or, for a
//!   segment without views, every complete one), and at least one.
//! - **State transfer** (§2.6): at most one checkpoint per membership, before
//!   any message; exactly one for a complete membership that asked for it;
//!   when its keys are known, it equals the state (checkpoint plus
//!   deliveries) at the join point of some existing member that keeps
//!   state (joined with state), or, if there is none, of some existing
//!   member or is empty (a member without state, such as a subscription,
//!   answers with an empty checkpoint).
//!
//! What a client log cannot show is left to the simulator's own checker:
//! what brokers hold (the first half of safe delivery), delivery outside
//! the primary component, liveness.

use std::collections::{HashMap, HashSet};
use std::fmt::{Debug, Display};
use std::hash::Hash;

use crate::id::Ordering;

/// Which guarantee a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Clause {
    /// §2.1: same view id, same members; views form one chain.
    ViewAgreement,
    /// §2.2: same set of messages between consecutive views.
    VirtualSynchrony,
    /// §2.3 fifo.
    Fifo,
    /// §2.3 causal.
    Causal,
    /// §2.3 total.
    Total,
    /// §2.4 safe delivery.
    Safe,
    /// §2.5 integrity (no duplicates, nothing invented, nothing lost).
    Integrity,
    /// §2.6 state transfer.
    StateTransfer,
    /// §2.7 primary component (no fork of the view chain).
    Primary,
    /// Liveness after faults stop.
    Liveness,
}

/// One broken guarantee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Clause.
    pub clause: Clause,
    /// Details: which member, which view, which message, what differs.
    pub detail: String,
}

/// The identifier types of one kind of history.
pub trait Ids: Clone + Debug {
    /// A group view's id.
    type View: Clone + Eq + Hash + Debug + Display;
    /// A member's id, as view member lists name it.
    type Member: Clone + Eq + Hash + Debug + Display;
    /// Identifies one published message (e.g. a unique payload).
    type Key: Clone + Eq + Hash + Debug;
    /// Identifies a publisher (fifo is per publisher).
    type Publisher: Clone + Eq + Hash + Debug;

    /// Whether a publisher id names one stream of one broker incarnation
    /// (as the publisher ids of real deliveries do: a rejoined or restarted
    /// broker's sessions publish under new ids, numbered from 1 again).
    /// Then the fifo-hole and causal-presence clauses count a message as
    /// delivered in a view when anyone delivered it there. Otherwise (a
    /// publisher id that spans incarnations, like the simulator's
    /// `(broker name, session)`) they count only deliveries by members that
    /// survived that view (moved on from it or stayed in it to the end): a
    /// message delivered only on a broker that was then cut off or crashed
    /// may be followed, under the same id, by messages of its next
    /// incarnation.
    const STREAM_PER_INCARNATION: bool = false;
}

/// Identifiers as a client sees them: view ids, member ids and message keys
/// are strings, publishers are the numeric publisher ids of deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Text;

impl Ids for Text {
    type View = String;
    type Member = String;
    type Key = String;
    type Publisher = u64;
    const STREAM_PER_INCARNATION: bool = true;
}

/// A view as one member installed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View<I: Ids> {
    /// Group.
    pub group: String,
    /// View id.
    pub id: I::View,
    /// Members, oldest first.
    pub members: Vec<I::Member>,
    /// The member that installed it (must be in `members`).
    pub me: I::Member,
}

/// A message as one member delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<I: Ids> {
    /// Group.
    pub group: String,
    /// Which message.
    pub key: I::Key,
    /// Who published it.
    pub publisher: I::Publisher,
    /// The publisher's sequence number for it.
    pub pseq: u64,
    /// Declared ordering.
    pub ordering: Ordering,
    /// Safe flag.
    pub safe: bool,
    /// The view it was delivered in, when the recorder knows it (the
    /// simulator does); otherwise the last view before it in the log.
    pub view: Option<I::View>,
}

/// One entry of a member's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<I: Ids> {
    /// The member asked to join `group`: a new membership starts with the
    /// next view of the group (optional; a log's first view of a group, or
    /// a change of the member's id, also starts one).
    Join {
        /// Group.
        group: String,
        /// A checkpoint was asked for: views before the checkpoint's join
        /// point are covered by it, and a complete membership must get it.
        with_state: bool,
    },
    /// A view was installed.
    View(View<I>),
    /// A message was delivered.
    Message(Message<I>),
    /// The checkpoint of a member that joined with state.
    State {
        /// Group.
        group: String,
        /// The messages it covers, when the application state is a list of
        /// message keys (then it is compared with the existing members').
        keys: Option<Vec<I::Key>>,
        /// The view whose installation is the join point (`None`: the
        /// membership's first view).
        at: Option<I::View>,
    },
}

/// Everything one member (a client session's membership, or a
/// subscription) saw, in order.
#[derive(Debug, Clone)]
pub struct Log<I: Ids> {
    /// For messages: which client, which broker.
    pub name: String,
    /// Events in the order the member saw them.
    pub events: Vec<Event<I>>,
    /// The member stayed until the end and its log was read up to a point
    /// every complete log reaches (e.g. a final message or view): then it
    /// must hold every view and message that reached it (otherwise its
    /// tail may be missing).
    pub complete: bool,
}

impl<I: Ids> Log<I> {
    /// An empty, incomplete log.
    pub fn new(name: impl Into<String>) -> Self {
        Log {
            name: name.into(),
            events: Vec::new(),
            complete: false,
        }
    }

    /// Marks the log complete.
    pub fn complete(mut self) -> Self {
        self.complete = true;
        self
    }

    /// Appends an event.
    pub fn push(&mut self, e: Event<I>) {
        self.events.push(e);
    }

    /// Appends a join request.
    pub fn join(&mut self, group: &str, with_state: bool) {
        self.push(Event::Join {
            group: group.to_string(),
            with_state,
        });
    }
}

impl Log<Text> {
    /// Appends a view.
    pub fn view(&mut self, group: &str, id: &str, members: &[&str], me: &str) {
        self.push(Event::View(View {
            group: group.to_string(),
            id: id.to_string(),
            members: members.iter().map(|m| m.to_string()).collect(),
            me: me.to_string(),
        }));
    }

    /// Appends a delivery.
    pub fn message(
        &mut self,
        group: &str,
        key: &str,
        publisher: u64,
        pseq: u64,
        ordering: Ordering,
        safe: bool,
    ) {
        self.push(Event::Message(Message {
            group: group.to_string(),
            key: key.to_string(),
            publisher,
            pseq,
            ordering,
            safe,
            view: None,
        }));
    }

    /// Appends a checkpoint holding `keys`.
    pub fn state(&mut self, group: &str, keys: &[&str]) {
        self.push(Event::State {
            group: group.to_string(),
            keys: Some(keys.iter().map(|k| k.to_string()).collect()),
            at: None,
        });
    }
}

/// One message the workload published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published<I: Ids> {
    /// Group.
    pub group: String,
    /// Which message.
    pub key: I::Key,
    /// Publisher, if known (then deliveries must name it).
    pub publisher: Option<I::Publisher>,
    /// Publisher sequence number, if known.
    pub pseq: Option<u64>,
    /// Declared ordering.
    pub ordering: Ordering,
    /// Safe flag.
    pub safe: bool,
    /// Messages the publisher had delivered (or published) before this one:
    /// with causal or total ordering on both, they come first everywhere.
    pub deps: Vec<I::Key>,
    /// The publisher stayed connected and its broker alive: every complete
    /// member must get it.
    pub must_arrive: bool,
}

impl<I: Ids> Published<I> {
    /// A message that must arrive, publisher unknown, no dependencies.
    pub fn new(group: &str, key: impl Into<I::Key>, ordering: Ordering) -> Self {
        Published {
            group: group.to_string(),
            key: key.into(),
            publisher: None,
            pseq: None,
            ordering,
            safe: false,
            deps: Vec::new(),
            must_arrive: true,
        }
    }

    /// Sets the publisher and its sequence number.
    pub fn from(mut self, publisher: I::Publisher, pseq: u64) -> Self {
        self.publisher = Some(publisher);
        self.pseq = Some(pseq);
        self
    }

    /// Sets the safe flag.
    pub fn safe(mut self, safe: bool) -> Self {
        self.safe = safe;
        self
    }

    /// Marks it as allowed to be lost (its publisher or broker died).
    pub fn may_be_lost(mut self) -> Self {
        self.must_arrive = false;
        self
    }

    /// Sets the causal dependencies.
    pub fn after(mut self, deps: Vec<I::Key>) -> Self {
        self.deps = deps;
        self
    }
}

/// Logs plus what was published; [`History::check`] verifies DESIGN §2.
#[derive(Debug, Clone)]
pub struct History<I: Ids> {
    /// The members' logs.
    pub logs: Vec<Log<I>>,
    published: Option<HashMap<I::Key, Published<I>>>,
    /// Flag a message whose known view ([`Message::view`]) is not the last
    /// view before it in the log (default on): the member would see it
    /// after a view it was not delivered in.
    pub check_positions: bool,
    /// At most this many violations are reported (default 40).
    pub max_violations: usize,
}

impl<I: Ids> Default for History<I> {
    fn default() -> Self {
        History {
            logs: Vec::new(),
            published: None,
            check_positions: true,
            max_violations: 40,
        }
    }
}

/// One membership of one log in one group.
struct Seg<'a, I: Ids> {
    log: usize,
    group: &'a str,
    me: Option<&'a I::Member>,
    /// Started by an explicit join: `Some(with_state)`.
    joined: Option<bool>,
    views: Vec<&'a View<I>>,
    msgs: Vec<Delivered<'a, I>>,
    states: Vec<StateAt<'a, I>>,
    complete: bool,
}

struct Delivered<'a, I: Ids> {
    m: &'a Message<I>,
    /// Index in `views` of the view it was delivered in.
    view: Option<usize>,
}

struct StateAt<'a, I: Ids> {
    keys: Option<&'a Vec<I::Key>>,
    /// Index in `views` of the join point.
    at: Option<usize>,
    /// Messages delivered before it.
    after: usize,
}

impl<I: Ids> Seg<'_, I> {
    /// Views before this index are covered by the checkpoint.
    fn covered(&self) -> usize {
        match self.states.first() {
            Some(s) => s.at.unwrap_or(0),
            None if self.joined == Some(true) => self.views.len(),
            None => 0,
        }
    }

    fn index_of(&self, v: &I::View) -> Option<usize> {
        self.views.iter().rposition(|x| x.id == *v)
    }
}

/// Per message of a group: the views it was delivered in, with the index
/// of a membership that delivered it there, and its first delivered copy.
struct Seen<'a, I: Ids> {
    views: HashMap<&'a I::Key, Vec<(&'a I::View, usize)>>,
    msgs: HashMap<&'a I::Key, &'a Message<I>>,
}

struct Out {
    list: Vec<Violation>,
    max: usize,
    dropped: usize,
}

impl Out {
    fn fail(&mut self, clause: Clause, detail: String) {
        if self.list.len() < self.max {
            self.list.push(Violation { clause, detail });
        } else {
            self.dropped += 1;
        }
    }
}

impl<I: Ids> History<I> {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a member's log.
    pub fn add(&mut self, log: Log<I>) {
        self.logs.push(log);
    }

    /// Records a published message (once any is recorded, a delivered
    /// message that was not is a violation).
    pub fn publish(&mut self, p: Published<I>) {
        self.published
            .get_or_insert_with(HashMap::new)
            .insert(p.key.clone(), p);
    }

    /// Checks every guarantee; empty if the history is correct.
    pub fn check(&self) -> Vec<Violation> {
        let mut out = Out {
            list: Vec::new(),
            max: self.max_violations,
            dropped: 0,
        };
        let segs = self.segments(&mut out);
        self.integrity(&segs, &mut out);
        let mut groups: Vec<&str> = segs.iter().map(|s| s.group).collect();
        groups.sort_unstable();
        groups.dedup();
        for g in groups {
            let gs: Vec<&Seg<I>> = segs.iter().filter(|s| s.group == g).collect();
            let chain = self.views(g, &gs, &mut out);
            self.synchrony(g, &gs, &mut out);
            self.safe(g, &gs, &mut out);
            self.total(g, &gs, &mut out);
            self.causal(&gs, &mut out);
            let seen = self.seen_in_views(&gs);
            self.fifo_holes(g, &gs, &seen, &mut out);
            self.causal_present(g, &gs, &seen, &mut out);
            self.loss(g, &gs, &mut out);
            self.state(&gs, &chain, &mut out);
        }
        if out.dropped > 0 {
            let d = format!("... and {} more violations", out.dropped);
            out.list.push(Violation {
                clause: out.list[0].clause,
                detail: d,
            });
        }
        out.list
    }

    /// Panics with a readable report if any guarantee is broken.
    #[track_caller]
    pub fn assert_ok(&self) {
        let v = self.check();
        if !v.is_empty() {
            panic!("{}", self.report(&v));
        }
    }

    /// A report of `violations` with a summary of every log.
    pub fn report(&self, violations: &[Violation]) -> String {
        let mut s = format!(
            "the delivery logs break DESIGN §2 ({} violations):\n",
            violations.len()
        );
        for v in violations {
            s.push_str(&format!("  {:?}: {}\n", v.clause, v.detail));
        }
        s.push_str("logs:\n");
        for l in &self.logs {
            let views: Vec<String> = l
                .events
                .iter()
                .filter_map(|e| match e {
                    Event::View(v) => Some(format!("{}:{}({})", v.group, v.id, v.members.len())),
                    _ => None,
                })
                .collect();
            let msgs = l
                .events
                .iter()
                .filter(|e| matches!(e, Event::Message(_)))
                .count();
            s.push_str(&format!(
                "  `{}`{}: {msgs} messages, views [{}]\n",
                l.name,
                if l.complete { " (complete)" } else { "" },
                views.join(", ")
            ));
        }
        s
    }

    fn name(&self, s: &Seg<I>) -> String {
        let name = &self.logs[s.log].name;
        match s.me.map(|m| m.to_string()) {
            Some(me) if !name.contains(&me) => format!("`{name}` ({me})"),
            _ => format!("`{name}`"),
        }
    }

    /// Splits the logs into memberships; checks what one log shows alone.
    fn segments<'a>(&'a self, out: &mut Out) -> Vec<Seg<'a, I>> {
        let mut segs: Vec<Seg<'a, I>> = Vec::new();
        for (li, log) in self.logs.iter().enumerate() {
            let mut open: HashMap<&str, usize> = HashMap::new();
            let first = segs.len();
            for e in &log.events {
                let group = match e {
                    Event::Join { group, .. }
                    | Event::State { group, .. }
                    | Event::View(View { group, .. })
                    | Event::Message(Message { group, .. }) => group.as_str(),
                };
                let new = |joined| Seg {
                    log: li,
                    group,
                    me: None,
                    joined,
                    views: Vec::new(),
                    msgs: Vec::new(),
                    states: Vec::new(),
                    complete: false,
                };
                let cur = match (e, open.get(group)) {
                    (Event::Join { .. }, _) => None,
                    (Event::View(v), Some(&i)) if segs[i].me.is_some_and(|m| *m != v.me) => None,
                    (_, Some(&i)) => Some(i),
                    (_, None) => None,
                };
                let i = match cur {
                    Some(i) => i,
                    None => {
                        let joined = match e {
                            Event::Join { with_state, .. } => Some(*with_state),
                            _ => None,
                        };
                        segs.push(new(joined));
                        open.insert(group, segs.len() - 1);
                        segs.len() - 1
                    }
                };
                match e {
                    Event::Join { .. } => {}
                    Event::View(v) => {
                        if !v.members.contains(&v.me) {
                            out.fail(
                                Clause::ViewAgreement,
                                format!(
                                    "`{}` installed view {} of {group} that does not list it ({}): {}",
                                    log.name,
                                    v.id,
                                    v.me,
                                    list(&v.members)
                                ),
                            );
                        }
                        let s = &mut segs[i];
                        if s.views.iter().any(|x| x.id == v.id) {
                            let d = format!(
                                "{} installed view {} of {group} twice",
                                self.name(s),
                                v.id
                            );
                            out.fail(Clause::ViewAgreement, d);
                        }
                        s.me = Some(&v.me);
                        s.views.push(v);
                    }
                    Event::Message(m) => {
                        let s = &mut segs[i];
                        let pos = s.views.len().checked_sub(1);
                        let mut view = pos;
                        if let Some(v) = &m.view {
                            match s.index_of(v) {
                                Some(x) => {
                                    view = Some(x);
                                    if self.check_positions && Some(x) != pos {
                                        let d = format!(
                                            "{} delivered {:?} of view {v} only after installing {}",
                                            self.name(s),
                                            m.key,
                                            pos.map_or(String::new(), |p| s.views[p]
                                                .id
                                                .to_string())
                                        );
                                        out.fail(Clause::VirtualSynchrony, d);
                                    }
                                }
                                None => {
                                    let d = format!(
                                        "{} delivered {:?} in view {v} of {group}, which it never installed",
                                        self.name(s),
                                        m.key
                                    );
                                    out.fail(Clause::VirtualSynchrony, d);
                                }
                            }
                        }
                        s.msgs.push(Delivered { m, view });
                    }
                    Event::State { keys, at, .. } => {
                        let s = &mut segs[i];
                        let at_i = match at {
                            None => (!s.views.is_empty()).then_some(0),
                            Some(v) => {
                                let x = s.index_of(v);
                                if x.is_none() {
                                    let d = format!(
                                        "{} got a checkpoint of {group} at view {v}, which it never installed",
                                        self.name(s)
                                    );
                                    out.fail(Clause::StateTransfer, d);
                                }
                                x
                            }
                        };
                        s.states.push(StateAt {
                            keys: keys.as_ref(),
                            at: at_i,
                            after: s.msgs.len(),
                        });
                    }
                }
            }
            if log.complete {
                for i in open.values() {
                    segs[*i].complete = true;
                }
            }
            for s in &segs[first..] {
                self.alone(s, out);
            }
        }
        segs
    }

    /// Checks of one membership on its own.
    fn alone(&self, s: &Seg<I>, out: &mut Out) {
        let name = self.name(s);
        let g = s.group;
        if s.states.len() > 1 {
            out.fail(
                Clause::StateTransfer,
                format!("{name} got {} checkpoints of {g}", s.states.len()),
            );
        }
        if let Some(st) = s.states.first() {
            if st.after > 0 {
                out.fail(
                    Clause::StateTransfer,
                    format!(
                        "{name} got its checkpoint of {g} after delivering {} messages (first {:?})",
                        st.after, s.msgs[0].m.key
                    ),
                );
            }
        } else if s.joined == Some(true) && s.complete {
            out.fail(
                Clause::StateTransfer,
                format!("{name} asked for state in {g} but never got a checkpoint"),
            );
        }
        let covered = s.covered();
        let checkpoint: HashSet<&I::Key> = s
            .states
            .first()
            .and_then(|st| st.keys)
            .map(|k| k.iter().collect())
            .unwrap_or_default();
        let mut seen: HashSet<&I::Key> = HashSet::new();
        let mut fifo: HashMap<&I::Publisher, (u64, &I::Key)> = HashMap::new();
        let mut late: HashMap<&I::Publisher, (String, usize)> = HashMap::new();
        for d in &s.msgs {
            let k = &d.m.key;
            if !seen.insert(k) {
                out.fail(
                    Clause::Integrity,
                    format!(
                        "{name} delivered {k:?} twice in {g} (view {})",
                        d.view
                            .map_or("none".to_string(), |i| s.views[i].id.to_string())
                    ),
                );
            } else if checkpoint.contains(k) {
                out.fail(
                    Clause::Integrity,
                    format!("{name} delivered {k:?}, which its checkpoint of {g} already holds"),
                );
            }
            match d.view {
                None if !s.views.is_empty() => out.fail(
                    Clause::VirtualSynchrony,
                    format!("{name} delivered {k:?} before installing any view of {g}"),
                ),
                Some(v) if v < covered => out.fail(
                    Clause::StateTransfer,
                    format!(
                        "{name} delivered {k:?} in view {}, before its join point: its checkpoint covers that view",
                        s.views[v].id
                    ),
                ),
                _ => {}
            }
            if d.m.ordering >= Ordering::Fifo {
                let p = &d.m.publisher;
                match fifo.get(p) {
                    Some((last, lk)) if d.m.pseq < *last => {
                        let e = late.entry(p).or_insert((
                            format!(
                                "{name} delivered {k:?} (publisher {p:?} #{}) after {lk:?} (#{last})",
                                d.m.pseq
                            ),
                            0,
                        ));
                        e.1 += 1;
                    }
                    _ => {
                        fifo.insert(p, (d.m.pseq, k));
                    }
                }
            }
        }
        // One report per publisher: after one early message every later
        // one looks late.
        for (_, (detail, n)) in late {
            let more = if n > 1 {
                format!(" ({} more of its messages came late)", n - 1)
            } else {
                String::new()
            };
            out.fail(Clause::Fifo, format!("{detail}{more}"));
        }
    }

    /// Metadata agreement and nothing unpublished.
    fn integrity(&self, segs: &[Seg<I>], out: &mut Out) {
        let mut first: HashMap<&I::Key, (&Message<I>, usize)> = HashMap::new();
        for (si, s) in segs.iter().enumerate() {
            for d in &s.msgs {
                let m = d.m;
                let meta = |x: &Message<I>| {
                    (
                        x.group.clone(),
                        x.publisher.clone(),
                        x.pseq,
                        x.ordering,
                        x.safe,
                    )
                };
                match first.get(&m.key) {
                    Some((o, oi)) if meta(o) != meta(m) => {
                        let d = format!(
                            "{} and {} delivered {:?} with different metadata: {:?} vs {:?}",
                            self.name(&segs[*oi]),
                            self.name(s),
                            m.key,
                            meta(o),
                            meta(m)
                        );
                        out.fail(Clause::Integrity, d);
                        continue;
                    }
                    Some(_) => continue,
                    None => {
                        first.insert(&m.key, (m, si));
                    }
                }
                let Some(published) = &self.published else {
                    continue;
                };
                let Some(p) = published.get(&m.key) else {
                    out.fail(
                        Clause::Integrity,
                        format!(
                            "{} delivered {:?}, which nobody published",
                            self.name(s),
                            m.key
                        ),
                    );
                    continue;
                };
                let mut wrong = Vec::new();
                if p.group != m.group {
                    wrong.push(format!("group {} (published to {})", m.group, p.group));
                }
                if p.ordering != m.ordering {
                    wrong.push(format!(
                        "ordering {:?} (published {:?})",
                        m.ordering, p.ordering
                    ));
                }
                if p.safe != m.safe {
                    wrong.push(format!("safe {} (published {})", m.safe, p.safe));
                }
                if p.publisher.as_ref().is_some_and(|x| *x != m.publisher) {
                    wrong.push(format!(
                        "publisher {:?} (published by {:?})",
                        m.publisher, p.publisher
                    ));
                }
                if p.pseq.is_some_and(|x| x != m.pseq) {
                    wrong.push(format!("pseq {} (published as {:?})", m.pseq, p.pseq));
                }
                if !wrong.is_empty() {
                    out.fail(
                        Clause::Integrity,
                        format!(
                            "{} delivered {:?} with {}",
                            self.name(s),
                            m.key,
                            wrong.join(", ")
                        ),
                    );
                }
            }
        }
    }

    /// View agreement; returns each view's predecessor.
    fn views<'a>(
        &self,
        g: &str,
        segs: &[&'a Seg<'a, I>],
        out: &mut Out,
    ) -> HashMap<&'a I::View, &'a I::View> {
        let mut members: HashMap<&I::View, (&Vec<I::Member>, usize)> = HashMap::new();
        let mut next: HashMap<&I::View, (&I::View, usize)> = HashMap::new();
        let mut prev: HashMap<&I::View, &I::View> = HashMap::new();
        for (si, s) in segs.iter().enumerate() {
            for (i, v) in s.views.iter().enumerate() {
                match members.get(&v.id) {
                    Some((m, oi)) if **m != v.members => {
                        let d = format!(
                            "view {} of {g} lists {} at {} but {} at {}",
                            v.id,
                            list(m),
                            self.name(segs[*oi]),
                            list(&v.members),
                            self.name(s)
                        );
                        out.fail(Clause::ViewAgreement, d);
                    }
                    Some(_) => {}
                    None => {
                        members.insert(&v.id, (&v.members, si));
                    }
                }
                let Some(w) = s.views.get(i + 1) else {
                    continue;
                };
                match next.get(&v.id) {
                    Some((x, oi)) if **x != w.id => {
                        let d = format!(
                            "in {g}, view {} is followed by {} at {} but by {} at {}",
                            v.id,
                            x,
                            self.name(segs[*oi]),
                            w.id,
                            self.name(s)
                        );
                        out.fail(Clause::ViewAgreement, d);
                    }
                    Some(_) => {}
                    None => {
                        next.insert(&v.id, (&w.id, si));
                        prev.insert(&w.id, &v.id);
                    }
                }
            }
        }
        for s in segs {
            let Some(me) = s.me else { continue };
            // A complete member listed in the successor of its last view
            // must have installed it.
            if let Some(last) = s.views.last() {
                if let Some((w, oi)) = next.get(&last.id) {
                    let listed = members.get(w).is_some_and(|(m, _)| m.contains(me));
                    if s.complete && listed {
                        let d = format!(
                            "{} stayed to the end but never installed view {} of {g} that lists it (installed by {}); its last view is {}",
                            self.name(s),
                            w,
                            self.name(segs[*oi]),
                            last.id
                        );
                        out.fail(Clause::ViewAgreement, d);
                    }
                }
            }
            // A membership not started by an explicit join begins with the
            // view it joined in: its predecessor does not list it.
            if s.joined.is_none() {
                if let Some(f) = s.views.first() {
                    if let Some(p) = prev.get(&f.id) {
                        if members.get(p).is_some_and(|(m, _)| m.contains(me)) {
                            let d = format!(
                                "{} is listed in view {p} of {g} but its log starts at the next view {}",
                                self.name(s),
                                f.id
                            );
                            out.fail(Clause::ViewAgreement, d);
                        }
                    }
                }
            }
        }
        prev
    }

    /// The messages a membership delivered in its `i`-th view.
    fn delivered_in<'a>(s: &'a Seg<'a, I>, i: usize) -> HashSet<&'a I::Key> {
        s.msgs
            .iter()
            .filter(|d| d.view == Some(i))
            .map(|d| &d.m.key)
            .collect()
    }

    /// Same set of messages between consecutive views.
    fn synchrony(&self, g: &str, segs: &[&Seg<I>], out: &mut Out) {
        // Per pair of consecutive views: the first membership's set.
        type Sets<'k, I> = HashMap<
            (&'k <I as Ids>::View, &'k <I as Ids>::View),
            (HashSet<&'k <I as Ids>::Key>, usize),
        >;
        let mut first: Sets<I> = HashMap::new();
        for (si, s) in segs.iter().enumerate() {
            for i in s.covered()..s.views.len().saturating_sub(1) {
                let set = Self::delivered_in(s, i);
                let key = (&s.views[i].id, &s.views[i + 1].id);
                match first.get(&key) {
                    Some((other, oi)) if *other != set => {
                        let o = segs[*oi];
                        let mut here: Vec<_> = set.difference(other).collect();
                        let mut there: Vec<_> = other.difference(&set).collect();
                        here.truncate(5);
                        there.truncate(5);
                        let d = format!(
                            "{} and {} both moved from view {} to {} of {g} with different messages: {} more at {} {here:?}, {} more at {} {there:?}",
                            self.name(o),
                            self.name(s),
                            key.0,
                            key.1,
                            set.difference(other).count(),
                            self.name(s),
                            other.difference(&set).count(),
                            self.name(o),
                        );
                        out.fail(Clause::VirtualSynchrony, d);
                    }
                    Some(_) => {}
                    None => {
                        first.insert(key, (set, si));
                    }
                }
            }
        }
    }

    /// A safe message delivered in V reaches, in V, every member that
    /// moves on from V or stays in it.
    fn safe(&self, g: &str, segs: &[&Seg<I>], out: &mut Out) {
        let mut safe: HashMap<&I::View, Vec<(&I::Key, usize)>> = HashMap::new();
        for (si, s) in segs.iter().enumerate() {
            for d in s.msgs.iter().filter(|d| d.m.safe) {
                if let Some(v) = d.view {
                    let e = safe.entry(&s.views[v].id).or_default();
                    if !e.iter().any(|(k, _)| **k == d.m.key) {
                        e.push((&d.m.key, si));
                    }
                }
            }
        }
        if safe.is_empty() {
            return;
        }
        for s in segs {
            for i in s.covered()..s.views.len() {
                let moved_on = i + 1 < s.views.len();
                if !moved_on && !s.complete {
                    continue;
                }
                let Some(list) = safe.get(&s.views[i].id) else {
                    continue;
                };
                let set = Self::delivered_in(s, i);
                for (k, oi) in list {
                    if !set.contains(k) {
                        let then = match s.views.get(i + 1) {
                            Some(w) => format!("moved on to {}", w.id),
                            None => "stayed to the end".to_string(),
                        };
                        let d = format!(
                            "{} delivered safe {k:?} in view {} of {g}, but {} {then} without delivering it there",
                            self.name(segs[*oi]),
                            s.views[i].id,
                            self.name(s),
                        );
                        out.fail(Clause::Safe, d);
                    }
                }
            }
        }
    }

    /// The sequence of `total` messages a membership is held to: all of
    /// them, except those delivered in the last view of a membership that
    /// did not survive it.
    fn total_seq<'a>(s: &'a Seg<'a, I>) -> Vec<&'a I::Key> {
        let last = s.views.len().checked_sub(1);
        s.msgs
            .iter()
            .filter(|d| d.m.ordering == Ordering::Total)
            .filter(|d| s.complete || last.is_none() || d.view != last)
            .map(|d| &d.m.key)
            .collect()
    }

    /// One order of the `total` messages that every membership follows.
    fn total(&self, g: &str, segs: &[&Seg<I>], out: &mut Out) {
        let seqs: Vec<Vec<&I::Key>> = segs.iter().map(|s| Self::total_seq(s)).collect();
        let mut id: HashMap<&I::Key, usize> = HashMap::new();
        let mut edges: HashSet<(usize, usize)> = HashSet::new();
        for seq in &seqs {
            let mut prev = None;
            for k in seq {
                let n = id.len();
                let x = *id.entry(*k).or_insert(n);
                if let Some(p) = prev {
                    if p != x {
                        edges.insert((p, x));
                    }
                }
                prev = Some(x);
            }
        }
        let n = id.len();
        let mut indeg = vec![0usize; n];
        let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (a, b) in &edges {
            adj[*a].push(*b);
            indeg[*b] += 1;
        }
        let mut ready: Vec<usize> = (0..n).filter(|i| indeg[*i] == 0).collect();
        let mut done = 0;
        while let Some(x) = ready.pop() {
            done += 1;
            for y in &adj[x] {
                indeg[*y] -= 1;
                if indeg[*y] == 0 {
                    ready.push(*y);
                }
            }
        }
        if done == n {
            return;
        }
        // No single order: name two members that disagree.
        let mut found = 0;
        'pairs: for a in 0..seqs.len() {
            let sa: HashSet<&I::Key> = seqs[a].iter().copied().collect();
            for b in a + 1..seqs.len() {
                let sb: HashSet<&I::Key> = seqs[b].iter().copied().collect();
                let fa: Vec<&I::Key> = seqs[a].iter().copied().filter(|k| sb.contains(k)).collect();
                let fb: Vec<&I::Key> = seqs[b].iter().copied().filter(|k| sa.contains(k)).collect();
                if let Some(i) = fa.iter().zip(&fb).position(|(x, y)| x != y) {
                    let d = format!(
                        "{} and {} deliver total messages of {g} in different orders: the first delivers {:?} before {:?}, the second {:?} before {:?} (common position {i})",
                        self.name(segs[a]),
                        self.name(segs[b]),
                        fa[i],
                        fb[i],
                        fb[i],
                        fa[i]
                    );
                    out.fail(Clause::Total, d);
                    found += 1;
                    if found >= 3 {
                        break 'pairs;
                    }
                }
            }
        }
        if found == 0 {
            let stuck: Vec<&&I::Key> = id
                .iter()
                .filter(|(_, i)| indeg[**i] > 0)
                .map(|(k, _)| k)
                .take(6)
                .collect();
            out.fail(
                Clause::Total,
                format!(
                    "the members' orders of the total messages of {g} form a cycle (no two members disagree directly); messages on it include {stuck:?}"
                ),
            );
        }
    }

    /// Declared dependencies come first.
    fn causal(&self, segs: &[&Seg<I>], out: &mut Out) {
        let Some(published) = &self.published else {
            return;
        };
        for s in segs {
            let pos: HashMap<&I::Key, usize> = s
                .msgs
                .iter()
                .enumerate()
                .map(|(i, d)| (&d.m.key, i))
                .collect();
            for (i, d) in s.msgs.iter().enumerate() {
                if d.m.ordering < Ordering::Causal {
                    continue;
                }
                let Some(p) = published.get(&d.m.key) else {
                    continue;
                };
                for dep in &p.deps {
                    let Some(j) = pos.get(dep) else { continue };
                    if *j > i && s.msgs[*j].m.ordering >= Ordering::Causal {
                        out.fail(
                            Clause::Causal,
                            format!(
                                "{} delivered {:?} before {dep:?}, which its publisher had delivered before sending it",
                                self.name(s),
                                d.m.key
                            ),
                        );
                    }
                }
            }
        }
    }

    /// Where the group's messages were delivered: for each message, the
    /// views it was delivered in by members that count (anyone, or only
    /// members that survived the view: see [`Ids::STREAM_PER_INCARNATION`])
    /// with one of them, and its first delivered copy.
    fn seen_in_views<'a>(&self, segs: &[&Seg<'a, I>]) -> Seen<'a, I> {
        let mut seen = Seen {
            views: HashMap::new(),
            msgs: HashMap::new(),
        };
        for (si, s) in segs.iter().enumerate() {
            for d in &s.msgs {
                let m: &'a Message<I> = d.m;
                seen.msgs.entry(&m.key).or_insert(m);
                let Some(v) = d.view else { continue };
                let survived = v + 1 < s.views.len() || s.complete;
                if !(I::STREAM_PER_INCARNATION || survived) {
                    continue;
                }
                let view: &'a View<I> = s.views[v];
                let e = seen.views.entry(&m.key).or_default();
                if !e.iter().any(|(x, _)| **x == view.id) {
                    e.push((&view.id, si));
                }
            }
        }
        seen
    }

    /// The keys a membership holds: what it delivered and its checkpoint.
    fn holds<'a>(s: &Seg<'a, I>) -> HashSet<&'a I::Key> {
        let mut has: HashSet<&'a I::Key> = s
            .msgs
            .iter()
            .map(|d| {
                let m: &'a Message<I> = d.m;
                &m.key
            })
            .collect();
        for st in &s.states {
            if let Some(k) = st.keys {
                has.extend(k.iter());
            }
        }
        has
    }

    /// The first view of `views` (with who delivered there) that `s`
    /// installed as a member and its checkpoint does not cover.
    fn due_in<'v>(
        s: &Seg<I>,
        views: Option<&'v Vec<(&'v I::View, usize)>>,
    ) -> Option<(&'v I::View, usize)> {
        let covered = s.covered();
        views?.iter().copied().find(|(v, _)| {
            s.views
                .iter()
                .position(|x| x.id == **v)
                .is_some_and(|i| i >= covered)
        })
    }

    /// Fifo holes: a membership that delivered a message of a publisher
    /// stream (fifo or stronger) delivered every earlier message of that
    /// stream (fifo or stronger) that was sent while it was a member and
    /// delivered by anyone. "Sent while it was a member" is "delivered in a
    /// view it installed" (traffic is delivered in the view it was sent in;
    /// a message sent before the member joined is delivered in an earlier
    /// view, one refused or lost before it was sent nowhere). A membership
    /// without views must hold every delivered message of the stream
    /// between the first and the last it delivered.
    fn fifo_holes(&self, g: &str, segs: &[&Seg<I>], seen: &Seen<I>, out: &mut Out) {
        // Per publisher: its delivered messages of fifo or stronger.
        let mut streams: HashMap<&I::Publisher, Vec<(u64, &I::Key)>> = HashMap::new();
        for (k, m) in &seen.msgs {
            if m.ordering >= Ordering::Fifo {
                streams.entry(&m.publisher).or_default().push((m.pseq, *k));
            }
        }
        for s in segs {
            let has = Self::holds(s);
            // Per publisher: (lowest, highest) pseq it delivered, and the
            // key of the highest.
            let mut span: HashMap<&I::Publisher, (u64, u64, &I::Key)> = HashMap::new();
            for d in s.msgs.iter().filter(|d| d.m.ordering >= Ordering::Fifo) {
                let e = span
                    .entry(&d.m.publisher)
                    .or_insert((d.m.pseq, d.m.pseq, &d.m.key));
                e.0 = e.0.min(d.m.pseq);
                if d.m.pseq > e.1 {
                    e.1 = d.m.pseq;
                    e.2 = &d.m.key;
                }
            }
            let mut spans: Vec<_> = span.into_iter().collect();
            spans.sort_by_key(|(_, (_, top, _))| *top);
            for (p, (low, top, top_key)) in spans {
                let Some(stream) = streams.get(p) else {
                    continue;
                };
                let mut holes: Vec<(u64, &I::Key, String)> = Vec::new();
                for (i, k) in stream {
                    if *i >= top || has.contains(k) {
                        continue;
                    }
                    if s.views.is_empty() {
                        if *i > low {
                            holes.push((*i, k, String::new()));
                        }
                    } else if let Some((v, w)) = Self::due_in(s, seen.views.get(k)) {
                        let by = format!(
                            ", which {} delivered in view {v} of {g} (installed by it)",
                            self.name(segs[w])
                        );
                        holes.push((*i, k, by));
                    }
                }
                if holes.is_empty() {
                    continue;
                }
                holes.sort_by_key(|h| h.0);
                let n = holes.len();
                let (i, k, by) = &holes[0];
                let more = if n > 1 {
                    format!(" ({} more holes in that stream)", n - 1)
                } else {
                    String::new()
                };
                out.fail(
                    Clause::Fifo,
                    format!(
                        "{} delivered {top_key:?} (publisher {p:?} #{top}) but not the earlier {k:?} (#{i}){by}: a hole in the stream{more}",
                        self.name(s)
                    ),
                );
            }
        }
    }

    /// Causal dependencies present: a membership that delivered a causal
    /// or total message delivered before it every declared dependency
    /// (causal or total) that it could have delivered: one delivered by
    /// anyone in a view the membership installed (inversions among
    /// delivered ones are [`History::causal`]'s).
    fn causal_present(&self, g: &str, segs: &[&Seg<I>], seen: &Seen<I>, out: &mut Out) {
        let Some(published) = &self.published else {
            return;
        };
        for s in segs {
            if s.views.is_empty() {
                continue;
            }
            let has = Self::holds(s);
            let mut missing: Vec<String> = Vec::new();
            for d in &s.msgs {
                if d.m.ordering < Ordering::Causal {
                    continue;
                }
                let Some(p) = published.get(&d.m.key) else {
                    continue;
                };
                for dep in &p.deps {
                    if has.contains(dep) {
                        continue;
                    }
                    let ordering = seen
                        .msgs
                        .get(dep)
                        .map(|m| m.ordering)
                        .or_else(|| published.get(dep).map(|q| q.ordering));
                    if ordering.is_none_or(|o| o < Ordering::Causal) {
                        continue;
                    }
                    if let Some((v, w)) = Self::due_in(s, seen.views.get(dep)) {
                        missing.push(format!(
                            "{} delivered {:?} without {dep:?}, which its publisher had delivered or sent before it and {} delivered in view {v} of {g} (installed by it)",
                            self.name(s),
                            d.m.key,
                            self.name(segs[w])
                        ));
                    }
                }
            }
            if let Some(first) = missing.first() {
                let more = if missing.len() > 1 {
                    format!(" ({} more missing dependencies)", missing.len() - 1)
                } else {
                    String::new()
                };
                out.fail(Clause::Causal, format!("{first}{more}"));
            }
        }
    }

    /// Messages that must arrive reach every complete member.
    fn loss(&self, g: &str, segs: &[&Seg<I>], out: &mut Out) {
        let Some(published) = &self.published else {
            return;
        };
        let complete: Vec<&&Seg<I>> = segs.iter().filter(|s| s.complete).collect();
        if complete.is_empty() {
            return;
        }
        let mut views_of: HashMap<&I::Key, HashSet<&I::View>> = HashMap::new();
        let mut anywhere: HashSet<&I::Key> = HashSet::new();
        for s in segs {
            for d in &s.msgs {
                anywhere.insert(&d.m.key);
                if let Some(v) = d.view {
                    views_of.entry(&d.m.key).or_default().insert(&s.views[v].id);
                }
            }
            for st in &s.states {
                anywhere.extend(st.keys.into_iter().flatten());
            }
        }
        let wanted: Vec<&Published<I>> = published
            .values()
            .filter(|p| p.must_arrive && p.group == g)
            .collect();
        for p in &wanted {
            if !anywhere.contains(&p.key) {
                let names: Vec<String> = complete.iter().map(|s| self.name(s)).collect();
                out.fail(
                    Clause::Integrity,
                    format!(
                        "{:?} was published to {g} and must arrive, but no member delivered it (complete: {})",
                        p.key,
                        names.join(", ")
                    ),
                );
            }
        }
        for s in complete {
            let mut has: HashSet<&I::Key> = s.msgs.iter().map(|d| &d.m.key).collect();
            for st in &s.states {
                has.extend(st.keys.into_iter().flatten());
            }
            let mine: HashSet<&I::View> = s.views.iter().map(|v| &v.id).collect();
            let mut missing = Vec::new();
            for p in &wanted {
                if has.contains(&p.key) || !anywhere.contains(&p.key) {
                    continue;
                }
                let due = s.views.is_empty()
                    || views_of
                        .get(&p.key)
                        .is_some_and(|vs| vs.iter().any(|v| mine.contains(v)));
                if due {
                    missing.push(&p.key);
                }
            }
            if !missing.is_empty() {
                let n = missing.len();
                missing.sort_by_cached_key(|k| format!("{k:?}"));
                missing.truncate(8);
                out.fail(
                    Clause::Integrity,
                    format!(
                        "{} stayed to the end but lacks {n} messages of {g} that must arrive and were delivered in views it installed, e.g. {missing:?}",
                        self.name(s)
                    ),
                );
            }
        }
    }

    /// A known checkpoint equals the state at the join point of an
    /// existing member that keeps state (one that joined with state). Only
    /// if no such member is there may it come from one that does not: then
    /// it equals that member's state (what it delivered, for an
    /// application that answers with it) or is empty (what the broker
    /// answers for a subscription, which keeps no state).
    fn state(&self, segs: &[&Seg<I>], prev: &HashMap<&I::View, &I::View>, out: &mut Out) {
        for (ji, j) in segs.iter().enumerate() {
            let Some(st) = j.states.first() else { continue };
            let (Some(keys), Some(at)) = (st.keys, st.at) else {
                continue;
            };
            let a = &j.views[at].id;
            let Some(p) = prev.get(a) else { continue };
            let got: HashSet<&I::Key> = keys.iter().collect();
            // (member, its state at the join point, keeps state)
            let mut tried = Vec::new();
            for (ci, c) in segs.iter().enumerate() {
                if ci == ji {
                    continue;
                }
                let Some(x) = c.index_of(a) else { continue };
                if x == 0 || c.views[x - 1].id != **p {
                    continue;
                }
                // Its state at the join point: its own checkpoint (if it
                // has one, taken no later than the view before) plus what
                // it delivered before the join point.
                let mut state: HashSet<&I::Key> = HashSet::new();
                if let Some(cs) = c.states.first() {
                    match (cs.keys, cs.at) {
                        (Some(k), Some(cat)) if cat < x => state.extend(k),
                        _ => continue,
                    }
                } else if c.joined == Some(true) {
                    continue;
                }
                state.extend(
                    c.msgs
                        .iter()
                        .filter(|d| d.view.is_some_and(|v| v < x))
                        .map(|d| &d.m.key),
                );
                tried.push((ci, state, c.joined == Some(true)));
            }
            let stateful = tried.iter().any(|t| t.2);
            let ok = if stateful {
                tried
                    .iter()
                    .any(|(_, state, keeps)| *keeps && *state == got)
            } else {
                tried.is_empty()
                    || got.is_empty()
                    || tried.iter().any(|(_, state, _)| *state == got)
            };
            if ok {
                continue;
            }
            // Compare with the closest one (most likely the provider).
            let closest = tried
                .iter()
                .filter(|t| t.2 || !stateful)
                .min_by_key(|(_, state, _)| got.symmetric_difference(state).count());
            if let Some((ci, state, _)) = closest {
                let mut extra: Vec<_> = got.difference(state).collect();
                let mut lacking: Vec<_> = state.difference(&got).collect();
                let (ne, nl) = (extra.len(), lacking.len());
                extra.truncate(5);
                lacking.truncate(5);
                let n = tried.iter().filter(|t| t.2 || !stateful).count();
                let which = if stateful {
                    "existing members that keep state (joined with state)"
                } else {
                    "existing members"
                };
                out.fail(
                    Clause::StateTransfer,
                    format!(
                        "{} got a checkpoint of {} at view {a} ({} keys) that matches the state there of none of the {n} {which}; against the closest, {}: {ne} extra {extra:?}, {nl} missing {lacking:?}",
                        self.name(j),
                        j.group,
                        got.len(),
                        self.name(segs[*ci])
                    ),
                );
            }
        }
    }
}

/// `[a, b, c]` with each item displayed.
fn list<T: Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// View ids and their members.
    const VIEWS: &[(&str, &[&str])] = &[
        ("v1", &["a", "b", "c"]),
        ("v2", &["a", "b"]),
        ("v3", &["a", "b", "d"]),
        ("v4", &["a", "b", "d"]),
    ];

    /// A log from a script: `vN` installs a view, `mN` delivers message N
    /// (total order, publisher N, pseq 1), `sN` a safe one, `fN` a fifo
    /// one (publisher 1, pseq N).
    fn log(name: &str, script: &[&str]) -> Log<Text> {
        let mut l = Log::new(name);
        for e in script {
            if let Some((_, members)) = VIEWS.iter().find(|(v, _)| v == e) {
                l.view("g", e, members, name);
                continue;
            }
            let n: u64 = e[1..].parse().unwrap();
            let (ordering, safe) = match &e[..1] {
                "m" => (Ordering::Total, false),
                "s" => (Ordering::Total, true),
                "f" => (Ordering::Fifo, false),
                _ => panic!("bad script entry {e}"),
            };
            let (publisher, pseq) = if ordering == Ordering::Fifo {
                (1, n)
            } else {
                (n, 1)
            };
            l.message("g", e, publisher, pseq, ordering, safe);
        }
        l
    }

    fn published(h: &mut History<Text>, keys: &[&str]) {
        for k in keys {
            let n: u64 = k[1..].parse().unwrap();
            let (ordering, publisher, pseq) = if k.starts_with('f') {
                (Ordering::Fifo, 1, n)
            } else {
                (Ordering::Total, n, 1)
            };
            h.publish(
                Published::new("g", *k, ordering)
                    .from(publisher, pseq)
                    .safe(k.starts_with('s')),
            );
        }
    }

    /// a and b see v1 then v2 and deliver m1..m5; c crashes in v1.
    fn good() -> History<Text> {
        let mut h = History::new();
        h.add(log("a", &["v1", "m1", "m2", "m3", "m4", "v2", "m5"]).complete());
        h.add(log("b", &["v1", "m1", "m2", "m3", "m4", "v2", "m5"]).complete());
        h.add(log("c", &["v1", "m1", "m2"]));
        published(&mut h, &["m1", "m2", "m3", "m4", "m5"]);
        h
    }

    /// Checks that `h` breaks `clause` with a message mentioning `words`.
    fn caught(h: &History<Text>, clause: Clause, words: &[&str]) {
        let v = h.check();
        let hit = v
            .iter()
            .find(|v| v.clause == clause && words.iter().all(|w| v.detail.contains(w)));
        assert!(
            hit.is_some(),
            "expected a {clause:?} violation mentioning {words:?}, got:\n{}",
            h.report(&v)
        );
    }

    #[test]
    fn a_correct_history_passes() {
        good().assert_ok();
    }

    #[test]
    fn a_missing_message_breaks_virtual_synchrony_and_integrity() {
        let mut h = good();
        h.logs[1] = log("b", &["v1", "m1", "m2", "m4", "v2", "m5"]).complete();
        caught(
            &h,
            Clause::VirtualSynchrony,
            &["`a`", "`b`", "v1", "\"m3\""],
        );
        caught(&h, Clause::Integrity, &["`b`", "lacks 1", "\"m3\""]);
    }

    #[test]
    fn a_reordered_total_pair_breaks_total_order() {
        let mut h = good();
        h.logs[1] = log("b", &["v1", "m1", "m3", "m2", "m4", "v2", "m5"]).complete();
        caught(&h, Clause::Total, &["`a`", "`b`", "\"m2\" before \"m3\""]);
    }

    #[test]
    fn a_view_seen_by_only_one_member_breaks_view_agreement() {
        // b stays to the end but never installs v2, which lists it.
        let mut h = good();
        h.logs[1] = log("b", &["v1", "m1", "m2", "m3", "m4", "m5"]).complete();
        caught(&h, Clause::ViewAgreement, &["`b`", "never installed", "v2"]);
        // b skips v2 on its way to v3.
        let mut h = History::new();
        h.add(log("a", &["v1", "v2", "v3"]).complete());
        h.add(log("b", &["v1", "v3"]).complete());
        caught(
            &h,
            Clause::ViewAgreement,
            &["v1", "followed by", "v2", "v3"],
        );
        // d's log starts at v4 although v3 lists it.
        let mut h = History::new();
        h.add(log("a", &["v1", "v2", "v3", "v4"]).complete());
        h.add(log("d", &["v4"]).complete());
        caught(&h, Clause::ViewAgreement, &["`d`", "listed in view v3"]);
    }

    #[test]
    fn a_duplicate_breaks_integrity() {
        let mut h = good();
        h.logs[0] = log("a", &["v1", "m1", "m2", "m3", "m2", "m4", "v2", "m5"]).complete();
        caught(&h, Clause::Integrity, &["`a`", "\"m2\" twice"]);
    }

    #[test]
    fn an_unpublished_or_altered_message_breaks_integrity() {
        let mut h = good();
        h.logs[0] = log("a", &["v1", "m1", "m2", "m3", "m4", "v2", "m5", "m9"]).complete();
        caught(
            &h,
            Clause::Integrity,
            &["`a`", "\"m9\"", "nobody published"],
        );
        let mut h = good();
        let mut b = log("b", &["v1", "m1", "m2", "m3", "m4", "v2"]);
        b.message("g", "m5", 5, 1, Ordering::Fifo, false);
        h.logs[1] = b.complete();
        caught(
            &h,
            Clause::Integrity,
            &["`a`", "`b`", "\"m5\"", "different metadata"],
        );
    }

    #[test]
    fn a_message_nobody_delivered_is_lost() {
        let mut h = good();
        published(&mut h, &["m6"]);
        caught(&h, Clause::Integrity, &["\"m6\"", "no member delivered it"]);
        // It may be lost if its publisher died.
        let mut h = good();
        h.publish(Published::new("g", "m6", Ordering::Total).may_be_lost());
        h.assert_ok();
    }

    #[test]
    fn a_reordered_fifo_pair_breaks_fifo() {
        let mut h = History::new();
        h.add(log("a", &["v1", "f1", "f2", "f3"]).complete());
        h.add(log("b", &["v1", "f1", "f3", "f2"]).complete());
        published(&mut h, &["f1", "f2", "f3"]);
        caught(&h, Clause::Fifo, &["`b`", "\"f2\"", "after \"f3\""]);
    }

    #[test]
    fn a_safe_message_missing_at_a_survivor_breaks_safe_delivery() {
        // c delivered s3 in v1 and crashed; a and b moved on without it.
        let mut h = History::new();
        h.add(log("a", &["v1", "m1", "v2"]).complete());
        h.add(log("b", &["v1", "m1", "v2"]).complete());
        h.add(log("c", &["v1", "m1", "s3"]));
        published(&mut h, &["m1"]);
        h.publish(
            Published::new("g", "s3", Ordering::Total)
                .safe(true)
                .may_be_lost(),
        );
        caught(
            &h,
            Clause::Safe,
            &["`c`", "\"s3\"", "`a`", "moved on to v2"],
        );
        // Without the safe flag that is allowed (c did not survive v1).
        let mut h = History::new();
        h.add(log("a", &["v1", "m1", "v2"]).complete());
        h.add(log("b", &["v1", "m1", "v2"]).complete());
        h.add(log("c", &["v1", "m1", "m3"]));
        published(&mut h, &["m1"]);
        h.publish(Published::new("g", "m3", Ordering::Total).may_be_lost());
        h.assert_ok();
    }

    #[test]
    fn a_member_that_did_not_survive_its_view_is_not_held_to_total_order_in_it() {
        let mut h = good();
        h.logs[2] = log("c", &["v1", "m2", "m1"]);
        h.assert_ok();
        // ... but it is in earlier views.
        let mut h = good();
        h.logs[2] = log("c", &["v1", "m2", "m1", "v2"]);
        caught(&h, Clause::Total, &["`c`"]);
    }

    #[test]
    fn views_with_one_id_and_different_members_break_view_agreement() {
        let mut h = good();
        let mut b = Log::new("b");
        b.view("g", "v1", &["a", "b"], "b");
        h.logs[1] = b;
        caught(&h, Clause::ViewAgreement, &["v1", "`a`", "`b`", "lists"]);
    }

    #[test]
    fn a_causal_dependency_delivered_late_breaks_causal_order() {
        let mut h = History::new();
        let mut a = Log::new("a");
        let mut b = Log::new("b");
        for l in [&mut a, &mut b] {
            let me = l.name.clone();
            l.view("g", "v1", &["a", "b"], &me);
        }
        a.message("g", "q", 1, 1, Ordering::Causal, false);
        a.message("g", "r", 2, 1, Ordering::Causal, false);
        b.message("g", "r", 2, 1, Ordering::Causal, false);
        b.message("g", "q", 1, 1, Ordering::Causal, false);
        h.add(a.complete());
        h.add(b.complete());
        h.publish(Published::new("g", "q", Ordering::Causal).from(1, 1));
        h.publish(
            Published::new("g", "r", Ordering::Causal)
                .from(2, 1)
                .after(vec!["q".into()]),
        );
        caught(&h, Clause::Causal, &["`b`", "\"r\" before \"q\""]);
    }

    #[test]
    fn a_hole_in_a_publisher_stream_breaks_fifo() {
        // b (cut off in v1, incomplete) delivers f3 without f2, which a
        // delivered in v1: neither virtual synchrony (b never moved on) nor
        // the loss check (b is incomplete) sees it.
        let mut h = History::new();
        h.add(log("a", &["v1", "f1", "f2", "f3", "v2"]).complete());
        h.add(log("b", &["v1", "f1", "f3"]));
        published(&mut h, &["f1", "f2", "f3"]);
        caught(
            &h,
            Clause::Fifo,
            &["`b`", "\"f3\"", "not the earlier \"f2\"", "`a`", "v1"],
        );
        // Without view information: the hole lies between two of its
        // deliveries.
        let mut h = History::new();
        let mut a = Log::new("a");
        let mut b = Log::new("b");
        for n in 1..=3 {
            a.message("g", &format!("f{n}"), 1, n, Ordering::Fifo, false);
        }
        b.message("g", "f1", 1, 1, Ordering::Fifo, false);
        b.message("g", "f3", 1, 3, Ordering::Fifo, false);
        h.add(a.complete());
        h.add(b);
        caught(&h, Clause::Fifo, &["`b`", "\"f2\"", "hole"]);
    }

    #[test]
    fn no_fifo_hole_for_messages_sent_before_joining_or_never_delivered() {
        // d joins in v3: f1 and f2 were delivered before (v1, v2).
        let mut h = History::new();
        h.add(log("a", &["v1", "f1", "v2", "f2", "v3", "f3", "f5"]).complete());
        let mut d = Log::new("d");
        d.join("g", false);
        d.events.extend(log("d", &["v3", "f3", "f5"]).events);
        h.add(d.complete());
        // f4 was refused (Blocked): nobody delivered it.
        published(&mut h, &["f1", "f2", "f3", "f5"]);
        h.publish(
            Published::new("g", "f4", Ordering::Fifo)
                .from(1, 4)
                .may_be_lost(),
        );
        h.assert_ok();
        // A joiner with state whose checkpoint holds f2.
        let mut h = History::new();
        h.add(log("a", &["v2", "f1", "f2", "v3", "f3"]).complete());
        let mut d = Log::new("d");
        d.join("g", true);
        d.view("g", "v3", &["a", "b", "d"], "d");
        d.state("g", &["f1", "f2"]);
        d.message("g", "f3", 1, 3, Ordering::Fifo, false);
        h.add(d.complete());
        h.assert_ok();
    }

    /// The same identifiers as [`Text`], for a publisher id that spans
    /// incarnations (as the simulator's).
    #[derive(Debug, Clone)]
    struct Spanning;

    impl Ids for Spanning {
        type View = String;
        type Member = String;
        type Key = String;
        type Publisher = u64;
    }

    fn spanning(h: &History<Text>) -> History<Spanning> {
        let mut out = History::new();
        for l in &h.logs {
            let mut n = Log::new(l.name.clone());
            n.complete = l.complete;
            for e in &l.events {
                n.push(match e.clone() {
                    Event::Join { group, with_state } => Event::Join { group, with_state },
                    Event::View(v) => Event::View(View {
                        group: v.group,
                        id: v.id,
                        members: v.members,
                        me: v.me,
                    }),
                    Event::Message(m) => Event::Message(Message {
                        group: m.group,
                        key: m.key,
                        publisher: m.publisher,
                        pseq: m.pseq,
                        ordering: m.ordering,
                        safe: m.safe,
                        view: m.view,
                    }),
                    Event::State { group, keys, at } => Event::State { group, keys, at },
                });
            }
            out.add(n);
        }
        out
    }

    #[test]
    fn a_message_only_a_member_that_did_not_survive_delivered_counts_per_incarnation_only() {
        // c delivered f2 in v1 and was cut off; a and b moved on without
        // it; then f3 of the same publisher id reaches b.
        let mut h = History::new();
        h.add(log("a", &["v1", "f1", "v2", "f3"]).complete());
        h.add(log("b", &["v1", "f1", "v2", "f3"]).complete());
        h.add(log("c", &["v1", "f1", "f2"]));
        // With ids per incarnation, f3 continues the stream f2 belongs to.
        caught(&h, Clause::Fifo, &["`a`", "\"f2\"", "`c`"]);
        // With ids that span incarnations f3 may be the next incarnation's.
        let s = spanning(&h);
        assert!(s.check().is_empty(), "{}", s.report(&s.check()));
        // A survivor's delivery counts either way.
        let mut h = History::new();
        h.add(log("a", &["v1", "f1", "f2", "v2", "f3"]).complete());
        h.add(log("b", &["v1", "f1", "v2", "f3"]));
        let s = spanning(&h);
        assert!(
            s.check()
                .iter()
                .any(|v| v.clause == Clause::Fifo && v.detail.contains("hole")),
            "{}",
            s.report(&s.check())
        );
    }

    /// a delivers q (causal) in v2, then r (causal, published after
    /// delivering q) in v3; `b_script` is b's log (views and keys).
    fn causal_pair(b_script: &[&str]) -> History<Text> {
        let mut h = History::new();
        let mut a = Log::new("a");
        a.view("g", "v2", &["a", "b"], "a");
        a.message("g", "q", 1, 1, Ordering::Causal, false);
        a.view("g", "v3", &["a", "b", "d"], "a");
        a.message("g", "r", 2, 1, Ordering::Causal, false);
        h.add(a.complete());
        let mut b = Log::new("b");
        for e in b_script {
            match VIEWS.iter().find(|(x, _)| x == e) {
                Some((v, members)) => b.view("g", v, members, "b"),
                None => {
                    let p = if *e == "q" { 1 } else { 2 };
                    b.message("g", e, p, 1, Ordering::Causal, false);
                }
            }
        }
        h.add(b);
        h.publish(Published::new("g", "q", Ordering::Causal).from(1, 1));
        h.publish(
            Published::new("g", "r", Ordering::Causal)
                .from(2, 1)
                .after(vec!["q".into(), "x".into()]),
        );
        // x was refused: in the dependencies, delivered nowhere.
        h.publish(Published::new("g", "x", Ordering::Causal).may_be_lost());
        h
    }

    #[test]
    fn a_causal_message_without_a_dependency_it_could_have_delivered_breaks_causal_order() {
        // b installed v2, where a delivered q, and delivers r without it.
        let h = causal_pair(&["v2", "v3", "r"]);
        caught(
            &h,
            Clause::Causal,
            &["`b`", "\"r\" without \"q\"", "`a`", "view v2"],
        );
        // With q first it passes.
        causal_pair(&["v2", "q", "v3", "r"]).assert_ok();
        // A member that joined at v3, after q, need not have it.
        let mut h = causal_pair(&["v3", "r"]);
        h.logs[1].events.insert(
            0,
            Event::Join {
                group: "g".into(),
                with_state: false,
            },
        );
        h.assert_ok();
    }

    /// d joins with state at v3 while a and b go on; `checkpoint` is what d
    /// gets.
    fn joiner(checkpoint: &[&str]) -> History<Text> {
        let mut h = History::new();
        let script = ["v1", "m1", "m2", "v2", "m3", "v3", "m4", "v4", "m5"];
        h.add(log("a", &script).complete());
        h.add(log("b", &script).complete());
        let mut d = Log::new("d");
        d.join("g", true);
        d.view("g", "v3", &["a", "b", "d"], "d");
        d.state("g", checkpoint);
        d.message("g", "m4", 4, 1, Ordering::Total, false);
        d.view("g", "v4", &["a", "b", "d"], "d");
        d.message("g", "m5", 5, 1, Ordering::Total, false);
        h.add(d.complete());
        published(&mut h, &["m1", "m2", "m3", "m4", "m5"]);
        h
    }

    #[test]
    fn a_checkpoint_must_match_an_existing_members_state_at_the_join_point() {
        joiner(&["m1", "m2", "m3"]).assert_ok();
        caught(
            &joiner(&["m1", "m2"]),
            Clause::StateTransfer,
            &["`d`", "v3", "1 missing [\"m3\"]"],
        );
        // A checkpoint that already holds m4 makes its delivery a duplicate.
        caught(
            &joiner(&["m1", "m2", "m3", "m4"]),
            Clause::Integrity,
            &["`d`", "\"m4\"", "checkpoint"],
        );
    }

    /// a joined with state (its checkpoint holds m0), b without; d joins
    /// with state at v3 and gets `checkpoint`.
    fn joiner_with_a_stateful_member(checkpoint: &[&str]) -> History<Text> {
        let mut h = History::new();
        let script = ["v1", "m1", "m2", "v2", "m3", "v3", "m4", "v4", "m5"];
        let mut a = Log::new("a");
        a.join("g", true);
        let mut rest = log("a", &script);
        rest.events.insert(
            1,
            Event::State {
                group: "g".into(),
                keys: Some(vec!["m0".into()]),
                at: None,
            },
        );
        a.events.extend(rest.events);
        h.add(a.complete());
        let mut b = Log::new("b");
        b.join("g", false);
        b.events.extend(log("b", &script).events);
        h.add(b.complete());
        let mut d = Log::new("d");
        d.join("g", true);
        d.view("g", "v3", &["a", "b", "d"], "d");
        d.state("g", checkpoint);
        d.message("g", "m4", 4, 1, Ordering::Total, false);
        d.view("g", "v4", &["a", "b", "d"], "d");
        d.message("g", "m5", 5, 1, Ordering::Total, false);
        h.add(d.complete());
        published(&mut h, &["m0", "m1", "m2", "m3", "m4", "m5"]);
        h
    }

    #[test]
    fn a_checkpoint_comes_from_a_member_that_keeps_state_if_there_is_one() {
        joiner_with_a_stateful_member(&["m0", "m1", "m2", "m3"]).assert_ok();
        // b's state, or the empty checkpoint a subscription answers with,
        // while a keeps the group's state.
        for wrong in [&["m1", "m2", "m3"][..], &[]] {
            caught(
                &joiner_with_a_stateful_member(wrong),
                Clause::StateTransfer,
                &["`d`", "v3", "keep state", "`a`", "\"m0\""],
            );
        }
        // With no member that keeps state, an empty checkpoint is right.
        joiner(&[]).assert_ok();
    }

    #[test]
    fn a_checkpoint_comes_once_and_before_any_message() {
        let mut h = joiner(&["m1", "m2", "m3"]);
        h.logs[2].events.swap(2, 3);
        caught(&h, Clause::StateTransfer, &["`d`", "after delivering 1"]);
        let mut h = joiner(&["m1", "m2", "m3"]);
        h.logs[2].state("g", &[]);
        caught(&h, Clause::StateTransfer, &["`d`", "2 checkpoints"]);
        let mut h = joiner(&["m1", "m2", "m3"]);
        h.logs[2].events.remove(2);
        caught(
            &h,
            Clause::StateTransfer,
            &["`d`", "never got a checkpoint"],
        );
    }

    #[test]
    fn a_member_whose_id_changes_starts_a_new_membership() {
        // b is cut off in v1, rejoins as b2 in v2: its two memberships are
        // checked separately (its log may stop short in the first).
        let mut h = History::new();
        let mut a = Log::new("a");
        a.view("g", "v1", &["a", "b"], "a");
        a.message("g", "m1", 1, 1, Ordering::Total, false);
        a.view("g", "v2", &["a"], "a");
        a.message("g", "m2", 2, 1, Ordering::Total, false);
        a.view("g", "v3", &["a", "b2"], "a");
        a.message("g", "m3", 3, 1, Ordering::Total, false);
        let mut b = Log::new("b");
        b.view("g", "v1", &["a", "b"], "b");
        b.view("g", "v3", &["a", "b2"], "b2");
        b.state("g", &["m1", "m2"]);
        b.message("g", "m3", 3, 1, Ordering::Total, false);
        h.add(a.complete());
        h.add(b.complete());
        published(&mut h, &["m1", "m2", "m3"]);
        h.assert_ok();
        // Had b kept its id, it would have skipped v2.
        let mut h2 = History::new();
        h2.add(h.logs[0].clone());
        let mut b = Log::new("b");
        b.view("g", "v1", &["a", "b"], "b");
        b.view("g", "v3", &["a", "b"], "b");
        h2.add(b);
        caught(&h2, Clause::ViewAgreement, &["v1", "followed by"]);
    }

    #[test]
    fn a_delivery_in_a_view_not_installed_or_out_of_place_is_caught() {
        let mut h = good();
        let mut a = log("a", &["v1", "m1", "m2", "m3", "m4", "v2"]);
        a.push(Event::Message(Message {
            group: "g".into(),
            key: "m5".into(),
            publisher: 5,
            pseq: 1,
            ordering: Ordering::Total,
            safe: false,
            view: Some("v1".into()),
        }));
        h.logs[0] = a.complete();
        caught(
            &h,
            Clause::VirtualSynchrony,
            &["`a`", "\"m5\"", "only after installing"],
        );
        let mut h = good();
        let mut b = log("b", &["m0"]);
        b.events.extend(log("b", &["v1", "m1"]).events);
        h.logs[1] = b;
        caught(
            &h,
            Clause::VirtualSynchrony,
            &["`b`", "before installing any view"],
        );
    }
}
