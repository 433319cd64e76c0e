//! Generated legacy data with `fake`: organizations, events, products, checkout sessions,
//! transactions in the v1, v2 and booking shapes, checkout and support tickets, links, and a
//! configurable share of dirty documents whose expected mapping failure is recorded.

use crate::schema::{Kind, PAYMENT_STATUSES};
use crate::value::{Fields, Value};
use fake::Fake;
use fake::faker::address::en::{CityName, TimeZone};
use fake::faker::company::en::CompanyName;
use fake::faker::currency::en::CurrencyCode;
use fake::faker::internet::en::SafeEmail;
use fake::faker::name::en::Name;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The single seeded source of randomness of data generation.
pub type Rng = ChaCha8Rng;

pub fn rng(seed: u64) -> Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// How much legacy data to generate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenOptions {
    /// Number of `objects` documents (at least; a purchase is generated whole).
    pub documents: usize,
    /// Percentage (0..=100) of event, transaction and ticket documents made dirty.
    pub dirty_percent: u8,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            documents: 60,
            dirty_percent: 5,
        }
    }
}

/// How a dirty document is broken.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dirt {
    /// A reference stored as a malformed string (`evt_123`).
    MalformedId,
    /// An amount stored as a string (`"12.50"`).
    AmountAsString,
    /// A v1 transaction with neither totals nor the line's gross price.
    V1WithoutTotals,
    /// A required field is missing.
    MissingRequired,
}

/// One generated `objects` document.
#[derive(Clone, Debug)]
pub struct SeedObject {
    pub fields: Fields,
    /// For a dirty document: how it is broken, the legacy field path the mapping must report,
    /// and the document as a data fix would repair it.
    pub dirt: Option<(Dirt, &'static str, Fields)>,
}

/// One generated `objectLinks` edge between two generated objects (indexes into `objects`).
#[derive(Clone, Debug)]
pub struct SeedLink {
    pub from: usize,
    pub to: usize,
    pub link_type: &'static str,
}

/// A generated legacy database. Documents refer to each other by index; the loader turns
/// indexes into ids.
#[derive(Clone, Debug, Default)]
pub struct Dataset {
    pub organizations: Vec<String>,
    pub objects: Vec<SeedObject>,
    pub links: Vec<SeedLink>,
}

/// A dataset every case starts from instead of a generated one (real documents from an
/// export, `check --from-export`). Options compare equal when they share the same dataset.
#[derive(Clone, Debug)]
pub struct Fixed(pub std::sync::Arc<Dataset>);

impl PartialEq for Fixed {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Fixed {}

/// A reference to another generated object, replaced by its id when the dataset is loaded.
pub fn object_ref(index: usize) -> Value {
    Value::String(compact_str::format_compact!("objects:{}", index + 1))
}

/// A reference to an organization, by index.
pub fn org_ref(index: usize) -> Value {
    Value::String(compact_str::format_compact!("organizations:{}", index + 1))
}

fn num(x: f64) -> Value {
    Value::Float64(x)
}

fn s(x: impl Into<crate::value::Str>) -> Value {
    Value::String(x.into())
}

/// Fields built by inserting names in any order, sorted once at the end (`Fields::from_pairs`)
/// instead of shifted into place at each insert.
struct Pairs(Vec<(crate::value::Str, Value)>);

impl Pairs {
    fn with_capacity(n: usize) -> Pairs {
        Pairs(Vec::with_capacity(n))
    }

    fn insert(&mut self, name: crate::value::Str, value: Value) {
        self.0.push((name, value));
    }

