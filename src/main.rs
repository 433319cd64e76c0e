//! The `cutover` command line: parses flags, calls the library, prints, and maps the outcome
//! to an exit code (0 safe, 1 counterexample found, 2 bad input or operating error).

/// jemalloc: the simulator allocates many small maps and strings, and it drops and rebuilds
/// whole worlds (a case, a sweep seed, a bench run). jemalloc keeps freed pages for reuse
/// for seconds (`dirty_decay_ms`, 10 s by default); mimalloc, used before, handed them back
/// to the system after a second, and on the 2-core dev VM touching a page the system hands
/// out again costs microseconds. At 100,000 documents that was about a quarter of the
/// bench's step time; at 1,000 documents and in exploration the two allocators measure the
/// same. Its one build-time setting (one arena for all threads) is in `.cargo/config.toml`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cutover::explore::{CheckOptions, Report, check};
use cutover::output::{write_atomically, write_stdout};
use cutover::plan::Plan;
use cutover::sim::{Invariant, Op, SimOptions};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cutover",
    version,
    about = "Proves a double-write migration plan off a Convex God table safe, or finds a minimal counterexample."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs randomized step sequences of a plan against the oracle and checks every invariant
    /// after every step.
    #[command(
        after_help = "Example:\n  cutover check --plan plans/seed.toml --cases 1000 --steps 200 --seed 0"
    )]
    Check {
        /// The plan file (TOML). Default: the built-in seed plan (plans/seed.toml).
        #[arg(long, value_name = "FILE")]
        plan: Option<std::path::PathBuf>,
        /// Number of cases (each a fresh dataset and step sequence).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        cases: u64,
        /// Case i runs with seed S+i; `--seed S --cases 1` replays case S exactly.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        case: CaseArgs,
        /// Saves the counterexample, if any, to FILE (JSON) for `cutover replay`.
        #[arg(long, value_name = "FILE")]
        save: Option<std::path::PathBuf>,
        /// Prints one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Every case starts from the legacy documents of this Convex snapshot export
        /// (`npx convex export`) instead of generated ones.
        #[arg(long, value_name = "EXPORT.zip", conflicts_with_all = ["documents", "dirty"])]
        from_export: Option<std::path::PathBuf>,
        /// With --from-export: a deterministic sample of N documents (chosen by --seed).
        #[arg(long, value_name = "N", requires = "from_export", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        sample: Option<u64>,
    },
    /// Dry-runs the plan's mapping on every legacy document of a Convex snapshot export and
    /// reports what would not migrate.
    ///
    /// Counts per type, subtype and shape, every document that does not map (with its _id,
    /// field path and reason), references that do not resolve, and the backfill batches
    /// against Convex's limits. Exit code 0: nothing found; 1: findings; 2: the export is
    /// unusable.
    #[command(
        after_help = "Example:\n  cutover gen-export --documents 2000 --dirty 5 --out export.zip\n  cutover scan export.zip --plan plans/seed.toml --out scan/"
    )]
    Scan {
        /// The snapshot export (ZIP).
        export: std::path::PathBuf,
        /// The plan file (TOML). Default: the built-in seed plan (plans/seed.toml).
        #[arg(long, value_name = "FILE")]
        plan: Option<std::path::PathBuf>,
        /// Writes DIR/scan.md and DIR/scan.json there (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: std::path::PathBuf,
        /// Prints the report as one JSON object instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Writes a Convex snapshot export of generated data (`objects`, `objectLinks`,
    /// `organizations`), with a known share of dirty documents; the same arguments write the
    /// same bytes.
    #[command(
        after_help = "Example:\n  cutover gen-export --documents 100000 --dirty 5 --out export.zip --encoding legacy"
    )]
    GenExport {
        /// Legacy `objects` documents (at least; a purchase is generated whole).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        documents: u64,
        /// Percentage of event, transaction and ticket documents generated dirty.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=100))]
        dirty: u8,
        /// The ZIP file to write.
        #[arg(long, value_name = "FILE.zip")]
        out: std::path::PathBuf,
        /// The value encoding: the current `uniform` one or the older `legacy` one.
        #[arg(long, default_value = "uniform", value_parser = ["uniform", "legacy"])]
        encoding: String,
        /// The seed of the generated data and ids.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Runs every case seed of a range (or one shard of it) on worker threads. The verdict,
    /// counterexample (the lowest failing seed's, shrunk) and summary do not depend on
    /// --jobs, and shards merge with `cutover sweep-merge`.
    #[command(
        after_help = "Examples:\n  cutover sweep --seeds 0..10000\n  cutover sweep --plan plans/unsafe/backfill_stale_copy.toml --seeds 0..2000 --jobs 2\n  cutover sweep --seeds 0..100000 --shard 2/4 --json > shard-2.json\n\nCtrl-C stops handing out seeds, lets the seeds in flight finish, prints the summary of\nwhat finished and exits 130 (a second Ctrl-C quits at once). Progress goes to stderr: a bar\non a terminal, a line per tenth of the seeds otherwise; stdout has only the result."
    )]
    Sweep {
        /// The plan file (TOML). Default: the built-in seed plan (plans/seed.toml).
        #[arg(long, value_name = "FILE")]
        plan: Option<std::path::PathBuf>,
        /// The case seeds to run, A..B (B excluded).
        #[arg(long, value_name = "A..B", value_parser = cutover::sweep::SeedRange::parse)]
        seeds: cutover::sweep::SeedRange,
        /// Worker threads. Default: every core.
        #[arg(long, value_name = "J", value_parser = clap::value_parser!(u64).range(1..=1024))]
        jobs: Option<u64>,
        /// Runs only shard I of N (1-based): seeds A+I-1, A+I-1+N, ...
        #[arg(long, value_name = "I/N", value_parser = cutover::sweep::Shard::parse)]
        shard: Option<cutover::sweep::Shard>,
        #[command(flatten)]
        case: CaseArgs,
        /// Saves the counterexample, if any, to FILE (JSON) for `cutover replay`.
        #[arg(long, value_name = "FILE")]
        save: Option<std::path::PathBuf>,
        /// Prints one JSON object (the input of `cutover sweep-merge`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Merges the --json results of the shards of one sweep into the result of the whole
    /// range; every shard must be given exactly once.
    #[command(
        after_help = "Example:\n  cutover sweep-merge shard-1.json shard-2.json shard-3.json shard-4.json"
    )]
    SweepMerge {
        /// The shards' results (`cutover sweep --shard I/N --json`), or merges of them.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<std::path::PathBuf>,
        /// Saves the counterexample, if any, to FILE (JSON) for `cutover replay`.
        #[arg(long, value_name = "FILE")]
        save: Option<std::path::PathBuf>,
        /// Prints one JSON object (mergeable again) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replays a counterexample saved by `check --save FILE`: the same steps on the same
    /// plan and data, with its trace.
    #[command(
        after_help = "Example:\n  cutover check --plan plans/unsafe/backfill_stale_copy.toml --save ce.json\n  cutover replay ce.json --step 3"
    )]
    Replay {
        /// The saved counterexample (JSON).
        file: std::path::PathBuf,
        /// Stops after step K (0-based) and prints every table of both worlds and the
        /// backfill progress.
        #[arg(long, value_name = "K")]
        step: Option<usize>,
        /// Prints a Rust #[test] that rebuilds the sequence with the library's API and
        /// asserts the failure.
        #[arg(long, conflicts_with = "step")]
        emit_test: bool,
    },
    /// Explores every interleaving of the small scenario (a dozen documents, backfill batches
    /// of two, fifteen operations on events and transactions with one checkout action at a
    /// time) up to a depth, breadth-first, equal states deduplicated, and reports the
    /// shortest counterexample.
    #[command(
        after_help = "Examples:\n  cutover explore --plan plans/unsafe/backfill_stale_copy.toml --depth 6\n  cutover explore --depth 10 --jobs 2"
    )]
    Explore {
        /// The plan file (TOML). Default: the built-in seed plan (plans/seed.toml).
        #[arg(long, value_name = "FILE")]
        plan: Option<std::path::PathBuf>,
        /// The longest interleavings explored, in steps.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=12))]
        depth: u64,
        /// Worker threads. Default: every core. The result is the same for any number.
        #[arg(long, value_name = "J", value_parser = clap::value_parser!(u64).range(1..=1024))]
        jobs: Option<u64>,
        /// Saves the counterexample, if any, to FILE (JSON) for `cutover replay`.
        #[arg(long, value_name = "FILE")]
        save: Option<std::path::PathBuf>,
        /// Prints one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Runs the checks and writes a design-review report, DIR/review.md (Markdown with
    /// Mermaid diagrams) and DIR/review.html (one self-contained page): the plan's phases
    /// per kind, the evidence, what each catalogue deviation from the plan would break, and
    /// every counterexample as a sequence diagram. Exits 0 when the plan is safe, 1 when it
    /// has a counterexample (the report is still written).
    #[command(
        after_help = "Example:\n  cutover review --plan plans/seed.toml --out review/\n  cutover review --plan plans/unsafe/backfill_stale_copy.toml --out review/ --cases 200"
    )]
    Review {
        /// The plan file (TOML). Default: the built-in seed plan (plans/seed.toml).
        #[arg(long, value_name = "FILE")]
        plan: Option<std::path::PathBuf>,
        /// The directory for review.md and review.html: created if missing; nothing else in
        /// it is touched.
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
        /// Cases per check (the plan's, and each catalogue variant's).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        cases: u64,
        /// Steps per case.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        steps: u64,
        /// Case i runs with seed S+i.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The depth of the exhaustive exploration of the small scenario.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=12))]
        depth: u64,
        /// Adds wall-clock seconds to the report (which then differs from run to run).
        #[arg(long)]
        timings: bool,
    },
}

