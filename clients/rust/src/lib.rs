//! Async Rust client for meshcast brokers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), meshcast_client::ClientError> {
//! use futures_util::StreamExt;
//! use meshcast_client::{Client, ClientOptions, Ordering};
//!
//! let opts = ClientOptions::new("127.0.0.1:4700".parse().unwrap())
//!     .ca_file("/root/.local/share/meshcast/ca.pem");
//! let client = Client::connect(opts).await?;
//! let mut sub = client.subscribe("orders/**").await?;
//! let orders = client.publisher("orders/eu/created", Ordering::Total, false)?;
//! orders.publish("order 1").await?;
//! if let Some(Ok(msg)) = sub.next().await {
//!     println!("{} {:?}", msg.topic, msg.payload);
//! }
//! client.close().await;
//! # Ok(()) }
//! ```
//!
//! One client is one QUIC connection with one stream each way. Publishes are
//! appended to a bounded outbox and written in batches; `subscribe` returns
//! only once the broker has installed the subscription, so every matching
//! message published after that point is delivered to it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod group;
mod inbox;
mod outbox;
mod reader;
mod subscription;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use meshcast_topics::{Pattern, Topic};
use meshcast_transport::client_proto::{
    self, ALPN_CLIENT, ClientHello, ClientMsg, CloseCode, PROTOCOL_VERSION, Publish, Welcome,
};
use meshcast_transport::{FrameReader, pki, quic};
use tokio::sync::{mpsc, oneshot};

pub use error::ClientError;
pub use group::{Group, GroupEvent, GroupMessage, GroupSender, Rejoined, StateRequest, View};
pub use inbox::Gather;
pub use meshcast_transport::client_proto::{Ordering, RejectCode, mesh_publisher_id};
pub use subscription::{Message, Subscription, SubscriptionEvent};

use outbox::Outbox;

/// How to reach and trust a broker.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The broker's client address.
    pub addr: SocketAddr,
    /// PEM file of the CA that signed the broker's certificate.
    pub ca_file: Option<PathBuf>,
    /// Name the broker's certificate must carry (default `localhost`).
    pub server_name: String,
    /// A name for this client, shown in broker logs.
    pub name: String,
    /// Messages buffered per subscription before the client stops reading
    /// from the broker (which then, if it persists, disconnects it as slow).
    pub subscription_buffer: usize,
    /// Bytes of unsent frames buffered before publishers wait.
    pub outbox_bytes: usize,
    /// Close the connection after this long without hearing from the broker.
    /// The broker applies its own `limits.session_timeout_ms` the same way
    /// (the smaller of the two is used); keep-alives every third of it keep
    /// a live session open. A session that times out leaves its groups
    /// through a view change the other members see.
    pub idle_timeout: Duration,
    /// Protocol version announced in the handshake (only tests change it).
    pub protocol_version: u16,
}

impl ClientOptions {
    /// Options for the broker at `addr` with defaults for everything else.
    pub fn new(addr: SocketAddr) -> ClientOptions {
        ClientOptions {
            addr,
            ca_file: None,
            server_name: "localhost".into(),
            name: "meshcast-client".into(),
            subscription_buffer: 4096,
            outbox_bytes: 1 << 20,
            idle_timeout: Duration::from_secs(30),
            protocol_version: PROTOCOL_VERSION,
        }
    }

    /// Sets the CA file to trust.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> ClientOptions {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets the client name.
    pub fn name(mut self, name: impl Into<String>) -> ClientOptions {
        self.name = name.into();
        self
    }
}

/// A request waiting for the broker's answer.
pub(crate) enum Pending {
    Subscribe {
        pattern: Pattern,
        tx: mpsc::Sender<SubscriptionEvent>,
        failed: Arc<OnceLock<ClientError>>,
        reply: oneshot::Sender<Result<Vec<View>, ClientError>>,
    },
    Unsubscribe,
    Join {
        group: String,
        tx: mpsc::Sender<GroupEvent>,
        failed: Arc<OnceLock<ClientError>>,
        reply: oneshot::Sender<Result<View, ClientError>>,
    },
    Leave {
        group: String,
    },
    Ping {
        reply: oneshot::Sender<()>,
    },
    Confirm {
        reply: oneshot::Sender<Result<Confirmation, ClientError>>,
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

pub(crate) struct Shared {
    conn: quinn::Connection,
    endpoint: quinn::Endpoint,
    outbox: Outbox,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    welcome: Welcome,
    /// Why the session ended, once it has.
    closed: OnceLock<ClientError>,
    /// The first publish the broker refused since the last `flush`.
    rejection: Mutex<Option<ClientError>>,
    /// Whether the broker is outside the primary component (mesh mode).
    blocked: tokio::sync::watch::Sender<bool>,
    /// The publisher id of the session's next messages (the welcome's, then
    /// each `Rejoined`'s).
    publisher: AtomicU64,
    /// The inbox for answers to requests, made on first use.
    inbox: tokio::sync::OnceCell<Arc<inbox::Inbox>>,

    subscription_buffer: usize,
}

impl Shared {
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, AtomicOrdering::Relaxed)
    }

