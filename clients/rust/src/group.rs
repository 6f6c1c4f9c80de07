//! Process groups (mesh mode): membership views and multicast.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use meshcast_transport::client_proto::{ClientMsg, GroupDelivery, GroupViewInfo};
use tokio::sync::mpsc;

use crate::{ClientError, Confirmation, Handle, Ordering, Pending, Publish, Shared};

/// One installed view of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// The group.
    pub group: String,
    /// The view's id; every member sees the same ids in the same order.
    pub id: String,
    /// Members, oldest first (`<broker id>/s<session>`, e.g. `b1/s2`;
    /// `b1#1/s2` after broker `b1` rejoined the mesh once).
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

/// This session's broker was excluded from the mesh's primary component
/// while it was cut off, and has been admitted again as a new incarnation
/// ([`GroupEvent::Rejoined`], [`crate::SubscriptionEvent::Rejoined`]).
///
/// The session's memberships under the old incarnation ended there: the
/// next view of each of its groups lists it as [`Rejoined::member`], and
/// what the primary component delivered meanwhile may be missing (a member
/// that joined with state gets a fresh [`GroupEvent::State`] after that
/// view, before any later message). The session id stays the same; its
/// messages from now on carry [`Rejoined::publisher`] (also
/// [`crate::Client::publisher_id`]), a new publisher stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejoined {
    /// The broker's new incarnation.
    pub incarnation: u64,
    /// The session's publisher id from now on
    /// ([`crate::mesh_publisher_id`] with the new incarnation).
    pub publisher: u64,
    /// The session as the new views list it in [`View::members`]
    /// (`<broker id>#<rejoins>/s<session>`, e.g. `b1#1/s2`).
    pub member: String,
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

