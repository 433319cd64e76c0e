//! The extension API: a team's own write paths, reads and backfills, written in Rust against the same
//! world API the built-in ones use, and checked by the same checker with the same
//! invariants.
//!
//! A write path runs as one mutation in each world (the migrated app and the app without
//! the migration), on an entity of its kind that the workload picks. Inside it, `Ctx` offers
//! the write paths of the app as the plan's phases and strategies route them (`Ctx::create`,
//! `Ctx::update`, `Ctx::delete`, `Ctx::read_one`, ...), and `Tx` the raw Convex operations.
//! A read runs in both worlds and must return the same value in both, in key space (use
//! `Ctx::read_one` or `Ctx::read_list`, whose views name entities by key).
//!
//! ```no_run
//! use cutover::extension::{Extensions, WritePathExt};
//! use cutover::explore::{CheckOptions, check};
//! use cutover::plan::Plan;
//! use cutover::schema::Kind;
//! use cutover::store::{Tx, TxError};
//! use cutover::value::Value;
//! use cutover::world::{Arg, Change, Ctx, Key};
//!
//! /// Renames an event's venue through the app's update path.
//! struct MoveVenue;
//!
//! impl WritePathExt for MoveVenue {
//!     fn name(&self) -> &str {
//!         "move venue"
//!     }
//!     fn kind(&self) -> Kind {
//!         Kind::Events
//!     }
//!     fn write(&self, ctx: &Ctx, tx: &mut Tx<'_>, key: Key, seed: u16) -> Result<(), TxError> {
//!         let venue = Value::from(format!("Hall {}", seed % 7));
//!         ctx.update(tx, Kind::Events, key, &[Change {
//!             field: "location",
//!             value: Some(Arg::Plain(venue)),
//!         }])
//!     }
//! }
//!
//! let mut options = CheckOptions::default();
//! options.sim.extensions = Extensions::default().with_write(MoveVenue);
//! let report = check(&Plan::seed(), &options);
//! assert!(report.counterexample.is_none());
//! ```

use crate::schema::Kind;
use crate::store::{Tx, TxError};
use crate::value::Value;
use crate::world::{Ctx, Key};
use std::fmt;
use std::sync::Arc;

/// A write path of the app written by a user.
pub trait WritePathExt: Send + Sync {
    /// A short name for traces.
    fn name(&self) -> &str;
    /// The kind of entity it writes; the workload picks an existing one.
    fn kind(&self) -> Kind;
    /// One mutation on entity `key`, run in each world. `seed` varies what it writes.
    /// Returning `Err` makes the mutation commit nothing, as a thrown error does in Convex.
    fn write(&self, ctx: &Ctx, tx: &mut Tx<'_>, key: Key, seed: u16) -> Result<(), TxError>;
}

/// A read of the app written by a user.
pub trait ReadExt: Send + Sync {
    /// A short name for traces.
    fn name(&self) -> &str;
    /// The kind of entity it reads; the workload picks an existing one.
    fn kind(&self) -> Kind;
    /// What a reader sees of entity `key` in one world (in key space, as views are).
    fn read(&self, ctx: &Ctx, tx: &mut Tx<'_>, key: Key) -> Result<Value, TxError>;
}

/// A backfill written by a user, replacing the built-in one for its kind: each backfill step
/// of that kind runs one batch, as one mutation in the migrated world, while the kind's
/// phase runs backfills. Its progress lives where the built-in one keeps it
/// (`Ctx::backfill_progress`, `Ctx::save_backfill_progress`): the phase controller's
/// `backfill_done` guard and the coverage check read `done` there. `Ctx::sync` writes one
/// document's typed row as the seed's double write does.
pub trait BackfillExt: Send + Sync {
    /// A short name for traces.
    fn name(&self) -> &str;
    /// The kind it backfills.
    fn kind(&self) -> Kind;
    /// One batch; the returned text is shown in traces.
    fn batch(&self, ctx: &Ctx, tx: &mut Tx<'_>) -> Result<String, TxError>;
}

/// The extensions a run uses (`SimOptions::extensions`). When it has any, `check` generates
/// their operations beside the built-in ones.
#[derive(Clone, Default)]
pub struct Extensions {
    pub writes: Vec<Arc<dyn WritePathExt>>,
    pub reads: Vec<Arc<dyn ReadExt>>,
    pub backfills: Vec<Arc<dyn BackfillExt>>,
}

impl Extensions {
    /// Adds a write path.
    pub fn with_write(mut self, w: impl WritePathExt + 'static) -> Extensions {
        self.writes.push(Arc::new(w));
        self
    }

    /// Adds a read.
    pub fn with_read(mut self, r: impl ReadExt + 'static) -> Extensions {
        self.reads.push(Arc::new(r));
        self
    }

    /// Adds a backfill (replacing the built-in one for its kind).
    pub fn with_backfill(mut self, b: impl BackfillExt + 'static) -> Extensions {
        self.backfills.push(Arc::new(b));
        self
    }

    /// The backfill that replaces the built-in one for `kind`, if any.
    pub fn backfill(&self, kind: Kind) -> Option<Arc<dyn BackfillExt>> {
        self.backfills.iter().find(|b| b.kind() == kind).cloned()
    }

    fn names(&self) -> Vec<&str> {
        self.writes
            .iter()
            .map(|w| w.name())
            .chain(self.reads.iter().map(|r| r.name()))
            .chain(self.backfills.iter().map(|b| b.name()))
            .collect()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// Two sets of extensions are equal when they hold the same extensions (by identity).
impl PartialEq for Extensions {
    fn eq(&self, other: &Self) -> bool {
        self.writes.len() == other.writes.len()
            && self.reads.len() == other.reads.len()
            && self
                .writes
                .iter()
                .zip(&other.writes)
                .all(|(a, b)| Arc::ptr_eq(a, b))
            && self
                .reads
                .iter()
                .zip(&other.reads)
                .all(|(a, b)| Arc::ptr_eq(a, b))
            && self.backfills.len() == other.backfills.len()
            && self
                .backfills
                .iter()
                .zip(&other.backfills)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Eq for Extensions {}
