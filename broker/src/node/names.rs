//! Readable names for the protocol core's ids.
//!
//! The core names a broker by a number, the hash of its configured id
//! ([`meshcast_config::node_name`]), and an incarnation (a large counter,
//! new on every restart and rejoin). People chose ids such as `b1`: this
//! map turns the numbers back into them for views, the status document,
//! logs and what clients are told.
//!
//! * A broker is its configured id: `b1`.
//! * A broker incarnation is `b1`, or `b1#2` after it rejoined the mesh
//!   twice since it started (`#` the number of rejoins of that process,
//!   from the incarnation its link handshake announced). An incarnation
//!   the map cannot place (an older process of that id) keeps the full
//!   number: `b1#1765012345`.
//! * A member (a client session) is `<broker incarnation>/s<session>`:
//!   `b1/s2`, `b1#1/s2`.
//! * A view id is `v<counter>@<broker>`: `v12@b1`.
//!
//! Members stay `b1/s2` in views even when their client gave a name in
//! its hello: names are neither unique (every `lock` example calls itself
//! `lock`) nor known to every broker when a view is installed, and every
//! member must see the same member strings. The status document and logs
//! show a local session's name next to it.
//!
//! Ids are learned from the configuration (this broker and `mesh.peers`),
//! the membership file and every link handshake. A broker not learned yet
//! shows as `b<node name>` (every broker of a view has linked to this one
//! in practice before its members appear in a group view).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use meshcast_protocol::{MemberId, NodeId, ViewId};

/// What is known of one broker.
#[derive(Debug, Clone)]
struct Known {
    /// Its configured id.
    id: String,
    /// The incarnations its processes started with (from link handshakes),
    /// the last [`MAX_BASES`]. An incarnation is counted from the largest
    /// of them not above it, so a view that still holds a restarted
    /// broker's old incarnation reads the same before and after this
    /// broker learned of the new process.
    bases: std::collections::BTreeSet<u64>,
}

/// Process start incarnations remembered per broker.
const MAX_BASES: usize = 8;

/// The node-name-to-id map, shared by the runtime's tasks, with why each
/// broker's link last went down (for the log line of a view without it).
#[derive(Debug, Clone, Default)]
pub struct Names {
    inner: Arc<RwLock<HashMap<u32, Known>>>,
    down: Arc<RwLock<HashMap<u32, String>>>,
    /// The names clients gave in their hello, for this broker's open
    /// sessions (bounded by `limits.max_sessions`).
    sessions: Arc<RwLock<HashMap<u64, String>>>,
}

impl Names {
    /// A map that knows this broker (`id`, started as `incarnation`).
    pub fn new(id: &str, incarnation: u64) -> Names {
        let names = Names::default();
        names.learn(id, Some(incarnation));
        names
    }

    /// Records broker `id`; `base` is the incarnation its process started
    /// with, when a handshake said so (a restarted broker has a new one).
    pub fn learn(&self, id: &str, base: Option<u64>) {
        let name = meshcast_config::node_name(id);
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(name).or_insert_with(|| Known {
            id: id.to_string(),
            bases: Default::default(),
        });
        entry.id = id.to_string();
        if let Some(b) = base {
            entry.bases.insert(b);
            while entry.bases.len() > MAX_BASES {
                entry.bases.pop_first();
            }
        }
    }

    /// Local session `session` opened, named `name` by its client.
    pub fn session_opened(&self, session: u64, name: &str) {
        let mut s = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        s.insert(session, name.to_string());
    }

    /// Local session `session` closed.
    pub fn session_closed(&self, session: u64) {
        let mut s = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        s.remove(&session);
    }

    /// The name the client of local session `session` gave (empty if none).
    pub fn session_name(&self, session: u64) -> String {
        let s = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        s.get(&session).cloned().unwrap_or_default()
    }

    /// The link to broker `id` went down for `reason`.
    pub fn note_down(&self, id: &str, reason: &str) {
        let name = meshcast_config::node_name(id);
        let mut down = self.down.write().unwrap_or_else(|p| p.into_inner());
        down.insert(name, reason.to_string());
    }

