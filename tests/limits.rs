//! A backfill batch is one mutation under Convex's per-transaction limits: a batch that does
//! not fit fails like Convex would and commits nothing, neither rows nor cursor.

use cutover::data::{GenOptions, generate};
use cutover::plan::{Phase, Plan};
use cutover::schema::Kind;
use cutover::store::{Limits, TxError};
use cutover::world::{BackfillOutcome, PlantedBugs, World};
use std::sync::Arc;

fn events_backfilling(limits: Limits) -> World {
    let data = generate(
        9,
        &GenOptions {
            documents: 2_000,
            dirty_percent: 0,
        },
    );
    let mut world = World::with_limits(
        Arc::new(Plan::seed()),
        &data,
        true,
        PlantedBugs::default(),
        limits,
    );
    world.advance(Kind::Events);
    world.advance(Kind::Events);
    assert_eq!(world.phase(Kind::Events), Phase::Backfill);
    world
}

#[test]
fn a_batch_over_the_write_limit_fails_and_commits_nothing() {
    // 25 events a batch: 25 typed rows, 25 id-map entries and the progress row.
    let mut world = events_backfilling(Limits {
        documents_written_max: 40,
        ..Limits::default()
    });
    let before = world.progress(Kind::Events);
    let outcome = world.backfill_batch(Kind::Events);
    assert!(matches!(outcome, Err(TxError::Limit(_))), "{outcome:?}");
    assert_eq!(
        world.progress(Kind::Events),
        before,
        "the cursor did not move"
    );
    assert!(
        world.store.is_empty(world.t.typed[Kind::Events.index()]),
        "no typed row was written"
    );
}

#[test]
fn a_batch_over_the_scan_limit_fails_and_a_batch_that_fits_succeeds() {
    let mut world = events_backfilling(Limits {
        documents_scanned_max: 20,
        ..Limits::default()
    });
    assert!(matches!(
        world.backfill_batch(Kind::Events),
        Err(TxError::Limit(_))
    ));
    let mut world = events_backfilling(Limits::default());
    assert!(matches!(
        world.backfill_batch(Kind::Events),
        Ok(BackfillOutcome::Batch { .. })
    ));
    assert!(world.progress(Kind::Events).processed > 0.0);
}
