//! Changes to a desired state, as the control socket takes them: `commit`
//! (a list of add, del and replace on tables, all or nothing) and `apply`
//! (a whole state), and what differs between two states. Entries are
//! found by their table's key fields; firewall rules, an ordered list
//! with no natural key, are found by their whole content.
use crate::State;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Every table of the state and its key fields.
pub const TABLES: &[(&str, &[&str])] = &[
    ("tenants", &["name"]),
    ("ports", &["name"]),
    ("routes", &["tenant", "prefix"]),
    ("neighbors", &["tenant", "ip"]),
    ("vteps", &["ip"]),
    ("remote_vms", &["tenant", "ip"]),
    ("nat.source", &["tenant"]),
    ("nat.static", &["public_ip"]),
    (
        "nat.port_forwards",
        &["public_ip", "protocol", "public_ports"],
    ),
    ("firewall", &[]),
    ("network_acls", &["tenant", "tier"]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Add,
    Del,
    Replace,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    pub action: Action,
    pub table: String,
    pub entry: Value,
}

/// A table being changed: its rows (None once deleted) and key -> row.
type OpenTable = (Vec<Option<Value>>, HashMap<String, usize>);

/// `state` with `changes` made in order; every problem is reported,
/// naming `changes[i]` and the field, and nothing is changed if any.
pub fn apply_changes(state: &State, changes: &[Change]) -> Result<State, Vec<String>> {
    let mut root = serde_json::to_value(state).expect("the state serializes");
    let mut errors = Vec::new();
    // Per table touched: its rows (None once deleted) and key -> row, so
    // a commit of n changes costs n lookups, not n scans.
    let mut open: BTreeMap<&str, OpenTable> = BTreeMap::new();
    for (i, change) in changes.iter().enumerate() {
        let Some(&(table, keys)) = TABLES.iter().find(|(t, _)| *t == change.table) else {
            let known: Vec<&str> = TABLES.iter().map(|(t, _)| *t).collect();
            errors.push(format!(
                "changes[{i}].table: unknown table {:?} (one of: {})",
                change.table,
                known.join(", ")
            ));
            continue;
        };
        let (rows, index) = open.entry(table).or_insert_with(|| {
            let rows: Vec<Option<Value>> = rows_mut(&mut root, table).drain(..).map(Some).collect();
            let index = rows
                .iter()
                .enumerate()
                .map(|(at, row)| (key_of(keys, row.as_ref().expect("all present")), at))
                .collect();
            (rows, index)
        });
        let key = key_of(keys, &change.entry);
        match (change.action, index.get(&key).copied()) {
            (Action::Add, None) => {
                index.insert(key, rows.len());
                rows.push(Some(change.entry.clone()));
            }
            (Action::Add, Some(_)) => errors.push(format!(
                "changes[{i}].entry: {table} {key} exists already (use replace)"
            )),
            (Action::Del, Some(at)) => {
                rows[at] = None;
                index.remove(&key);
            }
            (Action::Replace, Some(at)) => rows[at] = Some(change.entry.clone()),
            (Action::Del | Action::Replace, None) => {
                errors.push(format!("changes[{i}].entry: no {table} {key}"))
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (table, (rows, _)) in open {
        *rows_mut(&mut root, table) = rows.into_iter().flatten().collect();
    }
    State::from_value(&root).map_err(|errors| {
        errors
            .0
            .iter()
            .map(|e| match e.field.as_str() {
                "" => format!("changes: {}", e.message),
                field => format!("changes: {field}: {}", e.message),
            })
            .collect()
    })
}

/// What differs from `old` to `new`, per table: the keys of the entries
/// added, removed and changed (tables without differences are left out).
pub fn diff(old: &State, new: &State) -> Value {
    let (mut old, mut new) = (
        serde_json::to_value(old).expect("serializes"),
        serde_json::to_value(new).expect("serializes"),
    );
    let mut out = Map::new();
    for &(table, keys) in TABLES {
        let index = |rows: &Vec<Value>| -> BTreeMap<String, Value> {
            rows.iter().map(|r| (key_of(keys, r), r.clone())).collect()
        };
        let (before, after) = (
            index(rows_mut(&mut old, table)),
            index(rows_mut(&mut new, table)),
        );
        let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
        let changed: Vec<&String> = after
            .iter()
            .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
            .map(|(k, _)| k)
            .collect();
        if !(added.is_empty() && removed.is_empty() && changed.is_empty()) {
            out.insert(
                table.to_string(),
                json!({ "added": added, "removed": removed, "changed": changed }),
            );
        }
    }
    if old.get("conntrack") != new.get("conntrack") {
        out.insert("conntrack".into(), json!({ "changed": ["conntrack"] }));
    }
    Value::Object(out)
}

/// The rows of `table` (a dotted path) in a state's JSON, created empty
/// if the state left it out.
fn rows_mut<'a>(root: &'a mut Value, table: &str) -> &'a mut Vec<Value> {
    let mut at = root;
    let mut parts = table.split('.').peekable();
    while let Some(part) = parts.next() {
        let object = at.as_object_mut().expect("state sections are objects");
        let empty = if parts.peek().is_some() {
            Value::Object(Map::new())
        } else {
            Value::Array(Vec::new())
        };
        at = object.entry(part).or_insert(empty);
    }
    if !at.is_array() {
        *at = Value::Array(Vec::new());
    }
    at.as_array_mut().expect("made an array above")
}

/// An entry's key, as people read it: `acme 10.1.0.0/16`.
fn key_of(keys: &[&str], entry: &Value) -> String {
    if keys.is_empty() {
        return entry.to_string();
    }
    keys.iter()
        .map(|k| match entry.get(*k) {
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
            None => "-".into(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
