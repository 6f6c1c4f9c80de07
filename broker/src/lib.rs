//! The meshcast broker.
//!
//! * [`router`] — the sans-IO local delivery state machine: subscriptions,
//!   per-publisher numbering, encode-once fan-out.
//! * [`permissions`] — `[[permissions]]` compiled for checking (sans-IO,
//!   used by the router).
//! * [`node`] — the tokio/quinn runtime around it: sessions, the core task,
//!   bounded queues, shutdown, client authentication (`node::auth`).
//! * [`bench`] — the `meshcast bench` scenarios.
//! * [`cli_output`] — what the `meshcast` command prints for people
//!   (one-line errors, the bench table, `config check`).
//! * `fuzz_entry` (feature `fuzzing`) — the entry points of the fuzz
//!   targets in `broker/fuzz/`, replayed over their corpus by the tests.
//!
//! The mesh protocol (membership, views, ordering across brokers) lives in
//! the sibling crate `meshcast-protocol`, which has no I/O at all.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bench;
pub mod cli_output;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz_entry;
pub mod node;
pub mod permissions;
pub mod router;
