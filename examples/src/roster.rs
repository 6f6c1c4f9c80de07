//! Who is in a chat room, by name: group views list members by id
//! (`b1/s2`, the same at every member), and each participant announces
//! its name for its id; the roster turns views and announcements into
//! "bob joined" / "bob left".

use std::collections::{BTreeSet, HashMap};

use meshcast_client::View;

/// The members of a room and the names announced for them.
#[derive(Debug, Default)]
pub struct Roster {
    /// This participant's name.
    name: String,
    /// This participant's member id in the last view.
    me: Option<String>,
    /// Member ids in the last view.
    seen: BTreeSet<String>,
    /// Member id -> announced name.
    names: HashMap<String, String>,
    /// Members that joined and have not announced their name yet.
    unnamed: BTreeSet<String>,
}

/// What a view means for the room.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Lines to print (`* bob joined`, `* bob left`).
    pub lines: Vec<String>,
    /// This participant should announce its name (as `me`): it has a new
    /// id, or someone joined who does not know it yet.
    pub announce: Option<String>,
}

impl Roster {
    /// The roster of participant `name`, installed in `view` (if the
    /// subscription got one).
    pub fn new(name: &str, view: Option<&View>) -> Roster {
        let mut r = Roster {
            name: name.to_string(),
            ..Roster::default()
        };
        if let Some(v) = view {
            r.seen = v.members.iter().cloned().collect();
            let me = v.members[v.rank as usize].clone();
            r.names.insert(me.clone(), name.to_string());
            r.me = Some(me);
        }
        r
    }

    /// Members in the room now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether the room is empty (no view yet).
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// This participant's member id, if it has one.
    pub fn me(&self) -> Option<&str> {
        self.me.as_deref()
    }

    /// A new view of the room.
    pub fn view(&mut self, v: &View) -> Change {
        let now: BTreeSet<String> = v.members.iter().cloned().collect();
        let mut change = Change::default();
        let mut someone_new = false;
        for m in now.difference(&self.seen) {
            if Some(m) == self.me.as_ref() {
                continue;
            }
            someone_new = true;
            match self.names.get(m) {
                Some(n) => change.lines.push(format!("* {n} joined")),
                None => {
                    self.unnamed.insert(m.clone());
                }
            }
        }
        for m in self.seen.difference(&now) {
            self.unnamed.remove(m);
            if Some(m) == self.me.as_ref() {
                continue; // this participant under its old id (a rejoin)
            }
            let who = self.names.get(m).unwrap_or(m);
            change.lines.push(format!("* {who} left"));
        }
        self.seen = now;
        // After a partition this member rejoins under a new id.
        let me = v.members[v.rank as usize].clone();
        if self.me.as_ref() != Some(&me) || someone_new {
            self.names.insert(me.clone(), self.name.clone());
            change.announce = Some(me.clone());
            self.me = Some(me);
        }
        change
    }

    /// Member `id` announced its name; the line to print if it had joined
    /// unnamed.
    pub fn announced(&mut self, id: &str, name: &str) -> Option<String> {
        self.names.insert(id.to_string(), name.to_string());
        self.unnamed.remove(id).then(|| format!("* {name} joined"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(members: &[&str], rank: u32) -> View {
        View {
            group: "chat".into(),
            id: "v1@b1".into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            rank,
        }
    }

    #[test]
    fn views_and_announcements_say_who_comes_and_goes_by_name() {
        let mut alice = Roster::new("alice", Some(&view(&["b1/s1"], 0)));
        assert_eq!(alice.me(), Some("b1/s1"));
        // Bob joins: named only once his announcement arrives; alice
        // announces herself again for him.
        let c = alice.view(&view(&["b1/s1", "b2/s1"], 0));
        assert!(c.lines.is_empty(), "{c:?}");
        assert_eq!(c.announce.as_deref(), Some("b1/s1"));
        assert_eq!(
            alice.announced("b2/s1", "bob").as_deref(),
            Some("* bob joined")
        );
        // A repeated announcement says nothing.
        assert_eq!(alice.announced("b2/s1", "bob"), None);
        // Bob leaves.
        let c = alice.view(&view(&["b1/s1"], 0));
        assert_eq!(c.lines, ["* bob left"]);
        assert_eq!(c.announce, None);
        // Someone who never announced leaves under their id.
        alice.view(&view(&["b1/s1", "b3/s4"], 0));
        let c = alice.view(&view(&["b1/s1"], 0));
        assert_eq!(c.lines, ["* b3/s4 left"]);
    }

    #[test]
    fn a_newcomer_learns_names_from_announcements_and_a_rejoin_reannounces() {
        let mut bob = Roster::new("bob", Some(&view(&["b1/s1", "b2/s1"], 1)));
        assert_eq!(bob.len(), 2);
        // Alice was there before him: her announcement names her, without
        // a "joined" line.
        assert_eq!(bob.announced("b1/s1", "alice"), None);
        let c = bob.view(&view(&["b2/s1"], 0));
        assert_eq!(c.lines, ["* alice left"]);
        // Bob's broker rejoined the mesh: a new id, announced; his old id
        // leaving is not news to him.
        let c = bob.view(&view(&["b2#1/s1"], 0));
        assert!(c.lines.is_empty(), "{c:?}");
        assert_eq!(c.announce.as_deref(), Some("b2#1/s1"));
        assert_eq!(bob.me(), Some("b2#1/s1"));
    }
}
