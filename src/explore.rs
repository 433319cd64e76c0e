//! Randomized exploration: proptest strategies for step sequences, a shrinker that removes
//! whole runs of steps before simplifying single ones, and `check`, which runs many seeded
//! cases of a plan and returns the minimal counterexample of the first failing one.

use crate::plan::{Phase, Plan};
use crate::schema::Kind;
use crate::sim::{
    Failure, Fault, Op, Probe, Read, Sim, SimOptions, Stats, Step, TicketChange, TraceLine,
};
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

/// A class of operation, for the per-case weights of `Swarm`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpClass {
    Read,
    ActionStep,
    Backfill,
    Advance,
    Checkout,
    PaymentWebhook,
    GenericUpdate,
    Ticket,
    InvoiceTransition,
    CreateEvent,
    EditEvent,
    BookingPayment,
    Delete,
    Repair,
    RetryQuarantine,
    Rollback,
    Refund,
    /// Fault: Stripe redelivers an earlier payment event.
    WebhookRedeliver,
    /// Fault: an action crashes between two of its steps.
    ActionCrash,
    /// Fault: the backfill driver crashes and resumes from its persisted cursor.
    BackfillCrash,
    /// Fault: a second backfill driver runs batches at the same time.
    SecondBackfillRunner,
    /// One of the run's own write paths (`SimOptions::extensions`); weight 0 without any.
    CustomWrite,
    /// One of the run's own reads; weight 0 without any.
    CustomRead,
}

impl OpClass {
    /// Every class with its default weight: a few hundred steps take every kind through its
    /// phases while app writes, actions, reads and the backfill interleave.
    pub const DEFAULTS: [(OpClass, u32); 23] = [
        (OpClass::Read, 20),
        (OpClass::ActionStep, 22),
        (OpClass::Backfill, 16),
        (OpClass::Advance, 18),
        (OpClass::Checkout, 5),
        (OpClass::PaymentWebhook, 4),
        (OpClass::GenericUpdate, 4),
        (OpClass::Ticket, 4),
        (OpClass::InvoiceTransition, 2),
        (OpClass::CreateEvent, 2),
        (OpClass::EditEvent, 2),
        (OpClass::BookingPayment, 2),
        (OpClass::Delete, 2),
        (OpClass::Repair, 3),
        (OpClass::RetryQuarantine, 3),
        (OpClass::Rollback, 1),
        (OpClass::Refund, 2),
        (OpClass::WebhookRedeliver, 2),
        (OpClass::ActionCrash, 1),
        (OpClass::BackfillCrash, 1),
        (OpClass::SecondBackfillRunner, 1),
        (OpClass::CustomWrite, 0),
        (OpClass::CustomRead, 0),
    ];

    /// The classes every case keeps: without them no kind moves through its phases.
    fn core(self) -> bool {
        matches!(
            self,
            OpClass::Read | OpClass::ActionStep | OpClass::Backfill | OpClass::Advance
        )
    }

    /// The fault classes, whose rates vary more widely.
    fn fault(self) -> bool {
        matches!(
            self,
            OpClass::WebhookRedeliver
                | OpClass::ActionCrash
                | OpClass::BackfillCrash
                | OpClass::SecondBackfillRunner
        )
    }

