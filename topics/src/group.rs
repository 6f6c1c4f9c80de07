//! The group map: which process group each topic belongs to.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::pattern::Pattern;
use crate::topic::{SEPARATOR, Topic, TopicError, char_reason, is_topic_char, validate_topic};

/// Longest accepted group name, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 128;

/// One configuration rule `prefix/** -> group`.
///
/// `prefix` is a topic-like path (same rules as [`Topic`]), optionally
/// written with a trailing `/**`, which is ignored. `group` is a group name:
/// 1 to [`MAX_GROUP_NAME_LEN`] bytes, made of the characters allowed in a
/// topic segment (printable ASCII except `/` and `* ? [ ] { } , \`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// The topic prefix, e.g. `atc/paris` or `atc/paris/**`.
    pub prefix: String,
    /// The group the topics under `prefix` belong to.
    pub group: String,
}

impl GroupRule {
    /// Convenience constructor.
    pub fn new(prefix: impl Into<String>, group: impl Into<String>) -> GroupRule {
        GroupRule {
            prefix: prefix.into(),
            group: group.into(),
        }
    }
}

/// Why a list of [`GroupRule`]s is not a valid [`GroupMap`]. Rule indices
/// are 0-based positions in the list given to [`GroupMap::new`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GroupMapError {
    /// The prefix is not a valid topic path (after removing a trailing `/**`).
    #[error("group rule {index}: invalid prefix {prefix:?}: {source}")]
    InvalidPrefix {
        /// Index of the rule.
        index: usize,
        /// The prefix as written.
        prefix: String,
        /// What is wrong with it.
        #[source]
        source: TopicError,
    },
    /// The group name is empty.
    #[error("group rule {index} (prefix {prefix:?}): group name is empty")]
    EmptyGroup {
        /// Index of the rule.
        index: usize,
        /// The rule's prefix as written.
        prefix: String,
    },
    /// The group name is longer than [`MAX_GROUP_NAME_LEN`] bytes.
    #[error("group rule {index}: group name is {len} bytes long, the maximum is {max}")]
    GroupTooLong {
        /// Index of the rule.
        index: usize,
        /// Length of the name in bytes.
        len: usize,
        /// The limit, [`MAX_GROUP_NAME_LEN`].
        max: usize,
    },
    /// The group name contains a character that is not allowed.
    #[error(
        "group rule {index}: invalid character {ch:?} at position {position} in group name {group:?}: {reason}"
    )]
    InvalidGroupChar {
        /// Index of the rule.
        index: usize,
        /// The group name.
        group: String,
        /// The offending character.
        ch: char,
        /// Character position within the name.
        position: usize,
        /// Short explanation of the rule that was broken.
        reason: &'static str,
    },
    /// Two rules have the same prefix (compared after removing `/**`).
    #[error("group rules {first} and {second} both have the prefix {prefix:?}")]
    DuplicatePrefix {
        /// The normalised prefix.
        prefix: String,
        /// Index of the first rule with it.
        first: usize,
        /// Index of the second rule with it.
        second: usize,
    },
}

/// Which groups a subscription pattern reaches; see [`GroupMap::reach`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reach {
    /// Every group, including groups created later.
    All,
    /// These groups (sorted, without duplicates).
    Groups(Vec<String>),
}

impl Reach {
    /// Whether `group` is reached.
    pub fn contains(&self, group: &str) -> bool {
        match self {
            Reach::All => true,
            Reach::Groups(groups) => groups.iter().any(|g| g == group),
        }
    }
}

/// The group map (DESIGN §3): ordered rules `prefix/** -> group`.
///
/// A topic belongs to the group of the rule with the longest prefix that
/// matches it segment-wise (prefix `a/b` matches `a/b` and `a/b/c`, not
/// `a/bc`); if no rule matches, to the group named by its first segment
/// (`orders/eu/created` -> `orders`).
///
/// Serialises as the list of rules (with prefixes normalised, i.e. without
/// a trailing `/**`); deserialising validates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<GroupRule>", into = "Vec<GroupRule>")]
pub struct GroupMap {
    rules: Vec<GroupRule>,
    by_prefix: HashMap<String, usize>,
}

