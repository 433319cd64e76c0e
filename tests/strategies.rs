//! Every value of every `[strategy]` option has an effect the checker can see: each variant
//! here is the seed plan with one strategy changed, and `check` either finds it unsafe on the
//! named invariant or finds it safe. (The catalogue, tests/catalogue.rs, covers the rest.)

use cutover::explore::{CheckOptions, check};
use cutover::plan::Plan;
use cutover::sim::Invariant;

/// The seed plan with `table` (TOML) inserted before its `[[kinds]]`.
fn variant(table: &str) -> Plan {
    let seed = cutover::plan::SEED_PLAN;
    let at = seed.find("[[kinds]]").expect("the seed lists kinds");
    let text = format!("{}{table}\n\n{}", &seed[..at], &seed[at..]);
    Plan::parse(&text, "variant.toml").expect("the variant parses")
}

fn verdict(plan: &Plan, cases: usize) -> Option<(Invariant, usize)> {
    let report = check(
        plan,
        &CheckOptions {
            cases,
            ..CheckOptions::default()
        },
    );
    report
        .counterexample
        .map(|c| (c.failure.invariant, c.steps.len()))
}

#[test]
fn unsafe_strategies_are_caught_on_their_invariant() {
    let cases: [(&str, &[Invariant]); 11] = [
        // The typed row must exist for a replace; before the backfill it does not, and the
        // app's write fails where the app without the migration succeeds.
        (
            "[strategy]\nupdate_mirroring = \"replace\"",
            &[Invariant::AcknowledgedWriteKept],
        ),
        // Nothing but the backfill writes typed rows: a document created after the backfill
        // finished has none.
        (
            "[strategy]\ndouble_write = \"none\"",
            &[Invariant::Coverage],
        ),
        // The check and the insert are two transactions; a double write in between.
        (
            "[strategy]\nbackfill_write = \"check_then_insert\"",
            &[Invariant::UniqueTypedRow],
        ),
        // A held page written after its document was deleted brings the row back, whatever
        // the conflict policy.
        (
            "[strategy]\nbackfill_read = \"separate_transaction\"\nbackfill_conflict = \"newer_wins\"",
            &[Invariant::DeletedStaysDeleted],
        ),
        (
            "[strategy]\nbackfill_read = \"separate_transaction\"\nbackfill_conflict = \"skip_existing\"",
            &[Invariant::DeletedStaysDeleted],
        ),
        // A write that makes a document unmappable throws in the migrated app only.
        (
            "[strategy]\ninvalid_documents = \"throw\"",
            &[Invariant::AcknowledgedWriteKept],
        ),
        // Separate typed writes on the other action paths: a typed reader between the two
        // mutations misses the acknowledged write; a crash between them keeps the sides
        // apart for good.
        (
            "[strategy.paths.webhook]\ndouble_write = \"separate_mutation\"",
            &[Invariant::FieldAgreement, Invariant::AcknowledgedWriteKept],
        ),
        (
            "[strategy.paths.refund]\ndouble_write = \"separate_mutation\"",
            &[Invariant::FieldAgreement, Invariant::AcknowledgedWriteKept],
        ),
        // An action that captured the phases when it started writes as if the kind had not
        // moved on.
        (
            "[strategy]\nphase_source = \"captured_at_action_start\"",
            &[
                Invariant::FieldAgreement,
                Invariant::AcknowledgedWriteKept,
                Invariant::ReadEquivalence,
                Invariant::Coverage,
            ],
        ),
        // A delete shifts every later document one place back: the backfill skips one.
        (
            "[strategy]\nbackfill_cursor = \"offset\"",
            &[Invariant::Coverage],
        ),
        // The real app's first attempt (domain.md §3).
        (
            "[strategy]\ndouble_write = \"none\"\nupdate_mirroring = \"none\"\n\n[strategy.paths.app]\ndouble_write = \"none\"\n\n[strategy.paths.checkout]\ndouble_write = \"separate_mutation\"",
            &[Invariant::Coverage],
        ),
    ];
    for (table, expected) in cases {
        match verdict(&variant(table), 1_000) {
            Some((invariant, steps)) => {
                assert!(expected.contains(&invariant), "{table}: {invariant}");
                assert!(steps <= 16, "{table}: {steps} steps");
            }
            None => panic!("{table}: found safe"),
        }
    }
}

#[test]
fn safe_strategies_pass() {
    for table in [
        // A missing row is left to the backfill, which copies the document as it is then.
        "[strategy]\nupdate_mirroring = \"patch\"",
        // In the batch's own mutation, the existing row is the double write's, as new as the
        // document.
        "[strategy]\nbackfill_conflict = \"skip_existing\"",
        "[strategy]\nbackfill_conflict = \"newer_wins\"",
        // A document whose status moves it behind the cursor was double-written anyway.
        "[strategy]\nbackfill_cursor = \"status_index\"",
        // While objects is still written, a document without a typed row is read from it.
        "[strategy]\nread_mode = \"typed_with_fallback\"",
        "[strategy]\nread_mode = \"shadow\"",
    ] {
        assert_eq!(verdict(&variant(table), 300), None, "{table}");
    }
}

