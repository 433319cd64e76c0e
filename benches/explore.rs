//! Distinct states per second of bounded exhaustive exploration of the seed plan's small
//! scenario: to depth 5 (1,568 distinct states, 6,148 steps tried) on one core, and to depth 7
//! (21,121 distinct states, 82,370 steps tried) on one core and on two (`--jobs 2`).
//!
//! Run with `cargo bench --bench explore`.

/// jemalloc, as in the binary.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cutover::exhaustive::{Scenario, explore_jobs};
use cutover::plan::Plan;
use std::hint::black_box;
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

criterion_group!(benches, states_per_second);
criterion_main!(benches);
