//! Bounded exhaustive exploration: every interleaving of the small scenario up to a depth,
//! with equal states deduplicated; the first counterexample is a shortest one.

use cutover::exhaustive::{Scenario, distinct_paths, explore, explore_jobs};
use cutover::explore::{CheckOptions, check};
use cutover::plan::Plan;
use cutover::sim::Invariant;
use std::path::Path;

fn catalogue(name: &str) -> Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans/unsafe")
        .join(format!("{name}.toml"));
    Plan::parse(&std::fs::read_to_string(&path).expect("exists"), name).expect("valid")
}

/// The seed plan's small scenario, pinned: distinct states and steps tried per depth. A
/// change to the model, the scenario or the state hash shows up here.
#[test]
fn the_seed_plans_state_counts_are_pinned_and_it_is_safe_to_depth_6() {
    let expected = [
        (1, 6, 15),
        (2, 28, 89),
        (3, 113, 411),
        (4, 426, 1643),
        (5, 1568, 6148),
        (6, 5757, 22512),
    ];
    for (depth, states, transitions) in expected {
        let r = explore(&Plan::seed(), &Scenario::small(), depth, usize::MAX);
        assert_eq!(r.counterexample.map(|c| c.failure), None, "depth {depth}");
        assert_eq!(
            (r.depth, r.states, r.transitions),
            (depth, states, transitions)
        );
    }
}

/// Every catalogue entry whose deviation the small scenario exercises is found within
/// depth 8, with a counterexample no longer than the one `check` reports for it. (Two
/// entries need another dataset than `check`'s first failing case: with the small
/// scenario's documents and batches of two, their shortest counterexamples are 6 and 8
/// steps.)
#[test]
fn catalogue_entries_in_the_bound_are_found_with_shortest_counterexamples() {
    let entries = [
        (
            "backfill_before_double_write",
            2,
            Invariant::NoOrphanTypedRow,
        ),
        ("deletes_not_mirrored", 3, Invariant::NoOrphanTypedRow),
        ("blind_insert_backfill", 4, Invariant::UniqueTypedRow),
        ("read_switch_before_backfill", 4, Invariant::ReadEquivalence),
        ("backfill_stale_copy", 5, Invariant::FieldAgreement),
        (
            "references_not_remapped",
            6,
            Invariant::ReferentialIntegrity,
        ),
        ("invalid_documents_skipped", 8, Invariant::Coverage),
    ];
    for (name, shortest, invariant) in entries {
        let plan = catalogue(name);
        // Breadth-first: nothing shorter exists when it is found at this depth.
        let r = explore(&plan, &Scenario::small(), shortest, usize::MAX);
        let c = r
            .counterexample
            .unwrap_or_else(|| panic!("{name}: not found within depth {shortest}"));
        assert_eq!(c.steps.len(), shortest, "{name}");
        assert_eq!(
            r.depth, shortest,
            "{name}: found at the depth of its length"
        );
        assert_eq!(c.failure.invariant, invariant, "{name}: {}", c.failure);
        assert!(c.failure.explained.is_some(), "{name}: explained");
        if shortest <= 5 {
            let report = check(&plan, &CheckOptions::default());
            let checked = report.counterexample.expect("check finds it too");
            assert!(
                c.steps.len() <= checked.steps.len(),
                "{name}: {} > {}",
                c.steps.len(),
                checked.steps.len()
            );
        }
    }
}

/// The budget stops the search; what it searched in full is reported.
#[test]
fn a_budget_cuts_the_search_short() {
    let r = explore(&Plan::seed(), &Scenario::small(), 6, 1_000);
    assert!(r.cut_short);
    assert!(r.depth < 6 && r.transitions <= 1_000, "{r:?}");
}

