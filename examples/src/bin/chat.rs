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
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use meshcast_client::{Client, ClientOptions, GroupEvent, Ordering};

struct Args {
    server: SocketAddr,
    ca: PathBuf,
    name: String,
    room: String,
}

fn args() -> Result<Args> {
    let mut server = "127.0.0.1:4810".parse()?;
    let mut ca = PathBuf::from("examples/mesh/certs/ca.pem");
    let (mut name, mut room) = (String::from("anonymous"), String::from("lobby"));
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--server" => server = value.parse().context("--server")?,
            "--ca" => ca = value.into(),
            "--name" => name = value,
            "--room" => room = value,
            other => bail!("unknown flag {other} (use --server, --ca, --name, --room)"),
        }
    }
    Ok(Args {
        server,
        ca,
        name,
        room,
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let client = Client::connect(ClientOptions::new(a.server).ca_file(&a.ca).name(&a.name)).await?;
    // Topics chat/... belong to the group "chat"; its views say who is here.
    let mut members = client.join("chat").await?;
    let mut room = client.subscribe(&format!("chat/{}/*", a.room)).await?;
    let me = client.publisher(
        &format!("chat/{}/{}", a.room, a.name),
        Ordering::Total,
        false,
    )?;
    let mut seen: BTreeSet<String> = members.view().members.iter().cloned().collect();
    println!("* you are in room {} with {} member(s)", a.room, seen.len());
    let (lines_tx, mut lines) = tokio::sync::mpsc::channel::<String>(64);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
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
