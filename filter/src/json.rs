//! Strict JSON: the parser every message the filter judges goes through. `serde_json` keeps
//! the last of two equal keys where another reader may keep the first, so a body that repeats a
//! key could be judged as one thing and served as another; here it is an error.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
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
    let value = <Strict as serde::Deserialize>::deserialize(&mut de).map_err(reason)?;
    de.end().map_err(|e| JsonError::NotJson(e.to_string()))?;
    Ok(value.0)
}

const DUPLICATE: &str = "duplicate key ";

/// A parse error as a [`JsonError`]: the visitors report a repeated key as a custom error.
pub fn reason(e: serde_json::Error) -> JsonError {
    let text = e.to_string();
    match text.strip_prefix(DUPLICATE) {
        Some(rest) => {
            JsonError::DuplicateKey(rest.split(" at line").next().unwrap_or(rest).to_string())
        }
        None => JsonError::NotJson(text),
    }
}

/// Whether bytes are strict JSON, as [`strict`] decides, without building them.
pub fn check(bytes: &[u8]) -> Result<(), JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    <Checker as serde::Deserialize>::deserialize(&mut de).map_err(reason)?;
    de.end().map_err(|e| JsonError::NotJson(e.to_string()))
}

/// Where `part`, a slice of `whole` (a value read from it in place), lies in `whole`.
pub fn span(whole: &str, part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (end <= whole.len()).then_some(start..end)
}

/// `whole` with each range replaced by its text; the ranges do not overlap.
pub fn splice(whole: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(whole.len());
    let mut at = 0;
    for (range, text) in edits {
        out.push_str(whole.get(at..range.start).unwrap_or_default());
        out.push_str(&text);
        at = range.end;
    }
    out.push_str(whole.get(at..).unwrap_or_default());
    out
}

/// The scalar visits (all but strings) of a visitor that keeps nothing of a scalar: each
/// gives `$value`. Serde's defaults would refuse the value instead.
macro_rules! scalars_give {
    ($value:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// Walks a value as [`StrictVisitor`] does, keeping nothing but each object's keys while it is
/// read (borrowed where the text has no escapes) and how deeply the value nests: 0 for a
/// scalar, 1 for `[]` or `{}`, one more for each level inside.
pub struct Checker(pub usize);

impl<'de> serde::Deserialize<'de> for Checker {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The checker is its own visitor: what it visits gives the checker of that value.
        deserializer.deserialize_any(Checker(0))
    }
}

impl<'de> Visitor<'de> for Checker {
    type Value = Checker;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    scalars_give!(Checker(0));
    fn visit_str<E>(self, _: &str) -> Result<Checker, E> {
        Ok(Checker(0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Checker, A::Error> {
        check_seq(seq).map(|inner| Checker(inner + 1))
    }
    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Checker, A::Error> {
        check_map(access).map(|inner| Checker(inner + 1))
    }
}

/// The rest of an array, checked as [`Checker`] checks a value; how deeply its elements nest.
pub fn check_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<usize, A::Error> {
    let mut deepest = 0;
    while let Some(Checker(depth)) = seq.next_element()? {
        deepest = deepest.max(depth);
    }
    Ok(deepest)
}

/// The rest of an object, checked as [`Checker`] checks a value; how deeply its values nest.
pub fn check_map<'de, A: MapAccess<'de>>(mut access: A) -> Result<usize, A::Error> {
    let mut keys = Keys::default();
    let mut deepest = 0;
    while let Some(key) = access.next_key_seed(KeySeed)? {
        let Checker(depth) = access.next_value()?;
        deepest = deepest.max(depth);
        keys.push(key);
    }
    keys.unique().map(|()| deepest)
}

/// How deeply a value nests, as [`Checker`] counts.
pub fn nesting(value: &Json) -> usize {
    match value {
        Json::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        Json::Object(members) => 1 + members.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// The deepest nesting `serde_json` reads (its recursion limit): [`strict`] refuses more.
pub const MAX_NESTING: usize = 127;

/// The keys of one object, collected while it is read, to refuse one that repeats (inline up
/// to eight, on the heap beyond).
#[derive(Default)]
pub struct Keys<'de>(smallvec::SmallVec<[Cow<'de, str>; 8]>);

impl<'de> Keys<'de> {
    pub fn push(&mut self, key: Cow<'de, str>) {
        self.0.push(key);
    }

    /// An error naming a repeated key, if there is one.
    pub fn unique<E: de::Error>(&mut self) -> Result<(), E> {
        let keys = &mut self.0[..];
        let repeated = if keys.len() <= 8 {
            // A few keys: compared pairwise, which moves nothing.
            keys.iter()
                .enumerate()
                .find(|(i, key)| keys.get(i + 1..).is_some_and(|rest| rest.contains(key)))
                .map(|(_, key)| key)
        } else {
            // Sorted, so a huge object costs n log n, not n² comparisons.
            keys.sort_unstable();
            keys.windows(2).find_map(|pair| match pair {
                [a, b] if a == b => Some(a),
                _ => None,
            })
        };
        match repeated {
            Some(key) => Err(de::Error::custom(format!("{DUPLICATE}{key:?}"))),
            None => Ok(()),
        }
    }
}

/// An object key, borrowed from the input when it can be.
pub struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// A value as [`strict`] reads it, for a reader that reads the text around it itself.
pub struct Strict(pub Json);

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

    #[test]
    fn check_decides_as_strict_does() {
        for text in [
            &br#"{"a":{"b":1,"b":2}}"#[..],
            br#"[{"a":1},{"a":2}]"#,
            br#"{"a\u0062":1,"ab":2}"#,
            br#"{"a":1,"b":[{"c":null,"c":true}]}"#,
            b"{} x",
            b"{",
            b"[1,2,",
            br#""\ud800""#,
            b"1e999",
            b"  {\"k\": [1, 2.5, -3, \"s\", false]}  ",
        ] {
            assert_eq!(
                check(text),
                strict(text).map(|_| ()),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
        // Many keys: sorted, not compared pairwise.
        let many: Vec<String> = (0..20_000).map(|i| format!("\"k{i}\":0")).collect();
        let text = format!("{{{},\"k7\":1}}", many.join(","));
        assert_eq!(
            check(text.as_bytes()),
            Err(JsonError::DuplicateKey("\"k7\"".into()))
        );
    }

    #[test]
    fn parts_are_placed_and_replaced() {
        let text = r#"{"id": 1, "result": {"tools": [{"name":"a"}, {"name":"b"}]}}"#;
        let tools = &text[text.find('[').unwrap()..text.rfind(']').unwrap() + 1];
        let range = span(text, tools).unwrap();
        assert_eq!(&text[range.clone()], tools);
        assert_eq!(
            splice(text, vec![(range, "[]".into())]),
            r#"{"id": 1, "result": {"tools": []}}"#
        );
        assert_eq!(span(text, "elsewhere"), None);
    }
}
