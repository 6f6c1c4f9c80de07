//! A chat room over a meshcast mesh: lines typed on stdin are published to
//! `chat/<room>/<name>`, a glob subscription `chat/<room>/*` prints everyone's
//! lines in one total order, and membership of the `chat` group announces who
//! comes and goes.
//!
//! ```sh
//! cargo run -p meshcast-examples --bin chat -- --server 127.0.0.1:4810 \
//!     --ca examples/mesh/certs/ca.pem --name alice --room lobby
//! ```

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use futures_util::StreamExt;
use meshcast_client::{GroupEvent, Ordering};

#[tokio::main]
async fn main() -> Result<()> {
    let flags = meshcast_examples::Flags::parse(&["name", "room"])?;
    let (name, room_name) = (flags.get("name", "anonymous"), flags.get("room", "lobby"));
    let client = flags.connect(&name).await?;
    // Topics chat/... belong to the group "chat"; its views say who is here.
    let mut members = client.join("chat").await?;
    let mut room = client.subscribe(&format!("chat/{}/*", room_name)).await?;
    let me = client.publisher(
        &format!("chat/{}/{}", room_name, name),
        Ordering::Total,
        false,
    )?;
    let mut seen: BTreeSet<String> = members.view().members.iter().cloned().collect();
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
            msg = room.next() => match msg {
                Some(Ok(m)) => {
                    let who = m.topic.rsplit('/').next().unwrap_or("?");
                    println!("{who}: {}", String::from_utf8_lossy(&m.payload));
                }
                Some(Err(e)) => bail!("{e}"),
                None => break,
            },
            event = members.next() => match event {
                Some(Ok(GroupEvent::View(v))) => {
                    let now: BTreeSet<String> = v.members.iter().cloned().collect();
                    for m in now.difference(&seen) {
                        println!("* {m} joined");
                    }
                    for m in seen.difference(&now) {
                        println!("* {m} left");
                    }
                    seen = now;
                }
                Some(Ok(GroupEvent::Message(_) | GroupEvent::State(_))) => {}
                Some(Ok(GroupEvent::StateRequest(r))) => r.reply(Vec::new()),
                Some(Err(e)) => bail!("{e}"),
                None => break,
            },
        }
    }
    client.flush().await?;
    Ok(())
}
