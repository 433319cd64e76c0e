//! The mapping from legacy `objects` documents to the typed shape, as pure functions: which
//! kind a legacy document is, the strict derivation (with the legacy field path and reason of
//! every document that cannot map), the lenient one that a legacy reader's view is made of,
//! and which fields are references. (References are remapped in `world::Ctx::map`, views are
//! built in `world::Ctx::view`.)

use crate::schema::{FieldSpec, Kind, Source, kind_fields, line_item_fields};
use crate::store::Doc;
use crate::validator::Validator;
use crate::value::{Fields, Name, Str, Value};
use std::fmt;
use std::sync::{LazyLock, OnceLock};

/// Why a legacy document cannot map to its typed table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapError {
    /// The legacy field path, such as `customProperties.lineItems[1].quantity`.
    pub path: String,
    pub reason: String,
    /// For a reference that does not resolve yet: the legacy id it waits for. The document
    /// may map once that document has a typed row.
    pub blocked_by: Option<String>,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Which migrating kind a legacy `objects` document belongs to. Support tickets share
/// `type = "ticket"` with checkout tickets but are not event tickets and never migrate.
pub fn kind_of(fields: &Fields) -> Option<Kind> {
    match fields.get("type")?.as_str()? {
        "event" => Some(Kind::Events),
        "transaction" => Some(Kind::Transactions),
        "ticket" if fields.get("subtype").and_then(Value::as_str) != Some("support") => {
            Some(Kind::Tickets)
        }
        _ => None,
    }
}

/// A field spec with its legacy-side validator: references are still `objects` ids.
struct Spec {
    name: &'static str,
    /// `name` with its prefix, for the lookups (`Fields::position_of`).
    key: Name,
    source: Source,
    validator: Validator,
    optional: bool,
}

struct KindSpecs {
    fields: Vec<Spec>,
    line_item: Vec<Spec>,
    /// Positions in `fields` of the fields a derivation pulls (not `Derived`): in
    /// declaration order, and in name order (the order of `Fields`).
    pulled: [Vec<usize>; 2],
    /// Positions in `line_item`, in declaration order and in name order.
    item_pulled: [Vec<usize>; 2],
}

/// The order a derivation pulls fields in. By name, the pairs come out in the order of
/// `Fields` and need no sorting; an error is derived again in declaration order, so that it
/// names the first failing field as the schema lists them.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Order {
    Declared = 0,
    ByName = 1,
}

/// `[declaration order, name order]` of the specs that `keep` selects; names are unique.
fn orders(specs: &[Spec], keep: impl Fn(&Spec) -> bool) -> [Vec<usize>; 2] {
    let declared: Vec<usize> = (0..specs.len()).filter(|&i| keep(&specs[i])).collect();
    let mut by_name = declared.clone();
    by_name.sort_by_key(|&i| specs[i].name);
    assert!(
        by_name
            .windows(2)
            .all(|w| specs[w[0]].name < specs[w[1]].name),
        "a kind pulls two fields of one name"
    );
    [declared, by_name]
}

