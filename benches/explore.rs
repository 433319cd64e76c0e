//! Distinct states per second of bounded exhaustive exploration: the seed plan's small
//! scenario to depth 6 (812 distinct states, 4,344 steps tried), on one core.
//!
//! Run with `cargo bench --bench explore`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use cutover::exhaustive::{Scenario, explore};
use cutover::plan::Plan;
use std::hint::black_box;
use std::time::Duration;

fn states_per_second(c: &mut Criterion) {
    let plan = Plan::seed();
    let scenario = Scenario::small();
    let states = explore(&plan, &scenario, 6, usize::MAX).states;
    let mut group = c.benchmark_group("explore");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(states as u64));
    group.bench_function("seed_small_scenario_depth_6", |b| {
        b.iter(|| black_box(explore(&plan, &scenario, 6, usize::MAX)))
    });
    group.finish();
}

criterion_group!(benches, states_per_second);
criterion_main!(benches);
