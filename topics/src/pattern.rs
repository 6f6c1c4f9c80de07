//! Glob patterns over topics.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use globset::{Glob, GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize, Serializer};
use thiserror::Error;

use crate::topic::{MAX_SEGMENTS, MAX_TOPIC_LEN, SEPARATOR, Topic, char_reason, is_topic_char};

/// Deepest accepted nesting of `{...}` alternatives inside one segment.
pub const MAX_BRACE_DEPTH: usize = 8;

/// Why a string is not a valid [`Pattern`].
///
/// Segment indices and character positions are 0-based; positions count
/// characters within the segment. Every variant that concerns a segment
/// carries the segment's index and text and the whole pattern, and its
/// message names them.
#[derive(Debug, Clone, Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is the empty string.
    #[error("pattern is empty")]
    Empty,
    /// The pattern is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("pattern is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the rejected text in bytes.
        len: usize,
        /// The limit, [`MAX_TOPIC_LEN`].
        max: usize,
    },
    /// The pattern has more than [`MAX_SEGMENTS`] segments.
    #[error("pattern {pattern:?} has {count} segments, the maximum is {max}")]
    TooManySegments {
        /// The rejected pattern.
        pattern: String,
        /// Number of segments found.
        count: usize,
        /// The limit, [`MAX_SEGMENTS`].
        max: usize,
    },
    /// A segment is empty (leading, trailing or doubled `/`).
    #[error(
        "empty segment {index} in pattern {pattern:?} (no leading, trailing or double '/' allowed)"
    )]
    EmptySegment {
        /// Index of the empty segment.
        index: usize,
        /// The rejected pattern.
        pattern: String,
    },
    /// A character that is neither a topic character nor valid glob syntax
    /// at that place.
    #[error(
        "invalid character {ch:?} at position {position} in segment {segment} ({segment_text:?}) of pattern {pattern:?}: {reason}"
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
        /// The rejected pattern.
        pattern: String,
        /// Short explanation of the rule that was broken.
        reason: &'static str,
    },
    /// `**` used inside a segment (`a**b`, `**x`, `***`, `{**,a}`).
    #[error(
        "'**' at position {position} in segment {segment} ({segment_text:?}) of pattern {pattern:?}: '**' is only allowed as a whole segment, as in \"a/**/b\""
    )]
    MisplacedRecursive {
        /// Index of the offending segment.
        segment: usize,
        /// Character position of the first `*` of the pair.
        position: usize,
        /// Text of the offending segment.
        segment_text: String,
        /// The rejected pattern.
        pattern: String,
    },
    /// A `[` without a closing `]` in the same segment.
    #[error(
        "unclosed '[' at position {position} in segment {segment} ({segment_text:?}) of pattern {pattern:?} (a class cannot contain '/')"
    )]
    UnclosedClass {
        /// Index of the offending segment.
        segment: usize,
        /// Character position of the `[`.
        position: usize,
        /// Text of the offending segment.
        segment_text: String,
        /// The rejected pattern.
        pattern: String,
    },
    /// `[]`, `[!]` or `[^]`.
    #[error(
        "empty character class at position {position} in segment {segment} ({segment_text:?}) of pattern {pattern:?}"
    )]
    EmptyClass {
        /// Index of the offending segment.
        segment: usize,
        /// Character position of the `[`.
        position: usize,
        /// Text of the offending segment.
        segment_text: String,
        /// The rejected pattern.
        pattern: String,
    },
    /// A class range whose end comes before its start, such as `[z-a]`.
    #[error(
        "invalid range '{lo}-{hi}' in segment {segment} ({segment_text:?}) of pattern {pattern:?}: the end comes before the start"
    )]
    InvalidRange {
        /// Start of the range.
        lo: char,
        /// End of the range.
        hi: char,
        /// Index of the offending segment.
        segment: usize,
        /// Text of the offending segment.
        segment_text: String,
        /// The rejected pattern.
        pattern: String,
    },
    /// A class that contains no character a topic can have, such as `[,]`.
    #[error(
        "character class at position {position} in segment {segment} ({segment_text:?}) of pattern {pattern:?} matches no character allowed in topics"
    )]
    ClassMatchesNothing {
        /// Index of the offending segment.
        segment: usize,
        /// Character position of the `[`.
        position: usize,
        /// Text of the offending segment.
        segment_text: String,
        /// The rejected pattern.
        pattern: String,
    },
    /// A `{` without a closing `}` in the same segment.
    #[error(
        "unclosed '{{' at position {position} in segment {segment} ({segment_text:?}) of pattern {pattern:?} (alternatives cannot contain '/')"
    )]
    UnclosedBrace {
        /// Index of the offending segment.
        segment: usize,
        /// Character position of the unmatched `{`.
        position: usize,
        /// Text of the offending segment.
        segment_text: String,
        /// The rejected pattern.
        pattern: String,
    },
    /// A `}` without an opening `{` before it in the same segment.
    #[error(
        "unbalanced '}}' at position {position} in segment {segment} ({segment_text:?}) of pattern {pattern:?}"
    )]
    UnopenedBrace {
        /// Index of the offending segment.
        segment: usize,
        /// Character position of the `}`.
        position: usize,
        /// Text of the offending segment.
        segment_text: String,
        /// The rejected pattern.
        pattern: String,
    },
    /// `{...}` nested deeper than [`MAX_BRACE_DEPTH`].
    #[error(
        "'{{' nested more than {max} deep in segment {segment} ({segment_text:?}) of pattern {pattern:?}"
    )]
    NestingTooDeep {
        /// Index of the offending segment.
        segment: usize,
        /// The limit, [`MAX_BRACE_DEPTH`].
        max: usize,
        /// Text of the offending segment.
        segment_text: String,
        /// The rejected pattern.
        pattern: String,
    },
    /// The glob compiler (globset) rejected the pattern. The checks above
    /// are meant to catch every such case first; this wraps anything left.
    #[error("pattern {pattern:?} rejected by the glob compiler: {source}")]
    Glob {
        /// The rejected pattern.
        pattern: String,
        /// globset's error.
        #[source]
        source: globset::Error,
    },
}

