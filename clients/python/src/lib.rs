//! `meshcast._native`: the PyO3 layer over `meshcast-client`.
//!
//! The asyncio API people use is the pure-Python package around it
//! (`python/meshcast/__init__.py`); this module only moves values across.
//! Every wait runs on the tokio runtime of `pyo3-async-runtimes`, without
//! the GIL, and cancelling the Python awaitable drops the Rust future (as
//! dropping a future does in Rust).
//!
//! Streams are read in batches: `fill()` waits for one event, then takes
//! every event already there (up to [`BATCH`]) into a buffer held here,
//! and the synchronous `take()` turns the buffer into Python objects under
//! the GIL the caller already holds. A `fill()` cancelled after it took
//! events loses nothing: they stay in the buffer for the next `take()`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use meshcast_client::{
    Client, ClientError, ClientOptions, Confirmation, Gather, Group, GroupEvent, GroupSender,
    Ordering, Publish, Publisher, StateRequest, Subscription, SubscriptionEvent,
};
use pyo3::IntoPyObjectExt;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString};
use pyo3_async_runtimes::tokio::get_runtime;
use tokio::sync::watch;

/// Most events one `fill()` moves into the buffer.
const BATCH: usize = 4096;

// ---------------------------------------------------------------- bridge

/// Native futures not yet finished (completed, failed or cancelled).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Turns a Rust future into an asyncio future of the running loop.
///
/// The future runs on the tokio runtime without the GIL. When it is done,
/// a tokio thread takes the GIL once to hand the outcome to the loop
/// (`call_soon_threadsafe`), and counts the future out of [`IN_FLIGHT`]
/// only after it let go of the GIL again, so that [`drain`] at exit knows
/// when no thread will touch Python any more. Cancelling the asyncio
/// future drops the Rust future (its work is cancelled as in Rust) and
/// touches nothing in Python.
fn future_into_py<F, T>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: std::future::Future<Output = PyResult<T>> + Send + 'static,
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    static GET_LOOP: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    static RESOLVE: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    let get_loop = GET_LOOP.get_or_try_init(py, || {
        py.import("asyncio")?
            .getattr("get_running_loop")
            .map(Bound::unbind)
    })?;
    let resolve = RESOLVE
        .get_or_try_init(py, || {
            py.import("meshcast._bridge")?
                .getattr("resolve")
                .map(Bound::unbind)
        })?
        .clone_ref(py);
    let event_loop = get_loop.bind(py).call0()?;
    let py_fut = event_loop.call_method0("create_future")?;
    let (cancel_tx, cancel_rx) = tokio::sync::oneshot::channel::<()>();
    py_fut.call_method1(
        "add_done_callback",
        (OnCancel {
            tx: Mutex::new(Some(cancel_tx)),
        },),
    )?;
    let event_loop = event_loop.unbind();
    let target = py_fut.clone().unbind();
    IN_FLIGHT.fetch_add(1, AtomicOrdering::AcqRel);
    get_runtime().spawn(async move {
        let outcome = tokio::select! {
            r = fut => Some(r),
            _ = cancel_rx => None,
        };
        match outcome {
            Some(r) => Python::attach(|py| {
                let (exc, value) = match r.and_then(|v| v.into_py_any(py)) {
                    Ok(v) => (py.None(), v),
                    Err(e) => (e.into_value(py).into_any(), py.None()),
                };
                // The loop may be closed already: nothing waits then.
                let _ = event_loop
                    .bind(py)
                    .call_method1("call_soon_threadsafe", (resolve, target, exc, value));
                drop(event_loop);
            }),
            None => {
                // Cancelled: the references go without the GIL (PyO3
                // releases them the next time a thread holds it).
                drop((event_loop, target, resolve));
            }
        }
        IN_FLIGHT.fetch_sub(1, AtomicOrdering::AcqRel);
    });
    Ok(py_fut)
}

