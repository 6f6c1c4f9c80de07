//! Entry points of the fuzz targets in `broker/fuzz/` (cargo-fuzz), shared
//! with the replay tests below, which feed every file of the targets'
//! seed corpora (`broker/fuzz/corpus/<target>/`) through the same
//! functions in `cargo test`. Built with the `fuzzing` feature (the fuzz
//! crate enables it) and in this crate's tests.
//!
//! [`peer_frames`] decodes peer-link frames with the runtime's own decoder
//! (`node::mesh::read_frame`: the link message, fragments put together)
//! and hands every protocol message to a protocol core that is a member
//! of a small, running mesh. It checks that nothing panics, and that a
//! message the core refuses (`handle` returns an error) leaves it exactly
//! as if the message had never arrived: its state (compared through its
//! `Debug` rendering) and its outputs equal those of a copy that was only
//! given `Input::Timeout` at the same time (except for the documented
//! `Excluded` answer to a stale heartbeat, see
//! `meshcast_protocol::Error::WrongIncarnation`).

use std::sync::OnceLock;

use meshcast_protocol::{
    Broker, ClientCmd, Envelope, Input, NodeId, Ordering, Output, PeerMsg, ProtocolConfig, Time,
};

use crate::node::mesh::{LinkFrame, Reassembly, read_frame};

/// Largest message put together from fragments (as `mesh.max_message_bytes`).
const MAX_MESSAGE: usize = 1 << 20;

/// The three brokers of the fuzzed mesh; the fuzzed core is the first.
const NODES: [NodeId; 3] = [
    NodeId {
        name: 1,
        incarnation: 1,
    },
    NodeId {
        name: 2,
        incarnation: 1,
    },
    NodeId {
        name: 3,
        incarnation: 1,
    },
];

/// The state every input starts from.
struct Base {
    /// Broker 1 of a three-broker mesh with members in two groups and some
    /// messages delivered, its outputs drained.
    core: Broker,
    /// The time it reached.
    now: Time,
    /// What brokers 2 and 3 sent broker 1 while the mesh formed (seeds).
    received: Vec<Envelope>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(build)
}

/// Drains a core's outputs.
fn drain(core: &mut Broker) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

/// Runs three cores against each other (every message delivered at once,
/// in order) until the mesh and its groups are formed and some messages
/// are delivered everywhere. Deterministic: fixed seeds, no clock.
fn build() -> Base {
    let mut cores: Vec<Broker> = NODES
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let cfg = ProtocolConfig {
                bootstrap: i == 0,
                seeds: if i == 0 { Vec::new() } else { vec![1] },
                ..ProtocolConfig::default()
            };
            Broker::new(*id, cfg, i as u64 + 7)
        })
        .collect();
    let mut now = Time(0);
    let mut received = Vec::new();
    let join = |session, group: &str, state| {
        Input::Client(ClientCmd::Join {
            session,
            group: group.into(),
            state,
        })
    };
    for (i, c) in cores.iter_mut().enumerate() {
        let _ = c.handle(now, join(1, "g", i == 1));
        let _ = c.handle(now, join(2, "h", false));
    }
    let mut published = false;
    let mut quiet_until = None;
    for _ in 0..200_000 {
        // Deliver everything sent so far.
        let mut progress = false;
        for i in 0..cores.len() {
            for out in drain(&mut cores[i]) {
                match out {
                    Output::Send { to, envelope } => {
                        if let Some(j) = NODES.iter().position(|n| n.name == to.name) {
                            if j == 0 {
                                received.push(envelope.clone());
                            }
                            let _ = cores[j].handle(now, Input::Peer(envelope));
                            progress = true;
                        }
                    }
                    Output::StateRequest { transfer, .. } => {
                        let reply = ClientCmd::StateReply {
                            transfer,
                            data: b"checkpoint".to_vec(),
                        };
                        let _ = cores[i].handle(now, Input::Client(reply));
                        progress = true;
                    }
                    _ => {}
                }
            }
        }
        if progress {
            continue;
        }
        let formed = cores.iter().all(|c| {
            c.view().is_some_and(|v| v.members.len() == 3)
                && c.group_stats().iter().filter(|g| g.members == 3).count() == 2
        });
        if formed && !published {
            published = true;
            for (i, c) in cores.iter_mut().enumerate() {
                for (k, ordering) in [Ordering::Total, Ordering::Causal, Ordering::Fifo]
                    .into_iter()
                    .enumerate()
                {
                    let publish = ClientCmd::Publish {
                        session: 1,
                        group: if k == 1 { "h" } else { "g" }.into(),
                        ordering,
                        safe: (i + k) % 2 == 0,
                        payload: format!("m{i}{k}").into_bytes().into(),
                    };
                    let _ = c.handle(now, Input::Client(publish));
                }
            }
            quiet_until = Some(now.plus(1_000));
            continue;
        }
        if quiet_until.is_some_and(|t| now >= t) {
            let mut core = cores.swap_remove(0);
            drain(&mut core);
            return Base {
                core,
                now,
                received,
            };
        }
        let next = cores
            .iter()
            .filter_map(Broker::poll_timeout)
            .min()
            .unwrap_or(now.plus(1))
            .max(now.plus(1));
        now = next;
        for c in cores.iter_mut() {
            let _ = c.handle(now, Input::Timeout);
        }
    }
    let views: Vec<_> = cores
        .iter()
        .map(|c| (c.view().cloned(), c.group_stats()))
        .collect();
    panic!("the fuzzed mesh did not form by {now:?}: {views:?}");
}

