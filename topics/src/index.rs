//! The subscription index: which subscriptions match a topic.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Weak};

use globset::{Candidate, GlobSet, GlobSetBuilder};

use crate::pattern::Pattern;
use crate::topic::Topic;

/// Result-cache counters of a [`SubscriptionIndex`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls to [`SubscriptionIndex::matches`] answered from the cache.
    pub hits: u64,
    /// Calls that had to compute the answer.
    pub misses: u64,
}

/// Maps subscription keys (`K`, e.g. a session or subscription id) to
/// [`Pattern`]s and answers "which keys match this topic", fast.
///
/// # How it works
///
/// * Literal patterns (no glob syntax) live in a hash map from topic text to
///   keys: one lookup per match.
/// * Other patterns live in a trie (as in NATS's sublist) whose edges are
///   their leading segments that are either literal or exactly `*`; a match
///   follows, at each level, the edge named by the topic's segment and the
///   `*` edge, so patterns under unrelated prefixes cost nothing. At each
///   node:
///   * patterns made only of literal and `*` segments (`a/*`, `*/b/*`) and
///     such a path followed by `/**` are answered without glob matching;
///   * for every other pattern, the rest after the path (e.g. `x*/b` for
///     `a/*/x*/b`) goes into a per-node `globset::GlobSet` (split into
///     chunks of 64 patterns) matched against the rest of the topic. Sets
///     are built lazily on the first match that visits the node after its
///     patterns changed (never on insert), so bulk inserts stay cheap and a
///     change rebuilds only one chunk of one node. Nodes holding the same
///     rests share one compiled set (e.g. the rest `{a,b}` of
///     `tenant{N}/*/{a,b}` for every `N`). A compiled pattern costs a few
///     KB of regex state (about 4 KB measured), so the fast paths above
///     matter.
/// * A bounded result cache keyed by topic answers repeated topics. It is
///   emptied on the first match after any change (detected through
///   [`generation`](SubscriptionIndex::generation)), and emptied when it is
///   full before a new entry is added. A capacity of 0 disables it.
///
/// Results are `Arc<[K]>`, **sorted ascending and without duplicates**; a
/// cached answer is shared, not copied.
///
/// Each key has at most one pattern; [`insert`](SubscriptionIndex::insert)
/// replaces it. Several keys may share a pattern.
pub struct SubscriptionIndex<K> {
    patterns: HashMap<K, Pattern>,
    literals: HashMap<Box<str>, Vec<K>>,
    root: Node<K>,
    generation: u64,
    cache: HashMap<Topic, Arc<[K]>>,
    cache_capacity: usize,
    cache_generation: u64,
    stats: CacheStats,
    scratch: Vec<usize>,
    sets: SetInterner,
}

