//! Validated topic names.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};
use thiserror::Error;

/// Largest accepted topic (and pattern) length, in bytes.
pub const MAX_TOPIC_LEN: usize = 512;

/// Largest accepted number of `/`-separated segments in a topic or pattern.
pub const MAX_SEGMENTS: usize = 32;

/// The segment separator.
pub const SEPARATOR: char = '/';

/// Characters that have a meaning in patterns and therefore never appear in
/// a topic: `*`, `?`, `[`, `]`, `{`, `}`, `,` and `\` (the escape character
/// of most glob dialects).
pub const RESERVED_CHARS: &[char] = &['*', '?', '[', ']', '{', '}', ',', '\\'];

/// Whether `c` may appear inside a topic segment.
///
/// Allowed: printable ASCII (`'!'..='~'`), except `/` (the separator) and
/// [`RESERVED_CHARS`].
pub(crate) fn is_topic_char(c: char) -> bool {
    c.is_ascii_graphic() && c != SEPARATOR && !RESERVED_CHARS.contains(&c)
}

/// Why a character is not allowed in a topic segment (or a literal part of
/// a pattern).
pub(crate) fn char_reason(c: char) -> &'static str {
    if c.is_whitespace() {
        "whitespace is not allowed"
    } else if c.is_control() {
        "control characters are not allowed"
    } else if !c.is_ascii() {
        "only printable ASCII is allowed"
    } else {
        "wildcard and glob characters (* ? [ ] { } , \\) are not allowed in topics"
    }
}

/// Why a string is not a valid [`Topic`].
///
/// Segment indices and character positions are 0-based; positions count
/// characters (not bytes) within the segment.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TopicError {
    /// The topic is the empty string.
    #[error("topic is empty")]
    Empty,
    /// The topic is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the rejected text in bytes.
        len: usize,
        /// The limit, [`MAX_TOPIC_LEN`].
        max: usize,
    },
    /// The topic has more than [`MAX_SEGMENTS`] segments.
    #[error("topic {topic:?} has {count} segments, the maximum is {max}")]
    TooManySegments {
        /// The rejected topic.
        topic: String,
        /// Number of segments found.
        count: usize,
        /// The limit, [`MAX_SEGMENTS`].
        max: usize,
    },
    /// A segment is empty: the topic starts or ends with `/`, or contains `//`.
    #[error(
        "empty segment {index} in topic {topic:?} (no leading, trailing or double '/' allowed)"
    )]
    EmptySegment {
        /// Index of the empty segment.
        index: usize,
        /// The rejected topic.
        topic: String,
    },
    /// A segment contains a character that topics do not allow.
    #[error(
        "invalid character {ch:?} at position {position} in segment {segment} ({segment_text:?}) of topic {topic:?}: {reason}"
    )]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Index of the segment containing it.
        segment: usize,
        /// Character position within the segment.
        position: usize,
        /// Text of the offending segment.
        segment_text: String,
        /// The rejected topic.
        topic: String,
        /// Short explanation of the rule that was broken.
        reason: &'static str,
    },
}

/// Checks every [`Topic`] rule (also used for group-map prefixes).
pub(crate) fn validate_topic(text: &str) -> Result<(), TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong {
            len: text.len(),
            max: MAX_TOPIC_LEN,
        });
    }
    let count = text.split(SEPARATOR).count();
    if count > MAX_SEGMENTS {
        return Err(TopicError::TooManySegments {
            topic: text.to_owned(),
            count,
            max: MAX_SEGMENTS,
        });
    }
    for (index, seg) in text.split(SEPARATOR).enumerate() {
        if seg.is_empty() {
            return Err(TopicError::EmptySegment {
                index,
                topic: text.to_owned(),
            });
        }
        if let Some((position, ch)) = seg.chars().enumerate().find(|&(_, c)| !is_topic_char(c)) {
            return Err(TopicError::InvalidChar {
                ch,
                segment: index,
                position,
                segment_text: seg.to_owned(),
                topic: text.to_owned(),
                reason: char_reason(ch),
            });
        }
    }
    Ok(())
}

/// A validated topic: a `/`-separated path such as `atc/paris/tracks`.
///
/// Rules, checked by [`Topic::new`]:
///
/// * not empty and at most [`MAX_TOPIC_LEN`] bytes;
/// * at most [`MAX_SEGMENTS`] segments, none of them empty (so no leading,
///   trailing or doubled `/`);
/// * every character is printable ASCII (`'!'..='~'`): no whitespace, no
///   control characters, no non-ASCII characters;
/// * none of the pattern characters [`RESERVED_CHARS`]
///   (`* ? [ ] { } , \`).
///
/// Restricting topics to ASCII keeps one character equal to one byte, which
/// is what the byte-oriented glob matcher behind [`Pattern`](crate::Pattern)
/// assumes for `?` and `[...]`, and rules out look-alike topics.
///
/// Cloning is cheap (the text is shared). Equality, ordering and hashing are
/// those of the text, so a `HashMap<Topic, _>` can be queried with a `&str`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct Topic(Arc<str>);

impl Topic {
    /// Validates `text` and makes it a topic.
    pub fn new(text: impl Into<String>) -> Result<Topic, TopicError> {
        let text = text.into();
        validate_topic(&text)?;
        Ok(Topic(Arc::from(text)))
    }

    /// The topic text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, in order. Never empty, and no segment is empty.
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.split(SEPARATOR)
    }

    /// Number of segments (at least 1).
    pub fn segment_count(&self) -> usize {
        self.0.split(SEPARATOR).count()
    }

    /// The first segment (the default group of the topic).
    pub fn first_segment(&self) -> &str {
        self.0.split(SEPARATOR).next().unwrap_or("")
    }
}