/// The done-callback of a bridged future: cancels the Rust side when the
/// asyncio future was cancelled.
#[pyclass(module = "meshcast._native")]
struct OnCancel {
    tx: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

#[pymethods]
impl OnCancel {
    fn __call__(&self, fut: &Bound<'_, PyAny>) -> PyResult<()> {
        if fut.call_method0("cancelled")?.is_truthy()? {
            if let Some(tx) = lock(&self.tx).take() {
                let _ = tx.send(());
            }
        }
        Ok(())
    }
}

/// Waits (without the GIL) until no native future is in flight, at most
/// `timeout` seconds. Registered with `atexit`: a tokio thread that takes the
/// GIL while the interpreter finalizes aborts the process.
#[pyfunction]
fn drain(py: Python<'_>, timeout: f64) {
    py.detach(|| {
        let deadline = std::time::Instant::now() + Duration::from_secs_f64(timeout.max(0.0));
        while IN_FLIGHT.load(AtomicOrdering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    });
}

// ---------------------------------------------------------------- errors

/// The Python exception for a client error: a class of `meshcast.errors`
/// named after the `ClientError` variant, with its fields as attributes.
fn py_err(e: ClientError) -> PyErr {
    Python::attach(|py| build_err(py, &e).unwrap_or_else(|err| err))
}

fn build_err(py: Python<'_>, e: &ClientError) -> PyResult<PyErr> {
    let errors = py.import("meshcast.errors")?;
    let msg = e.to_string();
    let (class, fields): (&str, Vec<(&str, Py<PyAny>)>) = match e {
        ClientError::InvalidTopic(_) => ("InvalidTopic", vec![]),
        ClientError::InvalidPattern(_) => ("InvalidPattern", vec![]),
        ClientError::PayloadTooLarge { size, max } => (
            "PayloadTooLarge",
            vec![("size", obj(py, *size)?), ("max", obj(py, *max)?)],
        ),
        ClientError::Tls(_) => ("TlsError", vec![]),
        ClientError::InvalidAddress { addr, reason } => (
            "InvalidAddress",
            vec![("addr", obj(py, addr)?), ("reason", obj(py, reason)?)],
        ),
        ClientError::Connect {
            addr,
            cause,
            detail,
        } => (
            "ConnectError",
            vec![
                ("addr", obj(py, addr)?),
                ("cause", obj(py, connect_cause(cause))?),
                ("detail", obj(py, detail)?),
            ],
        ),
        ClientError::ConnectionLost { addr, reason } => (
            "ConnectionLost",
            vec![("addr", obj(py, addr)?), ("reason", obj(py, reason)?)],
        ),
        ClientError::NoResponders { topic, timeout } => (
            "NoResponders",
            vec![
                ("topic", obj(py, topic)?),
                ("timeout", obj(py, timeout.as_secs_f64())?),
            ],
        ),
        ClientError::TimedOut { what, timeout } => (
            "TimedOut",
            vec![
                ("what", obj(py, what)?),
                ("timeout", obj(py, timeout.as_secs_f64())?),
            ],
        ),
        ClientError::Handshake(_) => ("HandshakeError", vec![]),
        ClientError::Unauthenticated { addr, reason } => (
            "Unauthenticated",
            vec![("addr", obj(py, addr)?), ("reason", obj(py, reason)?)],
        ),
        ClientError::PermissionDenied { reason } => {
            ("PermissionDenied", vec![("reason", obj(py, reason)?)])
        }
        ClientError::Encode(_) => ("EncodeError", vec![]),
        ClientError::SlowSubscription { pattern, buffer } => (
            "SlowSubscription",
            vec![
                ("pattern", obj(py, pattern)?),
                ("buffer", obj(py, *buffer)?),
            ],
        ),
        ClientError::Expelled { group, reason } => (
            "Expelled",
            vec![("group", obj(py, group)?), ("reason", obj(py, reason)?)],
        ),
        ClientError::Blocked { reason } => ("Blocked", vec![("reason", obj(py, reason)?)]),
        ClientError::RateLimited { reason } => ("RateLimited", vec![("reason", obj(py, reason)?)]),
        ClientError::Rejected { code, reason } => (
            "Rejected",
            vec![
                ("code", obj(py, snake(&format!("{code:?}")))?),
                ("reason", obj(py, reason)?),
            ],
        ),
        ClientError::Closed { code, reason } => (
            "Closed",
            vec![
                ("code", obj(py, code.map(|c| snake(&format!("{c:?}"))))?),
                ("reason", obj(py, reason)?),
            ],
        ),
        _ => ("MeshcastError", vec![]),
    };
    let exc = errors.getattr(class)?.call1((msg,))?;
    for (k, v) in fields {
        exc.setattr(k, v)?;
    }
    Ok(PyErr::from_value(exc))
}

fn obj<'py, T: IntoPyObject<'py>>(py: Python<'py>, v: T) -> PyResult<Py<PyAny>> {
    v.into_py_any(py)
}

fn connect_cause(c: &meshcast_client::ConnectCause) -> &'static str {
    use meshcast_client::ConnectCause as C;
    match c {
        C::Resolve => "resolve",
        C::NoAnswer { .. } => "no_answer",
        C::WrongProtocol => "wrong_protocol",
        C::ServerName { .. } => "server_name",
        C::UnknownCa { .. } => "unknown_ca",
        C::Refused => "refused",
        _ => "other",
    }
}

/// `OutcomeUnknown` -> `outcome_unknown`.
fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------- values

/// The bytes of a payload: `bytes`, `str` (UTF-8), or anything `bytes()`
/// accepts (`bytearray`, `memoryview`, ...).
fn payload(obj: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Bytes::copy_from_slice(s.to_cow()?.as_bytes()));
    }
    // Only what supports the buffer protocol (`bytes(12)` would make 12
    // zero bytes).
    let view = obj
        .py()
        .import("builtins")?
        .getattr("memoryview")?
        .call1((obj,))?;
    let b = obj.py().get_type::<PyBytes>().call1((view,))?;
    Ok(Bytes::copy_from_slice(b.cast::<PyBytes>()?.as_bytes()))
}

