//! Seed sweeps, regression seeds and checker self-tests.

use super::*;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn report(r: &SimResult) -> String {
    let mut s = format!("seed {} failed ({:?}):\n", r.seed, r.options);
    for v in &r.violations {
        s.push_str(&format!("  {:?}: {}\n", v.clause, v.detail));
    }
    s.push_str(&format!(
        "  replay: MESHCAST_SEED={} cargo test -p meshcast-protocol replay_seed\n",
        r.seed
    ));
    s
}

fn sweep(range: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    let mut max_vc = 0;
    let mut max_rec = 0;
    let mut faults = 0;
    let mut slow = 0;
    let mut failed_transfers = 0;
    let mut majority_losses = 0;
    let mut extra = [0u64; 4];
    for seed in range.clone() {
        let r = run_seed(seed);
        if !r.violations.is_empty() {
            eprintln!("{}", report(&r));
            failures.push(seed);
        }
        max_vc = max_vc.max(r.stats.max_view_change_ms);
        max_rec = max_rec.max(r.stats.recovery_ms);
        faults += r.stats.faults;
        slow += r.stats.slow_expulsions;
        failed_transfers += r.stats.transfer_failures;
        majority_losses += r.stats.majority_losses;
        extra[0] += r.stats.pauses;
        extra[1] += r.stats.one_way;
        extra[2] += r.stats.three_way;
        extra[3] += r.stats.duplicates;
    }
    eprintln!(
        "seeds {:?}: {} failed; faults {} ({:.1}/seed); majority losses {}; pauses {}; one-way losses {}; three-way splits {}; duplicates {}; slow expulsions {}; failed transfers {}; longest view change {} ms; longest recovery {} ms",
        range,
        failures.len(),
        faults,
        faults as f64 / (range.end - range.start) as f64,
        majority_losses,
        extra[0],
        extra[1],
        extra[2],
        extra[3],
        slow,
        failed_transfers,
        max_vc,
        max_rec
    );
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

/// `MESHCAST_SEED=<n>` replays one seed (default: seed 1).
#[test]
fn replay_seed() {
    let seed = env_u64("MESHCAST_SEED").unwrap_or(1);
    let r = run_seed(seed);
    eprintln!("{:?}", r.stats);
    assert!(r.violations.is_empty(), "{}", report(&r));
}

fn sweep_part(part: u64) {
    let total = env_u64("MESHCAST_SEEDS").unwrap_or(500);
    let first = env_u64("MESHCAST_SEED_START").unwrap_or(0);
    let parts = 4;
    let per = total.div_ceil(parts);
    let start = first + part * per;
    let end = (start + per).min(first + total);
    sweep(start..end);
}

#[test]
fn sweep_seeds_part0() {
    sweep_part(0);
}

#[test]
fn sweep_seeds_part1() {
    sweep_part(1);
}

#[test]
fn sweep_seeds_part2() {
    sweep_part(2);
}

#[test]
fn sweep_seeds_part3() {
    sweep_part(3);
}

/// Seeds that once failed, kept as plain tests (what each exposed is noted).
#[test]
fn regression_seeds() {
    // 92, 13, 158, 146: a broker behind by one view took a newer proposal as
    // "not flushing" and delivered old-view messages (VS).
    // 8: state chunks arriving before the joiner installed the view.
    // 109: chained transfer whose provider never got its own checkpoint.
    // 175, 3, 266, 388, 390: join/leave/join collapsed or duplicated joins.
    // 313: sequencer excluded after delivering (total order among survivors).
    // 340: a failed transfer kept a re-joined member out of deliveries.
    // 269: chunks accepted for a transfer already declared failed.
    // 506, 328, 432, 790, 822, 341: forced suspicion never expired (stuck).
    // 5449, 5490, 1265, 1360, 6833, 2108, 7129: a flushing broker still
    // acknowledged new data, so its sender freed a message no report held.
    // 1433, 3003: coordinator died right after committing; the value was
    // chosen but nobody learned it (now learned from heartbeats).
    // 7141, 1584, 1873: state aborts racing the install, providers leaving.
    // 12143, 13301, 16473: the fault budget ignored pending views.
    for seed in [
        2, 3, 8, 13, 20, 92, 102, 109, 146, 158, 171, 175, 266, 269, 313, 328, 340, 341, 374, 388,
        390, 432, 506, 790, 822, 1265, 1360, 1433, 1584, 1873, 2108, 3003, 5449, 5490, 6833, 7129,
        7141, 12143, 13301, 16473,
        // Re-based state transfers: circular providers, lost give-ups,
        // expulsion of a last holder, a younger provider (262, 408, 522,
        // 676, 712, 1585, 1871).
        75, 120, 262, 408, 522, 676, 712, 733, 1172, 1585, 1871,
        // A slow-member expulsion applied after the member had left and
        // re-joined hit the new membership.
        97524,
        // A broker that committed a learned view on its own got a fresh
        // suspicion clock (or unblocked) and delivered in a view the primary
        // had already left (36, 296); a flush whose coordinator gave up was
        // never finished because nobody asked for a round (2743).
        36, 296, 2743,
        // A catch-up commit from another cut-off broker reset the clock and
        // unblocked a minority broker in a view the primary had left.
        6615, 7599, 8096, 9236, 12163, 12563, 18567,
        // The coordinator died right after committing a view to a joiner
        // whose only seed it was: the joiner never learned it was a member
        // (it now asks whoever sends it heartbeats).
        2256,
        // A cut-off broker heard heartbeats of members that had promised a
        // view change excluding it (its commit lost with the coordinator),
        // took them for a majority and delivered in the old view.
        6638,
        // A view chosen by a re-proposing ballot (ballot v19 for view v18):
        // a check of "promised beyond the view" stalled every broker.
        3059,
        // After an exclusion, members that joined without state re-joined
        // with state (4, 10, 11, 253); a member without state was chosen as
        // provider while members that keep state existed, so the joiner got
        // its empty checkpoint (7, 12, 255).
        4, 7, 10, 11, 12, 253, 255,
        // A re-based transfer whose only older members keep no state took
        // their empty checkpoint and lost the deliveries held for it (107,
        // 271, 336): it is expelled instead (the state is gone).
        107, 271, 336,
        // A member expelled (slow, or its own transfer failed) and still
        // listed was asked for a checkpoint: its state is stale (615, 2780
        // found by the member logs; 618, 1162, 1356, 1444, 1663, 1802, 1851,
        // 1928, 1974 by the provider check).
        615, 618, 1162, 1356, 1444, 1663, 1802, 1851, 1928, 1974, 2780,
        // Cut-off brokers delivered 100-700 ms after the primary installed
        // a view without them (never-heard members counted as alive,
        // one-sided suspicion, liveness refreshed by any frame after a
        // heal): delivery is now gated by leases, with no grace.
        320882, 341217, 355740, 365400, 372858, 386993, 1048717, 1062978, 1063131, 1104086,
        // A re-base raised for a membership that ended in a leave-and-
        // rejoin of the same view change gave the new membership two
        // checkpoints (1078598); dropping it must spare the re-bases the
        // install itself raises for the new membership (124).
        1078598, 124,
        // Auto-bootstrap: a fresh broker whose links to the smaller ones
        // dropped before it was admitted started a second mesh.
        2011546, 2015421, 2015550, 2016583, 2017886, 2019668,
        // Links are named by the incarnation a process started with; a
        // peer that rejoined since runs a later one, and what was sent to
        // it while the link was down was never resent (found by a
        // real-process partition test; the simulator now names links the
        // same way).
        225, 243, 641,
        // Majority losses in three-broker meshes: a survivor left behind
        // in an old view (it answers with that view) kept restarted
        // brokers from recovering their newer one, and nobody told it its
        // view was over (2104610, 2106057); a restarted broker that lagged
        // a view behind could not stand in (2105098).
        2104610, 2105098, 2106057,
        // A majority crashed; the survivor held a total message positioned
        // first that depended on a message nobody held: the flush stopped
        // there and the survivor's own later messages were never delivered
        // nor reported unsent (2050338, with a one-way loss and a
        // three-way split). 2109923: a liveness failure of an earlier
        // sweep (not analysed; passes now).
        2050338, 2109923,
        // A safe causal message was stable (every member had it) while a
        // member lacked one of its dependencies, whose sender was then
        // excluded (a one-way loss, a stand-in for a crashed broker): that
        // member moved on without delivering it (2065335).
        2065335,
        // The same for a reliable safe message after a causal one of its
        // stream: every member had the message itself, one lacked the
        // earlier message's dependency and was then the only survivor of
        // the view (a crash with a stand-in, a one-way loss) (2122330).
        2122330,
        // Strict positions: a view installed in the batch that handed a
        // joiner its checkpoint went out before the views held for it
        // (the runtime's bridge had the same bug) (6000105).
        6000105,
        // Two successors of one view: a member committed a value (removing
        // a broker) counting its coordinator as accepted, but the
        // coordinator was holding its own acceptance for its lease grants
        // and accepted a higher ballot instead (2024823, 2072072).
        2024823, 2072072,
        // The reported-joins check once took a duplicate process of a
        // broker name for the original: the client's leave went to the
        // new process, the cut-off original then installed its own join
        // (2048494, a false alarm of the checker).
        2048494,
    ] {
        // As the seed ran when it failed, and with the extra faults.
        let r = run_with(seed, SimOptions::from_seed(seed).without_extra());
        assert!(r.violations.is_empty(), "{}", report(&r));
        let r = run_seed(seed);
        assert!(r.violations.is_empty(), "{}", report(&r));
    }
}

/// Runs seeds with `defects` switched on until the checker reports
/// `clause`; returns the first seed that exposed it.
fn caught(defects: Defects, clause: Clause, max_seeds: u64) -> Option<u64> {
    (0..max_seeds).find(|seed| {
        let mut o = SimOptions::from_seed(*seed);
        o.defects = defects.clone();
        run_with(*seed, o).has(clause)
    })
}

#[test]
fn checker_catches_skipped_flush() {
    let d = Defects {
        skip_flush: true,
        ..Defects::default()
    };
    let seed = caught(d, Clause::VirtualSynchrony, 20);
    eprintln!("caught at seed {seed:?}");
    assert!(seed.is_some(), "skipping the flush went unnoticed");
}

#[test]
fn checker_catches_swapped_sequencer_decisions() {
    let d = Defects {
        swap_decisions: true,
        ..Defects::default()
    };
    let seed = caught(d, Clause::Total, 20);
    eprintln!("caught at seed {seed:?}");
    assert!(
        seed.is_some(),
        "swapped total-order decisions went unnoticed"
    );
}

#[test]
fn checker_catches_checkpoint_at_wrong_point() {
    let d = Defects {
        late_checkpoint: true,
        ..Defects::default()
    };
    let seed = caught(d, Clause::StateTransfer, 20);
    eprintln!("caught at seed {seed:?}");
    assert!(
        seed.is_some(),
        "a checkpoint taken after the join point went unnoticed"
    );
}

#[test]
fn checker_catches_unstable_safe_delivery() {
    let d = Defects {
        unsafe_safe: true,
        ..Defects::default()
    };
    let seed = caught(d, Clause::Safe, 20);
    eprintln!("caught at seed {seed:?}");
    assert!(
        seed.is_some(),
        "safe delivery before stability went unnoticed"
    );
}

#[test]
fn checker_catches_ignored_causal_dependencies() {
    let d = Defects {
        ignore_causal: true,
        ..Defects::default()
    };
    let seed = caught(d, Clause::Causal, 150);
    eprintln!("caught at seed {seed:?}");
    assert!(seed.is_some(), "causal violations went unnoticed");
}

#[test]
fn checker_catches_delivery_outside_the_primary_component() {
    let d = Defects {
        deliver_in_minority: true,
        ..Defects::default()
    };
    let seed = caught(d, Clause::Primary, 40);
    eprintln!("caught at seed {seed:?}");
    assert!(seed.is_some(), "minority deliveries went unnoticed");
}

/// The broker never admits it lost the primary component (no `Blocked`),
/// so only the checker's own view bookkeeping can notice.
#[test]
fn checker_catches_minority_delivery_without_blocked_event() {
    let d = Defects {
        ignore_minority: true,
        ..Defects::default()
    };
    let seed = caught(d, Clause::Primary, 40);
    eprintln!("caught at seed {seed:?}");
    assert!(
        seed.is_some(),
        "minority deliveries without a Blocked event went unnoticed"
    );
}

/// The provider is the oldest member whatever state it keeps: a joiner
/// gets the empty checkpoint of a member that joined without state although
/// members that keep state exist.
#[test]
fn checker_catches_a_provider_that_keeps_no_state() {
    let d = Defects {
        any_provider: true,
        ..Defects::default()
    };
    let seed = caught(d, Clause::StateTransfer, 20);
    eprintln!("caught at seed {seed:?}");
    assert!(
        seed.is_some(),
        "checkpoints from members without state went unnoticed"
    );
}

/// After an exclusion every member re-joins with state, also those whose
/// client joined without.
#[test]
fn checker_catches_a_rejoin_that_forgets_the_state_flag() {
    let d = Defects {
        rejoin_with_state: true,
        ..Defects::default()
    };
    let seed = caught(d, Clause::StateTransfer, 40);
    eprintln!("caught at seed {seed:?}");
    assert!(
        seed.is_some(),
        "re-joins that ask for state the client did not want went unnoticed"
    );
}

#[test]
fn runs_are_deterministic() {
    let a = run_seed(7);
    let b = run_seed(7);
    assert_eq!(format!("{:?}", a.stats), format!("{:?}", b.stats));
}

mod random_options {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

        /// Options drawn independently of the seed: any mesh size, fault
        /// and workload rate, with or without bounded member queues.
        #[test]
        fn any_options_hold_the_guarantees(
            seed in any::<u64>(),
            brokers in 3usize..=7,
            fault_interval in 150u64..800,
            op_interval in 5u64..40,
            queue in prop::option::of(8usize..64),
        ) {
            let mut o = SimOptions::from_seed(seed);
            o.brokers = brokers;
            o.fault_interval = fault_interval;
            o.op_interval = op_interval;
            o.member_queue = queue;
            if let Some((_, s, from, until)) = o.slow_session {
                o.slow_session = Some((seed as u32 % brokers as u32, s, from, until));
            }
            let r = run_with(seed, o);
            prop_assert!(r.violations.is_empty(), "{}", report(&r));
        }
    }
}

