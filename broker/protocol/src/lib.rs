//! meshcast's virtual-synchrony protocol core, written sans-IO.
//!
//! A [`Broker`] is a plain state machine. The runtime feeds it [`Input`]s
//! with the current [`Time`] through [`Broker::handle`], drains the
//! resulting [`Output`]s with [`Broker::poll_output`] (messages to send,
//! deliveries, view events, state-transfer requests) and calls
//! `handle(now, Input::Timeout)` when [`Broker::poll_timeout`] is reached.
//!
//! **Determinism contract:** the core performs no I/O, never reads a clock
//! and draws randomness only from the ChaCha generator seeded in
//! [`Broker::new`]; identical inputs give identical outputs. That is what
//! lets the simulator (feature `sim`, and this crate's tests) replay any run
//! from its seed.
//!
//! What it provides, per DESIGN.md §2: agreed mesh and group views through a
//! coordinator-led, Paxos-guarded view change with a flush (virtual
//! synchrony); reliable, fifo, causal and total ordering plus `safe`
//! delivery; state transfer at the join point; the primary-component rule
//! for partitions. See `docs/protocol.md` for the messages and state
//! machines.
//!
//! ```
//! use meshcast_protocol::{Broker, ClientCmd, Input, NodeId, Ordering, Output, ProtocolConfig, Time};
//!
//! // A single-broker mesh: bootstrap, join a group, publish, deliver.
//! let cfg = ProtocolConfig { bootstrap: true, ..ProtocolConfig::default() };
//! let mut b = Broker::new(NodeId::new(0, 1), cfg, 42);
//! b.handle(Time(0), Input::Client(ClientCmd::Join { session: 1, group: "g".into(), state: false }))
//!     .unwrap();
//! // The join takes effect through a view change; keep feeding timeouts.
//! let mut now = Time(0);
//! while b.view().map_or(true, |v| v.id.counter < 2) {
//!     now = b.poll_timeout().unwrap_or(now).max(now.plus(1));
//!     b.handle(now, Input::Timeout).unwrap();
//! }
//! let publish = ClientCmd::Publish {
//!     session: 1,
//!     group: "g".into(),
//!     ordering: Ordering::Total,
//!     safe: true,
//!     payload: b"hello".to_vec().into(),
//! };
//! b.handle(now, Input::Client(publish)).unwrap();
//! let delivered = std::iter::from_fn(|| b.poll_output())
//!     .any(|o| matches!(o, Output::Deliver(d) if d.payload.as_ref() == b"hello"));
//! assert!(delivered);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod broker;
mod config;
mod error;
mod flow;
mod flush;
mod group;
mod id;
mod io;
mod lease;
mod membership;
mod stability;
mod transfer;
mod wire;

#[cfg(test)]
mod broker_test;

pub mod history;

#[cfg(any(test, feature = "sim"))]
pub mod sim;

pub use broker::{Broker, GroupStats};
pub use config::{Defects, ProtocolConfig};
pub use error::Error;
pub use id::{GroupView, MemberId, MeshView, MsgId, NodeId, Ordering, Time, TransferId, ViewId};
pub use io::{ClientCmd, Delivery, ExpelReason, GroupViewChange, Input, Output};
pub use wire::{
    DataMsg, Envelope, Frontier, GroupInstall, GroupReport, GroupRequest, Heartbeat, Install,
    OrderMsg, PeerMsg, Propose, Report, Returning, StateChunk,
};
