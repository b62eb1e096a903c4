//! Changes to a state: add, del and replace by key, every problem named
//! with nothing changed, and the difference between two states.
use serde_json::json;
use xvr_control::change::{apply_changes, diff, Change};
use xvr_control::State;

fn example() -> State {
    State::from_json(include_str!("../../examples/two-tenants.json")).unwrap()
}

fn changes(value: serde_json::Value) -> Vec<Change> {
    serde_json::from_value(value).unwrap()
}

#[test]
fn changes_apply_by_key_and_the_difference_names_them() {
    let old = example();
    let route = json!({ "tenant": "acme", "prefix": "10.7.0.0/16", "next_hop": "blackhole" });
    let new = apply_changes(
        &old,
        &changes(json!([
            { "action": "add", "table": "routes", "entry": route },
            { "action": "del", "table": "nat.source", "entry": { "tenant": "acme" } },
        ])),
    )
    .unwrap();
    assert!(new
        .routes
        .iter()
        .any(|r| r.prefix.to_string() == "10.7.0.0/16"));
    assert!(new.nat.source.is_empty());
    new.build().unwrap();
    let d = diff(&old, &new);
    assert_eq!(d["routes"]["added"], json!(["acme 10.7.0.0/16"]), "{d}");
    assert_eq!(d["nat.source"]["removed"], json!(["acme"]), "{d}");
    assert!(d.get("neighbors").is_none(), "{d}");
    assert_eq!(diff(&old, &old), json!({}));
}

#[test]
fn every_bad_change_is_named_and_nothing_changes() {
    let old = example();
    let errors = apply_changes(
        &old,
        &changes(json!([
            { "action": "add", "table": "tenants", "entry": { "name": "acme", "vni": 5 } },
            { "action": "del", "table": "routes", "entry": { "tenant": "acme", "prefix": "10.99.0.0/16" } },
            { "action": "replace", "table": "gizmos", "entry": {} },
        ])),
    )
    .unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].contains("changes[0].entry: tenants acme exists already"),
        "{errors:?}"
    );
    assert!(
        errors[1].contains("changes[1].entry: no routes acme 10.99.0.0/16"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("changes[2].table: unknown table \"gizmos\""),
        "{errors:?}"
    );
    // An entry of the wrong shape fails as the state would.
    let errors = apply_changes(
        &old,
        &changes(json!([{ "action": "add", "table": "routes", "entry": { "tenant": "acme" } }])),
    )
    .unwrap_err();
    assert!(
        errors[0].starts_with("changes: missing field"),
        "{errors:?}"
    );
}

#[test]
fn the_schema_describes_every_table_with_the_keys_commit_uses() {
    let schema = xvr_control::schema::schema();
    let entries = schema["tables"].as_array().unwrap();
    let described: Vec<&str> = entries
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let tables: Vec<&str> = xvr_control::change::TABLES
        .iter()
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(described, tables);
    for (t, keys) in xvr_control::change::TABLES {
        let entry = entries.iter().find(|e| e["name"] == *t).unwrap();
        let fields: Vec<&str> = entry["key"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["field"].as_str().unwrap())
            .collect();
        for key in *keys {
            assert!(fields.contains(key), "{t}: {key} not in {fields:?}");
        }
        for k in entry["key"].as_array().unwrap() {
            let kind = k["match"].as_str().unwrap();
            assert!(schema["match_kinds"].get(kind).is_some(), "{t}: {kind}");
        }
    }
}
