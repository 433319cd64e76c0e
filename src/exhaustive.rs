//! Bounded exhaustive exploration: every interleaving of a small scenario's operations up to
//! a depth, with equal states deduplicated, so that the first counterexample found is a
//! shortest one.
//!
//! The search is an iterative-deepening depth-first search: for each depth limit it walks
//! every sequence of the scenario's alphabet, cloning the simulation at each branch, and
//! prunes a state already reached at the same or a smaller depth (`Sim::state_hash`). The
//! first failure found at the smallest limit is as short as a failure can be in the
//! scenario. Memory stays proportional to the depth.

use crate::data::{self, GenOptions};
use crate::plan::Plan;
use crate::schema::Kind;
use crate::sim::{Failure, Op, Read, Sim, SimOptions, Step, TraceLine};
use crate::store::DocHashes;
use rustc_hash::FxHashMap;
use std::sync::Arc;

/// A small scenario: a dataset and the steps the search may take at each point.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub options: SimOptions,
    pub data_seed: u64,
    pub alphabet: Vec<Step>,
}

impl Scenario {
    /// The built-in small scenario: a dozen legacy documents (one of them dirty) and twelve
    /// operations on events and transactions: the phase switches and backfill batches that
    /// move them, an edit, an update and a delete, a rollback, and reads by id.
    pub fn small() -> Scenario {
        let (e, t) = (Kind::Events, Kind::Transactions);
        let alphabet = vec![
            Op::Advance { kind: e },
            Op::Advance { kind: t },
            Op::Backfill { kind: e, runner: 0 },
            Op::Backfill { kind: t, runner: 0 },
            Op::Rollback { kind: e },
            Op::EditEvent { event: 0, seed: 1 },
            Op::GenericUpdate {
                kind: t,
                target: 0,
                seed: 0,
            },
            Op::Delete { kind: e, target: 0 },
            Op::Read {
                read: Read::EventById { event: 0 },
            },
            Op::Read {
                read: Read::TransactionById { txn: 0 },
            },
            Op::Read {
                read: Read::EventsOfOrg { org: 0 },
            },
            Op::RetryQuarantine { kind: t },
        ];
        Scenario {
            options: SimOptions {
                data: GenOptions {
                    documents: 12,
                    dirty_percent: 10,
                },
                ..SimOptions::default()
            },
            data_seed: 3,
            alphabet: alphabet
                .into_iter()
                .map(|op| Step {
                    op,
                    skew: 0,
                    fault: None,
                })
                .collect(),
        }
    }

    /// The neighbourhood of a counterexample: its dataset, and its distinct steps as the
    /// alphabet (`check` searches it for a shorter one).
    pub fn around(options: &SimOptions, data_seed: u64, steps: &[Step]) -> Scenario {
        let mut alphabet: Vec<Step> = Vec::new();
        for s in steps {
            if s.op != Op::Noop && !alphabet.contains(s) {
                alphabet.push(s.clone());
            }
        }
        Scenario {
            options: options.clone(),
            data_seed,
            alphabet,
        }
    }
}

/// A shortest counterexample of a scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Shortest {
    pub steps: Vec<Step>,
    pub failure: Failure,
    pub trace: Vec<TraceLine>,
}

/// What a bounded exploration found.
#[derive(Clone, Debug, PartialEq)]
pub struct Exploration {
    /// The deepest limit searched in full (or the depth of the counterexample).
    pub depth: usize,
    /// Distinct states reached at the last limit searched, the initial one included.
    pub states: usize,
    /// Steps tried at the last limit searched.
    pub transitions: usize,
    /// Whether the search stopped at its budget before finishing the last limit.
    pub cut_short: bool,
    pub counterexample: Option<Shortest>,
}

/// Explores every interleaving of `scenario`'s steps up to `depth` steps, trying at most
/// `budget` steps in all (`usize::MAX`: no limit).
pub fn explore(plan: &Plan, scenario: &Scenario, depth: usize, budget: usize) -> Exploration {
    let plan = Arc::new(plan.clone());
    let options = &scenario.options;
    // A fixed dataset (`check --from-export`) stands in for the generated one.
    let generated;
    let dataset = match &options.dataset {
        Some(fixed) => &*fixed.0,
        None => {
            generated = data::generate(scenario.data_seed, &options.data);
            &generated
        }
    };
    let root = Sim::from_dataset(plan.clone(), options, dataset);
    let mut result = Exploration {
        depth: 0,
        states: 1,
        transitions: 0,
        cut_short: false,
        counterexample: None,
    };
    let mut spent = 0usize;
    for limit in 1..=depth {
        let mut search = Search {
            alphabet: &scenario.alphabet,
            budget: budget.saturating_sub(spent),
            limit,
            // State -> the smallest depth it was reached at, in this iteration.
            seen: FxHashMap::default(),
            docs: DocHashes::default(),
            path: Vec::with_capacity(limit),
            transitions: 0,
            found: None,
        };
        let h = root.state_hash(&mut search.docs);
        search.seen.insert(h, 0);
        search.dfs(&root);
        spent += search.transitions;
        result.transitions = search.transitions;
        if search.transitions >= search.budget && search.found.is_none() {
            result.cut_short = true;
            break;
        }
        result.depth = limit;
        result.states = search.seen.len();
        if let Some(steps) = search.found {
            // Replay with the trace on, for the report and the anomaly's explanation.
            let mut sim = Sim::from_dataset(plan.clone(), options, dataset);
            sim.set_verbose(true);
            let failure = sim
                .run(&steps)
                .expect_err("a counterexample fails when replayed");
            result.counterexample = Some(Shortest {
                steps,
                failure,
                trace: sim.trace,
            });
            break;
        }
    }
    result
}

struct Search<'a> {
    alphabet: &'a [Step],
    budget: usize,
    limit: usize,
    seen: FxHashMap<u64, usize>,
    /// Document hashes, shared by every state of the search.
    docs: DocHashes,
    path: Vec<Step>,
    transitions: usize,
    found: Option<Vec<Step>>,
}

impl Search<'_> {
    fn dfs(&mut self, sim: &Sim) {
        let depth = self.path.len() + 1;
        for step in self.alphabet {
            if self.found.is_some() || self.transitions >= self.budget {
                return;
            }
            let step = step.clone();
            let mut next = sim.clone();
            self.transitions += 1;
            let outcome = next.step(&step);
            self.path.push(step);
            match outcome {
                Err(_) => {
                    self.found = Some(self.path.clone());
                }
                Ok(()) => {
                    let h = next.state_hash(&mut self.docs);
                    let new = self.seen.get(&h).is_none_or(|d| *d > depth);
                    if new {
                        self.seen.insert(h, depth);
                        if depth < self.limit {
                            self.dfs(&next);
                        }
                    }
                }
            }
            self.path.pop();
        }
    }
}