    fn done(self) -> Fields {
        Fields::from_pairs(self.0)
    }
}

/// A realistic person (name and email) for a customer or ticket holder, drawn from `rng`
/// by `fake` (`person_drawn`). The workload draws the same few people again and again (an
/// edit's person comes from a generator seeded by the step's seed, and exhaustive
/// exploration takes each step in thousands of states), and fake's name formatting costs
/// thousands of instructions a draw; so each thread remembers the last draws
/// (`PEOPLE_KEPT` of them, by generator state), each with the generator as the draw left
/// it. A remembered draw gives the same person and leaves `rng` where the draw would.
pub fn person(rng: &mut Rng) -> (String, String) {
    use std::hash::{Hash, Hasher};
    type Kept = Option<(DrawKey, Rng, (String, String))>;
    thread_local! {
        static PEOPLE: std::cell::RefCell<Vec<Kept>> = std::cell::RefCell::new(vec![None; PEOPLE_KEPT]);
    }
    let key: DrawKey = (rng.get_seed(), rng.get_stream(), rng.get_word_pos());
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    let slot = (h.finish() % PEOPLE_KEPT as u64) as usize;
    PEOPLE.with_borrow_mut(|people| {
        if let Some((kept, after, drawn)) = &people[slot]
            && *kept == key
        {
            rng.clone_from(after);
            return drawn.clone();
        }
        let drawn = person_drawn(rng);
        people[slot] = Some((key, rng.clone(), drawn.clone()));
        drawn
    })
}

/// How many draws of `person` each thread remembers.
const PEOPLE_KEPT: usize = 64;

/// A generator's state: seed, stream and position.
type DrawKey = ([u8; 32], u64, u128);

/// A person drawn from `rng` by `fake`, every time.
pub fn person_drawn(rng: &mut Rng) -> (String, String) {
    (Name().fake_with_rng(rng), SafeEmail().fake_with_rng(rng))
}

/// A date in 2025-2026 as Convex stores dates: float milliseconds since the epoch.
pub fn date(rng: &mut Rng) -> f64 {
    (1_735_689_600_000u64 + rng.random_range(0..63_072_000u64) * 1000) as f64
}

/// A price in cents, in steps of 50.
pub fn price(rng: &mut Rng) -> f64 {
    (rng.random_range(10..400u32) * 50) as f64
}

/// The `customProperties` of a new event.
pub fn event_properties(rng: &mut Rng) -> Fields {
    let start = date(rng);
    let city: String = CityName().fake_with_rng(rng);
    let mut cp = Pairs::with_capacity(7);
    cp.insert(
        "slug".into(),
        s(format!(
            "{}-{}",
            city.to_lowercase().replace(' ', "-"),
            rng.random_range(100..999u32)
        )),
    );
    cp.insert("startDate".into(), num(start));
    cp.insert(
        "endDate".into(),
        num(start + 3_600_000.0 * rng.random_range(2..48u32) as f64),
    );
    cp.insert("location".into(), s(city));
    cp.insert(
        "timezone".into(),
        s(TimeZone().fake_with_rng::<String, _>(rng)),
    );
    cp.insert(
        "maxCapacity".into(),
        num((rng.random_range(2..200u32) * 10) as f64),
    );
    if rng.random_bool(0.3) {
        cp.insert("organizerNote".into(), s("doors open an hour early"));
    }
    cp.done()
}

/// An `objects` document with the common top-level fields.
pub fn object_fields(
    org: &Value,
    ty: &str,
    subtype: Option<&str>,
    name: String,
    status: &str,
    cp: Fields,
    at: f64,
) -> Fields {
    let mut f = Pairs::with_capacity(8);
    f.insert("organizationId".into(), org.clone());
    f.insert("type".into(), s(ty));
    if let Some(st) = subtype {
        f.insert("subtype".into(), s(st));
    }
    f.insert("name".into(), s(name));
    f.insert("status".into(), s(status));
    f.insert("customProperties".into(), Value::Object(cp));
    f.insert("createdAt".into(), num(at));
    f.insert("updatedAt".into(), num(at));
    f.done()
}

/// The shape a new transaction is written in.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxShape {
    V1,
    V2,
    Booking,
}

/// What a purchase is for: the product, its event, the session and the tickets issued.
pub struct Purchase<'a> {
    pub product: &'a Value,
    pub product_name: &'a str,
    pub event: &'a Value,
    pub event_name: &'a str,
    pub session: &'a Value,
    pub quantity: u32,
    pub unit_price: f64,
}

