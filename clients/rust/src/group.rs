//! Process groups (mesh mode): membership views and multicast.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use meshcast_transport::client_proto::{ClientMsg, GroupDelivery, GroupViewInfo};
use tokio::sync::mpsc;

use crate::{ClientError, Confirmation, Handle, Ordering, Pending, Shared};

/// One installed view of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The group.
    pub group: String,
    /// The view's id; every member sees the same ids in the same order.
    pub id: String,
    /// Members, oldest first (`b<node name>#<incarnation>/s<session>`).
    pub members: Vec<String>,
    /// This member's rank in `members` (0 = oldest).
    pub rank: u32,
}

impl From<GroupViewInfo> for View {
    fn from(v: GroupViewInfo) -> View {
        View {
            group: v.group,
            id: v.view,
            members: v.members,
            rank: v.rank,
        }
    }
}

/// A message multicast to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMessage {
    /// The sender's publisher id ([`crate::mesh_publisher_id`], see
    /// [`crate::Client::session_id`]).
    pub publisher: u64,
    /// The sender's sequence number for it.
    pub seq: u64,
    /// The ordering it was sent with.
    pub ordering: Ordering,
    /// Whether it was sent as `safe`.
    pub safe: bool,
    /// The application bytes.
    pub payload: Bytes,
}

impl From<GroupDelivery> for GroupMessage {
    fn from(d: GroupDelivery) -> GroupMessage {
        GroupMessage {
            publisher: d.publisher,
            seq: d.seq,
            ordering: d.ordering,
            safe: d.safe,
            payload: d.payload,
        }
    }
}

/// What a member sees, in order: new views and messages between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    /// A new view was installed.
    View(View),
    /// A message was delivered in the current view.
    Message(GroupMessage),
    /// The checkpoint a member that joined with state receives first
    /// (`None` when it is the group's first member). It comes again, after
    /// a new view, when the member's broker was cut off from the primary
    /// component and rejoined it: replace the local state with it.
    State(Option<Bytes>),
    /// A new member asks for this member's state at exactly this point of
    /// the stream: answer with [`StateRequest::reply`].
    StateRequest(StateRequest),
}

/// A request for this member's state, for a member joining the group.
pub struct StateRequest {
    pub(crate) token: u64,
    pub(crate) shared: Arc<Shared>,
    pub(crate) answered: bool,
}

impl std::fmt::Debug for StateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateRequest")
            .field("token", &self.token)
            .finish()
    }
}

impl PartialEq for StateRequest {
    fn eq(&self, other: &Self) -> bool {
        self.token == other.token
    }
}

impl Eq for StateRequest {}

impl Clone for StateRequest {
    fn clone(&self) -> Self {
        // A clone never answers on drop; only the original does.
        StateRequest {
            token: self.token,
            shared: self.shared.clone(),
            answered: true,
        }
    }
}

impl StateRequest {
    /// Sends this member's checkpoint to the joining member.
    pub fn reply(mut self, state: impl Into<Bytes>) {
        self.answered = true;
        self.shared.send_now(&ClientMsg::StateReply {
            token: self.token,
            data: state.into(),
        });
    }
}

impl Drop for StateRequest {
    fn drop(&mut self) {
        // Never leave a joiner waiting: an unanswered request gets an
        // empty checkpoint.
        if !self.answered {
            self.shared.send_now(&ClientMsg::StateReply {
                token: self.token,
                data: Bytes::new(),
            });
        }
    }
}

/// Membership of one group. Dropping it leaves the group.
///
/// While the broker is cut off from the mesh's primary component
/// ([`crate::Client::mesh_state`]) the membership pauses: no views, no
/// messages. Once the partition heals the broker rejoins the group for it:
/// the member sees a new view (its id in `members` has a new incarnation),
/// then, if it joined with state, a [`GroupEvent::State`] with a fresh
/// checkpoint before any later message. The primary component treated it as
/// crashed meanwhile: what was delivered there is not replayed, the
/// checkpoint carries it.
pub struct Group {
    pub(crate) name: String,
    pub(crate) view: View,
    pub(crate) rx: mpsc::Receiver<GroupEvent>,
    /// Events read while waiting for the checkpoint, handed out first.
    pub(crate) backlog: std::collections::VecDeque<GroupEvent>,
    pub(crate) failed: Arc<OnceLock<ClientError>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) _handle: Arc<Handle>,
    pub(crate) left: bool,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("view", &self.view)
            .finish()
    }
}

impl Group {
    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The latest view this member has seen (updated by [`Group::next`]).
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The next view or message; `None` once the membership ended, after
    /// an `Err` saying why if it ended abnormally.
    pub async fn next(&mut self) -> Option<Result<GroupEvent, ClientError>> {
        if let Some(e) = self.backlog.pop_front() {
            if let GroupEvent::View(v) = &e {
                self.view = v.clone();
            }
            return Some(Ok(e));
        }
        match self.rx.recv().await {
            Some(e) => {
                if let GroupEvent::View(v) = &e {
                    self.view = v.clone();
                }
                Some(Ok(e))
            }
            None => {
                if self.left {
                    return None;
                }
                self.left = true;
                self.failed
                    .get()
                    .cloned()
                    .or_else(|| self.shared.closed.get().cloned())
                    .map(Err)
            }
        }
    }

    /// Reads until the checkpoint arrives, keeping other events for later.
    pub(crate) async fn wait_for_state(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.rx.recv().await {
                Some(GroupEvent::State(data)) => return Ok(data),
                Some(other) => self.backlog.push_back(other),
                None => {
                    self.left = true;
                    return Err(self
                        .failed
                        .get()
                        .cloned()
                        .or_else(|| self.shared.closed.get().cloned())
                        .unwrap_or_else(|| ClientError::closed("group membership ended")));
                }
            }
        }
    }

    /// Sends a message to every member of the group.
    pub async fn multicast(
        &self,
        payload: impl Into<Bytes>,
        ordering: Ordering,
        safe: bool,
    ) -> Result<(), ClientError> {
        self.shared
            .send(&ClientMsg::Multicast {
                group: self.name.clone(),
                ordering,
                safe,
                payload: payload.into(),
                confirm: None,
            })
            .await
    }

    /// Sends a message to every member and waits for the broker's
    /// confirmation, as [`crate::Publisher::publish_confirmed`]: with
    /// `safe`, until it is stable (every surviving member will deliver it),
    /// otherwise until the broker accepted it.
    pub async fn multicast_confirmed(
        &self,
        payload: impl Into<Bytes>,
        ordering: Ordering,
        safe: bool,
    ) -> Result<Confirmation, ClientError> {
        let payload = payload.into();
        crate::confirmed(&self.shared, |confirm| ClientMsg::Multicast {
            group: self.name.clone(),
            ordering,
            safe,
            payload,
            confirm: Some(confirm),
        })
        .await
    }

    /// Leaves the group and waits until the broker has removed the member.
    pub async fn leave(mut self) -> Result<(), ClientError> {
        self.left = true;
        let id = self.shared.next_id();
        self.shared.pending().insert(
            id,
            Pending::Leave {
                group: self.name.clone(),
            },
        );
        self.shared
            .send(&ClientMsg::Leave {
                id,
                group: self.name.clone(),
            })
            .await?;
        while self.rx.recv().await.is_some() {}
        Ok(())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.left && self.shared.closed.get().is_none() {
            let id = self.shared.next_id();
            self.shared.pending().insert(
                id,
                Pending::Leave {
                    group: self.name.clone(),
                },
            );
            self.shared.send_now(&ClientMsg::Leave {
                id,
                group: self.name.clone(),
            });
        }
    }
}
