//! A team's own write path and read, checked by the same checker with the same invariants
//! as the built-in ones (see `cutover::extension`).
//!
//! Run with `cargo run --release --example custom_write_path`.

use cutover::explore::{CheckOptions, check};
use cutover::extension::{Extensions, ReadExt, WritePathExt};
use cutover::plan::Plan;
use cutover::schema::Kind;
use cutover::store::{Tx, TxError};
use cutover::value::Value;
use cutover::world::{Arg, Change, Ctx, Key};

/// The venue team's "move an event to another hall" mutation, written against the app's
/// update path: the plan's phases and strategies decide where it writes.
struct MoveVenue;

impl WritePathExt for MoveVenue {
    fn name(&self) -> &str {
        "move venue"
    }

    fn kind(&self) -> Kind {
        Kind::Events
    }

    fn write(&self, ctx: &Ctx, tx: &mut Tx<'_>, key: Key, seed: u16) -> Result<(), TxError> {
        let hall = Value::from(format!("Hall {}", seed % 7));
        ctx.update(
            tx,
            Kind::Events,
            key,
            &[Change {
                field: "location",
                value: Some(Arg::Plain(hall)),
            }],
        )
    }
}

/// The venue page's read: an event's location, through the app's read path.
struct VenueOf;

impl ReadExt for VenueOf {
    fn name(&self) -> &str {
        "venue of"
    }

    fn kind(&self) -> Kind {
        Kind::Events
    }

    fn read(&self, ctx: &Ctx, tx: &mut Tx<'_>, key: Key) -> Result<Value, TxError> {
        Ok(ctx
            .read_one(tx, Kind::Events, key)?
            .and_then(|view| view.as_object()?.get("location").cloned())
            .unwrap_or(Value::Null))
    }
}

fn main() {
    let mut options = CheckOptions {
        cases: 300,
        ..CheckOptions::default()
    };
    options.sim.extensions = Extensions::default()
        .with_write(MoveVenue)
        .with_read(VenueOf);
    let report = check(&Plan::seed(), &options);
    match report.counterexample {
        None => println!(
            "seed plan with the custom write path and read: safe over {} cases ({} reads compared)",
            report.cases, report.reads
        ),
        Some(c) => {
            println!("unsafe: {}", c.failure);
            std::process::exit(1);
        }
    }
}