/// The `customProperties` of a new transaction of the given shape.
pub fn transaction_properties(
    rng: &mut Rng,
    shape: TxShape,
    purchase: &Purchase<'_>,
    payment_status: &str,
    with_totals: bool,
) -> Fields {
    let (customer, email) = person(rng);
    let mut cp = Pairs::with_capacity(20);
    let qty = purchase.quantity as f64;
    let tax_rate = [0.0, 7.0, 19.0][rng.random_range(0..3usize)];
    let gross = purchase.unit_price * qty;
    let tax = (gross * tax_rate / (100.0 + tax_rate)).round();
    cp.insert("customerName".into(), s(customer));
    cp.insert("customerEmail".into(), s(email));
    if rng.random_bool(0.4) {
        cp.insert(
            "customerPhone".into(),
            s(format!(
                "+49 30 {}",
                rng.random_range(1_000_000..9_999_999u32)
            )),
        );
    }
    cp.insert(
        "currency".into(),
        s(CurrencyCode().fake_with_rng::<String, _>(rng)),
    );
    cp.insert(
        "paymentMethod".into(),
        s(["card", "invoice", "sepa_debit"][rng.random_range(0..3usize)]),
    );
    cp.insert("paymentStatus".into(), s(payment_status));
    cp.insert("transactionDate".into(), num(date(rng)));
    match shape {
        TxShape::V2 => {
            let mut item = Pairs::with_capacity(9);
            item.insert("productId".into(), purchase.product.clone());
            item.insert("productName".into(), s(purchase.product_name));
            item.insert("quantity".into(), num(qty));
            item.insert("unitPriceInCents".into(), num(purchase.unit_price));
            item.insert("totalPriceInCents".into(), num(gross));
            item.insert("taxRatePercent".into(), num(tax_rate));
            item.insert("taxAmountInCents".into(), num(tax));
            item.insert("eventId".into(), purchase.event.clone());
            item.insert("eventName".into(), s(purchase.event_name));
            cp.insert(
                "lineItems".into(),
                Value::Array(vec![Value::Object(item.done())]),
            );
            cp.insert("subtotalInCents".into(), num(gross - tax));
            cp.insert("taxAmountInCents".into(), num(tax));
            cp.insert("totalInCents".into(), num(gross));
            cp.insert("checkoutSessionId".into(), purchase.session.clone());
            cp.insert(
                "payerType".into(),
                s(if rng.random_bool(0.8) {
                    "individual"
                } else {
                    "organization"
                }),
            );
            cp.insert("invoicingStatus".into(), s("pending"));
        }
        TxShape::V1 => {
            cp.insert("productId".into(), purchase.product.clone());
            cp.insert("productName".into(), s(purchase.product_name));
            cp.insert("eventId".into(), purchase.event.clone());
            cp.insert("eventName".into(), s(purchase.event_name));
            cp.insert("quantity".into(), num(qty));
            cp.insert("unitPriceInCents".into(), num(purchase.unit_price));
            cp.insert("amountInCents".into(), num(gross));
            cp.insert("totalPriceInCents".into(), num(gross));
            cp.insert("taxRatePercent".into(), num(tax_rate));
            cp.insert("taxAmountInCents".into(), num(tax));
            cp.insert("checkoutSessionId".into(), purchase.session.clone());
            if with_totals {
                cp.insert("subtotalInCents".into(), num(gross - tax));
                cp.insert("totalInCents".into(), num(gross));
            }
        }
        TxShape::Booking => {
            cp.insert(
                "bookingId".into(),
                s(format!("bk_{}", rng.random_range(10_000..99_999u32))),
            );
            cp.insert(
                "resourceId".into(),
                s(format!("room-{}", rng.random_range(1..20u32))),
            );
            cp.insert("amountInCents".into(), num(gross));
            cp.insert("totalInCents".into(), num(gross));
        }
    }
    cp.done()
}

