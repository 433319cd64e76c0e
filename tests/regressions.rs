//! Named regression tests for real bugs that exploration found. Seeds go stale when the
//! generators change; these step lists do not.

use cutover::data::GenOptions;
use cutover::plan::Plan;
use cutover::schema::Kind;
use cutover::sim::{Op, Sim, SimOptions, Step};
use std::sync::Arc;

fn step(op: Op) -> Step {
    Step { op, skew: 0 }
}

/// Takes a kind from `legacy` to `read_typed`, backfilling on the way.
fn to_read_typed(kind: Kind) -> Vec<Step> {
    let mut steps = vec![step(Op::Advance { kind }), step(Op::Advance { kind })];
    steps.extend((0..8).map(|_| step(Op::Backfill { kind })));
    steps.push(step(Op::Advance { kind }));
    steps
}

fn clean_sim() -> Sim {
    let options = SimOptions {
        data: GenOptions {
            documents: 60,
            dirty_percent: 0,
        },
        ..SimOptions::default()
    };
    Sim::new(Arc::new(Plan::seed()), &options, 50)
}

/// Postmortem: in `typed_only`, a delete removes only the typed row and leaves the retired
/// legacy copy in `objects`. A payment webhook already in flight then found no typed row and
/// fell back to the legacy write path, which is meant only for quarantined documents: it
/// patched the stale legacy copy and the sync re-created the typed row of a deleted
/// transaction. Found by `cutover check` (seed 50 at the time). Fix: the legacy fallback in
/// `typed_only` applies to quarantined documents only.
#[test]
fn typed_only_delete_then_in_flight_webhook_does_not_resurrect_the_transaction() {
    let mut sim = clean_sim();
    let mut steps = Vec::new();
    for kind in Kind::ALL {
        steps.extend(to_read_typed(kind));
    }
    steps.extend([
        step(Op::Advance {
            kind: Kind::Tickets,
        }),
        step(Op::Advance {
            kind: Kind::Transactions,
        }),
        step(Op::PaymentWebhook { txn: 0, status: 1 }),
        step(Op::ActionStep { slot: 0 }),
        step(Op::Delete {
            kind: Kind::Transactions,
            target: 0,
        }),
        step(Op::ActionStep { slot: 0 }),
    ]);
    sim.run(&steps).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        sim.migrated.phase(Kind::Transactions),
        cutover::plan::Phase::TypedOnly
    );
}

/// Postmortem: deleting an event leaves references to it behind, in legacy documents as in
/// the real app. When a transaction that referenced the deleted event was next written, its
/// mapping found no typed event row for the reference and quarantined the transaction; a
/// checkout's linking step in `typed_only` for tickets then could not point the ticket at the
/// now-quarantined transaction, and the write failed where the app without the migration
/// succeeded. Found by `cutover check --seed 10000 --cases 3000` (case seed 11304). Fix: the
/// migration keeps every legacy id -> typed id pair in `migrationIdMap`, so a reference to a
/// deleted entity maps to the typed id it had, dangling exactly as the legacy one does.
#[test]
fn reference_to_a_deleted_event_does_not_quarantine_its_transaction() {
    let mut sim = clean_sim();
    let mut steps = Vec::new();
    for kind in Kind::ALL {
        steps.extend(to_read_typed(kind));
    }
    steps.push(step(Op::Advance {
        kind: Kind::Tickets,
    }));
    steps.push(step(Op::Checkout {
        event: 0,
        product: 0,
        quantity: 1,
        v1: false,
        seed: 0,
    }));
    steps.extend((0..3).map(|_| step(Op::ActionStep { slot: 0 })));
    steps.push(step(Op::Delete {
        kind: Kind::Events,
        target: 0,
    }));
    steps.extend((0..3).map(|_| step(Op::ActionStep { slot: 0 })));
    sim.run(&steps).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        sim.migrated.phase(Kind::Tickets),
        cutover::plan::Phase::TypedOnly
    );
}
