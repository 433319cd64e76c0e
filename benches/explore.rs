//! Distinct states per second of bounded exhaustive exploration of the seed plan's small
//! scenario: to depth 5 (1,568 distinct states, 6,148 steps tried) on one core, and to depth 7
//! (21,121 distinct states, 82,370 steps tried) on one core and on two (`--jobs 2`).
//!
//! `explore_floor` measures what a distinct state costs at the least with this simulator,
//! whatever the search: each of the 21,120 states of depths 1 to 7 made once, by its last step
//! on a copy of its parent (kept in memory, built before the measurement), checked and
//! hashed, with no step that leads to a state already reached, no read, no replay of a path
//! and no merge. No search over these steps can make distinct states faster than that.
//!
//! Run with `cargo bench --bench explore`.

/// jemalloc, as in the binary.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cutover::exhaustive::{Scenario, distinct_paths, explore_jobs};
use cutover::plan::Plan;
use cutover::sim::{Sim, Step};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn states_per_second(c: &mut Criterion) {
    let plan = Plan::seed();
    let scenario = Scenario::small();
    let mut group = c.benchmark_group("explore");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for (depth, jobs) in [(5, 1), (7, 1), (7, 2)] {
        let states = explore_jobs(&plan, &scenario, depth, usize::MAX, jobs).states;
        group.throughput(Throughput::Elements(states as u64));
        group.bench_with_input(
            BenchmarkId::new(
                format!("seed_small_scenario_depth_{depth}"),
                format!("jobs_{jobs}"),
            ),
            &(depth, jobs),
            |b, &(depth, jobs)| {
                b.iter(|| black_box(explore_jobs(&plan, &scenario, depth, usize::MAX, jobs)))
            },
        );
    }
    group.finish();
}

fn one_step_per_state(c: &mut Criterion) {
    let plan = Plan::seed();
    let scenario = Scenario::small();
    let depth = 7;
    let paths = distinct_paths(&plan, &scenario, depth);
    let mut root = Sim::from_dataset(
        Arc::new(scenario.plan_for(&plan)),
        &scenario.options,
        &cutover::data::generate(scenario.data_seed, &scenario.options.data),
    );
    root.track_state();
    root.share_versions();
    // Each path extends its parent's (the first path to a state extends the first path to
    // the state it was reached from), so every parent is built before its children.
    let mut index: HashMap<&[Step], usize> = HashMap::new();
    let mut parents: Vec<Sim> = Vec::new();
    let mut children: Vec<(usize, &Step)> = Vec::new();
    for path in &paths {
        let sim = match path.split_last() {
            None => root.clone(),
            Some((last, before)) => {
                let parent = index[before];
                children.push((parent, last));
                if path.len() == depth {
                    continue;
                }
                let mut sim = parents[parent].clone();
                sim.step(last).expect("a reached state passed its checks");
                sim
            }
        };
        index.insert(path, parents.len());
        parents.push(sim);
    }
    let mut group = c.benchmark_group("explore_floor");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(children.len() as u64));
    group.bench_function(
        format!("seed_small_scenario_depth_{depth}_one_step_per_state"),
        |b| {
            b.iter(|| {
                for &(parent, step) in &children {
                    let mut sim = parents[parent].clone();
                    sim.step(step).expect("a reached state passed its checks");
                    black_box(sim.state_hash());
                }
            })
        },
    );
    group.finish();
}

criterion_group!(benches, states_per_second, one_step_per_state);
criterion_main!(benches);