/// Feeds `env` to `core` at `now`; a refusal must leave the core as a
/// timeout at the same time would.
fn step(core: &mut Broker, now: Time, env: Envelope) {
    let mut control = core.clone();
    let result = core.handle(now, Input::Peer(env.clone()));
    let outs = drain(core);
    if let Err(e) = result {
        control
            .handle(now, Input::Timeout)
            .expect("a timeout is never refused");
        let control_outs = drain(&mut control);
        assert_eq!(
            format!("{core:?}"),
            format!("{control:?}"),
            "refused ({e}) but the state changed: {env:?}"
        );
        // The one documented effect of a refusal: a heartbeat addressed to
        // an older incarnation of this broker, from a broker outside its
        // view, is answered `Excluded` (its view is over).
        let told_excluded = |o: &Output| {
            matches!(o, Output::Send { to, envelope }
                if *to == env.from && matches!(envelope.msg, PeerMsg::Excluded { .. }))
        };
        let outs: Vec<Output> = match e {
            meshcast_protocol::Error::WrongIncarnation { .. } => {
                outs.into_iter().filter(|o| !told_excluded(o)).collect()
            }
            _ => outs,
        };
        assert_eq!(
            outs, control_outs,
            "refused ({e}) but it had effects: {env:?}"
        );
    }
}

/// The peer-envelope fuzz target: `data` is a sequence of records
/// `[control: u8][len: u16 LE][frame body: len bytes]` (the last one may
/// be short). The control byte's low bit picks the sending link (broker 2
/// or 3, for fragments) and its upper bits how far the clock moves first
/// (in steps of 25 ms, so timeouts and view changes happen). Each body is
/// read as a peer-link frame; protocol messages go to the core.
pub fn peer_frames(data: &[u8]) {
    let base = base();
    let mut core = base.core.clone();
    let mut now = base.now;
    let mut reassembly = Reassembly::default();
    let mut rest = data;
    while rest.len() >= 3 {
        let control = rest[0];
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
        let end = (3 + len).min(rest.len());
        let body = &rest[3..end];
        rest = &rest[end..];
        now = now.plus(u64::from(control >> 1) * 25);
        let link = NODES[1 + usize::from(control & 1)].name;
        if let Ok(LinkFrame::Protocol(env)) = read_frame(&mut reassembly, link, body, MAX_MESSAGE) {
            step(&mut core, now, env);
        }
    }
}