/// The `customProperties` of a new checkout ticket.
pub fn ticket_properties(rng: &mut Rng, purchase: &Purchase<'_>, number: u32) -> Fields {
    let (holder, email) = person(rng);
    let mut cp = Pairs::with_capacity(6);
    cp.insert("productId".into(), purchase.product.clone());
    cp.insert("eventId".into(), purchase.event.clone());
    cp.insert("holderName".into(), s(holder));
    cp.insert("holderEmail".into(), s(email));
    cp.insert("ticketNumber".into(), num(number as f64));
    cp.insert("checkoutSessionId".into(), purchase.session.clone());
    cp.done()
}

/// Makes a clean document dirty in one of the ways production data is; returns how and the
/// legacy field path the strict mapping will report.
fn dirty(kind: Kind, fields: &mut Fields, rng: &mut Rng) -> Option<(Dirt, &'static str)> {
    let Some(Value::Object(cp)) = fields.get_mut("customProperties") else {
        return None;
    };
    let v1 = kind == Kind::Transactions
        && cp.contains_key("amountInCents")
        && cp.contains_key("productId");
    let choices: &[Dirt] = match kind {
        Kind::Events => &[Dirt::AmountAsString, Dirt::MissingRequired],
        Kind::Tickets => &[Dirt::MalformedId, Dirt::MissingRequired],
        Kind::Transactions if v1 => &[
            Dirt::MalformedId,
            Dirt::AmountAsString,
            Dirt::V1WithoutTotals,
            Dirt::MissingRequired,
        ],
        Kind::Transactions => &[Dirt::AmountAsString, Dirt::MissingRequired],
    };
    let dirt = choices[rng.random_range(0..choices.len())];
    let path = match (kind, dirt) {
        (Kind::Events, Dirt::AmountAsString) => {
            cp.insert("maxCapacity".into(), s("100"));
            "customProperties.maxCapacity"
        }
        (Kind::Events, _) => {
            cp.remove("slug");
            "customProperties.slug"
        }
        (Kind::Tickets, Dirt::MalformedId) => {
            cp.insert(
                "eventId".into(),
                s(format!("evt_{}", rng.random_range(100..999u32))),
            );
            "customProperties.eventId"
        }
        (Kind::Tickets, _) => {
            cp.remove("holderEmail");
            "customProperties.holderEmail"
        }
        (Kind::Transactions, Dirt::MalformedId) => {
            cp.insert(
                "eventId".into(),
                s(format!("evt_{}", rng.random_range(100..999u32))),
            );
            "customProperties.eventId"
        }
        (Kind::Transactions, Dirt::AmountAsString) => {
            let cents = cp
                .get("totalInCents")
                .or(cp.get("totalPriceInCents"))
                .and_then(Value::as_f64)
                .unwrap_or(1250.0);
            let field = if cp.contains_key("totalInCents") {
                "totalInCents"
            } else {
                "totalPriceInCents"
            };
            cp.insert(field.into(), s(format!("{:.2}", cents / 100.0)));
            if field == "totalInCents" {
                "customProperties.totalInCents"
            } else {
                "customProperties.totalPriceInCents"
            }
        }
        (Kind::Transactions, Dirt::V1WithoutTotals) => {
            for f in ["subtotalInCents", "totalInCents", "totalPriceInCents"] {
                cp.remove(f);
            }
            "customProperties.totalPriceInCents"
        }
        (Kind::Transactions, _) => {
            cp.remove("customerEmail");
            "customProperties.customerEmail"
        }
    };
    Some((dirt, path))
}

