//! Randomized exploration: proptest strategies for step sequences, a shrinker that removes
//! whole runs of steps before simplifying single ones, and `check`, which runs many seeded
//! cases of a plan and returns the minimal counterexample of the first failing one.

use crate::plan::{Phase, Plan};
use crate::schema::Kind;
use crate::sim::{Failure, Op, Read, Sim, SimOptions, Stats, Step, TicketChange, TraceLine};
use proptest::prelude::*;
use proptest::strategy::{NewTree, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Events),
        Just(Kind::Transactions),
        Just(Kind::Tickets)
    ]
}

/// A selection among existing entities. Small numbers keep a selection stable when the
/// shrinker removes earlier steps that created entities.
fn sel() -> impl Strategy<Value = u16> {
    0u16..64
}

/// The lane of an action: few lanes, so that action steps usually find an action to run.
fn lane() -> impl Strategy<Value = u8> {
    0u8..3
}

fn read() -> impl Strategy<Value = Read> {
    let s = sel;
    prop_oneof![
        s().prop_map(|txn| Read::TransactionById { txn }),
        (s(), proptest::option::of(0u8..6))
            .prop_map(|(org, status)| Read::TransactionsOfOrg { org, status }),
        s().prop_map(|session| Read::TransactionsOfSession { session }),
        s().prop_map(|org| Read::TotalsByOrg { org }),
        s().prop_map(|ticket| Read::TicketById { ticket }),
        s().prop_map(|event| Read::TicketsOfEvent { event }),
        s().prop_map(|txn| Read::TicketsOfTransaction { txn }),
        (s(), 0u8..4).prop_map(|(org, status)| Read::TicketsOfOrgByStatus { org, status }),
        s().prop_map(|event| Read::EventById { event }),
        s().prop_map(|org| Read::EventsOfOrg { org }),
    ]
}

fn ticket_change() -> impl Strategy<Value = TicketChange> {
    prop_oneof![
        Just(TicketChange::Redeem),
        Just(TicketChange::Cancel),
        any::<u16>().prop_map(|seed| TicketChange::Transfer { seed }),
        sel().prop_map(|event| TicketChange::Move { event }),
    ]
}

/// One operation, weighted so that a few hundred steps take every kind through its phases
/// while app writes, actions, reads and the backfill interleave.
pub fn op() -> impl Strategy<Value = Op> {
    let s = sel;
    prop_oneof![
        20 => read().prop_map(|read| Op::Read { read }),
        22 => lane().prop_map(|lane| Op::ActionStep { lane }),
        16 => kind().prop_map(|kind| Op::Backfill { kind }),
        18 => kind().prop_map(|kind| Op::Advance { kind }),
        5 => (lane(), s(), s(), 1u8..=3, any::<bool>(), s()).prop_map(|(lane, event, product, quantity, v1, seed)| Op::Checkout { lane, event, product, quantity, v1, seed }),
        4 => (lane(), s(), 0u8..6).prop_map(|(lane, txn, status)| Op::PaymentWebhook { lane, txn, status }),
        2 => (lane(), s()).prop_map(|(lane, delivery)| Op::WebhookRedeliver { lane, delivery }),
        2 => (lane(), s(), any::<bool>()).prop_map(|(lane, txn, partial)| Op::Refund { lane, txn, partial }),
        4 => (kind(), s(), s()).prop_map(|(kind, target, seed)| Op::GenericUpdate { kind, target, seed }),
        4 => (s(), ticket_change()).prop_map(|(ticket, change)| Op::Ticket { ticket, change }),
        2 => s().prop_map(|txn| Op::InvoiceTransition { txn }),
        2 => (s(), s()).prop_map(|(org, seed)| Op::CreateEvent { org, seed }),
        2 => (s(), s()).prop_map(|(event, seed)| Op::EditEvent { event, seed }),
        2 => (s(), s()).prop_map(|(org, seed)| Op::BookingPayment { org, seed }),
        2 => (kind(), s()).prop_map(|(kind, target)| Op::Delete { kind, target }),
        3 => (kind(), s()).prop_map(|(kind, target)| Op::Repair { kind, target }),
        3 => kind().prop_map(|kind| Op::RetryQuarantine { kind }),
        1 => kind().prop_map(|kind| Op::Rollback { kind }),
        1 => lane().prop_map(|lane| Op::ActionCrash { lane }),
        1 => kind().prop_map(|kind| Op::BackfillCrash { kind }),
    ]
}