fn declaration(ordering: &str, safe: bool) -> PyResult<Publish> {
    let o: Ordering = ordering.parse().map_err(|_| {
        PyValueError::new_err(format!(
            "unknown ordering {ordering:?}: expected \"reliable\", \"fifo\", \"causal\" or \"total\""
        ))
    })?;
    Ok(Publish::with(o).safe_if(safe))
}

fn ordering_name(o: Ordering) -> &'static str {
    match o {
        Ordering::Reliable => "reliable",
        Ordering::Fifo => "fifo",
        Ordering::Causal => "causal",
        Ordering::Total => "total",
    }
}

fn seconds(s: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a non-negative number of seconds, not {s}"
        ))
    })
}

/// A message delivered to a subscription (or an answer to a request).
#[pyclass(module = "meshcast", frozen, get_all)]
struct Message {
    topic: Py<PyString>,
    payload: Py<PyBytes>,
    publisher: u64,
    seq: u64,
    ordering: &'static str,
    safe: bool,
    reply_to: Option<String>,
}

#[pymethods]
impl Message {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "Message(topic={:?}, payload={}, publisher={}, seq={}, ordering={:?}, safe={})",
            self.topic.bind(py).to_string(),
            self.payload
                .bind(py)
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            self.publisher,
            self.seq,
            self.ordering,
            if self.safe { "True" } else { "False" }
        )
    }
}

/// One installed view of a group.
#[pyclass(module = "meshcast", frozen, get_all)]
#[derive(Clone)]
struct View {
    group: String,
    id: String,
    members: Vec<String>,
    rank: u32,
}

#[pymethods]
impl View {
    fn __repr__(&self) -> String {
        format!(
            "View(group={:?}, id={:?}, members={:?}, rank={})",
            self.group, self.id, self.members, self.rank
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<View>().is_ok_and(|o| {
            let o = o.get();
            o.group == self.group && o.id == self.id && o.members == self.members
        })
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&self.group, &self.id, &self.members).hash(&mut h);
        h.finish()
    }
}

impl From<meshcast_client::View> for View {
    fn from(v: meshcast_client::View) -> View {
        View {
            group: v.group,
            id: v.id,
            members: v.members,
            rank: v.rank,
        }
    }
}

/// The broker was cut off from the mesh's primary component.
#[pyclass(module = "meshcast", frozen)]
struct BlockedEvent;

#[pymethods]
impl BlockedEvent {
    fn __repr__(&self) -> &'static str {
        "BlockedEvent()"
    }
}

/// The broker is back in the primary component; nothing was missed.
#[pyclass(module = "meshcast", frozen)]
struct UnblockedEvent;

#[pymethods]
impl UnblockedEvent {
    fn __repr__(&self) -> &'static str {
        "UnblockedEvent()"
    }
}

