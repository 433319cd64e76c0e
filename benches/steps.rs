//! Simulated steps per second, every invariant checked after every step, at 1,000 and at
//! 100,000 legacy documents.
//!
//! Each size builds one simulation outside the measurement and pre-generates a run of steps
//! from a deterministic proptest runner. Every measured iteration applies the next `CHUNK`
//! steps to the same, evolving simulation. When a run's steps are used up, the simulation is
//! rebuilt from the same dataset and the next steps are generated, both outside the timed
//! region. Runs are 2,000 steps at 1,000 documents, so that the workload's own inserts do
//! not grow the data far beyond its nominal size, and `STEPS_MAX` at 100,000 documents,
//! where 2,000 steps change the data by well under 1% and a rebuild takes seconds.
//! Criterion reports elements/s, which is simulated steps per second.
//!
//! Run with `cargo bench --bench steps`.

/// jemalloc, as in the binary (see its `GLOBAL` for why).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cutover::data::{self, Dataset, GenOptions};
use cutover::explore;
use cutover::plan::Plan;
use cutover::sim::{STEPS_MAX, Sim, SimOptions, Step};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Steps per measured iteration.
const CHUNK: u64 = 1_000;
/// The dataset seed of every simulation here.
const DATA_SEED: u64 = 1;

/// One simulation that lives across measured iterations, with the steps it runs next.
struct Driver {
    plan: Arc<Plan>,
    options: SimOptions,
    data: Dataset,
    sim: Sim,
    runner: TestRunner,
    steps: Vec<Step>,
    /// The next step of `steps` to apply.
    pos: usize,
    /// Steps per simulation before it is rebuilt.
    run_steps: usize,
    /// Simulations built so far (the first one included).
    sims: usize,
}

impl Driver {
    fn new(documents: usize, run_steps: usize) -> Driver {
        let plan = Arc::new(Plan::seed());
        let options = SimOptions {
            data: GenOptions {
                documents,
                ..GenOptions::default()
            },
            ..SimOptions::default()
        };
        let started = Instant::now();
        let data = data::generate(DATA_SEED, &options.data);
        let sim = Sim::from_dataset(plan.clone(), &options, &data);
        eprintln!(
            "steps: {} legacy documents generated and loaded in {:.2?}",
            data.objects.len(),
            started.elapsed()
        );
        let mut driver = Driver {
            plan,
            options,
            data,
            sim,
            runner: TestRunner::deterministic(),
            steps: Vec::new(),
            pos: 0,
            run_steps,
            sims: 1,
        };
        driver.generate();
        driver
    }

    /// Generates the next run's steps, continuing the deterministic runner.
    fn generate(&mut self) {
        // The default configuration, not a per-seed one: every run measures the same mix.
        let strategy = explore::step_in(&explore::Swarm::default());
        self.steps = (0..self.run_steps)
            .map(|_| {
                strategy
                    .new_tree(&mut self.runner)
                    .expect("a step strategy never rejects")
                    .current()
            })
            .collect();
        self.pos = 0;
    }

    /// Starts a fresh run over the same dataset with fresh steps.
    fn restart(&mut self) {
        self.sim = Sim::from_dataset(self.plan.clone(), &self.options, &self.data);
        self.sims += 1;
        self.generate();
    }

    /// Applies `n` steps and returns the time spent in them, restarts excluded.
    fn run(&mut self, n: u64) -> Duration {
        let mut spent = Duration::ZERO;
        let mut left = n as usize;
        while left > 0 {
            if self.pos == self.steps.len() {
                self.restart();
            }
            let end = self.steps.len().min(self.pos + left);
            let started = Instant::now();
            for step in &self.steps[self.pos..end] {
                if let Err(failure) = self.sim.step(step) {
                    panic!("the seed plan failed an invariant:\n{failure}");
                }
            }
            spent += started.elapsed();
            left -= end - self.pos;
            self.pos = end;
        }
        black_box(self.sim.digest());
        spent
    }
}

fn bench_size(
    c: &mut Criterion,
    name: &str,
    documents: usize,
    run_steps: usize,
    measurement: Duration,
) {
    // Built on first use, so that a filter that skips this size also skips its setup.
    let mut driver: Option<Driver> = None;
    let mut group = c.benchmark_group(format!("steps/{name}"));
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measurement)
        .throughput(Throughput::Elements(CHUNK));
    group.bench_function(BenchmarkId::from_parameter(format!("{CHUNK}_steps")), |b| {
        let driver = driver.get_or_insert_with(|| Driver::new(documents, run_steps));
        b.iter_custom(|iters| (0..iters).map(|_| driver.run(CHUNK)).sum())
    });
    group.finish();
    if let Some(driver) = driver {
        eprintln!(
            "steps/{name}: {} simulations built, {} steps applied in all",
            driver.sims,
            (driver.sims - 1) * driver.run_steps + driver.pos
        );
    }
}

fn steps_1k_docs(c: &mut Criterion) {
    bench_size(c, "1k_docs", 1_000, 2_000, Duration::from_secs(10));
}

fn steps_100k_docs(c: &mut Criterion) {
    bench_size(c, "100k_docs", 100_000, STEPS_MAX, Duration::from_secs(20));
}

criterion_group!(benches, steps_1k_docs, steps_100k_docs);
criterion_main!(benches);