    pub(crate) fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn closed_error(&self) -> ClientError {
        self.closed
            .get()
            .cloned()
            .or_else(|| self.connection_reason())
            .unwrap_or_else(|| ClientError::closed("connection lost"))
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
        self.conn
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

/// A connection to one broker.
///
/// Cloning is cheap; the session closes when [`Client::close`] is called or
/// when the last clone, [`Publisher`] and [`Subscription`] is dropped.
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
                .conn
                .close(CloseCode::Normal.code().into(), b"client dropped");
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("session", &self.shared.welcome.session)
            .field("broker", &self.shared.welcome.broker)
            .finish()
    }
}

impl Client {
    /// Connects to the first broker of `addrs` that accepts the session,
    /// trying them in order (the other options apply to each). Use it to
    /// reach a mesh through any of its brokers, and again after a session is
    /// lost to fail over to another broker; a new session is a new member,
    /// so subscriptions and joins are made again.
    pub async fn connect_any(
        addrs: &[SocketAddr],
        opts: ClientOptions,
    ) -> Result<Client, ClientError> {
        let mut last = ClientError::Connect {
            addr: String::new(),
            detail: "no broker address given".into(),
        };
        for addr in addrs {
            let mut o = opts.clone();
            o.addr = *addr;
            match Client::connect(o).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "broker unavailable, trying the next");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// Connects, performs the handshake and starts the reader and writer tasks.
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let connect_err = |detail: String| ClientError::Connect {
            addr: opts.addr.to_string(),
            detail,
        };
        let trust = match &opts.ca_file {
            Some(path) => pki::load_certs(path).map_err(|e| ClientError::Tls(e.to_string()))?,
            None => {
                return Err(ClientError::Tls(
                    "no CA file given: set ClientOptions::ca_file (the broker's ca.pem)".into(),
                ));
            }
        };
        let config = quic::client_config(&trust, None, ALPN_CLIENT, opts.idle_timeout)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let mut endpoint = quic::bind_client(opts.addr).map_err(|e| connect_err(e.to_string()))?;
        endpoint.set_default_client_config(config);
        let conn = endpoint
            .connect(opts.addr, &opts.server_name)
            .map_err(|e| connect_err(e.to_string()))?
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let (mut send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let hello = client_proto::encode_hello(
            opts.protocol_version,
            &ClientHello {
                name: opts.name.clone(),
            },
        )
        .map_err(|e| ClientError::Handshake(e.to_string()))?;
        send.write_all(&hello)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        // The broker's frames are bounded by its own limit; accept generously.
        let mut frames = FrameReader::new(recv, meshcast_transport::wire::HARD_MAX_FRAME);
        let welcome = match frames.read_one().await {
            Ok(Some(body)) => client_proto::decode_welcome(&body)
                .map_err(|e| ClientError::Handshake(e.to_string()))?,
            Ok(None) | Err(_) => {
                let reason = conn
                    .close_reason()
                    .map(|e| error::from_connection_error(&e).to_string())
                    .unwrap_or_else(|| "stream closed during handshake".into());
                return Err(ClientError::Handshake(reason));
            }
        };
        let publisher = welcome.publisher;
        let shared = Arc::new(Shared {
            conn,
            endpoint,
            outbox: Outbox::new(opts.outbox_bytes),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            welcome,
            closed: OnceLock::new(),
            rejection: Mutex::new(None),
            blocked: tokio::sync::watch::Sender::new(false),
            publisher: AtomicU64::new(publisher),
            inbox: tokio::sync::OnceCell::new(),

            subscription_buffer: opts.subscription_buffer.max(1),
        });
        tokio::spawn(writer(shared.clone(), send));
        tokio::spawn(reader::run(shared.clone(), frames));
        let handle = Arc::new(Handle {
            shared: shared.clone(),
        });
        Ok(Client { shared, handle })
    }

    /// This session's id (numbered from 1 on every broker start); it never
    /// changes while the session lives.
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
        self.shared.welcome.session
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

    /// The id of the broker this client is connected to.
    pub fn broker_id(&self) -> &str {
        &self.shared.welcome.broker
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
        subscribe_with(&self.shared, pattern, Some(self.handle.clone())).await
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

    /// A publisher for one topic with its declared ordering and `safe` flag.
    pub fn publisher(
        &self,
        topic: &str,
        ordering: Ordering,
        safe: bool,
    ) -> Result<Publisher, ClientError> {
        Ok(Publisher {
            client: self.clone(),
            topic: Topic::new(topic)?,
            ordering,
            safe,
        })
    }

    /// Publishes one message with `fifo` ordering.
    pub async fn publish(&self, topic: &str, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        let topic = Topic::new(topic)?;
        self.publish_raw(&topic, Ordering::Fifo, false, payload.into(), None)
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
        self.publish_raw(&topic, Ordering::Fifo, false, payload.into(), None)
            .await
    }

    /// Publishes a request on `topic` and gathers the subscribers' answers
    /// (sent with [`Client::reply`]) until `gather` is satisfied or
    /// `timeout` passes; returns what arrived, in arrival order.
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
            .publish_raw(
                &topic,
                Ordering::Fifo,
                false,
                payload.into(),
                Some(reply_to),
            )
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
        sent.map(|()| replies)
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
        ordering: Ordering,
        safe: bool,
        payload: Bytes,
        reply_to: Option<String>,
    ) -> Result<(), ClientError> {
        self.check_payload(&payload)?;
        self.shared
            .send(&ClientMsg::Publish(Publish {
                topic: topic.as_str().to_string(),
                ordering,
                safe,
                payload,
                reply_to,
                confirm: None,
            }))
            .await
    }

    fn check_payload(&self, payload: &Bytes) -> Result<(), ClientError> {
        let max = self.shared.welcome.max_payload as usize;
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
    /// the previous `flush`, if any.
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
        answered.map_err(|_| self.shared.closed_error())?;
        let rejected = self
            .shared
            .rejection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        match rejected {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Flushes what is queued, then closes the session.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.flush()).await;
        self.shared.set_closed(ClientError::Closed {
            code: Some(CloseCode::Normal),
            reason: "closed by client".into(),
        });
        self.shared
            .conn
            .close(CloseCode::Normal.code().into(), b"client closed");
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.shared.endpoint.wait_idle()).await;
    }
}

