//! The broker's metrics, through the `metrics` facade (exported for
//! Prometheus on `GET /metrics`, see `admin.rs`). docs/operations.md lists
//! them with the ones to alert on.
//!
//! Counters are incremented where things happen (refusals in
//! `router::reply`, as `meshcast_rejected_total{reason}`); gauges that describe a
//! state (queue depths, held messages, links) are set when `/metrics` is
//! scraped, from the same figures as `/status` ([`refresh`]).
//!
//! Label cardinality is bounded: labels are a group (at most
//! `limits.metrics_max_groups` distinct groups, later ones counted as
//! `_other`), a peer broker (bounded by the mesh), or a reason or cause
//! from a fixed list. Never a topic or a session.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

/// Label used for groups beyond `limits.metrics_max_groups`.
pub const OTHER_GROUP: &str = "_other";

/// The groups that have their own label so far, and the bound.
struct GroupLabels {
    seen: HashSet<String>,
    max: usize,
}

fn labels() -> &'static Mutex<GroupLabels> {
    static LABELS: OnceLock<Mutex<GroupLabels>> = OnceLock::new();
    LABELS.get_or_init(|| {
        Mutex::new(GroupLabels {
            seen: HashSet::new(),
            max: 1000,
        })
    })
}

/// Sets the bound on distinct group labels (`limits.metrics_max_groups`).
pub fn set_max_groups(max: usize) {
    labels().lock().unwrap_or_else(|p| p.into_inner()).max = max;
}

/// The label for `group`: itself while fewer than the bound of groups have
/// one, else [`OTHER_GROUP`].
pub fn group_label(group: &str) -> String {
    let mut l = labels().lock().unwrap_or_else(|p| p.into_inner());
    if l.seen.contains(group) {
        return group.to_string();
    }
    if l.seen.len() < l.max {
        l.seen.insert(group.to_string());
        return group.to_string();
    }
    OTHER_GROUP.to_string()
}

/// The group of `topic` under `groups`, `_invalid` for a topic that is not
/// one (it is refused).
pub fn group_of(groups: &meshcast_topics::GroupMap, topic: &str) -> String {
    match meshcast_topics::Topic::new(topic) {
        Ok(t) => groups.group_of(&t).to_string(),
        Err(_) => "_invalid".to_string(),
    }
}

/// A publish of `bytes` payload bytes to `group` was received from a client.
pub fn published(group: &str, bytes: usize) {
    let g = group_label(group);
    metrics::counter!("meshcast_published_messages_total", "group" => g.clone()).increment(1);
    metrics::counter!("meshcast_published_bytes_total", "group" => g).increment(bytes as u64);
}

/// A message of `group` with `bytes` payload bytes was handed to `copies`
/// local sessions.
pub fn delivered(group: &str, copies: usize, bytes: usize) {
    if copies == 0 {
        return;
    }
    let g = group_label(group);
    metrics::counter!("meshcast_delivered_messages_total", "group" => g.clone())
        .increment(copies as u64);
    metrics::counter!("meshcast_delivered_bytes_total", "group" => g)
        .increment((copies * bytes) as u64);
}

/// A mesh view changed its brokers; `cause` is `join`, `leave` or
/// `restart` (counted once per broker that joined, left or was replaced).
pub fn view_change(cause: &'static str) {
    metrics::counter!("meshcast_view_changes_total", "kind" => "mesh", "cause" => cause)
        .increment(1);
}

/// A group view was installed; `cause` is `join` (members joined) or
/// `leave` (members left or were removed).
pub fn group_view_change(group: &str, cause: &'static str) {
    let g = group_label(group);
    metrics::counter!("meshcast_group_view_changes_total", "group" => g, "cause" => cause)
        .increment(1);
}

/// A member was expelled from a group; `reason` is `slow`,
/// `transfer_failed` or `partitioned`.
pub fn expelled(reason: &'static str) {
    metrics::counter!("meshcast_expulsions_total", "reason" => reason).increment(1);
    if reason == "slow" {
        metrics::counter!("meshcast_slow_consumer_expulsions_total", "scope" => "group")
            .increment(1);
    }
}

