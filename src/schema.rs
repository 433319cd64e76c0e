//! The schema of the migrated app: the loose legacy tables (`objects`, `objectLinks`), the
//! strict typed tables (`events`, `transactions`, `tickets`), and the migration's own
//! bookkeeping tables (`migrationProgress`, `migrationQuarantine`).

use crate::plan::References;
use crate::store::{IndexDef, IndexRef, Limits, Store, TableDef, TableNo};
use crate::validator::Validator as V;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An entity kind that migrates from `objects` to a typed table of the same name.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Events,
    Transactions,
    Tickets,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Events, Kind::Transactions, Kind::Tickets];

    /// The typed table's name.
    pub fn table(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Transactions => "transactions",
            Kind::Tickets => "tickets",
        }
    }

    /// The legacy `objects.type` of this kind.
    pub fn legacy_type(self) -> &'static str {
        match self {
            Kind::Events => "event",
            Kind::Transactions => "transaction",
            Kind::Tickets => "ticket",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.table() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.table())
    }
}

/// Payment states seen in production (domain.md §1).
pub const PAYMENT_STATUSES: [&str; 6] = [
    "pending",
    "paid",
    "awaiting_employer_payment",
    "completed",
    "refunded",
    "partially_refunded",
];
pub const INVOICING_STATUSES: [&str; 3] = ["pending", "on_draft_invoice", "invoiced"];
pub const TICKET_STATUSES: [&str; 4] = ["issued", "redeemed", "cancelled", "transferred"];
pub const EVENT_STATUSES: [&str; 5] = [
    "draft",
    "published",
    "in_progress",
    "completed",
    "cancelled",
];

/// Where a typed field's value comes from in a legacy `objects` document.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A top-level field of the `objects` document (`name`, `status`, `organizationId`, ...).
    Top,
    /// A field of `customProperties`.
    Custom,
    /// Computed by the mapping (transaction `shape`, `lineItems`, totals).
    Derived,
}

/// One field of a typed table: its name, validator and legacy source.
#[derive(Clone, Debug)]
pub struct FieldSpec {
    pub name: &'static str,
    pub validator: V,
    pub source: Source,
}

fn f(name: &'static str, validator: V, source: Source) -> FieldSpec {
    FieldSpec {
        name,
        validator,
        source,
    }
}

fn opt(v: V) -> V {
    V::optional(v)
}

/// Fields every typed row has, before the kind's own fields.
fn common(status: V) -> Vec<FieldSpec> {
    vec![
        f("organizationId", V::id("organizations"), Source::Top),
        f("name", V::String, Source::Top),
        f("status", status, Source::Top),
        f("subtype", opt(V::String), Source::Top),
        f("createdAt", V::Number, Source::Top),
        f("updatedAt", V::Number, Source::Top),
    ]
}

/// The validator of one transaction line item. Its `eventId` is remapped to the typed
/// `events` table. The legacy `ticketId` is deliberately absent: it would close the
/// transaction <-> ticket reference cycle; readers reach a transaction's tickets through
/// `tickets.transactionId` instead.
pub fn line_item_fields() -> Vec<FieldSpec> {
    vec![
        f("productId", opt(V::id("objects")), Source::Custom),
        f("productName", V::String, Source::Custom),
        f("quantity", V::Number, Source::Custom),
        f("unitPriceInCents", V::Number, Source::Custom),
        f("totalPriceInCents", V::Number, Source::Custom),
        f("taxRatePercent", opt(V::Number), Source::Custom),
        f("taxAmountInCents", opt(V::Number), Source::Custom),
        f("eventId", opt(V::id("events")), Source::Custom),
        f("eventName", opt(V::String), Source::Custom),
    ]
}

