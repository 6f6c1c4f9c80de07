//! A replicated key-value store over a meshcast mesh. Every replica joins
//! the group `kv` with state transfer and applies `set` commands in the
//! mesh's total order, so all replicas hold the same map and any replica
//! answers reads locally.
//!
//! ```sh
//! cargo run -p meshcast-examples --bin kv -- --server 127.0.0.1:4810 \
//!     --ca examples/mesh/certs/ca.pem
//! > set colour blue
//! > get colour
//! ```
//!
//! Commands on stdin: `set KEY VALUE`, `get KEY`, `dump`.
//!
//! The replica count is the group's view. To watch the store's traffic
//! without becoming a member (and so a replica) of any group, use a tap:
//! `meshcast sub --tap '**'`; a plain `meshcast sub '**'` joins every group
//! and is counted.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use meshcast_client::{GroupEvent, Ordering};

fn encode(map: &BTreeMap<String, String>) -> String {
    map.iter().map(|(k, v)| format!("{k}\t{v}\n")).collect()
}

fn decode(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let flags = meshcast_examples::Flags::parse(&[])?;
    let client = flags.connect("kv").await?;
    let (mut group, state) = client.join_with_state("kv").await?;
    let mut map = state
        .map(|s| decode(&String::from_utf8_lossy(&s)))
        .unwrap_or_default();
    println!(
        "replica ready: {} key(s), {} member(s)",
        map.len(),
        group.view().members.len()
    );
    let mut lines = meshcast_examples::stdin_lines();
    loop {
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                let mut words = line.splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("set"), Some(k), Some(v)) if !k.contains('\t') => {
                        // Applied when it comes back in total order, like everyone else.
                        group.multicast(format!("{k}\t{v}"), Ordering::Total).await?;
                    }
                    (Some("get"), Some(k), None) => match map.get(k) {
                        Some(v) => println!("{k} = {v}"),
                        None => println!("{k} is not set"),
                    },
                    (Some("dump"), None, None) => print!("{}", encode(&map)),
                    _ => println!("commands: set KEY VALUE | get KEY | dump"),
                }
            }
            event = group.next() => match event {
                Some(Ok(GroupEvent::Message(m))) => {
                    if let Some((k, v)) = String::from_utf8_lossy(&m.payload).split_once('\t') {
                        map.insert(k.to_string(), v.to_string());
                    }
                }
                // A new replica gets the map exactly as of this point of the order.
                Some(Ok(GroupEvent::StateRequest(r))) => r.reply(encode(&map)),
                Some(Ok(GroupEvent::View(v))) => println!("* {} replica(s)", v.members.len()),
                // After this broker was cut off from the primary component
                // and came back: the replica starts again from a checkpoint.
                Some(Ok(GroupEvent::State(s))) => {
                    map = s.map(|s| decode(&String::from_utf8_lossy(&s))).unwrap_or_default();
                    println!("* state re-synchronised: {} key(s)", map.len());
                }
                Some(Ok(GroupEvent::Blocked)) => {
                    println!("* blocked: this broker is cut off from the primary component; sets wait")
                }
                Some(Ok(GroupEvent::Unblocked)) => println!("* unblocked: nothing was missed"),
                Some(Ok(GroupEvent::Rejoined(r))) => {
                    println!("* rejoined as {}: updates may be missing, a fresh checkpoint follows", r.member)
                }
                // Moved to another broker (--server a,b,...): a new replica,
                // re-synchronised by the checkpoint that follows.
                Some(Ok(GroupEvent::Reconnected(r))) => println!("* {r}; a fresh checkpoint follows"),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("{e}"),
                None => break,
            },
        }
    }
    Ok(())
}
