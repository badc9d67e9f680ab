//! JSON value mutations shared by the property tests of the JSON readers (`bundle/` and
//! `graphs/` `tests/parse_props.rs`, each including this file with `#[path]`): replace a number
//! or list somewhere in a JSON text with an odd value, a long list, deep nesting, or text no
//! JSON value can hold.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Number, Value};

/// Every number- or list-valued key path of a JSON value.
fn value_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                prefix.push(k.clone());
                value_paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            out.push(prefix.clone());
            for (i, x) in a.iter().enumerate() {
                prefix.push(i.to_string());
                value_paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Number(_) => out.push(prefix.clone()),
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        v => &mut v[k.as_str()],
    })
}

/// A replacement for a value; `Raw` is spliced in as text (numbers a JSON value cannot hold).
#[derive(Clone, Debug)]
pub enum NewValue {
    Json(Value),
    Raw(String),
    /// A list of `n` copies of a number, signed or not (a long `delay_pattern` or ratio list).
    Many(usize, Number),
    /// Brackets nested `n` deep (deeper than a parser may allow).
    Nested(usize),
}

pub fn new_value() -> impl Strategy<Value = NewValue> {
    prop_oneof![
        4 => prop_oneof![
            Just(json!(0)),
            Just(json!(1)),
            Just(json!(2)),
            Just(json!(3)),
            Just(json!(-1)),
            Just(json!(i64::MIN)),
            Just(json!(1 << 20)),
            Just(json!((1 << 20) + 1)),
            Just(json!(1u64 << 32)),
            Just(json!(1u64 << 62)),
            Just(json!(1_000_000_000_000_000_000u64)),
            Just(json!(u64::MAX)),
            Just(json!(1.5)),
            Just(json!(1e300)),
            Just(json!(-1e-300)),
            Just(json!("7")),
            Just(Value::Null),
            Just(json!([])),
            Just(json!({})),
            Just(json!([2, 2])),
        ]
        .prop_map(NewValue::Json),
        1 => prop_oneof![
            Just("18446744073709551616".to_string()),
            Just("-9223372036854775809".to_string()),
            Just("1e400".to_string()),
            Just("-0".to_string()),
            Just("0.0".to_string()),
            Just("NaN".to_string()),
        ]
        .prop_map(NewValue::Raw),
        1 => (
            prop_oneof![0usize..4, Just(9), Just(70), Just(200), Just(10_000)],
            prop_oneof![
                Just(Number::from(0)),
                Just(Number::from(1)),
                Just(Number::from(2)),
                Just(Number::from(8)),
                Just(Number::from(-1)),
                Just(Number::from(1 << 20)),
                Just(Number::from(1u64 << 40)),
                Just(Number::from(i64::MAX)),
                Just(Number::from(u64::MAX)),
            ],
        )
            .prop_map(|(n, v)| NewValue::Many(n, v)),
        1 => prop_oneof![Just(127usize), Just(129), Just(1000), Just(5_000), Just(20_000)]
            .prop_map(NewValue::Nested),
    ]
}

/// `text` with the value at a number- or list-valued path (picked by `which`) replaced; the
/// text as it was when it is no JSON or has no such path.
pub fn edit_value(text: &str, which: &Index, new: &NewValue) -> String {
    // (An earlier edit may have left text no JSON parser takes: leave it so.)
    let Ok(mut v) = serde_json::from_str::<Value>(text) else {
        return text.to_string();
    };
    let mut paths = Vec::new();
    value_paths(&v, &mut Vec::new(), &mut paths);
    if paths.is_empty() {
        return text.to_string();
    }
    let slot = at_path(&mut v, &paths[which.index(paths.len())]);
    let raw = match new {
        NewValue::Json(x) => {
            *slot = x.clone();
            return serde_json::to_string(&v).unwrap();
        }
        NewValue::Many(n, x) => {
            *slot = json!(vec![x.clone(); *n]);
            return serde_json::to_string(&v).unwrap();
        }
        NewValue::Raw(r) => r.clone(),
        NewValue::Nested(depth) => format!("{}{}", "[".repeat(*depth), "]".repeat(*depth)),
    };
    *slot = json!("@@RAW@@");
    serde_json::to_string(&v)
        .unwrap()
        .replace("\"@@RAW@@\"", &raw)
}