impl GroupMap {
    /// Validates `rules` and builds the map. A trailing `/**` on a prefix is
    /// removed; the stored rules keep their order.
    pub fn new(rules: Vec<GroupRule>) -> Result<GroupMap, GroupMapError> {
        let mut out = Vec::with_capacity(rules.len());
        let mut by_prefix = HashMap::with_capacity(rules.len());
        for (index, rule) in rules.into_iter().enumerate() {
            let prefix = normalise_prefix(&rule.prefix);
            validate_topic(prefix).map_err(|source| GroupMapError::InvalidPrefix {
                index,
                prefix: rule.prefix.clone(),
                source,
            })?;
            validate_group(index, &rule)?;
            if let Some(&first) = by_prefix.get(prefix) {
                return Err(GroupMapError::DuplicatePrefix {
                    prefix: prefix.to_owned(),
                    first,
                    second: index,
                });
            }
            by_prefix.insert(prefix.to_owned(), index);
            out.push(GroupRule {
                prefix: prefix.to_owned(),
                group: rule.group,
            });
        }
        Ok(GroupMap {
            rules: out,
            by_prefix,
        })
    }

    /// The rules, in configuration order, with normalised prefixes.
    pub fn rules(&self) -> &[GroupRule] {
        &self.rules
    }

    /// Whether there are no rules (every topic is in its first-segment group).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The group `topic` belongs to: the group of the longest rule prefix
    /// that matches segment-wise, else the topic's first segment.
    ///
    /// Costs one hash lookup per segment of `topic`, whatever the number of
    /// rules.
    pub fn group_of<'a>(&'a self, topic: &'a Topic) -> &'a str {
        if !self.by_prefix.is_empty() {
            let text = topic.as_str();
            let boundaries = text
                .match_indices(SEPARATOR)
                .map(|(i, _)| i)
                .rev()
                .collect::<Vec<_>>();
            let candidates = std::iter::once(text.len()).chain(boundaries);
            for end in candidates {
                if let Some(&i) = self.by_prefix.get(&text[..end]) {
                    return &self.rules[i].group;
                }
            }
        }
        topic.first_segment()
    }

    /// The groups a subscription with `pattern` is a member of (DESIGN §3).
    ///
    /// Let `L` be the pattern's [literal prefix](Pattern::literal_prefix).
    ///
    /// * `L` empty (the pattern starts with a wildcard segment, e.g. `*/x`,
    ///   `**`, `{a,b}/x`): [`Reach::All`], which includes groups created later.
    /// * Otherwise the groups of every rule whose prefix is *compatible* with
    ///   `L` (one of them is a segment-prefix of the other), plus the
    ///   default group named by `L[0]`.
    ///
    /// This is sound: every topic the pattern matches starts with the
    /// segments of `L`, so its longest matching rule prefix is compatible
    /// with `L`, and if no rule matches its group is `L[0]`. It may
    /// over-approximate (e.g. a literal pattern `a/b` also reaches the group
    /// of a rule `a/b/c`, and `L[0]` is listed even when a rule covers all
    /// of `L`), as DESIGN §3 specifies.
    pub fn reach(&self, pattern: &Pattern) -> Reach {
        let lit = pattern.literal_prefix();
        let Some(first) = lit.first() else {
            return Reach::All;
        };
        let mut groups: Vec<String> = vec![(*first).to_owned()];
        for rule in &self.rules {
            let prefix: Vec<&str> = rule.prefix.split(SEPARATOR).collect();
            let n = prefix.len().min(lit.len());
            if prefix[..n] == lit[..n] {
                groups.push(rule.group.clone());
            }
        }
        groups.sort_unstable();
        groups.dedup();
        Reach::Groups(groups)
    }

    /// A stable 64-bit digest of the map, for brokers to compare maps.
    ///
    /// FNV-1a 64 over this canonical encoding: the bytes
    /// `meshcast-groupmap/v1` and a 0 byte; the rule count as a
    /// little-endian `u32`; then, for each rule **sorted by prefix bytes**,
    /// the prefix length (`u32` LE), the prefix bytes, the group length
    /// (`u32` LE) and the group bytes. Prefixes are normalised (no `/**`).
    ///
    /// Because the rules are sorted first, two maps that assign every topic
    /// the same way (same rules, any order) have the same digest. The value
    /// depends on nothing else (no platform, build or random state).
    pub fn digest(&self) -> u64 {
        let mut sorted: Vec<&GroupRule> = self.rules.iter().collect();
        sorted.sort_unstable_by(|a, b| a.prefix.as_bytes().cmp(b.prefix.as_bytes()));
        let mut h = Fnv1a64::new();
        h.write(b"meshcast-groupmap/v1\0");
        h.write_len(sorted.len());
        for rule in sorted {
            h.write_len(rule.prefix.len());
            h.write(rule.prefix.as_bytes());
            h.write_len(rule.group.len());
            h.write(rule.group.as_bytes());
        }
        h.finish()
    }
}

impl TryFrom<Vec<GroupRule>> for GroupMap {
    type Error = GroupMapError;

    fn try_from(rules: Vec<GroupRule>) -> Result<Self, Self::Error> {
        GroupMap::new(rules)
    }
}

