//! Subscriptions and the messages they deliver.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use meshcast_topics::Pattern;
use meshcast_transport::client_proto::{ClientMsg, CloseCode};
use tokio::sync::mpsc;

use crate::{ClientError, Handle, Ordering, Pending, Rejoined, Shared, View};

/// A message delivered to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published on.
    pub topic: String,
    /// The application bytes.
    pub payload: Bytes,
    /// The publisher id: the publisher's session id on a single broker, in
    /// a mesh [`crate::mesh_publisher_id`] (see [`crate::Client::session_id`]).
    pub publisher: u64,
    /// The publisher's sequence number for it (1, 2, 3, ...).
    pub seq: u64,
    /// The ordering the publisher declared.
    pub ordering: Ordering,
    /// Whether it was published as `safe`.
    pub safe: bool,
    /// Where the publisher wants an answer (see [`crate::Client::reply`]).
    pub reply_to: Option<String>,
}

/// What a subscription delivers, in order: messages, and (mesh mode) the
/// new views of the groups its pattern reaches and its broker leaving and
/// coming back to the mesh's primary component.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionEvent {
    /// A message matching the pattern.
    Message(Message),
    /// A new view of a group the pattern reaches. Every member of the group
    /// sees the same views, each at the same place among the messages of
    /// that group: two subscribers that both pass from one view to the next
    /// delivered the same messages of the group in between.
    View(View),
    /// The broker was cut off from the mesh's primary component: every
    /// message before this event was delivered in the views the
    /// subscription was in; nothing more comes until
    /// [`SubscriptionEvent::Unblocked`] or [`SubscriptionEvent::Rejoined`].
    Blocked,
    /// The broker is back in the primary component in the same views:
    /// nothing was missed.
    Unblocked,
    /// The broker is back as a new incarnation: the subscription's
    /// memberships ended at [`SubscriptionEvent::Blocked`] and go on as new
    /// ones, whose views come next; messages delivered meanwhile may be
    /// missing. It stands for [`SubscriptionEvent::Unblocked`] (no
    /// `Unblocked` follows it).
    Rejoined(Rejoined),
    /// The connection to the broker was lost and the client opened a new
    /// session, here on [`Reconnected::broker`], and subscribed again: the
    /// views of the new memberships come next (mesh mode). This is a new
    /// member, not the old one resumed: messages published while the
    /// client was away may be missing, and one delivered just before the
    /// loss may come again (its `publisher` and `seq` tell).
    Reconnected(Reconnected),
}

/// The client moved to a new session after losing its connection
/// ([`SubscriptionEvent::Reconnected`], [`crate::GroupEvent::Reconnected`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnected {
    /// Why the previous connection ended.
    pub lost: String,
    /// The address of the broker now connected to.
    pub server: String,
    /// That broker's id.
    pub broker: String,
    /// The new session's id.
    pub session: u64,
}

impl std::fmt::Display for Reconnected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reconnected to broker {} at {} as session {} after the connection was lost ({}); \
             messages published meanwhile may be missing",
            self.broker, self.server, self.session, self.lost
        )
    }
}

/// A stream of the messages matching one pattern.
///
/// As a [`Stream`] it yields `Ok(message)` in delivery order. In mesh mode
/// the subscription is a member of every group its pattern reaches; read
/// with [`Subscription::next_event`] to also see those groups' new views in
/// their place among the messages ([`Subscription::views`] holds the latest
/// ones either way). If the subscription or the session ends abnormally the
/// stream yields one `Err` saying why (for example
/// [`ClientError::SlowSubscription`] when the application fell more than
/// `ClientOptions::subscription_buffer` events behind, or
/// [`ClientError::Expelled`] when the mesh removed it from a group), then
/// ends. Dropping it unsubscribes.
///
/// When the broker is cut off from the mesh's primary component
/// [`Subscription::next_event`] yields [`SubscriptionEvent::Blocked`] in its
/// place and nothing more arrives. If the partition heals before the
/// primary component excluded the broker, [`SubscriptionEvent::Unblocked`]
/// follows and nothing was missed; otherwise [`SubscriptionEvent::Rejoined`]
/// follows, then a new view of each group (the session rejoined them), and
/// messages the primary component delivered meanwhile are not replayed.
/// When the client loses its connection and moves to another broker
/// ([`crate::ClientOptions::reconnect`]), [`SubscriptionEvent::Reconnected`]
/// comes in its place, then the views of the new memberships: a new
/// member, so messages published meanwhile may be missing.
///
/// The [`Stream`] of messages skips these events: read with `next_event`
/// (or watch [`crate::Client::mesh_state`]) to see them.
pub struct Subscription {
    id: u64,
    pattern: Pattern,
    /// The latest view of each group the pattern reaches (mesh mode).
    views: Vec<View>,
    rx: mpsc::Receiver<SubscriptionEvent>,
    failed: Arc<OnceLock<ClientError>>,
    shared: Arc<Shared>,
    /// Keeps the session open while the subscription lives (`None` for the
    /// client's own inbox, which must not).
    _handle: Option<Arc<Handle>>,
    finished: bool,
    unsubscribed: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("pattern", &self.pattern.as_str())
            .finish()
    }
}

