//! Persisted membership: this broker's incarnation counter and the last mesh
//! view it installed, kept in `membership.json` in its data directory.
//!
//! DESIGN §2.7: "previous" survives restarts. A restarted broker becomes a
//! new incarnation (the stored counter plus one, written before it is used;
//! with no file, the clock in seconds, so that a broker whose data directory
//! was lost still comes back with a larger incarnation than its last one)
//! and, if its last view held other brokers, it never starts a mesh of its
//! own: it joins through its peers (see [`decide_bootstrap`]). The file is
//! replaced atomically (temporary file, fsync, rename, fsync of the
//! directory), so a crash leaves either the old or the new record. A file
//! that cannot be read or parsed stops the broker with an error naming the
//! path: it is never taken as "no history".

use std::io::Write;
use std::path::{Path, PathBuf};

use meshcast_protocol::{MeshView, NodeId, Returning, ViewId};
use serde::{Deserialize, Serialize};

/// Name of the file in the data directory.
pub const FILE_NAME: &str = "membership.json";

/// Version of the file's layout.
const FORMAT: u32 = 1;

/// Why the membership file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The file exists but could not be read.
    #[error("reading the membership file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not hold a membership record this build understands.
    #[error(
        "the membership file {path} is corrupt ({detail}); it holds this broker's incarnation \
         and last mesh view: restore it, or remove it only if this broker's history is lost \
         for good (it then rejoins as a broker with no history)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The file belongs to another broker id (a data directory reused).
    #[error(
        "the membership file {path} belongs to broker {found:?}, not {expected:?}: \
         each broker needs its own data directory"
    )]
    OtherBroker {
        /// The file.
        path: PathBuf,
        /// The id in the file.
        found: String,
        /// The configured id.
        expected: String,
    },
    /// The file could not be written (and made durable).
    #[error("writing the membership file {path}: {source}")]
    Write {
        /// The file (or its directory).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// One broker of a stored mesh view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMember {
    /// The configured broker id, when this broker knew it.
    pub broker: Option<String>,
    /// Its node name (see `meshcast_config::node_name`).
    pub name: u32,
    /// Its incarnation in that view.
    pub incarnation: u64,
    /// The peer address it announced, when known.
    pub peer_addr: Option<String>,
}

impl StoredMember {
    /// The broker id if known, else its node name.
    pub fn label(&self) -> String {
        match &self.broker {
            Some(b) => format!("{b}#{}", self.incarnation),
            None => format!("b{}#{}", self.name, self.incarnation),
        }
    }
}

/// The last mesh view this broker installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredView {
    /// The view id's counter.
    pub counter: u64,
    /// The view id as the core prints it (`v<counter>@<coordinator>`).
    pub id: String,
    /// The view id itself (files written before it was kept have none).
    #[serde(default)]
    pub view_id: Option<ViewId>,
    /// Members, oldest first.
    pub members: Vec<StoredMember>,
}

impl StoredView {
    /// Builds the record of `view`; `lookup(name)` gives a member's broker
    /// id and peer address when known.
    pub fn of(
        view: &MeshView,
        lookup: impl Fn(u32) -> (Option<String>, Option<String>),
    ) -> StoredView {
        StoredView {
            counter: view.id.counter,
            id: view.id.to_string(),
            view_id: Some(view.id),
            members: view
                .members
                .iter()
                .map(|m| {
                    let (broker, peer_addr) = lookup(m.name);
                    StoredMember {
                        broker,
                        name: m.name,
                        incarnation: m.incarnation,
                        peer_addr,
                    }
                })
                .collect(),
        }
    }

    /// The members other than the broker with node name `me`.
    pub fn others(&self, me: u32) -> impl Iterator<Item = &StoredMember> {
        self.members.iter().filter(move |m| m.name != me)
    }

