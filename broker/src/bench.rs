//! `meshcast bench`: throughput and latency scenarios that print one JSON
//! line per result.
//!
//! * `fanout`: one publisher, several subscribers on one broker, N messages
//!   of each size; reports per-subscriber messages per second and checks
//!   that every message arrived, in publisher order.
//! * `latency`: one publisher at a fixed rate, one subscriber; reports
//!   one-way latency percentiles in microseconds.
//!
//! The publisher keeps at most `window` messages ahead of the slowest
//! subscriber, so the measurement never trips the broker's slow-consumer
//! limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use meshcast_client::{Client, ClientOptions, Ordering, Publish, Subscription};
use serde::Serialize;

/// Where the broker under test is.
#[derive(Debug, Clone)]
pub struct Target {
    /// Client options for the broker (address and CA).
    pub opts: ClientOptions,
}

/// Settings of the `fanout` scenario.
#[derive(Debug, Clone)]
pub struct FanoutParams {
    /// Messages per payload size.
    pub messages: u64,
    /// Payload sizes in bytes.
    pub sizes: Vec<usize>,
    /// Number of subscribers.
    pub subscribers: usize,
    /// Most messages the publisher may be ahead of the slowest subscriber.
    pub window: u64,
}

/// Settings of the `latency` scenario.
#[derive(Debug, Clone)]
pub struct LatencyParams {
    /// Messages per second.
    pub rate: u64,
    /// How long to publish.
    pub duration: Duration,
    /// Payload size in bytes (at least 8).
    pub size: usize,
}

/// One `fanout` result.
#[derive(Debug, Serialize)]
pub struct FanoutResult {
    /// Always "fanout".
    pub scenario: &'static str,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages published.
    pub messages: u64,
    /// Number of subscribers.
    pub subscribers: usize,
    /// Messages per second seen by each subscriber.
    pub per_subscriber_msgs_per_s: Vec<f64>,
    /// The slowest subscriber's rate.
    pub min_msgs_per_s: f64,
    /// Payload megabytes per second at the slowest subscriber.
    pub min_mb_per_s: f64,
    /// Whether every subscriber got every message.
    pub all_arrived: bool,
    /// Whether every subscriber saw them in publish order.
    pub in_order: bool,
    /// Wall time from first publish to last delivery, seconds.
    pub elapsed_s: f64,
}

/// One `latency` result.
#[derive(Debug, Serialize)]
pub struct LatencyResult {
    /// Always "latency".
    pub scenario: &'static str,
    /// Payload size in bytes.
    pub size: usize,
    /// Target rate, messages per second.
    pub rate: u64,
    /// Messages measured.
    pub messages: u64,
    /// One-way latency percentiles in microseconds.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
}

struct SubTally {
    received: AtomicU64,
    in_order: std::sync::atomic::AtomicBool,
    /// Set when the subscriber stopped early (its error is in its task).
    stopped: std::sync::atomic::AtomicBool,
}

impl SubTally {
    fn new() -> Arc<SubTally> {
        Arc::new(SubTally {
            received: AtomicU64::new(0),
            in_order: true.into(),
            stopped: false.into(),
        })
    }
}

/// Connects a subscriber with room for the whole window (plus a check
/// interval) in its buffer, so a subscriber within the window never
/// overflows it.
async fn subscriber(
    opts: &ClientOptions,
    name: String,
    window: u64,
    topic: &str,
) -> Result<(Client, Subscription)> {
    let mut opts = opts.clone().name(name);
    opts.subscription_buffer = (window as usize + 1024) * 2;
    let c = Client::connect(opts)
        .await
        .context("connecting a subscriber")?;
    let s = c.subscribe(topic).await?;
    Ok((c, s))
}

/// Waits while the publisher, about to send message `sent`, is more than
/// `window` messages ahead of the slowest subscriber. Returns false if a
/// subscriber has stopped (the run cannot complete).
async fn hold_window(tallies: &[Arc<SubTally>], sent: u64, window: u64) -> bool {
    let stopped = || {
        tallies
            .iter()
            .any(|t| t.stopped.load(AtomicOrdering::Acquire))
    };
    let slowest = || {
        tallies
            .iter()
            .map(|t| t.received.load(AtomicOrdering::Acquire))
            .min()
            .unwrap_or(0)
    };
    let waiting = Instant::now();
    while sent.saturating_sub(slowest()) > window
        && !stopped()
        && waiting.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    !stopped()
}