struct Inner {
    text: Box<str>,
    literal_segments: usize,
    literal: bool,
    /// Compiled on first use; `None` only if globset refuses a pattern it
    /// accepted in [`Pattern::new`] (cannot happen in practice).
    matcher: OnceLock<Option<GlobMatcher>>,
}

/// Compiles the globset form of a pattern.
fn build_glob(glob_text: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(glob_text)
        .literal_separator(true)
        .backslash_escape(false)
        .empty_alternates(true)
        .build()
}

/// A validated glob over topics, such as `atc/*/tracks` or `orders/**`.
///
/// # Syntax and meaning
///
/// A pattern is `/`-separated like a topic, with the same length and segment
/// limits ([`MAX_TOPIC_LEN`] bytes, [`MAX_SEGMENTS`] segments, no empty
/// segment). Literal characters are those allowed in topics. On top of that:
///
/// | syntax | matches |
/// |---|---|
/// | `*` | any run of characters inside one segment (`a/*` matches `a/x`, not `a/x/y`; `x*` matches `x`, `xy`) |
/// | `?` | exactly one character inside a segment |
/// | `[abc]`, `[a-z]`, `[!a-z]` / `[^a-z]` | one character in (or, negated, not in) the set; never `/` |
/// | `{a,b*,c}` | any of the alternatives, which may use `*`, `?`, classes and nested braces (up to [`MAX_BRACE_DEPTH`]), but no `/`; an empty alternative (`x{,y}`) matches the empty string |
/// | `**` as a whole segment | any number of segments, see below |
///
/// `**` is only accepted as a whole segment (`a**b` is
/// [`PatternError::MisplacedRecursive`]):
///
/// * `a/**` matches every topic strictly below `a` (`a/b`, `a/b/c`), but
///   **not** `a` itself;
/// * `**/b` matches `b` at any depth, including the top level (`b`, `x/b`,
///   `x/y/b`);
/// * `a/**/b` matches `a/b`, `a/x/b`, `a/x/y/b` (zero or more segments in
///   between);
/// * `**` alone matches every topic.
///
/// Inside a class, a leading `!` or `^` negates, `a-z` is a range, a
/// leading or trailing `-` is literal, and the first `]` closes the class
/// (so `[]` and `[!]` are [`PatternError::EmptyClass`]); `[`, `\` and
/// non-printable characters are rejected, and a class must contain at
/// least one character a topic can have.
///
/// There are no escapes: `\` is rejected, and since topics never contain
/// glob characters nothing needs escaping. `,` is only valid inside braces
/// and `]`/`}` only as closers. Matching is case-sensitive.
///
/// The pattern is compiled with globset's `GlobBuilder` using
/// `literal_separator(true)`, `backslash_escape(false)` and
/// `empty_alternates(true)`. Character classes are rewritten before
/// compiling into the explicit set of topic characters they denote, so that
/// a negated class never matches `/`.
///
/// # Literal prefix
///
/// The *literal prefix* is the list of segments before the first segment
/// that contains any glob syntax (`*`, `?`, `[`, `{`). Every topic the
/// pattern matches starts with these segments; the group map uses this to
/// decide which groups a subscription reaches.
///
/// Equality, ordering and hashing compare the pattern text. Cloning is
/// cheap. A pattern holds little more than its text; the glob matcher is
/// compiled on the first call to [`Pattern::matches`] on a non-literal
/// pattern and shared by clones. A compiled matcher is a regex costing
/// kilobytes, so to match a topic against many patterns use a
/// [`SubscriptionIndex`](crate::SubscriptionIndex) rather than calling
/// `matches` on each.
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Pattern(Arc<Inner>);