impl<K> fmt::Debug for SubscriptionIndex<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionIndex")
            .field("len", &self.patterns.len())
            .field("generation", &self.generation)
            .field("cache_capacity", &self.cache_capacity)
            .field("cache_len", &self.cache.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash + Ord> Default for SubscriptionIndex<K> {
    /// An empty index with a result cache of [`SubscriptionIndex::DEFAULT_CACHE_CAPACITY`].
    fn default() -> Self {
        SubscriptionIndex::new(Self::DEFAULT_CACHE_CAPACITY)
    }
}

impl<K: Clone + Eq + Hash + Ord> SubscriptionIndex<K> {
    /// Cache capacity used by [`Default`].
    pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

    /// An empty index whose result cache holds at most `cache_capacity`
    /// topics (0 disables the cache).
    pub fn new(cache_capacity: usize) -> Self {
        SubscriptionIndex {
            patterns: HashMap::new(),
            literals: HashMap::new(),
            root: Node::default(),
            generation: 0,
            cache: HashMap::new(),
            cache_capacity,
            cache_generation: 0,
            stats: CacheStats::default(),
            scratch: Vec::new(),
            sets: SetInterner::default(),
        }
    }

    /// Sets `key`'s pattern, returning the one it replaces. Inserting the
    /// pattern a key already has changes nothing (and does not bump the
    /// generation).
    pub fn insert(&mut self, key: K, pattern: Pattern) -> Option<Pattern> {
        if self.patterns.get(&key) == Some(&pattern) {
            return Some(pattern);
        }
        let old = self.patterns.insert(key.clone(), pattern.clone());
        if let Some(old) = &old {
            self.unplace(&key, old);
        }
        self.place(key, &pattern);
        self.generation += 1;
        old
    }

    /// Removes `key`, returning its pattern if it had one.
    pub fn remove(&mut self, key: &K) -> Option<Pattern> {
        let old = self.patterns.remove(key)?;
        self.unplace(key, &old);
        self.generation += 1;
        Some(old)
    }

    /// The pattern of `key`.
    pub fn get(&self, key: &K) -> Option<&Pattern> {
        self.patterns.get(key)
    }

    /// Every key whose pattern matches `topic`, sorted ascending, without
    /// duplicates.
    pub fn matches(&mut self, topic: &Topic) -> Arc<[K]> {
        if self.cache_generation != self.generation {
            self.cache.clear();
            self.cache_generation = self.generation;
        }
        if let Some(hit) = self.cache.get(topic.as_str()) {
            self.stats.hits += 1;
            return Arc::clone(hit);
        }
        self.stats.misses += 1;
        let result = self.compute(topic);
        if self.cache_capacity > 0 {
            if self.cache.len() >= self.cache_capacity {
                self.cache.clear();
            }
            self.cache.insert(topic.clone(), Arc::clone(&result));
        }
        result
    }

    /// Number of keys (subscriptions).
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// A counter bumped by every change (insert of a new or different
    /// pattern, successful remove). Callers may use it to invalidate their
    /// own caches.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Result-cache hits and misses since creation.
    pub fn cache_stats(&self) -> CacheStats {
        self.stats
    }

    /// Number of topics currently cached (not counting entries made stale
    /// by a change, which are dropped on the next match).
    pub fn cache_len(&self) -> usize {
        if self.cache_generation == self.generation {
            self.cache.len()
        } else {
            0
        }
    }

    fn place(&mut self, key: K, pattern: &Pattern) {
        if pattern.is_literal() {
            self.literals
                .entry(pattern.as_str().into())
                .or_default()
                .push(key);
            return;
        }
        let (path, tail) = route(pattern);
        let mut node = &mut self.root;
        for edge in path {
            node = match edge {
                Edge::Literal(seg) => node.children.entry(seg.into()).or_default(),
                Edge::Star => node.star.get_or_insert_with(Box::default),
            };
        }
        match tail {
            Tail::End => node.end.push(key),
            Tail::Subtree => node.subtree.push(key),
            Tail::Glob(rest) => node.globs.get_or_insert_with(Box::default).add(key, &rest),
        }
    }

    fn unplace(&mut self, key: &K, pattern: &Pattern) {
        if pattern.is_literal() {
            if let Some(keys) = self.literals.get_mut(pattern.as_str()) {
                remove_key(keys, key);
                if keys.is_empty() {
                    self.literals.remove(pattern.as_str());
                }
            }
            return;
        }
        let (path, tail) = route(pattern);
        self.root.unplace(&path, &tail, key);
    }

    fn compute(&mut self, topic: &Topic) -> Arc<[K]> {
        let mut out: Vec<K> = Vec::new();
        if let Some(keys) = self.literals.get(topic.as_str()) {
            out.extend(keys.iter().cloned());
        }
        let segments: Vec<&str> = topic.segments().collect();
        let mut starts = Vec::with_capacity(segments.len());
        let mut offset = 0;
        for seg in &segments {
            starts.push(offset);
            offset += seg.len() + 1;
        }
        let mut walk = Walk {
            topic: topic.as_str(),
            segments: &segments,
            starts: &starts,
            scratch: &mut self.scratch,
            sets: &mut self.sets,
            out: &mut out,
        };
        self.root.collect(0, &mut walk);
        out.sort_unstable();
        out.dedup();
        Arc::from(out)
    }
}

fn remove_key<K: Eq>(keys: &mut Vec<K>, key: &K) {
    if let Some(i) = keys.iter().position(|k| k == key) {
        keys.swap_remove(i);
    }
}

/// One step of a pattern's path in the trie.
enum Edge<'a> {
    /// A segment without glob syntax.
    Literal(&'a str),
    /// A segment that is exactly `*`: any one topic segment.
    Star,
}

/// What a pattern needs once its path is consumed.
enum Tail {
    /// Nothing: the topic must end here.
    End,
    /// A final `**`: the topic must go on below here.
    Subtree,
    /// Anything else: the rest of the pattern (the segments after the
    /// path), matched by globset against the rest of the topic.
    Glob(Pattern),
}

/// Splits a non-literal pattern into its trie path (the leading segments
/// that are literal or exactly `*`) and what follows. Every topic the
/// pattern matches follows the path segment by segment, because neither a
/// literal segment nor `*` can match more or less than one topic segment;
/// so the rest of the pattern matches the rest of the topic on its own,
/// and the rest is never empty (the `/` after the path is literal).
fn route(pattern: &Pattern) -> (Vec<Edge<'_>>, Tail) {
    let segments: Vec<&str> = pattern.segments().collect();
    let mut path = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        if *seg == "*" {
            path.push(Edge::Star);
        } else if !seg.contains(['*', '?', '[', '{']) {
            path.push(Edge::Literal(seg));
        } else if *seg == "**" && i + 1 == segments.len() {
            return (path, Tail::Subtree);
        } else {
            return match pattern.suffix(i) {
                Some(rest) => (path, Tail::Glob(rest)),
                // Not expected: the rest of a valid pattern is valid. Fall
                // back to matching the whole pattern from the root.
                None => (Vec::new(), Tail::Glob(pattern.clone())),
            };
        }
    }
    (path, Tail::End)
}