    /// The link to broker `id` is up again.
    pub fn note_up(&self, id: &str) {
        let name = meshcast_config::node_name(id);
        let mut down = self.down.write().unwrap_or_else(|p| p.into_inner());
        down.remove(&name);
    }

    /// Why the link to the broker with node name `name` went down, if it
    /// is down.
    pub fn down_reason(&self, name: u32) -> Option<String> {
        let down = self.down.read().unwrap_or_else(|p| p.into_inner());
        down.get(&name).cloned()
    }

    /// The configured id of the broker with node name `name`, or
    /// `b<name>` while it is unknown.
    pub fn broker(&self, name: u32) -> String {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        match map.get(&name) {
            Some(k) => k.id.clone(),
            None => format!("b{name}"),
        }
    }

    /// A broker incarnation: `b1`, `b1#<rejoins>` after rejoins, or
    /// `b1#<incarnation>` for one the map cannot place.
    pub fn node(&self, node: NodeId) -> String {
        let map = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let Some(k) = map.get(&node.name) else {
            return format!("b{}#{}", node.name, node.incarnation);
        };
        if k.bases.is_empty() {
            return k.id.clone();
        }
        match k.bases.range(..=node.incarnation).next_back() {
            Some(&base) if node.incarnation == base => k.id.clone(),
            Some(&base) if node.incarnation - base < 1000 => {
                format!("{}#{}", k.id, node.incarnation - base)
            }
            _ => format!("{}#{}", k.id, node.incarnation),
        }
    }

    /// A broker incarnation with its full incarnation number, for logs
    /// about restarts and impostors: `b1#1765012345`.
    pub fn node_exact(&self, node: NodeId) -> String {
        format!("{}#{}", self.broker(node.name), node.incarnation)
    }

    /// A member: `b1/s2` (`b1#1/s2` after its broker rejoined once).
    pub fn member(&self, m: MemberId) -> String {
        format!("{}/s{}", self.node(m.broker), m.session)
    }

    /// A view id: `v12@b1`.
    pub fn view(&self, v: ViewId) -> String {
        format!("v{}@{}", v.counter, self.node(v.coordinator))
    }

    /// Members of a view, readable, oldest first.
    pub fn members(&self, members: &[MemberId]) -> Vec<String> {
        members.iter().map(|m| self.member(*m)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_ids_replace_node_names() {
        let names = Names::new("b1", 100);
        let b1 = meshcast_config::node_name("b1");
        let b2 = meshcast_config::node_name("b2");
        let m = MemberId {
            broker: NodeId::new(b1, 100),
            session: 2,
        };
        assert_eq!(names.member(m), "b1/s2");
        assert_eq!(names.broker(b2), format!("b{b2}"));
        names.learn("b2", None);
        assert_eq!(names.node(NodeId::new(b2, 7)), "b2");
        // A handshake tells the incarnation its process started with.
        names.learn("b2", Some(7));
        assert_eq!(names.node(NodeId::new(b2, 7)), "b2");
        assert_eq!(names.node(NodeId::new(b2, 9)), "b2#2");
        // An incarnation older than any process known: the exact number.
        assert_eq!(names.node(NodeId::new(b2, 3)), "b2#3");
        // b2 restarted (a new process from incarnation 20): its old
        // incarnations read as before.
        names.learn("b2", Some(20));
        assert_eq!(names.node(NodeId::new(b2, 9)), "b2#2");
        assert_eq!(names.node(NodeId::new(b2, 20)), "b2");
        assert_eq!(names.node(NodeId::new(b2, 21)), "b2#1");
        assert_eq!(names.node_exact(NodeId::new(b2, 7)), "b2#7");
        let v = ViewId {
            counter: 12,
            coordinator: NodeId::new(b1, 101),
        };
        assert_eq!(names.view(v), "v12@b1#1");
        // Unknown brokers keep their numbers.
        assert_eq!(names.node(NodeId::new(5, 6)), "b5#6");
    }
}