/// The typed fields of a kind, in the order the mapping fills them. `legacyId` and
/// `metadata` (unknown `customProperties`) are added to every kind by `typed_validator`.
pub fn kind_fields(kind: Kind) -> Vec<FieldSpec> {
    let mut fields;
    match kind {
        Kind::Events => {
            fields = common(V::literals(&EVENT_STATUSES));
            fields.extend([
                f("slug", V::String, Source::Custom),
                f("startDate", V::Number, Source::Custom),
                f("endDate", opt(V::Number), Source::Custom),
                f("location", opt(V::String), Source::Custom),
                f("timezone", opt(V::String), Source::Custom),
                f("maxCapacity", opt(V::Number), Source::Custom),
            ]);
        }
        Kind::Transactions => {
            fields = common(V::String);
            fields.extend([
                f(
                    "shape",
                    V::literals(&["v1", "v2", "booking"]),
                    Source::Derived,
                ),
                f(
                    "lineItems",
                    V::array(V::Object(
                        line_item_fields()
                            .into_iter()
                            .map(|s| (s.name.to_string(), s.validator))
                            .collect(),
                    )),
                    Source::Derived,
                ),
                f("subtotalInCents", V::Number, Source::Derived),
                f("taxAmountInCents", V::Number, Source::Derived),
                f("totalInCents", V::Number, Source::Derived),
                f("checkoutSessionId", opt(V::id("objects")), Source::Custom),
                f("customerName", V::String, Source::Custom),
                f("customerEmail", V::String, Source::Custom),
                f("customerPhone", opt(V::String), Source::Custom),
                f(
                    "payerType",
                    opt(V::literals(&["individual", "organization"])),
                    Source::Custom,
                ),
                f("payerId", opt(V::String), Source::Custom),
                f("currency", V::String, Source::Custom),
                f("paymentMethod", opt(V::String), Source::Custom),
                f(
                    "paymentStatus",
                    V::literals(&PAYMENT_STATUSES),
                    Source::Custom,
                ),
                f("paymentDate", opt(V::Number), Source::Custom),
                f("paymentIntentId", opt(V::String), Source::Custom),
                f(
                    "invoicingStatus",
                    opt(V::literals(&INVOICING_STATUSES)),
                    Source::Custom,
                ),
                f("invoiceId", opt(V::String), Source::Custom),
                f("transactionDate", V::Number, Source::Custom),
                f("bookingId", opt(V::String), Source::Custom),
                f("resourceId", opt(V::String), Source::Custom),
                f("refundId", opt(V::String), Source::Custom),
                f("refundAmount", opt(V::Number), Source::Custom),
                f("refundDate", opt(V::Number), Source::Custom),
                f("refundReason", opt(V::String), Source::Custom),
            ]);
        }
        Kind::Tickets => {
            fields = common(V::literals(&TICKET_STATUSES));
            fields.extend([
                f("eventId", V::id("events"), Source::Custom),
                f("productId", opt(V::id("objects")), Source::Custom),
                f("holderName", V::String, Source::Custom),
                f("holderEmail", V::String, Source::Custom),
                f("ticketNumber", V::Number, Source::Custom),
                f("checkoutSessionId", opt(V::id("objects")), Source::Custom),
                f("transactionId", opt(V::id("transactions")), Source::Custom),
                f(
                    "paymentStatus",
                    opt(V::literals(&PAYMENT_STATUSES)),
                    Source::Custom,
                ),
                f("redeemedAt", opt(V::Number), Source::Custom),
            ]);
        }
    }
    fields
}

static TYPED_VALIDATORS: std::sync::LazyLock<[V; 3]> =
    std::sync::LazyLock::new(|| Kind::ALL.map(typed_validator));

static TYPED_FIELD_NAMES: std::sync::LazyLock<[Vec<&'static str>; 3]> =
    std::sync::LazyLock::new(|| Kind::ALL.map(|k| kind_fields(k).iter().map(|f| f.name).collect()));

/// The strict validator of a typed table, built once.
pub fn typed_validator_of(kind: Kind) -> &'static V {
    &TYPED_VALIDATORS[kind.index()]
}

/// Whether `name` is one of the kind's typed fields (anything else goes into `metadata`).
pub fn is_typed_field(kind: Kind, name: &str) -> bool {
    TYPED_FIELD_NAMES[kind.index()].contains(&name)
}

/// The strict validator of a typed table.
pub fn typed_validator(kind: Kind) -> V {
    typed_validator_with(kind, References::Remap)
}