impl Pattern {
    /// Validates and compiles `text`.
    pub fn new(text: impl Into<String>) -> Result<Pattern, PatternError> {
        let text = text.into();
        let parsed = parse(&text)?;
        if !parsed.literal {
            // Make sure globset accepts it now; the compiled form is not
            // kept (it costs over a kilobyte), see `compile_glob`.
            build_glob(&parsed.glob_text).map_err(|source| PatternError::Glob {
                pattern: text.clone(),
                source,
            })?;
        }
        Ok(Pattern(Arc::new(Inner {
            text: text.into_boxed_str(),
            literal_segments: parsed.literal_segments,
            literal: parsed.literal,
            matcher: OnceLock::new(),
        })))
    }

    /// The pattern text, as given.
    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// The segments of the pattern text.
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.text.split(SEPARATOR)
    }

    /// Whether `topic` matches this pattern.
    pub fn matches(&self, topic: &Topic) -> bool {
        if self.0.literal {
            return topic.as_str() == self.as_str();
        }
        self.0
            .matcher
            .get_or_init(|| self.compile_glob().map(|g| g.compile_matcher()))
            .as_ref()
            .is_some_and(|m| m.is_match(topic.as_str()))
    }

    /// Whether the pattern contains no glob syntax, i.e. matches exactly the
    /// topic with the same text.
    pub fn is_literal(&self) -> bool {
        self.0.literal
    }

    /// The topic this pattern matches, if it is literal.
    pub fn as_topic(&self) -> Option<Topic> {
        if self.is_literal() {
            Topic::new(self.as_str()).ok()
        } else {
            None
        }
    }

    /// The segments before the first segment containing glob syntax (all of
    /// them for a literal pattern; none for `*/x` or `**`).
    pub fn literal_prefix(&self) -> Vec<&str> {
        self.segments().take(self.0.literal_segments).collect()
    }

    /// Number of segments in [`Pattern::literal_prefix`].
    pub fn literal_prefix_len(&self) -> usize {
        self.0.literal_segments
    }

    /// Whether the pattern starts with a wildcard segment (empty literal
    /// prefix), so it can match topics under any first segment.
    pub fn starts_with_wildcard(&self) -> bool {
        self.0.literal_segments == 0
    }

    /// The pattern made of the segments from index `skip` on (`None` if
    /// that is empty). Checked like [`Pattern::new`] except for the final
    /// globset compilation, which cannot fail for part of a valid pattern.
    pub(crate) fn suffix(&self, skip: usize) -> Option<Pattern> {
        let text: &str = if skip == 0 {
            &self.0.text
        } else {
            let (i, _) = self.0.text.match_indices(SEPARATOR).nth(skip - 1)?;
            &self.0.text[i + 1..]
        };
        let parsed = parse(text).ok()?;
        Some(Pattern(Arc::new(Inner {
            text: text.into(),
            literal_segments: parsed.literal_segments,
            literal: parsed.literal,
            matcher: OnceLock::new(),
        })))
    }

    /// The globset form of the pattern (re-derived from the text, which
    /// is cheaper in memory than keeping it).
    pub(crate) fn compile_glob(&self) -> Option<Glob> {
        let parsed = parse(&self.0.text).ok()?;
        build_glob(&parsed.glob_text).ok()
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Pattern {}

impl PartialOrd for Pattern {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pattern {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for Pattern {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl AsRef<str> for Pattern {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.as_str())
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::new(s)
    }
}

impl TryFrom<String> for Pattern {
    type Error = PatternError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Pattern::new(value)
    }
}

impl TryFrom<&str> for Pattern {
    type Error = PatternError;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Pattern::new(value)
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

struct Parsed {
    glob_text: String,
    literal_segments: usize,
    literal: bool,
}

fn parse(text: &str) -> Result<Parsed, PatternError> {
    if text.is_empty() {
        return Err(PatternError::Empty);
    }
    if text.len() > MAX_TOPIC_LEN {
        return Err(PatternError::TooLong {
            len: text.len(),
            max: MAX_TOPIC_LEN,
        });
    }
    let segments: Vec<&str> = text.split(SEPARATOR).collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(PatternError::TooManySegments {
            pattern: text.to_owned(),
            count: segments.len(),
            max: MAX_SEGMENTS,
        });
    }
    let mut glob_text = String::with_capacity(text.len() + 8);
    let mut first_wild = None;
    for (index, seg) in segments.iter().enumerate() {
        if index > 0 {
            glob_text.push(SEPARATOR);
        }
        if seg.is_empty() {
            return Err(PatternError::EmptySegment {
                index,
                pattern: text.to_owned(),
            });
        }
        let wild = if *seg == "**" {
            glob_text.push_str("**");
            true
        } else {
            SegmentParser {
                pattern: text,
                index,
                seg,
                out: &mut glob_text,
            }
            .run()?
        };
        if wild && first_wild.is_none() {
            first_wild = Some(index);
        }
    }
    let literal_segments = first_wild.unwrap_or(segments.len());
    Ok(Parsed {
        glob_text,
        literal_segments,
        literal: first_wild.is_none(),
    })
}

/// Validates one segment (other than a whole `**`) and appends its glob
/// form to `out`.
struct SegmentParser<'a> {
    pattern: &'a str,
    index: usize,
    seg: &'a str,
    out: &'a mut String,
}

