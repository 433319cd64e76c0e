//! Each invariant catches the bug it guards against: a test plants the bug (in the write
//! paths, the backfill, the mapping or the plan) and shows that `check` reports that exact
//! invariant with a short counterexample.

use cutover::explore::{CheckOptions, check};
use cutover::plan::{
    BackfillWrite, DeleteMirroring, PathStrategy, Plan, QuarantineReads, Strategy, UpdateMirroring,
    WritePath,
};
use cutover::sim::{Invariant, SimOptions};
use cutover::world::PlantedBugs;

fn caught(plan: &Plan, bugs: PlantedBugs, dirty: u8, expected: Invariant) {
    let options = CheckOptions {
        cases: 400,
        steps: 200,
        seed: 1,
        sim: SimOptions {
            bugs,
            data: cutover::data::GenOptions {
                dirty_percent: dirty,
                ..Default::default()
            },
            ..SimOptions::default()
        },
        ..CheckOptions::default()
    };
    let report = check(plan, &options);
    let c = report.counterexample.unwrap_or_else(|| {
        panic!(
            "{expected} did not catch its planted bug in {} cases",
            report.cases
        )
    });
    assert_eq!(c.failure.invariant, expected, "{}", c.failure);
    eprintln!(
        "{expected}: caught in case {} with {} steps",
        report.cases,
        c.steps.len()
    );
    assert!(
        c.steps.len() <= 30,
        "counterexample of {} steps is not minimal enough: {:#?}",
        c.steps.len(),
        c.trace
    );
    // The counterexample replays from its seed alone.
    let replay = check(
        plan,
        &CheckOptions {
            cases: 1,
            seed: c.seed,
            ..options
        },
    );
    assert_eq!(replay.counterexample.map(|r| r.steps), Some(c.steps));
}

fn bugs(f: impl FnOnce(&mut PlantedBugs)) -> PlantedBugs {
    let mut b = PlantedBugs::default();
    f(&mut b);
    b
}

/// The seed plan with one strategy changed.
fn seed_with(f: impl FnOnce(&mut Strategy)) -> Plan {
    let mut plan = Plan::seed();
    f(&mut plan.strategy);
    plan
}

#[test]
fn field_agreement_catches_an_unmirrored_payment_update() {
    let plan = seed_with(|s| {
        s.paths.insert(
            WritePath::Webhook,
            PathStrategy {
                update_mirroring: Some(UpdateMirroring::None),
                ..PathStrategy::default()
            },
        );
    });
    caught(&plan, bugs(|_| {}), 5, Invariant::FieldAgreement);
}

#[test]
fn no_orphan_typed_row_catches_an_unmirrored_delete() {
    let plan = seed_with(|s| s.delete_mirroring = DeleteMirroring::LegacyOnly);
    caught(&plan, bugs(|_| {}), 5, Invariant::NoOrphanTypedRow);
}

#[test]
fn unique_typed_row_catches_a_blind_insert_backfill() {
    let plan = seed_with(|s| s.backfill_write = BackfillWrite::BlindInsert);
    caught(&plan, bugs(|_| {}), 5, Invariant::UniqueTypedRow);
}

#[test]
fn coverage_catches_a_backfill_that_skips_documents() {
    caught(
        &Plan::seed(),
        bugs(|b| b.backfill_skips_last = true),
        0,
        Invariant::Coverage,
    );
}

#[test]
fn referential_integrity_catches_a_wrong_remap() {
    caught(
        &Plan::seed(),
        bugs(|b| b.bogus_event_remap = true),
        0,
        Invariant::ReferentialIntegrity,
    );
}

#[test]
fn typed_row_valid_catches_writes_that_bypass_validation() {
    caught(
        &Plan::seed(),
        bugs(|b| b.invalid_ticket_number = true),
        0,
        Invariant::TypedRowValid,
    );
}

#[test]
fn deleted_stays_deleted_catches_a_resurrecting_refund() {
    caught(
        &Plan::seed(),
        bugs(|b| b.refund_upserts_stale_copy = true),
        0,
        Invariant::DeletedStaysDeleted,
    );
}

#[test]
fn acknowledged_write_kept_catches_typed_only_writes_to_legacy() {
    caught(
        &Plan::seed(),
        bugs(|b| b.typed_only_writes_legacy = true),
        0,
        Invariant::AcknowledgedWriteKept,
    );
}

#[test]
fn read_equivalence_catches_a_typed_list_read_that_loses_a_row() {
    caught(
        &Plan::seed(),
        bugs(|b| b.typed_list_drops_first = true),
        0,
        Invariant::ReadEquivalence,
    );
}

/// The plan decision of issue 2: a plan that hides quarantined documents at the read switch
/// is unsafe. A reader loses the document, found either by a read (read_equivalence) or by
/// re-reading the documents written since the last switch (acknowledged_write_kept).
#[test]
fn a_plan_that_hides_quarantined_documents_is_unsafe() {
    let mut plan = Plan::seed();
    plan.quarantine_reads = QuarantineReads::Hide;
    let report = check(
        &plan,
        &CheckOptions {
            cases: 200,
            sim: SimOptions {
                data: cutover::data::GenOptions {
                    dirty_percent: 20,
                    ..Default::default()
                },
                ..SimOptions::default()
            },
            ..CheckOptions::default()
        },
    );
    let c = report
        .counterexample
        .expect("hiding quarantined documents must be caught");
    assert!(
        matches!(
            c.failure.invariant,
            Invariant::ReadEquivalence | Invariant::AcknowledgedWriteKept
        ),
        "{}",
        c.failure
    );
    assert!(
        c.failure.expected.is_some_and(|e| e != "not found"),
        "the oracle still has the document"
    );
}