#[test]
fn quiet_mesh_delivers_everything() {
    let mut o = SimOptions::from_seed(11);
    o.faults = false;
    let r = run_with(11, o);
    assert!(r.violations.is_empty(), "{}", report(&r));
    assert_eq!(r.stats.faults, 0);
    assert!(r.stats.deliveries > 0);
}

/// Leases are argued for clock rates less than 10 % apart (their margin);
/// the sweeps use up to 8 %. With clocks up to 90 % off (one running up to
/// 19 times as fast as another), a cut-off broker whose clock runs slow
/// still believes in its lease after the others excluded it, and the
/// checker must see it deliver outside the primary component: the
/// simulated clocks do bite. (Up to 50 % off, 400 seeds found nothing:
/// granters renew their grant with every heartbeat, which leaves more
/// slack than the margin.)
#[test]
fn checker_catches_leases_outrun_by_clocks_beyond_the_margin() {
    let found = (0..400u64).find(|seed| {
        let mut o = SimOptions::from_seed(*seed).without_extra();
        o.extra.clocks = true;
        o.extra.clock_ppm = 900_000;
        o.extra.one_way = true;
        run_with(*seed, o).has(Clause::Primary)
    });
    eprintln!("caught at seed {found:?}");
    assert!(
        found.is_some(),
        "clocks beyond the lease margin went unnoticed"
    );
}

/// A value that removed nobody was committed on a majority's acceptance
/// (the coordinator's, not durable, and one member's); the coordinator
/// restarted and stood in for itself in another ballot on the same base:
/// two successors of one view. Seed 2032346 as it failed (extra faults
/// but providers answering at once).
#[test]
fn no_value_removing_nobody_is_committed_on_a_majority_alone() {
    let mut o = SimOptions::from_seed(2_032_346);
    o.extra.late_replies = false;
    let r = run_with(2_032_346, o);
    assert!(r.violations.is_empty(), "{}", report(&r));
}