/// What a member sees, in order: new views and messages between them, and
/// (mesh mode) its broker leaving and coming back to the primary component.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupEvent {
    /// A new view was installed.
    View(View),
    /// A message was delivered in the current view.
    Message(GroupMessage),
    /// The checkpoint a member that joined with state receives first
    /// (`None` when it is the group's first member). It comes again, after
    /// a new view, when the member's broker was cut off from the primary
    /// component and rejoined it: replace the local state with it.
    ///
    /// It is the state at the last view before it: usually the view that
    /// admitted the member, but if the member giving the state left during
    /// the transfer, a later view (the views in between come first, with
    /// no messages: the checkpoint holds what was delivered in them).
    State(Option<Bytes>),
    /// A new member asks for this member's state at exactly this point of
    /// the stream: answer with [`StateRequest::reply`].
    StateRequest(StateRequest),
    /// The broker was cut off from the mesh's primary component. Every
    /// message before this event was delivered in the membership it was
    /// cut off in; nothing more comes until [`GroupEvent::Unblocked`] or
    /// [`GroupEvent::Rejoined`]. Multicasts are refused meanwhile
    /// ([`ClientError::Blocked`]).
    Blocked,
    /// The broker is back in the primary component in the same membership:
    /// nothing was missed, the stream goes on where it stopped.
    Unblocked,
    /// The broker is back as a new incarnation: this membership ended at
    /// [`GroupEvent::Blocked`] and goes on as a new one, whose view comes
    /// next (then, for a member that joined with state, a fresh
    /// checkpoint); messages delivered meanwhile may be missing. It stands
    /// for [`GroupEvent::Unblocked`] (no `Unblocked` follows it).
    Rejoined(Rejoined),
    /// The connection to the broker was lost and the client opened a new
    /// session and joined the group again: the new membership's view comes
    /// next (then, for a member that joined with state, a fresh
    /// checkpoint). It is a new member: messages delivered while the
    /// client was away may be missing.
    Reconnected(crate::Reconnected),
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
/// While the broker is cut off from the mesh's primary component the
/// membership pauses: [`GroupEvent::Blocked`], then no views and no
/// messages. If the partition heals before the primary component excluded
/// the broker, [`GroupEvent::Unblocked`] follows and nothing was missed.
/// Otherwise the broker rejoins the group for it: [`GroupEvent::Rejoined`],
/// then a new view (its id in `members` has a new incarnation), then, if it
/// joined with state, a [`GroupEvent::State`] with a fresh checkpoint before
/// any later message. The primary component treated it as crashed
/// meanwhile: what was delivered there is not replayed, the checkpoint
/// carries it.
///
/// When the client loses its connection and moves to another broker
/// ([`crate::ClientOptions::reconnect`]), it joins the group again there:
/// [`GroupEvent::Reconnected`], the new membership's view, and for a member
/// that joined with state a fresh [`GroupEvent::State`]. It is a new
/// member: what was delivered meanwhile is not replayed.
///
/// `Group` is a [`Stream`] of the same items as [`Group::next`].
///
/// Reading and sending are independent: [`Group::sender`] gives a
/// cloneable [`GroupSender`] to multicast from another task while this one
/// keeps reading (for example to answer a [`GroupEvent::StateRequest`]
/// while a [`GroupSender::multicast_confirmed`] is awaited):
///
/// ```no_run
/// # async fn demo(client: meshcast_client::Client) -> Result<(), meshcast_client::ClientError> {
/// use meshcast_client::{GroupEvent, Publish};
///
/// let (mut group, _state) = client.join_with_state("ledger").await?;
/// let sender = group.sender();
/// let write = tokio::spawn(async move {
///     sender.multicast_confirmed("entry", Publish::total().safe()).await
/// });
/// while let Some(event) = group.next().await {
///     match event? {
///         GroupEvent::StateRequest(r) => r.reply("the state"),
///         GroupEvent::Message(m) => println!("{:?}", m.payload),
///         _ => {}
///     }
/// #   break;
/// }
/// write.await.expect("the writer task")?;
/// # Ok(()) }
/// ```
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
    /// an `Err` saying why if it ended abnormally. (`Group` is also a
    /// [`Stream`] of the same items.)
    pub async fn next(&mut self) -> Option<Result<GroupEvent, ClientError>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<GroupEvent, ClientError>>> {
        let event = match self.backlog.pop_front() {
            Some(e) => Some(e),
            None => match self.rx.poll_recv(cx) {
                Poll::Ready(e) => e,
                Poll::Pending => return Poll::Pending,
            },
        };
        match event {
            Some(e) => {
                if let GroupEvent::View(v) = &e {
                    self.view = v.clone();
                }
                Poll::Ready(Some(Ok(e)))
            }
            None => {
                if self.left {
                    return Poll::Ready(None);
                }
                self.left = true;
                Poll::Ready(
                    self.failed
                        .get()
                        .cloned()
                        .or_else(|| self.shared.closed.get().cloned())
                        .map(Err),
                )
            }
        }
    }

    /// Reads until the checkpoint arrives, keeping later-relevant events
    /// for later.
    ///
    /// The join completes where the checkpoint was taken. If the broker
    /// was cut off and rejoined the group meanwhile, the checkpoint is the
    /// rejoined membership's, taken at its (later) view: the views before
    /// it become the group's current view, and the `Blocked`, `Unblocked`
    /// and `Rejoined` of a membership the application never saw are not
    /// reported (nothing was delivered to it before the checkpoint).
    pub(crate) async fn wait_for_state(&mut self) -> Result<Option<Bytes>, ClientError> {
        loop {
            match self.rx.recv().await {
                Some(GroupEvent::State(data)) => return Ok(data),
                Some(GroupEvent::View(v)) => self.view = v,
                Some(GroupEvent::Blocked | GroupEvent::Unblocked | GroupEvent::Rejoined(_)) => {}
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

    /// A cloneable handle that multicasts to this group, usable while this
    /// `Group` is being read (see [`GroupSender`]).
    pub fn sender(&self) -> GroupSender {
        GroupSender {
            group: self.name.clone(),
            shared: self.shared.clone(),
            _handle: self._handle.clone(),
        }
    }

    /// Sends a message to every member of the group
    /// ([`GroupSender::multicast`]).
    pub async fn multicast(
        &self,
        payload: impl Into<Bytes>,
        declared: impl Into<Publish>,
    ) -> Result<(), ClientError> {
        multicast(&self.shared, &self.name, payload.into(), declared.into()).await
    }

    /// Sends a message to every member and waits for the broker's
    /// confirmation ([`GroupSender::multicast_confirmed`]). To keep reading
    /// the group meanwhile, await it through [`Group::sender`] instead.
    pub async fn multicast_confirmed(
        &self,
        payload: impl Into<Bytes>,
        declared: impl Into<Publish>,
    ) -> Result<Confirmation, ClientError> {
        multicast_confirmed(&self.shared, &self.name, payload.into(), declared.into()).await
    }

    /// Leaves the group and waits until the broker has removed the member,
    /// at most [`crate::ClientOptions::close_timeout`]
    /// ([`ClientError::TimedOut`]).
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
        let limit = self.shared.opts.close_timeout;
        tokio::time::timeout(limit, async { while self.rx.recv().await.is_some() {} })
            .await
            .map_err(|_| ClientError::TimedOut {
                what: format!("leave group {:?}", self.name),
                timeout: limit,
            })
    }
}

/// The same items as [`Group::next`]: views, messages and mesh events in
/// order, then one `Err` if the membership ended abnormally.
impl Stream for Group {
    type Item = Result<GroupEvent, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_event(cx)
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

/// The sending half of a group: multicasts to it while its [`Group`] is
/// read elsewhere. Cloning is cheap; it keeps the session open, not the
/// membership (multicasting needs no membership: once the `Group` is gone
/// its messages still go to the group's members).
#[derive(Clone)]
pub struct GroupSender {
    group: String,
    shared: Arc<Shared>,
    _handle: Arc<Handle>,
}

impl std::fmt::Debug for GroupSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSender")
            .field("group", &self.group)
            .finish()
    }
}