/// Generates a legacy database from a seed.
pub fn generate(seed: u64, options: &GenOptions) -> Dataset {
    let mut rng = rng(seed);
    let mut data = Dataset::default();
    // Organizations of about 100 documents: per-organization reads stay the same size
    // whatever the size of the whole table.
    let orgs = (options.documents / 100).max(2);
    for _ in 0..orgs {
        data.organizations
            .push(CompanyName().fake_with_rng(&mut rng));
    }
    let mut at = 1_735_689_600_000.0;
    let dirty_p = f64::from(options.dirty_percent.min(100)) / 100.0;
    let push = |data: &mut Dataset, rng: &mut Rng, kind: Option<Kind>, fields: Fields| -> usize {
        let mut obj = SeedObject { fields, dirt: None };
        if let Some(kind) = kind
            && rng.random_bool(dirty_p)
        {
            let clean = obj.fields.clone();
            if let Some((dirt, path)) = dirty(kind, &mut obj.fields, rng) {
                obj.dirt = Some((dirt, path, clean));
            }
        }
        data.objects.push(obj);
        data.objects.len() - 1
    };
    // Each organization gets a few events, each with a product.
    // Per organization: (event, product, event name, product name, unit price).
    type Entry = (usize, usize, String, String, f64);
    let mut catalog: Vec<Vec<Entry>> = vec![Vec::new(); orgs];
    let events_per_org = (options.documents / orgs / 12).clamp(1, 6);
    for (o, entries) in catalog.iter_mut().enumerate() {
        for _ in 0..events_per_org {
            at += 60_000.0;
            let cp = event_properties(&mut rng);
            let name = format!("{} Live", cp["location"].as_str().unwrap_or("City"));
            let status =
                ["published", "published", "draft", "completed"][rng.random_range(0..4usize)];
            let e = push(
                &mut data,
                &mut rng,
                Some(Kind::Events),
                object_fields(&org_ref(o), "event", None, name.clone(), status, cp, at),
            );
            let product_name = format!("{name} admission");
            let unit = price(&mut rng);
            let mut pcp = Fields::new();
            pcp.insert("priceInCents".into(), num(unit));
            pcp.insert("eventId".into(), object_ref(e));
            let p = push(
                &mut data,
                &mut rng,
                None,
                object_fields(
                    &org_ref(o),
                    "product",
                    Some("ticket"),
                    product_name.clone(),
                    "active",
                    pcp,
                    at,
                ),
            );
            entries.push((e, p, name, product_name, unit));
        }
    }
    while data.objects.len() < options.documents {
        at += 60_000.0;
        let o = rng.random_range(0..orgs);
        if rng.random_bool(0.06) {
            let (name, email) = person(&mut rng);
            let mut cp = Fields::new();
            cp.insert("requesterEmail".into(), s(email));
            cp.insert(
                "priority".into(),
                s(["low", "normal", "high"][rng.random_range(0..3usize)]),
            );
            push(
                &mut data,
                &mut rng,
                None,
                object_fields(
                    &org_ref(o),
                    "ticket",
                    Some("support"),
                    format!("Help for {name}"),
                    "open",
                    cp,
                    at,
                ),
            );
            continue;
        }
        let (e, p, ename, pname, unit) = catalog[o][rng.random_range(0..catalog[o].len())].clone();
        let shape = match rng.random_range(0..10u32) {
            0 => TxShape::Booking,
            1..=3 => TxShape::V1,
            _ => TxShape::V2,
        };
        let session = push(
            &mut data,
            &mut rng,
            None,
            object_fields(
                &org_ref(o),
                "checkout_session",
                None,
                "Checkout".into(),
                "completed",
                Fields::new(),
                at,
            ),
        );
        let quantity = if shape == TxShape::Booking {
            1
        } else {
            rng.random_range(1..=3u32)
        };
        let (pr, er, sr) = (object_ref(p), object_ref(e), object_ref(session));
        let purchase = Purchase {
            product: &pr,
            product_name: &pname,
            event: &er,
            event_name: &ename,
            session: &sr,
            quantity,
            unit_price: unit,
        };
        let mut tickets = Vec::new();
        if shape != TxShape::Booking {
            for n in 1..=quantity {
                let cp = ticket_properties(&mut rng, &purchase, n);
                let status = TICKET_STATUS_MIX[rng.random_range(0..TICKET_STATUS_MIX.len())];
                let t = push(
                    &mut data,
                    &mut rng,
                    Some(Kind::Tickets),
                    object_fields(
                        &org_ref(o),
                        "ticket",
                        Some("general"),
                        format!("{ename} #{n}"),
                        status,
                        cp,
                        at,
                    ),
                );
                data.links.push(SeedLink {
                    from: t,
                    to: e,
                    link_type: "admits_to",
                });
                tickets.push(t);
            }
        }
        let status = PAYMENT_STATUSES[rng.random_range(0..PAYMENT_STATUSES.len())];
        let with_totals = rng.random_bool(0.6);
        let mut cp = transaction_properties(&mut rng, shape, &purchase, status, with_totals);
        if shape == TxShape::V1
            && let Some(t) = tickets.first()
        {
            cp.insert("ticketId".into(), object_ref(*t));
        }
        let x = push(
            &mut data,
            &mut rng,
            Some(Kind::Transactions),
            object_fields(
                &org_ref(o),
                "transaction",
                Some(if shape == TxShape::Booking {
                    "booking"
                } else {
                    "ticket_purchase"
                }),
                format!("Order by {}", cp["customerName"].as_str().unwrap_or("?")),
                "active",
                cp,
                at,
            ),
        );
        for t in tickets {
            if let Value::Object(cp) = data.objects[t]
                .fields
                .get_mut("customProperties")
                .expect("tickets have customProperties")
            {
                cp.insert("transactionId".into(), object_ref(x));
            }
            if let Some((_, _, clean)) = &mut data.objects[t].dirt
                && let Some(Value::Object(cp)) = clean.get_mut("customProperties")
            {
                cp.insert("transactionId".into(), object_ref(x));
            }
            data.links.push(SeedLink {
                from: x,
                to: t,
                link_type: "has_ticket",
            });
        }
    }
    data
}

