//! The one place that turns wire types into bytes and back.
//!
//! Every frame on a meshcast stream is `[len: u32 little-endian][body: len bytes]`.
//! Bodies are serde types encoded with bincode 2 (standard configuration,
//! variable-length integers). Nothing else in the project calls bincode, so
//! swapping the body codec is a change to this file alone.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Size of the length prefix in front of every frame body.
pub const LEN_PREFIX: usize = 4;

/// Hard ceiling on any frame body, whatever the configuration says
/// (the configured `limits.max_frame_bytes` must be below this).
pub const HARD_MAX_FRAME: usize = 64 << 20;

/// The bincode configuration used for every body. The limit stops a hostile
/// length field inside a body from claiming more memory than a frame can hold.
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<HARD_MAX_FRAME>()
}

/// Errors from encoding or decoding one frame body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body could not be decoded as the expected message type.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which message type was expected.
        what: &'static str,
        /// The decoder's description of the problem.
        detail: String,
    },
    /// The body decoded, but bytes were left over after the message.
    #[error("malformed {what}: {extra} unexpected trailing bytes")]
    TrailingBytes {
        /// Which message type was expected.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// A message could not be encoded (it would exceed the hard frame limit).
    #[error("cannot encode {what}: {detail}")]
    Encode {
        /// Which message type was being encoded.
        what: &'static str,
        /// The encoder's description of the problem.
        detail: String,
    },
}

/// Appends one complete frame (length prefix and body) holding `msg` to `out`.
///
/// `what` names the message type in errors.
pub fn encode_frame<T: Serialize>(
    what: &'static str,
    msg: &T,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    let start = out.len();
    out.put_u32_le(0);
    let mut writer = out.writer();
    let res = bincode::serde::encode_into_std_write(msg, &mut writer, config());
    let out = writer.into_inner();
    match res {
        Ok(_) => {
            let len = out.len() - start - LEN_PREFIX;
            if len > HARD_MAX_FRAME {
                out.truncate(start);
                return Err(WireError::Encode {
                    what,
                    detail: format!("body of {len} bytes exceeds {HARD_MAX_FRAME}"),
                });
            }
            out[start..start + LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(WireError::Encode {
                what,
                detail: e.to_string(),
            })
        }
    }
}

/// Encodes `msg` as a bare body (no length prefix), of at most `max` bytes:
/// for a message sent in several frames (see the mesh runtime's
/// fragments), which the frame limit does not bound.
pub fn encode_body<T: Serialize>(
    what: &'static str,
    msg: &T,
    max: usize,
) -> Result<Vec<u8>, WireError> {
    let body = bincode::serde::encode_to_vec(msg, config()).map_err(|e| WireError::Encode {
        what,
        detail: e.to_string(),
    })?;
    if body.len() > max {
        return Err(WireError::Encode {
            what,
            detail: format!("body of {} bytes exceeds {max}", body.len()),
        });
    }
    Ok(body)
}

/// Encodes `msg` as one frame in a fresh buffer, ready to share between
/// many receivers (encode once, send many).
pub fn frame<T: Serialize>(what: &'static str, msg: &T) -> Result<Bytes, WireError> {
    frame_sized(what, msg, 64)
}

/// Like [`frame`], with room for `size_hint` bytes reserved up front (the
/// payload plus a little), so large messages are encoded without regrowth.
pub fn frame_sized<T: Serialize>(
    what: &'static str,
    msg: &T,
    size_hint: usize,
) -> Result<Bytes, WireError> {
    let mut out = BytesMut::with_capacity(size_hint.min(HARD_MAX_FRAME) + LEN_PREFIX);
    encode_frame(what, msg, &mut out)?;
    Ok(out.freeze())
}

/// Decodes one frame body (without its length prefix) as a `T`.
///
/// The whole body must be consumed; trailing bytes are an error.
pub fn decode_body<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, WireError> {
    match bincode::serde::decode_from_slice::<T, _>(body, config()) {
        Ok((msg, used)) if used == body.len() => Ok(msg),
        Ok((_, used)) => Err(WireError::TrailingBytes {
            what,
            extra: body.len() - used,
        }),
        Err(e) => Err(WireError::Malformed {
            what,
            detail: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        a: u32,
        b: String,
        c: Vec<u8>,
    }

    #[test]
    fn frame_round_trips_and_has_length_prefix() {
        let msg = Sample {
            a: 7,
            b: "x/y".into(),
            c: vec![1, 2, 3],
        };
        let bytes = frame("sample", &msg).unwrap();
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len, bytes.len() - 4);
        let back: Sample = decode_body("sample", &bytes[4..]).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn golden_bytes_are_stable() {
        // varint u32 7, string len 1 + 'a', vec len 2 + bytes.
        let bytes = frame(
            "sample",
            &Sample {
                a: 7,
                b: "a".into(),
                c: vec![9, 10],
            },
        )
        .unwrap();
        assert_eq!(&bytes[..], &[6, 0, 0, 0, 7, 1, b'a', 2, 9, 10]);
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let bytes = frame(
            "sample",
            &Sample {
                a: 1,
                b: String::new(),
                c: vec![],
            },
        )
        .unwrap();
        let mut body = bytes[4..].to_vec();
        body.push(0);
        let err = decode_body::<Sample>("sample", &body).unwrap_err();
        assert!(
            matches!(err, WireError::TrailingBytes { extra: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn truncated_and_garbage_bodies_are_errors_not_panics() {
        let err = decode_body::<Sample>("sample", &[7, 200]).unwrap_err();
        assert!(err.to_string().starts_with("malformed sample"), "{err}");
        // A string length claiming far more bytes than exist.
        let err = decode_body::<Sample>("sample", &[1, 0xFC, 0xFF, 0xFF, 0xFF, 0x7F]).unwrap_err();
        assert!(matches!(err, WireError::Malformed { .. }), "{err}");
    }
}
