//! Entry point of the fuzz target in `topics/fuzz/` (cargo-fuzz), shared
//! with the replay test below, which feeds every file of the seed corpus
//! (`topics/fuzz/corpus/topics/`) through it in `cargo test`. Built with
//! the `fuzzing` feature (the fuzz crate enables it) and in this crate's
//! tests.

use crate::{GroupMap, GroupRule, Pattern, SubscriptionIndex, Topic};

/// Lines of an input that are used.
const MAX_LINES: usize = 16;

/// Brace expansions the reference matcher tries before giving up on a
/// pattern (it then checks nothing for it).
const MAX_EXPANSIONS: usize = 256;

/// The topics fuzz target. `data` (UTF-8, else ignored) is read as lines;
/// each line is tried as a topic, as a pattern and, when it holds one
/// `=`, as a group rule `prefix=group`. Checks that nothing panics and:
///
/// * a valid topic reads back as given and splits into non-empty
///   segments within the bounds;
/// * a valid pattern matches a valid topic exactly when a small
///   independent matcher says so (segment-wise `*`, `?`, `[...]`,
///   `{a,b}` and whole-segment `**` with globset's rules: leading `**/`
///   and inner `/**/` match zero or more segments, trailing `/**` one or
///   more, `**` alone everything);
/// * the subscription index returns exactly the patterns that match;
/// * the group map puts a topic in the group of its longest matching
///   prefix (else its first segment), and a pattern reaches the group of
///   every topic it matches.
pub fn topics(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.lines().take(MAX_LINES).collect();
    let mut topics = Vec::new();
    let mut patterns = Vec::new();
    let mut rules = Vec::new();
    for line in &lines {
        if let Ok(t) = Topic::new(*line) {
            check_topic(&t, line);
            topics.push(t);
        }
        if let Ok(p) = Pattern::new(*line) {
            assert_eq!(p.as_str(), *line);
            patterns.push(p);
        }
        if let Some((prefix, group)) = line.split_once('=') {
            rules.push(GroupRule::new(prefix, group));
        }
    }
    let mut index = SubscriptionIndex::new(4);
    for (i, p) in patterns.iter().enumerate() {
        index.insert(i, p.clone());
    }
    for t in &topics {
        let mut expected = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            let got = p.matches(t);
            if let Some(want) = reference_match(p.as_str(), t.as_str()) {
                assert_eq!(
                    got,
                    want,
                    "pattern {:?} on topic {:?}: matches() says {got}, the reference {want}",
                    p.as_str(),
                    t.as_str()
                );
            }
            if got {
                expected.push(i);
            }
        }
        assert_eq!(
            &*index.matches(t),
            &expected[..],
            "index on {:?}",
            t.as_str()
        );
        // Twice: the second answer comes from the cache.
        assert_eq!(
            &*index.matches(t),
            &expected[..],
            "cached, on {:?}",
            t.as_str()
        );
    }
    let Ok(map) = GroupMap::new(rules) else {
        return;
    };
    for t in &topics {
        let group = map.group_of(t);
        assert_eq!(group, reference_group(&map, t), "group of {:?}", t.as_str());
        for p in &patterns {
            if p.matches(t) {
                assert!(
                    map.reach(p).contains(group),
                    "pattern {:?} matches {:?} but does not reach its group {group:?}",
                    p.as_str(),
                    t.as_str()
                );
            }
        }
    }
}

fn check_topic(t: &Topic, line: &str) {
    assert_eq!(t.as_str(), line);
    let segments: Vec<&str> = t.segments().collect();
    assert_eq!(segments.join("/"), line);
    assert_eq!(segments.len(), t.segment_count());
    assert!(segments.len() <= crate::MAX_SEGMENTS);
    assert!(line.len() <= crate::MAX_TOPIC_LEN);
    assert!(segments.iter().all(|s| !s.is_empty()), "{line:?}");
    assert!(!line.contains(crate::RESERVED_CHARS), "{line:?}");
    assert_eq!(t.first_segment(), segments[0]);
}