    fn strategy(self) -> BoxedStrategy<Op> {
        let s = sel;
        match self {
            OpClass::Read => read().prop_map(|read| Op::Read { read }).boxed(),
            OpClass::ActionStep => lane().prop_map(|lane| Op::ActionStep { lane }).boxed(),
            OpClass::Backfill => kind()
                .prop_map(|kind| Op::Backfill { kind, runner: 0 })
                .boxed(),
            OpClass::SecondBackfillRunner => kind()
                .prop_map(|kind| Op::Backfill { kind, runner: 1 })
                .boxed(),
            OpClass::Advance => kind().prop_map(|kind| Op::Advance { kind }).boxed(),
            OpClass::Checkout => (lane(), s(), s(), 1u8..=3, any::<bool>(), s())
                .prop_map(|(lane, event, product, quantity, v1, seed)| Op::Checkout {
                    lane,
                    event,
                    product,
                    quantity,
                    v1,
                    seed,
                })
                .boxed(),
            OpClass::PaymentWebhook => (lane(), s(), 0u8..6)
                .prop_map(|(lane, txn, status)| Op::PaymentWebhook { lane, txn, status })
                .boxed(),
            OpClass::WebhookRedeliver => (lane(), s())
                .prop_map(|(lane, delivery)| Op::WebhookRedeliver { lane, delivery })
                .boxed(),
            OpClass::Refund => (lane(), s(), any::<bool>())
                .prop_map(|(lane, txn, partial)| Op::Refund { lane, txn, partial })
                .boxed(),
            OpClass::GenericUpdate => (kind(), s(), s())
                .prop_map(|(kind, target, seed)| Op::GenericUpdate { kind, target, seed })
                .boxed(),
            OpClass::Ticket => (s(), ticket_change())
                .prop_map(|(ticket, change)| Op::Ticket { ticket, change })
                .boxed(),
            OpClass::InvoiceTransition => s().prop_map(|txn| Op::InvoiceTransition { txn }).boxed(),
            OpClass::CreateEvent => (s(), s())
                .prop_map(|(org, seed)| Op::CreateEvent { org, seed })
                .boxed(),
            OpClass::EditEvent => (s(), s())
                .prop_map(|(event, seed)| Op::EditEvent { event, seed })
                .boxed(),
            OpClass::BookingPayment => (s(), s())
                .prop_map(|(org, seed)| Op::BookingPayment { org, seed })
                .boxed(),
            OpClass::Delete => (kind(), s())
                .prop_map(|(kind, target)| Op::Delete { kind, target })
                .boxed(),
            OpClass::Repair => (kind(), s())
                .prop_map(|(kind, target)| Op::Repair { kind, target })
                .boxed(),
            OpClass::RetryQuarantine => {
                kind().prop_map(|kind| Op::RetryQuarantine { kind }).boxed()
            }
            OpClass::Rollback => kind().prop_map(|kind| Op::Rollback { kind }).boxed(),
            OpClass::ActionCrash => lane().prop_map(|lane| Op::ActionCrash { lane }).boxed(),
            OpClass::BackfillCrash => kind().prop_map(|kind| Op::BackfillCrash { kind }).boxed(),
            OpClass::CustomWrite => (any::<u8>(), s(), any::<u16>())
                .prop_map(|(index, target, seed)| Op::CustomWrite {
                    index,
                    target,
                    seed,
                })
                .boxed(),
            OpClass::CustomRead => (any::<u8>(), s())
                .prop_map(|(index, target)| Op::CustomRead { index, target })
                .boxed(),
        }
    }
}

/// One case's configuration (swarm testing): how often each operation and each fault
/// occurs, and how often and how far a transaction's begin time lies behind the clock. It is
/// derived from the case seed (`Swarm::from_seed`), so that different seeds stress different
/// corners (a case without deletes, one with a crash every few steps, one with large
/// `_creationTime` skew) and a case replays from its seed alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swarm {
    /// The relative weight of each operation class; 0: never generated in this case.
    pub weights: std::collections::BTreeMap<OpClass, u32>,
    /// Percentage of steps whose transaction begins behind the clock.
    pub skew_percent: u8,
    /// The largest skew, in steps.
    pub skew_max: u8,
    /// Percentage of steps whose transaction fails with its retries exhausted.
    pub retry_fault_percent: u8,
    /// Percentage of steps whose typed writes (double writes, backfill) the typed table's
    /// validator rejects.
    pub reject_fault_percent: u8,
}

impl Default for Swarm {
    /// Every operation at its default weight, a quarter of the steps skewed by up to 3.
    fn default() -> Self {
        Swarm {
            weights: OpClass::DEFAULTS.into_iter().collect(),
            skew_percent: 25,
            skew_max: 3,
            retry_fault_percent: 1,
            reject_fault_percent: 1,
        }
    }
}

