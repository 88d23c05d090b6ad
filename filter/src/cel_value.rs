//! JSON to CEL values, in one place: the claims a token carries and the arguments a message
//! passes are both JSON, and the rules must see them the same way.

use std::sync::Arc;

use cel::Value;
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
}
