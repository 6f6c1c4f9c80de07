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
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use meshcast_client::{Client, ClientOptions, GroupEvent, Ordering};

fn holder(queue: &VecDeque<String>) -> Option<&String> {
    queue.front()
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut server: SocketAddr = "127.0.0.1:4810".parse()?;
    let mut ca = PathBuf::from("examples/mesh/certs/ca.pem");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => server = value.parse().context("--server")?,
            "--ca" => ca = value.into(),
            other => bail!("unknown flag {other} (use --server, --ca)"),
        }
    }
    let client = Client::connect(ClientOptions::new(server).ca_file(&ca).name("lock")).await?;
    let (mut group, state) = client.join_with_state("lock").await?;
    let me = group.view().members[group.view().rank as usize].clone();
    let mut queue: VecDeque<String> = state
        .map(|s| {
            String::from_utf8_lossy(&s)
                .lines()
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    println!("I am {me}; holder: {:?}", holder(&queue));
    let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let before = holder(&queue).cloned();
        tokio::select! {
            line = lines.recv() => {
                let Some(line) = line else { break };
                match line.trim() {
                    "lock" => group.multicast(format!("req {me}"), Ordering::Total, false).await?,
                    "unlock" => group.multicast(format!("rel {me}"), Ordering::Total, false).await?,
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
                Some(Ok(GroupEvent::View(v))) => queue.retain(|q| v.members.contains(q)),
                Some(Ok(GroupEvent::StateRequest(r))) => {
                    r.reply(queue.iter().map(|q| format!("{q}\n")).collect::<String>())
                }
                Some(Ok(GroupEvent::State(_))) => {}
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
