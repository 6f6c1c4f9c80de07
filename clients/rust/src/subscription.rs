//! Subscriptions and the messages they deliver.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use meshcast_topics::Pattern;
use meshcast_transport::client_proto::{ClientMsg, CloseCode};
use tokio::sync::mpsc;

use crate::{ClientError, Handle, Ordering, Pending, Shared};

/// A message delivered to a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The topic it was published on.
    pub topic: String,
    /// The application bytes.
    pub payload: Bytes,
    /// The publisher's session id.
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

/// A stream of the messages matching one pattern.
///
/// Yields `Ok(message)` in delivery order. If the subscription or the
/// session ends abnormally the stream yields one `Err` saying why (for
/// example [`ClientError::SlowSubscription`] when the application fell more
/// than `ClientOptions::subscription_buffer` messages behind), then ends.
/// Dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    pattern: Pattern,
    rx: mpsc::Receiver<Message>,
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
        rx: mpsc::Receiver<Message>,
        failed: Arc<OnceLock<ClientError>>,
        shared: Arc<Shared>,
        handle: Option<Arc<Handle>>,
    ) -> Subscription {
        Subscription {
            id,
            pattern,
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

    /// Ends the subscription and waits until the broker has removed it.
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
        while self.rx.recv().await.is_some() {}
        Ok(())
    }
}

impl Stream for Subscription {
    type Item = Result<Message, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(m)) => Poll::Ready(Some(Ok(m))),
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