/// Drains `expected` messages from `publisher` (any publisher when `None`),
/// checking each publisher's order and hashing the delivery order (FNV-1a
/// over publisher and sequence number). Returns when it finished and the hash.
async fn drain(
    mut sub: Subscription,
    expected: u64,
    tally: Arc<SubTally>,
    publisher: Option<u64>,
) -> Result<(Instant, u64)> {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut last_seq: std::collections::HashMap<u64, u64> = Default::default();
    let mut n = 0;
    while n < expected {
        let m = match sub.next().await {
            Some(Ok(m)) => m,
            other => {
                tally.stopped.store(true, AtomicOrdering::Release);
                bail!("subscriber ended after {n} of {expected} messages: {other:?}");
            }
        };
        if publisher.is_some_and(|p| p != m.publisher) {
            continue;
        }
        let last = last_seq
            .entry(m.publisher)
            .or_insert(m.seq.saturating_sub(1));
        if m.seq != *last + 1 {
            tally.in_order.store(false, AtomicOrdering::Relaxed);
        }
        *last = m.seq;
        for b in m
            .publisher
            .to_le_bytes()
            .into_iter()
            .chain(m.seq.to_le_bytes())
        {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        n += 1;
        tally.received.store(n, AtomicOrdering::Release);
    }
    Ok((Instant::now(), hash))
}

/// Runs the `fanout` scenario, returning one result per payload size.
pub async fn fanout(target: &Target, p: &FanoutParams) -> Result<Vec<FanoutResult>> {
    let mut results = Vec::new();
    for (round, &size) in p.sizes.iter().enumerate() {
        let topic = format!("bench/fanout/{round}");
        let publisher = Client::connect(target.opts.clone().name("bench-pub"))
            .await
            .context("connecting the publisher")?;
        let mut subs = Vec::new();
        for i in 0..p.subscribers {
            subs.push(subscriber(&target.opts, format!("bench-sub-{i}"), p.window, &topic).await?);
        }
        let tallies: Vec<_> = (0..p.subscribers).map(|_| SubTally::new()).collect();
        let start = Instant::now();
        let mut tasks = Vec::new();
        let mut clients = Vec::new();
        let me = Some(publisher.session_id());
        for ((c, s), t) in subs.into_iter().zip(&tallies) {
            clients.push(c);
            tasks.push(tokio::spawn(drain(s, p.messages, t.clone(), me)));
        }
        let handle = publisher.publisher(&topic, Ordering::Fifo)?;
        let payload = bytes::Bytes::from(vec![0xA5u8; size]);
        for i in 0..p.messages {
            if i % 256 == 0 && !hold_window(&tallies, i, p.window).await {
                break;
            }
            handle.publish(payload.clone()).await?;
        }
        publisher.flush().await?;
        let mut rates = Vec::new();
        let mut all_arrived = true;
        let mut last = start;
        for t in tasks {
            match tokio::time::timeout(Duration::from_secs(60), t).await {
                Ok(Ok(Ok((done, _)))) => {
                    let secs = done.duration_since(start).as_secs_f64();
                    rates.push(p.messages as f64 / secs);
                    last = last.max(done);
                }
                Ok(Ok(Err(e))) => {
                    eprintln!("bench: {e:#}");
                    all_arrived = false;
                }
                _ => all_arrived = false,
            }
        }
        let in_order = tallies
            .iter()
            .all(|t| t.in_order.load(AtomicOrdering::Relaxed));
        let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let min = if min.is_finite() { min } else { 0.0 };
        results.push(FanoutResult {
            scenario: "fanout",
            size,
            messages: p.messages,
            subscribers: p.subscribers,
            per_subscriber_msgs_per_s: rates.iter().map(|r| r.round()).collect(),
            min_msgs_per_s: min.round(),
            min_mb_per_s: (min * size as f64 / 1e6 * 100.0).round() / 100.0,
            all_arrived,
            in_order,
            elapsed_s: last.duration_since(start).as_secs_f64(),
        });
        publisher.close().await;
        for c in clients {
            c.close().await;
        }
    }
    Ok(results)
}

/// Runs the `latency` scenario.
pub async fn latency(target: &Target, p: &LatencyParams) -> Result<LatencyResult> {
    let size = p.size.max(8);
    let publisher = Client::connect(target.opts.clone().name("bench-lat-pub")).await?;
    let sub_client = Client::connect(target.opts.clone().name("bench-lat-sub")).await?;
    let mut sub = sub_client.subscribe("bench/latency").await?;
    let total = (p.rate as f64 * p.duration.as_secs_f64()) as u64;
    let epoch = Instant::now();
    let receiver = tokio::spawn(async move {
        let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
            .expect("static histogram bounds are valid");
        let mut n = 0;
        while n < total {
            match sub.next().await {
                Some(Ok(m)) => {
                    let Some(stamp) = m.payload.get(..8) else {
                        continue; // someone else's message on a shared broker
                    };
                    let sent = u64::from_le_bytes(stamp.try_into().unwrap_or([0; 8]));
                    let now = epoch.elapsed().as_nanos() as u64;
                    let _ = hist.record((now.saturating_sub(sent) / 1000).max(1));
                    n += 1;
                }
                _ => break,
            }
        }
        (hist, n)
    });
    let handle = publisher.publisher("bench/latency", Ordering::Fifo)?;
    let interval = Duration::from_secs_f64(1.0 / p.rate.max(1) as f64);
    let mut payload = vec![0u8; size];
    for i in 0..total {
        // Pace against the schedule, not against the previous send.
        let due = epoch + interval.mul_f64(i as f64);
        let now = Instant::now();
        if due > now + Duration::from_micros(500) {
            tokio::time::sleep(due - now).await;
        }
        let stamp = epoch.elapsed().as_nanos() as u64;
        payload[..8].copy_from_slice(&stamp.to_le_bytes());
        handle.publish(payload.clone()).await?;
    }
    publisher.flush().await?;
    let (hist, n) = tokio::time::timeout(Duration::from_secs(60), receiver)
        .await
        .context("latency subscriber timed out")??;
    publisher.close().await;
    sub_client.close().await;
    Ok(LatencyResult {
        scenario: "latency",
        size,
        rate: p.rate,
        messages: n,
        p50_us: hist.value_at_quantile(0.50),
        p90_us: hist.value_at_quantile(0.90),
        p99_us: hist.value_at_quantile(0.99),
        p999_us: hist.value_at_quantile(0.999),
        max_us: hist.max(),
    })
}

/// Settings of the `mesh` scenario.
#[derive(Debug, Clone)]
pub struct MeshParams {
    /// Messages per ordering mode.
    pub messages: u64,
    /// Payload size in bytes.
    pub size: usize,
    /// Most messages the publisher may be ahead of the slowest subscriber.
    pub window: u64,
}

/// One `mesh` result: a publisher on the first broker, one subscriber on
/// each broker.
#[derive(Debug, Serialize)]
pub struct MeshResult {
    /// Always "mesh".
    pub scenario: &'static str,
    /// `fifo`, `total` or `total+safe`.
    pub mode: &'static str,
    /// Brokers in the mesh.
    pub brokers: usize,
    /// Payload size in bytes.
    pub size: usize,
    /// Messages published.
    pub messages: u64,
    /// Messages per second seen by each subscriber (one per broker).
    pub per_subscriber_msgs_per_s: Vec<f64>,
    /// The slowest subscriber's rate.
    pub min_msgs_per_s: f64,
    /// Whether every subscriber got every message.
    pub all_arrived: bool,
    /// Whether every subscriber saw them in publish order.
    pub in_order: bool,
    /// Hash of the delivery order at each subscriber (all equal when the
    /// mesh agrees on one order).
    pub order_hashes: Vec<String>,
    /// Whether all order hashes are equal.
    pub same_order: bool,
}

/// Runs the `mesh` scenario against `brokers` (client options of each).
pub async fn mesh(brokers: &[ClientOptions], p: &MeshParams) -> Result<Vec<MeshResult>> {
    let modes = [
        ("fifo", Ordering::Fifo, false),
        ("total", Ordering::Total, false),
        ("total+safe", Ordering::Total, true),
    ];
    let mut results = Vec::new();
    for (mode, ordering, safe) in modes {
        let topic = format!("bench/mesh/{}", mode.replace('+', "-"));
        let mut subs = Vec::new();
        for (i, opts) in brokers.iter().enumerate() {
            subs.push(subscriber(opts, format!("bench-mesh-sub-{i}"), p.window, &topic).await?);
        }
        let publisher = Client::connect(brokers[0].clone().name("bench-mesh-pub")).await?;
        let handle = publisher.publisher(&topic, Publish::with(ordering).safe_if(safe))?;
        let tallies: Vec<_> = (0..subs.len()).map(|_| SubTally::new()).collect();
        let start = Instant::now();
        let mut tasks = Vec::new();
        let mut clients = Vec::new();
        for ((c, s), t) in subs.into_iter().zip(&tallies) {
            clients.push(c);
            tasks.push(tokio::spawn(drain(s, p.messages, t.clone(), None)));
        }
        let payload = bytes::Bytes::from(vec![0x5Au8; p.size]);
        for i in 0..p.messages {
            if i % 64 == 0 && !hold_window(&tallies, i, p.window).await {
                break;
            }
            handle.publish(payload.clone()).await?;
        }
        publisher.flush().await?;
        let mut rates = Vec::new();
        let mut hashes = Vec::new();
        let mut all_arrived = true;
        for t in tasks {
            match tokio::time::timeout(Duration::from_secs(60), t).await {
                Ok(Ok(Ok((done, hash)))) => {
                    rates.push(
                        (p.messages as f64 / done.duration_since(start).as_secs_f64()).round(),
                    );
                    hashes.push(format!("{hash:016x}"));
                }
                Ok(Ok(Err(e))) => {
                    eprintln!("bench: {e:#}");
                    all_arrived = false;
                }
                _ => all_arrived = false,
            }
        }
        let min = rates.iter().cloned().fold(f64::INFINITY, f64::min);
        let same_order = all_arrived && hashes.windows(2).all(|w| w[0] == w[1]);
        results.push(MeshResult {
            scenario: "mesh",
            mode,
            brokers: brokers.len(),
            size: p.size,
            messages: p.messages,
            per_subscriber_msgs_per_s: rates,
            min_msgs_per_s: if min.is_finite() { min } else { 0.0 },
            all_arrived,
            in_order: tallies
                .iter()
                .all(|t| t.in_order.load(AtomicOrdering::Relaxed)),
            order_hashes: hashes,
            same_order,
        });
        publisher.close().await;
        for c in clients {
            c.close().await;
        }
    }
    Ok(results)
}