/// The broker is back in the mesh as a new incarnation.
#[pyclass(module = "meshcast", frozen, get_all)]
struct Rejoined {
    incarnation: u64,
    publisher: u64,
    member: String,
}

#[pymethods]
impl Rejoined {
    fn __repr__(&self) -> String {
        format!(
            "Rejoined(incarnation={}, publisher={}, member={:?})",
            self.incarnation, self.publisher, self.member
        )
    }
}

/// The client lost its connection and opened a new session.
#[pyclass(module = "meshcast", frozen, get_all)]
struct Reconnected {
    lost: String,
    server: String,
    broker: String,
    session: u64,
}

#[pymethods]
impl Reconnected {
    fn __repr__(&self) -> String {
        format!(
            "Reconnected(lost={:?}, server={:?}, broker={:?}, session={})",
            self.lost, self.server, self.broker, self.session
        )
    }
}

/// A message multicast to a group.
#[pyclass(module = "meshcast", frozen, get_all)]
struct GroupMessage {
    publisher: u64,
    seq: u64,
    ordering: &'static str,
    safe: bool,
    payload: Py<PyBytes>,
}

#[pymethods]
impl GroupMessage {
    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "GroupMessage(payload={}, publisher={}, seq={}, ordering={:?})",
            self.payload
                .bind(py)
                .repr()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            self.publisher,
            self.seq,
            self.ordering
        )
    }
}

/// A checkpoint received after the join (again after a rejoin).
#[pyclass(module = "meshcast", frozen, get_all)]
struct Checkpoint {
    state: Option<Py<PyBytes>>,
}

/// A joining member asks for this member's state at this point.
#[pyclass(module = "meshcast", frozen, name = "StateRequest")]
struct NativeStateRequest {
    req: Mutex<Option<StateRequest>>,
}

