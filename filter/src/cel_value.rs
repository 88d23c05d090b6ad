//! JSON to CEL values, in one place: the claims a token carries and the arguments a message
//! passes are both JSON, and the rules must see them the same way.
//!
//! Two forms: [`Value`], the interpreter's enum, which the claims are built as once per
//! verified token; and the interpreter's own boxed values ([`Val`]), which the per-message
//! variables are built as directly, borrowing their strings, since a list answer builds one per
//! item and going through [`Value`] would copy every string and map twice.

use std::sync::Arc;

use std::collections::HashMap;

use cel::Value;
use cel::common::types::{
    CelBool, CelDouble, CelInt, CelList, CelMap as ValMap, CelMapKey, CelNull, CelString, CelUInt,
};
use cel::common::value::Val;
use cel::objects::{Key, Map as CelMap};
use serde_json::{Map, Value as Json};

/// A CEL map with string keys, for the variables the filter builds itself (`mcp`, `auth`).
pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(CelMap {
        map: Arc::new(
            entries
                .into_iter()
                .map(|(k, v)| (Key::String(Arc::new(k.to_string())), v))
                .collect(),
        ),
    })
}

/// A JSON object as a CEL map.
pub fn object(object: &Map<String, Json>) -> Value {
    Value::Map(CelMap {
        map: Arc::new(
            object
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), json(v)))
                .collect(),
        ),
    })
}

/// JSON to CEL: integers stay integers so `auth.claims.exp > 0` type-checks as CEL expects.
pub fn json(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(json).collect())),
        Json::Object(o) => object(o),
    }
}

/// A boxed interpreter value, borrowing from `'a`.
pub type Boxed<'a> = Box<dyn Val + 'a>;

/// A string, borrowed.
pub fn string(text: &str) -> Boxed<'_> {
    Box::new(CelString::from(text))
}

/// A map with string keys, borrowed.
pub fn record<'a>(entries: impl IntoIterator<Item = (&'a str, Boxed<'a>)>) -> Boxed<'a> {
    let map: HashMap<CelMapKey<'a>, Boxed<'a>> = entries
        .into_iter()
        .map(|(k, v)| (CelMapKey::from(k), v))
        .collect();
    Box::new(ValMap::from(map))
}

/// JSON as an interpreter value, borrowing its strings: the same kinds as [`json`].
pub fn boxed(value: &Json) -> Boxed<'_> {
    match value {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Json::String(s) => string(s),
        Json::Array(items) => Box::new(CelList::from(
            items.iter().map(boxed).collect::<Vec<Boxed<'_>>>(),
        )),
        Json::Object(o) => record(o.iter().map(|(k, v)| (k.as_str(), boxed(v)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json as j;

    #[test]
    fn numbers_keep_their_kind() {
        assert_eq!(json(&j!(3)), Value::Int(3));
        assert_eq!(json(&j!(u64::MAX)), Value::UInt(u64::MAX));
        assert_eq!(json(&j!(1.5)), Value::Float(1.5));
    }

    #[test]
    fn objects_and_lists_nest() {
        let Value::Map(m) = json(&j!({"groups": ["a"]})) else {
            panic!("not a map");
        };
        assert_eq!(
            m.map.get(&Key::from("groups")),
            Some(&Value::List(Arc::new(vec![Value::from("a")])))
        );
    }

    #[test]
    fn both_forms_are_the_same_value() {
        let doc = j!({"s": "x", "i": -3, "u": u64::MAX, "f": 1.5, "b": true, "n": null,
                      "l": [1, "a", {"k": []}], "o": {"deep": {"er": "y"}}});
        let from_boxed = Value::try_from(boxed(&doc).as_ref()).unwrap();
        assert_eq!(from_boxed, json(&doc));
    }
}
