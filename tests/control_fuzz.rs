//! Bad input to xvrd's control handler, generated: random bytes, wrong
//! JSON types, huge numbers, unknown ops and malformed writes. Each line
//! gets exactly one answer (an error, or a result for a harmless read),
//! nothing panics, and the running state is unchanged unless a write was
//! taken (junk can be a valid state: `{}` is the empty one).
use arc_swap::ArcSwap;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::Arc;
use xvr::mailbox::Live;
use xvr::ops::{DaemonOps, OPS};
use xvr_control::server::respond;
use xvr_control::State;

fn handler() -> DaemonOps {
    let state = State::from_json(include_str!("../examples/two-tenants.json")).unwrap();
    let tables = Arc::new(ArcSwap::from_pointee(state.build().unwrap()));
    DaemonOps::new(state, tables, Arc::new(Live::new(1)))
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z0-9./:]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request with a real op (or a made-up one) and junk in its fields.
fn request() -> impl Strategy<Value = Value> {
    let op = prop_oneof![
        prop::sample::select(OPS).prop_map(Value::from),
        "[a-z]{1,10}".prop_map(Value::from),
        any_json(),
    ];
    (
        any_json(),
        op,
        prop::collection::btree_map(
            prop::sample::select(vec![
                "table", "tenant", "state", "changes", "dry_run", "port", "src", "dst", "protocol",
                "dport",
            ]),
            any_json(),
            0..4,
        ),
    )
        .prop_map(|(id, op, fields)| {
            let mut r = json!({ "id": id, "op": op });
            for (k, v) in fields {
                r[k] = v;
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bad_requests_get_one_answer_each_and_change_nothing(
        requests in prop::collection::vec(request(), 1..8),
        junk in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
    ) {
        let mut ops = handler();
        let before = respond(br#"{"id":0,"op":"dump"}"#, &mut ops);
        let lines = requests
            .iter()
            .map(|r| serde_json::to_vec(r).unwrap())
            .chain(junk.into_iter().filter(|j| !j.contains(&b'\n')));
        let mut written = false;
        for line in lines {
            let answer = respond(&line, &mut ops);
            prop_assert_eq!(answer.iter().filter(|&&b| b == b'\n').count(), 1);
            let answer: Value = serde_json::from_slice(&answer).unwrap();
            prop_assert!(answer.get("id").is_some());
            prop_assert!(answer.get("result").is_some() != answer.get("error").is_some());
            written |= answer["result"]["dry_run"] == false;
        }
        if !written {
            prop_assert_eq!(respond(br#"{"id":0,"op":"dump"}"#, &mut ops), before);
        }
    }
}