impl Subscription {
    pub(crate) fn new(
        id: u64,
        pattern: Pattern,
        views: Vec<View>,
        rx: mpsc::Receiver<SubscriptionEvent>,
        failed: Arc<OnceLock<ClientError>>,
        shared: Arc<Shared>,
        handle: Option<Arc<Handle>>,
    ) -> Subscription {
        Subscription {
            id,
            pattern,
            views,
            rx,
            failed,
            shared,
            _handle: handle,
            finished: false,
            unsubscribed: false,
        }
    }

    /// The subscription's id within its session.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The pattern it matches.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// Mesh mode: the latest view of each group the pattern reaches, as of
    /// the last event read. Right after [`crate::Client::subscribe`] these
    /// are the views the subscription was installed in (the join barrier:
    /// every message ordered after them is delivered to it). Empty on a
    /// single broker, which has no groups.
    pub fn views(&self) -> &[View] {
        &self.views
    }

    /// The latest view of `group`, if the pattern reaches it.
    pub fn view(&self, group: &str) -> Option<&View> {
        self.views.iter().find(|v| v.group == group)
    }

    /// The next message, view or mesh event, in order; `None` once the
    /// subscription ended, after an `Err` saying why if it ended
    /// abnormally.
    pub async fn next_event(&mut self) -> Option<Result<SubscriptionEvent, ClientError>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<SubscriptionEvent, ClientError>>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(e)) => {
                if let SubscriptionEvent::View(v) = &e {
                    match self.views.iter_mut().find(|x| x.group == v.group) {
                        Some(x) => *x = v.clone(),
                        None => self.views.push(v.clone()),
                    }
                }
                Poll::Ready(Some(Ok(e)))
            }
            Poll::Ready(None) => {
                self.finished = true;
                if let Some(e) = self.failed.get() {
                    return Poll::Ready(Some(Err(e.clone())));
                }
                match self.shared.closed.get() {
                    Some(ClientError::Closed {
                        code: Some(CloseCode::Normal),
                        ..
                    })
                    | None => Poll::Ready(None),
                    Some(e) => Poll::Ready(Some(Err(e.clone()))),
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Ends the subscription and waits until the broker has removed it,
    /// at most [`crate::ClientOptions::close_timeout`]
    /// ([`ClientError::TimedOut`]).
    pub async fn unsubscribe(mut self) -> Result<(), ClientError> {
        self.unsubscribed = true;
        self.shared.pending().insert(self.id, Pending::Unsubscribe);
        if let Err(e) = self
            .shared
            .send(&ClientMsg::Unsubscribe { id: self.id })
            .await
        {
            self.shared.pending().remove(&self.id);
            return Err(e);
        }
        // The reader drops this route when the broker's answer arrives,
        // which closes the channel.
        let limit = self.shared.opts.close_timeout;
        tokio::time::timeout(limit, async { while self.rx.recv().await.is_some() {} })
            .await
            .map_err(|_| ClientError::TimedOut {
                what: format!("unsubscribe {:?}", self.pattern.as_str()),
                timeout: limit,
            })
    }
}

/// Yields the messages only; views still update [`Subscription::views`],
/// and mesh events are passed over.
impl Stream for Subscription {
    type Item = Result<Message, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            return match self.poll_event(cx) {
                Poll::Ready(Some(Ok(SubscriptionEvent::Message(m)))) => Poll::Ready(Some(Ok(m))),
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            };
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let live = self.shared.closed.get().is_none() && self.failed.get().is_none();
        if !self.unsubscribed && live {
            self.shared.pending().insert(self.id, Pending::Unsubscribe);
            self.shared
                .send_now(&ClientMsg::Unsubscribe { id: self.id });
        }
    }
}