const TICKET_STATUS_MIX: [&str; 6] = [
    "issued",
    "issued",
    "issued",
    "redeemed",
    "cancelled",
    "transferred",
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{derive, kind_of};

    /// A remembered draw of `person` is the draw `fake` makes, and leaves the generator
    /// where that draw does: for 300 generator states (more than are kept, so draws are
    /// evicted and drawn again), each drawn three times in a row from equal generators.
    #[test]
    fn a_remembered_person_is_the_person_drawn() {
        let mut distinct = std::collections::BTreeSet::new();
        for round in 0..3 {
            for seed in 0..100u64 {
                for skip in 0..3u32 {
                    let start = || {
                        let mut rng = rng(seed);
                        for _ in 0..skip * 7 {
                            rng.random::<u32>();
                        }
                        rng
                    };
                    let (mut kept, mut drawn) = (start(), start());
                    let a = person(&mut kept);
                    let b = person_drawn(&mut drawn);
                    assert_eq!(a, b, "seed {seed}, skip {skip}, round {round}");
                    assert_eq!(kept, drawn, "the generator after, seed {seed}");
                    assert_eq!(kept.random::<u64>(), drawn.random::<u64>());
                    distinct.insert(a);
                }
            }
        }
        // The draws were of many people, not one remembered for all.
        assert!(distinct.len() > 250, "{} people", distinct.len());
    }

    #[test]
    fn generation_is_a_function_of_the_seed() {
        let o = GenOptions {
            documents: 200,
            dirty_percent: 20,
        };
        let a = generate(7, &o);
        let b = generate(7, &o);
        assert_eq!(a.objects.len(), b.objects.len());
        assert!(
            a.objects
                .iter()
                .zip(&b.objects)
                .all(|(x, y)| x.fields == y.fields)
        );
        let c = generate(8, &o);
        assert!(
            a.objects
                .iter()
                .zip(&c.objects)
                .any(|(x, y)| x.fields != y.fields)
        );
    }

    #[test]
    fn exactly_the_dirty_documents_fail_strict_mapping_at_the_recorded_path() {
        let data = generate(
            3,
            &GenOptions {
                documents: 2_000,
                dirty_percent: 15,
            },
        );
        let mut dirty = 0;
        for obj in &data.objects {
            let Some(kind) = kind_of(&obj.fields) else {
                continue;
            };
            let result = derive(kind, &obj.fields, true);
            match &obj.dirt {
                Some((_, path, clean)) => {
                    dirty += 1;
                    assert_eq!(result.unwrap_err().path, *path);
                    assert!(derive(kind, clean, true).is_ok());
                }
                None => assert!(result.is_ok(), "{result:?}"),
            }
        }
        assert!(dirty > 50, "only {dirty} dirty documents");
    }
}