impl Hash for Topic {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Same as `str`, so that `Borrow<str>` lookups work.
        self.as_str().hash(state);
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({:?})", self.as_str())
    }
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Topic::new(s)
    }
}

impl TryFrom<String> for Topic {
    type Error = TopicError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Topic::new(value)
    }
}

impl TryFrom<&str> for Topic {
    type Error = TopicError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Topic::new(value)
    }
}

impl From<Topic> for String {
    fn from(t: Topic) -> String {
        t.as_str().to_owned()
    }
}

impl Serialize for Topic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> TopicError {
        Topic::new(s).expect_err(s)
    }

    #[test]
    fn accepts_ordinary_topics() {
        for s in [
            "a",
            "atc/paris/tracks",
            "orders/eu/created",
            "a-b_c.d/~x/!#$%&'()+:;<=>@^`|",
        ] {
            let t = Topic::new(s).unwrap();
            assert_eq!(t.as_str(), s);
            assert_eq!(t.to_string(), s);
            assert_eq!(s.parse::<Topic>().unwrap(), t);
        }
        let t = Topic::new("atc/paris/tracks").unwrap();
        assert_eq!(t.segments().collect::<Vec<_>>(), ["atc", "paris", "tracks"]);
        assert_eq!(t.segment_count(), 3);
        assert_eq!(t.first_segment(), "atc");
    }

    #[test]
    fn limits_are_inclusive() {
        let long = "a".repeat(MAX_TOPIC_LEN);
        assert!(Topic::new(long.clone()).is_ok());
        let segs = vec!["s"; MAX_SEGMENTS].join("/");
        assert!(Topic::new(segs).is_ok());
    }

    #[test]
    fn empty_message() {
        assert_eq!(err(""), TopicError::Empty);
        assert_eq!(err("").to_string(), "topic is empty");
    }

    #[test]
    fn too_long_message() {
        let e = err(&"a".repeat(MAX_TOPIC_LEN + 1));
        assert_eq!(e, TopicError::TooLong { len: 513, max: 512 });
        assert_eq!(e.to_string(), "topic is 513 bytes long, the maximum is 512");
    }

    #[test]
    fn too_many_segments_message() {
        let s = vec!["s"; MAX_SEGMENTS + 1].join("/");
        let e = err(&s);
        assert!(matches!(
            e,
            TopicError::TooManySegments {
                count: 33,
                max: 32,
                ..
            }
        ));
        assert!(
            e.to_string().contains("has 33 segments, the maximum is 32"),
            "{e}"
        );
    }

    #[test]
    fn empty_segment_messages() {
        for (s, index) in [("/a", 0), ("a/", 1), ("a//b", 1), ("/", 0)] {
            let e = err(s);
            assert_eq!(
                e,
                TopicError::EmptySegment {
                    index,
                    topic: s.into()
                }
            );
            assert!(
                e.to_string()
                    .starts_with(&format!("empty segment {index} in topic {s:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn invalid_char_messages_name_segment_and_char() {
        let e = err("x/y/a*b");
        assert_eq!(
            e.to_string(),
            "invalid character '*' at position 1 in segment 2 (\"a*b\") of topic \"x/y/a*b\": \
             wildcard and glob characters (* ? [ ] { } , \\) are not allowed in topics"
        );
        for (s, ch, segment, position) in [
            ("a b", ' ', 0, 1),
            ("a/\tb", '\t', 1, 0),
            ("a/b\n", '\n', 1, 1),
            ("caf\u{e9}", '\u{e9}', 0, 3),
            ("a/b,c", ',', 1, 1),
            ("a/{b}", '{', 1, 0),
            ("a\\b", '\\', 0, 1),
            ("a/b?", '?', 1, 1),
            ("[a]", '[', 0, 0),
            ("a/\u{7f}", '\u{7f}', 1, 0),
        ] {
            match err(s) {
                TopicError::InvalidChar {
                    ch: c,
                    segment: sg,
                    position: p,
                    ..
                } => assert_eq!((c, sg, p), (ch, segment, position), "{s:?}"),
                other => panic!("{s:?}: {other:?}"),
            }
            let msg = err(s).to_string();
            assert!(msg.contains(&format!("{ch:?}")), "{msg}");
            assert!(msg.contains(&format!("segment {segment} (")), "{msg}");
        }
        assert!(
            err("a b")
                .to_string()
                .ends_with("whitespace is not allowed")
        );
        assert!(
            err("a\u{1}")
                .to_string()
                .ends_with("control characters are not allowed")
        );
        assert!(
            err("\u{e9}")
                .to_string()
                .ends_with("only printable ASCII is allowed")
        );
    }

    #[test]
    fn serde_round_trip_validates() {
        let t = Topic::new("a/b").unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"a/b\"");
        assert_eq!(serde_json::from_str::<Topic>(&json).unwrap(), t);
        let bad = serde_json::from_str::<Topic>("\"a//b\"").unwrap_err();
        assert!(bad.to_string().contains("empty segment 1"), "{bad}");
    }

    #[test]
    fn borrow_lookup_and_order() {
        let mut m = std::collections::HashMap::new();
        m.insert(Topic::new("a/b").unwrap(), 1);
        assert_eq!(m.get("a/b"), Some(&1));
        let mut v = [
            Topic::new("b").unwrap(),
            Topic::new("a/c").unwrap(),
            Topic::new("a").unwrap(),
        ];
        v.sort();
        assert_eq!(
            v.iter().map(Topic::as_str).collect::<Vec<_>>(),
            ["a", "a/c", "b"]
        );
    }

    #[test]
    fn errors_are_send_sync() {
        fn check<T: Send + Sync + std::error::Error + 'static>() {}
        check::<TopicError>();
    }
}