/// One step: an operation with a `_creationTime` skew (mostly none).
pub fn step(skew_max: u8) -> impl Strategy<Value = Step> {
    let skew = prop_oneof![3 => Just(0u8), 1 => 0..=skew_max];
    (op(), skew).prop_map(|(op, skew)| Step { op, skew })
}

/// A sequence of exactly `len` generated steps that shrinks by removing runs of steps
/// (halves, quarters, ... single steps) and then by simplifying the steps that remain.
#[derive(Clone, Debug)]
pub struct Steps<S> {
    element: S,
    len: usize,
}

pub fn steps<S: Strategy<Value = Step>>(element: S, len: usize) -> Steps<S> {
    Steps { element, len }
}

impl<S: Strategy<Value = Step>> Strategy for Steps<S> {
    type Tree = StepsTree<S::Tree>;
    type Value = Vec<Step>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let trees = (0..self.len)
            .map(|_| self.element.new_tree(runner))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StepsTree {
            included: vec![true; trees.len()],
            chunk: trees.len().div_ceil(2),
            pos: 0,
            element: 0,
            simplified: false,
            last: Last::Nothing,
            trees,
        })
    }
}

#[derive(Clone, Debug)]
enum Last {
    Nothing,
    Removed(Vec<usize>),
    Simplified(usize),
}

#[derive(Clone, Debug)]
pub struct StepsTree<T> {
    trees: Vec<T>,
    included: Vec<bool>,
    chunk: usize,
    pos: usize,
    element: usize,
    /// Whether a simplification of a single step was kept since the last removal pass;
    /// simpler steps can make more steps removable, so removal then runs again.
    simplified: bool,
    last: Last,
}

impl<T: ValueTree<Value = Step>> ValueTree for StepsTree<T> {
    type Value = Vec<Step>;

    fn current(&self) -> Vec<Step> {
        self.trees
            .iter()
            .zip(&self.included)
            .filter(|(_, inc)| **inc)
            .map(|(t, _)| t.current())
            .collect()
    }

    fn simplify(&mut self) -> bool {
        while self.chunk > 0 {
            let live: Vec<usize> = (0..self.trees.len())
                .filter(|i| self.included[*i])
                .collect();
            if self.pos >= live.len() {
                self.chunk /= 2;
                self.pos = 0;
                continue;
            }
            let removed: Vec<usize> =
                live[self.pos..(self.pos + self.chunk).min(live.len())].to_vec();
            for i in &removed {
                self.included[*i] = false;
            }
            self.last = Last::Removed(removed);
            return true;
        }
        while self.element < self.trees.len() {
            let i = self.element;
            if let Last::Simplified(j) = self.last
                && j == i
            {
                // The previous simplification of this step was kept.
                self.simplified = true;
            }
            if self.included[i] && self.trees[i].simplify() {
                self.last = Last::Simplified(i);
                return true;
            }
            self.element += 1;
        }
        if std::mem::take(&mut self.simplified) {
            self.chunk = self.included.iter().filter(|i| **i).count().div_ceil(2);
            self.pos = 0;
            self.element = 0;
            self.last = Last::Nothing;
            return self.simplify();
        }
        self.last = Last::Nothing;
        false
    }

    fn complicate(&mut self) -> bool {
        match std::mem::replace(&mut self.last, Last::Nothing) {
            Last::Nothing => false,
            Last::Removed(removed) => {
                // The failure needs these steps: keep them and try the next run.
                for i in removed {
                    self.included[i] = true;
                }
                self.pos += self.chunk;
                true
            }
            Last::Simplified(i) => {
                if self.trees[i].complicate() {
                    self.last = Last::Simplified(i);
                    true
                } else {
                    false
                }
            }
        }
    }
}

/// Options of `check`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOptions {
    pub cases: usize,
    pub steps: usize,
    /// Case `i` runs with seed `seed + i`; `--seed S --cases 1` replays case `S`.
    pub seed: u64,
    pub sim: SimOptions,
    /// Limit on shrink attempts per failing case.
    pub shrink_iters_max: u32,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            cases: 1_000,
            steps: 200,
            seed: 0,
            sim: SimOptions::default(),
            shrink_iters_max: 20_000,
        }
    }
}