/// The strict validator of a typed table as a plan declares it: with `keep_legacy`
/// references, the reference fields that point to migrating kinds are `v.id("objects")`.
pub fn typed_validator_with(kind: Kind, references: References) -> V {
    fn keep_legacy(v: V) -> V {
        match v {
            V::Id(t) if Kind::parse(&t).is_some() => V::id("objects"),
            V::Optional(i) => opt(keep_legacy(*i)),
            V::Array(i) => V::array(keep_legacy(*i)),
            V::Object(fields) => V::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), keep_legacy(v.clone())))
                    .collect(),
            ),
            other => other,
        }
    }
    let mut spec: Vec<(String, V)> = vec![("legacyId".to_string(), opt(V::id("objects")))];
    spec.extend(kind_fields(kind).into_iter().map(|s| {
        let v = match references {
            References::Remap => s.validator,
            References::KeepLegacy => keep_legacy(s.validator),
        };
        (s.name.to_string(), v)
    }));
    spec.push(("metadata".to_string(), opt(V::Record(Box::new(V::Any)))));
    V::Object(crate::validator::ObjectSpec::new(spec))
}

fn idx(name: &'static str, fields: &[&'static str]) -> IndexDef {
    IndexDef {
        name,
        fields: fields.to_vec(),
        hashed: false,
    }
}

/// An index whose values are unique or nearly so and read one at a time (`IndexDef::hashed`).
fn lookup(name: &'static str, fields: &[&'static str]) -> IndexDef {
    IndexDef {
        hashed: true,
        ..idx(name, fields)
    }
}

/// Every table of the app, legacy and typed, with their indexes; the typed tables'
/// reference fields are declared as the plan's `references` says.
pub fn tables(references: References) -> Vec<TableDef> {
    vec![
        TableDef {
            name: "organizations",
            validator: Some(V::object(vec![("name", V::String)])),
            indexes: vec![],
        },
        TableDef {
            name: "objects",
            validator: None,
            indexes: vec![
                idx("by_org_type", &["organizationId", "type"]),
                idx("by_type", &["type"]),
                idx(
                    "by_org_type_subtype",
                    &["organizationId", "type", "subtype"],
                ),
                idx("by_status", &["status"]),
            ],
        },
        TableDef {
            name: "objectLinks",
            validator: None,
            indexes: vec![
                idx("by_from_link_type", &["fromObjectId", "linkType"]),
                idx("by_to_link_type", &["toObjectId", "linkType"]),
            ],
        },
        TableDef {
            name: "events",
            validator: Some(typed_validator_with(Kind::Events, references)),
            indexes: vec![
                lookup("by_legacy", &["legacyId"]),
                idx("by_org", &["organizationId"]),
            ],
        },
        TableDef {
            name: "transactions",
            validator: Some(typed_validator_with(Kind::Transactions, references)),
            indexes: vec![
                lookup("by_legacy", &["legacyId"]),
                idx("by_org", &["organizationId"]),
                idx("by_checkout_session", &["checkoutSessionId"]),
            ],
        },
        TableDef {
            name: "tickets",
            validator: Some(typed_validator_with(Kind::Tickets, references)),
            indexes: vec![
                lookup("by_legacy", &["legacyId"]),
                idx("by_event", &["eventId"]),
                idx("by_transaction", &["transactionId"]),
                idx("by_org_status", &["organizationId", "status"]),
            ],
        },
        // The Stripe event ids the payment webhook has applied (the app's own dedupe record).
        TableDef {
            name: "webhookEvents",
            validator: Some(V::object(vec![("eventId", V::String)])),
            indexes: vec![lookup("by_event_id", &["eventId"])],
        },
        TableDef {
            name: "migrationProgress",
            validator: Some(V::object(vec![
                ("kind", V::String),
                ("cursor", opt(V::Any)),
                ("processed", V::Number),
                ("migrated", V::Number),
                ("quarantined", V::Number),
                ("skipped", V::Number),
                ("batches", V::Number),
                ("done", V::Boolean),
            ])),
            indexes: vec![lookup("by_kind", &["kind"])],
        },
        // Every legacy id -> typed id pair the migration ever created, kept after deletes so
        // that a reference to a deleted entity maps to the typed id it had (legacy documents
        // keep dangling references; so must typed rows).
        TableDef {
            name: "migrationIdMap",
            validator: Some(V::object(vec![
                ("legacyId", V::id("objects")),
                ("typedId", V::String),
            ])),
            indexes: vec![lookup("by_legacy", &["legacyId"])],
        },
        TableDef {
            name: "migrationQuarantine",
            validator: Some(V::object(vec![
                ("legacyId", V::id("objects")),
                ("kind", V::String),
                ("path", V::String),
                ("reason", V::String),
                ("blockedBy", opt(V::id("objects"))),
                ("organizationId", opt(V::Any)),
            ])),
            indexes: vec![
                lookup("by_legacy", &["legacyId"]),
                idx("by_kind", &["kind"]),
                idx("by_kind_org", &["kind", "organizationId"]),
            ],
        },
    ]
}

