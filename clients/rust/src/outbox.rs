//! A bounded byte buffer between callers and the stream writer task.
//!
//! Callers append encoded frames under a short lock; the writer takes the
//! whole buffer in one go and writes it with one call, so a burst of small
//! publishes becomes one large write. When the buffer holds `limit` bytes,
//! callers wait for the writer to drain it (back-pressure, never unbounded).
//!
//! A reconnect starts a new *generation*: what the old connection's writer
//! had not taken is dropped, and only the new writer takes from then on.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use crate::ClientError;

pub(crate) struct Outbox {
    buf: Mutex<BytesMut>,
    limit: usize,
    data_ready: Notify,
    space: Notify,
    closed: AtomicBool,
    /// Changed under the `buf` lock by [`Outbox::reset`].
    generation: AtomicU64,
}

impl Outbox {
    pub(crate) fn new(limit: usize) -> Outbox {
        Outbox {
            buf: Mutex::new(BytesMut::with_capacity(64 * 1024)),
            limit,
            data_ready: Notify::new(),
            space: Notify::new(),
            closed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// Appends with `write` once there is room; fails once the outbox is closed.
    pub(crate) async fn push<F>(&self, mut write: F) -> Result<(), ClientError>
    where
        F: FnMut(&mut BytesMut) -> Result<(), ClientError>,
    {
        loop {
            let space = self.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
                if self.closed.load(Ordering::Acquire) {
                    return Err(ClientError::closed("client is closed"));
                }
                if buf.len() < self.limit {
                    write(&mut buf)?;
                    drop(buf);
                    self.data_ready.notify_one();
                    return Ok(());
                }
            }
            space.await;
        }
    }

    /// Appends now, ignoring the size limit (for small control frames only);
    /// does nothing once closed.
    pub(crate) fn push_now<F: FnOnce(&mut BytesMut)>(&self, write: F) {
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        write(&mut buf);
        drop(buf);
        self.data_ready.notify_one();
    }

    /// The current generation (see [`Outbox::reset`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Drops everything not yet taken and starts a new generation: a writer
    /// of an older one takes nothing more. Returns the new generation and
    /// whether anything was dropped.
    pub(crate) fn reset(&self) -> (u64, bool) {
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = !buf.is_empty();
        buf.clear();
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        drop(buf);
        self.data_ready.notify_waiters();
        self.space.notify_waiters();
        (generation, dropped)
    }

    /// Waits for data and takes all of it; `None` once closed and drained,
    /// or once `generation` is over.
    pub(crate) async fn take(&self, generation: u64) -> Option<Bytes> {
        loop {
            let ready = self.data_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
                if self.generation.load(Ordering::Acquire) != generation {
                    return None;
                }
                if !buf.is_empty() {
                    let data = buf.split().freeze();
                    drop(buf);
                    self.space.notify_waiters();
                    return Some(data);
                }
                if self.closed.load(Ordering::Acquire) {
                    return None;
                }
            }
            ready.await;
        }
    }

    /// Refuses further pushes; the writer drains what is left and stops.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.data_ready.notify_one();
        self.space.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(outbox: &Outbox, bytes: &'static [u8]) {
        outbox.push_now(|buf| buf.extend_from_slice(bytes));
    }

    #[tokio::test]
    async fn a_reset_drops_what_was_not_taken_and_retires_the_old_writer() {
        let outbox = Outbox::new(1024);
        let old = outbox.generation();
        push(&outbox, b"one");
        assert_eq!(outbox.take(old).await.as_deref(), Some(&b"one"[..]));
        push(&outbox, b"two");
        let (new, dropped) = outbox.reset();
        assert!(dropped, "`two` was not taken");
        assert_ne!(new, old);
        push(&outbox, b"three");
        // The old generation's writer takes nothing more; the new one
        // takes only what came after the reset.
        assert_eq!(outbox.take(old).await, None);
        assert_eq!(outbox.take(new).await.as_deref(), Some(&b"three"[..]));
        let (_, dropped) = outbox.reset();
        assert!(!dropped);
    }
}
