//! Property tests: the index against brute force, group reach soundness,
//! parser robustness and round-trips, and pattern semantics against a
//! small independent matcher.

use std::collections::BTreeMap;

use meshcast_topics::{GroupMap, GroupRule, Pattern, PatternError, SubscriptionIndex, Topic};
use proptest::prelude::*;

const TOPIC_SEGS: &[&str] = &["a", "b", "ab", "ba", "abb", "c"];

/// Segments the reference matcher below understands.
const SIMPLE_PATTERN_SEGS: &[&str] = &[
    "a", "b", "ab", "c", "*", "**", "?", "a*", "*b", "?b", "[ab]", "[!a]", "a[!b]*", "*a*",
    "[a-b]?",
];

/// Plus alternatives, which only globset interprets.
const PATTERN_SEGS: &[&str] = &[
    "a", "b", "ab", "c", "*", "**", "?", "a*", "*b", "[ab]", "[!a]", "{a,b}", "{a*,c}", "x{,b}",
    "{ab,?}",
];

fn topic_strategy() -> impl Strategy<Value = Topic> {
    prop::collection::vec(prop::sample::select(TOPIC_SEGS), 1..5)
        .prop_map(|segs| Topic::new(segs.join("/")).unwrap())
}

fn pattern_from(segs: &'static [&'static str]) -> impl Strategy<Value = Pattern> {
    prop::collection::vec(prop::sample::select(segs), 1..5)
        .prop_map(|segs| Pattern::new(segs.join("/")).unwrap())
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u8, Pattern),
    Remove(u8),
    Match(Topic),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..10, pattern_from(PATTERN_SEGS)).prop_map(|(k, p)| Op::Insert(k, p)),
        1 => (0u8..10).prop_map(Op::Remove),
        4 => topic_strategy().prop_map(Op::Match),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn index_agrees_with_brute_force(
        cache in 0usize..4,
        ops in prop::collection::vec(op_strategy(), 1..60),
    ) {
        let mut index = SubscriptionIndex::new(cache);
        let mut model: BTreeMap<u8, Pattern> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Insert(k, p) => {
                    prop_assert_eq!(index.insert(k, p.clone()), model.insert(k, p));
                }
                Op::Remove(k) => {
                    prop_assert_eq!(index.remove(&k), model.remove(&k));
                }
                Op::Match(t) => {
                    let want: Vec<u8> = model
                        .iter()
                        .filter(|(_, p)| p.matches(&t))
                        .map(|(k, _)| *k)
                        .collect();
                    let got = index.matches(&t);
                    prop_assert_eq!(&*got, &want[..], "topic {}", t);
                }
            }
            prop_assert_eq!(index.len(), model.len());
        }
    }

    #[test]
    fn reach_is_sound(
        rules in prop::collection::btree_map(
            prop::collection::vec(prop::sample::select(TOPIC_SEGS), 1..4).prop_map(|s| s.join("/")),
            prop::sample::select(&["g1", "g2", "g3", "g4", "g5", "a"][..]),
            0..7,
        ),
        pattern in pattern_from(PATTERN_SEGS),
        topics in prop::collection::vec(topic_strategy(), 1..40),
    ) {
        let map = GroupMap::new(rules.into_iter().map(|(p, g)| GroupRule::new(p, g)).collect()).unwrap();
        let reach = map.reach(&pattern);
        let all = small_topics();
        for topic in topics.iter().chain(all.iter()).filter(|t| pattern.matches(t)) {
            let group = map.group_of(topic);
            prop_assert!(reach.contains(group), "{} matches {} in group {} but reach is {:?}", pattern, topic, group, reach);
        }
    }

    #[test]
    fn pattern_semantics_match_reference(
        pattern in prop::collection::vec(prop::sample::select(SIMPLE_PATTERN_SEGS), 1..5),
        topic in topic_strategy(),
    ) {
        let text = pattern.join("/");
        let compiled = Pattern::new(text.clone()).unwrap();
        let segs: Vec<&str> = topic.segments().collect();
        prop_assert_eq!(compiled.matches(&topic), reference::matches(&pattern, &segs), "{} vs {}", text, topic);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_text(s in any::<String>()) {
        check_round_trip(&s)?;
    }

    #[test]
    fn parsers_never_panic_on_glob_like_text(s in r"[ab/*?\[\]{},!^\-\\ .~0-9]{0,40}") {
        check_round_trip(&s)?;
    }
}

