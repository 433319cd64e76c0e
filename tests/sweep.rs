//! `cutover sweep`: the result does not depend on the number of workers, shards merge into
//! the unsharded result, the counterexample is the lowest failing seed's, Ctrl-C exits 130
//! with the summary of what finished, and bad input exits 2.

mod common;
use common::cutover;

use cutover::explore::{CheckOptions, check};
use cutover::plan::Plan;
use cutover::sweep::{MergeError, SeedRange, Shard, SweepOptions, SweepResult, merge, sweep};
use std::process::{Command, Stdio};

fn unsafe_plan() -> Plan {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plans/unsafe/backfill_stale_copy.toml"
    ))
    .unwrap();
    Plan::parse(&text, "backfill_stale_copy.toml").unwrap()
}

fn options(seeds: &str, shard: Shard, jobs: usize) -> SweepOptions {
    SweepOptions {
        check: CheckOptions {
            steps: 60,
            ..CheckOptions::default()
        },
        seeds: SeedRange::parse(seeds).unwrap(),
        shard,
        jobs,
    }
}

fn run(plan: &Plan, options: &SweepOptions) -> SweepResult {
    sweep(plan, options, |_| {}, std::future::pending()).expect("the runtime starts")
}

#[test]
fn the_result_is_the_same_whatever_the_number_of_workers() {
    for plan in [Plan::seed(), unsafe_plan()] {
        let one = run(&plan, &options("0..120", Shard::WHOLE, 1));
        assert_eq!(one.seeds_done, 120);
        assert_eq!(one.report.cases, 120);
        for jobs in [2, 3, 8] {
            let many = run(&plan, &options("0..120", Shard::WHOLE, jobs));
            assert_eq!(many, one, "plan {:?} with {jobs} workers", plan.name);
        }
    }
}

#[test]
fn a_safe_sweep_counts_what_check_counts_for_the_same_seeds() {
    let plan = Plan::seed();
    let swept = run(&plan, &options("7..57", Shard::WHOLE, 2));
    let checked = check(
        &plan,
        &CheckOptions {
            cases: 50,
            seed: 7,
            steps: 60,
            ..CheckOptions::default()
        },
    );
    assert!(checked.counterexample.is_none());
    assert_eq!(swept.report, checked);
    assert!(swept.failing_seeds.is_empty());
}

#[test]
fn the_counterexample_is_the_lowest_failing_seed_shrunk_as_check_shrinks_it() {
    let plan = unsafe_plan();
    let swept = run(&plan, &options("3..80", Shard::WHOLE, 3));
    let lowest = swept.lowest_failing_seed().expect("the unsafe plan fails");
    assert!(swept.report.failing_cases >= swept.failing_seeds.len());
    assert!(swept.failing_seeds.windows(2).all(|w| w[0] < w[1]));
    // Every seed below the lowest failing one passes on its own.
    for seed in 3..lowest {
        let alone = check(
            &plan,
            &CheckOptions {
                cases: 1,
                seed,
                steps: 60,
                ..CheckOptions::default()
            },
        );
        assert!(alone.counterexample.is_none(), "seed {seed} fails");
    }
    let alone = check(
        &plan,
        &CheckOptions {
            cases: 1,
            seed: lowest,
            steps: 60,
            ..CheckOptions::default()
        },
    );
    assert_eq!(swept.report.counterexample, alone.counterexample);
    assert_eq!(swept.report.counterexample.as_ref().unwrap().seed, lowest);
}

#[test]
fn shards_merge_into_the_unsharded_result() {
    let plan = unsafe_plan();
    let whole = run(&plan, &options("0..90", Shard::WHOLE, 2));
    let shards: Vec<SweepResult> = (1..=4)
        .map(|index| run(&plan, &options("0..90", Shard { index, count: 4 }, 1)))
        .collect();
    assert_eq!(shards.iter().map(|s| s.seeds_total).sum::<u64>(), 90);
    // In any order.
    let merged = merge(&[
        shards[2].clone(),
        shards[0].clone(),
        shards[3].clone(),
        shards[1].clone(),
    ])
    .unwrap();
    assert_eq!(merged.report, whole.report);
    assert_eq!(merged.failing_seeds, whole.failing_seeds);
    assert_eq!(
        (merged.seeds_done, merged.seeds_total, merged.interrupted),
        (90, 90, false)
    );
    assert_eq!(merged.shards, vec![1, 2, 3, 4]);

    // A shard twice, a shard missing, shards of another sweep: refused.
    assert!(matches!(
        merge(&[shards[0].clone(), shards[0].clone()]),
        Err(MergeError::Duplicate { shard: 1, count: 4 })
    ));
    let missing = merge(&shards[..3]).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "shards missing: 4 (of 4); merge every shard of the sweep"
    );
    let other = run(
        &Plan::seed(),
        &options("0..90", Shard { index: 4, count: 4 }, 1),
    );
    let mismatch = merge(&[
        shards[0].clone(),
        shards[1].clone(),
        shards[2].clone(),
        other,
    ])
    .unwrap_err();
    assert!(mismatch.to_string().contains("plan"), "{mismatch}");
}