impl Swarm {
    /// The default operation weights with every fault at its highest rate: crashes,
    /// redeliveries and a second backfill runner at six times their weight, 10% of the
    /// transactions failing with their retries exhausted, half the steps skewed by up to 30.
    pub fn max_faults() -> Swarm {
        let mut swarm = Swarm::default();
        for (class, w) in swarm.weights.iter_mut() {
            if class.fault() {
                *w *= 6;
            }
        }
        swarm.retry_fault_percent = 10;
        swarm.reject_fault_percent = 10;
        swarm.skew_percent = 50;
        swarm.skew_max = 30;
        swarm
    }

    /// The configuration of case `seed`: each optional operation is off in one case of five
    /// and otherwise at half, once or twice its weight; each fault is off, at its weight, or
    /// at three or six times it; the skew is off or on for 10, 25 or 50% of the steps, by up
    /// to 1, 3, 8 or 20 steps.
    pub fn from_seed(seed: u64) -> Swarm {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x5A4D_5357_4152_4D00);
        let weights = OpClass::DEFAULTS
            .into_iter()
            .map(|(class, w)| {
                // Classes off by default (the run's own extensions) draw nothing.
                let w = if class.core() || w == 0 {
                    w
                } else if class.fault() {
                    w * [0, 1, 3, 6][rng.random_range(0..4usize)]
                } else if rng.random_range(0..5u8) == 0 {
                    0
                } else {
                    [w.div_ceil(2), w, 2 * w][rng.random_range(0..3usize)]
                };
                (class, w)
            })
            .collect();
        Swarm {
            weights,
            skew_percent: [0, 10, 25, 50][rng.random_range(0..4usize)],
            skew_max: [2, 5, 12, 30][rng.random_range(0..4usize)],
            retry_fault_percent: [0, 1, 3, 10][rng.random_range(0..4usize)],
            reject_fault_percent: [0, 1, 3, 10][rng.random_range(0..4usize)],
        }
    }

    /// One line for a report: what differs from the defaults.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let (mut off, mut changed) = (Vec::new(), Vec::new());
        for (class, base) in OpClass::DEFAULTS {
            let w = self.weights.get(&class).copied().unwrap_or(0);
            if base == 0 && w == 0 {
                continue;
            }
            let name = serde_json::to_value(class)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if w == 0 {
                off.push(name);
            } else if base == 0 {
                changed.push(format!("{name} weight {w}"));
            } else if w != base {
                changed.push(format!("{name} x{:.1}", f64::from(w) / f64::from(base)));
            }
        }
        if self.retry_fault_percent > 0 {
            parts.push(format!(
                "{}% of transactions fail with retries exhausted",
                self.retry_fault_percent
            ));
        }
        if self.reject_fault_percent > 0 {
            parts.push(format!(
                "{}% of steps have their typed writes rejected",
                self.reject_fault_percent
            ));
        }
        if self.skew_percent == 0 {
            parts.push("no skew".to_string());
        } else {
            parts.push(format!(
                "{}% of steps skewed by up to {}",
                self.skew_percent, self.skew_max
            ));
        }
        if !off.is_empty() {
            parts.push(format!("off: {}", off.join(", ")));
        }
        if !changed.is_empty() {
            parts.push(changed.join(", "));
        }
        parts.join("; ")
    }
}

/// One operation, drawn with the configuration's weights.
pub fn op_in(swarm: &Swarm) -> impl Strategy<Value = Op> + use<> {
    let arms: Vec<(u32, BoxedStrategy<Op>)> = OpClass::DEFAULTS
        .iter()
        .filter_map(|(class, _)| {
            let w = swarm.weights.get(class).copied().unwrap_or(0);
            (w > 0).then(|| (w, class.strategy()))
        })
        .collect();
    proptest::strategy::Union::new_weighted(arms)
}

/// One operation with the default weights.
pub fn op() -> impl Strategy<Value = Op> {
    op_in(&Swarm::default())
}