/// The state of one trie walk for a topic.
struct Walk<'a, K> {
    topic: &'a str,
    segments: &'a [&'a str],
    /// Byte offset of each segment in `topic`.
    starts: &'a [usize],
    scratch: &'a mut Vec<usize>,
    sets: &'a mut SetInterner,
    out: &'a mut Vec<K>,
}

/// A trie node, reached by a path of literal and `*` segments.
struct Node<K> {
    /// Boxed so that the maps' spare slots stay small.
    children: HashMap<Box<str>, Box<Node<K>>>,
    /// The child for a `*` segment.
    star: Option<Box<Node<K>>>,
    /// Keys of patterns that end here (`a/*`, `*/b`).
    end: Vec<K>,
    /// Keys of patterns that are this path followed by `/**`.
    subtree: Vec<K>,
    /// Every other pattern whose path ends here.
    globs: Option<Box<GlobBucket<K>>>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            star: None,
            end: Vec::new(),
            subtree: Vec::new(),
            globs: None,
        }
    }
}

impl<K: Clone + Eq> Node<K> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.star.is_none()
            && self.end.is_empty()
            && self.subtree.is_empty()
            && self.globs.is_none()
    }

    fn unplace(&mut self, path: &[Edge<'_>], tail: &Tail, key: &K) {
        match path.split_first() {
            Some((Edge::Literal(seg), rest)) => {
                if let Some(child) = self.children.get_mut(*seg) {
                    child.unplace(rest, tail, key);
                    if child.is_empty() {
                        self.children.remove(*seg);
                    }
                }
            }
            Some((Edge::Star, rest)) => {
                if let Some(child) = self.star.as_deref_mut() {
                    child.unplace(rest, tail, key);
                    if child.is_empty() {
                        self.star = None;
                    }
                }
            }
            None => match tail {
                Tail::End => remove_key(&mut self.end, key),
                Tail::Subtree => remove_key(&mut self.subtree, key),
                Tail::Glob(rest) => {
                    if let Some(globs) = &mut self.globs {
                        globs.remove(key, rest);
                        if globs.entries.is_empty() {
                            self.globs = None;
                        }
                    }
                }
            },
        }
    }

    /// Collects the keys matching `walk.topic` at this node (reached after
    /// `depth` topic segments) and below.
    fn collect(&mut self, depth: usize, walk: &mut Walk<'_, K>) {
        let n = walk.segments.len();
        if depth == n {
            walk.out.extend(self.end.iter().cloned());
            // Glob tails need at least one more topic segment.
            return;
        }
        walk.out.extend(self.subtree.iter().cloned());
        let rest = &walk.topic[walk.starts[depth]..];
        if let Some(globs) = &mut self.globs {
            globs.collect(rest, walk);
        }
        if let Some(seg) = walk.segments.get(depth) {
            if let Some(child) = self.children.get_mut(*seg) {
                child.collect(depth + 1, walk);
            }
            if let Some(child) = self.star.as_deref_mut() {
                child.collect(depth + 1, walk);
            }
        }
    }
}

