//! The catalogue of unsafe plans (`plans/unsafe/`): each entry is the seed plan with one
//! deviation, and `check` with default options must find it unsafe, on the invariant it
//! breaks, with a short counterexample that replays from its seed. The seed plan passes the
//! same check (tests/seed_plan.rs runs it; here it runs beside the catalogue).

use cutover::anomaly::Anomaly;
use cutover::explore::{CheckOptions, check};
use cutover::plan::Plan;
use cutover::sim::Invariant;
use std::path::Path;

/// A catalogue entry: the invariants it may break first with default options (which one a
/// read meets first depends on the case), the migration anomalies that failure may be, and
/// the longest shrunk counterexample accepted.
struct Entry {
    name: &'static str,
    invariants: &'static [Invariant],
    anomalies: &'static [Anomaly],
    steps_max: usize,
}

/// The catalogue.
///
/// Entries whose failure needs a kind in `typed_only` cannot be shown in fewer than 13
/// steps with the seed's migration order: events and transactions must each be advanced
/// twice and backfilled before tickets may double-write, and tickets then need two
/// advances, their backfill batches and two more advances before a typed-only write and
/// the step that observes it (transactions, which wait for tickets, need more). The
/// counterexamples found also carry the steps their dataset needs (a data fix that clears a
/// quarantine the `typed_only` guard waits for), so those two entries get a larger bound.
const CATALOGUE: [Entry; 12] = [
    Entry {
        name: "read_switch_before_backfill",
        invariants: &[Invariant::ReadEquivalence, Invariant::AcknowledgedWriteKept],
        anomalies: &[Anomaly::MissingRowAfterReadSwitch],
        steps_max: 12,
    },
    Entry {
        name: "backfill_before_double_write",
        invariants: &[Invariant::NoOrphanTypedRow, Invariant::Coverage],
        anomalies: &[Anomaly::OrphanedTypedRow, Anomaly::MissingTypedRow],
        steps_max: 12,
    },
    Entry {
        name: "blind_insert_backfill",
        invariants: &[Invariant::UniqueTypedRow],
        anomalies: &[Anomaly::DuplicateTypedRow],
        steps_max: 12,
    },
    Entry {
        name: "checkout_separate_double_write",
        invariants: &[
            Invariant::AcknowledgedWriteKept,
            Invariant::FieldAgreement,
            Invariant::ReadEquivalence,
        ],
        anomalies: &[Anomaly::DivergentDoubleWrite],
        steps_max: 12,
    },
    Entry {
        name: "payment_status_not_mirrored",
        invariants: &[Invariant::FieldAgreement],
        anomalies: &[Anomaly::DivergentDoubleWrite],
        steps_max: 12,
    },
    Entry {
        name: "deletes_not_mirrored",
        invariants: &[Invariant::NoOrphanTypedRow],
        anomalies: &[Anomaly::OrphanedTypedRow],
        steps_max: 12,
    },
    Entry {
        name: "backfill_stale_copy",
        invariants: &[Invariant::FieldAgreement],
        anomalies: &[Anomaly::StaleCopyOverwrite],
        steps_max: 12,
    },
    Entry {
        name: "legacy_writes_stop_before_reads_switch",
        invariants: &[Invariant::ReadEquivalence],
        anomalies: &[Anomaly::StaleLegacyRead],
        steps_max: 22,
    },
    Entry {
        name: "references_not_remapped",
        invariants: &[Invariant::ReferentialIntegrity],
        anomalies: &[Anomaly::DanglingReference],
        steps_max: 12,
    },
    Entry {
        name: "webhook_without_dedupe",
        invariants: &[Invariant::AcknowledgedWriteKept, Invariant::ReadEquivalence],
        anomalies: &[Anomaly::DuplicateDelivery],
        steps_max: 12,
    },
    Entry {
        name: "rollback_after_typed_only",
        invariants: &[
            Invariant::ReadEquivalence,
            Invariant::AcknowledgedWriteKept,
            Invariant::Coverage,
        ],
        anomalies: &[Anomaly::NonMonotonicRead, Anomaly::ResurrectedDelete],
        steps_max: 22,
    },
    Entry {
        name: "invalid_documents_skipped",
        invariants: &[Invariant::Coverage],
        anomalies: &[Anomaly::SilentlyDroppedDocument],
        steps_max: 12,
    },
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
    for Entry {
        name,
        invariants,
        anomalies,
        steps_max,
    } in CATALOGUE
    {
        let plan = load(name);
        assert_eq!(plan.name, name, "the plan's name is its file name");
        let report = check(&plan, &options);
        let c = report
            .counterexample
            .unwrap_or_else(|| panic!("{name}: found safe in {} cases", report.cases));
        assert!(
            invariants.contains(&c.failure.invariant),
            "{name}: {}",
            c.failure
        );
        let explained = c
            .failure
            .explained
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: the counterexample is not explained"));
        assert!(
            anomalies.contains(&explained.anomaly),
            "{name}: {}: {}",
            explained.anomaly,
            explained.explanation
        );
        assert!(
            explained
                .explanation
                .split("step ")
                .skip(1)
                .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit())),
            "{name}: the explanation cites no step: {}",
            explained.explanation
        );
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
            "{name}: {} ({}) in case {} with {} steps: {}",
            c.failure.invariant,
            explained.anomaly,
            c.seed,
            c.steps.len(),
            explained.explanation
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
        .map(|e| format!("{}.toml", e.name))
        .collect();
    listed.sort();
    assert_eq!(found, listed);
}

/// Each entry differs from the seed plan in exactly one place (besides its name and
/// description).
#[test]
fn each_entry_is_one_deviation_from_the_seed() {
    let seed = serde_json::to_value(Plan::seed()).expect("plans serialize");
    for Entry { name, .. } in CATALOGUE {
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