/// A minimal failing run: replays from `seed` (case seed) alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Counterexample {
    pub seed: u64,
    /// The seed of the generated legacy dataset.
    pub data_seed: u64,
    pub steps: Vec<Step>,
    pub failure: Failure,
    pub trace: Vec<TraceLine>,
}

/// The outcome of `check`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub cases: usize,
    pub steps: usize,
    /// The furthest phase each kind reached in any case.
    pub phase_max: [Option<Phase>; 3],
    /// How many cases took every kind to `typed_only`.
    pub cases_all_typed_only: usize,
    pub switches: usize,
    pub rollbacks: usize,
    pub batches: usize,
    pub reads: usize,
    pub counterexample: Option<Counterexample>,
}

/// Runs one case: a fresh simulation over the dataset of `data_seed`, then the steps.
pub fn run_case(
    plan: &Arc<Plan>,
    options: &SimOptions,
    data_seed: u64,
    steps: &[Step],
    verbose: bool,
) -> (Result<(), Failure>, Sim) {
    let mut sim = Sim::new(plan.clone(), options, data_seed);
    sim.set_verbose(verbose);
    let result = sim.run(steps);
    (result, sim)
}

/// Derives a case's dataset seed from its case seed.
pub fn data_seed(case_seed: u64) -> u64 {
    case_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xC0FF_EE00
}

/// Runs `options.cases` cases and stops at the first failing one, shrunk.
pub fn check(plan: &Plan, options: &CheckOptions) -> Report {
    let plan = Arc::new(plan.clone());
    let mut report = Report {
        cases: 0,
        steps: 0,
        phase_max: [None; 3],
        cases_all_typed_only: 0,
        switches: 0,
        rollbacks: 0,
        batches: 0,
        reads: 0,
        counterexample: None,
    };
    let strategy = steps(step(options.sim.skew_max_ms), options.steps);
    for i in 0..options.cases {
        let case_seed = options.seed.wrapping_add(i as u64);
        let ds = data_seed(case_seed);
        let config = Config {
            cases: 1,
            failure_persistence: None,
            max_shrink_iters: options.shrink_iters_max,
            ..Config::default()
        };
        let mut runner = TestRunner::new_with_rng(
            config,
            TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(case_seed)),
        );
        let stats: std::cell::RefCell<Option<Stats>> = std::cell::RefCell::new(None);
        let result = runner.run(&strategy, |steps| {
            let (result, sim) = run_case(&plan, &options.sim, ds, &steps, false);
            // The first run is the generated case; later runs are shrink attempts.
            stats.borrow_mut().get_or_insert_with(|| sim.stats.clone());
            result.map_err(|f| TestCaseError::fail(f.to_string()))
        });
        report.cases += 1;
        if let Some(s) = stats.into_inner() {
            report.steps += s.steps;
            report.switches += s.switches;
            report.rollbacks += s.rollbacks;
            report.batches += s.batches;
            report.reads += s.reads;
            if s.phase_max.iter().all(|p| *p == Some(Phase::TypedOnly)) {
                report.cases_all_typed_only += 1;
            }
            for (m, p) in report.phase_max.iter_mut().zip(s.phase_max) {
                if p > *m {
                    *m = p;
                }
            }
        }
        if let Err(TestError::Fail(_, steps)) = result {
            let (result, sim) = run_case(&plan, &options.sim, ds, &steps, true);
            let failure = result.expect_err("a shrunk counterexample fails when replayed");
            report.counterexample = Some(Counterexample {
                seed: case_seed,
                data_seed: ds,
                steps,
                failure,
                trace: sim.trace,
            });
            break;
        }
    }
    report
}

fn seed_bytes(seed: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(
            &(seed ^ (i as u64).wrapping_mul(0xA076_1D64_78BD_642F)).to_le_bytes(),
        );
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        // Failures persist to proptest-regressions/explore.txt (the default for tests under
        // src/). The main 1,000-case run is in tests/seed_plan.rs through `check`.
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn seed_plan_holds_every_invariant(
            data_seed in any::<u64>().no_shrink(),
            steps in steps(step(3), 200),
        ) {
            let plan = Arc::new(Plan::seed());
            let (result, _) = run_case(&plan, &SimOptions::default(), data_seed, &steps, false);
            if let Err(f) = result {
                prop_assert!(false, "{f}");
            }
        }
    }
}
