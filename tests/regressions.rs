//! Named regression tests for real bugs that exploration found. Seeds go stale when the
//! generators change; these step lists do not.

use cutover::data::GenOptions;
use cutover::plan::Plan;
use cutover::schema::Kind;
use cutover::sim::{Op, Sim, SimOptions, Step};
use std::sync::Arc;

fn step(op: Op) -> Step {
    Step {
        op,
        skew: 0,
        fault: None,
    }
}

/// Takes a kind from `legacy` to `read_typed`, backfilling on the way.
fn to_read_typed(kind: Kind) -> Vec<Step> {
    let mut steps = vec![step(Op::Advance { kind }), step(Op::Advance { kind })];
    steps.extend((0..8).map(|_| step(Op::Backfill { kind, runner: 0 })));
    steps.push(step(Op::Advance { kind }));
    steps
}

/// Takes every kind, in migration order, from `legacy` to `read_typed`.
fn all_to_read_typed() -> Vec<Step> {
    Kind::ALL.into_iter().flat_map(to_read_typed).collect()
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
    let mut steps = all_to_read_typed();
    steps.extend([
        step(Op::Advance {
            kind: Kind::Tickets,
        }),
        step(Op::Advance {
            kind: Kind::Transactions,
        }),
        step(Op::PaymentWebhook {
            lane: 0,
            txn: 0,
            status: 1,
        }),
        step(Op::ActionStep { lane: 0 }),
        step(Op::Delete {
            kind: Kind::Transactions,
            target: 0,
        }),
        step(Op::ActionStep { lane: 0 }),
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
    let mut steps = all_to_read_typed();
    steps.push(step(Op::Advance {
        kind: Kind::Tickets,
    }));
    steps.push(step(Op::Checkout {
        lane: 0,
        event: 0,
        product: 0,
        quantity: 1,
        v1: false,
        seed: 0,
    }));
    steps.extend((0..3).map(|_| step(Op::ActionStep { lane: 0 })));
    steps.push(step(Op::Delete {
        kind: Kind::Events,
        target: 0,
    }));
    steps.extend((0..3).map(|_| step(Op::ActionStep { lane: 0 })));
    sim.run(&steps).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        sim.migrated.phase(Kind::Tickets),
        cutover::plan::Phase::TypedOnly
    );
}

/// A legacy database of one purchase whose ticket lacks its holder's email, so it stays
/// quarantined: event 0, product 1, checkout session 2, ticket 3, transaction 4.
fn one_purchase_with_a_dirty_ticket() -> cutover::data::Dataset {
    use cutover::data::*;
    use cutover::value::Fields;
    let mut rng = rng(5);
    let org = org_ref(0);
    let at = 1_735_689_600_000.0;
    let event = object_fields(
        &org,
        "event",
        None,
        "Expo".into(),
        "published",
        event_properties(&mut rng),
        at,
    );
    let product = object_fields(
        &org,
        "product",
        Some("ticket"),
        "Expo admission".into(),
        "active",
        Fields::new(),
        at,
    );
    let session = object_fields(
        &org,
        "checkout_session",
        None,
        "Checkout".into(),
        "completed",
        Fields::new(),
        at,
    );
    let (e, p, s) = (object_ref(0), object_ref(1), object_ref(2));
    let purchase = Purchase {
        product: &p,
        product_name: "Expo admission",
        event: &e,
        event_name: "Expo",
        session: &s,
        quantity: 1,
        unit_price: 2500.0,
    };
    let mut ticket_cp = ticket_properties(&mut rng, &purchase, 1);
    ticket_cp.remove("holderEmail");
    ticket_cp.insert("transactionId".into(), object_ref(4));
    let ticket = object_fields(
        &org,
        "ticket",
        Some("general"),
        "Expo #1".into(),
        "issued",
        ticket_cp,
        at,
    );
    let txn_cp = transaction_properties(&mut rng, TxShape::V2, &purchase, "paid", true);
    let txn = object_fields(
        &org,
        "transaction",
        Some("ticket_purchase"),
        "Order".into(),
        "active",
        txn_cp,
        at,
    );
    Dataset {
        organizations: vec!["Expo GmbH".into()],
        objects: [event, product, session, ticket, txn]
            .into_iter()
            .map(|fields| SeedObject { fields, dirt: None })
            .collect(),
        links: vec![
            SeedLink {
                from: 3,
                to: 0,
                link_type: "admits_to",
            },
            SeedLink {
                from: 4,
                to: 3,
                link_type: "has_ticket",
            },
        ],
    }
}

/// Postmortem: once every kind was typed-only, a quarantined ticket (it still lives in
/// `objects`) was moved to an event created typed-only. The legacy write did not record the
/// `admits_to` link, because links were only written between two `objects` documents, so the
/// typed read path's legacy part for quarantined tickets (it follows links from the event)
/// lost the ticket: "tickets of event" returned nothing where the app without the migration
/// returned it. Found by `cutover check --seed 7000 --cases 1000 --steps 1000 --dirty 20`
/// (case seed 7214). Fix: a legacy document's links are written whenever either end lives in
/// `objects`, and legacy reads follow links from the id the client holds.
#[test]
fn quarantined_ticket_moved_to_a_typed_only_event_is_still_listed_under_it() {
    let options = SimOptions::default();
    let mut sim = Sim::from_dataset(
        Arc::new(Plan::seed()),
        &options,
        &one_purchase_with_a_dirty_ticket(),
    );
    let mut steps = all_to_read_typed();
    for kind in [Kind::Tickets, Kind::Transactions, Kind::Events] {
        steps.push(step(Op::Advance { kind }));
    }
    steps.extend([
        step(Op::CreateEvent { org: 0, seed: 1 }),
        step(Op::Ticket {
            ticket: 0,
            change: cutover::sim::TicketChange::Move { event: 1 },
        }),
        step(Op::Read {
            read: cutover::sim::Read::TicketsOfEvent { event: 1 },
        }),
    ]);
    sim.run(&steps).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(sim.migrated.phases(), [cutover::plan::Phase::TypedOnly; 3]);
    assert_eq!(sim.pending(Kind::Tickets), 0);
}

/// Postmortem: when a write to an already migrated event could not be written to the typed
/// table (its typed write rejected), the sync quarantined the event and deleted its typed
/// row; a quarantine retry then gave it a new typed row with a new id, while the
/// transactions that referenced the old one kept it, and once transactions went typed-only
/// their rows pointed at no event. Found by `cutover check --cases 5000 --seed 7000` (case
/// seed 10800) after the typed-write-rejected fault was added. Fix: a quarantined document
/// keeps the typed row it had (reads serve it from `objects` while it is quarantined), so
/// typed ids never change.
#[test]
fn a_quarantine_episode_keeps_the_typed_id_of_a_referenced_event() {
    use cutover::sim::Fault;
    let mut sim = clean_sim();
    let events = Kind::Events;
    let mut steps = all_to_read_typed();
    sim.run(&steps).unwrap_or_else(|f| panic!("{f}"));
    let event = sim.migrated.handle(0).expect("event 0 exists");
    let typed_id = |sim: &Sim| {
        sim.migrated
            .peek_typed_rows(events, event)
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    let before = typed_id(&sim);
    assert_eq!(before.len(), 1);
    steps = vec![
        Step {
            op: Op::GenericUpdate {
                kind: events,
                target: 0,
                seed: 0,
            },
            skew: 0,
            fault: Some(Fault::TypedWriteRejected),
        },
        step(Op::RetryQuarantine { kind: events }),
    ];
    sim.run(&steps).unwrap_or_else(|f| panic!("{f}"));
    assert!(
        !sim.migrated.peek_quarantined(event),
        "the retry released it"
    );
    assert_eq!(typed_id(&sim), before, "the event kept its typed id");
    // Every transaction, written once typed-only, still references a live event row.
    let mut steps: Vec<Step> = [Kind::Tickets, Kind::Transactions]
        .into_iter()
        .map(|kind| step(Op::Advance { kind }))
        .collect();
    steps.extend((0..16).map(|target| {
        step(Op::GenericUpdate {
            kind: Kind::Transactions,
            target,
            seed: 0,
        })
    }));
    sim.run(&steps).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        sim.migrated.phase(Kind::Transactions),
        cutover::plan::Phase::TypedOnly
    );
}

/// Found by `cutover sweep --seeds 200000..230000 --documents 200 --steps 400` (seed
/// 202442, the only failing seed of 30,000), the seed plan's first counterexample. Tickets
/// went `typed_only` while events were still double-written; `dependencies_clean` held at
/// that switch, but it is checked once: at step 21 a new event's typed half is rejected by
/// the validator (the `typed_write_rejected` fault) and the event goes to the quarantine,
/// and at step 22 moving a ticket to that event failed in the migrated app (a typed ticket
/// cannot reference an event without a typed row) while the app without the migration
/// accepted it. A guard cannot prevent it (the quarantine comes after the switch), and the
/// event cannot be migrated on demand (its typed write is what was rejected). The fix: such
/// a typed-only update moves the ticket back to `objects`, quarantined, the way a document
/// created typed-only that cannot be typed lives on there, and reads serve it from there.
/// With the old behaviour planted (`typed_only_rejects_unresolved_references`), the same
/// steps fail as they did.
#[test]
fn seed_plan_moves_a_ticket_to_an_event_quarantined_after_tickets_went_typed_only() {
    use cutover::plan::Plan;
    use cutover::sim::{Invariant, Sim, SimOptions, Step};
    let steps: Vec<Step> = serde_json::from_str(
        r###"[
  {
    "op": "advance",
    "kind": "events"
  },
  {
    "op": "create_event",
    "org": 0,
    "seed": 0
  },
  {
    "op": "create_event",
    "org": 0,
    "seed": 0
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
    "op": "advance",
    "kind": "transactions"
  },
  {
    "op": "advance",
    "kind": "transactions"
  },
  {
    "op": "repair",
    "kind": "events",
    "target": 0
  },
  {
    "op": "backfill",
    "kind": "transactions"
  },
  {
    "op": "backfill",
    "kind": "transactions"
  },
  {
    "op": "advance",
    "kind": "tickets"
  },
  {
    "op": "advance",
    "kind": "tickets"
  },
  {
    "op": "backfill",
    "kind": "tickets",
    "runner": 1
  },
  {
    "op": "create_event",
    "org": 0,
    "seed": 0
  },
  {
    "op": "backfill",
    "kind": "tickets"
  },
  {
    "op": "repair",
    "kind": "transactions",
    "target": 0
  },
  {
    "op": "create_event",
    "org": 0,
    "seed": 0
  },
  {
    "op": "backfill",
    "kind": "tickets"
  },
  {
    "op": "backfill",
    "kind": "tickets"
  },
  {
    "op": "advance",
    "kind": "tickets"
  },
  {
    "op": "advance",
    "kind": "tickets"
  },
  {
    "op": "create_event",
    "org": 0,
    "seed": 0,
    "fault": "typed_write_rejected"
  },
  {
    "op": "ticket",
    "ticket": 0,
    "change": {
      "move": {
        "event": 16
      }
    }
  }
]"###,
    )
    .expect("the steps parse");
    let options = SimOptions {
        data: serde_json::from_str(r###"{"documents":200,"dirty_percent":5}"###)
            .expect("the data options parse"),
        skew_max_ms: 30,
        ..SimOptions::default()
    };
    let plan = std::sync::Arc::new(Plan::seed());
    let mut sim = Sim::new(plan.clone(), &options, 677927183755335826);
    sim.run(&steps).unwrap_or_else(|f| panic!("{f}"));
    // The moved ticket lives in objects now, quarantined, behind the event it references.
    let quarantined = sim.migrated.peek_quarantine(Kind::Tickets);
    assert!(
        quarantined
            .iter()
            .any(|q| q.contains("has no row in events")),
        "{quarantined:?}"
    );

    let mut options = options;
    options.bugs.typed_only_rejects_unresolved_references = true;
    let mut sim = Sim::new(plan, &options, 677927183755335826);
    sim.set_verbose(true);
    let failure = sim
        .run(&steps)
        .expect_err("the old behaviour breaks an invariant");
    assert_eq!(failure.invariant, Invariant::AcknowledgedWriteKept);
    assert_eq!(failure.step, 22);
    let explained = failure.explained.expect("classified");
    assert_eq!(explained.anomaly.name(), "rejected_write");
    assert!(
        explained.explanation.contains("has no events row"),
        "{}",
        explained.explanation
    );
}