#[pymethods]
impl NativeStateRequest {
    /// Sends the checkpoint (once; later calls do nothing).
    fn reply(&self, state: &Bound<'_, PyAny>) -> PyResult<bool> {
        let data = payload(state)?;
        let taken = lock(&self.req).take();
        match taken {
            Some(r) => {
                let _rt = get_runtime().enter();
                r.reply(data);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    #[getter]
    fn answered(&self) -> bool {
        lock(&self.req).is_none()
    }
}

/// What the broker confirmed about a publish.
#[pyclass(module = "meshcast", frozen, get_all, name = "Confirmation")]
struct PyConfirmation {
    seq: u64,
    stable: bool,
}

#[pymethods]
impl PyConfirmation {
    fn __repr__(&self) -> String {
        format!(
            "Confirmation(seq={}, stable={})",
            self.seq,
            if self.stable { "True" } else { "False" }
        )
    }
}

impl From<Confirmation> for PyConfirmation {
    fn from(c: Confirmation) -> PyConfirmation {
        PyConfirmation {
            seq: c.seq,
            stable: c.stable,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ---------------------------------------------------------------- streams

/// Events taken from a stream, not yet handed to Python, and how it ended.
struct Buffer<E> {
    events: VecDeque<E>,
    /// `Some(None)`: ended normally; `Some(Some(e))`: ended with `e`
    /// (raised once by `take`).
    end: Option<Option<ClientError>>,
}

impl<E> Buffer<E> {
    fn new() -> Buffer<E> {
        Buffer {
            events: VecDeque::new(),
            end: None,
        }
    }

    fn push(&mut self, item: Option<Result<E, ClientError>>) {
        match item {
            Some(Ok(e)) => self.events.push_back(e),
            Some(Err(e)) => self.end = Some(Some(e)),
            None => self.end = Some(None),
        }
    }

    fn ready(&self) -> bool {
        !self.events.is_empty() || self.end.is_some()
    }
}

/// A stream read by `fill`, closed by `unsubscribe`/`leave`.
trait EventSource: Send + 'static {
    type Event: Send + 'static;
    fn next_event(
        &mut self,
    ) -> impl std::future::Future<Output = Option<Result<Self::Event, ClientError>>> + Send;
}

impl EventSource for Subscription {
    type Event = SubscriptionEvent;
    async fn next_event(&mut self) -> Option<Result<SubscriptionEvent, ClientError>> {
        Subscription::next_event(self).await
    }
}

impl EventSource for Group {
    type Event = GroupEvent;
    async fn next_event(&mut self) -> Option<Result<GroupEvent, ClientError>> {
        Group::next(self).await
    }
}

struct Stream<S: EventSource> {
    source: tokio::sync::Mutex<Option<S>>,
    buf: Mutex<Buffer<S::Event>>,
    closing: watch::Sender<bool>,
}

impl<S: EventSource> Stream<S> {
    fn new(source: S) -> Arc<Stream<S>> {
        Arc::new(Stream {
            source: tokio::sync::Mutex::new(Some(source)),
            buf: Mutex::new(Buffer::new()),
            closing: watch::Sender::new(false),
        })
    }

    /// Waits for at least one event (or the end), then moves every event
    /// already there into the buffer.
    async fn fill(self: Arc<Self>) {
        let mut closing = self.closing.subscribe();
        let mut source = tokio::select! {
            s = self.source.lock() => s,
            _ = closing.wait_for(|c| *c) => return,
        };
        if lock(&self.buf).ready() {
            return;
        }
        let Some(src) = source.as_mut() else {
            lock(&self.buf).end.get_or_insert(None);
            return;
        };
        let first = tokio::select! {
            e = src.next_event() => e,
            _ = closing.wait_for(|c| *c) => return,
        };
        let mut buf = lock(&self.buf);
        buf.push(first);
        while buf.end.is_none() && buf.events.len() < BATCH {
            match src.next_event().now_or_never() {
                Some(e) => buf.push(e),
                None => break,
            }
        }
    }

    /// Stops readers and hands the source over (to unsubscribe or leave).
    async fn close(&self) -> Option<S> {
        self.closing.send_replace(true);
        let taken = self.source.lock().await.take();
        lock(&self.buf).end.get_or_insert(None);
        taken
    }

    /// The buffered events as Python objects; `None` once the stream ended
    /// (after raising its error once, if it ended with one).
    fn take<'py>(
        &self,
        py: Python<'py>,
        convert: impl Fn(Python<'py>, S::Event, &mut TopicCache) -> PyResult<Option<Py<PyAny>>>,
    ) -> PyResult<Option<Bound<'py, PyList>>> {
        let (events, end) = {
            let mut buf = lock(&self.buf);
            let events = std::mem::take(&mut buf.events);
            let end = match &mut buf.end {
                Some(e) if events.is_empty() => Some(e.take()),
                _ => None,
            };
            (events, end)
        };
        match end {
            Some(Some(e)) => return Err(py_err(e)),
            Some(None) => return Ok(None),
            None => {}
        }
        let list = PyList::empty(py);
        let mut cache = TopicCache::default();
        for e in events {
            if let Some(o) = convert(py, e, &mut cache)? {
                list.append(o)?;
            }
        }
        Ok(Some(list))
    }
}

/// Reuses the Python string of the previous message's topic.
#[derive(Default)]
struct TopicCache {
    last: Option<(String, Py<PyString>)>,
}

impl TopicCache {
    fn get(&mut self, py: Python<'_>, topic: String) -> Py<PyString> {
        if let Some((t, s)) = &self.last {
            if *t == topic {
                return s.clone_ref(py);
            }
        }
        let s = PyString::new(py, &topic).unbind();
        self.last = Some((topic, s.clone_ref(py)));
        s
    }
}

fn message(
    py: Python<'_>,
    m: meshcast_client::Message,
    cache: &mut TopicCache,
) -> PyResult<Py<Message>> {
    Py::new(
        py,
        Message {
            topic: cache.get(py, m.topic),
            payload: PyBytes::new(py, &m.payload).unbind(),
            publisher: m.publisher,
            seq: m.seq,
            ordering: ordering_name(m.ordering),
            safe: m.safe,
            reply_to: m.reply_to,
        },
    )
}

fn any<T: pyo3::PyClass + Into<PyClassInitializer<T>>>(
    py: Python<'_>,
    v: T,
) -> PyResult<Py<PyAny>> {
    Ok(Py::new(py, v)?.into_any())
}

fn rejoined(r: meshcast_client::Rejoined) -> Rejoined {
    Rejoined {
        incarnation: r.incarnation,
        publisher: r.publisher,
        member: r.member,
    }
}

fn reconnected(r: meshcast_client::Reconnected) -> Reconnected {
    Reconnected {
        lost: r.lost,
        server: r.server,
        broker: r.broker,
        session: r.session,
    }
}

fn subscription_event(
    py: Python<'_>,
    e: SubscriptionEvent,
    cache: &mut TopicCache,
) -> PyResult<Option<Py<PyAny>>> {
    Ok(Some(match e {
        SubscriptionEvent::Message(m) => message(py, m, cache)?.into_any(),
        SubscriptionEvent::View(v) => any(py, View::from(v))?,
        SubscriptionEvent::Blocked => any(py, BlockedEvent)?,
        SubscriptionEvent::Unblocked => any(py, UnblockedEvent)?,
        SubscriptionEvent::Rejoined(r) => any(py, rejoined(r))?,
        SubscriptionEvent::Reconnected(r) => any(py, reconnected(r))?,
        _ => return Ok(None),
    }))
}

fn group_event(
    py: Python<'_>,
    e: GroupEvent,
    _cache: &mut TopicCache,
) -> PyResult<Option<Py<PyAny>>> {
    Ok(Some(match e {
        GroupEvent::View(v) => any(py, View::from(v))?,
        GroupEvent::Message(m) => any(
            py,
            GroupMessage {
                publisher: m.publisher,
                seq: m.seq,
                ordering: ordering_name(m.ordering),
                safe: m.safe,
                payload: PyBytes::new(py, &m.payload).unbind(),
            },
        )?,
        GroupEvent::State(s) => any(
            py,
            Checkpoint {
                state: s.map(|b| PyBytes::new(py, &b).unbind()),
            },
        )?,
        GroupEvent::StateRequest(r) => any(
            py,
            NativeStateRequest {
                req: Mutex::new(Some(r)),
            },
        )?,
        GroupEvent::Blocked => any(py, BlockedEvent)?,
        GroupEvent::Unblocked => any(py, UnblockedEvent)?,
        GroupEvent::Rejoined(r) => any(py, rejoined(r))?,
        GroupEvent::Reconnected(r) => any(py, reconnected(r))?,
        _ => return Ok(None),
    }))
}

// ---------------------------------------------------------------- client

/// A session with a broker (see `meshcast.Client`).
#[pyclass(module = "meshcast._native", frozen)]
struct NativeClient {
    client: Client,
}

#[allow(clippy::too_many_arguments)]
#[pyfunction]
#[pyo3(signature = (servers, ca=None, name=None, server_name=None, connect_timeout=None, reconnect=None, subscription_buffer=None, idle_timeout=None, token=None, cert=None, key=None))]
fn connect<'py>(
    py: Python<'py>,
    servers: &str,
    ca: Option<std::path::PathBuf>,
    name: Option<String>,
    server_name: Option<String>,
    connect_timeout: Option<f64>,
    reconnect: Option<f64>,
    subscription_buffer: Option<usize>,
    idle_timeout: Option<f64>,
    token: Option<String>,
    cert: Option<std::path::PathBuf>,
    key: Option<std::path::PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut opts = ClientOptions::parse(servers).map_err(py_err)?;
    if let Some(t) = token {
        opts = opts.token(t);
    }
    match (cert, key) {
        (Some(c), Some(k)) => opts = opts.client_cert(c, k),
        (None, None) => {}
        _ => return Err(PyValueError::new_err("cert and key go together")),
    }
    if let Some(ca) = ca {
        opts = opts.ca_file(ca);
    }
    if let Some(n) = name {
        opts = opts.name(n);
    }
    if let Some(n) = server_name {
        opts = opts.server_name(n);
    }
    if let Some(t) = connect_timeout {
        opts = opts.connect_timeout(seconds(t, "connect_timeout")?);
    }
    if let Some(r) = reconnect {
        // A negative number: never reconnect.
        opts = opts.reconnect((r >= 0.0).then(|| seconds(r, "reconnect")).transpose()?);
    }
    if let Some(t) = idle_timeout {
        opts = opts.idle_timeout(seconds(t, "idle_timeout")?);
    }
    if let Some(n) = subscription_buffer {
        if n == 0 {
            return Err(PyValueError::new_err(
                "subscription_buffer must be at least 1",
            ));
        }
        opts.subscription_buffer = n;
    }
    future_into_py(py, async move {
        let client = Client::connect(opts).await.map_err(py_err)?;
        Ok(NativeClient { client })
    })
}

#[pymethods]
impl NativeClient {
    fn subscribe<'py>(
        &self,
        py: Python<'py>,
        pattern: String,
        tap: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        future_into_py(py, async move {
            let sub = if tap {
                client.tap(&pattern).await
            } else {
                client.subscribe(&pattern).await
            }
            .map_err(py_err)?;
            let views: Vec<View> = sub.views().iter().cloned().map(View::from).collect();
            Ok(NativeSubscription {
                pattern: sub.pattern().as_str().to_string(),
                views,
                stream: Stream::new(sub),
            })
        })
    }

    fn publisher(&self, topic: &str, ordering: &str, safe: bool) -> PyResult<NativePublisher> {
        let declared = declaration(ordering, safe)?;
        let publisher = self.client.publisher(topic, declared).map_err(py_err)?;
        Ok(NativePublisher { publisher })
    }

    fn join<'py>(
        &self,
        py: Python<'py>,
        group: String,
        state: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        future_into_py(py, async move {
            let (g, checkpoint) = if state {
                let (g, s) = client.join_with_state(&group).await.map_err(py_err)?;
                (g, s.map(|b| b.to_vec()))
            } else {
                (client.join(&group).await.map_err(py_err)?, None)
            };
            let native = NativeGroup {
                name: g.name().to_string(),
                view: View::from(g.view().clone()),
                sender: g.sender(),
                stream: Stream::new(g),
            };
            Ok((native, checkpoint))
        })
    }

    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        future_into_py(py, async move { client.flush().await.map_err(py_err) })
    }

    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let client = self.client.clone();
        future_into_py(py, async move {
            client.close().await;
            Ok(())
        })
    }

    /// `gather`: 0 = every answer until the timeout, n = that many.
    fn request<'py>(
        &self,
        py: Python<'py>,
        topic: String,
        data: &Bound<'py, PyAny>,
        gather: usize,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = payload(data)?;
        let timeout = seconds(timeout, "timeout")?;
        let gather = match gather {
            0 => Gather::UntilTimeout,
            1 => Gather::First,
            n => Gather::Count(n),
        };
        let client = self.client.clone();
        future_into_py(py, async move {
            let answers = client
                .request(&topic, data, gather, timeout)
                .await
                .map_err(py_err)?;
            Python::attach(|py| {
                let mut cache = TopicCache::default();
                answers
                    .into_iter()
                    .map(|m| message(py, m, &mut cache))
                    .collect::<PyResult<Vec<_>>>()
            })
        })
    }

    fn reply<'py>(
        &self,
        py: Python<'py>,
        reply_to: String,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = payload(data)?;
        let client = self.client.clone();
        let request = meshcast_client::Message {
            topic: String::new(),
            payload: Bytes::new(),
            publisher: 0,
            seq: 0,
            ordering: Ordering::Fifo,
            safe: false,
            reply_to: Some(reply_to),
        };
        future_into_py(py, async move {
            client.reply(&request, data).await.map_err(py_err)
        })
    }

    #[getter]
    fn session_id(&self) -> u64 {
        self.client.session_id()
    }

    #[getter]
    fn publisher_id(&self) -> u64 {
        self.client.publisher_id()
    }

    #[getter]
    fn broker_id(&self) -> String {
        self.client.broker_id()
    }

    #[getter]
    fn server(&self) -> String {
        self.client.server()
    }

    #[getter]
    fn is_blocked(&self) -> bool {
        self.client.is_blocked()
    }

    /// Why the session ended (an exception object), or `None` while open.
    fn close_reason(&self) -> Option<PyErr> {
        self.client.close_reason().map(py_err)
    }
}

