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
//! The frontier is cut into chunks of `CHUNK` states whatever the number of jobs. A worker
//! expands a chunk into what each step led to, without the visited set; with several jobs,
//! each worker thread takes the next chunk not taken yet. The driver merges the chunks on
//! one thread in frontier order, then alphabet order, and decides there which states are
//! new. The next frontier, the counterexample and the counts are therefore the same for any
//! number of jobs.

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

/// Frontier states handed to a worker at a time. The result does not depend on it (nor on the
/// number of jobs): the driver merges what the workers found in frontier order.
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
#[derive(Clone, Copy, Debug)]
enum Child {
    /// An invariant broke.
    Failed,
    /// A state with this hash, maybe reached before: the driver decides.
    Reached(u64),
    /// The state the step was taken from (an idle step or a read).
    Back,
}

/// One step tried: the frontier index of the state it was taken from, the index of the step
/// in the scenario's alphabet, and what it led to. The driver builds a path only for a child
/// it keeps.
type Tried = (usize, usize, Child);

/// One expanding thread's own simulations: an initial state built for it alone (so that
/// no two threads count references to the same tables or versions), and the states along
/// the path of the last node it expanded, `states[i]` being the state after `path[..i]`.
struct Worker {
    path: Vec<Step>,
    states: Vec<Sim>,
}

impl Worker {
    fn new(root: Sim) -> Worker {
        Worker {
            path: Vec::new(),
            states: vec![root],
        }
    }
}

/// The search's initial state: the scenario's dataset loaded, tracking its state hash and
/// sharing its versions in a table of its own.
fn initial(plan: &Arc<Plan>, options: &SimOptions, dataset: &data::Dataset) -> Sim {
    let mut root = Sim::from_dataset(plan.clone(), options, dataset);
    root.track_state();
    root.share_versions();
    root
}

/// `explore` on `jobs` worker threads, with the same result for any `jobs`.
pub fn explore_jobs(
    plan: &Plan,
    scenario: &Scenario,
    depth: usize,
    budget: usize,
    jobs: usize,
) -> Exploration {
    search(plan, scenario, depth, budget, jobs, None)
}

/// The path by which `explore` first reaches each distinct state within `depth` steps, in
/// the order it reaches them: the initial state's empty path first, then depth by depth
/// (`states` paths in all, unless a counterexample ends the search, whose path is not among
/// them). Each is a shortest path to its state. Measuring what a state costs at the least
/// (`benches/explore.rs`: one step from its parent, on a copy) starts from these.
pub fn distinct_paths(plan: &Plan, scenario: &Scenario, depth: usize) -> Vec<Vec<Step>> {
    let mut paths = vec![Vec::new()];
    search(plan, scenario, depth, usize::MAX, 1, Some(&mut paths));
    paths
}

