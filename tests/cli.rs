//! The binary: exit codes (0 safe, 1 counterexample, 2 bad input), the JSON shape, and the
//! replay command a counterexample prints.

mod common;
use common::cutover;

use std::process::Command;

fn unsafe_plan(dir: &std::path::Path) -> std::path::PathBuf {
    // Reads switch without waiting for the backfill: a reader misses documents.
    let seed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plans/seed.toml")).unwrap();
    let plan = seed.replace(
        r#"read_typed = ["backfill_done", "diff_clean"]"#,
        "read_typed = []",
    );
    assert_ne!(plan, seed);
    let path = dir.join("early-read-switch.toml");
    std::fs::write(&path, plan).unwrap();
    path
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cutover-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn safe_plan_exits_0_with_a_summary() {
    let (code, out, _) = cutover(&["check", "--cases", "20"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("safe"));
    assert!(out.contains("20 cases, 4000 steps"));
    assert!(out.contains("read_equivalence"));
}

#[test]
fn json_has_the_documented_shape() {
    let (code, out, _) = cutover(&["check", "--cases", "5", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "safe");
    assert_eq!(v["cases"], 5);
    assert_eq!(v["steps"], 1000);
    assert!(v.get("counterexample").is_none());

    let dir = temp_dir("json");
    let plan = unsafe_plan(&dir);
    let (code, out, _) = cutover(&["check", "--plan", plan.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"], "unsafe");
    assert!(v["counterexample"]["seed"].is_u64());
    assert!(v["counterexample"]["invariant"].is_string());
    assert!(!v["counterexample"]["trace"].as_array().unwrap().is_empty());
}

#[test]
fn unsafe_plan_exits_1_with_a_replayable_counterexample() {
    let dir = temp_dir("unsafe");
    let plan = unsafe_plan(&dir);
    let before = std::fs::read(&plan).unwrap();
    let (code, out, _) = cutover(&["check", "--plan", plan.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("UNSAFE"));
    assert!(out.contains("BROKEN"));
    assert!(out.contains("expected (oracle)"));
    let replay = out
        .lines()
        .find_map(|l| l.strip_prefix("replay: cutover "))
        .expect("a replay command");
    let args: Vec<&str> = replay.split_whitespace().collect();
    let (code2, out2, _) = cutover(&args);
    assert_eq!(code2, 1);
    let trace = |s: &str| {
        s.lines()
            .skip_while(|l| !l.starts_with("step"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        trace(&out),
        trace(&out2),
        "the replay shows the same counterexample"
    );
    assert_eq!(
        std::fs::read(&plan).unwrap(),
        before,
        "the plan file is not modified"
    );
}

#[test]
fn bad_input_exits_2_and_names_the_place() {
    let (code, _, err) = cutover(&["check", "--plan", "/nonexistent/plan.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/plan.toml"), "{err}");

    let dir = temp_dir("bad");
    let bad = dir.join("bad.toml");
    let seed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/plans/seed.toml")).unwrap();
    std::fs::write(&bad, seed.replace("batch_size = 25", "batch_size = 0")).unwrap();
    let (code, _, err) = cutover(&["check", "--plan", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.toml") && err.contains("batch_size"),
        "{err}"
    );

    std::fs::write(&bad, "name = \"x\"\nbatch_size = [").unwrap();
    let (code, _, err) = cutover(&["check", "--plan", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("line 2"), "{err}");

    let (code, _, _) = cutover(&["check", "--no-such-flag"]);
    assert_eq!(code, 2);
    let (code, _, _) = cutover(&["check", "--cases", "0"]);
    assert_eq!(code, 2);
}

#[test]
fn a_reader_that_stops_reading_is_not_a_crash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["check", "--cases", "20"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn explore_reports_the_shortest_counterexample_with_its_exit_code() {
    let (code, out, _) = cutover(&["explore", "--depth", "3"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("no counterexample") && out.contains("113 distinct states"),
        "{out}"
    );
    let plan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plans/unsafe/backfill_stale_copy.toml"
    );
    let (code, out, _) = cutover(&["explore", "--plan", plan, "--depth", "6", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["verdict"], "unsafe");
    assert_eq!(v["counterexample"]["anomaly"], "stale_copy_overwrite");
    assert_eq!(
        v["counterexample"]["steps"].as_array().map(Vec::len),
        Some(5)
    );
    let (code, _, err) = cutover(&["explore", "--depth", "0"]);
    assert_eq!(code, 2, "{err}");
    // Its counterexample saves and replays like check's.
    let dir = temp_dir("explore");
    let file = dir.join("shortest.json");
    let file_arg = file.to_str().expect("utf-8 path");
    let (code, _, _) = cutover(&[
        "explore", "--plan", plan, "--depth", "6", "--save", file_arg,
    ]);
    assert_eq!(code, 1);
    let (code, out, _) = cutover(&["replay", file_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("anomaly stale_copy_overwrite"), "{out}");
}

#[test]
fn a_saved_counterexample_replays_byte_for_byte() {
    let dir = temp_dir("replay");
    let plan = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/plans/unsafe/backfill_stale_copy.toml"
    );
    let file = dir.join("ce.json");
    let file_arg = file.to_str().expect("utf-8 path");
    let (code, out, _) = cutover(&["check", "--plan", plan, "--save", file_arg]);
    assert_eq!(code, 1, "{out}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("saved")).expect("JSON");
    assert_eq!(saved["plan"]["name"], "backfill_stale_copy");
    assert!(saved["steps"].as_array().is_some_and(|s| !s.is_empty()));
    let (code, first, _) = cutover(&["replay", file_arg]);
    assert_eq!(code, 1, "the failure reproduces: {first}");
    let (_, second, _) = cutover(&["replay", file_arg]);
    assert_eq!(first, second, "byte for byte");
    // The replay's trace is the counterexample's.
    for line in out.lines().filter(|l| l.starts_with("   ")) {
        assert!(
            first.contains(line.trim_end()),
            "missing from the replay: {line}"
        );
    }
    let (code, state, _) = cutover(&["replay", file_arg, "--step", "1"]);
    assert_eq!(code, 0);
    assert!(state.contains("state after step 1") && state.contains("-- migrationProgress"));
    let (code, test, _) = cutover(&["replay", file_arg, "--emit-test"]);
    assert_eq!(code, 0);
    assert!(test.contains("#[test]") && test.contains("Invariant::FieldAgreement"));
    // Not a saved counterexample: exit 2.
    std::fs::write(&file, "{}").expect("writes");
    let (code, _, err) = cutover(&["replay", file_arg]);
    assert_eq!(code, 2, "{err}");
}
