//! Protocol tunables and the deliberate-defect switches used by the
//! checker's self-tests.

/// Tunables of one broker's protocol core. All durations are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// Start a singleton mesh instead of joining through `seeds`.
    pub bootstrap: bool,
    /// Start a singleton mesh after this many ms if nobody admitted this
    /// broker by then, no member of a mesh answered it and no broker it
    /// reached (a link came up, or it heard from it) has a smaller name (the
    /// smallest fresh broker starts the mesh, the others join it). For a broker with no history only:
    /// a broker that ever installed a view never starts one (see
    /// `docs/protocol.md`). `None`: never.
    pub auto_bootstrap: Option<u64>,
    /// What this broker remembers of the mesh from before its restart
    /// (from its data directory): sent with its join requests, so that a
    /// member left alone of that view can count it towards a majority.
    /// `None` for a broker with no history.
    pub returning: Option<crate::wire::Returning>,
    /// Broker names to ask for admission when not bootstrapping.
    pub seeds: Vec<u32>,
    /// Interval between heartbeats (which also carry stability frontiers).
    pub heartbeat_interval: u64,
    /// Silence after which a peer is suspected.
    pub suspect_timeout: u64,
    /// Time a coordinator waits for reports / acceptances before
    /// suspecting the silent brokers and starting again.
    pub flush_timeout: u64,
    /// How long a delivery lease granted in a heartbeat binds its granter
    /// (ms); `None` = `suspect_timeout`. It must exceed two heartbeat
    /// intervals plus a round trip, or leases lapse between heartbeats.
    pub lease: Option<u64>,
    /// Interval between join requests while joining.
    pub join_retry: u64,
    /// Maximum bytes of a state-transfer chunk.
    pub chunk_size: usize,
    /// Credit window: own messages per group that may be unstable (not yet
    /// received by every broker) before further publishes wait.
    pub max_unstable: usize,
    /// Acknowledge at once (a [`crate::wire::PeerMsg::Ack`] with the
    /// receive frontiers) when a group's progress here advanced by this many
    /// messages or decisions since the last acknowledgement; keep it well
    /// below `max_unstable` so senders never wait for credit.
    pub ack_every: u64,
    /// Otherwise acknowledge progress this long after it happened (instead
    /// of waiting for the next heartbeat), so `safe` messages and credit
    /// move without a full heartbeat interval of delay.
    pub ack_delay: u64,
    /// Publishes that may wait for credit before `Publish` is refused with
    /// [`crate::Error::Backpressure`].
    pub max_outbox: usize,
    /// Bound of a member's queue of unconsumed deliveries (acknowledged
    /// with `ClientCmd::Consumed`); `None` disables slow-member detection.
    pub member_queue: Option<usize>,
    /// How long a member's queue may stay full before it is expelled with
    /// reason `Slow`.
    pub slow_timeout: u64,
    /// How long a joiner's broker waits for a state-transfer checkpoint
    /// (reset by every chunk received) before it gives up: the joiner is
    /// expelled with `ExpelReason::TransferFailed` and may join again.
    pub transfer_timeout: u64,
    /// Most deliveries held back for one joiner while its checkpoint is
    /// awaited; beyond it the joiner is expelled as for `transfer_timeout`.
    pub max_deferred: usize,
    /// Deliberate defects (tests only; all off by default).
    pub defects: Defects,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            bootstrap: false,
            auto_bootstrap: None,
            returning: None,
            seeds: Vec::new(),
            heartbeat_interval: 50,
            suspect_timeout: 400,
            flush_timeout: 600,
            lease: None,
            join_retry: 150,
            chunk_size: 16 * 1024,
            max_unstable: 1024,
            ack_every: 128,
            ack_delay: 1,
            max_outbox: 16 * 1024,
            member_queue: None,
            slow_timeout: 2_000,
            transfer_timeout: 5_000,
            max_deferred: 65_536,
            defects: Defects::default(),
        }
    }
}

/// Deliberate protocol defects. They exist only so tests can prove that the
/// simulator's checker notices each class of bug; never enable them
/// elsewhere.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defects {
    /// Install new views without delivering the flush union first.
    pub skip_flush: bool,
    /// The total-order sequencer swaps every second pair of decisions it
    /// sends to the broker with the highest rank.
    pub swap_decisions: bool,
    /// Ask the state provider for its checkpoint only after it has delivered
    /// the next message of the new view (the wrong cut).
    pub late_checkpoint: bool,
    /// Deliver `safe` messages without waiting for stability.
    pub unsafe_safe: bool,
    /// Ignore causal dependencies when delivering.
    pub ignore_causal: bool,
    /// Keep delivering after losing the primary component.
    pub deliver_in_minority: bool,
    /// Choose the oldest member as state provider whether or not it joined
    /// with state (so a member that keeps no state answers a joiner with an
    /// empty checkpoint while members that keep state exist).
    pub any_provider: bool,
    /// After an exclusion, re-join every local member with state transfer,
    /// also those that joined without state.
    pub rejoin_with_state: bool,
    /// Keep delivering after losing the primary component and never say so
    /// (no `Blocked` / `Unblocked` events): the checker must notice from
    /// the views alone.
    pub ignore_minority: bool,
}