// ---------------------------------------------------------------- publisher

#[pyclass(module = "meshcast._native", frozen)]
struct NativePublisher {
    publisher: Publisher,
}

#[pymethods]
impl NativePublisher {
    /// Queues the message if the outbox has room now (no waiting):
    /// `True` when queued, `False` when the caller must `publish`.
    fn try_publish(&self, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let data = payload(data)?;
        let _rt = get_runtime().enter();
        match self.publisher.publish(data).now_or_never() {
            Some(r) => r.map(|()| true).map_err(py_err),
            None => Ok(false),
        }
    }

    fn publish<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = payload(data)?;
        let p = self.publisher.clone();
        future_into_py(py, async move { p.publish(data).await.map_err(py_err) })
    }

    fn publish_confirmed<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = payload(data)?;
        let p = self.publisher.clone();
        future_into_py(py, async move {
            p.publish_confirmed(data)
                .await
                .map(PyConfirmation::from)
                .map_err(py_err)
        })
    }

    #[getter]
    fn topic(&self) -> String {
        self.publisher.topic().as_str().to_string()
    }

    #[getter]
    fn ordering(&self) -> &'static str {
        ordering_name(self.publisher.declared().ordering())
    }

    #[getter]
    fn safe(&self) -> bool {
        self.publisher.declared().is_safe()
    }
}

