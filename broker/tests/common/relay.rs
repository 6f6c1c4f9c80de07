//! A fault-injecting UDP relay for tests: stands between QUIC endpoints on
//! loopback and can drop everything (a partition), drop a fraction of
//! datagrams (loss) or hold them back (delay).
//!
//! Each source address seen on the listening socket gets its own upstream
//! socket towards the target, so replies find their way back (a tiny NAT).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;

/// The faults applied to datagrams, in both directions.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Drop every datagram (a partition).
    pub cut: bool,
    /// Drop this fraction of datagrams (0.0 to 1.0).
    pub loss: f64,
    /// Hold every datagram this long before forwarding.
    pub delay: Duration,
}

/// A running relay; dropping it stops it.
pub struct Relay {
    /// Where to send traffic meant for the target.
    pub addr: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts relaying datagrams from a new loopback port to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listen = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = listen.local_addr().unwrap();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let task = tokio::spawn(run(listen, target, faults.clone()));
        Relay { addr, faults, task }
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }

    /// Cuts (true) or heals (false) the link.
    pub fn cut(&self, cut: bool) {
        self.faults.lock().unwrap().cut = cut;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A small deterministic generator for loss decisions (xorshift).
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn pass(faults: &Mutex<Faults>, dice: &Mutex<Dice>) -> Option<Duration> {
    let f = faults.lock().unwrap().clone();
    if f.cut || (f.loss > 0.0 && dice.lock().unwrap().roll() < f.loss) {
        return None;
    }
    Some(f.delay)
}

async fn forward(socket: Arc<UdpSocket>, data: Vec<u8>, to: SocketAddr, delay: Duration) {
    if delay.is_zero() {
        let _ = socket.send_to(&data, to).await;
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = socket.send_to(&data, to).await;
        });
    }
}

async fn run(listen: Arc<UdpSocket>, target: SocketAddr, faults: Arc<Mutex<Faults>>) {
    let dice = Arc::new(Mutex::new(Dice(0x9E37_79B9_7F4A_7C15)));
    let mut upstream: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = listen.recv_from(&mut buf).await else {
            return;
        };
        let up = match upstream.get(&from) {
            Some(s) => s.clone(),
            None => {
                let s = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                upstream.insert(from, s.clone());
                // Replies from the target go back to `from` via the listener.
                let (s2, back, faults, dice) =
                    (s.clone(), listen.clone(), faults.clone(), dice.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    while let Ok((n, _)) = s2.recv_from(&mut buf).await {
                        if let Some(delay) = pass(&faults, &dice) {
                            forward(back.clone(), buf[..n].to_vec(), from, delay).await;
                        }
                    }
                });
                s
            }
        };
        if let Some(delay) = pass(&faults, &dice) {
            forward(up, buf[..n].to_vec(), target, delay).await;
        }
    }
}
