//! Bounded exhaustive exploration: every interleaving of a small scenario's operations up to
//! a depth, with equal states deduplicated, so that the first counterexample found is a
//! shortest one.
//!
//! The search is breadth-first, one depth at a time: every state of the frontier (the
//! distinct states first reached at the previous depth) takes every step of the scenario's
//! alphabet, on a clone of its simulation; a state already reached (`Sim::state_hash`) is
//! dropped, so each distinct state is expanded once. A read writes nothing and leads back to
//! the state it was taken from, so it is taken on the state itself, with no clone
//! (`Sim::read_in_place`, checked against the state's hash). The first failure found at a
//! depth is as short as a failure can be in the scenario.
//!
//! With several jobs, the frontier is cut into chunks of `CHUNK` states whatever the number
//! of jobs; the states of a chunk are expanded on worker threads, and the results are merged
//! on one thread in frontier order, then alphabet order. Which states are new, the next
//! frontier, the counterexample and the counts are therefore the same for any number of
//! jobs.

use crate::data::{self, GenOptions};
use crate::plan::Plan;
use crate::schema::Kind;
use crate::sim::{Failure, Op, Read, Sim, SimOptions, Step, TraceLine};
use rustc_hash::FxHashSet;
use std::sync::Arc;

/// A small scenario: a dataset and the steps the search may take at each point.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub options: SimOptions,
    pub data_seed: u64,
    pub alphabet: Vec<Step>,
    /// A step that starts an action is not taken while this many actions are in flight.
    pub actions_max: usize,
    /// The backfill batch size of every kind in this scenario, instead of the plan's (small
    /// batches let other work interleave between them).
    pub batch_size: Option<usize>,
    /// Takes every step that `Sim::idle` lets the search skip on a copy of the state anyway,
    /// and panics unless it passed and left the state's hash alone: the tests' check of
    /// `Sim::idle`. Off in real runs, where it would cost the copies the skip saves.
    pub check_idle: bool,
}

impl Scenario {
    /// The built-in small scenario: a dozen legacy documents (one of them dirty), backfill
    /// batches of two documents, and fifteen operations on events and transactions: the
    /// phase switches and backfill batches that move them, an edit, an update and a delete, a
    /// rollback, reads by id and by organization, and one checkout action at a time (its
    /// start, its next step, a crash).
    pub fn small() -> Scenario {
        let (e, t) = (Kind::Events, Kind::Transactions);
        let alphabet = vec![
            Op::Checkout {
                lane: 0,
                event: 0,
                product: 0,
                quantity: 1,
                v1: false,
                seed: 0,
            },
            Op::ActionStep { lane: 0 },
            Op::ActionCrash { lane: 0 },
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
            actions_max: 1,
            batch_size: Some(2),
            check_idle: false,
        }
    }

    /// The plan as this scenario runs it: with its batch size, if it sets one.
    pub fn plan_for(&self, plan: &Plan) -> Plan {
        let mut plan = plan.clone();
        if let Some(n) = self.batch_size {
            plan.batch_size = n;
            for k in &mut plan.kinds {
                k.batch_size = None;
            }
        }
        plan
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
            actions_max: usize::MAX,
            batch_size: None,
            check_idle: false,
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
    /// The deepest depth searched in full (or the depth of the counterexample).
    pub depth: usize,
    /// Distinct states reached within `depth` steps, the initial one included.
    pub states: usize,
    /// Steps tried in all.
    pub transitions: usize,
    /// Whether the search stopped at its budget before finishing the last depth.
    pub cut_short: bool,
    pub counterexample: Option<Shortest>,
}

/// States expanded together between two merges. Fixed, so that the result does not depend
/// on the number of jobs.
const CHUNK: usize = 128;

/// Explores every interleaving of `scenario`'s steps up to `depth` steps, trying at most
/// `budget` steps in all (`usize::MAX`: no limit), on one thread.
pub fn explore(plan: &Plan, scenario: &Scenario, depth: usize, budget: usize) -> Exploration {
    explore_jobs(plan, scenario, depth, budget, 1)
}

/// A state of the frontier, as the steps that reach it from the initial state. Holding
/// paths rather than simulations keeps a frontier of a million states in tens of megabytes;
/// a state is rebuilt by replaying its path when it is expanded.
struct Node {
    path: Vec<Step>,
    /// The state's hash (`Sim::state_hash`).
    hash: u64,
}

/// What one step from a frontier state led to.
enum Child {
    /// An invariant broke: the steps from the initial state.
    Failed(Vec<Step>),
    /// A state not reached before the chunk started.
    New(u64, Node),
    /// A state reached before.
    Seen,
}

/// `explore` on `jobs` worker threads, with the same result for any `jobs`.
pub fn explore_jobs(
    plan: &Plan,
    scenario: &Scenario,
    depth: usize,
    budget: usize,
    jobs: usize,
) -> Exploration {
    let plan = Arc::new(scenario.plan_for(plan));
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
    let mut root = Sim::from_dataset(plan.clone(), options, dataset);
    root.track_state();
    root.share_versions();
    let jobs = jobs.max(1);
    let mut visited: FxHashSet<u64> = FxHashSet::default();
    visited.insert(root.state_hash());
    let mut result = Exploration {
        depth: 0,
        states: 1,
        transitions: 0,
        cut_short: false,
        counterexample: None,
    };
    let mut frontier = vec![Node {
        path: Vec::new(),
        hash: root.state_hash(),
    }];
    let mut found: Option<Vec<Step>> = None;
    'depths: for level in 1..=depth {
        let mut next = Vec::new();
        let mut nodes = frontier.into_iter();
        loop {
            let chunk: Vec<Node> = nodes.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            for child in expand(chunk, &root, scenario, &visited, jobs) {
                if result.transitions >= budget {
                    result.cut_short = true;
                    break 'depths;
                }
                result.transitions += 1;
                match child {
                    Child::Failed(path) => {
                        found = Some(path);
                        result.depth = level;
                        break 'depths;
                    }
                    Child::New(h, node) => {
                        if visited.insert(h) {
                            next.push(node);
                        }
                    }
                    Child::Seen => {}
                }
            }
        }
        result.depth = level;
        result.states = visited.len();
        frontier = next;
        if frontier.is_empty() {
            break;
        }
    }
    if let Some(steps) = found {
        result.states = visited.len();
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
    }
    result
}

