//! Protocol tunables and the deliberate-defect switches used by the
//! checker's self-tests.

/// Tunables of one broker's protocol core. All durations are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolConfig {
    /// Start a singleton mesh instead of joining through `seeds`.
    pub bootstrap: bool,
    /// Broker names to ask for admission when not bootstrapping.
    pub seeds: Vec<u32>,
    /// Interval between heartbeats (which also carry stability frontiers).
    pub heartbeat_interval: u64,
    /// Silence after which a peer is suspected.
    pub suspect_timeout: u64,
    /// Time a coordinator waits for reports / acceptances before
    /// suspecting the silent brokers and starting again.
    pub flush_timeout: u64,
    /// Interval between join requests while joining.
    pub join_retry: u64,
    /// Maximum bytes of a state-transfer chunk.
    pub chunk_size: usize,
    /// Deliberate defects (tests only; all off by default).
    pub defects: Defects,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            bootstrap: false,
            seeds: Vec::new(),
            heartbeat_interval: 50,
            suspect_timeout: 400,
            flush_timeout: 600,
            join_retry: 150,
            chunk_size: 16 * 1024,
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
}
