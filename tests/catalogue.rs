//! The catalogue of unsafe plans (`plans/unsafe/`): each entry is the seed plan with one
//! deviation, and `check` with default options must find it unsafe, on the invariant it
//! breaks, with a short counterexample that replays from its seed. The seed plan passes the
//! same check (tests/seed_plan.rs runs it; here it runs beside the catalogue).

use cutover::explore::{CheckOptions, check};
use cutover::plan::Plan;
use cutover::sim::Invariant;
use std::path::Path;

/// Each entry, the invariant it breaks first with default options, and the longest shrunk
/// counterexample accepted.
///
/// Entries whose failure needs tickets in `typed_only` cannot be shown in fewer than 13
/// steps with the seed's migration order: events and transactions must each be advanced
/// twice and backfilled before tickets may double-write, and tickets then need two
/// advances, their backfill batches and two more advances before a typed-only write and
/// the step that observes it.
const CATALOGUE: [(&str, Invariant, usize); 12] = [
    (
        "read_switch_before_backfill",
        Invariant::ReadEquivalence,
        12,
    ),
    (
        "backfill_before_double_write",
        Invariant::NoOrphanTypedRow,
        12,
    ),
    ("blind_insert_backfill", Invariant::UniqueTypedRow, 12),
    (
        "checkout_separate_double_write",
        Invariant::FieldAgreement,
        12,
    ),
    ("payment_status_not_mirrored", Invariant::FieldAgreement, 12),
    ("deletes_not_mirrored", Invariant::NoOrphanTypedRow, 12),
    ("backfill_stale_copy", Invariant::FieldAgreement, 12),
    (
        "legacy_writes_stop_before_reads_switch",
        Invariant::ReadEquivalence,
        18,
    ),
    (
        "references_not_remapped",
        Invariant::ReferentialIntegrity,
        12,
    ),
    (
        "webhook_without_dedupe",
        Invariant::AcknowledgedWriteKept,
        12,
    ),
    ("rollback_after_typed_only", Invariant::Coverage, 18),
    ("invalid_documents_skipped", Invariant::Coverage, 12),
];

fn load(name: &str) -> Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans/unsafe")
        .join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).expect("catalogue entry exists");
    Plan::parse(&text, &path.display().to_string()).expect("catalogue entries are valid plans")
}

#[test]
fn every_catalogue_entry_is_found_unsafe_on_its_invariant() {
    let options = CheckOptions::default();
    let mut summary = Vec::new();
    for (name, invariant, steps_max) in CATALOGUE {
        let plan = load(name);
        assert_eq!(plan.name, name, "the plan's name is its file name");
        let report = check(&plan, &options);
        let c = report
            .counterexample
            .unwrap_or_else(|| panic!("{name}: found safe in {} cases", report.cases));
        assert_eq!(c.failure.invariant, invariant, "{name}: {}", c.failure);
        assert!(
            c.steps.len() <= steps_max,
            "{name}: a counterexample of {} steps (at most {steps_max}):\n{}",
            c.steps.len(),
            c.trace
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        // It replays from its case seed alone.
        let replay = check(
            &plan,
            &CheckOptions {
                cases: 1,
                seed: c.seed,
                ..options.clone()
            },
        );
        assert_eq!(
            replay.counterexample.map(|r| (r.steps, r.failure)),
            Some((c.steps.clone(), c.failure.clone())),
            "{name}: the replay differs"
        );
        summary.push(format!(
            "{name}: {invariant} in case {} with {} steps",
            report.cases,
            c.steps.len()
        ));
    }
    eprintln!("{}", summary.join("\n"));
}

#[test]
fn the_catalogue_directory_holds_exactly_the_listed_entries() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/unsafe");
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("plans/unsafe exists")
        .map(|e| {
            e.expect("readable")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = CATALOGUE
        .iter()
        .map(|(n, _, _)| format!("{n}.toml"))
        .collect();
    listed.sort();
    assert_eq!(found, listed);
}

/// Each entry differs from the seed plan in exactly one place (besides its name and
/// description).
#[test]
fn each_entry_is_one_deviation_from_the_seed() {
    let seed = serde_json::to_value(Plan::seed()).expect("plans serialize");
    for (name, _, _) in CATALOGUE {
        let mut entry = serde_json::to_value(load(name)).expect("plans serialize");
        entry["name"] = seed["name"].clone();
        entry["description"] = seed["description"].clone();
        let differences = leaves_differing(&seed, &entry, String::new());
        assert_eq!(
            differences.len(),
            1,
            "{name} differs from the seed in {differences:?}"
        );
    }
}

fn leaves_differing(a: &serde_json::Value, b: &serde_json::Value, at: String) -> Vec<String> {
    use serde_json::Value::Object;
    match (a, b) {
        (Object(x), Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| {
                    let null = serde_json::Value::Null;
                    leaves_differing(
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        format!("{at}.{k}"),
                    )
                })
                .collect()
        }
        _ if a == b => vec![],
        _ => vec![at],
    }
}