impl SegmentParser<'_> {
    /// Returns whether the segment contains glob syntax.
    fn run(mut self) -> Result<bool, PatternError> {
        let chars: Vec<char> = self.seg.chars().collect();
        let mut wild = false;
        let mut open: Vec<usize> = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' => {
                    if chars.get(i + 1) == Some(&'*') {
                        return Err(PatternError::MisplacedRecursive {
                            segment: self.index,
                            position: i,
                            segment_text: self.seg.to_owned(),
                            pattern: self.pattern.to_owned(),
                        });
                    }
                    self.out.push('*');
                    wild = true;
                }
                '?' => {
                    self.out.push('?');
                    wild = true;
                }
                '[' => {
                    i = self.class(&chars, i)?;
                    wild = true;
                }
                '{' => {
                    open.push(i);
                    if open.len() > MAX_BRACE_DEPTH {
                        return Err(PatternError::NestingTooDeep {
                            segment: self.index,
                            max: MAX_BRACE_DEPTH,
                            segment_text: self.seg.to_owned(),
                            pattern: self.pattern.to_owned(),
                        });
                    }
                    self.out.push('{');
                    wild = true;
                }
                '}' => {
                    if open.pop().is_none() {
                        return Err(PatternError::UnopenedBrace {
                            segment: self.index,
                            position: i,
                            segment_text: self.seg.to_owned(),
                            pattern: self.pattern.to_owned(),
                        });
                    }
                    self.out.push('}');
                }
                ',' if !open.is_empty() => self.out.push(','),
                ',' => return Err(self.invalid(c, i, "',' is only allowed inside {...}")),
                ']' => return Err(self.invalid(c, i, "']' without a matching '['")),
                '\\' => {
                    return Err(self.invalid(
                        c,
                        i,
                        "backslash escapes are not supported (topics never contain glob characters)",
                    ));
                }
                c if is_topic_char(c) => self.out.push(c),
                c => return Err(self.invalid(c, i, char_reason(c))),
            }
            i += 1;
        }
        if let Some(&position) = open.last() {
            return Err(PatternError::UnclosedBrace {
                segment: self.index,
                position,
                segment_text: self.seg.to_owned(),
                pattern: self.pattern.to_owned(),
            });
        }
        Ok(wild)
    }

    fn invalid(&self, ch: char, position: usize, reason: &'static str) -> PatternError {
        PatternError::InvalidChar {
            ch,
            segment: self.index,
            position,
            segment_text: self.seg.to_owned(),
            pattern: self.pattern.to_owned(),
            reason,
        }
    }

    /// Parses the class opening at `chars[start]` (globset's rules: a
    /// leading `!`/`^` negates, a leading or trailing `-` is literal), emits
    /// the equivalent explicit set of topic characters and returns the index
    /// of the closing `]`.
    fn class(&mut self, chars: &[char], start: usize) -> Result<usize, PatternError> {
        let mut i = start + 1;
        let negated = matches!(chars.get(i), Some('!' | '^'));
        if negated {
            i += 1;
        }
        let mut ranges: Vec<(char, char)> = Vec::new();
        let mut first = true;
        let mut in_range = false;
        let end = loop {
            let Some(&c) = chars.get(i) else {
                return Err(PatternError::UnclosedClass {
                    segment: self.index,
                    position: start,
                    segment_text: self.seg.to_owned(),
                    pattern: self.pattern.to_owned(),
                });
            };
            match c {
                ']' if first => {
                    return Err(PatternError::EmptyClass {
                        segment: self.index,
                        position: start,
                        segment_text: self.seg.to_owned(),
                        pattern: self.pattern.to_owned(),
                    });
                }
                ']' => break i,
                '\\' => {
                    return Err(self.invalid(
                        c,
                        i,
                        "backslash escapes are not supported (topics never contain glob characters)",
                    ));
                }
                '[' => return Err(self.invalid(c, i, "'[' cannot appear inside a class")),
                c if !c.is_ascii_graphic() => return Err(self.invalid(c, i, char_reason(c))),
                '-' if first => ranges.push(('-', '-')),
                '-' if !in_range => in_range = true,
                c if in_range => {
                    self.extend_range(&mut ranges, c)?;
                    in_range = false;
                }
                c => ranges.push((c, c)),
            }
            first = false;
            i += 1;
        };
        if in_range {
            ranges.push(('-', '-'));
        }
        let set: Vec<char> = (b'!'..=b'~')
            .map(char::from)
            .filter(|&c| is_topic_char(c))
            .filter(|&c| ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != negated)
            .collect();
        if set.is_empty() {
            return Err(PatternError::ClassMatchesNothing {
                segment: self.index,
                position: start,
                segment_text: self.seg.to_owned(),
                pattern: self.pattern.to_owned(),
            });
        }
        emit_set(&set, self.out);
        Ok(end)
    }

    fn extend_range(&self, ranges: &mut [(char, char)], hi: char) -> Result<(), PatternError> {
        // `in_range` is only set once a previous item exists.
        if let Some(last) = ranges.last_mut() {
            if hi < last.0 {
                return Err(PatternError::InvalidRange {
                    lo: last.0,
                    hi,
                    segment: self.index,
                    segment_text: self.seg.to_owned(),
                    pattern: self.pattern.to_owned(),
                });
            }
            last.1 = hi;
        }
        Ok(())
    }
}