/// One step with the configuration's operation weights and skew.
pub fn step_in(swarm: &Swarm) -> impl Strategy<Value = Step> + use<> {
    let skew: BoxedStrategy<u8> = if swarm.skew_percent == 0 || swarm.skew_max == 0 {
        Just(0u8).boxed()
    } else {
        let p = u32::from(swarm.skew_percent.min(100));
        proptest::strategy::Union::new_weighted(vec![
            ((100 - p).max(1), Just(0u8).boxed()),
            (p, (1..=swarm.skew_max).boxed()),
        ])
        .boxed()
    };
    let retry = u32::from(swarm.retry_fault_percent.min(50));
    let reject = u32::from(swarm.reject_fault_percent.min(50));
    let mut arms: Vec<(u32, BoxedStrategy<Option<Fault>>)> =
        vec![((100 - retry - reject).max(1), Just(None).boxed())];
    if retry > 0 {
        arms.push((retry, Just(Some(Fault::RetriesExhausted)).boxed()));
    }
    if reject > 0 {
        arms.push((reject, Just(Some(Fault::TypedWriteRejected)).boxed()));
    }
    let fault = proptest::strategy::Union::new_weighted(arms);
    (op_in(swarm), skew, fault).prop_map(|(op, skew, fault)| Step { op, skew, fault })
}

/// One step: an operation with the default weights and a `_creationTime` skew (a quarter
/// of the steps, by up to `skew_max`).
pub fn step(skew_max: u8) -> impl Strategy<Value = Step> {
    step_in(&Swarm {
        skew_max,
        ..Swarm::default()
    })
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
    /// After the first failing case, how many failing cases in all to shrink, within at most
    /// `FAILURE_SEARCH_CASES` more cases; the report keeps the shortest counterexample. The
    /// shrinker finds a local minimum, so a second case often shrinks further.
    pub failing_cases_max: usize,
    /// Whether each case derives its own configuration from its seed (`Swarm::from_seed`);
    /// otherwise every case uses the default weights, with skew up to `sim.skew_max_ms`.
    pub swarm: bool,
    /// One configuration for every case, overriding `swarm` (such as `Swarm::max_faults`).
    pub fixed_swarm: Option<Swarm>,
    /// Steps the exhaustive search around the counterexample may try, looking for a shorter
    /// one with the same steps and documents (0: none).
    pub exhaustive_budget: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            cases: 1_000,
            steps: 200,
            seed: 0,
            sim: SimOptions::default(),
            shrink_iters_max: 20_000,
            failing_cases_max: 5,
            swarm: true,
            fixed_swarm: None,
            exhaustive_budget: 20_000,
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
    /// The case's configuration (derived from its seed).
    pub swarm: Swarm,
    /// If the exhaustive search around the shrunk counterexample found a shorter one: the
    /// length the shrinker had reached.
    pub shortened_from: Option<usize>,
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
    /// Cases that failed (each shrunk; the counterexample is the shortest of them).
    pub failing_cases: usize,
    /// Shadow reads whose typed answer differed from the legacy one served.
    pub shadow_mismatches: usize,
    /// How often the cases reached each probe (every probe is listed, reached or not).
    pub probes: std::collections::BTreeMap<Probe, usize>,
    /// When the first case failed: the cases and the steps run until then, that case
    /// included (how long finding a counterexample took, in deterministic units).
    #[serde(default)]
    pub found_after: Option<FoundAfter>,
    pub counterexample: Option<Counterexample>,
}

/// The cases and the steps a run took until its first failing case (included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundAfter {
    pub cases: usize,
    pub steps: usize,
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

/// After the first failing case, the most cases `check` runs looking for a shorter
/// counterexample.
pub const FAILURE_SEARCH_CASES: usize = 200;

/// The configuration of case `case_seed` under `options`.
pub fn swarm_of(options: &CheckOptions, case_seed: u64) -> Swarm {
    let mut swarm = base_swarm(options, case_seed);
    // The run's own write paths and reads run as often as the app's busiest writes.
    if !options.sim.extensions.writes.is_empty() {
        swarm.weights.insert(OpClass::CustomWrite, 8);
    }
    if !options.sim.extensions.reads.is_empty() {
        swarm.weights.insert(OpClass::CustomRead, 6);
    }
    swarm
}

fn base_swarm(options: &CheckOptions, case_seed: u64) -> Swarm {
    if let Some(fixed) = &options.fixed_swarm {
        fixed.clone()
    } else if options.swarm {
        Swarm::from_seed(case_seed)
    } else {
        Swarm {
            skew_max: options.sim.skew_max_ms,
            ..Swarm::default()
        }
    }
}

