//! Sweeps: every case seed of a range (or one shard of it) across worker threads, with the
//! same verdict, counterexample and summary whatever the number of workers.
//!
//! Each seed runs as one unshrunk case (`explore::run_seed`). Workers take seeds in any order
//! and finish in any order; what they report is summed (sums commute) and the failing seeds
//! are kept sorted, so nothing about scheduling reaches the result. When the sweep is over,
//! the lowest failing seed alone is shrunk, exactly as `check --seed S --cases 1` would. A
//! shard holds every N-th seed of the range, and shards merge (`merge`) into the result the
//! whole range would have given on one machine.

use crate::explore::{CheckOptions, Counterexample, Report, Swarm, check, run_seed};
use crate::plan::Plan;
use crate::sim::SimOptions;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The version of the sweep JSON (`cutover sweep --json`).
pub const FORMAT: &str = "cutover-sweep/1";

/// How many of the lowest failing seeds a result lists.
pub const FAILING_SEEDS_LISTED: usize = 20;

/// A half-open range of case seeds, `start..end`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRange {
    pub start: u64,
    pub end: u64,
}

impl SeedRange {
    /// Parses `A..B` (B excluded), as on the command line.
    pub fn parse(text: &str) -> Result<SeedRange, String> {
        let (a, b) = text
            .split_once("..")
            .ok_or_else(|| format!("{text:?} is not a seed range A..B (B excluded)"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|e| format!("{s:?} in the seed range {text:?}: {e}"))
        };
        let range = SeedRange {
            start: number(a)?,
            end: number(b)?,
        };
        if range.start >= range.end {
            return Err(format!(
                "the seed range {text:?} is empty (A..B runs A to B-1)"
            ));
        }
        Ok(range)
    }
}

impl std::fmt::Display for SeedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// Shard `index` of `count` (1-based): the seeds `start + index - 1`, then every `count`-th.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// The whole range as one shard.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Parses `I/N` with 1 <= I <= N.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a shard I/N"))?;
        let number = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|e| format!("{s:?} in the shard {text:?}: {e}"))
        };
        let shard = Shard {
            index: number(i)?,
            count: number(n)?,
        };
        if shard.count == 0 || shard.index == 0 || shard.index > shard.count {
            return Err(format!(
                "the shard {text:?} does not exist: I/N needs 1 <= I <= N"
            ));
        }
        Ok(shard)
    }

    /// How many seeds of `range` this shard holds.
    pub fn len(&self, range: SeedRange) -> u64 {
        let first = self.index - 1;
        let width = range.end - range.start;
        if first >= width {
            0
        } else {
            (width - first).div_ceil(self.count)
        }
    }

    /// The `i`-th seed of this shard of `range` (`i < self.len(range)`).
    pub fn seed(&self, range: SeedRange, i: u64) -> u64 {
        range.start + (self.index - 1) + i * self.count
    }
}

/// What a sweep runs: the cases' options, the seed range and shard, and the workers.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Steps per case, data, configuration, shrinking and the exhaustive budget; `cases` and
    /// `seed` are not used (the range says which seeds run).
    pub check: CheckOptions,
    pub seeds: SeedRange,
    pub shard: Shard,
    /// Worker threads (at least 1).
    pub jobs: usize,
}

/// The options of a sweep that decide its result, as stored in its JSON (workers are not
/// among them: they never change the result).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub steps: usize,
    pub sim: SimOptions,
    pub swarm: bool,
    pub fixed_swarm: Option<Swarm>,
    pub shrink_iters_max: u32,
    pub exhaustive_budget: usize,
}

impl Settings {
    fn of(options: &CheckOptions) -> Settings {
        Settings {
            steps: options.steps,
            sim: options.sim.clone(),
            swarm: options.swarm,
            fixed_swarm: options.fixed_swarm.clone(),
            shrink_iters_max: options.shrink_iters_max,
            exhaustive_budget: options.exhaustive_budget,
        }
    }

    /// `check`'s options for these settings (cases and seed at their defaults).
    pub fn check_options(&self) -> CheckOptions {
        CheckOptions {
            steps: self.steps,
            sim: self.sim.clone(),
            swarm: self.swarm,
            fixed_swarm: self.fixed_swarm.clone(),
            shrink_iters_max: self.shrink_iters_max,
            exhaustive_budget: self.exhaustive_budget,
            ..CheckOptions::default()
        }
    }
}