    /// `v7@b1#2 [b1#2, b2#1, b3#4]`, for logs and errors.
    pub fn describe(&self) -> String {
        let members: Vec<String> = self.members.iter().map(StoredMember::label).collect();
        // The coordinator by its broker id when the view names it.
        let coordinator = self.view_id.and_then(|v| {
            let m = self.members.iter().find(|m| {
                m.name == v.coordinator.name && m.incarnation == v.coordinator.incarnation
            })?;
            m.broker.as_ref()?;
            Some(format!("v{}@{}", v.counter, m.label()))
        });
        format!(
            "{} [{}]",
            coordinator.as_deref().unwrap_or(&self.id),
            members.join(", ")
        )
    }
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    format: u32,
    broker: String,
    incarnation: u64,
    view: Option<StoredView>,
    /// Base view of the last value this broker accepted that removes a
    /// broker (see `Broker::accepted_base`); older files have none.
    #[serde(default)]
    accepted: Option<ViewId>,
}

/// The membership file of one broker, opened at start.
#[derive(Debug)]
pub struct MembershipStore {
    path: PathBuf,
    record: Record,
    /// The view stored by the previous run (what [`decide_bootstrap`] uses).
    previous: Option<StoredView>,
    /// The accepted base stored by the previous run.
    previous_accepted: Option<ViewId>,
}