/// Shadow reads serve `objects` while the typed table is compared: reads may switch before
/// the backfill is done (the checks move to the guard on stopping legacy writes), and the
/// report counts what the typed side would have got wrong.
#[test]
fn shadow_reads_are_safe_before_the_backfill_and_count_what_typed_reads_would_miss() {
    let plan = variant("[strategy]\nread_mode = \"shadow\"");
    let text = toml::to_string(&plan).expect("plans serialize");
    let text = text
        .replace(
            "read_typed = [\"backfill_done\", \"diff_clean\"]",
            "read_typed = []",
        )
        .replace(
            "typed_only = [\"dependents_typed_only\", \"dependencies_clean\"]",
            "typed_only = [\"dependents_typed_only\", \"dependencies_clean\", \"backfill_done\", \"diff_clean\"]",
        );
    let plan = Plan::parse(&text, "shadow.toml").expect("parses");
    assert!(plan.guards.read_typed.is_empty());
    let report = check(
        &plan,
        &CheckOptions {
            cases: 300,
            ..CheckOptions::default()
        },
    );
    assert!(
        report.counterexample.is_none(),
        "shadow reads serve objects"
    );
    assert!(
        report.shadow_mismatches > 0,
        "typed reads before the backfill is done miss documents"
    );
    // The same plan with typed reads is unsafe.
    let typed = Plan::parse(
        &text.replace("read_mode = \"shadow\"", "read_mode = \"typed\""),
        "typed.toml",
    )
    .expect("parses");
    assert!(verdict(&typed, 1_000).is_some());
}

/// Two backfill runners at once: with a batch that checks in one transaction and inserts in
/// the next, both runners read the same page and both insert, with no app write involved.
/// One runner alone does not.
#[test]
fn a_second_backfill_runner_duplicates_rows_of_a_two_step_batch() {
    use cutover::schema::Kind;
    use cutover::sim::{Op, Sim, SimOptions, Step};
    let step = |op| Step {
        op,
        skew: 0,
        fault: None,
    };
    let events = Kind::Events;
    let plan = std::sync::Arc::new(variant(
        "[strategy]\nbackfill_write = \"check_then_insert\"",
    ));
    let advance = [
        step(Op::Advance { kind: events }),
        step(Op::Advance { kind: events }),
    ];
    let batch = |runner| {
        step(Op::Backfill {
            kind: events,
            runner,
        })
    };
    let mut two = advance.to_vec();
    two.extend([batch(0), batch(1), batch(0), batch(1)]);
    let mut one = advance.to_vec();
    one.extend([batch(0), batch(0), batch(0), batch(0)]);
    let run = |steps: &[Step]| Sim::new(plan.clone(), &SimOptions::default(), 3).run(steps);
    assert_eq!(run(&one), Ok(()));
    let failure = run(&two).expect_err("two runners duplicate the page's rows");
    assert_eq!(failure.invariant, Invariant::UniqueTypedRow, "{failure}");
}

/// A kind's own `[kinds.strategy]` overrides the plan-wide choice for that kind only.
#[test]
fn a_strategy_can_differ_per_kind() {
    use cutover::plan::{DeleteMirroring, KindStrategy};
    use cutover::schema::Kind;
    // Deletes of events only are not mirrored: the orphan is always an event row.
    let mut plan = Plan::seed();
    plan.kinds[0].strategy = Some(KindStrategy {
        delete_mirroring: Some(DeleteMirroring::LegacyOnly),
        ..KindStrategy::default()
    });
    assert_eq!(
        plan.strategy_for(Kind::Events).delete_mirroring,
        DeleteMirroring::LegacyOnly
    );
    assert_eq!(
        plan.strategy_for(Kind::Tickets).delete_mirroring,
        DeleteMirroring::Both
    );
    let text = toml::to_string(&plan).expect("plans serialize");
    assert!(text.contains("[kinds.strategy]"), "{text}");
    let plan = Plan::parse(&text, "per-kind.toml").expect("parses back");
    let report = check(&plan, &CheckOptions::default());
    let c = report
        .counterexample
        .expect("unmirrored event deletes are caught");
    assert_eq!(c.failure.invariant, Invariant::NoOrphanTypedRow);
    assert!(
        c.failure.message.starts_with("events:"),
        "{}",
        c.failure.message
    );
}

/// Rolling back from `typed_only` is unsafe (the catalogue's `rollback_after_typed_only`)
/// unless the rollback first copies the typed-only writes back to `objects`.
#[test]
fn a_rollback_from_typed_only_that_mirrors_back_is_safe() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plans/unsafe/rollback_after_typed_only.toml");
    let text = std::fs::read_to_string(path).expect("catalogue entry");
    let unsafe_plan = Plan::parse(&text, "rollback_after_typed_only.toml").expect("parses");
    let mut plan = unsafe_plan.clone();
    plan.strategy.rollback_mirror = true;
    assert!(verdict(&unsafe_plan, 1_000).is_some());
    assert_eq!(verdict(&plan, 1_000), None);
}

/// Typed first: an update's typed row is written before its legacy document. A crash in
/// between leaves the typed row ahead; typed readers in between see a write the legacy
/// side has not made. (Without injected retry exhaustion, which fails the extra mutation of
/// any separate placement first.)
#[test]
fn a_typed_first_double_write_in_an_action_is_caught() {
    use cutover::anomaly::Anomaly;
    use cutover::explore::Swarm;
    let swarm = Swarm {
        retry_fault_percent: 0,
        reject_fault_percent: 0,
        ..Swarm::max_faults()
    };
    for path in ["checkout", "webhook", "refund"] {
        let plan = variant(&format!(
            "[strategy.paths.{path}]\ndouble_write = \"separate_typed_first\""
        ));
        let report = check(
            &plan,
            &CheckOptions {
                fixed_swarm: Some(swarm.clone()),
                ..CheckOptions::default()
            },
        );
        let c = report
            .counterexample
            .unwrap_or_else(|| panic!("{path}: typed first found safe"));
        let explained = c.failure.explained.expect("explained");
        assert!(
            matches!(
                explained.anomaly,
                Anomaly::DivergentDoubleWrite | Anomaly::MissingRowAfterReadSwitch
            ),
            "{path}: {}: {}",
            explained.anomaly,
            explained.explanation
        );
    }
}