/// The result of a sweep or of merged shards (`cutover sweep --json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepResult {
    /// `FORMAT`.
    pub format: String,
    pub cutover_version: String,
    pub plan: Plan,
    pub settings: Settings,
    pub seeds: SeedRange,
    /// How many shards the range was split into, and which of them this result holds.
    pub shard_count: u64,
    pub shards: Vec<u64>,
    /// Seeds in the shards held.
    pub seeds_total: u64,
    /// Seeds that finished (all of them unless interrupted).
    pub seeds_done: u64,
    pub interrupted: bool,
    /// The lowest failing seeds (at most `FAILING_SEEDS_LISTED`); `report.failing_cases`
    /// counts them all.
    pub failing_seeds: Vec<u64>,
    /// Totals over the finished seeds; the counterexample is the lowest failing seed's,
    /// shrunk (none if the sweep was interrupted).
    pub report: Report,
}

impl SweepResult {
    /// The lowest failing seed, if any.
    pub fn lowest_failing_seed(&self) -> Option<u64> {
        self.failing_seeds.first().copied()
    }
}

/// How far a running sweep is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// `done` of `total` seeds finished, `failing` of them failed.
    Seeds { done: u64, total: u64, failing: u64 },
    /// Every seed ran; the lowest failing one is being shrunk.
    Shrinking { seed: u64 },
}

/// One finished seed, as a worker reports it.
struct Finished {
    seed: u64,
    stats: crate::sim::Stats,
    failed: bool,
}

/// Runs the sweep on a Tokio runtime: `options.jobs` workers on Tokio's blocking pool take
/// seeds from a shared counter; the driver sums what they report, calls `progress` after
/// every seed, and stops handing out seeds once `interrupt` completes (the seeds in flight
/// finish and count). Then the lowest failing seed is shrunk, unless interrupted.
pub fn sweep(
    plan: &Plan,
    options: &SweepOptions,
    progress: impl FnMut(Progress),
    interrupt: impl Future<Output = ()>,
) -> std::io::Result<SweepResult> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(options.jobs.max(1))
        .build()?;
    Ok(runtime.block_on(sweep_async(plan, options, progress, interrupt)))
}