// ---------------------------------------------------------------- subscription

#[pyclass(module = "meshcast._native", frozen)]
struct NativeSubscription {
    pattern: String,
    views: Vec<View>,
    stream: Arc<Stream<Subscription>>,
}

#[pymethods]
impl NativeSubscription {
    fn fill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.stream.clone();
        future_into_py(py, async move {
            s.fill().await;
            Ok(())
        })
    }

    fn take<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        self.stream.take(py, subscription_event)
    }

    fn unsubscribe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.stream.clone();
        future_into_py(py, async move {
            match s.close().await {
                Some(sub) => sub.unsubscribe().await.map_err(py_err),
                None => Ok(()),
            }
        })
    }

    #[getter]
    fn pattern(&self) -> String {
        self.pattern.clone()
    }

    #[getter]
    fn views(&self) -> Vec<View> {
        self.views.clone()
    }
}

// ---------------------------------------------------------------- group

#[pyclass(module = "meshcast._native", frozen)]
struct NativeGroup {
    name: String,
    view: View,
    sender: GroupSender,
    stream: Arc<Stream<Group>>,
}

#[pymethods]
impl NativeGroup {
    fn fill<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.stream.clone();
        future_into_py(py, async move {
            s.fill().await;
            Ok(())
        })
    }

    fn take<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        self.stream.take(py, group_event)
    }

    fn try_multicast(&self, data: &Bound<'_, PyAny>, ordering: &str, safe: bool) -> PyResult<bool> {
        let data = payload(data)?;
        let declared = declaration(ordering, safe)?;
        let _rt = get_runtime().enter();
        match self.sender.multicast(data, declared).now_or_never() {
            Some(r) => r.map(|()| true).map_err(py_err),
            None => Ok(false),
        }
    }

    fn multicast<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        ordering: &str,
        safe: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = payload(data)?;
        let declared = declaration(ordering, safe)?;
        let sender = self.sender.clone();
        future_into_py(py, async move {
            sender.multicast(data, declared).await.map_err(py_err)
        })
    }

    fn multicast_confirmed<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        ordering: &str,
        safe: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let data = payload(data)?;
        let declared = declaration(ordering, safe)?;
        let sender = self.sender.clone();
        future_into_py(py, async move {
            sender
                .multicast_confirmed(data, declared)
                .await
                .map(PyConfirmation::from)
                .map_err(py_err)
        })
    }

    fn leave<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let s = self.stream.clone();
        future_into_py(py, async move {
            match s.close().await {
                Some(g) => g.leave().await.map_err(py_err),
                None => Ok(()),
            }
        })
    }

    #[getter]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[getter]
    fn view(&self) -> View {
        self.view.clone()
    }
}

/// The version of this package (the crate's).
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(drain, m)?)?;
    m.add_class::<NativeClient>()?;
    m.add_class::<NativePublisher>()?;
    m.add_class::<NativeSubscription>()?;
    m.add_class::<NativeGroup>()?;
    m.add_class::<NativeStateRequest>()?;
    m.add_class::<Message>()?;
    m.add_class::<View>()?;
    m.add_class::<GroupMessage>()?;
    m.add_class::<Checkpoint>()?;
    m.add_class::<BlockedEvent>()?;
    m.add_class::<UnblockedEvent>()?;
    m.add_class::<Rejoined>()?;
    m.add_class::<Reconnected>()?;
    m.add_class::<PyConfirmation>()?;
    Ok(())
}