impl GroupSender {
    /// The group it sends to.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Sends a message to every member of the group. Returns once it is
    /// queued for sending; a refusal (for example
    /// [`ClientError::Blocked`]) is reported by the next
    /// [`crate::Client::flush`].
    pub async fn multicast(
        &self,
        payload: impl Into<Bytes>,
        declared: impl Into<Publish>,
    ) -> Result<(), ClientError> {
        multicast(&self.shared, &self.group, payload.into(), declared.into()).await
    }

    /// Sends a message to every member and waits for the broker's
    /// confirmation, as [`crate::Publisher::publish_confirmed`]: once the
    /// broker delivered it (with `safe`, once it is stable: every surviving
    /// member will deliver it). While the broker is blocked it is refused
    /// with [`ClientError::Blocked`].
    pub async fn multicast_confirmed(
        &self,
        payload: impl Into<Bytes>,
        declared: impl Into<Publish>,
    ) -> Result<Confirmation, ClientError> {
        multicast_confirmed(&self.shared, &self.group, payload.into(), declared.into()).await
    }
}

async fn multicast(
    shared: &Shared,
    group: &str,
    payload: Bytes,
    declared: Publish,
) -> Result<(), ClientError> {
    shared
        .send(&ClientMsg::Multicast {
            group: group.to_string(),
            ordering: declared.ordering(),
            safe: declared.is_safe(),
            payload,
            confirm: None,
        })
        .await
}

async fn multicast_confirmed(
    shared: &Shared,
    group: &str,
    payload: Bytes,
    declared: Publish,
) -> Result<Confirmation, ClientError> {
    crate::confirmed(shared, |confirm| ClientMsg::Multicast {
        group: group.to_string(),
        ordering: declared.ordering(),
        safe: declared.is_safe(),
        payload,
        confirm: Some(confirm),
    })
    .await
}
