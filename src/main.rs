//! The `cutover` command line: parses flags, calls the library, prints, and maps the outcome
//! to an exit code (0 safe, 1 counterexample found, 2 bad input or operating error).

/// mimalloc: the simulator allocates many small maps and strings; it measured about 10% more
/// steps per second at 1,000 documents and 15% at 100,000 than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Steps per case.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        steps: u64,
        /// Case i runs with seed S+i; `--seed S --cases 1` replays case S exactly.
        #[arg(long, default_value_t = 0)]
        seed: u64,
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
        /// Saves the counterexample, if any, to FILE (JSON) for `cutover replay`.
        #[arg(long, value_name = "FILE")]
        save: Option<std::path::PathBuf>,
        /// Prints one JSON object instead of text.
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
    /// Explores every interleaving of the small scenario (a dozen documents, twelve
    /// operations on events and transactions) up to a depth, equal states deduplicated, and
    /// reports the shortest counterexample.
    #[command(
        after_help = "Example:\n  cutover explore --plan plans/unsafe/backfill_stale_copy.toml --depth 6"
    )]
    Explore {
        /// The plan file (TOML). Default: the built-in seed plan (plans/seed.toml).
        #[arg(long, value_name = "FILE")]
        plan: Option<std::path::PathBuf>,
        /// The longest interleavings explored, in steps.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(1..=12))]
        depth: u64,
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
            steps,
            seed,
            documents,
            dirty,
            no_swarm,
            max_faults,
            save,
            json,
        } => {
            let (plan, plan_arg) = load_plan(&plan)?;
            let mut sim = SimOptions::default();
            sim.data.documents = documents as usize;
            sim.data.dirty_percent = dirty;
            let options = CheckOptions {
                cases: cases as usize,
                steps: steps as usize,
                seed,
                sim,
                swarm: !no_swarm,
                fixed_swarm: max_faults.then(cutover::explore::Swarm::max_faults),
                ..CheckOptions::default()
            };
            let report = check(&plan, &options);
            if let (Some(path), Some(c)) = (&save, &report.counterexample) {
                let saved = cutover::replay::Saved::new(&plan, &options.sim, c);
                write_atomically(path, &serde_json::to_string_pretty(&saved)?)?;
            }
            let mut data_args = if documents != 60 || dirty != 5 {
                format!(" --documents {documents} --dirty {dirty}")
            } else {
                String::new()
            };
            if no_swarm {
                data_args.push_str(" --no-swarm");
            }
            if max_faults {
                data_args.push_str(" --max-faults");
            }
            let text = if json {
                format!("{}\n", serde_json::to_string(&json_report(&report))?)
            } else {
                render_report(&plan, &report, &plan_arg, &data_args, steps)?
            };
            let code = if report.counterexample.is_some() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
            write_stdout(&text)?;
            Ok(code)
        }
        Command::Explore {
            plan,
            depth,
            save,
            json,
        } => {
            let (plan, _) = load_plan(&plan)?;
            explore_command(&plan, depth as usize, save.as_deref(), json)
        }
        Command::Replay {
            file,
            step,
            emit_test,
        } => replay_command(&file, step, emit_test),
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
    save: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use std::fmt::Write;
    let scenario = cutover::exhaustive::Scenario::small();
    let r = cutover::exhaustive::explore(plan, &scenario, depth, usize::MAX);
    if let (Some(path), Some(c)) = (save, &r.counterexample) {
        let saved = cutover::replay::Saved {
            cutover_version: env!("CARGO_PKG_VERSION").to_string(),
            plan: plan.clone(),
            data: scenario.options.data.clone(),
            skew_max_ms: scenario.options.skew_max_ms,
            seed: 0,
            data_seed: scenario.data_seed,
            configuration: cutover::explore::Swarm::default(),
            steps: c.steps.clone(),
            failure: c.failure.clone(),
        };
        write_atomically(path, &serde_json::to_string_pretty(&saved)?)?;
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
                "plan {:?}: no counterexample in the small scenario within depth {} ({} distinct states, {} steps tried at the last depth)",
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