async fn sweep_async(
    plan: &Plan,
    options: &SweepOptions,
    mut progress: impl FnMut(Progress),
    interrupt: impl Future<Output = ()>,
) -> SweepResult {
    let plan_arc = Arc::new(plan.clone());
    let settings = Settings::of(&options.check);
    let check_options = Arc::new(settings.check_options());
    let (range, shard) = (options.seeds, options.shard);
    let total = shard.len(range);
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Finished>();
    for _ in 0..options.jobs.max(1) {
        let (plan, check_options, next, stop, tx) = (
            plan_arc.clone(),
            check_options.clone(),
            next.clone(),
            stop.clone(),
            tx.clone(),
        );
        tokio::task::spawn_blocking(move || {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let seed = shard.seed(range, i);
                let run = run_seed(&plan, &check_options, seed, false);
                let finished = Finished {
                    seed,
                    stats: run.stats,
                    failed: run.failing_steps.is_some(),
                };
                if tx.send(finished).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);

    let mut report = Report::empty();
    let mut failing = std::collections::BTreeSet::new();
    let mut interrupted = false;
    let mut interrupt = std::pin::pin!(interrupt);
    // Poll the interrupt once before reporting the start, so that a signal handler it
    // installs on its first poll is in place by the time anyone learns the sweep started.
    tokio::select! {
        biased;
        () = &mut interrupt => {
            interrupted = true;
            stop.store(true, Ordering::Relaxed);
        }
        () = std::future::ready(()) => {}
    }
    progress(Progress::Seeds {
        done: 0,
        total,
        failing: 0,
    });
    loop {
        tokio::select! {
            finished = rx.recv() => match finished {
                Some(f) => {
                    report.absorb(&f.stats);
                    if f.failed {
                        report.failing_cases += 1;
                        failing.insert(f.seed);
                    }
                    progress(Progress::Seeds {
                        done: report.cases as u64,
                        total,
                        failing: report.failing_cases as u64,
                    });
                }
                None => break,
            },
            () = &mut interrupt, if !interrupted => {
                interrupted = true;
                stop.store(true, Ordering::Relaxed);
            }
        }
    }
    let failing_seeds: Vec<u64> = failing.into_iter().take(FAILING_SEEDS_LISTED).collect();
    if !interrupted && let Some(&seed) = failing_seeds.first() {
        progress(Progress::Shrinking { seed });
        report.counterexample = shrink_seed(plan, &settings, seed);
    }
    SweepResult {
        format: FORMAT.to_string(),
        cutover_version: env!("CARGO_PKG_VERSION").to_string(),
        plan: plan.clone(),
        settings,
        seeds: range,
        shard_count: shard.count,
        shards: vec![shard.index],
        seeds_total: total,
        seeds_done: report.cases as u64,
        interrupted,
        failing_seeds,
        report,
    }
}

/// The counterexample of one failing seed: `check --seed S --cases 1` with these settings.
fn shrink_seed(plan: &Plan, settings: &Settings, seed: u64) -> Option<Counterexample> {
    let options = CheckOptions {
        cases: 1,
        seed,
        failing_cases_max: 1,
        ..settings.check_options()
    };
    check(plan, &options).counterexample
}

/// Why shard results cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no sweep results to merge")]
    Empty,
    #[error("result {index}: format {found:?}, expected {FORMAT:?}")]
    Format { index: usize, found: String },
    #[error("result {index} differs from result 1 in its {what}; only shards of one sweep merge")]
    Mismatch { index: usize, what: &'static str },
    #[error("shard {shard}/{count} appears more than once")]
    Duplicate { shard: u64, count: u64 },
    #[error("shards missing: {missing} (of {count}); merge every shard of the sweep")]
    Missing { missing: String, count: u64 },
}

/// Merges the results of the shards of one sweep (or of merges of them) into the result the
/// whole range gives: counts summed, failing seeds the lowest of all, the counterexample that
/// of the lowest failing seed. Every shard must be there exactly once.
pub fn merge(results: &[SweepResult]) -> Result<SweepResult, MergeError> {
    let first = results.first().ok_or(MergeError::Empty)?;
    let mut merged = SweepResult {
        shards: Vec::new(),
        seeds_total: 0,
        seeds_done: 0,
        interrupted: false,
        failing_seeds: Vec::new(),
        report: Report::empty(),
        ..first.clone()
    };
    let mut held = std::collections::BTreeSet::new();
    let mut failing = std::collections::BTreeSet::new();
    let mut lowest: Option<(u64, Option<Counterexample>)> = None;
    for (i, r) in results.iter().enumerate() {
        let index = i + 1;
        if r.format != FORMAT {
            return Err(MergeError::Format {
                index,
                found: r.format.clone(),
            });
        }
        let mismatch = [
            (
                r.cutover_version != first.cutover_version,
                "cutover version",
            ),
            (r.plan != first.plan, "plan"),
            (r.settings != first.settings, "settings"),
            (r.seeds != first.seeds, "seed range"),
            (r.shard_count != first.shard_count, "shard count"),
        ];
        if let Some((_, what)) = mismatch.iter().find(|(differs, _)| *differs) {
            return Err(MergeError::Mismatch { index, what });
        }
        for &s in &r.shards {
            if !held.insert(s) {
                return Err(MergeError::Duplicate {
                    shard: s,
                    count: r.shard_count,
                });
            }
        }
        merged.seeds_total += r.seeds_total;
        merged.seeds_done += r.seeds_done;
        merged.interrupted |= r.interrupted;
        merged.report.add_counts(&r.report);
        failing.extend(r.failing_seeds.iter().copied());
        if let Some(seed) = r.lowest_failing_seed()
            && lowest.as_ref().is_none_or(|(l, _)| seed < *l)
        {
            lowest = Some((seed, r.report.counterexample.clone()));
        }
    }
    let missing: Vec<String> = (1..=first.shard_count)
        .filter(|s| !held.contains(s))
        .map(|s| s.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Missing {
            missing: missing.join(", "),
            count: first.shard_count,
        });
    }
    merged.shards = held.into_iter().collect();
    merged.failing_seeds = failing.into_iter().take(FAILING_SEEDS_LISTED).collect();
    // Each shard listed its lowest failing seeds, so the lowest of all are among them.
    merged.report.counterexample = lowest.and_then(|(_, c)| c);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_range() {
        let range = SeedRange::parse("10..27").unwrap();
        let mut seen = Vec::new();
        for index in 1..=4 {
            let shard = Shard { index, count: 4 };
            seen.extend((0..shard.len(range)).map(|i| shard.seed(range, i)));
        }
        seen.sort();
        assert_eq!(seen, (10..27).collect::<Vec<_>>());
        let wide = Shard { index: 5, count: 9 };
        assert_eq!(wide.len(SeedRange::parse("0..3").unwrap()), 0);
    }

    #[test]
    fn malformed_ranges_and_shards_are_refused_with_the_reason() {
        assert!(SeedRange::parse("5..5").unwrap_err().contains("empty"));
        assert!(SeedRange::parse("5-9").unwrap_err().contains("A..B"));
        assert!(SeedRange::parse("a..9").unwrap_err().contains("\"a\""));
        assert!(Shard::parse("0/3").unwrap_err().contains("1 <= I <= N"));
        assert!(Shard::parse("4/3").unwrap_err().contains("1 <= I <= N"));
        assert!(Shard::parse("1-3").unwrap_err().contains("I/N"));
        assert_eq!(Shard::parse("2/3").unwrap(), Shard { index: 2, count: 3 });
    }
}