/// Publishes to one topic with a fixed ordering declaration.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: Client,
    topic: Topic,
    ordering: Ordering,
    safe: bool,
}

impl Publisher {
    /// The topic this publisher writes to.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// Publishes one message. Returns once it is queued for sending; use
    /// [`Client::flush`] to wait until the broker has processed it.
    pub async fn publish(&self, payload: impl Into<Bytes>) -> Result<(), ClientError> {
        self.client
            .publish_raw(&self.topic, self.ordering, self.safe, payload.into(), None)
            .await
    }

    /// Publishes one message and waits for the broker's confirmation:
    /// for a `safe` publisher, until the message is stable (every broker
    /// hosting members of its group holds it, so every member that survives
    /// into the next view delivers it, even if this broker then fails);
    /// otherwise until the broker accepted it. A refusal is an `Err`; so is
    /// [`RejectCode::OutcomeUnknown`] when the broker was cut off from the
    /// primary component before the message was stable. Cancelling the
    /// wait does not take the message back. On a single broker a safe
    /// message is stable once accepted.
    pub async fn publish_confirmed(
        &self,
        payload: impl Into<Bytes>,
    ) -> Result<Confirmation, ClientError> {
        let payload = payload.into();
        self.client.check_payload(&payload)?;
        let shared = &self.client.shared;
        confirmed(shared, |confirm| {
            ClientMsg::Publish(Publish {
                topic: self.topic.as_str().to_string(),
                ordering: self.ordering,
                safe: self.safe,
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

/// Subscribes `pattern`; see [`Client::subscribe`]. `handle` keeps the
/// session open while the subscription lives (`None` for internal ones).
pub(crate) async fn subscribe_with(
    shared: &Arc<Shared>,
    pattern: &str,
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
    shared
        .send(&ClientMsg::Subscribe {
            id,
            pattern: pattern.as_str().to_string(),
        })
        .await?;
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

async fn writer(shared: Arc<Shared>, mut send: quinn::SendStream) {
    while let Some(data) = shared.outbox.take().await {
        if let Err(e) = send.write_all(&data).await {
            let reason = shared
                .connection_reason()
                .unwrap_or_else(|| ClientError::closed(format!("cannot write to broker: {e}")));
            shared.set_closed(reason);
            return;
        }
    }
    let _ = send.finish();
}