/// Most patterns compiled into one `GlobSet`. A change to a bucket only
/// rebuilds the chunk holding the pattern, which bounds the rebuild cost
/// when many patterns share a trie node (e.g. patterns that start with a
/// wildcard all live at the root).
const CHUNK: usize = 64;

/// The general patterns of one trie node, in chunks of at most [`CHUNK`]
/// patterns, each with a lazily built `GlobSet`.
struct GlobBucket<K> {
    /// Pattern text -> entry.
    entries: HashMap<Box<str>, Entry<K>>,
    chunks: Vec<Chunk>,
    /// Indices of the chunks holding fewer than [`CHUNK`] patterns.
    with_room: Vec<usize>,
}

struct Entry<K> {
    keys: Vec<K>,
    chunk: usize,
}

struct Chunk {
    patterns: Vec<Pattern>,
    /// `None` when `patterns` changed since the last build.
    compiled: Option<Compiled>,
}

enum Compiled {
    /// Glob index in the set = index in `Chunk::patterns` (sorted before
    /// the build, so that chunks with the same patterns can share a set).
    Set(Arc<GlobSet>),
    /// globset refused to build the set; each pattern is tried in turn.
    OneByOne,
}

impl<K> Default for GlobBucket<K> {
    fn default() -> Self {
        GlobBucket {
            entries: HashMap::new(),
            chunks: Vec::new(),
            with_room: Vec::new(),
        }
    }
}

impl<K: Clone + Eq> GlobBucket<K> {
    fn add(&mut self, key: K, pattern: &Pattern) {
        if let Some(entry) = self.entries.get_mut(pattern.as_str()) {
            // Known pattern: only the key list changes, the sets stay valid.
            entry.keys.push(key);
            return;
        }
        let chunk = match self.with_room.last() {
            Some(&c) => c,
            None => {
                self.chunks.push(Chunk {
                    patterns: Vec::new(),
                    compiled: None,
                });
                self.with_room.push(self.chunks.len() - 1);
                self.chunks.len() - 1
            }
        };
        let target = &mut self.chunks[chunk];
        target.patterns.push(pattern.clone());
        target.compiled = None;
        if target.patterns.len() >= CHUNK {
            self.with_room.pop();
        }
        self.entries.insert(
            pattern.as_str().into(),
            Entry {
                keys: vec![key],
                chunk,
            },
        );
    }

