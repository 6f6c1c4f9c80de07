//! Answers to requests: one wildcard subscription per client, made on the
//! first request, whose messages are routed to the waiting request by the
//! last segment of their topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::{ClientError, Message, Shared, subscribe_with};

/// How many answers a request waits for (always bounded by its timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gather {
    /// The first answer.
    First,
    /// This many answers (e.g. the member count of the current view).
    Count(usize),
    /// Every answer until the timeout.
    UntilTimeout,
}

impl Gather {
    pub(crate) fn limit(self) -> usize {
        match self {
            Gather::First => 1,
            Gather::Count(n) => n,
            Gather::UntilTimeout => usize::MAX,
        }
    }
}

pub(crate) struct Inbox {
    /// Topic prefix of this client's answers: `_inbox/<unique>`.
    pub prefix: String,
    waiters: Mutex<HashMap<u64, mpsc::Sender<Message>>>,
}

impl Inbox {
    pub(crate) fn waiters(&self) -> std::sync::MutexGuard<'_, HashMap<u64, mpsc::Sender<Message>>> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes the inbox and starts routing its messages.
    pub(crate) async fn start(shared: Arc<Shared>) -> Result<Arc<Inbox>, ClientError> {
        // Unique across the mesh and hard to guess (on a broker with
        // [auth], a client may subscribe to its own inbox by name): the
        // clock, the session and the process's random hasher keys.
        use std::hash::{BuildHasher, Hasher};
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(nanos);
        h.write_u64(shared.link().welcome.session);
        let mut h2 = std::collections::hash_map::RandomState::new().build_hasher();
        h2.write_u64(h.finish());
        let prefix = format!(
            "_inbox/{:x}{:016x}{:016x}",
            shared.link().welcome.session,
            h.finish(),
            h2.finish()
        );
        let mut sub = subscribe_with(&shared, &format!("{prefix}/*"), false, None).await?;
        let inbox = Arc::new(Inbox {
            prefix,
            waiters: Mutex::new(HashMap::new()),
        });
        let routing = Arc::downgrade(&inbox);
        tokio::spawn(async move {
            while let Some(Ok(m)) = sub.next().await {
                let Some(inbox) = routing.upgrade() else {
                    break;
                };
                let id = m
                    .topic
                    .rsplit('/')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok());
                let waiter = id.and_then(|id| inbox.waiters().get(&id).cloned());
                if let Some(w) = waiter {
                    // A full or finished request simply misses late answers.
                    let _ = w.try_send(m);
                }
            }
        });
        Ok(inbox)
    }
}
