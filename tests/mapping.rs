//! The mapping names the legacy field of a reference that cannot be remapped yet, and what it
//! waits for.

use cutover::data::{GenOptions, generate};
use cutover::domain::kind_of;
use cutover::plan::Plan;
use cutover::schema::Kind;
use cutover::value::Value;
use cutover::world::{PlantedBugs, World};
use std::sync::Arc;

#[test]
fn an_unmigrated_event_blocks_transactions_at_their_legacy_field() {
    let data = generate(
        4,
        &GenOptions {
            documents: 400,
            dirty_percent: 0,
        },
    );
    let mut world = World::new(Arc::new(Plan::seed()), &data, true, PlantedBugs::default());
    let mut seen = [false; 2];
    for (i, obj) in data.objects.iter().enumerate() {
        if kind_of(&obj.fields) != Some(Kind::Transactions) {
            continue;
        }
        let cp = obj.fields["customProperties"].as_object().unwrap();
        let (v1, expected) = if cp.contains_key("lineItems") {
            (false, "customProperties.lineItems[0].eventId")
        } else if cp.contains_key("eventId") {
            (true, "customProperties.eventId")
        } else {
            continue; // bookings reference no event
        };
        let id = world.handle(i as u32).unwrap();
        let doc = world.store.peek(id).unwrap().clone();
        let err = world.map_now(Kind::Transactions, &doc).unwrap_err();
        assert_eq!(err.path, expected);
        let event = if v1 {
            &cp["eventId"]
        } else {
            &cp["lineItems"].as_array().unwrap()[0].as_object().unwrap()["eventId"]
        };
        assert!(matches!(event, Value::String(_)));
        assert_eq!(
            err.blocked_by.as_deref(),
            event.as_str(),
            "it waits for its event"
        );
        seen[usize::from(v1)] = true;
    }
    assert_eq!(
        seen,
        [true, true],
        "both v1 and v2 transactions were checked"
    );
}
