//! The subscription index: which subscriptions match a topic.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use globset::{Candidate, GlobSet, GlobSetBuilder};

use crate::pattern::{Pattern, Shape};
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
/// * Other patterns live in a trie keyed by the segments of their
///   [literal prefix](Pattern::literal_prefix); a match walks only the trie
///   nodes along the topic's own segments, so patterns under unrelated
///   prefixes cost nothing. At each node:
///   * `L/**` patterns (everything below `L`) and `L/*` patterns (exactly
///     one level below `L`) are answered without any glob matching;
///   * every other pattern goes into a per-node `globset::GlobSet`, built
///     lazily on the first match that visits the node after its set of
///     patterns changed (never on insert), so bulk inserts stay cheap and a
///     change rebuilds only one node's set.
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
        if pattern.shape() == Shape::Literal {
            self.literals
                .entry(pattern.as_str().into())
                .or_default()
                .push(key);
            return;
        }
        let mut node = &mut self.root;
        for seg in pattern.literal_prefix() {
            node = node.children.entry(seg.into()).or_default();
        }
        match pattern.shape() {
            Shape::Subtree => node.subtree.push(key),
            Shape::Children => node.one_level.push(key),
            Shape::Literal | Shape::Glob => node.globs.add(key, pattern),
        }
    }

    fn unplace(&mut self, key: &K, pattern: &Pattern) {
        if pattern.shape() == Shape::Literal {
            if let Some(keys) = self.literals.get_mut(pattern.as_str()) {
                remove_key(keys, key);
                if keys.is_empty() {
                    self.literals.remove(pattern.as_str());
                }
            }
            return;
        }
        let path = pattern.literal_prefix();
        self.root.unplace(&path, key, pattern);
    }

    fn compute(&mut self, topic: &Topic) -> Arc<[K]> {
        let mut out: Vec<K> = Vec::new();
        if let Some(keys) = self.literals.get(topic.as_str()) {
            out.extend(keys.iter().cloned());
        }
        let segments: Vec<&str> = topic.segments().collect();
        let n = segments.len();
        let candidate = Candidate::new(topic.as_str());
        let scratch = &mut self.scratch;
        let mut node = &mut self.root;
        let mut depth = 0;
        loop {
            if depth < n {
                out.extend(node.subtree.iter().cloned());
                if depth + 1 == n {
                    out.extend(node.one_level.iter().cloned());
                }
            }
            node.globs.collect(topic, &candidate, scratch, &mut out);
            if depth == n {
                break;
            }
            match node.children.get_mut(segments[depth]) {
                Some(child) => {
                    node = child;
                    depth += 1;
                }
                None => break,
            }
        }
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

/// A trie node: patterns whose literal prefix ends here.
struct Node<K> {
    children: HashMap<Box<str>, Node<K>>,
    /// Keys of `L/**` patterns.
    subtree: Vec<K>,
    /// Keys of `L/*` patterns.
    one_level: Vec<K>,
    /// Every other non-literal pattern.
    globs: GlobBucket<K>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node {
            children: HashMap::new(),
            subtree: Vec::new(),
            one_level: Vec::new(),
            globs: GlobBucket {
                entries: HashMap::new(),
                compiled: None,
            },
        }
    }
}

impl<K: Clone + Eq> Node<K> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.subtree.is_empty()
            && self.one_level.is_empty()
            && self.globs.entries.is_empty()
    }

    fn unplace(&mut self, path: &[&str], key: &K, pattern: &Pattern) {
        if let Some((first, rest)) = path.split_first() {
            if let Some(child) = self.children.get_mut(*first) {
                child.unplace(rest, key, pattern);
                if child.is_empty() {
                    self.children.remove(*first);
                }
            }
            return;
        }
        match pattern.shape() {
            Shape::Subtree => remove_key(&mut self.subtree, key),
            Shape::Children => remove_key(&mut self.one_level, key),
            Shape::Literal | Shape::Glob => self.globs.remove(key, pattern),
        }
    }
}

/// The general patterns of one trie node and their lazily built `GlobSet`.
struct GlobBucket<K> {
    /// Pattern text -> (pattern, keys).
    entries: HashMap<Box<str>, (Pattern, Vec<K>)>,
    /// `None` when `entries` changed since the last build.
    compiled: Option<Compiled>,
}

struct Compiled {
    /// `None` if globset refused to build the set; then each pattern is
    /// tried in turn.
    set: Option<GlobSet>,
    /// Glob index in `set` -> pattern (key into `entries`).
    order: Vec<Pattern>,
}

impl<K: Clone + Eq> GlobBucket<K> {
    fn add(&mut self, key: K, pattern: &Pattern) {
        let (_, keys) = self
            .entries
            .entry(pattern.as_str().into())
            .or_insert_with(|| (pattern.clone(), Vec::new()));
        if keys.is_empty() {
            // A new pattern: the set must be rebuilt.
            self.compiled = None;
        }
        keys.push(key);
    }

    fn remove(&mut self, key: &K, pattern: &Pattern) {
        if let Some((_, keys)) = self.entries.get_mut(pattern.as_str()) {
            remove_key(keys, key);
            if keys.is_empty() {
                self.entries.remove(pattern.as_str());
                self.compiled = None;
            }
        }
    }

    fn collect(
        &mut self,
        topic: &Topic,
        candidate: &Candidate<'_>,
        scratch: &mut Vec<usize>,
        out: &mut Vec<K>,
    ) {
        if self.entries.is_empty() {
            return;
        }
        let entries = &self.entries;
        let compiled = self.compiled.get_or_insert_with(|| {
            let order: Vec<Pattern> = entries.values().map(|(p, _)| p.clone()).collect();
            let mut builder = GlobSetBuilder::new();
            for pattern in &order {
                builder.add(pattern.glob().clone());
            }
            Compiled {
                set: builder.build().ok(),
                order,
            }
        });
        match &compiled.set {
            Some(set) => {
                scratch.clear();
                set.matches_candidate_into(candidate, scratch);
                for &i in scratch.iter() {
                    if let Some((_, keys)) =
                        compiled.order.get(i).and_then(|p| entries.get(p.as_str()))
                    {
                        out.extend(keys.iter().cloned());
                    }
                }
            }
            None => {
                for pattern in &compiled.order {
                    if pattern.matches(topic) {
                        if let Some((_, keys)) = entries.get(pattern.as_str()) {
                            out.extend(keys.iter().cloned());
                        }
                    }
                }
            }
        }
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
    fn debug_and_default() {
        let idx: SubscriptionIndex<u32> = SubscriptionIndex::default();
        let s = format!("{idx:?}");
        assert!(s.starts_with("SubscriptionIndex { len: 0"), "{s}");
    }
}
