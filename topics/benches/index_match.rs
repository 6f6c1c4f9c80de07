//! Micro-benchmarks of `SubscriptionIndex` with 100,000 subscriptions.
//!
//! Run: `cargo bench -p meshcast-topics --bench index_match -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use meshcast_topics::{Pattern, SubscriptionIndex, Topic};

const N: u64 = 100_000;

/// The pattern of subscription `i`: a realistic mix.
///
/// * 40% literal `region{r}/svc{s}/inst{i}/events`;
/// * 10% `region{r}/svc{s}/*/events` (2,000 distinct, shared by ~5 keys);
/// * 10% `region{r}/svc{s}/inst{k}*/metrics` (a glob under a literal prefix);
/// * 20% `tenant{t}/**` (5,000 distinct);
/// * 10% `region{r}/svc{s}/inst{i}/{events,alerts}`;
/// * 9% `region{r}/*`;
/// * 1% starting with a wildcard: 500 `*/svc{s}/inst{i}/events` (a path
///   through the trie's `*` edge) and 500 `**/inst{i}/{events,alerts}`
///   (globs at the root, tried against every topic).
fn pattern_of(i: u64) -> String {
    let (r, s) = region_svc(i);
    match i % 10 {
        0..=3 => format!("region{r}/svc{s}/inst{i}/events"),
        4 => format!("region{r}/svc{s}/*/events"),
        5 => format!("region{r}/svc{s}/inst{}*/metrics", i % 100),
        6 | 7 => format!("tenant{}/**", i % 5000),
        8 => format!("region{r}/svc{s}/inst{i}/{{events,alerts}}"),
        _ if i % 200 == 9 => format!("*/svc{s}/inst{i}/events"),
        _ if i % 200 == 109 => format!("**/inst{i}/{{events,alerts}}"),
        _ => format!("region{r}/*"),
    }
}

/// Region (50) and service (40) of subscription or topic `i`, independent
/// of the pattern kind `i % 10`.
fn region_svc(i: u64) -> (u64, u64) {
    ((i / 10) % 50, (i / 500) % 40)
}

fn patterns() -> Vec<Pattern> {
    (0..N)
        .map(|i| Pattern::new(pattern_of(i)).unwrap())
        .collect()
}

fn build(patterns: &[Pattern], cache: usize) -> SubscriptionIndex<u64> {
    let mut idx = SubscriptionIndex::new(cache);
    for (i, p) in patterns.iter().enumerate() {
        idx.insert(i as u64, p.clone());
    }
    idx
}

fn topics(count: u64) -> Vec<Topic> {
    (0..count)
        .map(|j| {
            let i = j * 7919 % N;
            Topic::new(format!(
                "region{}/svc{}/inst{i}/events",
                i % 50,
                (i / 50) % 40
            ))
            .unwrap()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let pats = patterns();
    let topics = topics(1000);

    let mut g = c.benchmark_group("index_100k");

    let mut cached = build(&pats, 1024);
    let hot = topics[1].clone();
    let total: usize = topics.iter().map(|t| cached.matches(t).len()).sum();
    eprintln!(
        "{} matches for {hot}; {:.1} matches per topic on average",
        cached.matches(&hot).len(),
        total as f64 / topics.len() as f64
    );
    g.bench_function("match_cached_same_topic", |b| {
        b.iter(|| black_box(cached.matches(black_box(&hot))))
    });

    let mut uncached = build(&pats, 0);
    for t in &topics {
        uncached.matches(t); // build the GlobSets on the visited nodes
    }
    let mut n = 0;
    g.bench_function("match_uncached_1000_topics", |b| {
        b.iter(|| {
            n = (n + 1) % topics.len();
            black_box(uncached.matches(&topics[n]))
        })
    });

    let extra = Pattern::new("region0/svc0/inst*/extra").unwrap();
    let probe = Topic::new("region0/svc0/inst1/extra").unwrap();
    g.bench_function("insert_glob_then_match_rebuild", |b| {
        b.iter(|| {
            uncached.insert(u64::MAX, extra.clone());
            let r = uncached.matches(&probe);
            uncached.remove(&u64::MAX);
            black_box(r)
        })
    });

    let root_extra = Pattern::new("**/inst1/extra").unwrap();
    g.bench_function("insert_root_glob_then_match_rebuild", |b| {
        b.iter(|| {
            uncached.insert(u64::MAX, root_extra.clone());
            let r = uncached.matches(&probe);
            uncached.remove(&u64::MAX);
            black_box(r)
        })
    });

    let mut k = N;
    g.bench_function("insert_remove_one_into_100k", |b| {
        b.iter(|| {
            k += 1;
            let p = pats[(k % N) as usize].clone();
            uncached.insert(k, p);
            uncached.remove(&k);
        })
    });

    g.sample_size(10);
    g.bench_function("bulk_insert_100k", |b| {
        b.iter_batched(
            || pats.clone(),
            |p| black_box(build(&p, 1024)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("bulk_insert_100k_then_1000_matches", |b| {
        b.iter_batched(
            || pats.clone(),
            |p| {
                let mut idx = build(&p, 0);
                for t in &topics {
                    black_box(idx.matches(t));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("parse_100k_patterns", |b| b.iter(|| black_box(patterns())));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
