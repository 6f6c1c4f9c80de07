//! Async Rust client for meshcast brokers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), meshcast_client::ClientError> {
//! use futures_util::StreamExt;
//! use meshcast_client::{Client, ClientOptions, Publish};
//!
//! // Several brokers of one mesh: the client moves to the next one if its
//! // connection is lost (see "Reconnecting" on `Client`).
//! let opts = ClientOptions::parse("broker1.example.com:4700,broker2.example.com:4700")?
//!     .ca_file("/etc/meshcast/ca.pem");
//! let client = Client::connect(opts).await?;
//! let mut sub = client.subscribe("orders/**").await?;
//! let orders = client.publisher("orders/eu/created", Publish::total())?;
//! orders.publish("order 1").await?;
//! if let Some(Ok(msg)) = sub.next().await {
//!     println!("{} {:?}", msg.topic, msg.payload);
//! }
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! The types an application matches on are re-exported here:
//! [`ClientError`] (with [`ConnectCause`], [`CloseCode`], [`RejectCode`]),
//! [`Topic`], [`Pattern`], [`TopicError`], [`PatternError`].
//!
//! One client is one QUIC connection with one stream each way. Publishes are
//! appended to a bounded outbox and written in batches; `subscribe` returns
//! only once the broker has installed the subscription, so every matching
//! message published after that point is delivered to it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod connect;
mod error;
mod group;
mod inbox;
mod options;
mod outbox;
mod publish;
mod reader;
mod resume;
mod subscription;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use meshcast_transport::client_proto::{self, ClientMsg, Welcome};
use tokio::sync::{mpsc, oneshot};

pub use error::{ClientError, ConnectCause};
pub use group::{Group, GroupEvent, GroupMessage, GroupSender, Rejoined, StateRequest, View};
pub use inbox::Gather;
pub use meshcast_topics::{Pattern, PatternError, Topic, TopicError, foreign_syntax_warning};
pub use meshcast_transport::Secret;
pub use meshcast_transport::client_proto::{
    CloseCode, Ordering, PROTOCOL_VERSION, RejectCode, mesh_publisher_id,
};
pub use options::{ClientOptions, ServerAddr};
pub use publish::Publish;
pub use subscription::{Message, Reconnected, Subscription, SubscriptionEvent};

use outbox::Outbox;

/// A request waiting for the broker's answer.
pub(crate) enum Pending {
    Subscribe {
        pattern: Pattern,
        tap: bool,
        tx: mpsc::Sender<SubscriptionEvent>,
        failed: Arc<OnceLock<ClientError>>,
        reply: oneshot::Sender<Result<Vec<View>, ClientError>>,
    },
    Unsubscribe,
    Join {
        group: String,
        state: bool,
        tx: mpsc::Sender<GroupEvent>,
        failed: Arc<OnceLock<ClientError>>,
        reply: oneshot::Sender<Result<View, ClientError>>,
    },
    Leave {
        group: String,
    },
    Ping {
        reply: oneshot::Sender<Result<(), ClientError>>,
    },
    Confirm {
        reply: oneshot::Sender<Result<Confirmation, ClientError>>,
    },
    /// A subscription made again on a new session (after a reconnect).
    Resubscribe,
    /// A group joined again on a new session (after a reconnect).
    Rejoin {
        group: String,
    },
}

/// What the broker confirmed about a publish (see
/// [`Publisher::publish_confirmed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmation {
    /// The publisher's sequence number given to the message (the `seq` its
    /// receivers see).
    pub seq: u64,
    /// `true`: the message was `safe` and is stable — every broker hosting
    /// members of its group holds it, so every member that survives into
    /// the next view delivers it. `false`: the broker accepted it.
    pub stable: bool,
}

/// The current connection: replaced when the client reconnects.
pub(crate) struct Link {
    pub(crate) conn: quinn::Connection,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) welcome: Welcome,
    /// The broker's address, for messages.
    pub(crate) label: String,
    /// Its index in [`ClientOptions::servers`].
    pub(crate) index: usize,
}

