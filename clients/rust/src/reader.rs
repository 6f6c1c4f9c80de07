//! The task that reads the broker's frames and routes them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use meshcast_topics::{SubscriptionIndex, Topic};
use meshcast_transport::FrameReader;
use meshcast_transport::client_proto::{self, Delivery, ServerMsg};
use tokio::sync::mpsc;

use crate::error::from_connection_error;
use crate::{ClientError, Message, Pending, Shared};

type Route = mpsc::Sender<Result<Message, ClientError>>;

/// Reads until the session ends, then records why.
pub(crate) async fn run(shared: Arc<Shared>, mut frames: FrameReader<quinn::RecvStream>) {
    let mut routes: HashMap<u64, Route> = HashMap::new();
    let mut index: SubscriptionIndex<u64> = SubscriptionIndex::new(1024);
    let mut batch: Vec<Bytes> = Vec::with_capacity(256);
    let reason = loop {
        batch.clear();
        match frames.read_batch(&mut batch).await {
            Ok(true) => {}
            Ok(false) => break ClientError::closed("broker closed the stream"),
            Err(e) => {
                break match shared.conn.close_reason() {
                    Some(c) => from_connection_error(&c),
                    None => ClientError::closed(e.to_string()),
                };
            }
        }
        for body in batch.drain(..) {
            match client_proto::decode_server(&body) {
                Ok(ServerMsg::Deliver(d)) => deliver(&shared, &mut routes, &mut index, d).await,
                Ok(msg) => answer(&shared, &mut routes, &mut index, msg),
                Err(e) => {
                    tracing::warn!(error = %e, "undecodable frame from broker");
                }
            }
        }
    };
    let _ = shared.closed.set(reason);
    shared.outbox.close();
    // Wake every waiter: dropping the pending replies fails their requests.
    shared.pending().clear();
}

async fn deliver(
    shared: &Shared,
    routes: &mut HashMap<u64, Route>,
    index: &mut SubscriptionIndex<u64>,
    d: Delivery,
) {
    let topic = match Topic::new(d.topic.as_str()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "broker delivered an invalid topic");
            return;
        }
    };
    let ids = index.matches(&topic);
    let msg = Message {
        topic: d.topic,
        payload: d.payload,
        publisher: d.publisher,
        seq: d.seq,
        ordering: d.ordering,
        safe: d.safe,
    };
    for id in ids.iter() {
        let gone = match routes.get(id) {
            Some(tx) => tx.send(Ok(msg.clone())).await.is_err(),
            None => false,
        };
        if gone {
            routes.remove(id);
            index.remove(id);
            let _ = shared; // the Subscription's Drop sent the Unsubscribe
        }
    }
}

fn answer(
    shared: &Shared,
    routes: &mut HashMap<u64, Route>,
    index: &mut SubscriptionIndex<u64>,
    msg: ServerMsg,
) {
    match msg {
        ServerMsg::Subscribed { id } => {
            if let Some(Pending::Subscribe { pattern, tx, reply }) = shared.pending().remove(&id) {
                index.insert(id, pattern);
                routes.insert(id, tx);
                let _ = reply.send(Ok(()));
            }
        }
        ServerMsg::Unsubscribed { id } => {
            shared.pending().remove(&id);
            routes.remove(&id);
            index.remove(&id);
        }
        ServerMsg::Pong { id } => {
            if let Some(Pending::Ping { reply }) = shared.pending().remove(&id) {
                let _ = reply.send(());
            }
        }
        ServerMsg::Rejected { id, code, reason } => {
            let err = ClientError::Rejected { code, reason };
            match id.and_then(|id| shared.pending().remove(&id)) {
                Some(Pending::Subscribe { reply, .. }) => {
                    let _ = reply.send(Err(err));
                }
                _ => {
                    let mut first = shared.rejection.lock().unwrap_or_else(|p| p.into_inner());
                    if first.is_none() {
                        *first = Some(err);
                    }
                }
            }
        }
        ServerMsg::Deliver(_) => {}
    }
}