/// Workers change nothing: the same states, steps tried, depth and counterexample for any
/// number of jobs, on a safe plan and on unsafe ones (and with a budget that stops the
/// search in the middle of a depth).
#[test]
fn the_result_is_the_same_whatever_the_number_of_jobs() {
    let cases = [
        (Plan::seed(), 6, usize::MAX),
        (Plan::seed(), 8, 5_000),
        (catalogue("backfill_stale_copy"), 7, usize::MAX),
        (catalogue("references_not_remapped"), 7, usize::MAX),
    ];
    for (plan, depth, budget) in cases {
        let one = explore_jobs(&plan, &Scenario::small(), depth, budget, 1);
        for jobs in [2, 3] {
            let many = explore_jobs(&plan, &Scenario::small(), depth, budget, jobs);
            assert_eq!(many, one, "plan {:?}, {jobs} jobs", plan.name);
        }
    }
}

/// What `track_state` keeps up to date (table sums, the checker's set sums) gives the hash
/// computed from scratch, after every step of a long random run: a kept sum that drifted
/// from its contents would merge states that differ, or split equal ones.
#[test]
fn a_tracked_state_hashes_as_one_hashed_from_scratch() {
    use cutover::explore::{Swarm, step_in};
    use cutover::sim::{Sim, SimOptions};
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    use std::sync::Arc;
    let plan = Arc::new(Plan::seed());
    let options = SimOptions::default();
    let mut tracked = Sim::new(plan.clone(), &options, 11);
    tracked.track_state();
    let mut scratch = Sim::new(plan, &options, 11);
    assert_eq!(tracked.state_hash(), scratch.state_hash());
    let mut runner = TestRunner::deterministic();
    let strategy = step_in(&Swarm::max_faults());
    let mut hashes = std::collections::BTreeSet::new();
    for i in 0..400 {
        let step = strategy.new_tree(&mut runner).unwrap().current();
        let (a, b) = (tracked.step(&step), scratch.step(&step));
        assert_eq!(a.is_ok(), b.is_ok(), "step {i}");
        assert_eq!(
            tracked.state_hash(),
            scratch.state_hash(),
            "step {i}: {step:?}"
        );
        hashes.insert(tracked.state_hash());
        if a.is_err() {
            break;
        }
    }
    // The run moved through many states: the comparison was not of one constant.
    assert!(hashes.len() > 100, "{} distinct states", hashes.len());
}

/// `distinct_paths` gives one path per distinct state, replayed from scratch: as many as the
/// search counts, shortest first, each replaying without a failure to a state no other path
/// reaches, each extending the path of the state it was reached from (the explore bench
/// builds every parent before its children on that). A search that kept a state twice, lost
/// one, or kept a path that does not lead where it says fails here.
#[test]
fn distinct_paths_reach_each_distinct_state_once() {
    use cutover::sim::Sim;
    use std::sync::Arc;
    let (plan, scenario) = (Plan::seed(), Scenario::small());
    let depth = 5;
    let paths = distinct_paths(&plan, &scenario, depth);
    assert_eq!(
        paths.len(),
        explore(&plan, &scenario, depth, usize::MAX).states
    );
    let run_plan = Arc::new(scenario.plan_for(&plan));
    let data = cutover::data::generate(scenario.data_seed, &scenario.options.data);
    let mut hashes = std::collections::BTreeSet::new();
    let mut firsts = std::collections::HashSet::new();
    for (i, path) in paths.iter().enumerate() {
        assert!(path.len() <= depth, "path {i}: {} steps", path.len());
        if i > 0 {
            assert!(paths[i - 1].len() <= path.len(), "path {i} is out of order");
            assert!(
                firsts.contains(&path[..path.len() - 1]),
                "path {i} does not extend a path given before it"
            );
        }
        firsts.insert(path.as_slice());
        let mut sim = Sim::from_dataset(run_plan.clone(), &scenario.options, &data);
        sim.run(path)
            .unwrap_or_else(|f| panic!("path {i} fails: {f:?}"));
        assert!(
            hashes.insert(sim.state_hash()),
            "path {i} reaches a state an earlier path reached"
        );
    }
}

fn catalogue_and_seed() -> Vec<Plan> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/unsafe");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the catalogue exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.file_stem().expect("named").to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 10, "the catalogue: {names:?}");
    std::iter::once(Plan::seed())
        .chain(names.iter().map(|n| catalogue(n)))
        .collect()
}