#[test]
fn the_cli_prints_only_results_on_stdout_and_progress_lines_on_a_non_terminal_stderr() {
    let (code, out, err) = cutover(&["sweep", "--seeds", "0..40", "--jobs", "2", "--json"]);
    assert_eq!(code, 0, "{err}");
    let result: SweepResult = serde_json::from_str(&out).expect("stdout is one JSON result");
    assert_eq!(result.seeds_done, 40);
    assert!(err.starts_with("sweep: 40 seeds on 2 workers\n"), "{err}");
    assert!(err.contains("sweep: 40/40 seeds"), "{err}");
    assert!(!err.contains('\x1b'), "no terminal escapes off a terminal");

    let dir = std::env::temp_dir().join(format!("cutover-sweep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plans/unsafe/backfill_stale_copy.toml"
    );
    let mut files = Vec::new();
    for i in 1..=2 {
        let shard = format!("{i}/2");
        let (code, out, err) = cutover(&[
            "sweep", "--plan", plan, "--seeds", "0..30", "--shard", &shard, "--json",
        ]);
        assert_eq!(code, 1, "{err}");
        let file = dir.join(format!("shard-{i}.json"));
        std::fs::write(&file, out).unwrap();
        files.push(file.display().to_string());
    }
    let save = dir.join("ce.json").display().to_string();
    let (code, merged, _) = cutover(&["sweep-merge", &files[0], &files[1], "--save", &save]);
    let (_, whole, _) = cutover(&["sweep", "--plan", plan, "--seeds", "0..30"]);
    assert_eq!(code, 1);
    // The same report apart from the first line (which names the shards) and the replay
    // command (a merge does not know the plan's file).
    let body = |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines[1..lines.len() - 1].join("\n")
    };
    assert_eq!(body(&merged), body(&whole));
    assert!(merged.ends_with(
        "replay: cutover check --plan <the file of plan \"backfill_stale_copy\"> --seed 0 --cases 1 --steps 200\n"
    ));
    assert!(
        merged.starts_with("sweep of seeds 0..30 (shard 1, 2 of 2)"),
        "{merged}"
    );
    // The saved counterexample replays to the same failure.
    let (code, replayed, err) = cutover(&["replay", &save]);
    assert_eq!(code, 1, "{err}");
    assert!(replayed.contains("field_agreement BROKEN"), "{replayed}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_ranges_shards_and_shard_files_exit_2_with_the_reason() {
    for (args, reason) in [
        (vec!["sweep", "--seeds", "9..3"], "is empty"),
        (vec!["sweep", "--seeds", "ten..20"], "\"ten\""),
        (
            vec!["sweep", "--seeds", "0..9", "--shard", "3/2"],
            "1 <= I <= N",
        ),
        (vec!["sweep", "--seeds", "0..9", "--jobs", "0"], "--jobs"),
        (
            vec!["sweep-merge", "Cargo.toml"],
            "Cargo.toml: not a `cutover sweep --json` result",
        ),
        (
            vec!["sweep-merge", "no-such-file.json"],
            "cannot read no-such-file.json",
        ),
    ] {
        let (code, out, err) = cutover(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert!(err.contains(reason), "{args:?}: {err}");
    }
}

#[test]
fn ctrl_c_prints_the_summary_of_what_finished_and_exits_130() {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["sweep", "--seeds", "0..100000000", "--jobs", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    // The start line comes after the Ctrl-C handler is installed.
    assert_eq!(first, "sweep: 100000000 seeds on 2 workers\n");
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(out.status.code(), Some(130), "{rest}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("sweep of seeds 0..100000000: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("plan \"seed\": interrupted, no verdict"),
        "{stdout}"
    );
    assert!(
        rest.contains("interrupted; finishing the seeds in flight"),
        "{rest}"
    );
}