/// Writes a glob matching exactly one character of `set` (non-empty, all
/// topic characters). Uses a bracket class with no ranges, ordered so that
/// no member is read as syntax (`!`/`^` not first, `-` last); falls back to
/// a single literal or to `{a,b}` alternatives when that is impossible.
fn emit_set(set: &[char], out: &mut String) {
    if let [only] = set {
        out.push(*only);
        return;
    }
    let special = |c: &char| matches!(c, '!' | '^' | '-');
    let mut ordered: Vec<char> = set.iter().copied().filter(|c| !special(c)).collect();
    if ordered.is_empty() {
        out.push('{');
        for (n, c) in set.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push(*c);
        }
        out.push('}');
        return;
    }
    ordered.extend(set.iter().copied().filter(|c| matches!(c, '!' | '^')));
    ordered.extend(set.iter().copied().filter(|&c| c == '-'));
    out.push('[');
    out.extend(ordered);
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::new(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn t(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    fn err(s: &str) -> PatternError {
        Pattern::new(s).expect_err(s)
    }

    fn check(pattern: &str, yes: &[&str], no: &[&str]) {
        let pat = p(pattern);
        for y in yes {
            assert!(pat.matches(&t(y)), "{pattern:?} should match {y:?}");
        }
        for n in no {
            assert!(!pat.matches(&t(n)), "{pattern:?} should not match {n:?}");
        }
    }

    #[test]
    fn literal() {
        check("a/b", &["a/b"], &["a", "a/b/c", "a/bc", "A/b"]);
        assert!(p("a/b").is_literal());
        assert_eq!(p("a/b").as_topic(), Some(t("a/b")));
        assert_eq!(p("a/b").literal_prefix(), ["a", "b"]);
    }

    #[test]
    fn star_is_one_segment_or_part_of_one() {
        check("a/*", &["a/b", "a/bc"], &["a", "a/b/c", "b/c"]);
        check("*", &["a", "abc"], &["a/b"]);
        check("a/x*", &["a/x", "a/xyz"], &["a/y", "a/x/y"]);
        check("a/*/c", &["a/b/c"], &["a/c", "a/b/b/c"]);
        check("*x*", &["x", "axb"], &["a/x"]);
    }

    #[test]
    fn double_star_semantics() {
        check("a/**", &["a/b", "a/b/c/d"], &["a", "ab", "b/a"]);
        check("**/b", &["b", "x/b", "x/y/b"], &["bb", "b/x"]);
        check(
            "a/**/b",
            &["a/b", "a/x/b", "a/x/y/b"],
            &["a", "b", "a/bb", "x/a/b"],
        );
        check("**", &["a", "a/b/c"], &[]);
        check("a/**/**", &["a/b", "a/b/c"], &["a"]);
        check("**/x/**", &["x/y", "a/x/y/z"], &["x", "a/x"]);
    }

    #[test]
    fn question_mark() {
        check("a/?", &["a/b"], &["a/bc", "a"]);
        check("a?c", &["abc"], &["ac", "abbc"]);
    }

    #[test]
    fn alternatives() {
        check("{a,b}/c", &["a/c", "b/c"], &["c/c", "ab/c"]);
        check("x/{a*,b?}", &["x/a", "x/abc", "x/bc"], &["x/b", "x/c"]);
        check("x{,y}", &["x", "xy"], &["y", "xyy"]);
        check("{a,{b,c}d}", &["a", "bd", "cd"], &["b", "ad"]);
    }

    #[test]
    fn classes() {
        check("[ab]/x", &["a/x", "b/x"], &["c/x", "ab/x"]);
        check("v[0-9]", &["v0", "v5", "v9"], &["v", "va", "v10"]);
        check("v[!0-9]", &["va", "v-"], &["v0", "v"]);
        check("v[^0-9]", &["va"], &["v3"]);
        check("a[-x]", &["a-", "ax"], &["ay"]);
        check("a[x-]", &["a-", "ax"], &["ay"]);
        check("a[!!]", &["a^", "a-"], &["a!"]);
        check("a[!^a-z]", &["a!", "a-"], &["a^", "aq"]);
        check("a[!a-z0-9]", &["aA"], &["ab", "a1"]);
        // A negated class never matches the separator.
        check("a[!x]b", &["ayb"], &["axb", "a/b"]);
        check("x/[+-0]", &["x/+", "x/-", "x/.", "x/0"], &["x/1"]);
        check("x[+-0]y", &["x.y"], &["x/y"]);
        check("[!^-]", &["!"], &["^", "-"]);
    }

    #[test]
    fn literal_prefix() {
        assert_eq!(p("a/b/*/d").literal_prefix(), ["a", "b"]);
        assert_eq!(p("a/b{c,d}/e").literal_prefix(), ["a"]);
        assert_eq!(p("a/[bc]").literal_prefix(), ["a"]);
        assert_eq!(p("a/?").literal_prefix(), ["a"]);
        assert!(p("**/a").literal_prefix().is_empty());
        assert!(p("*/a").starts_with_wildcard());
        assert!(!p("a/*").is_literal());
        assert_eq!(p("a/*").as_topic(), None);
    }

    #[test]
    fn suffix() {
        let pat = p("a/*/x*/{b,c}");
        assert_eq!(pat.suffix(0), Some(pat.clone()));
        assert_eq!(pat.suffix(2).unwrap().as_str(), "x*/{b,c}");
        assert_eq!(pat.suffix(3).unwrap().as_str(), "{b,c}");
        assert_eq!(pat.suffix(4), None);
        assert_eq!(pat.suffix(2).unwrap().literal_prefix_len(), 0);
        assert!(pat.suffix(2).unwrap().matches(&t("xy/c")));
    }

    #[test]
    fn equality_display_and_serde() {
        assert_eq!(p("a/*"), p("a/*"));
        assert_ne!(p("a/*"), p("a/?"));
        assert_eq!(p("a/{b,c}").to_string(), "a/{b,c}");
        assert_eq!("a/{b,c}".parse::<Pattern>().unwrap(), p("a/{b,c}"));
        assert_eq!(format!("{:?}", p("a/*")), "Pattern(\"a/*\")");
        let json = serde_json::to_string(&p("a/**")).unwrap();
        assert_eq!(json, "\"a/**\"");
        assert_eq!(serde_json::from_str::<Pattern>(&json).unwrap(), p("a/**"));
        let e = serde_json::from_str::<Pattern>("\"a**\"").unwrap_err();
        assert!(e.to_string().contains("'**'"), "{e}");
    }

    #[test]
    fn error_empty_and_limits() {
        assert!(matches!(err(""), PatternError::Empty));
        assert_eq!(err("").to_string(), "pattern is empty");
        let e = err(&"*".repeat(513));
        assert!(matches!(e, PatternError::TooLong { len: 513, max: 512 }));
        assert_eq!(
            e.to_string(),
            "pattern is 513 bytes long, the maximum is 512"
        );
        let e = err(&vec!["*"; 33].join("/"));
        assert!(matches!(
            e,
            PatternError::TooManySegments {
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
    fn error_empty_segment() {
        for (s, index) in [("/a", 0), ("a/", 1), ("a//*", 1)] {
            let e = err(s);
            assert!(
                matches!(e, PatternError::EmptySegment { index: i, .. } if i == index),
                "{e:?}"
            );
            assert!(
                e.to_string()
                    .starts_with(&format!("empty segment {index} in pattern {s:?}")),
                "{e}"
            );
        }
    }

    #[test]
    fn error_invalid_char() {
        assert_eq!(
            err("x/a,b").to_string(),
            "invalid character ',' at position 1 in segment 1 (\"a,b\") of pattern \"x/a,b\": \
             ',' is only allowed inside {...}"
        );
        assert!(err("a]").to_string().contains("']' without a matching '['"));
        assert!(
            err("a/b\\*")
                .to_string()
                .contains("backslash escapes are not supported")
        );
        assert!(
            err("a/b c")
                .to_string()
                .contains("' ' at position 1 in segment 1 (\"b c\")")
        );
        assert!(err("a/\u{e9}").to_string().contains("only printable ASCII"));
        assert!(err("a[\\]").to_string().contains("backslash"));
        assert!(
            err("a[[:alpha:]]")
                .to_string()
                .contains("'[' cannot appear inside a class")
        );
        assert!(
            err("a[\u{e9}]")
                .to_string()
                .contains("only printable ASCII")
        );
        match err("ok/x/{a, b}") {
            PatternError::InvalidChar {
                ch,
                segment,
                position,
                ..
            } => assert_eq!((ch, segment, position), (' ', 2, 3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn error_misplaced_recursive() {
        let e = err("x/a**b");
        assert_eq!(
            e.to_string(),
            "'**' at position 1 in segment 1 (\"a**b\") of pattern \"x/a**b\": \
             '**' is only allowed as a whole segment, as in \"a/**/b\""
        );
        for s in ["**a", "a**", "***", "{**,a}", "x/***/y"] {
            assert!(
                matches!(err(s), PatternError::MisplacedRecursive { .. }),
                "{s}"
            );
        }
    }

    #[test]
    fn error_classes() {
        assert_eq!(
            err("a/b[cd").to_string(),
            "unclosed '[' at position 1 in segment 1 (\"b[cd\") of pattern \"a/b[cd\" (a class cannot contain '/')"
        );
        assert!(matches!(
            err("a[b/c]"),
            PatternError::UnclosedClass { segment: 0, .. }
        ));
        assert_eq!(
            err("x/[]").to_string(),
            "empty character class at position 0 in segment 1 (\"[]\") of pattern \"x/[]\""
        );
        assert!(matches!(err("[!]"), PatternError::EmptyClass { .. }));
        assert_eq!(
            err("a/[z-a]").to_string(),
            "invalid range 'z-a' in segment 1 (\"[z-a]\") of pattern \"a/[z-a]\": the end comes before the start"
        );
        assert_eq!(
            err("a/x[,*]").to_string(),
            "character class at position 1 in segment 1 (\"x[,*]\") of pattern \"a/x[,*]\" matches no character allowed in topics"
        );
    }

    #[test]
    fn error_braces() {
        assert_eq!(
            err("x/{a/b}").to_string(),
            "unclosed '{' at position 0 in segment 1 (\"{a\") of pattern \"x/{a/b}\" (alternatives cannot contain '/')"
        );
        assert_eq!(
            err("x/a}").to_string(),
            "unbalanced '}' at position 1 in segment 1 (\"a}\") of pattern \"x/a}\""
        );
        let deep = format!("{}a{}", "{".repeat(9), "}".repeat(9));
        let e = err(&deep);
        assert!(
            matches!(
                e,
                PatternError::NestingTooDeep {
                    max: 8,
                    segment: 0,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("nested more than 8 deep in segment 0"),
            "{e}"
        );
        assert!(Pattern::new(format!("{}a{}", "{".repeat(8), "}".repeat(8))).is_ok());
    }

    #[test]
    fn glob_error_wraps_globset() {
        let source = GlobBuilder::new("[").build().unwrap_err();
        let e = PatternError::Glob {
            pattern: "[".into(),
            source,
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("pattern \"[\" rejected by the glob compiler: "),
            "{msg}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn errors_are_send_sync() {
        fn check<T: Send + Sync + std::error::Error + 'static>() {}
        check::<PatternError>();
    }
}