/// A session was disconnected because its outbound queue filled.
pub fn slow_session() {
    metrics::counter!("meshcast_slow_consumer_expulsions_total", "scope" => "session").increment(1);
}

/// A client session finished its handshake.
pub fn client_connected() {
    metrics::counter!("meshcast_client_connects_total").increment(1);
}

/// A client session ended; `reason` is a bounded close-reason class.
pub fn client_disconnected(reason: &'static str) {
    metrics::counter!("meshcast_client_disconnects_total", "reason" => reason).increment(1);
}

/// A client's connection was refused during its handshake.
pub fn client_refused() {
    metrics::counter!("meshcast_client_refused_total").increment(1);
}

/// A client was refused because it did not authenticate (counted in
/// `meshcast_client_refused_total` too).
pub fn auth_failed() {
    metrics::counter!("meshcast_auth_failures_total").increment(1);
}

/// This broker's mesh state changed: `blocked` (outside the primary
/// component) or not.
pub fn blocked(blocked: bool) {
    metrics::gauge!("meshcast_mesh_blocked").set(if blocked { 1.0 } else { 0.0 });
    if blocked {
        metrics::counter!("meshcast_blocked_total").increment(1);
    }
}

/// One peer link as `/metrics` shows it.
#[derive(Debug, Clone)]
pub struct LinkFigures {
    /// The peer's broker id.
    pub peer: String,
    /// Heard from within the failure-detection time.
    pub up: bool,
    /// The connection's round-trip estimate, in seconds.
    pub rtt_s: f64,
}

/// Figures set as gauges at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Per group: (group, held, unstable own, decisions held, queued publishes).
    pub groups: Vec<(String, usize, u64, usize, usize)>,
    /// Frames and bytes queued for local sessions, summed, and the largest
    /// single session's frames.
    pub queued_frames: usize,
    /// See `queued_frames`.
    pub queued_bytes: usize,
    /// See `queued_frames`.
    pub max_session_frames: usize,
    /// Peer links.
    pub links: Vec<LinkFigures>,
    /// Brokers in the installed mesh view (mesh mode).
    pub mesh_brokers: Option<usize>,
    /// Open sessions.
    pub sessions: usize,
}

/// Sets the state gauges from `s` (called when `/metrics` is scraped).
pub fn refresh(s: &Snapshot) {
    for (group, held, unstable, decisions, queued) in &s.groups {
        let g = group_label(group);
        metrics::gauge!("meshcast_group_held_messages", "group" => g.clone()).set(*held as f64);
        metrics::gauge!("meshcast_group_unstable_messages", "group" => g.clone())
            .set(*unstable as f64);
        metrics::gauge!("meshcast_group_decisions_held", "group" => g.clone())
            .set(*decisions as f64);
        metrics::gauge!("meshcast_group_queued_publishes", "group" => g).set(*queued as f64);
    }
    metrics::gauge!("meshcast_session_queue_frames").set(s.queued_frames as f64);
    metrics::gauge!("meshcast_session_queue_bytes").set(s.queued_bytes as f64);
    metrics::gauge!("meshcast_session_queue_max_frames").set(s.max_session_frames as f64);
    metrics::gauge!("meshcast_sessions").set(s.sessions as f64);
    for l in &s.links {
        metrics::gauge!("meshcast_link_up", "peer" => l.peer.clone()).set(if l.up {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("meshcast_link_rtt_seconds", "peer" => l.peer.clone()).set(l.rtt_s);
    }
    if let Some(n) = s.mesh_brokers {
        metrics::gauge!("meshcast_mesh_brokers").set(n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_labels_are_bounded() {
        set_max_groups(2);
        let a = group_label("telemetry-test-a");
        let b = group_label("telemetry-test-b");
        let c = group_label("telemetry-test-c");
        // Other tests of this process may have taken labels first.
        assert!(a == "telemetry-test-a" || a == OTHER_GROUP);
        assert!(b == "telemetry-test-b" || b == OTHER_GROUP);
        assert_eq!(c, OTHER_GROUP);
        assert_eq!(group_label("telemetry-test-a"), a);
        set_max_groups(1000);
    }
}