/// Derives a case's dataset seed from its case seed.
pub fn data_seed(case_seed: u64) -> u64 {
    case_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xC0FF_EE00
}

impl Report {
    /// A report of no cases: every probe listed at zero, no counterexample.
    pub fn empty() -> Report {
        Report {
            cases: 0,
            steps: 0,
            phase_max: [None; 3],
            cases_all_typed_only: 0,
            switches: 0,
            rollbacks: 0,
            batches: 0,
            reads: 0,
            failing_cases: 0,
            shadow_mismatches: 0,
            probes: Probe::ALL.iter().map(|p| (*p, 0)).collect(),
            found_after: None,
            counterexample: None,
        }
    }

    /// Counts one finished case with the statistics of its generated run.
    pub fn absorb(&mut self, s: &Stats) {
        self.cases += 1;
        self.steps += s.steps;
        self.switches += s.switches;
        self.rollbacks += s.rollbacks;
        self.batches += s.batches;
        self.reads += s.reads;
        self.shadow_mismatches += s.shadow_mismatches;
        for (p, n) in &s.probes {
            *self.probes.entry(*p).or_default() += n;
        }
        if s.phase_max.iter().all(|p| *p == Some(Phase::TypedOnly)) {
            self.cases_all_typed_only += 1;
        }
        for (m, p) in self.phase_max.iter_mut().zip(s.phase_max) {
            if p > *m {
                *m = p;
            }
        }
    }

    /// Adds the counts of `other` (cases, steps, probes, failing cases, furthest phases);
    /// the counterexample is left alone. Sums commute, so the order of merging never shows.
    pub fn add_counts(&mut self, other: &Report) {
        self.cases += other.cases;
        self.steps += other.steps;
        self.switches += other.switches;
        self.rollbacks += other.rollbacks;
        self.batches += other.batches;
        self.reads += other.reads;
        self.failing_cases += other.failing_cases;
        self.shadow_mismatches += other.shadow_mismatches;
        self.cases_all_typed_only += other.cases_all_typed_only;
        for (p, n) in &other.probes {
            *self.probes.entry(*p).or_default() += n;
        }
        for (m, p) in self.phase_max.iter_mut().zip(other.phase_max) {
            if p > *m {
                *m = p;
            }
        }
    }
}

/// One case of a run: the statistics of its generated step sequence and, if it failed, the
/// failing steps (shrunk when asked).
pub struct CaseRun {
    pub stats: Stats,
    pub failing_steps: Option<Vec<Step>>,
}

/// Runs case `case_seed` under `options`: its configuration, dataset and steps all derive
/// from the seed, so the generated sequence is the same whether it is shrunk or not.
pub fn run_seed(plan: &Arc<Plan>, options: &CheckOptions, case_seed: u64, shrink: bool) -> CaseRun {
    let swarm = swarm_of(options, case_seed);
    let strategy = steps(step_in(&swarm), options.steps);
    let ds = data_seed(case_seed);
    let config = Config {
        cases: 1,
        failure_persistence: None,
        max_shrink_iters: if shrink { options.shrink_iters_max } else { 0 },
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes(case_seed)),
    );
    let stats: std::cell::RefCell<Option<Stats>> = std::cell::RefCell::new(None);
    let result = runner.run(&strategy, |steps| {
        let (result, sim) = run_case(plan, &options.sim, ds, &steps, false);
        // The first run is the generated case; later runs are shrink attempts.
        stats.borrow_mut().get_or_insert_with(|| sim.stats.clone());
        result.map_err(|f| TestCaseError::fail(f.to_string()))
    });
    CaseRun {
        stats: stats.into_inner().unwrap_or_default(),
        failing_steps: match result {
            Err(TestError::Fail(_, steps)) => Some(steps),
            _ => None,
        },
    }
}

