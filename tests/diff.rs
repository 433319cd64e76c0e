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
                // A stale diff is rebuilt by the guard before use; compare only a live one.
                if sim.migrated.phase(kind) < cutover::plan::Phase::DoubleWrite {
                    continue;
                }
                let _ = sim.migrated.diff(kind);
                let incremental = sim.migrated.unclean(kind).clone();
                let full = sim.migrated.diff_full(kind);
                assert_eq!(incremental, full, "case {case}, {kind}, after {s:?}");
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