/// Whether a step starts an action.
fn starts_action(op: &Op) -> bool {
    matches!(
        op,
        Op::Checkout { .. }
            | Op::PaymentWebhook { .. }
            | Op::WebhookRedeliver { .. }
            | Op::Refund { .. }
    )
}

/// Every step of the scenario's alphabet (but those starting an action beyond
/// `actions_max`) from every state of `chunk`, in chunk order then alphabet order.
/// The chunk is split into one contiguous part per worker.
fn expand(
    chunk: Vec<Node>,
    root: &Sim,
    scenario: &Scenario,
    visited: &FxHashSet<u64>,
    jobs: usize,
) -> Vec<Child> {
    if jobs == 1 || chunk.len() == 1 {
        return expand_part(chunk, root, scenario, visited);
    }
    let per = chunk.len().div_ceil(jobs);
    let mut parts: Vec<Vec<Node>> = Vec::new();
    let mut nodes = chunk.into_iter();
    loop {
        let part: Vec<Node> = nodes.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        parts.push(part);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| {
                // A simulation is not `Sync` (its context has cells): each worker replays
                // from its own copy of the initial state.
                let root = root.clone();
                scope.spawn(move || expand_part(part, &root, scenario, visited))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an exploration worker panicked"))
            .collect()
    })
}

fn expand_part(
    part: Vec<Node>,
    root: &Sim,
    scenario: &Scenario,
    visited: &FxHashSet<u64>,
) -> Vec<Child> {
    let mut out = Vec::with_capacity(part.len() * scenario.alphabet.len());
    // Nodes that share a prefix sit next to each other in the frontier (siblings, then
    // cousins): the states along the last node's path are kept, so a node costs one step
    // per step where its path leaves the last one's instead of a replay of its whole path.
    // `states[i]` is the state after `path[..i]`.
    let mut path: Vec<Step> = Vec::new();
    let mut states: Vec<Sim> = vec![root.clone()];
    for node in part {
        let common = path
            .iter()
            .zip(&node.path)
            .take_while(|(a, b)| a == b)
            .count();
        path.truncate(common);
        states.truncate(common + 1);
        for step in &node.path[common..] {
            let mut next = states.last().expect("the root is kept").clone();
            next.step(step)
                .expect("a frontier state was reached without a failure");
            states.push(next);
            path.push(step.clone());
        }
        // Every node of a level has a path of the level's length, so the next node leaves
        // this one's path at its last step at the latest: the node's own state is not kept.
        let state = if node.path.is_empty() {
            states[0].clone()
        } else {
            path.pop();
            states.pop().expect("pushed or kept above")
        };
        let busy = state.actions_in_flight() >= scenario.actions_max;
        let steps: Vec<&Step> = scenario
            .alphabet
            .iter()
            .filter(|s| !(busy && starts_action(&s.op)))
            .collect();
        let mut state = Some(state);
        for (i, &step) in steps.iter().enumerate() {
            let path = || [node.path.as_slice(), std::slice::from_ref(step)].concat();
            if let Some(here) = state.as_ref()
                && here.idle(step)
            {
                // It would lead back to this state, passing: nothing to copy or take.
                if scenario.check_idle {
                    let mut copy = here.clone();
                    let outcome = copy.step(step);
                    assert!(
                        outcome.is_ok() && copy.state_hash() == node.hash,
                        "a step Sim::idle skips changed the state or failed: {step:?} ({outcome:?})"
                    );
                }
                out.push(Child::Seen);
                continue;
            }
            if i + 1 < steps.len()
                && let Some(here) = state.as_mut()
                && let Some(outcome) = here.read_in_place(step)
            {
                out.push(match outcome {
                    Err(_) => Child::Failed(path()),
                    Ok(()) => {
                        // A read leads back to the state it was taken from.
                        assert_eq!(
                            here.state_hash(),
                            node.hash,
                            "a read changed the state: {step:?}"
                        );
                        Child::Seen
                    }
                });
                continue;
            }
            // The last step tried takes the state itself instead of a copy.
            let mut sim = if i + 1 == steps.len() {
                state.take().expect("taken by the last step only")
            } else {
                state.as_ref().expect("taken by the last step only").clone()
            };
            let outcome = sim.step(step);
            // The path is copied only for a child that is kept.
            out.push(match outcome {
                Err(_) => Child::Failed(path()),
                Ok(()) => {
                    let h = sim.state_hash();
                    if visited.contains(&h) {
                        Child::Seen
                    } else {
                        Child::New(
                            h,
                            Node {
                                path: path(),
                                hash: h,
                            },
                        )
                    }
                }
            });
        }
    }
    out
}
