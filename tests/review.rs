//! `cutover review`: the files it writes (atomically, byte-identical across runs, the rest of
//! the directory untouched), its exit codes, the what-if table against the catalogue, the
//! Mermaid blocks' shape, and escaping. The rendering in a browser is tests/review_browser.rs.

use cutover::explore::CheckOptions;
use cutover::plan::Plan;
use cutover::review::{Outcome, Review, ReviewOptions, build, markdown};
use cutover::sim::Invariant;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_cutover");

/// A fresh, empty directory under the target directory (no temp-dir crate needed).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("review-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Runs `cutover review` with small options (fast), returning the exit code and stderr.
fn review(args: &[&str], out: &Path) -> (i32, String) {
    let o = Command::new(BIN)
        .arg("review")
        .args(args)
        .args(["--cases", "5", "--depth", "3", "--out"])
        .arg(out)
        .output()
        .expect("the binary runs");
    (
        o.status.code().expect("exited"),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn review_writes_both_files_keeps_the_rest_and_is_byte_identical() {
    let a = scratch("a");
    std::fs::write(a.join("keep.txt"), "a reviewer's notes").expect("write");
    std::fs::write(a.join("review.md"), "an old report").expect("write");
    let (code, err) = review(&[], &a);
    assert_eq!(code, 0, "the seed plan is safe: {err}");
    // Only the two files were replaced; no temporary file is left behind.
    assert_eq!(names_in(&a), ["keep.txt", "review.html", "review.md"]);
    assert_eq!(
        std::fs::read_to_string(a.join("keep.txt")).expect("read"),
        "a reviewer's notes"
    );
    let md = std::fs::read_to_string(a.join("review.md")).expect("read");
    assert!(md.starts_with("# Design review: plan \"seed\""), "{md}");
    // A missing directory is created; the second run writes the same bytes.
    let b = scratch("b").join("nested/dir");
    assert_eq!(review(&[], &b).0, 0);
    for f in ["review.md", "review.html"] {
        assert_eq!(
            std::fs::read(a.join(f)).expect("read"),
            std::fs::read(b.join(f)).expect("read"),
            "{f} differs between two runs"
        );
    }
}

#[test]
fn exit_codes_unsafe_plan_bad_plan_and_unwritable_directory() {
    let dir = scratch("codes");
    let plan = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/unsafe/backfill_stale_copy.toml");
    let out = dir.join("unsafe");
    let (code, err) = review(&["--plan", plan.to_str().expect("utf-8")], &out);
    assert_eq!(code, 1, "an unsafe plan: {err}");
    let md = std::fs::read_to_string(out.join("review.md")).expect("the report is still written");
    assert!(md.contains("**Verdict: UNSAFE.**"), "{md}");
    assert!(
        md.contains("### plan backfill\\_stale\\_copy (the reviewed plan)"),
        "{md}"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = 1").expect("write");
    let (code, err) = review(&["--plan", bad.to_str().expect("utf-8")], &dir.join("bad"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.toml"), "{err}");
    assert!(
        !dir.join("bad").exists(),
        "nothing is written for a bad plan"
    );

    // A directory that cannot be created: its parent is a file.
    let file = dir.join("a-file");
    std::fs::write(&file, "").expect("write");
    let (code, err) = review(&[], &file.join("out"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot create"), "{err}");
    // Writing into an existing path that is a file fails the same way.
    let (code, _) = review(&[], &file);
    assert_eq!(code, 2);
}

#[test]
fn help_shows_an_example() {
    let o = Command::new(BIN)
        .args(["review", "--help"])
        .output()
        .expect("runs");
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    assert!(help.contains("Example:\n  cutover review"), "{help}");
    for flag in [
        "--plan",
        "--out",
        "--cases",
        "--steps",
        "--seed",
        "--depth",
        "--timings",
    ] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}

/// The review of the seed plan with `check`'s default options, shared by the tests below
/// (it runs the seed plan and every catalogue variant once).
fn seed_review() -> &'static Review {
    static REVIEW: OnceLock<Review> = OnceLock::new();
    REVIEW.get_or_init(|| {
        build(
            &Plan::seed(),
            &ReviewOptions {
                check: CheckOptions::default(),
                depth: 6,
                clock: None,
                plan_arg: None,
            },
        )
    })
}

/// The invariants tests/catalogue.rs accepts for each entry with default options.
fn expected(name: &str) -> &'static [Invariant] {
    use Invariant::*;
    match name {
        "read_switch_before_backfill" => &[ReadEquivalence, AcknowledgedWriteKept],
        "backfill_before_double_write" => &[NoOrphanTypedRow, Coverage],
        "blind_insert_backfill" => &[UniqueTypedRow],
        "checkout_separate_double_write" => {
            &[AcknowledgedWriteKept, FieldAgreement, ReadEquivalence]
        }
        "payment_status_not_mirrored" => &[FieldAgreement],
        "deletes_not_mirrored" => &[NoOrphanTypedRow],
        "backfill_stale_copy" => &[FieldAgreement],
        "legacy_writes_stop_before_reads_switch" => &[ReadEquivalence],
        "references_not_remapped" => &[ReferentialIntegrity],
        "webhook_without_dedupe" => &[AcknowledgedWriteKept, ReadEquivalence],
        "rollback_after_typed_only" => &[ReadEquivalence, AcknowledgedWriteKept, Coverage],
        "invalid_documents_skipped" => &[Coverage],
        other => panic!("{other} is not in the catalogue"),
    }
}

#[test]
fn what_if_catches_every_catalogue_variant_of_the_seed_on_its_invariant() {
    let r = seed_review();
    assert!(r.safe());
    assert_eq!(r.what_if.len(), 12);
    for w in &r.what_if {
        assert!(!w.label.is_empty(), "{}", w.name);
        assert_eq!(w.changes.len(), 1, "{}: one deviation", w.name);
        match &w.outcome {
            Outcome::Checked {
                counterexample: Some(c),
                found_after: Some(f),
                ..
            } => {
                assert!(
                    expected(&w.name).contains(&c.invariant),
                    "{}: {}",
                    w.name,
                    c.invariant
                );
                assert!(c.anomaly.is_some(), "{}: explained", w.name);
                assert!(f.cases >= 1 && f.steps >= 1, "{}", w.name);
                assert!(c.length >= 1 && c.step < c.length, "{}", w.name);
            }
            other => panic!("{}: not caught: {other:?}", w.name),
        }
    }
    assert!(r.exploration.depth == 6 && r.exploration.states > 1);
}

#[test]
fn the_embedded_catalogue_is_plans_unsafe() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/unsafe");
    let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("plans/unsafe")
        .map(|e| {
            let path = e.expect("entry").path();
            (
                path.file_stem()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                std::fs::read_to_string(&path).expect("read"),
            )
        })
        .collect();
    on_disk.sort();
    let embedded: Vec<(String, String)> = cutover::review::CATALOGUE
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(embedded, on_disk);
}

/// The ```mermaid blocks of a Markdown text.
fn mermaid_blocks(md: &str) -> Vec<Vec<&str>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in md.lines() {
        match (&mut current, line) {
            (None, "```mermaid") => current = Some(Vec::new()),
            (Some(_), "```") => blocks.push(current.take().expect("open")),
            (Some(b), l) => b.push(l),
            (None, _) => {}
        }
    }
    assert!(current.is_none(), "an unclosed mermaid block");
    blocks
}

/// Checks one label: no character Mermaid reads as syntax, except in entity codes (`#35;`).
fn assert_label_escaped(label: &str) {
    let mut chars = label.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '#' {
            let code: String =
                std::iter::from_fn(|| chars.next_if(|c| c.is_ascii_digit())).collect();
            assert!(
                !code.is_empty() && chars.next() == Some(';'),
                "a bare # in {label:?}"
            );
        } else {
            assert!(
                !matches!(c, ';' | '<' | '>' | '"' | '&' | '%' | '`' | '|' | '\n'),
                "{c:?} unescaped in {label:?}"
            );
        }
    }
}

/// Checks a `sequenceDiagram` block statement by statement.
fn assert_sequence_well_formed(block: &[&str]) {
    let mut declared = Vec::new();
    let mut open = 0i32;
    let mut failed = 0;
    for line in &block[1..] {
        let l = line.trim();
        let participant = |s: &str| -> usize {
            let n = s.strip_prefix('p').and_then(|n| n.parse().ok());
            n.unwrap_or_else(|| panic!("not a participant id: {s:?} in {l:?}"))
        };
        if let Some(t) = l.strip_prefix("title ") {
            assert_label_escaped(t);
        } else if let Some(rest) = l
            .strip_prefix("participant ")
            .or_else(|| l.strip_prefix("actor "))
        {
            let (id, label) = rest.split_once(" as ").expect("participant p0 as label");
            assert_eq!(participant(id), declared.len(), "participants in order");
            assert_label_escaped(label);
            declared.push(id.to_string());
        } else if let Some(rest) = l.strip_prefix("Note over ") {
            let (who, text) = rest.split_once(": ").expect("Note over p: text");
            for p in who.split(',') {
                assert!(participant(p) < declared.len(), "{l}");
            }
            assert_label_escaped(text);
            if text.starts_with("FAILED") {
                failed += 1;
            }
        } else if let Some(t) = l.strip_prefix("critical ") {
            assert_label_escaped(t);
            assert!(t.contains("breaks"), "{l}");
            open += 1;
        } else if l == "rect rgb(254, 226, 226)" {
            open += 1;
        } else if l == "end" {
            open -= 1;
            assert!(open >= 0, "end without critical or rect");
        } else {
            let (arrow, text) = l.split_once(": ").expect("pA->>pB: text");
            let (a, b) = arrow.split_once("->>").expect("a message");
            assert!(participant(a) < declared.len() && participant(b) < declared.len());
            assert_label_escaped(text);
        }
    }
    assert_eq!(open, 0, "critical and rect blocks balanced");
    assert_eq!(failed, 1, "one FAILED note per counterexample");
}

#[test]
fn the_markdown_has_one_state_diagram_per_kind_and_one_sequence_diagram_per_counterexample() {
    let r = seed_review();
    let md = markdown::render(r);
    let fences = md.lines().filter(|l| l.starts_with("```")).count();
    assert_eq!(fences % 2, 0, "code fences balanced");
    let blocks = mermaid_blocks(&md);
    let states: Vec<_> = blocks
        .iter()
        .filter(|b| b[0] == "stateDiagram-v2")
        .collect();
    let sequences: Vec<_> = blocks
        .iter()
        .filter(|b| b[0] == "sequenceDiagram")
        .collect();
    assert_eq!(
        states.len() + sequences.len(),
        blocks.len(),
        "no other diagram"
    );
    assert_eq!(states.len(), r.plan.kinds.len());
    assert_eq!(sequences.len(), 12, "one per caught variant");
    for b in &states {
        assert!(b.contains(&"    [*] --> legacy"));
        assert!(b.contains(&"    read_typed --> backfill: rollback"));
        for l in &b[1..] {
            if let Some((_, label)) = l.split_once(": ") {
                assert_label_escaped(label);
            }
        }
    }
    assert!(
        states[0].contains(&"    backfill --> read_typed: backfill_done and diff_clean"),
        "{:?}",
        states[0]
    );
    for b in &sequences {
        assert_sequence_well_formed(b);
    }
    let html = cutover::review::html::render(r);
    assert_eq!(html.matches("<svg class=\"state-diagram\"").count(), 3);
    assert_eq!(html.matches("<svg class=\"sequence-diagram\"").count(), 12);
    assert!(!html.contains("<script"), "no script");
    // Nothing loads: no source attribute, and links only within the page.
    assert!(!html.contains(" src="), "nothing loads");
    assert!(
        html.split(" href=\"")
            .skip(1)
            .all(|rest| rest.starts_with('#')),
        "links stay in the page"
    );
}

#[test]
fn text_from_the_plan_is_escaped_in_markdown_mermaid_html_and_svg() {
    let dir = scratch("escape");
    let text = include_str!("../plans/unsafe/backfill_stale_copy.toml").replace(
        "name = \"backfill_stale_copy\"",
        r#"name = "a <b> & \"c\" | d""#,
    );
    assert!(text.contains("a <b>"), "the name was replaced");
    let plan = dir.join("odd.toml");
    std::fs::write(&plan, text).expect("write");
    let (code, err) = review(&["--plan", plan.to_str().expect("utf-8")], &dir);
    assert_eq!(code, 1, "{err}");
    let md = std::fs::read_to_string(dir.join("review.md")).expect("read");
    let html = std::fs::read_to_string(dir.join("review.html")).expect("read");
    assert!(
        md.contains(r#"# Design review: plan "a &lt;b&gt; &amp; "c" \| d""#),
        "{md}"
    );
    assert!(!md.contains("<b>"));
    let blocks = mermaid_blocks(&md);
    let titled: Vec<_> = blocks
        .iter()
        .filter(|b| b.iter().any(|l| l.contains("the reviewed plan")))
        .collect();
    assert_eq!(titled.len(), 1);
    assert!(
        titled[0]
            .contains(&"    title plan a #60;b#62; #38; #34;c#34; #124; d (the reviewed plan)"),
        "{:?}",
        titled[0]
    );
    assert_sequence_well_formed(titled[0]);
    assert!(
        !html.contains("<b>") && !html.contains("\"c\""),
        "raw text in the HTML"
    );
    assert!(html.contains(
        "<title>Design review: plan &quot;a &lt;b&gt; &amp; &quot;c&quot; | d&quot;</title>"
    ));
    assert!(html.contains("phases of plan a &lt;b&gt; &amp; &quot;c&quot; | d</title>"));
}

#[test]
fn timings_add_a_seconds_column_and_say_the_report_varies() {
    fn clock() -> f64 {
        // A fixed clock: every measurement is 0 s, which the test can compare exactly.
        42.0
    }
    let r = build(
        &Plan::seed(),
        &ReviewOptions {
            check: CheckOptions {
                cases: 2,
                ..CheckOptions::default()
            },
            depth: 2,
            clock: Some(clock),
            plan_arg: None,
        },
    );
    assert_eq!(r.seconds, Some(0.0));
    let md = markdown::render(&r);
    assert!(md.contains("| found after | seconds |"), "{md}");
    assert!(md.contains("| wall clock | 0.00 s for the cases above |"));
    assert!(md.contains("so it differs from run to run"));
    assert!(md.contains("--timings`"));
    let html = cutover::review::html::render(&r);
    assert!(html.contains("<th>seconds</th>"));
    // Without a clock, no seconds anywhere.
    let plain = build(
        &Plan::seed(),
        &ReviewOptions {
            clock: None,
            ..r.options.clone()
        },
    );
    assert_eq!(plain.seconds, None);
    assert!(!markdown::render(&plain).contains("seconds |"));
}