/// The group of `t` by the rules of `map`: the longest rule prefix made of
/// whole leading segments of `t`, else its first segment.
fn reference_group<'a>(map: &'a GroupMap, t: &'a Topic) -> &'a str {
    let mut best: Option<(&str, usize)> = None;
    for rule in map.rules() {
        let prefix = rule.prefix.trim_end_matches("/**");
        let covers = t.as_str() == prefix
            || t.as_str()
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'));
        if covers && best.is_none_or(|(_, len)| prefix.len() > len) {
            best = Some((&rule.group, prefix.len()));
        }
    }
    best.map_or(t.first_segment(), |(g, _)| g)
}

/// Whether pattern text `p` matches topic text `t`, by a matcher written
/// independently of globset; `None` when it does not decide (too many
/// brace expansions, two `**` segments in a row).
fn reference_match(p: &str, t: &str) -> Option<bool> {
    let ps: Vec<&str> = p.split('/').collect();
    if ps.windows(2).any(|w| w[0] == "**" && w[1] == "**") {
        return None;
    }
    let mut expanded = Vec::with_capacity(ps.len());
    for seg in &ps {
        if *seg == "**" {
            expanded.push(None);
        } else {
            let alternatives = expand_braces(seg)?;
            expanded.push(Some(alternatives));
        }
    }
    let ts: Vec<&str> = t.split('/').collect();
    Some(match_segments(&expanded, &ts, true))
}

/// Segment-wise matching; `None` stands for a `**` segment. `first` says
/// whether `ps` starts at the pattern's first segment.
fn match_segments(ps: &[Option<Vec<Vec<char>>>], ts: &[&str], first: bool) -> bool {
    match ps.split_first() {
        None => ts.is_empty(),
        Some((None, rest)) => {
            if rest.is_empty() {
                // `**` alone matches everything; a trailing `/**` one or
                // more segments.
                return first || !ts.is_empty();
            }
            // Leading `**/` and inner `/**/`: zero or more segments.
            (0..=ts.len()).any(|skip| match_segments(rest, &ts[skip..], false))
        }
        Some((Some(alternatives), rest)) => {
            let Some((t, ts_rest)) = ts.split_first() else {
                return false;
            };
            let t: Vec<char> = t.chars().collect();
            alternatives.iter().any(|a| match_chars(a, &t)) && match_segments(rest, ts_rest, false)
        }
    }
}

/// Glob matching of one segment: `*`, `?`, `[...]` (`!` or `^` negates,
/// `a-z` ranges, a leading `]` literal), everything else literal.
fn match_chars(p: &[char], t: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('*', rest)) => (0..=t.len()).any(|k| match_chars(rest, &t[k..])),
        Some(('?', rest)) => !t.is_empty() && match_chars(rest, &t[1..]),
        Some(('[', rest)) => {
            let Some((c, t_rest)) = t.split_first() else {
                return false;
            };
            let (negated, mut body) = match rest.first() {
                Some('!' | '^') => (true, &rest[1..]),
                _ => (false, rest),
            };
            let mut hit = false;
            let mut first = true;
            loop {
                match body {
                    [] => return false,
                    [']', after @ ..] if !first => {
                        return hit != negated && match_chars(after, t_rest);
                    }
                    [lo, '-', hi, after @ ..] if *hi != ']' => {
                        hit |= lo <= c && c <= hi;
                        body = after;
                    }
                    [x, after @ ..] => {
                        hit |= x == c;
                        body = after;
                    }
                }
                first = false;
            }
        }
        Some((x, rest)) => t.first() == Some(x) && match_chars(rest, &t[1..]),
    }
}