impl MembershipStore {
    /// Reads the file in `data_dir` (if any), takes the next incarnation
    /// (stored + 1, or [`fresh_incarnation`] with no file) and writes it
    /// back before returning.
    pub fn open(data_dir: &Path, broker: &str) -> Result<MembershipStore, MembershipError> {
        let path = data_dir.join(FILE_NAME);
        let stored = match std::fs::read(&path) {
            Ok(bytes) => Some(parse(&path, &bytes, broker)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(MembershipError::Read { path, source }),
        };
        let previous_accepted = stored.as_ref().and_then(|r| r.accepted);
        let (incarnation, previous) = match stored {
            Some(r) => {
                let next =
                    r.incarnation
                        .checked_add(1)
                        .ok_or_else(|| MembershipError::Corrupt {
                            path: path.clone(),
                            detail: "the incarnation counter is at its maximum".into(),
                        })?;
                (next, r.view)
            }
            None => (fresh_incarnation(), None),
        };
        let store = MembershipStore {
            path,
            record: Record {
                format: FORMAT,
                broker: broker.to_string(),
                incarnation,
                view: previous.clone(),
                accepted: previous_accepted,
            },
            previous,
            previous_accepted,
        };
        store.save()?;
        Ok(store)
    }

    /// The incarnation this run uses (persisted).
    pub fn incarnation(&self) -> u64 {
        self.record.incarnation
    }

    /// The last view installed by an earlier run, if any.
    pub fn previous_view(&self) -> Option<&StoredView> {
        self.previous.as_ref()
    }

    /// The last view recorded (by this run or an earlier one).
    pub fn view(&self) -> Option<&StoredView> {
        self.record.view.as_ref()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a new incarnation (after the core rejoined) and persists it.
    /// A smaller value than the stored one is ignored (never goes back).
    pub fn set_incarnation(&mut self, incarnation: u64) -> Result<(), MembershipError> {
        if incarnation <= self.record.incarnation {
            return Ok(());
        }
        self.record.incarnation = incarnation;
        self.save()
    }

    /// Records the base view of a value the core accepted (one that removes
    /// a broker) and persists it, unless it is the one stored already.
    pub fn set_accepted(&mut self, base: ViewId) -> Result<(), MembershipError> {
        if self.record.accepted == Some(base) {
            return Ok(());
        }
        self.record.accepted = Some(base);
        self.save()
    }

    /// What this broker tells the mesh it remembers when it joins after a
    /// restart (see `meshcast_protocol::Returning`): the members of the
    /// view the previous run stored, and the base of the last value it
    /// accepted that removes a broker. `None` with no stored view.
    pub fn returning(&self) -> Option<Returning> {
        let view = self.previous.as_ref()?;
        Some(Returning {
            view: view.view_id,
            members: view
                .members
                .iter()
                .map(|m| NodeId::new(m.name, m.incarnation))
                .collect(),
            accepted: self.previous_accepted,
        })
    }

    /// Records a newly installed view and persists it.
    pub fn set_view(&mut self, view: StoredView) -> Result<(), MembershipError> {
        self.record.view = Some(view);
        self.save()
    }

    /// Replaces the file atomically: temporary file, fsync, rename, fsync
    /// of the directory.
    fn save(&self) -> Result<(), MembershipError> {
        let write = |path: &Path, source| MembershipError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| write(dir, e))?;
        let tmp = self.path.with_extension("json.tmp");
        let mut text = serde_json::to_vec_pretty(&self.record)
            .map_err(|e| write(&self.path, std::io::Error::other(e)))?;
        text.push(b'\n');
        {
            let mut f = std::fs::File::create(&tmp).map_err(|e| write(&tmp, e))?;
            f.write_all(&text).map_err(|e| write(&tmp, e))?;
            f.sync_all().map_err(|e| write(&tmp, e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| write(&self.path, e))?;
        let d = std::fs::File::open(dir).map_err(|e| write(dir, e))?;
        d.sync_all().map_err(|e| write(dir, e))?;
        Ok(())
    }
}

fn parse(path: &Path, bytes: &[u8], broker: &str) -> Result<Record, MembershipError> {
    let corrupt = |detail: String| MembershipError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    let record: Record = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    if record.format != FORMAT {
        return Err(corrupt(format!(
            "format {} (this build reads format {FORMAT})",
            record.format
        )));
    }
    if record.incarnation == 0 {
        return Err(corrupt("incarnation 0 (incarnations start at 1)".into()));
    }
    if record.broker != broker {
        return Err(MembershipError::OtherBroker {
            path: path.to_path_buf(),
            found: record.broker,
            expected: broker.to_string(),
        });
    }
    Ok(record)
}

/// How a broker in mesh mode starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// Start a new one-broker mesh (as configured; no history says otherwise).
    New,
    /// Join an existing mesh through the peers.
    Join {
        /// Set when the configuration asked for a new mesh but the stored
        /// last view holds other brokers (the warning to log).
        overridden: Option<String>,
    },
    /// `--force-new-mesh`: start a new mesh once none of `others` (the
    /// other brokers of the stored last view) answers on its peer link.
    ForceNew {
        /// The brokers to probe first.
        others: Vec<StoredMember>,
    },
}

/// The bootstrap decision (DESIGN §2.7): `configured` is what the
/// configuration says (`MeshConfig::bootstraps`), `force` the operator's
/// `--force-new-mesh`, `previous` the view stored by the previous run and
/// `me` this broker's node name.
///
/// A broker whose stored last view holds other brokers never starts a mesh
/// of its own, whatever the configuration says; only the operator's
/// override does, after a probe.
pub fn decide_bootstrap(
    configured: bool,
    force: bool,
    previous: Option<&StoredView>,
    me: u32,
) -> Bootstrap {
    let others: Vec<StoredMember> = previous
        .map(|v| v.others(me).cloned().collect())
        .unwrap_or_default();
    if force {
        return Bootstrap::ForceNew { others };
    }
    match previous {
        Some(view) if !others.is_empty() => Bootstrap::Join {
            overridden: configured.then(|| {
                format!(
                    "mesh.bootstrap = true is ignored: this broker's last mesh view {} held \
                     other brokers, so it rejoins that mesh through its peers (to start a new \
                     mesh without them, once they are gone for good: meshcast broker \
                     --force-new-mesh)",
                    view.describe()
                )
            }),
        },
        _ if configured => Bootstrap::New,
        _ => Bootstrap::Join { overridden: None },
    }
}

/// The incarnation of a broker with no membership file: the clock in
/// seconds (at least 1). A broker whose data directory was lost thus still
/// comes back larger than the incarnation the mesh remembers (which grew by
/// one per restart or rejoin since its first start), instead of reusing it:
/// the mesh then takes it for a restart of that broker, not for the old
/// member itself.
pub fn fresh_incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

/// The node id of this broker in a stored view, if it is a member.
pub fn stored_self(view: &StoredView, me: u32) -> Option<NodeId> {
    view.members
        .iter()
        .find(|m| m.name == me)
        .map(|m| NodeId::new(m.name, m.incarnation))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshcast_protocol::ViewId;

    fn tempdir(tag: &str) -> PathBuf {
        let d = crate::node::testing::tempdir(tag);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn view(counter: u64, members: &[(u32, u64)]) -> MeshView {
        let members: Vec<NodeId> = members.iter().map(|(n, i)| NodeId::new(*n, *i)).collect();
        MeshView {
            id: ViewId {
                counter,
                coordinator: members[0],
            },
            members,
        }
    }

    fn stored(members: &[(u32, u64)]) -> StoredView {
        StoredView::of(&view(3, members), |n| (Some(format!("b{n}")), None))
    }

    #[test]
    fn incarnations_count_up_and_the_view_survives_a_restart() {
        let dir = tempdir("store-count");
        let mut s = MembershipStore::open(&dir, "b1").unwrap();
        // No file: the clock, so a lost data directory never brings back
        // an incarnation the mesh has seen.
        let first = s.incarnation();
        assert!(first >= fresh_incarnation() - 5 && first <= fresh_incarnation());
        assert!(s.previous_view().is_none());
        let v = stored(&[(1, 1), (2, 1), (3, 1)]);
        s.set_view(v.clone()).unwrap();
        s.set_incarnation(first + 1).unwrap(); // a rejoin
        s.set_incarnation(1).unwrap(); // never goes back
        drop(s);
        let s = MembershipStore::open(&dir, "b1").unwrap();
        assert_eq!(s.incarnation(), first + 2);
        assert_eq!(s.previous_view(), Some(&v));
        drop(s);
        let s = MembershipStore::open(&dir, "b1").unwrap();
        assert_eq!(
            s.incarnation(),
            first + 3,
            "each start is persisted before use"
        );
        assert!(!dir.join("membership.json.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_an_error_naming_the_path() {
        let dir = tempdir("store-corrupt");
        let path = dir.join(FILE_NAME);
        for (bytes, what) in [
            (&b"{\"format\":1,\"broker\":\"b1\",\"incar"[..], "EOF"),
            (&b"\x00\x01garbage"[..], "expected"),
            (
                &b"{\"format\":9,\"broker\":\"b1\",\"incarnation\":2,\"view\":null}"[..],
                "format 9",
            ),
            (
                &b"{\"format\":1,\"broker\":\"b1\",\"incarnation\":0,\"view\":null}"[..],
                "incarnation 0",
            ),
        ] {
            std::fs::write(&path, bytes).unwrap();
            let e = MembershipStore::open(&dir, "b1").unwrap_err();
            assert!(matches!(e, MembershipError::Corrupt { .. }), "{e}");
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(text.contains(what), "{what:?} not in {text}");
            // Refused, not replaced: the file is left as it was.
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
        }
        std::fs::write(
            &path,
            b"{\"format\":1,\"broker\":\"b2\",\"incarnation\":2,\"view\":null}",
        )
        .unwrap();
        let e = MembershipStore::open(&dir, "b1").unwrap_err();
        assert!(matches!(e, MembershipError::OtherBroker { .. }), "{e}");
        assert!(e.to_string().contains("\"b2\""), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_broker_whose_last_view_held_others_never_bootstraps_alone() {
        let three = stored(&[(1, 4), (2, 1), (3, 2)]);
        let alone = stored(&[(1, 4)]);
        // History with others: join, whatever the configuration says; the
        // override is explained, naming the view and its members.
        match decide_bootstrap(true, false, Some(&three), 1) {
            Bootstrap::Join {
                overridden: Some(w),
            } => {
                assert!(w.contains("v3@b1#4 [b1#4, b2#1, b3#2]"), "{w}");
                assert!(w.contains("--force-new-mesh"), "{w}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide_bootstrap(false, false, Some(&three), 1),
            Bootstrap::Join { overridden: None }
        );
        // No history, or a view of this broker alone: as configured.
        assert_eq!(decide_bootstrap(true, false, None, 1), Bootstrap::New);
        assert_eq!(
            decide_bootstrap(true, false, Some(&alone), 1),
            Bootstrap::New
        );
        assert_eq!(
            decide_bootstrap(false, false, None, 1),
            Bootstrap::Join { overridden: None }
        );
        // The operator's override probes the others first.
        match decide_bootstrap(false, true, Some(&three), 1) {
            Bootstrap::ForceNew { others } => {
                let names: Vec<u32> = others.iter().map(|m| m.name).collect();
                assert_eq!(names, vec![2, 3]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decide_bootstrap(true, true, None, 1),
            Bootstrap::ForceNew { others: vec![] }
        );
    }
}
