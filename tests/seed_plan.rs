//! The built-in seed plan is safe: 1,000 cases of 200 steps pass every invariant after every
//! step, reach every phase of every kind, and a run is a pure function of its inputs.

use cutover::explore::{CheckOptions, check, run_case};
use cutover::plan::{Phase, Plan};
use cutover::sim::{Probe, SimOptions};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::sync::Arc;

#[test]
fn seed_plan_passes_1000_cases_of_200_steps() {
    let report = check(&Plan::seed(), &CheckOptions::default());
    if let Some(c) = &report.counterexample {
        let trace: Vec<String> = c.trace.iter().map(|t| t.to_string()).collect();
        panic!("seed {}: {}\n{}", c.seed, c.failure, trace.join("\n"));
    }
    assert_eq!(report.cases, 1_000);
    assert_eq!(report.steps, 200_000);
    assert_eq!(report.phase_max, [Some(Phase::TypedOnly); 3]);
    assert!(report.cases_all_typed_only > 0);
    assert!(report.rollbacks > 0, "rollbacks are exercised");
    // Sometimes-assertions: the default run reaches every rare situation that matters.
    for probe in Probe::ALL {
        assert!(
            report.probes.get(&probe).is_some_and(|n| *n > 0),
            "the default run never reached {probe}: {:?}",
            report.probes
        );
    }
}

/// The seed plan stays safe with every fault at its highest rate: action crashes, Stripe
/// redeliveries, backfill driver crashes and a second runner, retry exhaustion, skew.
#[test]
fn seed_plan_stays_safe_with_every_fault_on() {
    let report = check(
        &Plan::seed(),
        &CheckOptions {
            fixed_swarm: Some(cutover::explore::Swarm::max_faults()),
            ..CheckOptions::default()
        },
    );
    if let Some(c) = &report.counterexample {
        let trace: Vec<String> = c.trace.iter().map(|t| t.to_string()).collect();
        panic!("seed {}: {}\n{}", c.seed, c.failure, trace.join("\n"));
    }
    assert_eq!(report.cases, 1_000);
    for probe in Probe::ALL {
        assert!(
            report.probes.get(&probe).is_some_and(|n| *n > 0),
            "never reached {probe}"
        );
    }
}

#[test]
fn seed_plan_stays_safe_with_many_dirty_documents() {
    let mut options = CheckOptions {
        cases: 200,
        ..CheckOptions::default()
    };
    options.sim.data.dirty_percent = 30;
    let report = check(&Plan::seed(), &options);
    assert!(
        report.counterexample.is_none(),
        "{:?}",
        report.counterexample.map(|c| c.failure)
    );
}

fn steps(seed: u64) -> Vec<cutover::sim::Step> {
    let mut runner = TestRunner::new_with_rng(
        Default::default(),
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &[seed as u8; 32],
        ),
    );
    cutover::explore::steps(cutover::explore::step(3), 300)
        .new_tree(&mut runner)
        .expect("steps generate")
        .current()
}

#[test]
fn a_run_is_a_pure_function_of_plan_options_and_seed() {
    let plan = Arc::new(Plan::seed());
    let options = SimOptions::default();
    let s = steps(7);
    let (a, sim_a) = run_case(&plan, &options, 42, &s, true);
    let (b, sim_b) = run_case(&plan, &options, 42, &s, true);
    assert_eq!(a, b);
    assert_eq!(sim_a.digest(), sim_b.digest());
    assert_eq!(sim_a.trace, sim_b.trace);
    let (_, sim_c) = run_case(&plan, &options, 43, &s, false);
    assert_ne!(
        sim_a.digest(),
        sim_c.digest(),
        "another dataset is another run"
    );
    let (_, sim_d) = run_case(&plan, &options, 42, &steps(8), false);
    assert_ne!(
        sim_a.digest(),
        sim_d.digest(),
        "other steps are another run"
    );
}

#[test]
fn check_is_deterministic() {
    let options = CheckOptions {
        cases: 50,
        ..CheckOptions::default()
    };
    assert_eq!(
        check(&Plan::seed(), &options),
        check(&Plan::seed(), &options)
    );
}
