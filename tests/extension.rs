//! The extension API: a team's own write paths and reads run through the same checker with
//! the same invariants. A correct custom write path passes; a buggy one, which writes the
//! legacy document behind the migration's back, is caught.

use cutover::explore::{CheckOptions, check};
use cutover::extension::{Extensions, ReadExt, WritePathExt};
use cutover::plan::Plan;
use cutover::schema::Kind;
use cutover::sim::Invariant;
use cutover::store::{Tx, TxError};
use cutover::value::Value;
use cutover::world::{Arg, Change, Ctx, Key};

/// Renames a ticket's holder through the app's update path.
struct RenameHolder;

impl WritePathExt for RenameHolder {
    fn name(&self) -> &str {
        "rename holder"
    }
    fn kind(&self) -> Kind {
        Kind::Tickets
    }
    fn write(&self, ctx: &Ctx, tx: &mut Tx<'_>, key: Key, seed: u16) -> Result<(), TxError> {
        ctx.update(
            tx,
            Kind::Tickets,
            key,
            &[Change {
                field: "holderName",
                value: Some(Arg::Plain(Value::from(format!("Guest {seed}")))),
            }],
        )
    }
}

/// The same rename written the way the legacy app did it: a raw patch of the `objects`
/// document the client's handle points at, with no double write.
struct RawRenameHolder;

impl WritePathExt for RawRenameHolder {
    fn name(&self) -> &str {
        "raw rename holder"
    }
    fn kind(&self) -> Kind {
        Kind::Tickets
    }
    fn write(&self, ctx: &Ctx, tx: &mut Tx<'_>, key: Key, seed: u16) -> Result<(), TxError> {
        let Some(id) = ctx.handle(key) else {
            return Ok(());
        };
        let Some(doc) = tx.get(id)? else {
            return Err(TxError::NotFound(format!("ticket #{key}")));
        };
        let mut fields = doc.fields.clone();
        if let Some(Value::Object(cp)) = fields.get_mut("customProperties") {
            cp.insert("holderName".into(), Value::from(format!("Guest {seed}")));
        } else {
            fields.insert("holderName".into(), Value::from(format!("Guest {seed}")));
        }
        tx.replace(id, fields)
    }
}

/// A ticket's holder, through the app's read path.
struct HolderOf;

impl ReadExt for HolderOf {
    fn name(&self) -> &str {
        "holder of"
    }
    fn kind(&self) -> Kind {
        Kind::Tickets
    }
    fn read(&self, ctx: &Ctx, tx: &mut Tx<'_>, key: Key) -> Result<Value, TxError> {
        Ok(ctx
            .read_one(tx, Kind::Tickets, key)?
            .and_then(|v| v.as_object()?.get("holderName").cloned())
            .unwrap_or(Value::Null))
    }
}

fn options(extensions: Extensions, cases: usize) -> CheckOptions {
    let mut options = CheckOptions {
        cases,
        ..CheckOptions::default()
    };
    options.sim.extensions = extensions;
    options
}

#[test]
fn a_custom_write_path_and_read_through_the_app_paths_pass() {
    let report = check(
        &Plan::seed(),
        &options(
            Extensions::default()
                .with_write(RenameHolder)
                .with_read(HolderOf),
            300,
        ),
    );
    assert!(
        report.counterexample.is_none(),
        "{:?}",
        report.counterexample.map(|c| c.failure)
    );
}

#[test]
fn a_custom_write_path_that_bypasses_the_double_write_is_caught() {
    let report = check(
        &Plan::seed(),
        &options(
            Extensions::default()
                .with_write(RawRenameHolder)
                .with_read(HolderOf),
            1_000,
        ),
    );
    let c = report
        .counterexample
        .expect("a write that skips the typed side is caught");
    assert!(
        matches!(
            c.failure.invariant,
            Invariant::FieldAgreement
                | Invariant::ReadEquivalence
                | Invariant::AcknowledgedWriteKept
        ),
        "{}",
        c.failure
    );
    assert!(
        c.trace
            .iter()
            .any(|t| t.action.contains("raw rename holder")),
        "the counterexample runs the custom write path"
    );
    assert!(c.steps.len() <= 16, "{} steps", c.steps.len());
}

/// A team's own events backfill: pages `objects.by_type` after its persisted cursor and
/// syncs each event, as the seed's does. `skip_last` plants the classic bug of advancing
/// the cursor past a document it never copied.
struct EventsBackfill {
    skip_last: bool,
}

impl cutover::extension::BackfillExt for EventsBackfill {
    fn name(&self) -> &str {
        if self.skip_last {
            "events backfill (skips the last of each page)"
        } else {
            "events backfill"
        }
    }
    fn kind(&self) -> Kind {
        Kind::Events
    }
    fn batch(&self, ctx: &Ctx, tx: &mut Tx<'_>) -> Result<String, TxError> {
        let mut progress = ctx.backfill_progress(tx, Kind::Events)?;
        if progress.done {
            return Ok("done".into());
        }
        let after = progress.cursor.as_ref().and_then(|c| ctx.cursor_key(c));
        let page = tx.page(
            ctx.t.objects_by_type,
            &[Value::from("event")],
            after.as_ref(),
            10,
        )?;
        let n = page.docs.len();
        for (i, doc) in page.docs.iter().enumerate() {
            if self.skip_last && i + 1 == n && n > 1 {
                continue;
            }
            ctx.sync(tx, Kind::Events, doc.id)?;
        }
        progress.processed += n as f64;
        progress.done = page.done;
        if let Some(c) = &page.cursor {
            progress.cursor = Some(ctx.cursor_value(c));
        }
        ctx.save_backfill_progress(tx, Kind::Events, &progress)?;
        Ok(format!("{n} documents"))
    }
}

#[test]
fn a_custom_backfill_replaces_the_built_in_one_and_its_bug_is_caught() {
    let good = check(
        &Plan::seed(),
        &options(
            Extensions::default().with_backfill(EventsBackfill { skip_last: false }),
            300,
        ),
    );
    assert!(
        good.counterexample.is_none(),
        "{:?}",
        good.counterexample.map(|c| c.failure)
    );
    assert_eq!(
        good.phase_max[Kind::Events.index()],
        Some(cutover::plan::Phase::TypedOnly),
        "events finish their backfill with it"
    );
    let bad = check(
        &Plan::seed(),
        &options(
            Extensions::default().with_backfill(EventsBackfill { skip_last: true }),
            1_000,
        ),
    );
    let c = bad
        .counterexample
        .expect("the skipped documents are caught");
    assert_eq!(c.failure.invariant, Invariant::Coverage, "{}", c.failure);
    assert!(
        c.trace
            .iter()
            .any(|t| t.action.contains("skips the last of each page"))
    );
}