    fn remove(&mut self, key: &K, pattern: &Pattern) {
        let Some(entry) = self.entries.get_mut(pattern.as_str()) else {
            return;
        };
        remove_key(&mut entry.keys, key);
        if !entry.keys.is_empty() {
            return;
        }
        let chunk = entry.chunk;
        self.entries.remove(pattern.as_str());
        if let Some(target) = self.chunks.get_mut(chunk) {
            let was_full = target.patterns.len() >= CHUNK;
            if let Some(i) = target.patterns.iter().position(|p| p == pattern) {
                target.patterns.swap_remove(i);
                target.compiled = None;
            }
            if was_full && target.patterns.len() < CHUNK {
                self.with_room.push(chunk);
            }
        }
    }

    /// Adds the keys of the patterns whose rest matches `rest`, the rest of
    /// the topic (non-empty).
    fn collect(&mut self, rest: &str, walk: &mut Walk<'_, K>) {
        if self.entries.is_empty() {
            return;
        }
        let candidate = Candidate::new(rest);
        let entries = &self.entries;
        let out = &mut *walk.out;
        let mut emit = |pattern: &Pattern| {
            if let Some(entry) = entries.get(pattern.as_str()) {
                out.extend(entry.keys.iter().cloned());
            }
        };
        for chunk in &mut self.chunks {
            if chunk.patterns.is_empty() {
                continue;
            }
            if chunk.compiled.is_none() {
                chunk.patterns.sort_unstable();
                chunk.compiled = Some(walk.sets.get_or_build(&chunk.patterns));
            }
            let patterns = &chunk.patterns;
            let Some(compiled) = &chunk.compiled else {
                continue;
            };
            match compiled {
                Compiled::Set(set) => {
                    walk.scratch.clear();
                    set.matches_candidate_into(&candidate, walk.scratch);
                    for &i in walk.scratch.iter() {
                        if let Some(pattern) = patterns.get(i) {
                            emit(pattern);
                        }
                    }
                }
                Compiled::OneByOne => {
                    if let Ok(rest) = Topic::new(rest) {
                        for pattern in patterns.iter().filter(|p| p.matches(&rest)) {
                            emit(pattern);
                        }
                    }
                }
            }
        }
    }
}

/// Compiled sets by their (sorted) pattern texts, so that trie nodes with
/// the same rests share one compiled set. This is common when many
/// prefixes get the same kind of subscription, e.g. `tenant{N}/*/{a,b}`:
/// every tenant's node holds the rest `{a,b}`.
#[derive(Default)]
struct SetInterner {
    sets: HashMap<Box<[Box<str>]>, Weak<GlobSet>>,
    /// Dead entries are dropped when the map reaches this size.
    purge_at: usize,
}

impl SetInterner {
    fn get_or_build(&mut self, patterns: &[Pattern]) -> Compiled {
        let key: Box<[Box<str>]> = patterns.iter().map(|p| p.as_str().into()).collect();
        if let Some(set) = self.sets.get(&key).and_then(Weak::upgrade) {
            return Compiled::Set(set);
        }
        let globs: Option<Vec<_>> = patterns.iter().map(Pattern::compile_glob).collect();
        let mut builder = GlobSetBuilder::new();
        for glob in globs.into_iter().flatten() {
            builder.add(glob);
        }
        let set = match builder.build() {
            Ok(set) if set.len() == patterns.len() => Arc::new(set),
            _ => return Compiled::OneByOne,
        };
        if self.sets.len() >= self.purge_at {
            self.sets.retain(|_, set| set.strong_count() > 0);
            self.purge_at = (2 * self.sets.len()).max(64);
        }
        self.sets.insert(key, Arc::downgrade(&set));
        Compiled::Set(set)
    }