/// The brace-free alternatives of one segment (`a{b,c}` -> `ab`, `ac`);
/// `None` beyond [`MAX_EXPANSIONS`]. Braces inside `[...]` are literal.
fn expand_braces(seg: &str) -> Option<Vec<Vec<char>>> {
    let chars: Vec<char> = seg.chars().collect();
    let mut out = Vec::new();
    expand(&chars, Vec::new(), &mut out)?;
    Some(out)
}

fn expand(rest: &[char], prefix: Vec<char>, out: &mut Vec<Vec<char>>) -> Option<()> {
    let mut i = 0;
    let mut in_class = false;
    while i < rest.len() {
        match rest[i] {
            '[' if !in_class => {
                in_class = true;
                // A `]` right after `[` (or `[!`) is literal.
                if matches!(rest.get(i + 1), Some('!' | '^')) {
                    i += 1;
                }
                if rest.get(i + 1) == Some(&']') {
                    i += 1;
                }
            }
            ']' if in_class => in_class = false,
            '{' if !in_class => {
                let (alternatives, end) = split_alternatives(rest, i)?;
                // What came before is brace-free; the alternative may hold
                // nested groups, so it is expanded with what follows.
                let mut done = prefix.clone();
                done.extend_from_slice(&rest[..i]);
                for alt in alternatives {
                    let mut more = alt;
                    more.extend_from_slice(&rest[end + 1..]);
                    expand(&more, done.clone(), out)?;
                    if out.len() > MAX_EXPANSIONS {
                        return None;
                    }
                }
                return Some(());
            }
            _ => {}
        }
        i += 1;
    }
    let mut whole = prefix;
    whole.extend_from_slice(rest);
    out.push(whole);
    (out.len() <= MAX_EXPANSIONS).then_some(())
}

/// The alternatives of the brace group opening at `open` (split at
/// top-level commas, nested groups kept whole) and the index of its `}`.
fn split_alternatives(rest: &[char], open: usize) -> Option<(Vec<Vec<char>>, usize)> {
    let mut depth = 0;
    let mut in_class = false;
    let mut alternatives = vec![Vec::new()];
    for (i, &c) in rest.iter().enumerate().skip(open) {
        match c {
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' if !in_class => {
                depth -= 1;
                if depth == 0 {
                    return Some((alternatives, i));
                }
            }
            ',' if !in_class && depth == 1 => {
                alternatives.push(Vec::new());
                continue;
            }
            _ => {}
        }
        alternatives.last_mut()?.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    /// The reference matcher agrees with the documented examples.
    #[test]
    fn reference_matcher_examples() {
        let yes = [
            ("a/*", "a/b"),
            ("**", "a/b/c"),
            ("**/c", "c"),
            ("**/c", "a/b/c"),
            ("a/**", "a/b"),
            ("a/**/c", "a/c"),
            ("a/**/c", "a/b/b/c"),
            ("a/{b,c}", "a/c"),
            ("a/x{b,{c,d}}y", "a/xdy"),
            ("a/[bc]", "a/b"),
            ("a/[!bc]", "a/d"),
            ("a/[a-c]?", "a/bz"),
        ];
        for (p, t) in yes {
            assert_eq!(reference_match(p, t), Some(true), "{p} {t}");
        }
        let no = [
            ("a/*", "a/b/c"),
            ("a/**", "a"),
            ("a/[bc]", "a/d"),
            ("a/[!bc]", "a/b"),
            ("a/?", "a/bc"),
            ("**/c", "c/d"),
        ];
        for (p, t) in no {
            assert_eq!(reference_match(p, t), Some(false), "{p} {t}");
        }
    }

    fn corpus() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/topics")
    }

    /// Replays the corpus (seeds, minimized fuzzer finds and crashing
    /// inputs kept as regressions) through [`topics`].
    #[test]
    fn replay_topics_corpus() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 20, "{} files", files.len());
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let result = std::panic::catch_unwind(|| topics(&data));
            assert!(result.is_ok(), "corpus file {} panicked", f.display());
        }
    }
}