/// The steps the search skips as idle (`Sim::idle`), taken anyway, pass and leave the state
/// as it was, on the seed plan and every catalogue entry; and the search finds the same
/// with the check as without.
#[test]
fn every_step_skipped_as_idle_changes_nothing() {
    let mut checked = Scenario::small();
    checked.check_idle = true;
    for plan in catalogue_and_seed() {
        let with = explore(&plan, &checked, 7, usize::MAX);
        let without = explore(&plan, &Scenario::small(), 7, usize::MAX);
        assert_eq!(with, without, "plan {:?}", plan.name);
    }
}

/// The same of random runs, whose steps reach more than the small scenario's (faults,
/// other actions, other kinds): wherever `Sim::idle` says a step is idle, taking it passes
/// and leaves the state's hash alone.
#[test]
fn a_step_called_idle_is_idle_in_random_runs() {
    use cutover::explore::{Swarm, step_in};
    use cutover::sim::{Sim, SimOptions};
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    use std::sync::Arc;
    let mut idle = 0;
    for plan in catalogue_and_seed() {
        let name = plan.name.clone();
        let mut sim = Sim::new(Arc::new(plan), &SimOptions::default(), 5);
        sim.track_state();
        let mut runner = TestRunner::deterministic();
        let strategy = step_in(&Swarm::max_faults());
        for i in 0..300 {
            let step = strategy.new_tree(&mut runner).unwrap().current();
            if sim.idle(&step) {
                idle += 1;
                let mut copy = sim.clone();
                let outcome = copy.step(&step);
                assert!(outcome.is_ok(), "{name:?} step {i}: {step:?}: {outcome:?}");
                assert_eq!(
                    copy.state_hash(),
                    sim.state_hash(),
                    "{name:?} step {i}: {step:?}"
                );
            }
            if sim.step(&step).is_err() {
                break;
            }
        }
    }
    // Idle steps came up: the comparison ran.
    assert!(idle > 200, "{idle} idle steps");
}

/// A `Sim::idle` that skips a step that is not idle (planted: every backfill batch) makes
/// the search miss states; the check catches it.
#[test]
fn a_wrong_idle_skip_misses_states_and_the_check_catches_it() {
    let mut planted = Scenario::small();
    planted.options.bugs.idle_backfill = true;
    let missed = explore(&Plan::seed(), &planted, 5, usize::MAX);
    assert!(missed.states < 1568, "{} states", missed.states);
    planted.check_idle = true;
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        explore(&Plan::seed(), &planted, 5, usize::MAX)
    }));
    let message = caught.expect_err("the check panics");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted message");
    assert!(
        message.contains("a step Sim::idle skips changed the state"),
        "{message}"
    );
}

/// Sharing document versions (`Sim::share_versions`) changes nothing a run does: after
/// every step of long random runs, on the seed plan and every catalogue entry, a run that
/// shares them has the outcome and state hash of one that does not.
#[test]
fn sharing_versions_changes_nothing_a_run_does() {
    use cutover::explore::{Swarm, step_in};
    use cutover::sim::{Sim, SimOptions};
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    use std::sync::Arc;
    let options = SimOptions {
        data: cutover::data::GenOptions {
            documents: 40,
            dirty_percent: 10,
        },
        ..SimOptions::default()
    };
    for plan in catalogue_and_seed() {
        let name = plan.name.clone();
        let plan = Arc::new(plan);
        let mut shared = Sim::new(plan.clone(), &options, 9);
        shared.track_state();
        shared.share_versions();
        let mut alone = Sim::new(plan, &options, 9);
        alone.track_state();
        let mut runner = TestRunner::deterministic();
        let strategy = step_in(&Swarm::max_faults());
        for i in 0..300 {
            let step = strategy.new_tree(&mut runner).unwrap().current();
            // A fork shares the versions too: take every step on one.
            let mut fork = shared.clone();
            let (a, b) = (fork.step(&step), alone.step(&step));
            shared = fork;
            assert_eq!(a, b, "{name:?} step {i}: {step:?}");
            assert_eq!(shared.state_hash(), alone.state_hash(), "{name:?} step {i}");
            if a.is_err() {
                break;
            }
        }
    }
}