fn legacy_side(v: &Validator) -> Validator {
    match v {
        // A legacy reference is an `objects` id; a legacy document written by a fallback
        // path after its target went typed-only may already hold the typed id.
        Validator::Id(t) if Kind::parse(t).is_some() => {
            Validator::Union(vec![Validator::id("objects"), Validator::Id(t.clone())])
        }
        Validator::Optional(i) => Validator::optional(legacy_side(i)),
        Validator::Array(i) => Validator::array(legacy_side(i)),
        Validator::Object(fields) => Validator::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), legacy_side(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn specs(fields: Vec<FieldSpec>) -> Vec<Spec> {
    fields
        .into_iter()
        .map(|s| Spec {
            name: s.name,
            key: Name::new(s.name),
            source: s.source,
            optional: matches!(s.validator, Validator::Optional(_)),
            validator: legacy_side(&s.validator),
        })
        .collect()
}

static SPECS: LazyLock<[KindSpecs; 3]> = LazyLock::new(|| {
    Kind::ALL.map(|k| {
        let fields = specs(kind_fields(k));
        let line_item = specs(line_item_fields());
        KindSpecs {
            pulled: orders(&fields, |s| s.source != Source::Derived),
            item_pulled: orders(&line_item, |_| true),
            fields,
            line_item,
        }
    })
});

/// Fields of a v1 transaction that become its single line item or its totals.
const V1_CONSUMED: [&str; 13] = [
    "productId",
    "productName",
    "eventId",
    "eventName",
    "ticketId",
    "amountInCents",
    "quantity",
    "unitPriceInCents",
    "totalPriceInCents",
    "taxRatePercent",
    "taxAmountInCents",
    "subtotalInCents",
    "totalInCents",
];
const TOTALS: [&str; 4] = [
    "subtotalInCents",
    "taxAmountInCents",
    "totalInCents",
    "amountInCents",
];

/// Derives the typed shape of a legacy document, references still as legacy ids.
/// `strict` checks every field against the typed validator and fails on the first mismatch;
/// lenient derivation never fails and keeps odd values as they are (the legacy reader's view).
pub fn derive(kind: Kind, doc: &Fields, strict: bool) -> Result<Fields, MapError> {
    derive_in(kind, doc, strict, Order::ByName)
        .or_else(|_| derive_in(kind, doc, strict, Order::Declared))
}

fn derive_in(kind: Kind, doc: &Fields, strict: bool, order: Order) -> Result<Fields, MapError> {
    let empty = Fields::new();
    let cp = match doc.get("customProperties") {
        Some(Value::Object(cp)) => cp,
        None if !strict => &empty,
        Some(_) if !strict => &empty,
        other => {
            return Err(MapError {
                blocked_by: None,
                path: "customProperties".into(),
                reason: format!(
                    "expected an object, found {}",
                    other.map_or("nothing", Value::type_name)
                ),
            });
        }
    };
    let spec = &SPECS[kind.index()];
    // The pulled fields' pairs in `order`, then the computed ones, which replace a pulled
    // one of the same name.
    let mut out: Vec<(Str, Value)> = Vec::with_capacity(spec.fields.len());
    // A transaction computes its shape, line items and three totals; `metadata` follows.
    let mut computed: Vec<(Str, Value)> = Vec::with_capacity(6);
    let mut consumed = Consumed::new(cp);
    // Where the last top-level lookup ended (see `Consumed::next`).
    let mut top = 0;
    for &i in &spec.pulled[order as usize] {
        let s = &spec.fields[i];
        let (found, at) = match s.source {
            Source::Top => (doc.get_walking(&mut top, &s.key), At::Top),
            _ => (consumed.take(&s.key), At::Custom),
        };
        pull(s, found, at, strict, &mut out)?;
    }
    if kind == Kind::Transactions {
        derive_transaction(cp, spec, strict, order, &mut computed, &mut consumed)?;
    }
    let metadata = consumed.rest();
    if !metadata.is_empty() {
        computed.push(("metadata".into(), Value::Object(metadata)));
    }
    let mut fields = Fields::from_pairs(out);
    fields.reserve(computed.len());
    for (name, value) in computed {
        fields.insert(name, value);
    }
    Ok(fields)
}

/// The fields of `customProperties` a derivation used, by position: the others travel in
/// `metadata`.
struct Consumed<'a> {
    cp: &'a Fields,
    used: smallvec::SmallVec<[bool; 32]>,
    /// Where the last lookup ended: a derivation in name order walks `cp` once.
    next: usize,
}

impl<'a> Consumed<'a> {
    fn new(cp: &'a Fields) -> Consumed<'a> {
        Consumed {
            cp,
            used: smallvec::smallvec![false; cp.len()],
            next: 0,
        }
    }

    /// The field's value, if there is one, now marked used.
    fn take(&mut self, name: &Name) -> Option<&'a Value> {
        match self.cp.position_of(self.next, name) {
            Ok(i) => {
                self.next = i + 1;
                self.used[i] = true;
                self.cp.get_index(i).map(|(_, v)| v)
            }
            Err(i) => {
                self.next = i;
                None
            }
        }
    }

    fn mark(&mut self, names: &[&'static str]) {
        for &name in names {
            self.take(&Name::new(name));
        }
    }

    /// The fields not used, in order.
    fn rest(&self) -> Fields {
        self.cp.clone_where(|i| !self.used[i])
    }
}

/// `derive` of a stored document version, computed once per version, kind and strictness and
/// kept in the version's memo: the write path, the diff, the checker and the views of both
/// a step and of later steps derive the same versions, and every fork of an exploration
/// shares them.
///
/// A strict derivation that succeeds is also the lenient one (each value passed its
/// validator, so leniency has nothing to keep; `strict_success_is_the_lenient_derivation`
/// checks it), so the lenient reader takes it when it is there.
pub fn derived(kind: Kind, doc: &Doc, strict: bool) -> &Result<Fields, MapError> {
    let [lenient, strict_slot] = &memo(doc).derived[kind.index()];
    if strict {
        return strict_slot.get_or_init(|| Box::new(derive(kind, &doc.fields, true)));
    }
    match strict_slot.get().map(|done| &**done) {
        Some(done @ Ok(_)) => done,
        _ => lenient.get_or_init(|| Box::new(derive(kind, &doc.fields, false))),
    }
}

/// `kind_of` a stored document version, computed once and kept in the version's memo: the
/// write path, the reads, the diff and the checker all ask it of the same versions.
pub fn kind_of_doc(doc: &Doc) -> Option<Kind> {
    *memo(doc).kind.get_or_init(|| kind_of(&doc.fields))
}

/// The slot of a stored version's memo where `world::Ctx::view` keeps the version's view
/// for every world that agrees on the keys it was computed with.
pub fn view_slot(doc: &Doc) -> &OnceLock<Box<crate::world::SharedView>> {
    &memo(doc).view
}

/// What the domain keeps in a stored version's memo (see `store::Memo`).
#[derive(Default)]
struct DocMemo {
    kind: OnceLock<Option<Kind>>,
    /// A slot per kind and strictness, each boxed when it is filled: a version is mostly
    /// derived for one kind, once, and the memo lives as long as the version (unboxed, the
    /// six empty slots took 480 bytes per derived version).
    derived: [[Slot; 2]; 3],
    /// What a reader sees of the version (`world::Ctx::view`), boxed for the same reason.
    view: OnceLock<Box<crate::world::SharedView>>,
}

type Slot = OnceLock<Box<Result<Fields, MapError>>>;

fn memo(doc: &Doc) -> &DocMemo {
    doc.memo
        .get_or_init(DocMemo::default)
        .expect("a document's memo holds the domain's memo only")
}

/// Where a pulled field lives in the legacy document; its path is only spelled out when the
/// field fails.
#[derive(Copy, Clone)]
enum At {
    Top,
    Custom,
    LineItem(usize),
}

impl At {
    fn path(self, name: &str) -> String {
        match self {
            At::Top => name.to_string(),
            At::Custom => format!("customProperties.{name}"),
            At::LineItem(i) => format!("customProperties.lineItems[{i}].{name}"),
        }
    }
}

/// Pulls the field `s` (`found` is its value in the legacy document, if any) into `out`.
fn pull(
    s: &Spec,
    found: Option<&Value>,
    at: At,
    strict: bool,
    out: &mut Vec<(Str, Value)>,
) -> Result<(), MapError> {
    match found {
        Some(v) => {
            if strict
                && !s.validator.accepts(v)
                && let Err(e) = s.validator.validate(v, &at.path(s.name))
            {
                return Err(MapError {
                    blocked_by: None,
                    path: e.path,
                    reason: e.reason,
                });
            }
            out.push((s.name.into(), v.clone()));
        }
        None if strict && !s.optional => {
            return Err(MapError {
                blocked_by: None,
                path: at.path(s.name),
                reason: "required field is missing".into(),
            });
        }
        None => {}
    }
    Ok(())
}

fn derive_transaction(
    cp: &Fields,
    spec: &KindSpecs,
    strict: bool,
    order: Order,
    out: &mut Vec<(Str, Value)>,
    consumed: &mut Consumed<'_>,
) -> Result<(), MapError> {
    let shape = if cp.contains_key("lineItems") {
        "v2"
    } else if cp.contains_key("bookingId") {
        "booking"
    } else {
        "v1"
    };
    out.push(("shape".into(), Value::from(shape)));
    let mut items = Vec::new();
    match shape {
        "v2" => {
            consumed.mark(&["lineItems"]);
            match cp.get("lineItems") {
                Some(Value::Array(raw)) => {
                    for (i, item) in raw.iter().enumerate() {
                        match item {
                            Value::Object(item) => {
                                let mut o = Vec::with_capacity(spec.line_item.len());
                                // Where the last lookup ended: in name order, one walk.
                                let mut at = 0;
                                for &j in &spec.item_pulled[order as usize] {
                                    let s = &spec.line_item[j];
                                    let found = item.get_walking(&mut at, &s.key);
                                    pull(s, found, At::LineItem(i), strict, &mut o)?;
                                }
                                items.push(Value::Object(Fields::from_pairs(o)));
                            }
                            other if strict => {
                                return Err(MapError {
                                    blocked_by: None,
                                    path: format!("customProperties.lineItems[{i}]"),
                                    reason: format!(
                                        "expected an object, found {}",
                                        other.type_name()
                                    ),
                                });
                            }
                            other => items.push(other.clone()),
                        }
                    }
                }
                Some(other) if strict => {
                    return Err(MapError {
                        blocked_by: None,
                        path: "customProperties.lineItems".into(),
                        reason: format!("expected an array, found {}", other.type_name()),
                    });
                }
                _ => {}
            }
        }
        "v1" => {
            consumed.mark(&V1_CONSUMED);
            let mut o = Vec::with_capacity(spec.line_item.len());
            let mut at = 0;
            for &j in &spec.item_pulled[order as usize] {
                let s = &spec.line_item[j];
                pull(
                    s,
                    cp.get_walking(&mut at, &s.key),
                    At::Custom,
                    strict,
                    &mut o,
                )?;
            }
            items.push(Value::Object(Fields::from_pairs(o)));
        }
        _ => {}
    }
    consumed.mark(&TOTALS);
    out.push(("lineItems".into(), Value::Array(items)));

    // Totals: v2 rows carry them; older v1 rows lack them and fall back to the line's gross
    // price; bookings carry `amountInCents`.
    let total_source = ["totalInCents", "totalPriceInCents", "amountInCents"]
        .into_iter()
        .find(|k| cp.contains_key(*k) && (shape != "v2" || *k == "totalInCents"));
    let number = |name: &str, v: Option<&Value>| -> Result<Option<f64>, MapError> {
        match v {
            Some(Value::Float64(x)) => Ok(Some(*x)),
            Some(other) if strict => Err(MapError {
                blocked_by: None,
                path: format!("customProperties.{name}"),
                reason: format!("expected v.number(), found {} {other}", other.type_name()),
            }),
            _ => Ok(None),
        }
    };
    let total_raw = total_source.and_then(|k| cp.get(k));
    let total = match total_source {
        Some(k) => number(k, total_raw)?,
        None if strict => {
            return Err(MapError {
                blocked_by: None,
                path: "customProperties.totalInCents".into(),
                reason: "required field is missing (and no totalPriceInCents or amountInCents to derive it from)".into(),
            });
        }
        None => None,
    };
    let tax = match cp.get("taxAmountInCents") {
        None => Some(0.0),
        v => number("taxAmountInCents", v)?,
    };
    let subtotal = match cp.get("subtotalInCents") {
        None => total.zip(tax).map(|(t, x)| t - x),
        v => number("subtotalInCents", v)?,
    };
    // Lenient: a reader sees the raw odd value where there is one.
    let keep = |x: Option<f64>, raw: Option<&Value>| x.map(Value::Float64).or_else(|| raw.cloned());
    if let Some(v) = keep(total, total_raw) {
        out.push(("totalInCents".into(), v));
    }
    if let Some(v) = keep(tax, cp.get("taxAmountInCents")) {
        out.push(("taxAmountInCents".into(), v));
    }
    if let Some(v) = keep(subtotal, cp.get("subtotalInCents")) {
        out.push(("subtotalInCents".into(), v));
    }
    Ok(())
}

/// The legacy `objects` fields of a typed row (without `legacyId`), for copying typed-only
/// writes back to `objects` on a rollback: the inverse of `derive`, so that deriving the
/// result gives the row back (a test checks it on generated data). References are
/// left as they are; the caller turns typed ids back into legacy ids first.
pub fn reverse(kind: Kind, row: &Fields) -> Fields {
    let spec = &SPECS[kind.index()];
    let mut top = Fields::new();
    let mut cp = Fields::new();
    top.insert("type".into(), Value::from(kind.legacy_type()));
    for s in &spec.fields {
        let Some(v) = row.get(s.name) else { continue };
        match s.source {
            Source::Top => {
                top.insert(s.name.into(), v.clone());
            }
            Source::Custom => {
                cp.insert(s.name.into(), v.clone());
            }
            Source::Derived => {}
        }
    }
    if let Some(Value::Object(meta)) = row.get("metadata") {
        for (k, v) in meta {
            cp.insert(k.clone(), v.clone());
        }
    }
    if kind == Kind::Transactions {
        let number = |name: &str| row.get(name).and_then(Value::as_f64);
        let (total, tax, subtotal) = (
            number("totalInCents"),
            number("taxAmountInCents").unwrap_or(0.0),
            number("subtotalInCents"),
        );
        let put = |cp: &mut Fields, name: &str, v: Option<f64>| {
            if let Some(x) = v {
                cp.insert(name.into(), Value::Float64(x));
            }
        };
        match row.get("shape").and_then(Value::as_str) {
            Some("v2") => {
                if let Some(items) = row.get("lineItems") {
                    cp.insert("lineItems".into(), items.clone());
                }
                put(&mut cp, "totalInCents", total);
                put(&mut cp, "taxAmountInCents", Some(tax));
                put(&mut cp, "subtotalInCents", subtotal);
            }
            Some("v1") => {
                // The single line item's fields live at the top of customProperties, where
                // the line's tax is also the transaction's.
                let item = row
                    .get("lineItems")
                    .and_then(Value::as_array)
                    .and_then(|items| items.first())
                    .and_then(Value::as_object);
                let mut line_total = None;
                if let Some(item) = item {
                    for (k, v) in item {
                        cp.insert(k.clone(), v.clone());
                    }
                    line_total = item.get("totalPriceInCents").and_then(Value::as_f64);
                }
                if total != line_total {
                    put(&mut cp, "totalInCents", total);
                }
                if !cp.contains_key("taxAmountInCents") && tax != 0.0 {
                    put(&mut cp, "taxAmountInCents", Some(tax));
                }
                if subtotal != total.map(|t| t - tax) {
                    put(&mut cp, "subtotalInCents", subtotal);
                }
            }
            _ => {
                put(&mut cp, "totalInCents", total);
                if tax != 0.0 {
                    put(&mut cp, "taxAmountInCents", Some(tax));
                }
                if subtotal != total.map(|t| t - tax) {
                    put(&mut cp, "subtotalInCents", subtotal);
                }
            }
        }
    }
    top.insert("customProperties".into(), Value::Object(cp));
    top
}

/// A reference field of a typed row and the kind it points to (`None`: it stays a legacy
/// `objects` id, such as a product or checkout session).
pub fn reference_fields(kind: Kind) -> &'static [(&'static str, Option<Kind>)] {
    match kind {
        Kind::Events => &[],
        Kind::Transactions => &[("checkoutSessionId", None)],
        Kind::Tickets => &[
            ("eventId", Some(Kind::Events)),
            ("transactionId", Some(Kind::Transactions)),
            ("productId", None),
            ("checkoutSessionId", None),
        ],
    }
}

