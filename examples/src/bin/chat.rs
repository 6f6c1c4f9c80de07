//! A chat room over a meshcast mesh: lines typed on stdin are published to
//! `chat/<room>/<name>`, and a glob subscription `chat/<room>/*` prints
//! everyone's lines in one total order. The subscription is a member of the
//! `chat` group (topics `chat/...` belong to it), and that group's views,
//! which it delivers among the lines, announce who comes and goes.
//!
//! ```sh
//! cargo run -p meshcast-examples --bin chat -- --server 127.0.0.1:4810 \
//!     --ca examples/mesh/certs/ca.pem --name alice --room lobby
//! ```

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use meshcast_client::{Ordering, SubscriptionEvent};

#[tokio::main]
async fn main() -> Result<()> {
    let flags = meshcast_examples::Flags::parse(&["name", "room"])?;
    let (name, room_name) = (flags.get("name", "anonymous"), flags.get("room", "lobby"));
    let client = flags.connect(&name).await?;
    // Topics chat/... belong to the group "chat"; its views say who is here.
    let mut room = client.subscribe(&format!("chat/{}/*", room_name)).await?;
    let me = client.publisher(&format!("chat/{}/{}", room_name, name), Ordering::Total)?;
    let mut seen: BTreeSet<String> = room
        .view("chat")
        .map(|v| v.members.iter().cloned().collect())
        .unwrap_or_default();
    println!(
        "* you are in room {} with {} member(s)",
        room_name,
        seen.len()
    );
    let mut lines = meshcast_examples::stdin_lines();
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => me.publish(line).await?,
                None => break,
            },
            event = room.next_event() => match event {
                Some(Ok(SubscriptionEvent::Message(m))) => {
                    let who = m.topic.rsplit('/').next().unwrap_or("?");
                    println!("{who}: {}", String::from_utf8_lossy(&m.payload));
                }
                Some(Ok(SubscriptionEvent::View(v))) => {
                    let now: BTreeSet<String> = v.members.iter().cloned().collect();
                    for m in now.difference(&seen) {
                        println!("* {m} joined");
                    }
                    for m in seen.difference(&now) {
                        println!("* {m} left");
                    }
                    seen = now;
                }
                Some(Ok(SubscriptionEvent::Blocked)) => {
                    println!("* blocked: this broker is cut off from the rest of the mesh")
                }
                Some(Ok(SubscriptionEvent::Unblocked)) => println!("* back: nothing was missed"),
                Some(Ok(SubscriptionEvent::Rejoined(r))) => {
                    println!("* back as {}: lines sent meanwhile may be missing", r.member)
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("{e}"),
                None => break,
            },
        }
    }
    client.flush().await?;
    Ok(())
}
