//! A chat room over a meshcast mesh: lines typed on stdin are published to
//! `chat/<room>/<name>`, and a glob subscription `chat/<room>/**` prints
//! everyone's lines in one total order. The subscription is a member of the
//! `chat` group (topics `chat/...` belong to it), and that group's views,
//! which it delivers among the lines, announce who comes and goes.
//!
//! Views list members by id (`b1/s2`: broker and session), the same at
//! every member. To say "bob joined" and "bob left", each participant
//! announces its name and member id on `chat/<room>/_names/<name>` when it
//! arrives and again whenever someone joins, so newcomers learn the names
//! of those already there.
//!
//! ```sh
//! cargo run -p meshcast-examples --bin chat -- --server 127.0.0.1:4810 \
//!     --ca examples/mesh/certs/ca.pem --name alice --room lobby
//! ```

use anyhow::{Result, bail};
use meshcast_client::{Ordering, SubscriptionEvent};
use meshcast_examples::roster::Roster;

/// Topic segment under the room for name announcements.
const NAMES: &str = "_names";

#[tokio::main]
async fn main() -> Result<()> {
    let flags = meshcast_examples::Flags::parse(&["name", "room"])?;
    let (name, room_name) = (flags.get("name", "anonymous"), flags.get("room", "lobby"));
    let client = flags.connect(&name).await?;
    // Topics chat/... belong to the group "chat"; its views say who is here.
    let mut room = client.subscribe(&format!("chat/{room_name}/**")).await?;
    let me = client.publisher(&format!("chat/{room_name}/{name}"), Ordering::Total)?;
    let hello = client.publisher(&format!("chat/{room_name}/{NAMES}/{name}"), Ordering::Total)?;
    let mut roster = Roster::new(&name, room.view("chat"));
    if let Some(me) = roster.me() {
        hello.publish(me.to_string()).await?;
    }
    println!(
        "* you are in room {} with {} member(s)",
        room_name,
        roster.len()
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
                    let mut path = m.topic.rsplit('/');
                    let who = path.next().unwrap_or("?").to_string();
                    if path.next() == Some(NAMES) {
                        // An announcement: the payload is the member id.
                        let id = String::from_utf8_lossy(&m.payload);
                        if let Some(line) = roster.announced(&id, &who) {
                            println!("{line}");
                        }
                    } else {
                        println!("{who}: {}", String::from_utf8_lossy(&m.payload));
                    }
                }
                Some(Ok(SubscriptionEvent::View(v))) => {
                    let change = roster.view(&v);
                    for line in change.lines {
                        println!("{line}");
                    }
                    if let Some(me) = change.announce {
                        hello.publish(me).await?;
                    }
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
    // Close the session now, so the others see this member leave at once
    // (not only after limits.session_timeout_ms).
    drop(room);
    client.close().await;
    Ok(())
}