impl From<GroupMap> for Vec<GroupRule> {
    fn from(map: GroupMap) -> Vec<GroupRule> {
        map.rules
    }
}

fn normalise_prefix(prefix: &str) -> &str {
    prefix.strip_suffix("/**").unwrap_or(prefix)
}

fn validate_group(index: usize, rule: &GroupRule) -> Result<(), GroupMapError> {
    let group = &rule.group;
    if group.is_empty() {
        return Err(GroupMapError::EmptyGroup {
            index,
            prefix: rule.prefix.clone(),
        });
    }
    if group.len() > MAX_GROUP_NAME_LEN {
        return Err(GroupMapError::GroupTooLong {
            index,
            len: group.len(),
            max: MAX_GROUP_NAME_LEN,
        });
    }
    if let Some((position, ch)) = group.chars().enumerate().find(|&(_, c)| !is_topic_char(c)) {
        let reason = if ch == SEPARATOR {
            "'/' is not allowed in group names"
        } else {
            char_reason(ch)
        };
        return Err(GroupMapError::InvalidGroupChar {
            index,
            group: group.clone(),
            ch,
            position,
            reason,
        });
    }
    Ok(())
}

/// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
struct Fnv1a64(u64);

impl Fnv1a64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Fnv1a64(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    fn write_len(&mut self, len: usize) {
        // Lengths are bounded by validation (prefix <= 512 bytes, group <=
        // 128 bytes); saturate rather than wrap for absurd rule counts.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.write(&len.to_le_bytes());
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Topic {
        Topic::new(s).unwrap()
    }

    fn p(s: &str) -> Pattern {
        Pattern::new(s).unwrap()
    }

    fn map(rules: &[(&str, &str)]) -> GroupMap {
        GroupMap::new(rules.iter().map(|(p, g)| GroupRule::new(*p, *g)).collect()).unwrap()
    }

    fn err(rules: &[(&str, &str)]) -> GroupMapError {
        GroupMap::new(rules.iter().map(|(p, g)| GroupRule::new(*p, *g)).collect()).unwrap_err()
    }

    fn fnv(bytes: &[u8]) -> u64 {
        let mut h = Fnv1a64::new();
        h.write(bytes);
        h.finish()
    }

    #[test]
    fn fnv_reference_vectors() {
        assert_eq!(fnv(b""), 0xcbf29ce484222325);
        assert_eq!(fnv(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn default_group_is_first_segment() {
        let m = GroupMap::default();
        assert!(m.is_empty());
        assert_eq!(m.group_of(&t("orders/eu/created")), "orders");
        assert_eq!(m.group_of(&t("solo")), "solo");
    }

    #[test]
    fn longest_segment_prefix_wins() {
        let m = map(&[
            ("a", "ga"),
            ("a/b/**", "gab"),
            ("a/b/c", "gabc"),
            ("x/y", "gxy"),
        ]);
        assert_eq!(m.len(), 4);
        assert_eq!(m.rules()[1], GroupRule::new("a/b", "gab"));
        assert_eq!(m.group_of(&t("a")), "ga");
        assert_eq!(m.group_of(&t("a/z")), "ga");
        assert_eq!(m.group_of(&t("a/b")), "gab");
        assert_eq!(m.group_of(&t("a/b/x")), "gab");
        assert_eq!(m.group_of(&t("a/bc")), "ga");
        assert_eq!(m.group_of(&t("a/b/c")), "gabc");
        assert_eq!(m.group_of(&t("a/b/c/d/e")), "gabc");
        assert_eq!(m.group_of(&t("a/b/cd")), "gab");
        assert_eq!(m.group_of(&t("x/y/z")), "gxy");
        assert_eq!(m.group_of(&t("x/yz")), "x");
        assert_eq!(m.group_of(&t("x")), "x");
        assert_eq!(m.group_of(&t("ab")), "ab");
    }

    #[test]
    fn order_does_not_change_assignment() {
        let m1 = map(&[("a", "g1"), ("a/b", "g2")]);
        let m2 = map(&[("a/b", "g2"), ("a", "g1")]);
        for s in ["a", "a/b", "a/b/c", "a/c"] {
            assert_eq!(m1.group_of(&t(s)), m2.group_of(&t(s)));
        }
        assert_eq!(m1.digest(), m2.digest());
    }

    #[test]
    fn digest_golden_values() {
        assert_eq!(GroupMap::default().digest(), 0x91bad1b53bcccf05);
        let m = map(&[("atc/paris/**", "paris"), ("orders", "orders-all")]);
        assert_eq!(m.digest(), 0x46c404764751c2ae);
        // Normalisation: `/**` is ignored.
        assert_eq!(
            map(&[("atc/paris", "paris"), ("orders/**", "orders-all")]).digest(),
            m.digest()
        );
        // Any change to a prefix or a group changes it.
        assert_ne!(
            map(&[("atc/paris", "paris"), ("orders", "orders-al")]).digest(),
            m.digest()
        );
        assert_ne!(
            map(&[("atc/pari", "paris"), ("orders", "orders-all")]).digest(),
            m.digest()
        );
        // Length prefixes keep field boundaries apart.
        assert_ne!(map(&[("ab", "c")]).digest(), map(&[("a", "bc")]).digest());
    }

    #[test]
    fn reach_follows_literal_prefix() {
        let m = map(&[
            ("a/b", "gab"),
            ("a/c/d", "gacd"),
            ("x", "gx"),
            ("a/bb", "gabb"),
        ]);
        assert_eq!(m.reach(&p("*/b")), Reach::All);
        assert_eq!(m.reach(&p("**")), Reach::All);
        assert_eq!(m.reach(&p("{a,x}/b")), Reach::All);
        let groups = |v: &[&str]| Reach::Groups(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(m.reach(&p("a/**")), groups(&["a", "gab", "gabb", "gacd"]));
        assert_eq!(m.reach(&p("a/b/*")), groups(&["a", "gab"]));
        assert_eq!(m.reach(&p("a/c/*")), groups(&["a", "gacd"]));
        assert_eq!(m.reach(&p("a/c/d/e/**")), groups(&["a", "gacd"]));
        assert_eq!(m.reach(&p("x/*")), groups(&["gx", "x"]));
        assert_eq!(m.reach(&p("q/*")), groups(&["q"]));
        assert_eq!(m.reach(&p("a/b")), groups(&["a", "gab"]));
        let r = m.reach(&p("a/b/*"));
        assert!(r.contains("gab") && r.contains("a") && !r.contains("gacd"));
        assert!(Reach::All.contains("anything"));
    }

    #[test]
    fn error_invalid_prefix() {
        let e = err(&[("ok", "g"), ("a//b", "g2")]);
        assert!(
            matches!(e, GroupMapError::InvalidPrefix { index: 1, .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("group rule 1: invalid prefix \"a//b\": empty segment 1"),
            "{e}"
        );
        for bad in ["**", "a/*", "", "a/**/b", "/a"] {
            assert!(
                matches!(err(&[(bad, "g")]), GroupMapError::InvalidPrefix { .. }),
                "{bad:?}"
            );
        }
        let e = err(&[("a/b*", "g")]);
        assert!(
            e.to_string()
                .contains("invalid character '*' at position 1 in segment 1 (\"b*\")"),
            "{e}"
        );
    }

    #[test]
    fn error_group_names() {
        let e = err(&[("a", "")]);
        assert_eq!(
            e.to_string(),
            "group rule 0 (prefix \"a\"): group name is empty"
        );
        let e = err(&[("a", &"g".repeat(129))]);
        assert_eq!(
            e.to_string(),
            "group rule 0: group name is 129 bytes long, the maximum is 128"
        );
        assert!(GroupMap::new(vec![GroupRule::new("a", "g".repeat(128))]).is_ok());
        let e = err(&[("a", "g"), ("b", "x/y")]);
        assert_eq!(
            e.to_string(),
            "group rule 1: invalid character '/' at position 1 in group name \"x/y\": '/' is not allowed in group names"
        );
        assert!(err(&[("a", "g h")]).to_string().contains("whitespace"));
        assert!(
            err(&[("a", "g*")])
                .to_string()
                .contains("'*' at position 1")
        );
    }

    #[test]
    fn error_duplicate_prefix() {
        let e = err(&[("a/b", "g1"), ("c", "g2"), ("a/b/**", "g3")]);
        assert_eq!(
            e,
            GroupMapError::DuplicatePrefix {
                prefix: "a/b".into(),
                first: 0,
                second: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "group rules 0 and 2 both have the prefix \"a/b\""
        );
    }

    #[test]
    fn serde_round_trip() {
        let m = map(&[("a/b/**", "g1"), ("c", "g2")]);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(
            json,
            r#"[{"prefix":"a/b","group":"g1"},{"prefix":"c","group":"g2"}]"#
        );
        let back: GroupMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.group_of(&t("a/b/c")), "g1");
        let bad = serde_json::from_str::<GroupMap>(r#"[{"prefix":"a","group":""}]"#).unwrap_err();
        assert!(bad.to_string().contains("group name is empty"), "{bad}");
        let unknown = serde_json::from_str::<GroupRule>(r#"{"prefix":"a","group":"g","x":1}"#);
        assert!(unknown.is_err());
    }

    #[test]
    fn errors_are_send_sync() {
        fn check<T: Send + Sync + std::error::Error + 'static>() {}
        check::<GroupMapError>();
    }
}
