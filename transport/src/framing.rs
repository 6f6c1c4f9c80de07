//! Splitting a byte stream into length-prefixed frames, with a hard maximum.
//!
//! [`FrameReader`] reads whatever the stream has and hands back every complete
//! frame in one batch, so a burst of small messages costs one read call.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::wire::LEN_PREFIX;

/// Errors while reading frames from a stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A frame announced a body larger than the configured maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes (limits.max_frame_bytes)")]
    Oversize {
        /// The announced body length.
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame ({buffered} bytes of an incomplete frame)")]
    Truncated {
        /// Bytes that were buffered when the stream ended.
        buffered: usize,
    },
    /// The underlying stream failed.
    #[error("stream read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads length-prefixed frames from an async byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`; frames with a body over `max` bytes are refused.
    pub fn new(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::with_capacity(64 * 1024),
            max,
        }
    }

    /// Changes the largest accepted frame body (e.g. after a handshake that
    /// was read with a small limit).
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// Reads until at least one frame is complete, then appends every complete
    /// frame body (without its length prefix) to `out`.
    ///
    /// Returns `Ok(false)` when the stream ended cleanly between frames.
    pub async fn read_batch(&mut self, out: &mut Vec<Bytes>) -> Result<bool, FrameError> {
        loop {
            let before = out.len();
            self.split_complete(out)?;
            if out.len() > before {
                return Ok(true);
            }
            if self.buf.capacity() - self.buf.len() < 16 * 1024 {
                self.buf.reserve(64 * 1024);
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(false)
                } else {
                    Err(FrameError::Truncated {
                        buffered: self.buf.len(),
                    })
                };
            }
        }
    }

    /// Reads exactly one frame body; `Ok(None)` if the stream ended cleanly.
    pub async fn read_one(&mut self) -> Result<Option<Bytes>, FrameError> {
        loop {
            if let Some(body) = self.split_one()? {
                return Ok(Some(body));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(64 * 1024);
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated {
                        buffered: self.buf.len(),
                    })
                };
            }
        }
    }

    fn split_complete(&mut self, out: &mut Vec<Bytes>) -> Result<(), FrameError> {
        while let Some(body) = self.split_one()? {
            out.push(body);
        }
        Ok(())
    }

    fn split_one(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.buf.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max {
            return Err(FrameError::Oversize { len, max: self.max });
        }
        if self.buf.len() < LEN_PREFIX + len {
            self.buf.reserve(LEN_PREFIX + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(LEN_PREFIX);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Gives back the wrapped stream.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(bodies: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for b in bodies {
            v.extend_from_slice(&(b.len() as u32).to_le_bytes());
            v.extend_from_slice(b);
        }
        v
    }

    #[tokio::test]
    async fn reads_all_complete_frames_in_one_batch() {
        let data = framed(&[b"one", b"", b"three"]);
        let mut r = FrameReader::new(&data[..], 100);
        let mut out = Vec::new();
        assert!(r.read_batch(&mut out).await.unwrap());
        assert_eq!(
            out,
            vec![Bytes::from("one"), Bytes::new(), Bytes::from("three")]
        );
        out.clear();
        assert!(!r.read_batch(&mut out).await.unwrap());
    }

    #[tokio::test]
    async fn oversize_frame_is_refused_before_buffering() {
        let mut data = (1_000_000u32).to_le_bytes().to_vec();
        data.extend_from_slice(b"abc");
        let mut r = FrameReader::new(&data[..], 1000);
        let err = r.read_one().await.unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Oversize {
                    len: 1_000_000,
                    max: 1000
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("limits.max_frame_bytes"));
    }

    #[tokio::test]
    async fn truncated_stream_is_an_error() {
        let data = framed(&[b"hello"]);
        let mut r = FrameReader::new(&data[..7], 100);
        let err = r.read_one().await.unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { buffered: 7 }),
            "{err}"
        );
    }
}
