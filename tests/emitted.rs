//! A test exactly as `cutover replay FILE --emit-test` prints it, for the catalogue entry
//! `backfill_stale_copy` (`cutover check --plan plans/unsafe/backfill_stale_copy.toml --save
//! FILE`): it shows that the emitted code compiles and reproduces the failure.

/// Replays a counterexample `cutover check` found for plan "backfill_stale_copy" (case seed 0,
/// cutover 0.1.0): field_agreement broke at step 4.
#[test]
fn backfill_stale_copy_field_agreement_at_step_4() {
    use cutover::plan::Plan;
    use cutover::sim::{Invariant, Sim, SimOptions, Step};
    let plan = Plan::parse(r###"name = "backfill_stale_copy"
description = "The backfill reads a page in one transaction and writes it in the next, overwriting a newer double-written value with the stale copy it read."
schema_validation = true
batch_size = 25
quarantine_reads = "serve_from_legacy"
rollback_from = ["read_typed"]
legacy_reads = []

[guards]
double_write = ["dependencies_backfilled"]
backfill = []
read_typed = ["backfill_done", "diff_clean"]
typed_only = ["dependents_typed_only", "dependencies_clean"]

[strategy]
double_write = "same_mutation"
update_mirroring = "upsert"
delete_mirroring = "both"
backfill_write = "upsert"
backfill_conflict = "overwrite"
backfill_read = "separate_transaction"
backfill_start = "with_double_write"
invalid_documents = "quarantine"
references = "remap"
phase_source = "per_mutation"
read_mode = "typed"
backfill_cursor = "creation_order"
rollback_mirror = false
webhook_dedupe = true

[strategy.paths]

[[kinds]]
kind = "events"
depends_on = []

[[kinds]]
kind = "transactions"
depends_on = ["events"]

[[kinds]]
kind = "tickets"
depends_on = ["events", "transactions"]
"###, "backfill_stale_copy").expect("the plan parses");
    let steps: Vec<Step> = serde_json::from_str(
        r###"[
  {
    "op": "advance",
    "kind": "events"
  },
  {
    "op": "advance",
    "kind": "events"
  },
  {
    "op": "backfill",
    "kind": "events"
  },
  {
    "op": "edit_event",
    "event": 0,
    "seed": 0
  },
  {
    "op": "backfill",
    "kind": "events"
  }
]"###,
    )
    .expect("the steps parse");
    let options = SimOptions {
        data: serde_json::from_str(r###"{"documents":60,"dirty_percent":5}"###)
            .expect("the data options parse"),
        skew_max_ms: 30,
        ..SimOptions::default()
    };
    let mut sim = Sim::new(std::sync::Arc::new(plan), &options, 3237998080);
    let failure = sim.run(&steps).expect_err("the plan breaks an invariant");
    assert_eq!(failure.invariant, Invariant::FieldAgreement);
    assert_eq!(failure.step, 4);
}
