//! What serde's derive lets through and a state must not: a JSON array
//! where an object belongs (a struct reads a sequence as its fields in
//! order, so `"state": []` read as the empty state and removed
//! everything), and a prefix written other than as it reads back (ipnet
//! takes `010.7.0.0/16` for 10.7.0.0/16; std's addresses already refuse
//! leading zeros). A state is read, written back, and the two compared:
//! wherever the written one has an object or a prefix, the input must
//! have it, as written.
use crate::ConfigError;
use ipnet::Ipv4Net;
use serde_json::Value;

/// Every place where `input` has another shape than `read_back` (the
/// state it was read as, serialised), by path.
pub fn mismatches(input: &Value, read_back: &Value) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    walk(input, read_back, "", &mut errors);
    errors
}

fn walk(input: &Value, read_back: &Value, path: &str, errors: &mut Vec<ConfigError>) {
    let mut error = |message: String| {
        errors.push(ConfigError {
            field: path.to_string(),
            message,
        })
    };
    match (input, read_back) {
        (Value::Object(input), Value::Object(read_back)) => {
            for (key, given) in input {
                let path = match path {
                    "" => key.clone(),
                    _ => format!("{path}.{key}"),
                };
                match read_back.get(key) {
                    Some(value) => walk(given, value, &path, errors),
                    // Left out when written back, so read as empty: a
                    // list with items would not be, a struct read from
                    // a sequence is.
                    None if given.as_array().is_some_and(|a| !a.is_empty()) => {
                        errors.push(ConfigError {
                            field: path,
                            message: "an array where an object belongs".to_string(),
                        })
                    }
                    None => {}
                }
            }
        }
        (Value::Array(input), Value::Array(read_back)) => {
            for (i, (given, value)) in input.iter().zip(read_back).enumerate() {
                walk(given, value, &format!("{path}[{i}]"), errors);
            }
        }
        (Value::Array(_), Value::Object(_)) => {
            error("an array where an object belongs".to_string());
        }
        (Value::String(given), Value::String(read))
            if given != read
                && given.parse::<Ipv4Net>().is_ok()
                && read.parse::<Ipv4Net>().is_ok() =>
        {
            error(format!(
                "{given:?} is not a prefix as written (leading zeros?); write {read:?}"
            ));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arrays_for_objects_and_odd_prefixes_are_named() {
        let input = json!({"a": [], "b": [{"p": "010.7.0.0/16"}, {"p": "10.8.0.0/16"}]});
        let read_back = json!({"a": {}, "b": [{"p": "10.7.0.0/16"}, {"p": "10.8.0.0/16"}]});
        let errors = mismatches(&input, &read_back);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["a", "b[0].p"]);
    }

    #[test]
    fn other_rewritings_pass() {
        // A MAC read back in lower case is the same MAC.
        let input = json!({"mac": "02:AA:00:00:00:01", "n": 1});
        let read_back = json!({"mac": "02:aa:00:00:00:01", "n": 1, "default": true});
        assert!(mismatches(&input, &read_back).is_empty());
    }
}