pub(crate) struct Shared {
    link: Mutex<Link>,
    outbox: Outbox,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    /// Why the session ended, once it has.
    closed: OnceLock<ClientError>,
    /// The first publish the broker refused (or that a lost connection
    /// left in doubt) since the last `flush`.
    rejection: Mutex<Option<ClientError>>,
    /// Whether the broker is outside the primary component (mesh mode).
    blocked: tokio::sync::watch::Sender<bool>,
    /// The publisher id of the session's next messages (the welcome's, then
    /// each `Rejoined`'s).
    publisher: AtomicU64,
    /// The inbox for answers to requests, made on first use.
    inbox: tokio::sync::OnceCell<Arc<inbox::Inbox>>,
    opts: ClientOptions,
    subscription_buffer: usize,
}

impl Shared {
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, AtomicOrdering::Relaxed)
    }

    pub(crate) fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn conn(&self) -> quinn::Connection {
        self.link().conn.clone()
    }

    fn closed_error(&self) -> ClientError {
        self.closed
            .get()
            .cloned()
            .or_else(|| self.connection_reason())
            .unwrap_or_else(|| ClientError::closed("connection lost"))
    }

    /// Records the first refusal (or doubt) since the last `flush`.
    pub(crate) fn set_rejection(&self, err: ClientError) {
        let mut first = self.rejection.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(err);
        }
    }

    /// Queues a small control frame without waiting for room (used where
    /// awaiting is impossible, e.g. in `Drop`).
    pub(crate) fn send_now(&self, msg: &ClientMsg) {
        self.outbox.push_now(|buf| {
            let _ = client_proto::encode_client(msg, buf);
        });
    }

    /// Records why the session ended (first reason wins) and stops writing.
    pub(crate) fn set_closed(&self, reason: ClientError) {
        let _ = self.closed.set(reason);
        self.outbox.close();
    }

    /// The reason the connection closed, as the user should see it.
    pub(crate) fn connection_reason(&self) -> Option<ClientError> {
        self.conn()
            .close_reason()
            .map(|e| error::from_connection_error(&e))
    }

    pub(crate) async fn send(&self, msg: &ClientMsg) -> Result<(), ClientError> {
        if let Some(e) = self.closed.get() {
            return Err(e.clone());
        }
        self.outbox
            .push(|buf| {
                client_proto::encode_client(msg, buf)
                    .map_err(|e| ClientError::Encode(e.to_string()))
            })
            .await
            .map_err(|e| match e {
                ClientError::Encode(_) => e,
                _ => self.closed_error(),
            })
    }
}

/// A session with a broker (or, with several addresses and
/// [`ClientOptions::reconnect`], with one broker after another).
///
/// Cloning is cheap; the session closes when [`Client::close`] is called or
/// when the last clone, [`Publisher`] and [`Subscription`] is dropped.
///
/// # Reconnecting
///
/// When the connection is lost (the broker crashed or shut down, the
/// network failed) and [`ClientOptions::reconnect`] is set, the client
/// opens a new session with the next broker of [`ClientOptions::servers`]
/// (the same one when it is the only one), then subscribes and joins again
/// everything that was open. Each stream then yields
/// [`SubscriptionEvent::Reconnected`] / [`GroupEvent::Reconnected`],
/// followed by the views of its new memberships. The new session is a new
/// member: messages delivered while the client was away are **not**
/// replayed (they may be missing), a member that joined with state gets a
/// fresh checkpoint, and this session's publishes are a new publisher
/// stream. Requests that were in flight when the connection was lost fail
/// with [`ClientError::ConnectionLost`]: a publish that was not confirmed
/// may or may not have been delivered, and the next [`Client::flush`]
/// reports the loss too. If the old broker still runs (the network failed,
/// not the broker), it keeps the old session, and its memberships in the
/// groups' views, until its `limits.session_timeout_ms` passes; the views
/// then show the old member leave. A session ended on purpose (by
/// [`Client::close`], or by the broker for a slow consumer or a protocol
/// error) is not resumed.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    handle: Arc<Handle>,
}