/// `explore_jobs`, pushing the path of each new state it reaches to `paths` if given.
fn search(
    plan: &Plan,
    scenario: &Scenario,
    depth: usize,
    budget: usize,
    jobs: usize,
    mut paths: Option<&mut Vec<Vec<Step>>>,
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
    let jobs = jobs.max(1);
    // Each worker starts from its own copy of the initial state, its plan included: forks
    // count references to what they share, and counts shared between threads would bounce
    // between their cores on every fork.
    let mut workers: Vec<Worker> = (0..jobs)
        .map(|_| Worker::new(initial(&Arc::new((*plan).clone()), options, dataset)))
        .collect();
    let root_hash = workers[0].states[0].state_hash();
    let mut visited: FxHashSet<u64> = FxHashSet::default();
    visited.insert(root_hash);
    let mut result = Exploration {
        depth: 0,
        states: 1,
        transitions: 0,
        cut_short: false,
        counterexample: None,
    };
    let mut frontier = vec![Node {
        path: Vec::new(),
        hash: root_hash,
    }];
    let mut found: Option<Vec<Step>> = None;
    for level in 1..=depth {
        let mut next = Vec::new();
        let mut merge = |tried: Vec<Tried>| -> bool {
            for (node, step, child) in tried {
                if result.transitions >= budget {
                    result.cut_short = true;
                    return false;
                }
                result.transitions += 1;
                let path = || {
                    let mut path = Vec::with_capacity(level);
                    path.extend_from_slice(&frontier[node].path);
                    path.push(scenario.alphabet[step].clone());
                    path
                };
                match child {
                    Child::Failed => {
                        found = Some(path());
                        return false;
                    }
                    Child::Reached(hash) => {
                        if visited.insert(hash) {
                            let path = path();
                            if let Some(paths) = paths.as_deref_mut() {
                                paths.push(path.clone());
                            }
                            next.push(Node { path, hash });
                        }
                    }
                    Child::Back => {}
                }
            }
            true
        };
        if !expand_level(&frontier, &mut workers, scenario, &mut merge) {
            // Cut short by the budget, the last full depth stands; a counterexample's depth
            // is its length.
            if found.is_some() {
                result.depth = level;
                result.states = visited.len();
            }
            break;
        }
        result.depth = level;
        result.states = visited.len();
        frontier = next;
        if frontier.is_empty() {
            break;
        }
    }
    if let Some(steps) = found {
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

/// Expands every state of `frontier` with `workers`, handing `merge` what each chunk of
/// `CHUNK` states found, in frontier order, until it returns `false` (a counterexample, or
/// the budget spent). With one worker the chunks are expanded in turn on this thread; with
/// more, each worker thread takes the next chunk not taken yet, and what finishes out of
/// order waits until the chunks before it are merged. Returns whether every chunk was
/// merged.
fn expand_level(
    frontier: &[Node],
    workers: &mut [Worker],
    scenario: &Scenario,
    merge: &mut dyn FnMut(Vec<Tried>) -> bool,
) -> bool {
    let chunks = frontier.len().div_ceil(CHUNK);
    let chunk = |c: usize| {
        (
            c * CHUNK,
            &frontier[c * CHUNK..((c + 1) * CHUNK).min(frontier.len())],
        )
    };
    if workers.len() == 1 || chunks == 1 {
        let worker = &mut workers[0];
        return (0..chunks).all(|c| {
            let (start, nodes) = chunk(c);
            merge(worker.expand(start, nodes, scenario))
        });
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let taken = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (send, receive) = std::sync::mpsc::channel::<(usize, Vec<Tried>)>();
        for worker in workers.iter_mut() {
            let send = send.clone();
            let (taken, stop, chunk) = (&taken, &stop, &chunk);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let c = taken.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        break;
                    }
                    let (start, nodes) = chunk(c);
                    if send
                        .send((c, worker.expand(start, nodes, scenario)))
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        drop(send);
        let mut waiting: std::collections::BTreeMap<usize, Vec<Tried>> = Default::default();
        let mut merged = 0;
        for (c, tried) in receive.iter() {
            waiting.insert(c, tried);
            while let Some(tried) = waiting.remove(&merged) {
                merged += 1;
                if !merge(tried) {
                    // The workers stop at their next chunk; what they send is dropped.
                    stop.store(true, Ordering::Relaxed);
                    return false;
                }
            }
        }
        // A worker that panicked sent nothing more: the scope re-raises its panic.
        merged == chunks
    })
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

impl Worker {
    /// Every step of the scenario's alphabet (but those starting an action beyond
    /// `actions_max`) from every state of `nodes` (frontier indices from `start`), in node
    /// order then alphabet order.
    fn expand(&mut self, start: usize, nodes: &[Node], scenario: &Scenario) -> Vec<Tried> {
        let mut out = Vec::with_capacity(nodes.len() * scenario.alphabet.len());
        let Worker { path, states } = self;
        for (n, node) in nodes.iter().enumerate() {
            let n = start + n;
            // Nodes that share a prefix sit next to each other in the frontier (siblings,
            // then cousins): the states along the last node's path are kept, so a node costs
            // one step per step where its path leaves the last one's instead of a replay of
            // its whole path.
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
            // Every node of a level has a path of the level's length, so the next node
            // leaves this one's path at its last step at the latest: the node's own state
            // is not kept.
            let state = if node.path.is_empty() {
                states[0].clone()
            } else {
                path.pop();
                states.pop().expect("pushed or kept above")
            };
            let busy = state.actions_in_flight() >= scenario.actions_max;
            let steps: Vec<(usize, &Step)> = scenario
                .alphabet
                .iter()
                .enumerate()
                .filter(|(_, s)| !(busy && starts_action(&s.op)))
                .collect();
            let mut state = Some(state);
            for (i, &(a, step)) in steps.iter().enumerate() {
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
                    out.push((n, a, Child::Back));
                    continue;
                }
                if i + 1 < steps.len()
                    && let Some(here) = state.as_mut()
                    && let Some(outcome) = here.read_in_place(step)
                {
                    out.push((
                        n,
                        a,
                        match outcome {
                            Err(_) => Child::Failed,
                            Ok(()) => {
                                // A read leads back to the state it was taken from.
                                assert_eq!(
                                    here.state_hash(),
                                    node.hash,
                                    "a read changed the state: {step:?}"
                                );
                                Child::Back
                            }
                        },
                    ));
                    continue;
                }
                // The last step tried takes the state itself instead of a copy.
                let mut sim = if i + 1 == steps.len() {
                    state.take().expect("taken by the last step only")
                } else {
                    state.as_ref().expect("taken by the last step only").clone()
                };
                let child = match sim.step(step) {
                    Err(_) => Child::Failed,
                    Ok(()) => Child::Reached(sim.state_hash()),
                };
                out.push((n, a, child));
            }
        }
        out
    }
}