/// Reference fields inside each transaction line item.
pub const LINE_ITEM_REFERENCES: [(&str, Option<Kind>); 2] =
    [("eventId", Some(Kind::Events)), ("productId", None)];

/// Where a reference sits in a row of the typed shape: a top-level field, or a field of
/// line item `item`. Displays as the field path (`lineItems[0].eventId`); spelled out only
/// when a caller reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RefPath {
    pub item: Option<usize>,
    pub name: &'static str,
}

impl std::fmt::Display for RefPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.item {
            Some(i) => write!(f, "lineItems[{i}].{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// The walk shared by `for_each_reference` (with `get_mut`, `iter_mut`) and
/// `for_each_reference_in` (with `get`, `iter`).
macro_rules! walk_references {
    ($kind:expr, $fields:expr, $f:expr, $get:ident, $iter:ident) => {{
        for (name, target) in reference_fields($kind) {
            if let Some(v) = $fields.$get(*name) {
                $f(RefPath { item: None, name }, *target, v)?;
            }
        }
        if $kind == Kind::Transactions
            && let Some(Value::Array(items)) = $fields.$get("lineItems")
        {
            for (i, item) in items.$iter().enumerate() {
                if let Value::Object(item) = item {
                    for (name, target) in LINE_ITEM_REFERENCES {
                        if let Some(v) = item.$get(name) {
                            let path = RefPath {
                                item: Some(i),
                                name,
                            };
                            $f(path, target, v)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }};
}

/// Applies `f` to every reference of a row in the typed shape (top-level and line items),
/// giving the field path, the kind it points to, and the value to rewrite.
pub fn for_each_reference<E>(
    kind: Kind,
    fields: &mut Fields,
    mut f: impl FnMut(RefPath, Option<Kind>, &mut Value) -> Result<(), E>,
) -> Result<(), E> {
    walk_references!(kind, fields, f, get_mut, iter_mut)
}

/// `for_each_reference` for a reader: the same references in the same order, read only.
pub fn for_each_reference_in<E>(
    kind: Kind,
    fields: &Fields,
    mut f: impl FnMut(RefPath, Option<Kind>, &Value) -> Result<(), E>,
) -> Result<(), E> {
    walk_references!(kind, fields, f, get, iter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::object;

    fn fields(v: Value) -> Fields {
        match v {
            Value::Object(f) => f,
            _ => unreachable!(),
        }
    }

    fn v1_txn(cp: Value) -> Fields {
        fields(object([
            ("organizationId", Value::from("organizations:1")),
            ("type", Value::from("transaction")),
            ("name", Value::from("Order")),
            ("status", Value::from("active")),
            ("createdAt", Value::Float64(1.0)),
            ("updatedAt", Value::Float64(1.0)),
            ("customProperties", cp),
        ]))
    }

    fn v1_cp() -> Vec<(&'static str, Value)> {
        vec![
            ("productId", Value::from("objects:2")),
            ("productName", Value::from("Ticket")),
            ("eventId", Value::from("objects:3")),
            ("quantity", Value::Float64(2.0)),
            ("unitPriceInCents", Value::Float64(500.0)),
            ("totalPriceInCents", Value::Float64(1000.0)),
            ("customerName", Value::from("Ada")),
            ("customerEmail", Value::from("ada@example.com")),
            ("currency", Value::from("EUR")),
            ("paymentStatus", Value::from("paid")),
            ("transactionDate", Value::Float64(1.0)),
            ("ticketId", Value::from("objects:9")),
            ("giftNote", Value::from("hi")),
        ]
    }

    #[test]
    fn v1_without_totals_maps_to_one_line_item_with_derived_totals() {
        let out = derive(Kind::Transactions, &v1_txn(object(v1_cp())), true).unwrap();
        assert_eq!(out["shape"], Value::from("v1"));
        assert_eq!(out["totalInCents"], Value::Float64(1000.0));
        assert_eq!(out["subtotalInCents"], Value::Float64(1000.0));
        let items = out["lineItems"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(
            items[0].as_object().unwrap()["eventId"],
            Value::from("objects:3")
        );
        assert!(!items[0].as_object().unwrap().contains_key("ticketId"));
        assert_eq!(
            out["metadata"],
            object([("giftNote", Value::from("hi"))]),
            "unknown fields travel in metadata; ticketId is dropped to break the cycle"
        );
    }

    #[test]
    fn dirty_documents_fail_with_their_legacy_path() {
        let mut cp = v1_cp();
        cp.retain(|(k, _)| *k != "totalPriceInCents");
        let err = derive(Kind::Transactions, &v1_txn(object(cp)), true).unwrap_err();
        assert_eq!(err.path, "customProperties.totalPriceInCents");

        let mut cp = v1_cp();
        cp.push(("totalInCents", Value::from("12.50")));
        let err = derive(Kind::Transactions, &v1_txn(object(cp.clone())), true).unwrap_err();
        assert_eq!(err.path, "customProperties.totalInCents");
        // The lenient view keeps what a legacy reader sees.
        let view = derive(Kind::Transactions, &v1_txn(object(cp)), false).unwrap();
        assert_eq!(view["totalInCents"], Value::from("12.50"));

        let mut cp = v1_cp();
        cp.retain(|(k, _)| *k != "customerEmail");
        let err = derive(Kind::Transactions, &v1_txn(object(cp)), true).unwrap_err();
        assert_eq!(err.path, "customProperties.customerEmail");
        assert_eq!(err.reason, "required field is missing");

        let mut cp = v1_cp();
        cp[2] = ("eventId", Value::from("evt_123"));
        let err = derive(Kind::Transactions, &v1_txn(object(cp)), true).unwrap_err();
        assert_eq!(err.path, "customProperties.eventId");
    }

    /// Reversing a typed row and deriving it again gives the row back, for every clean
    /// generated document of every kind and shape.
    #[test]
    fn reverse_is_the_inverse_of_derive() {
        let data = crate::data::generate(
            11,
            &crate::data::GenOptions {
                documents: 2_000,
                dirty_percent: 0,
            },
        );
        let mut checked = 0;
        for obj in &data.objects {
            let Some(kind) = kind_of(&obj.fields) else {
                continue;
            };
            let Ok(row) = derive(kind, &obj.fields, true) else {
                continue;
            };
            let back = reverse(kind, &row);
            assert_eq!(
                derive(kind, &back, true).as_ref(),
                Ok(&row),
                "{:?}",
                obj.fields
            );
            checked += 1;
        }
        assert!(checked > 1_000, "{checked}");
    }

    /// A document of a kind as generated (clean or dirty), with one field of
    /// `customProperties` (or of the top level) set to an arbitrary value, or removed.
    fn perturbed() -> impl proptest::strategy::Strategy<Value = (Kind, Fields)> {
        use proptest::prelude::*;
        let data = std::sync::Arc::new(crate::data::generate(
            5,
            &crate::data::GenOptions {
                documents: 300,
                dirty_percent: 30,
            },
        ));
        let docs: Vec<(Kind, Fields)> = data
            .objects
            .iter()
            .filter_map(|o| kind_of(&o.fields).map(|k| (k, o.fields.clone())))
            .collect();
        let names: Vec<&'static str> = Kind::ALL
            .iter()
            .flat_map(|k| SPECS[k.index()].fields.iter().map(|s| s.name))
            .chain(V1_CONSUMED)
            .chain(["lineItems", "bookingId", "customProperties", "giftNote"])
            .collect();
        let value = prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            any::<i64>().prop_map(|n| Some(Value::Int64(n))),
            (-1e6f64..1e6).prop_map(|x| Some(Value::Float64(x))),
            any::<bool>().prop_map(|b| Some(Value::Bool(b))),
            "[a-z:0-9]{0,12}".prop_map(|s| Some(Value::from(s.as_str()))),
            Just(Some(Value::Array(vec![object([(
                "productName",
                Value::from("x")
            )])]))),
            Just(Some(object([("a", Value::Int64(1))]))),
        ];
        (
            prop::sample::select(docs),
            prop::sample::select(names),
            any::<bool>(),
            value,
        )
            .prop_map(|((kind, mut doc), name, top, value)| {
                let target = if top {
                    &mut doc
                } else {
                    match doc.get_mut("customProperties") {
                        Some(Value::Object(cp)) => cp,
                        _ => &mut doc,
                    }
                };
                match value {
                    Some(v) => {
                        target.insert(name.into(), v);
                    }
                    None => {
                        target.remove(name);
                    }
                }
                (kind, doc)
            })
    }

    proptest::proptest! {
        /// What lets `derived` serve a lenient reader the strict derivation: wherever the
        /// strict one succeeds, the lenient one is the same.
        #[test]
        fn deriving_in_name_order_is_deriving_in_declaration_order(
            (kind, doc) in perturbed(),
            strict in proptest::bool::ANY,
        ) {
            proptest::prop_assert_eq!(
                derive(kind, &doc, strict),
                derive_in(kind, &doc, strict, Order::Declared)
            );
        }

        #[test]
        fn strict_success_is_the_lenient_derivation((kind, doc) in perturbed()) {
            if let Ok(strict) = derive(kind, &doc, true) {
                proptest::prop_assert_eq!(Ok(strict), derive(kind, &doc, false));
            }
        }
    }

    /// The kind is kept per version, not per document: a later version of the same id that
    /// turns a ticket into a support ticket has its own kind.
    #[test]
    fn a_versions_kind_is_its_own() {
        let version = |fields: Fields| crate::store::Doc {
            id: crate::store::DocId { table: 0, seq: 7 },
            creation_time: 1,
            fields,
            size: 0,
            memo: Default::default(),
        };
        let mut ticket = fields(object([("type", Value::from("ticket"))]));
        let first = version(ticket.clone());
        assert_eq!(kind_of_doc(&first), Some(Kind::Tickets));
        ticket.insert("subtype".into(), Value::from("support"));
        let second = version(ticket);
        assert_eq!(kind_of_doc(&second), None);
        assert_eq!(kind_of_doc(&first), Some(Kind::Tickets));
        // A clone starts with an empty memo and derives its kind from its own fields.
        let mut copy = first.clone();
        copy.fields = second.fields.clone();
        assert_eq!(kind_of_doc(&copy), None);
    }

    #[test]
    fn support_tickets_are_not_event_tickets() {
        let mut doc = fields(object([("type", Value::from("ticket"))]));
        assert_eq!(kind_of(&doc), Some(Kind::Tickets));
        doc.insert("subtype".into(), Value::from("support"));
        assert_eq!(kind_of(&doc), None);
    }
}