/// Closes the session when the last user-facing handle goes away (the
/// background tasks hold only `Shared`, so they never keep it open).
pub(crate) struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.shared.closed.get().is_none() {
            self.shared.set_closed(ClientError::Closed {
                code: Some(CloseCode::Normal),
                reason: "client dropped".into(),
            });
            self.shared
                .conn()
                .close(CloseCode::Normal.code().into(), b"client dropped");
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let link = self.shared.link();
        f.debug_struct("Client")
            .field("session", &link.welcome.session)
            .field("broker", &link.welcome.broker)
            .field("server", &link.label)
            .finish()
    }
}

impl Client {
    /// Connects to the first broker of `addrs` that accepts the session,
    /// trying them in order (the other options apply to each); the same as
    /// [`Client::connect`] with [`ClientOptions::servers`] set to `addrs`.
    pub async fn connect_any(
        addrs: &[SocketAddr],
        mut opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        opts.servers = addrs.iter().copied().map(ServerAddr::Ip).collect();
        Client::connect(opts).await
    }

    /// Connects to the first broker of [`ClientOptions::servers`] that
    /// accepts the session (each attempt bounded by
    /// [`ClientOptions::connect_timeout`]), performs the handshake and
    /// starts the reader and writer tasks. A failure says which address
    /// failed and why, as far as the client can tell
    /// ([`ClientError::Connect`] with a [`ConnectCause`]).
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let opened = connect::open_any(&opts, 0).await?;
        let connect::Opened {
            conn,
            endpoint,
            welcome,
            label,
            index,
            send,
            frames,
        } = opened;
        let publisher = welcome.publisher;
        let subscription_buffer = opts.subscription_buffer.max(1);
        let shared = Arc::new(Shared {
            link: Mutex::new(Link {
                conn,
                endpoint,
                welcome,
                label,
                index,
            }),
            outbox: Outbox::new(opts.outbox_bytes),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            closed: OnceLock::new(),
            rejection: Mutex::new(None),
            blocked: tokio::sync::watch::Sender::new(false),
            publisher: AtomicU64::new(publisher),
            inbox: tokio::sync::OnceCell::new(),
            opts,
            subscription_buffer,
        });
        let generation = shared.outbox.generation();
        tokio::spawn(writer(shared.clone(), send, generation));
        tokio::spawn(reader::run(shared.clone(), frames));
        let handle = Arc::new(Handle {
            shared: shared.clone(),
        });
        Ok(Client { shared, handle })
    }

    /// This session's id (numbered from 1 on every broker start); it
    /// changes only when the client reconnects (a new session).
    ///
    /// It is not, in a mesh, the publisher id that receivers see in
    /// [`Message::publisher`] and [`GroupMessage::publisher`]: that is
    /// [`Client::publisher_id`]. On a single broker the two are equal. In a
    /// mesh the publisher id is
    /// [`mesh_publisher_id`]`(node_name(broker_id), incarnation, session_id)`,
    /// where `incarnation` is the broker's current one (shown in its status
    /// as `core.mesh.incarnation`; views list the session as
    /// `<broker id>/s<session_id>`):
    /// unique across restarts, and new after the broker rejoins the mesh
    /// (the session's later messages are then a new publisher stream,
    /// announced by [`SubscriptionEvent::Rejoined`] /
    /// [`GroupEvent::Rejoined`]).
    pub fn session_id(&self) -> u64 {
        self.shared.link().welcome.session
    }

    /// The publisher id this session's messages carry from now on: what
    /// receivers see in [`Message::publisher`] and
    /// [`GroupMessage::publisher`]. The broker's welcome gives it; after a
    /// rejoin it is the [`Rejoined::publisher`] of the event announcing it
    /// (updated as soon as the client reads that event from the broker,
    /// which may be before the application reads it from a stream). On a
    /// single broker it is [`Client::session_id`].
    pub fn publisher_id(&self) -> u64 {
        self.shared.publisher.load(AtomicOrdering::Acquire)
    }

    /// The id of the broker this client is connected to (another one after
    /// a reconnect).
    pub fn broker_id(&self) -> String {
        self.shared.link().welcome.broker.clone()
    }

    /// The user the broker authenticated this session as (`None` on a
    /// broker in development mode, without `[auth]`).
    pub fn user(&self) -> Option<String> {
        self.shared.link().welcome.user.clone()
    }

    /// The address of the broker this client is connected to, as given
    /// (and, for a host name, as resolved).
    pub fn server(&self) -> String {
        self.shared.link().label.clone()
    }

    /// Whether the broker is outside the mesh's primary component. While it
    /// is, nothing is delivered and publishes are refused
    /// ([`ClientError::Blocked`]); watch it with [`Client::mesh_state`].
    /// The streams show the same changes in their place among messages and
    /// views ([`SubscriptionEvent::Blocked`], [`GroupEvent::Blocked`], ...).
    pub fn is_blocked(&self) -> bool {
        *self.shared.blocked.borrow()
    }

    /// A watch of [`Client::is_blocked`]: changes when the broker leaves or
    /// rejoins the primary component (an event, never a silent hang).
    pub fn mesh_state(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.blocked.subscribe()
    }

    /// Why the session ended, if it has.
    pub fn close_reason(&self) -> Option<ClientError> {
        self.shared.closed.get().cloned()
    }

    /// Subscribes to a glob pattern. Returns once the broker has installed
    /// the subscription: every matching message published after that point
    /// is delivered to the returned stream. In mesh mode the session is
    /// then a member of every group the pattern reaches, in the views that
    /// [`Subscription::views`] returns.
    pub async fn subscribe(&self, pattern: &str) -> Result<Subscription, ClientError> {
        subscribe_with(&self.shared, pattern, false, Some(self.handle.clone())).await
    }

    /// Reads the messages matching a pattern without becoming a member of
    /// any group (a *tap*: for monitoring, logging, debugging). The session
    /// does not appear in any view and gets no views; the members of the
    /// groups (a replicated service counting its replicas, say) do not see
    /// it. It receives the matching messages its broker delivers, each
    /// group's in that group's order, from the moment the broker installed
    /// it; but it has none of a member's guarantees across failures: when
    /// its broker is cut off or the tap falls behind, messages may be
    /// missing. On a single broker it is the same as
    /// [`Client::subscribe`]. Needs a broker that knows the tap request
    /// (an older one ends the session with a protocol error).
    pub async fn tap(&self, pattern: &str) -> Result<Subscription, ClientError> {
        subscribe_with(&self.shared, pattern, true, Some(self.handle.clone())).await
    }

    /// Joins a process group (the broker must be in mesh mode). Returns once
    /// the session is in an installed view of the group, with that view;
    /// every message ordered after that point is delivered to the member.
    pub async fn join(&self, group: &str) -> Result<Group, ClientError> {
        self.join_inner(group, false).await
    }

    /// Joins a replicated group: the new member receives exactly one
    /// checkpoint, taken by an existing member at the join point, before any
    /// later message (`None` when it is the first member). Members of such a
    /// group answer [`GroupEvent::StateRequest`]s with their state at that
    /// point of the stream.
    ///
    /// The returned group's [`Group::view`] is the view the checkpoint was
    /// taken in. That is normally the join view; if the broker was cut off
    /// and rejoined the group before the checkpoint came, it is the rejoined
    /// membership's view (and the checkpoint is that membership's), and the
    /// cut-off is not reported as events, since nothing had been delivered.
    pub async fn join_with_state(
        &self,
        group: &str,
    ) -> Result<(Group, Option<Bytes>), ClientError> {
        let mut g = self.join_inner(group, true).await?;
        let state = g.wait_for_state().await?;
        Ok((g, state))
    }

    async fn join_inner(&self, group: &str, state: bool) -> Result<Group, ClientError> {
        let id = self.shared.next_id();
        let (tx, rx) = mpsc::channel(self.shared.subscription_buffer);
        let failed = Arc::new(OnceLock::new());
        let (reply, answer) = oneshot::channel();
        self.shared.pending().insert(
            id,
            Pending::Join {
                group: group.to_string(),
                state,
                tx,
                failed: failed.clone(),
                reply,
            },
        );
        let mut guard = CancelGuard {
            shared: &self.shared,
            id,
            sent: false,
        };
        self.shared
            .send(&ClientMsg::Join {
                id,
                group: group.to_string(),
                state,
            })
            .await?;
        guard.sent = true;
        let result = answer.await;
        guard.disarm();
        match result {
            Ok(Ok(view)) => Ok(Group {
                name: group.to_string(),
                view,
                rx,
                backlog: Default::default(),
                failed,
                shared: self.shared.clone(),
                _handle: self.handle.clone(),
                left: false,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self.shared.closed_error()),
        }
    }

    /// A publisher for one topic, with its declaration: an [`Ordering`]
    /// (`Ordering::Fifo`) or a [`Publish`] (`Publish::total().safe()`).
    pub fn publisher(
        &self,
        topic: &str,
        declared: impl Into<Publish>,
    ) -> Result<Publisher, ClientError> {
        Ok(Publisher {
            client: self.clone(),
            topic: Topic::new(topic)?,
            declared: declared.into(),
        })
    }

    /// Publishes one message with `fifo` ordering.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        let topic = Topic::new(topic)?;
        self.publish_raw(&topic, Publish::fifo(), payload.into(), None)
            .await
    }

    /// Answers a request: publishes `payload` to the message's `reply_to`.
    /// Does nothing for a message that asked for no answer.
    pub async fn reply(
        &self,
        request: &Message,
        payload: impl Into<Bytes>,
    ) -> Result<(), ClientError> {
        let Some(to) = &request.reply_to else {
            return Ok(());
        };
        let topic = Topic::new(to.as_str())?;
        self.publish_raw(&topic, Publish::fifo(), payload.into(), None)
            .await
    }

    /// Publishes a request on `topic` and gathers the subscribers' answers
    /// (sent with [`Client::reply`]) until `gather` is satisfied or
    /// `timeout` passes; returns what arrived, in arrival order (with
    /// [`Gather::Count`], possibly fewer than asked for). When nobody
    /// answered before the timeout it is [`ClientError::NoResponders`].
    pub async fn request(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        gather: Gather,
        timeout: Duration,
    ) -> Result<Vec<Message>, ClientError> {
        let topic = Topic::new(topic)?;
        let inbox = self.inbox().await?;
        let id = self.shared.next_id();
        let (tx, mut rx) = mpsc::channel(gather.limit().clamp(1, 4096));
        inbox.waiters().insert(id, tx);
        let reply_to = format!("{}/{id}", inbox.prefix);
        let sent = self
            .publish_raw(&topic, Publish::fifo(), payload.into(), Some(reply_to))
            .await;
        let mut replies = Vec::new();
        if sent.is_ok() {
            let _ = tokio::time::timeout(timeout, async {
                while replies.len() < gather.limit() {
                    match rx.recv().await {
                        Some(m) => replies.push(m),
                        None => break,
                    }
                }
            })
            .await;
        }
        inbox.waiters().remove(&id);
        sent?;
        if replies.is_empty() {
            return Err(ClientError::NoResponders {
                topic: topic.as_str().to_string(),
                timeout,
            });
        }
        Ok(replies)
    }

    /// This client's inbox for answers, subscribed on first use.
    async fn inbox(&self) -> Result<Arc<inbox::Inbox>, ClientError> {
        self.shared
            .inbox
            .get_or_try_init(|| inbox::Inbox::start(self.shared.clone()))
            .await
            .cloned()
    }

    async fn publish_raw(
        &self,
        topic: &Topic,
        declared: Publish,
        payload: Bytes,
        reply_to: Option<String>,
    ) -> Result<(), ClientError> {
        self.check_payload(&payload)?;
        self.shared
            .send(&ClientMsg::Publish(client_proto::Publish {
                topic: topic.as_str().to_string(),
                ordering: declared.ordering(),
                safe: declared.is_safe(),
                payload,
                reply_to,
                confirm: None,
            }))
            .await
    }

    fn check_payload(&self, payload: &Bytes) -> Result<(), ClientError> {
        let max = self.shared.link().welcome.max_payload as usize;
        if payload.len() > max {
            return Err(ClientError::PayloadTooLarge {
                size: payload.len(),
                max,
            });
        }
        Ok(())
    }

    /// Waits until the broker has processed everything this client sent
    /// before the call. Returns the first publish the broker refused since
    /// the previous `flush`, if any, or [`ClientError::ConnectionLost`] if
    /// the connection was lost since then (publishes may be missing).
    pub async fn flush(&self) -> Result<(), ClientError> {
        let id = self.shared.next_id();
        let (reply, answer) = oneshot::channel();
        self.shared.pending().insert(id, Pending::Ping { reply });
        let mut guard = CancelGuard {
            shared: &self.shared,
            id,
            sent: false,
        };
        self.shared.send(&ClientMsg::Ping { id }).await?;
        guard.sent = true;
        let answered = answer.await;
        guard.disarm();
        let rejected = self
            .shared
            .rejection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        answered.map_err(|_| self.shared.closed_error())??;
        match rejected {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Flushes what is queued, then closes the session; bounded by
    /// [`ClientOptions::close_timeout`] whatever the broker does.
    pub async fn close(self) {
        let limit = self.shared.opts.close_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let _ = tokio::time::timeout_at(deadline, self.flush()).await;
        self.shared.set_closed(ClientError::Closed {
            code: Some(CloseCode::Normal),
            reason: "closed by client".into(),
        });
        let (conn, endpoint) = {
            let link = self.shared.link();
            (link.conn.clone(), link.endpoint.clone())
        };
        conn.close(CloseCode::Normal.code().into(), b"client closed");
        // Give the close a moment to reach the broker, within the bound.
        let idle = deadline.min(tokio::time::Instant::now() + Duration::from_secs(2));
        let _ = tokio::time::timeout_at(idle, endpoint.wait_idle()).await;
    }
}

/// Publishes to one topic with a fixed declaration ([`Publish`]).
#[derive(Debug, Clone)]
pub struct Publisher {
    client: Client,
    topic: Topic,
    declared: Publish,
}

impl Publisher {
    /// The topic this publisher writes to.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// How its messages are declared.
    pub fn declared(&self) -> Publish {
        self.declared
    }

    /// Publishes one message. Returns once it is queued for sending; use
    /// [`Client::flush`] to wait until the broker has processed it.
    pub async fn publish(&self, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        self.client
            .publish_raw(&self.topic, self.declared, payload.into(), None)
            .await
    }

    /// Publishes one message and waits for the broker's confirmation:
    /// for a `safe` publisher, until the message is stable (every broker
    /// hosting members of its group holds it, so every member that survives
    /// into the next view delivers it, even if this broker then fails);
    /// otherwise until the broker accepted it. A refusal is an `Err`; so is
    /// [`RejectCode::OutcomeUnknown`] when the broker was cut off from the
    /// primary component before the message was stable, and
    /// [`ClientError::ConnectionLost`] when the connection was lost before
    /// the confirmation came (the message may or may not be delivered).
    /// Cancelling the wait does not take the message back. On a single
    /// broker a safe message is stable once accepted.
    pub async fn publish_confirmed(
        &self,
        payload: impl Into<Bytes>,
    ) -> Result<Confirmation, ClientError> {
        let payload = payload.into();
        self.client.check_payload(&payload)?;
        let shared = &self.client.shared;
        confirmed(shared, |confirm| {
            ClientMsg::Publish(client_proto::Publish {
                topic: self.topic.as_str().to_string(),
                ordering: self.declared.ordering(),
                safe: self.declared.is_safe(),
                payload,
                reply_to: None,
                confirm: Some(confirm),
            })
        })
        .await
    }
}

/// Sends the message `make(id)` and waits for its confirmation `id`.
pub(crate) async fn confirmed(
    shared: &Shared,
    make: impl FnOnce(u64) -> ClientMsg,
) -> Result<Confirmation, ClientError> {
    let id = shared.next_id();
    let (reply, answer) = oneshot::channel();
    shared.pending().insert(id, Pending::Confirm { reply });
    let mut guard = CancelGuard {
        shared,
        id,
        sent: false,
    };
    shared.send(&make(id)).await?;
    guard.sent = true;
    let result = answer.await;
    guard.disarm();
    match result {
        Ok(r) => r,
        Err(_) => Err(shared.closed_error()),
    }
}

/// The message that makes subscription `id` (a tap or a subscription).
pub(crate) fn subscribe_msg(id: u64, pattern: &Pattern, tap: bool) -> ClientMsg {
    let pattern = pattern.as_str().to_string();
    if tap {
        ClientMsg::Tap { id, pattern }
    } else {
        ClientMsg::Subscribe { id, pattern }
    }
}

/// Subscribes `pattern`; see [`Client::subscribe`] and [`Client::tap`].
/// `handle` keeps the session open while the subscription lives (`None`
/// for internal ones).
pub(crate) async fn subscribe_with(
    shared: &Arc<Shared>,
    pattern: &str,
    tap: bool,
    handle: Option<Arc<Handle>>,
) -> Result<Subscription, ClientError> {
    let pattern = Pattern::new(pattern)?;
    let id = shared.next_id();
    let (tx, rx) = mpsc::channel(shared.subscription_buffer);
    let failed = Arc::new(OnceLock::new());
    let (reply, answer) = oneshot::channel();
    shared.pending().insert(
        id,
        Pending::Subscribe {
            pattern: pattern.clone(),
            tap,
            tx,
            failed: failed.clone(),
            reply,
        },
    );
    let mut guard = CancelGuard {
        shared,
        id,
        sent: false,
    };
    shared.send(&subscribe_msg(id, &pattern, tap)).await?;
    guard.sent = true;
    let result = answer.await;
    guard.disarm();
    match result {
        Ok(Ok(views)) => Ok(Subscription::new(
            id,
            pattern,
            views,
            rx,
            failed,
            shared.clone(),
            handle,
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(shared.closed_error()),
    }
}

/// Forgets a request whose caller went away before the answer came. A
/// subscription the broker may already have installed is taken back.
struct CancelGuard<'a> {
    shared: &'a Shared,
    id: u64,
    sent: bool,
}

impl CancelGuard<'_> {
    fn disarm(&mut self) {
        self.id = 0;
    }
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.id == 0 {
            return;
        }
        let removed = self.shared.pending().remove(&self.id);
        match (removed, self.sent) {
            (Some(Pending::Subscribe { .. }), true) => {
                self.shared.pending().insert(self.id, Pending::Unsubscribe);
                self.shared
                    .send_now(&ClientMsg::Unsubscribe { id: self.id });
            }
            (Some(Pending::Join { group, .. }), true) => {
                let id = self.shared.next_id();
                self.shared.pending().insert(
                    id,
                    Pending::Leave {
                        group: group.clone(),
                    },
                );
                self.shared.send_now(&ClientMsg::Leave { id, group });
            }
            _ => {}
        }
    }
}

/// Writes the outbox to the broker until the outbox closes or a reconnect
/// starts a new generation (whose own writer takes over).
pub(crate) async fn writer(shared: Arc<Shared>, mut send: quinn::SendStream, generation: u64) {
    while let Some(data) = shared.outbox.take(generation).await {
        if let Err(e) = send.write_all(&data).await {
            // The reader sees the connection end too and decides whether
            // the client reconnects; unwritten data counts as lost there.
            tracing::debug!(error = %e, "cannot write to broker");
            return;
        }
    }
    let _ = send.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_and_subscriptions_are_streams() {
        fn is_stream<T: futures_util::Stream + Unpin>() {}
        is_stream::<Group>();
        is_stream::<Subscription>();
    }
}
