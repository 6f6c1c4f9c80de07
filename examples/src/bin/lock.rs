//! The token lock of the virtual-synchrony literature, over a meshcast
//! mesh. Members of the group `lock` multicast requests and releases in
//! total order, so every member keeps the same queue of requests; the lock
//! belongs to the oldest pending request. When a view change removes a
//! member, every member drops its requests at the same point of the order,
//! so a crashed holder's lock passes on with no extra agreement.
//!
//! ```sh
//! cargo run -p meshcast-examples --bin lock -- --server 127.0.0.1:4810 \
//!     --ca examples/mesh/certs/ca.pem
//! > lock
//! > unlock
//! ```
//!
//! Commands on stdin: `lock`, `unlock`, `who`.

use std::collections::VecDeque;

use anyhow::{Result, bail};
use meshcast_client::{GroupEvent, Ordering};

fn holder(queue: &VecDeque<String>) -> Option<&String> {
    queue.front()
}

#[tokio::main]
async fn main() -> Result<()> {
    let flags = meshcast_examples::Flags::parse(&[])?;
    let client = flags.connect("lock").await?;
    let (mut group, state) = client.join_with_state("lock").await?;
    let mut me = group.view().members[group.view().rank as usize].clone();
    let mut queue: VecDeque<String> = state
        .map(|s| {
            String::from_utf8_lossy(&s)
                .lines()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    println!("I am {me}; holder: {:?}", holder(&queue));
    let mut lines = meshcast_examples::stdin_lines();
    loop {
        let before = holder(&queue).cloned();
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                match line.trim() {
                    "lock" => group.multicast(format!("req {me}"), Ordering::Total).await?,
                    "unlock" => group.multicast(format!("rel {me}"), Ordering::Total).await?,
                    "who" => println!("holder: {:?}, waiting: {}", holder(&queue), queue.len().saturating_sub(1)),
                    _ => println!("commands: lock | unlock | who"),
                }
            }
            event = group.next() => match event {
                Some(Ok(GroupEvent::Message(m))) => {
                    let text = String::from_utf8_lossy(&m.payload).to_string();
                    match text.split_once(' ') {
                        Some(("req", who)) if !queue.iter().any(|q| q == who) => queue.push_back(who.to_string()),
                        Some(("rel", who)) => queue.retain(|q| q != who),
                        _ => {}
                    }
                }
                // Everyone drops departed members' requests at the same point.
                Some(Ok(GroupEvent::View(v))) => {
                    queue.retain(|q| v.members.contains(q));
                    // After a partition this member rejoins under a new id.
                    me = v.members[v.rank as usize].clone();
                }
                Some(Ok(GroupEvent::StateRequest(r))) => {
                    r.reply(queue.iter().map(|q| format!("{q}\n")).collect::<String>())
                }
                // Back from a partition: the primary component's queue.
                Some(Ok(GroupEvent::State(s))) => {
                    queue = s
                        .map(|s| String::from_utf8_lossy(&s).lines().map(String::from).collect())
                        .unwrap_or_default();
                }
                Some(Ok(GroupEvent::Blocked)) => {
                    println!("* blocked: this broker is cut off from the primary component")
                }
                Some(Ok(GroupEvent::Unblocked)) => println!("* unblocked: nothing was missed"),
                // The next view lists this member under its new id.
                Some(Ok(GroupEvent::Rejoined(r))) => {
                    println!("* rejoined as {}: the queue comes with a fresh checkpoint", r.member)
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("{e}"),
                None => break,
            },
        }
        let after = holder(&queue).cloned();
        if after != before {
            match &after {
                Some(h) if *h == me => println!("* I hold the lock"),
                Some(h) => println!("* {h} holds the lock"),
                None => println!("* the lock is free"),
            }
        }
    }
    Ok(())
}
