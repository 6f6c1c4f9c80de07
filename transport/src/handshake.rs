//! The first frame on every meshcast stream, client or peer.
//!
//! A hello body is `MAGIC (4 bytes) | version (u16 LE) | bincode body`. The
//! answer is `MAGIC | version | status (u8) | body`, where status 0 carries a
//! bincode body and status 1 a plain UTF-8 refusal, so that a refusal can be
//! read whatever version the other side speaks. Magic and version come before
//! any bincode so a version mismatch is always reported as such.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{self, WireError};

/// First four bytes of every handshake frame body.
pub const MAGIC: [u8; 4] = *b"MCST";

const HEADER: usize = MAGIC.len() + 2;

/// Errors in a handshake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The first bytes were not the meshcast magic.
    #[error("not a meshcast handshake (bad magic bytes {0:02x?})")]
    BadMagic(Vec<u8>),
    /// The other side speaks a protocol version we do not.
    #[error("unsupported protocol version {got} (this side speaks version {supported})")]
    UnsupportedVersion {
        /// The version received.
        got: u16,
        /// The version this build speaks.
        supported: u16,
    },
    /// The other side refused the session.
    #[error("refused: {0}")]
    Refused(String),
    /// The other side refused the session with a machine-readable code
    /// (client protocol 3 and later: a [`crate::client_proto::CloseCode`]).
    #[error("refused: {reason}")]
    RefusedWith {
        /// The code.
        code: u32,
        /// Why, for people.
        reason: String,
    },
    /// The body after magic and version was malformed.
    #[error(transparent)]
    Malformed(#[from] WireError),
}

fn start(version: u16) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32_le(0);
    out.put_slice(&MAGIC);
    out.put_u16_le(version);
    out
}

fn finish(mut out: BytesMut) -> Bytes {
    let len = (out.len() - wire::LEN_PREFIX) as u32;
    out[..wire::LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
    out.freeze()
}

fn put_body<T: Serialize>(
    what: &'static str,
    msg: &T,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    let body = wire::frame(what, msg)?;
    out.put_slice(&body[wire::LEN_PREFIX..]);
    Ok(())
}

fn check_magic(body: &[u8]) -> Result<(), HandshakeError> {
    if body.len() < MAGIC.len() || body[..4] != MAGIC {
        return Err(HandshakeError::BadMagic(body[..body.len().min(4)].to_vec()));
    }
    if body.len() < HEADER {
        return Err(HandshakeError::Malformed(WireError::Malformed {
            what: "handshake",
            detail: format!("truncated after the magic bytes ({} bytes)", body.len()),
        }));
    }
    Ok(())
}

fn check_version(body: &[u8], supported: u16) -> Result<&[u8], HandshakeError> {
    check_magic(body)?;
    let got = u16::from_le_bytes([body[4], body[5]]);
    if got != supported {
        return Err(HandshakeError::UnsupportedVersion { got, supported });
    }
    Ok(&body[HEADER..])
}

/// Checks magic and that the version is within `min..=max`; returns the
/// version and the body after it (for protocols that accept several).
pub fn split_hello(body: &[u8], min: u16, max: u16) -> Result<(u16, &[u8]), HandshakeError> {
    check_magic(body)?;
    let got = u16::from_le_bytes([body[4], body[5]]);
    if !(min..=max).contains(&got) {
        return Err(HandshakeError::UnsupportedVersion {
            got,
            supported: max,
        });
    }
    Ok((got, &body[HEADER..]))
}

/// Encodes a hello frame (length prefix included) for protocol `version`.
pub fn encode_hello<T: Serialize>(
    what: &'static str,
    version: u16,
    hello: &T,
) -> Result<Bytes, WireError> {
    let mut out = start(version);
    put_body(what, hello, &mut out)?;
    Ok(finish(out))
}

/// Decodes a hello body, checking magic and that its version is `supported`.
pub fn decode_hello<T: DeserializeOwned>(
    what: &'static str,
    supported: u16,
    body: &[u8],
) -> Result<T, HandshakeError> {
    let rest = check_version(body, supported)?;
    Ok(wire::decode_body(what, rest)?)
}

/// Encodes the answer to a hello: accepted with a body, or refused with a reason.
pub fn encode_answer<T: Serialize>(
    what: &'static str,
    version: u16,
    answer: Result<&T, &str>,
) -> Result<Bytes, WireError> {
    let mut out = start(version);
    match answer {
        Ok(body) => {
            out.put_u8(0);
            put_body(what, body, &mut out)?;
        }
        Err(reason) => {
            out.put_u8(1);
            out.put_slice(reason.as_bytes());
        }
    }
    Ok(finish(out))
}

/// Encodes a refusal carrying a machine-readable `code` (status 2), which
/// a receiver decodes as [`HandshakeError::RefusedWith`]. Only for a peer
/// that understands it; others get [`encode_answer`]'s plain refusal.
pub fn encode_coded_refusal(version: u16, code: u32, reason: &str) -> Bytes {
    let mut out = start(version);
    out.put_u8(2);
    out.put_u32_le(code);
    out.put_slice(reason.as_bytes());
    finish(out)
}

/// Decodes an answer; a refusal is readable whatever its version.
pub fn decode_answer<T: DeserializeOwned>(
    what: &'static str,
    supported: u16,
    body: &[u8],
) -> Result<T, HandshakeError> {
    check_magic(body)?;
    if body.get(HEADER) == Some(&1) {
        return Err(HandshakeError::Refused(
            String::from_utf8_lossy(&body[HEADER + 1..]).into_owned(),
        ));
    }
    if body.get(HEADER) == Some(&2) && body.len() >= HEADER + 5 {
        let c = &body[HEADER + 1..HEADER + 5];
        return Err(HandshakeError::RefusedWith {
            code: u32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            reason: String::from_utf8_lossy(&body[HEADER + 5..]).into_owned(),
        });
    }
    let rest = check_version(body, supported)?;
    match rest.split_first() {
        Some((0, b)) => Ok(wire::decode_body(what, b)?),
        _ => Err(HandshakeError::Malformed(WireError::Malformed {
            what,
            detail: "missing or unknown status byte".into(),
        })),
    }
}