/// Seed inputs for [`peer_frames`]: each message broker 1 received while
/// the mesh formed, as one record; a few runs of several; one message in
/// fragments. Used to write the seed corpus (`write_seed_corpus` below).
pub fn peer_frame_seeds() -> Vec<Vec<u8>> {
    use crate::node::mesh::{LinkLimits, encode_protocol};
    let record = |control: u8, frame: &[u8], out: &mut Vec<u8>| {
        let body = &frame[4..];
        out.push(control);
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        out.extend_from_slice(body);
    };
    let whole = LinkLimits {
        max_frame: 60_000,
        max_message: MAX_MESSAGE,
    };
    let frames_of = |env: &Envelope, limits: LinkLimits| {
        let mut buf = bytes::BytesMut::new();
        encode_protocol(env, limits, &mut buf).expect("encodes");
        let mut frames = Vec::new();
        let mut rest = &buf[..];
        while rest.len() >= 4 {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            frames.push(rest[..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        frames
    };
    let received = &base().received;
    // One seed per kind of message (the first few of each) keeps the
    // corpus small and varied.
    let mut per_kind: std::collections::HashMap<String, usize> = Default::default();
    let mut seeds = Vec::new();
    for env in received {
        let kind = format!("{:?}", env.msg);
        let kind = kind.split(['(', ' ', '{']).next().unwrap_or("").to_string();
        let n = per_kind.entry(kind).or_default();
        *n += 1;
        if *n > 3 {
            continue;
        }
        let control = u8::from(env.from.name == 3);
        let mut seed = Vec::new();
        for f in frames_of(env, whole) {
            record(control, &f, &mut seed);
        }
        seeds.push(seed);
    }
    // Runs of consecutive messages, with time passing.
    for chunk in received.chunks(16).take(4) {
        let mut seed = Vec::new();
        for env in chunk {
            let control = u8::from(env.from.name == 3) | (1 << 1);
            for f in frames_of(env, whole) {
                record(control, &f, &mut seed);
            }
        }
        seeds.push(seed);
    }
    // A message in fragments.
    if let Some(env) = received.iter().max_by_key(|e| format!("{:?}", e.msg).len()) {
        let small = LinkLimits {
            max_frame: 64,
            max_message: MAX_MESSAGE,
        };
        let mut seed = Vec::new();
        for f in frames_of(env, small) {
            record(u8::from(env.from.name == 3), &f, &mut seed);
        }
        seeds.push(seed);
    }
    // Time passing with nothing received: the core suspects its peers.
    seeds.push(vec![0xfe, 0, 0, 0xfe, 0, 0, 0xfe, 0, 0]);
    seeds
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn corpus(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target)
    }

    /// Every file of a corpus directory (sorted), with its name.
    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                let path = e.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read(&path).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    /// Replays the peer-envelope corpus (seeds, minimized fuzzer finds and
    /// crashing inputs kept as regressions) through [`peer_frames`].
    #[test]
    fn replay_peer_envelope_corpus() {
        let files = files(&corpus("peer_envelope"));
        assert!(files.len() >= 20, "{} files", files.len());
        for (name, data) in files {
            let result = std::panic::catch_unwind(|| peer_frames(&data));
            assert!(result.is_ok(), "corpus file {name} panicked");
        }
    }

    /// The seeds decode to protocol messages the core accepts or refuses
    /// without panicking (the generator's own check).
    #[test]
    fn seeds_are_meaningful() {
        let seeds = peer_frame_seeds();
        assert!(seeds.len() >= 20, "{}", seeds.len());
        for s in &seeds {
            peer_frames(s);
        }
    }

    /// Writes the seed corpus:
    /// `cargo test -p meshcast-broker --lib write_seed_corpus -- --ignored`.
    #[test]
    #[ignore = "writes broker/fuzz/corpus/peer_envelope/seed-*"]
    fn write_seed_corpus() {
        let dir = corpus("peer_envelope");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in peer_frame_seeds().iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:03}")), s).unwrap();
        }
    }
}