/// Runs `options.cases` cases. After the first failing case it shrinks up to
/// `failing_cases_max` failing cases (within `FAILURE_SEARCH_CASES` more cases) and reports
/// the shortest counterexample (the earliest among equals).
pub fn check(plan: &Plan, options: &CheckOptions) -> Report {
    let plan = Arc::new(plan.clone());
    let mut report = Report::empty();
    let mut first_failure: Option<usize> = None;
    for i in 0..options.cases {
        if first_failure.is_some_and(|f| {
            report.failing_cases >= options.failing_cases_max.max(1) || i > f + FAILURE_SEARCH_CASES
        }) {
            break;
        }
        let case_seed = options.seed.wrapping_add(i as u64);
        let run = run_seed(&plan, options, case_seed, true);
        report.absorb(&run.stats);
        if let Some(steps) = run.failing_steps {
            let ds = data_seed(case_seed);
            let (result, sim) = run_case(&plan, &options.sim, ds, &steps, true);
            let failure = result.expect_err("a shrunk counterexample fails when replayed");
            report.failing_cases += 1;
            first_failure.get_or_insert(i);
            report.found_after.get_or_insert(FoundAfter {
                cases: report.cases,
                steps: report.steps,
            });
            let shorter = report
                .counterexample
                .as_ref()
                .is_none_or(|c| steps.len() < c.steps.len());
            if shorter {
                report.counterexample = Some(Counterexample {
                    seed: case_seed,
                    data_seed: ds,
                    steps,
                    failure,
                    trace: sim.trace,
                    swarm: swarm_of(options, case_seed),
                    shortened_from: None,
                });
            }
        }
    }
    if let Some(c) = &mut report.counterexample {
        shorten(&plan, options, c);
    }
    report
}

/// Searches exhaustively around a shrunk counterexample (its dataset, its distinct steps,
/// every interleaving shorter than it, within `exhaustive_budget` steps) and keeps the
/// shortest counterexample found there.
fn shorten(plan: &Plan, options: &CheckOptions, c: &mut Counterexample) {
    let len = c.steps.iter().filter(|s| s.op != Op::Noop).count();
    if options.exhaustive_budget == 0 || len <= 1 {
        return;
    }
    let scenario = crate::exhaustive::Scenario::around(&options.sim, c.data_seed, &c.steps);
    let found = crate::exhaustive::explore(plan, &scenario, len - 1, options.exhaustive_budget);
    if let Some(shorter) = found.counterexample {
        c.shortened_from = Some(len);
        c.steps = shorter.steps;
        c.failure = shorter.failure;
        c.trace = shorter.trace;
    }
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

    #[test]
    fn a_case_configuration_is_a_pure_function_of_its_seed_and_seeds_differ() {
        assert_eq!(Swarm::from_seed(7), Swarm::from_seed(7));
        let configs: Vec<Swarm> = (0..64).map(Swarm::from_seed).collect();
        let distinct: std::collections::BTreeSet<String> =
            configs.iter().map(Swarm::describe).collect();
        assert!(
            distinct.len() > 32,
            "{} distinct configurations",
            distinct.len()
        );
        // Some cases turn operations off, some faults run hot, some cases have no skew.
        assert!(configs.iter().any(|c| c.weights.values().any(|w| *w == 0)));
        assert!(
            configs
                .iter()
                .any(|c| c.weights[&OpClass::ActionCrash] >= 6)
        );
        assert!(configs.iter().any(|c| c.skew_percent == 0));
        // The core operations never go.
        for c in &configs {
            for class in [
                OpClass::Read,
                OpClass::ActionStep,
                OpClass::Backfill,
                OpClass::Advance,
            ] {
                assert!(c.weights[&class] > 0);
            }
        }
    }

    #[test]
    fn an_operation_off_in_a_configuration_is_never_generated() {
        let mut swarm = Swarm::default();
        swarm.weights.insert(OpClass::Delete, 0);
        swarm.weights.insert(OpClass::ActionCrash, 0);
        let mut runner = TestRunner::deterministic();
        let strategy = steps(step_in(&swarm), 2_000);
        let generated = strategy.new_tree(&mut runner).expect("generates").current();
        assert!(
            !generated
                .iter()
                .any(|s| matches!(s.op, Op::Delete { .. } | Op::ActionCrash { .. }))
        );
        assert!(
            generated
                .iter()
                .any(|s| matches!(s.op, Op::Checkout { .. }))
        );
    }

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