/// The options of each case, shared by `check` and `sweep`.
#[derive(clap::Args)]
struct CaseArgs {
    /// Steps per case.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    steps: u64,
    /// Legacy documents generated per case.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    documents: u64,
    /// Percentage of event, transaction and ticket documents generated dirty.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u8).range(0..=100))]
    dirty: u8,
    /// Every case uses the default operation weights and fault rates, instead of a
    /// configuration derived from its seed.
    #[arg(long, conflicts_with = "max_faults")]
    no_swarm: bool,
    /// Every case uses the default operation weights with every fault at its highest rate
    /// (crashes, redeliveries, a second backfill runner, retry exhaustion, skew).
    #[arg(long)]
    max_faults: bool,
}

impl CaseArgs {
    /// `check`'s options for these flags (cases and seed left at their defaults).
    fn options(&self) -> CheckOptions {
        let mut sim = SimOptions::default();
        sim.data.documents = self.documents as usize;
        sim.data.dirty_percent = self.dirty;
        CheckOptions {
            steps: self.steps as usize,
            sim,
            swarm: !self.no_swarm,
            fixed_swarm: self.max_faults.then(cutover::explore::Swarm::max_faults),
            ..CheckOptions::default()
        }
    }
}

/// Reads the plan named on the command line, or the built-in seed plan.
fn load_plan(plan: &Option<std::path::PathBuf>) -> anyhow::Result<(Plan, String)> {
    Ok(match plan {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read plan {}", path.display()))?;
            (
                Plan::parse(&text, &path.display().to_string())?,
                format!(" --plan {}", path.display()),
            )
        }
        None => (Plan::seed(), String::new()),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cutover: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check {
            plan,
            cases,
            seed,
            case,
            save,
            json,
            from_export,
            sample,
        } => {
            let (plan, plan_arg) = load_plan(&plan)?;
            let mut options = CheckOptions {
                cases: cases as usize,
                seed,
                ..case.options()
            };
            let mut data_args = replay_args(&options);
            if let Some(path) = &from_export {
                let loaded = cutover::export::load::load(path, sample.map(|n| n as usize), seed)?;
                options.sim.dataset =
                    Some(cutover::data::Fixed(std::sync::Arc::new(loaded.dataset)));
                data_args.push_str(&format!(" --from-export {}", path.display()));
            }
            if let Some(n) = sample {
                data_args.push_str(&format!(" --sample {n}"));
            }
            let report = check(&plan, &options);
            if let (Some(path), Some(c)) = (&save, &report.counterexample) {
                let saved = cutover::replay::Saved::new(&plan, &options.sim, c);
                write_atomically(path, serde_json::to_string_pretty(&saved)?)?;
            }
            let text = if json {
                format!("{}\n", serde_json::to_string(&json_report(&report))?)
            } else {
                render_report(&plan, &report, &plan_arg, &data_args, case.steps)?
            };
            write_stdout(&text)?;
            Ok(verdict_code(&report))
        }
        Command::Sweep {
            plan,
            seeds,
            jobs,
            shard,
            case,
            save,
            json,
        } => {
            let (plan, plan_arg) = load_plan(&plan)?;
            let jobs = jobs_or_cores(jobs);
            let options = cutover::sweep::SweepOptions {
                check: case.options(),
                seeds,
                shard: shard.unwrap_or(cutover::sweep::Shard::WHOLE),
                jobs,
            };
            let result = sweep_command(&plan, &options)?;
            sweep_output(&result, &plan_arg, save.as_deref(), json)
        }
        Command::SweepMerge { files, save, json } => {
            let results = files
                .iter()
                .map(|f| {
                    let text = std::fs::read_to_string(f)
                        .with_context(|| format!("cannot read {}", f.display()))?;
                    serde_json::from_str(&text).with_context(|| {
                        format!("{}: not a `cutover sweep --json` result", f.display())
                    })
                })
                .collect::<anyhow::Result<Vec<cutover::sweep::SweepResult>>>()?;
            let merged = cutover::sweep::merge(&results)?;
            let plan_arg = if merged.plan == Plan::seed() {
                String::new()
            } else {
                format!(" --plan <the file of plan {:?}>", merged.plan.name)
            };
            sweep_output(&merged, &plan_arg, save.as_deref(), json)
        }
        Command::Explore {
            plan,
            depth,
            jobs,
            save,
            json,
        } => {
            let (plan, _) = load_plan(&plan)?;
            explore_command(
                &plan,
                depth as usize,
                jobs_or_cores(jobs),
                save.as_deref(),
                json,
            )
        }
        Command::Replay {
            file,
            step,
            emit_test,
        } => replay_command(&file, step, emit_test),
        Command::Scan {
            export,
            plan,
            out,
            json,
        } => {
            let (plan, _) = load_plan(&plan)?;
            scan_command(&export, &plan, &out, json)
        }
        Command::GenExport {
            documents,
            dirty,
            out,
            encoding,
            seed,
        } => {
            let options = cutover::export::generate::ExportOptions {
                documents: documents as usize,
                dirty_percent: dirty,
                seed,
                legacy: encoding == "legacy",
            };
            let mut generated = None;
            cutover::output::write_atomically_with(&out, |file| {
                let w = std::io::BufWriter::with_capacity(1 << 20, file);
                let (w, g) = cutover::export::generate::write_export(w, &options)?;
                w.into_inner().map_err(|e| e.into_error())?;
                generated = Some(g);
                Ok(())
            })?;
            let g = generated.context("the export was not written")?;
            let mut per_dirt = std::collections::BTreeMap::new();
            for d in &g.dirty {
                *per_dirt
                    .entry(format!("{} {:?}", d.kind, d.dirt))
                    .or_insert(0usize) += 1;
            }
            let per_dirt: Vec<String> = per_dirt.iter().map(|(k, n)| format!("{k} {n}")).collect();
            write_stdout(&format!(
                "wrote {} ({encoding} encoding): {} objects documents (events {}, transactions {}, tickets {}), {} links, {} organizations; {} dirty: {}\n",
                out.display(),
                g.documents,
                g.migrating[0],
                g.migrating[1],
                g.migrating[2],
                g.links,
                g.organizations,
                g.dirty.len(),
                if per_dirt.is_empty() {
                    "none".to_string()
                } else {
                    per_dirt.join(", ")
                }
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Review {
            plan,
            out,
            cases,
            steps,
            seed,
            depth,
            timings,
        } => {
            let (plan_value, _) = load_plan(&plan)?;
            // Fail before the checks, not after them, when DIR cannot be made.
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let options = cutover::review::ReviewOptions {
                check: CheckOptions {
                    cases: cases as usize,
                    steps: steps as usize,
                    seed,
                    ..CheckOptions::default()
                },
                depth: depth as usize,
                clock: timings.then_some(seconds_since_start as fn() -> f64),
                plan_arg: plan.map(|p| p.display().to_string()),
            };
            let review = cutover::review::build(&plan_value, &options);
            cutover::review::write(&out, &review)?;
            write_stdout(&format!(
                "plan {:?}: {}; wrote {} and {}\n",
                plan_value.name,
                if review.safe() { "safe" } else { "UNSAFE" },
                out.join("review.md").display(),
                out.join("review.html").display()
            ))?;
            Ok(if review.safe() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `cutover scan`: the findings go to a spill file as they are found (memory does not grow
/// with them), then into `scan.md` and `scan.json`.
fn scan_command(
    export: &std::path::Path,
    plan: &Plan,
    out: &std::path::Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use cutover::export::report;
    use std::io::Write;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut spill = cutover::output::Spill::new(out, "scan-findings")?;
    let mut first = Vec::new();
    let r = cutover::export::scan::scan_with(export, plan, &mut |f| {
        if first.len() < 5 {
            first.push(f.clone());
        }
        spill.push(&f);
    })?;
    spill.finish()?;
    let (md, js) = (out.join("scan.md"), out.join("scan.json"));
    cutover::output::write_atomically_with(&md, |file| {
        let mut w = std::io::BufWriter::new(file);
        report::write_markdown(&r, &mut spill.read()?, &mut w)?;
        Ok(w.flush()?)
    })?;
    cutover::output::write_atomically_with(&js, |file| {
        let mut w = std::io::BufWriter::new(file);
        report::write_json(&r, &mut spill.read()?, &mut w, true)?;
        Ok(w.flush()?)
    })?;
    if json {
        let mut w = std::io::BufWriter::new(std::io::stdout().lock());
        match report::write_json(&r, &mut spill.read()?, &mut w, false).and_then(|()| w.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return Err(e).context("cannot write to stdout");
            }
            _ => {}
        }
    } else {
        let written = [md.display().to_string(), js.display().to_string()];
        write_stdout(&report::summary(&r, &first, &written))?;
    }
    Ok(if r.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The clock of `review --timings`: seconds since the first call.
fn seconds_since_start() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

/// `cutover replay`.
fn replay_command(
    file: &std::path::Path,
    step: Option<usize>,
    emit_test: bool,
) -> anyhow::Result<ExitCode> {
    use std::fmt::Write;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let saved: cutover::replay::Saved = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a saved counterexample", file.display()))?;
    if let Some(d) = &saved.dataset {
        d.check()
            .with_context(|| format!("{}: not a saved counterexample", file.display()))?;
    }
    if emit_test {
        write_stdout(&saved.emit_test()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let (replayed, sim) = saved.replay(step);
    let mut out = String::new();
    writeln!(
        out,
        "replaying {} ({} steps of plan {:?}, case seed {}, saved by cutover {})",
        file.display(),
        saved.steps.len(),
        saved.plan.name,
        saved.seed,
        saved.cutover_version
    )?;
    writeln!(out)?;
    writeln!(out, "step  who          what")?;
    for line in &replayed.trace {
        writeln!(out, "{line}")?;
    }
    if let Some(k) = step {
        writeln!(out)?;
        writeln!(out, "state after step {k}:")?;
        out.push_str(&sim.describe_state());
        write_stdout(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let code = match &replayed.result {
        Err(f) => {
            writeln!(
                out,
                "{:>4}  {:<12} {} BROKEN: {}",
                f.step, "checker", f.invariant, f.message
            )?;
            if let Some(x) = &f.explained {
                writeln!(out, "  anomaly {}: {}", x.anomaly, x.explanation)?;
            }
            if let Some(e) = &f.expected {
                writeln!(out, "  expected (oracle): {e}")?;
            }
            if let Some(seen) = &f.seen {
                writeln!(out, "  seen (migrated):   {seen}")?;
            }
            if (f.invariant, f.step) != (saved.failure.invariant, saved.failure.step) {
                writeln!(
                    out,
                    "note: the saved failure was {} at step {}",
                    saved.failure.invariant, saved.failure.step
                )?;
            }
            ExitCode::from(1)
        }
        Ok(()) => {
            writeln!(
                out,
                "the steps pass now (the saved failure was {} at step {})",
                saved.failure.invariant, saved.failure.step
            )?;
            ExitCode::SUCCESS
        }
    };
    write_stdout(&out)?;
    Ok(code)
}

/// `cutover explore`: the text or JSON report and the exit code.
fn explore_command(
    plan: &Plan,
    depth: usize,
    jobs: usize,
    save: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use std::fmt::Write;
    let scenario = cutover::exhaustive::Scenario::small();
    let r = cutover::exhaustive::explore_jobs(plan, &scenario, depth, usize::MAX, jobs);
    if let (Some(path), Some(c)) = (save, &r.counterexample) {
        let saved = cutover::replay::Saved {
            cutover_version: env!("CARGO_PKG_VERSION").to_string(),
            plan: scenario.plan_for(plan),
            data: scenario.options.data.clone(),
            skew_max_ms: scenario.options.skew_max_ms,
            seed: 0,
            data_seed: scenario.data_seed,
            configuration: cutover::explore::Swarm::default(),
            steps: c.steps.clone(),
            failure: c.failure.clone(),
            dataset: None,
        };
        write_atomically(path, serde_json::to_string_pretty(&saved)?)?;
    }
    let text = if json {
        let mut out = serde_json::json!({
            "verdict": if r.counterexample.is_some() { "unsafe" } else { "safe" },
            "depth": r.depth,
            "states": r.states,
            "transitions": r.transitions,
        });
        if let Some(c) = &r.counterexample {
            out["counterexample"] = serde_json::json!({
                "invariant": c.failure.invariant.name(),
                "anomaly": c.failure.explained.as_ref().map(|x| x.anomaly.name()),
                "explanation": c.failure.explained.as_ref().map(|x| x.explanation.as_str()),
                "message": c.failure.message,
                "steps": c.steps,
                "trace": c.trace,
            });
        }
        format!("{}\n", serde_json::to_string(&out)?)
    } else {
        let mut out = String::new();
        match &r.counterexample {
            None => writeln!(
                out,
                "plan {:?}: no counterexample in the small scenario within depth {} ({} distinct states, {} steps tried)",
                plan.name, r.depth, r.states, r.transitions
            )?,
            Some(c) => {
                writeln!(
                    out,
                    "plan {:?}: UNSAFE, shortest counterexample in the small scenario: {} steps ({} distinct states within depth {})",
                    plan.name,
                    c.steps.len(),
                    r.states,
                    r.depth
                )?;
                writeln!(out, "  {}", c.failure)?;
                writeln!(out)?;
                writeln!(out, "step  who          what")?;
                for line in &c.trace {
                    writeln!(out, "{line}")?;
                }
            }
        }
        out
    };
    write_stdout(&text)?;
    Ok(if r.counterexample.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--jobs J`, or every core.
fn jobs_or_cores(jobs: Option<u64>) -> usize {
    match jobs {
        Some(j) => j as usize,
        None => std::thread::available_parallelism().map_or(1, usize::from),
    }
}

/// Exit code 1 when the report has a counterexample, else 0.
fn verdict_code(report: &Report) -> ExitCode {
    if report.counterexample.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs a sweep with progress on stderr (a bar on a terminal, a line per tenth of the seeds
/// otherwise) and Ctrl-C handling: the first stops handing out seeds, a second quits at once.
fn sweep_command(
    plan: &Plan,
    options: &cutover::sweep::SweepOptions,
) -> anyhow::Result<cutover::sweep::SweepResult> {
    use cutover::sweep::Progress;
    use std::io::IsTerminal;
    let started = std::time::Instant::now();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(options.shard.len(options.seeds));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} seeds, {rate} seeds/s, {eta} left{msg}",
            )
            .expect("a valid progress template")
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}", state.per_sec());
                },
            )
            .progress_chars("=> "),
        );
        bar
    });
    let mut last_tenth = 0;
    let progress = |p: Progress| match p {
        Progress::Seeds {
            done,
            total,
            failing,
        } => {
            let msg = if failing > 0 {
                format!(", {failing} failing")
            } else {
                String::new()
            };
            if let Some(bar) = &bar {
                bar.set_position(done);
                bar.set_message(msg);
            } else if done == 0 {
                eprintln!("sweep: {total} seeds on {} workers", options.jobs);
            } else if done * 10 / total.max(1) > last_tenth || done == total {
                last_tenth = done * 10 / total.max(1);
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                let rate = done as f64 / secs;
                let left = (total - done) as f64 / rate.max(1e-9);
                eprintln!("sweep: {done}/{total} seeds{msg}, {rate:.1} seeds/s, {left:.0} s left");
            }
        }
        Progress::Shrinking { seed } => match &bar {
            Some(bar) => bar.set_message(format!(", shrinking seed {seed}")),
            None => eprintln!("sweep: shrinking the lowest failing seed, {seed}"),
        },
    };
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling: the sweep is never interrupted.
            std::future::pending::<()>().await;
        }
        eprintln!("sweep: interrupted; finishing the seeds in flight (Ctrl-C again quits now)");
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        });
    };
    let result = cutover::sweep::sweep(plan, options, progress, interrupt)
        .context("cannot start the sweep's workers")?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(result)
}

/// Prints a sweep's (or merge's) result, saves its counterexample, and returns the exit code:
/// 130 if interrupted, else 1 with a counterexample, else 0.
fn sweep_output(
    result: &cutover::sweep::SweepResult,
    plan_arg: &str,
    save: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use std::fmt::Write;
    if let (Some(path), Some(c)) = (save, &result.report.counterexample) {
        let saved = cutover::replay::Saved::new(&result.plan, &result.settings.sim, c);
        write_atomically(path, serde_json::to_string_pretty(&saved)?)?;
    }
    let text = if json {
        format!("{}\n", serde_json::to_string(result)?)
    } else {
        let mut out = String::new();
        let shards = if result.shard_count > 1 {
            let held: Vec<String> = result.shards.iter().map(u64::to_string).collect();
            format!(" (shard {} of {})", held.join(", "), result.shard_count)
        } else {
            String::new()
        };
        writeln!(
            out,
            "sweep of seeds {}{shards}: {} of {} seeds ran, {} failed{}",
            result.seeds,
            result.seeds_done,
            result.seeds_total,
            result.report.failing_cases,
            match result.lowest_failing_seed() {
                Some(_) => format!(
                    " (lowest failing seeds: {})",
                    result
                        .failing_seeds
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => String::new(),
            }
        )?;
        if result.interrupted {
            writeln!(
                out,
                "plan {:?}: interrupted, no verdict; the totals cover the seeds that finished",
                result.plan.name
            )?;
            out.push_str(&render_totals(&result.plan, &result.report)?);
            if let Some(seed) = result.lowest_failing_seed() {
                writeln!(
                    out,
                    "the lowest failing seed so far is {seed}; shrink it with: cutover check{plan_arg} --seed {seed} --cases 1 --steps {}{}",
                    result.settings.steps,
                    replay_args(&result.settings.check_options())
                )?;
            }
        } else {
            out.push_str(&render_report(
                &result.plan,
                &result.report,
                plan_arg,
                &replay_args(&result.settings.check_options()),
                result.settings.steps as u64,
            )?);
        }
        out
    };
    write_stdout(&text)?;
    Ok(if result.interrupted {
        ExitCode::from(130)
    } else {
        verdict_code(&result.report)
    })
}

/// The `check` flags that rebuild these options' cases, as far as they differ from the
/// defaults (for replay commands).
fn replay_args(options: &CheckOptions) -> String {
    let data = &options.sim.data;
    let mut args = if data.documents != 60 || data.dirty_percent != 5 {
        format!(
            " --documents {} --dirty {}",
            data.documents, data.dirty_percent
        )
    } else {
        String::new()
    };
    if options.fixed_swarm == Some(cutover::explore::Swarm::max_faults()) {
        args.push_str(" --max-faults");
    } else if !options.swarm {
        args.push_str(" --no-swarm");
    }
    args
}

fn json_report(report: &Report) -> serde_json::Value {
    let mut out = serde_json::json!({
        "verdict": if report.counterexample.is_some() { "unsafe" } else { "safe" },
        "cases": report.cases,
        "steps": report.steps,
        "invariants": Invariant::ALL.map(Invariant::name),
        "phases_reached": phases_reached(report),
        "cases_all_typed_only": report.cases_all_typed_only,
        "shadow_mismatches": report.shadow_mismatches,
        "probes": report
            .probes
            .iter()
            .map(|(p, n)| (p.name().to_string(), serde_json::Value::from(*n)))
            .collect::<serde_json::Map<_, _>>(),
    });
    if let Some(c) = &report.counterexample {
        out["counterexample"] = serde_json::json!({
            "seed": c.seed,
            "invariant": c.failure.invariant.name(),
            "anomaly": c.failure.explained.as_ref().map(|x| x.anomaly.name()),
            "explanation": c.failure.explained.as_ref().map(|x| x.explanation.as_str()),
            "step": c.failure.step,
            "message": c.failure.message,
            "expected": c.failure.expected,
            "seen": c.failure.seen,
            "configuration": c.swarm,
            "steps": c.steps,
            "trace": c.trace,
        });
    }
    out
}

fn phases_reached(report: &Report) -> serde_json::Map<String, serde_json::Value> {
    cutover::schema::Kind::ALL
        .iter()
        .map(|k| {
            (
                k.table().to_string(),
                serde_json::Value::from(report.phase_max[k.index()].map_or("legacy", |p| p.name())),
            )
        })
        .collect()
}

/// The totals of a report: cases, steps, invariants, phases, switches, probes.
fn render_totals(plan: &Plan, report: &Report) -> Result<String, std::fmt::Error> {
    use std::fmt::Write;
    let mut out = String::new();
    writeln!(
        out,
        "  {} cases, {} steps, every invariant checked after every step:",
        report.cases, report.steps
    )?;
    writeln!(out, "  {}", Invariant::ALL.map(Invariant::name).join(", "))?;
    // In migration order, not the JSON object's alphabetical one.
    let phases: Vec<String> = cutover::schema::Kind::ALL
        .iter()
        .map(|k| {
            format!(
                "{k} {}",
                report.phase_max[k.index()].map_or("legacy", |p| p.name())
            )
        })
        .collect();
    writeln!(out, "  furthest phase reached: {}", phases.join(", "))?;
    writeln!(
        out,
        "  {} cases took every kind to typed_only; {} phase switches ({} rollbacks), {} backfill batches, {} reads compared with the oracle",
        report.cases_all_typed_only,
        report.switches,
        report.rollbacks,
        report.batches,
        report.reads
    )?;
    if cutover::schema::Kind::ALL
        .iter()
        .any(|k| plan.strategy_for(*k).read_mode == cutover::plan::ReadMode::Shadow)
    {
        writeln!(
            out,
            "  shadow reads whose typed answer differed from the legacy one served: {}",
            report.shadow_mismatches
        )?;
    }
    let probes: Vec<String> = report
        .probes
        .iter()
        .map(|(p, n)| format!("{p} {n}"))
        .collect();
    writeln!(out, "  rare situations reached: {}", probes.join(", "))?;
    let missed: Vec<&str> = report
        .probes
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(p, _)| p.name())
        .collect();
    if !missed.is_empty() {
        writeln!(
            out,
            "  never reached (more cases or steps may): {}",
            missed.join(", ")
        )?;
    }
    Ok(out)
}

/// The text report: a summary when safe, the counterexample and its replay command when not.
fn render_report(
    plan: &Plan,
    report: &Report,
    plan_arg: &str,
    data_args: &str,
    steps: u64,
) -> Result<String, std::fmt::Error> {
    use std::fmt::Write;
    let mut out = String::new();
    match &report.counterexample {
        None => {
            writeln!(out, "plan {:?}: safe", plan.name)?;
            out.push_str(&render_totals(plan, report)?);
        }
        Some(c) => {
            writeln!(out, "plan {:?}: UNSAFE", plan.name)?;
            writeln!(
                out,
                "  invariant {} broken at step {} of a {}-step counterexample (case seed {}):",
                c.failure.invariant,
                c.failure.step,
                c.steps.iter().filter(|s| s.op != Op::Noop).count(),
                c.seed
            )?;
            writeln!(out, "  {}", c.failure.message)?;
            if let Some(x) = &c.failure.explained {
                writeln!(out, "  anomaly {}: {}", x.anomaly, x.explanation)?;
            }
            if let Some(e) = &c.failure.expected {
                writeln!(out, "  expected (oracle): {e}")?;
            }
            if let Some(s) = &c.failure.seen {
                writeln!(out, "  seen (migrated):   {s}")?;
            }
            writeln!(out, "  case configuration: {}", c.swarm.describe())?;
            writeln!(out)?;
            writeln!(out, "step  who          what")?;
            for line in &c.trace {
                writeln!(out, "{line}")?;
            }
            writeln!(
                out,
                "{:>4}  {:<12} {} BROKEN: {}",
                c.failure.step, "checker", c.failure.invariant, c.failure.message
            )?;
            writeln!(out)?;
            writeln!(
                out,
                "replay: cutover check{plan_arg} --seed {} --cases 1 --steps {steps}{data_args}",
                c.seed
            )?;
        }
    }
    Ok(out)
}
