//! docs/control-protocol.md never drifts from the code: every example
//! request in it is run through xvrd's handler (over the example state)
//! and its answer must have the documented shape (errors: the same code
//! and message); every op must be documented.
use arc_swap::ArcSwap;
use serde_json::Value;
use std::sync::Arc;
use xvr::mailbox::Live;
use xvr::ops::{DaemonOps, OPS};
use xvr_control::server::respond;
use xvr_control::State;

const DOC: &str = include_str!("../docs/control-protocol.md");

/// The ```json blocks of the document, in order.
fn json_blocks() -> Vec<Value> {
    DOC.split("```json\n")
        .skip(1)
        .map(|rest| {
            let block = rest.split("```").next().unwrap();
            serde_json::from_str(block).unwrap_or_else(|e| panic!("{e}: {block}"))
        })
        .collect()
}

/// Whether `got` has `doc`'s shape: the same keys (maps of counters,
/// whose values are all numbers, may differ in keys, and so may maps of
/// such maps by name, like their first entries), arrays like their first
/// elements, scalars of the same type; null stands for anything.
fn same_shape(doc: &Value, got: &Value, path: &str) -> Result<(), String> {
    let counters = |o: &serde_json::Map<String, Value>| o.values().all(Value::is_number);
    let by_name = |o: &serde_json::Map<String, Value>| {
        o.values()
            .all(|v| v.as_object().is_some_and(|c| !c.is_empty() && counters(c)))
    };
    match (doc, got) {
        (Value::Null, _) | (_, Value::Null) => Ok(()),
        (Value::Object(d), Value::Object(g)) if counters(d) && counters(g) => Ok(()),
        (Value::Object(d), Value::Object(g)) if by_name(d) && by_name(g) => {
            match (d.iter().next(), g.values().next()) {
                (Some((k, a)), Some(b)) => same_shape(a, b, &format!("{path}.{k}")),
                _ => Ok(()),
            }
        }
        (Value::Object(d), Value::Object(g)) => {
            let (dk, gk): (Vec<_>, Vec<_>) = (d.keys().collect(), g.keys().collect());
            let mut sorted = (dk.clone(), gk.clone());
            sorted.0.sort();
            sorted.1.sort();
            if sorted.0 != sorted.1 {
                return Err(format!("{path}: documented keys {dk:?}, got {gk:?}"));
            }
            d.iter()
                .try_for_each(|(k, v)| same_shape(v, &g[k], &format!("{path}.{k}")))
        }
        (Value::Array(d), Value::Array(g)) => match (d.first(), g.first()) {
            (Some(a), Some(b)) => same_shape(a, b, &format!("{path}[0]")),
            _ => Ok(()),
        },
        (Value::String(_), Value::String(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::Bool(_), Value::Bool(_)) => Ok(()),
        _ => Err(format!("{path}: documented {doc}, got {got}")),
    }
}

#[test]
fn every_documented_example_holds_and_every_op_is_documented() {
    let state = State::from_json(include_str!("../examples/two-tenants.json")).unwrap();
    let tables = Arc::new(ArcSwap::from_pointee(state.build().unwrap()));
    let mut ops = DaemonOps::new(state, tables, Arc::new(Live::new(1)));
    let blocks = json_blocks();
    assert!(
        blocks.len() >= 2 && blocks.len().is_multiple_of(2),
        "{} blocks",
        blocks.len()
    );
    let mut documented = Vec::new();
    for pair in blocks.chunks(2) {
        let (request, documented_answer) = (&pair[0], &pair[1]);
        documented.push(request["op"].as_str().unwrap().to_string());
        let line = serde_json::to_vec(request).unwrap();
        let answer: Value = serde_json::from_slice(&respond(&line, &mut ops)).unwrap();
        assert_eq!(answer["id"], request["id"], "{answer}");
        match documented_answer.get("error") {
            Some(error) => assert_eq!(&answer["error"], error, "{request}"),
            None => {
                assert!(answer.get("error").is_none(), "{request}: {answer}");
                if let Err(e) = same_shape(documented_answer, &answer, "answer") {
                    panic!("{request}:\n{e}\ngot {answer}");
                }
            }
        }
    }
    for op in OPS {
        assert!(documented.iter().any(|d| d == op), "{op} is not documented");
    }
}

/// The writes a careless or hostile client could slip through: an empty
/// state that would take every VM off the network, an array for the
/// state, an id too long for 64 bits. Each is refused or echoed exactly,
/// and the running state stays as it was.
#[test]
fn careless_writes_are_refused_and_ids_come_back_as_sent() {
    let state = State::from_json(include_str!("../examples/two-tenants.json")).unwrap();
    let tables = Arc::new(ArcSwap::from_pointee(state.build().unwrap()));
    let mut ops = DaemonOps::new(state, tables.clone(), Arc::new(Live::new(1)));
    let generation = tables.load().generation();
    let ask = |ops: &mut DaemonOps, line: &str| -> (String, Value) {
        let raw = String::from_utf8(respond(line.as_bytes(), ops)).unwrap();
        let value = serde_json::from_str(&raw).unwrap();
        (raw, value)
    };
    let (_, answer) = ask(&mut ops, r#"{"id": 1, "op": "apply", "state": {}}"#);
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("state: removes every port"), "{answer}");
    let (_, answer) = ask(&mut ops, r#"{"id": 2, "op": "apply", "state": []}"#);
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("a state is a JSON object"), "{answer}");
    let (_, answer) = ask(
        &mut ops,
        r#"{"id": 3, "op": "apply", "state": {"tenants": [], "nat": [[]]}}"#,
    );
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("state.nat: an array where an object belongs"),
        "{answer}"
    );
    assert_eq!(tables.load().generation(), generation, "nothing changed");
    // Said on purpose, it is done.
    let (_, answer) = ask(
        &mut ops,
        r#"{"id": 4, "op": "apply", "remove_all": true, "state": {}}"#,
    );
    assert!(answer.get("error").is_none(), "{answer}");
    assert_ne!(tables.load().generation(), generation);
    // An id is echoed byte for byte, however long.
    let (raw, _) = ask(
        &mut ops,
        r#"{"id": 123456789012345678901234567890, "op": "version"}"#,
    );
    assert!(
        raw.starts_with(r#"{"id":123456789012345678901234567890,"#),
        "{raw}"
    );
}