/// Table numbers and index handles resolved once, so the hot path never looks up names.
#[derive(Clone, Debug)]
pub struct Tables {
    pub organizations: TableNo,
    pub objects: TableNo,
    pub links: TableNo,
    pub progress: TableNo,
    pub quarantine: TableNo,
    pub id_map: TableNo,
    pub typed: [TableNo; 3],
    pub objects_by_org_type: IndexRef,
    pub objects_by_type: IndexRef,
    pub objects_by_status: IndexRef,
    pub links_by_from: IndexRef,
    pub links_by_to: IndexRef,
    pub typed_by_legacy: [IndexRef; 3],
    pub events_by_org: IndexRef,
    pub transactions_by_org: IndexRef,
    pub transactions_by_session: IndexRef,
    pub tickets_by_event: IndexRef,
    pub tickets_by_transaction: IndexRef,
    pub tickets_by_org_status: IndexRef,
    pub progress_by_kind: IndexRef,
    pub quarantine_by_legacy: IndexRef,
    pub quarantine_by_kind: IndexRef,
    pub id_map_by_legacy: IndexRef,
    pub quarantine_by_kind_org: IndexRef,
    pub webhook_events: TableNo,
    pub webhook_events_by_id: IndexRef,
}

impl Tables {
    pub fn resolve(s: &Store) -> Tables {
        Tables {
            organizations: s.table("organizations"),
            objects: s.table("objects"),
            links: s.table("objectLinks"),
            progress: s.table("migrationProgress"),
            quarantine: s.table("migrationQuarantine"),
            id_map: s.table("migrationIdMap"),
            typed: Kind::ALL.map(|k| s.table(k.table())),
            objects_by_org_type: s.index("objects", "by_org_type"),
            objects_by_type: s.index("objects", "by_type"),
            objects_by_status: s.index("objects", "by_status"),
            links_by_from: s.index("objectLinks", "by_from_link_type"),
            links_by_to: s.index("objectLinks", "by_to_link_type"),
            typed_by_legacy: Kind::ALL.map(|k| s.index(k.table(), "by_legacy")),
            events_by_org: s.index("events", "by_org"),
            transactions_by_org: s.index("transactions", "by_org"),
            transactions_by_session: s.index("transactions", "by_checkout_session"),
            tickets_by_event: s.index("tickets", "by_event"),
            tickets_by_transaction: s.index("tickets", "by_transaction"),
            tickets_by_org_status: s.index("tickets", "by_org_status"),
            progress_by_kind: s.index("migrationProgress", "by_kind"),
            quarantine_by_legacy: s.index("migrationQuarantine", "by_legacy"),
            quarantine_by_kind: s.index("migrationQuarantine", "by_kind"),
            id_map_by_legacy: s.index("migrationIdMap", "by_legacy"),
            quarantine_by_kind_org: s.index("migrationQuarantine", "by_kind_org"),
            webhook_events: s.table("webhookEvents"),
            webhook_events_by_id: s.index("webhookEvents", "by_event_id"),
        }
    }

    /// The kind whose typed table this is, if any.
    pub fn typed_kind(&self, table: TableNo) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| self.typed[k.index()] == table)
    }
}

/// A new store with the app's schema, typed references declared as the plan says.
pub fn new_store(limits: Limits, references: References) -> Store {
    Store::new(tables(references), limits)
}