    #[cfg(test)]
    fn live(&self) -> usize {
        self.sets.values().filter(|s| s.strong_count() > 0).count()
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

    #[test]
    fn mixed_shapes_sorted_results() {
        let mut idx = SubscriptionIndex::new(16);
        assert!(idx.is_empty());
        idx.insert(5, p("a/b/c"));
        idx.insert(3, p("a/**"));
        idx.insert(9, p("a/b/*"));
        idx.insert(1, p("a/*/c"));
        idx.insert(7, p("**/c"));
        idx.insert(2, p("x/y"));
        idx.insert(4, p("*"));
        assert_eq!(idx.len(), 7);
        assert_eq!(&*idx.matches(&t("a/b/c")), &[1, 3, 5, 7, 9]);
        assert_eq!(&*idx.matches(&t("a/b")), &[3]);
        assert_eq!(&*idx.matches(&t("a/b/d")), &[3, 9]);
        assert_eq!(&*idx.matches(&t("a")), &[4]);
        assert_eq!(&*idx.matches(&t("c")), &[4, 7]);
        assert_eq!(&*idx.matches(&t("x/y")), &[2]);
        assert!(idx.matches(&t("q/r")).is_empty());
    }

    #[test]
    fn star_edges() {
        let mut idx = SubscriptionIndex::new(0);
        idx.insert(1, p("*"));
        idx.insert(2, p("*/b"));
        idx.insert(3, p("*/b/*"));
        idx.insert(4, p("*/**"));
        idx.insert(5, p("a/*/c/**"));
        idx.insert(6, p("*/*"));
        idx.insert(7, p("*/b{,x}"));
        assert_eq!(&*idx.matches(&t("a")), &[1]);
        assert_eq!(&*idx.matches(&t("a/b")), &[2, 4, 6, 7]);
        assert_eq!(&*idx.matches(&t("z/bx")), &[4, 6, 7]);
        assert_eq!(&*idx.matches(&t("a/b/c")), &[3, 4]);
        assert_eq!(&*idx.matches(&t("a/b/c/d")), &[4, 5]);
        for k in 1..=7 {
            idx.remove(&k);
        }
        assert!(idx.root.is_empty());
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut idx = SubscriptionIndex::new(16);
        assert_eq!(idx.insert("k", p("a/*")), None);
        let g = idx.generation();
        assert_eq!(idx.insert("k", p("a/*")), Some(p("a/*")));
        assert_eq!(idx.generation(), g, "same pattern is not a change");
        assert_eq!(idx.insert("k", p("b/*/c")), Some(p("a/*")));
        assert!(idx.generation() > g);
        assert!(idx.matches(&t("a/x")).is_empty());
        assert_eq!(&*idx.matches(&t("b/x/c")), &["k"]);
        assert_eq!(idx.get(&"k"), Some(&p("b/*/c")));
        assert_eq!(idx.remove(&"k"), Some(p("b/*/c")));
        assert_eq!(idx.remove(&"k"), None);
        assert!(idx.matches(&t("b/x/c")).is_empty());
        assert!(idx.root.is_empty());
        assert!(idx.literals.is_empty());
    }

    #[test]
    fn shared_patterns() {
        let mut idx = SubscriptionIndex::new(0);
        for k in [3, 1, 2] {
            idx.insert(k, p("a/{b,c}"));
            idx.insert(k + 10, p("a/b"));
        }
        assert_eq!(&*idx.matches(&t("a/b")), &[1, 2, 3, 11, 12, 13]);
        idx.remove(&2);
        idx.remove(&12);
        assert_eq!(&*idx.matches(&t("a/b")), &[1, 3, 11, 13]);
        assert_eq!(&*idx.matches(&t("a/c")), &[1, 3]);
    }

    #[test]
    fn cache_hits_and_invalidation() {
        let mut idx = SubscriptionIndex::new(2);
        idx.insert(1, p("a/*"));
        let first = idx.matches(&t("a/b"));
        let second = idx.matches(&t("a/b"));
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(idx.cache_stats(), CacheStats { hits: 1, misses: 1 });
        assert_eq!(idx.cache_len(), 1);
        idx.insert(2, p("a/b"));
        assert_eq!(idx.cache_len(), 0);
        assert_eq!(&*idx.matches(&t("a/b")), &[1, 2]);
        assert_eq!(idx.cache_stats(), CacheStats { hits: 1, misses: 2 });
        // Bounded: a third topic empties the full cache first.
        idx.matches(&t("a/c"));
        idx.matches(&t("a/d"));
        assert!(idx.cache_len() <= 2);
        // Capacity 0 never caches.
        let mut none = SubscriptionIndex::new(0);
        none.insert(1, p("a/*"));
        none.matches(&t("a/b"));
        none.matches(&t("a/b"));
        assert_eq!(none.cache_stats(), CacheStats { hits: 0, misses: 2 });
        assert_eq!(none.cache_len(), 0);
    }

    #[test]
    fn many_patterns_in_one_node_span_chunks() {
        // 290 distinct root patterns (5 chunks); remove and re-add across chunks and
        // compare with brute force after every step.
        let pats: Vec<Pattern> = (0..300).map(|i| p(&format!("**/x{}*", i % 290))).collect();
        let topics: Vec<Topic> = (0..160).map(|i| t(&format!("a/x{i}"))).collect();
        let mut idx = SubscriptionIndex::new(8);
        let mut model = std::collections::BTreeMap::new();
        let check = |idx: &mut SubscriptionIndex<usize>,
                     model: &std::collections::BTreeMap<usize, Pattern>| {
            for topic in topics.iter().step_by(7) {
                let want: Vec<usize> = model
                    .iter()
                    .filter(|(_, p)| p.matches(topic))
                    .map(|(k, _)| *k)
                    .collect();
                assert_eq!(&*idx.matches(topic), &want[..], "{topic}");
            }
        };
        for (k, pat) in pats.iter().enumerate() {
            idx.insert(k, pat.clone());
            model.insert(k, pat.clone());
        }
        check(&mut idx, &model);
        assert!(idx.root.globs.as_ref().unwrap().chunks.len() * CHUNK >= 290);
        for k in (0..300).step_by(3) {
            idx.remove(&k);
            model.remove(&k);
        }
        check(&mut idx, &model);
        for k in (0..300).step_by(3) {
            let pat = p(&format!("**/x{}*", 1000 + k));
            idx.insert(k, pat.clone());
            model.insert(k, pat);
        }
        check(&mut idx, &model);
        let room = &idx.root.globs.as_ref().unwrap().with_room;
        let mut dedup = room.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!(dedup.len(), room.len(), "with_room has no duplicates");
        for k in 0..300 {
            idx.remove(&k);
        }
        assert!(idx.is_empty() && idx.root.is_empty());
    }

    #[test]
    fn nodes_with_the_same_rests_share_compiled_sets() {
        let mut idx = SubscriptionIndex::new(0);
        for n in 0..100 {
            idx.insert(n, p(&format!("tenant{n}/*/{{a,b}}")));
            idx.insert(1000 + n, p(&format!("tenant{n}/*/x?")));
        }
        idx.insert(5000, p("tenant7/*/z*"));
        for n in 0..100 {
            let want: &[u32] = &[n];
            assert_eq!(&*idx.matches(&t(&format!("tenant{n}/q/b"))), want);
        }
        assert_eq!(&*idx.matches(&t("tenant7/q/xy")), &[1007]);
        assert_eq!(&*idx.matches(&t("tenant7/q/zz")), &[5000]);
        // 99 nodes with rests {"{a,b}", "x?"} and one with a third rest.
        assert_eq!(idx.sets.live(), 2);
        for n in 0..100 {
            idx.remove(&n);
            idx.remove(&(1000 + n));
        }
        idx.remove(&5000);
        assert_eq!(idx.sets.live(), 0);
        assert!(idx.root.is_empty());
    }

    #[test]
    fn types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<SubscriptionIndex<u64>>();
        check::<Pattern>();
        check::<Topic>();
        check::<crate::GroupMap>();
    }

    #[test]
    fn debug_and_default() {
        let idx: SubscriptionIndex<u32> = SubscriptionIndex::default();
        let s = format!("{idx:?}");
        assert!(s.starts_with("SubscriptionIndex { len: 0"), "{s}");
    }
}
