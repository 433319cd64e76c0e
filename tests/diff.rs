//! The `diff_clean` guard keeps its keyed diff incrementally (what each step touched); after
//! every step it must equal the full diff computed from scratch.

use cutover::explore::{step, steps};
use cutover::plan::Plan;
use cutover::schema::Kind;
use cutover::sim::{Sim, SimOptions};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use std::sync::Arc;

#[test]
fn incremental_diff_equals_the_full_diff_after_every_step() {
    let plan = Arc::new(Plan::seed());
    let mut options = SimOptions::default();
    options.data.dirty_percent = 15;
    let mut compared = 0;
    let mut nonempty = 0;
    for case in 0..40u64 {
        let mut runner = TestRunner::new_with_rng(
            Default::default(),
            TestRng::from_seed(RngAlgorithm::ChaCha, &[case as u8 + 1; 32]),
        );
        let steps = steps(step(3), 300).new_tree(&mut runner).unwrap().current();
        let mut sim = Sim::new(plan.clone(), &options, case);
        for s in &steps {
            sim.step(s).unwrap_or_else(|f| panic!("case {case}: {f}"));
            for kind in Kind::ALL {
                // In typed_only the diff goes stale and is rebuilt by the guard before use;
                // everywhere else it is kept up to date.
                if sim.migrated.phase(kind) == cutover::plan::Phase::TypedOnly {
                    continue;
                }
                let _ = sim.migrated.diff(kind);
                let incremental = sim.migrated.unclean(kind).clone();
                let full = sim.migrated.diff_full(kind);
                if incremental != full {
                    let missed: Vec<String> = full
                        .symmetric_difference(&incremental)
                        .copied()
                        .collect::<Vec<_>>()
                        .into_iter()
                        .map(|l| format!("{l:?}: {:?}", sim.migrated.diff_one(kind, l)))
                        .collect();
                    panic!(
                        "case {case}, {kind}, after {s:?}: incremental and full diff differ on\n{}",
                        missed.join("\n")
                    );
                }
                compared += 1;
                nonempty += usize::from(!full.is_empty());
            }
        }
    }
    assert!(
        compared > 10_000 && nonempty > 1_000,
        "{compared} comparisons, {nonempty} unclean"
    );
}

/// The checker's and the diff's lookups by legacy id are memoized per store version: a
/// write in between shows at once.
#[test]
fn lookups_by_legacy_id_see_every_write() {
    use cutover::plan::Phase;
    use cutover::value::Value;
    let mut sim = Sim::new(Arc::new(Plan::seed()), &SimOptions::default(), 7);
    let w = &mut sim.migrated;
    let l = w
        .store
        .peek_range(w.t.objects_by_type, &[Value::from("event")])
        .next()
        .expect("the dataset has events")
        .id;
    let covered = |w: &cutover::world::World| {
        w.peek_typed_rows(Kind::Events, l).len() + usize::from(w.peek_quarantined(l))
    };
    assert_eq!(covered(w), 0);
    while w.phase(Kind::Events) < Phase::Backfill {
        w.advance(Kind::Events);
    }
    w.backfill_batch(Kind::Events).unwrap();
    assert_eq!(covered(w), 1, "the batch's typed row or quarantine entry");
}