/// Every topic of up to three segments over [`TOPIC_SEGS`].
fn small_topics() -> Vec<Topic> {
    let mut out: Vec<String> = TOPIC_SEGS.iter().map(|s| s.to_string()).collect();
    let mut layer = out.clone();
    for _ in 1..3 {
        layer = layer
            .iter()
            .flat_map(|t| TOPIC_SEGS.iter().map(move |s| format!("{t}/{s}")))
            .collect();
        out.extend(layer.iter().cloned());
    }
    out.into_iter().map(|t| Topic::new(t).unwrap()).collect()
}

fn check_round_trip(s: &str) -> Result<(), TestCaseError> {
    let topic = Topic::new(s);
    let pattern = Pattern::new(s);
    if let Ok(t) = &topic {
        prop_assert_eq!(&t.to_string().parse::<Topic>().unwrap(), t);
        // Every topic is also a literal pattern matching itself.
        let p = pattern.as_ref().unwrap();
        prop_assert!(p.is_literal() && p.matches(t));
    }
    // Our own checks catch everything globset would reject.
    prop_assert!(
        !matches!(pattern, Err(PatternError::Glob { .. })),
        "{:?}",
        pattern
    );
    if let Ok(p) = &pattern {
        prop_assert_eq!(&p.to_string().parse::<Pattern>().unwrap(), p);
        // Compiles and runs.
        let _ = p.matches(&Topic::new("a/b").unwrap());
        prop_assert_eq!(p.is_literal(), topic.is_ok());
        prop_assert!(p.literal_prefix_len() <= p.segments().count());
    }
    Ok(())
}

/// An independent matcher for the subset `literal`, `*`, `?`, `[...]`,
/// `[!...]`, `[x-y]` and whole-segment `**`, following the documented
/// semantics: `**` matches zero or more segments, except as the last
/// segment where it matches one or more.
mod reference {
    pub fn matches(pattern: &[&str], topic: &[&str]) -> bool {
        match pattern.split_first() {
            None => topic.is_empty(),
            Some((&"**", [])) => !topic.is_empty(),
            Some((&"**", rest)) => (0..=topic.len()).any(|skip| matches(rest, &topic[skip..])),
            Some((seg, rest)) => {
                !topic.is_empty()
                    && segment(&tokens(seg), topic[0].as_bytes())
                    && matches(rest, &topic[1..])
            }
        }
    }

    enum Tok {
        Lit(u8),
        Star,
        Any,
        Class(Vec<u8>, bool),
    }

    fn tokens(seg: &str) -> Vec<Tok> {
        let b = seg.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'*' => out.push(Tok::Star),
                b'?' => out.push(Tok::Any),
                b'[' => {
                    let negated = b[i + 1] == b'!';
                    let mut j = if negated { i + 2 } else { i + 1 };
                    let mut set = Vec::new();
                    while b[j] != b']' {
                        if b.get(j + 1) == Some(&b'-') && b[j + 2] != b']' {
                            set.extend(b[j]..=b[j + 2]);
                            j += 3;
                        } else {
                            set.push(b[j]);
                            j += 1;
                        }
                    }
                    out.push(Tok::Class(set, negated));
                    i = j;
                }
                c => out.push(Tok::Lit(c)),
            }
            i += 1;
        }
        out
    }

    fn segment(toks: &[Tok], s: &[u8]) -> bool {
        match toks.split_first() {
            None => s.is_empty(),
            Some((Tok::Star, rest)) => (0..=s.len()).any(|n| segment(rest, &s[n..])),
            Some((tok, rest)) => {
                let Some((&c, tail)) = s.split_first() else {
                    return false;
                };
                let ok = match tok {
                    Tok::Lit(l) => *l == c,
                    Tok::Any => true,
                    Tok::Class(set, negated) => set.contains(&c) != *negated,
                    Tok::Star => unreachable!(),
                };
                ok && segment(rest, tail)
            }
        }
    }
}
