//! Strict JSON: the parser every message the filter judges goes through. `serde_json` keeps
//! the last of two equal keys where another reader may keep the first, so a body that repeats a
//! key could be judged as one thing and served as another; here it is an error.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

/// Why bytes are not strict JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("not JSON: {0}")]
    NotJson(String),
    /// An object repeats this key (quoted as JSON writes it).
    #[error("an object repeats the key {0}")]
    DuplicateKey(String),
}

/// JSON with every object's keys unique.
pub fn strict(bytes: &[u8]) -> Result<Json, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = <Strict as serde::Deserialize>::deserialize(&mut de).map_err(|e| {
        let text = e.to_string();
        match text.strip_prefix(DUPLICATE) {
            Some(rest) => {
                JsonError::DuplicateKey(rest.split(" at line").next().unwrap_or(rest).to_string())
            }
            None => JsonError::NotJson(text),
        }
    })?;
    de.end().map_err(|e| JsonError::NotJson(e.to_string()))?;
    Ok(value.0)
}

const DUPLICATE: &str = "duplicate key ";

struct Strict(Json);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_none<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Json, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let Strict(value) = access.next_value()?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE}{key:?}")));
            }
            map.insert(key, value);
        }
        Ok(Json::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_is_an_error_at_any_depth() {
        assert_eq!(
            strict(br#"{"a":{"b":1,"b":2}}"#),
            Err(JsonError::DuplicateKey("\"b\"".into()))
        );
        assert!(strict(br#"[{"a":1},{"a":2}]"#).is_ok());
    }

    #[test]
    fn trailing_bytes_and_broken_json_are_errors() {
        assert!(matches!(strict(b"{} x"), Err(JsonError::NotJson(_))));
        assert!(matches!(strict(b"{"), Err(JsonError::NotJson(_))));
    }
}
