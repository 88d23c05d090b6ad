//! JSON-RPC answers read in place, in one walk. A list answer is judged item by item and then
//! passed on as the server wrote it, less the hidden items, so what is kept of a message is
//! where it lies in the text and what decides its fate: its id, whether it carries `method`,
//! `result` or `error`, and, for each list its result holds, where each item lies and the names
//! it is judged by. Everything else is walked by the strict checker ([`crate::json::Checker`])
//! and kept only as text.
//!
//! The walk decides as [`crate::json::strict`] does (no repeated key at any depth, nothing after
//! the value), and reads each byte once, but for a listed item's: once to find where it ends,
//! once to read it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;
use serde_json::value::RawValue;

use crate::json::{Checker, JsonError, KeySeed, Keys, check_map, check_seq, scalars_give};

/// The result fields that hold lists (`tools`, `prompts`, `resources`, `resourceTemplates`).
const LIST_FIELDS: [&str; 4] = ["tools", "prompts", "resources", "resourceTemplates"];

/// The item members a list item is judged by: `name`, `uri`, `uriTemplate`.
const NAME_KEYS: [&str; 3] = ["name", "uri", "uriTemplate"];

/// One JSON-RPC message of an answer.
#[derive(Debug, Default)]
pub struct Message<'t> {
    /// The message as written.
    pub text: &'t str,
    /// Whether it is an object at all (a batch may hold anything).
    pub object: bool,
    pub id: Option<Json>,
    pub method: bool,
    pub error: bool,
    pub result: Option<Outcome<'t>>,
}

/// A message's `result`.
#[derive(Debug, Default)]
pub struct Outcome<'t> {
    pub object: bool,
    /// Each list field present: its items, or `None` when it is not an array.
    lists: Vec<(&'static str, Option<Vec<Item<'t>>>)>,
}

impl<'t> Outcome<'t> {
    /// The items of `field` (one of `tools`, `prompts`, `resources`, `resourceTemplates`):
    /// `None` when the result has no such field or it is not an array.
    pub fn list(&self, field: &str) -> Option<&[Item<'t>]> {
        self.lists
            .iter()
            .find(|(f, _)| *f == field)
            .and_then(|(_, items)| items.as_deref())
    }
}

/// One item of a list.
#[derive(Debug)]
pub struct Item<'t> {
    /// The item as written.
    pub text: &'t str,
    /// Its `name`, `uri` and `uriTemplate`, decoded, where they are strings.
    names: Names<'t>,
}

impl Item<'_> {
    /// The string member `key` (`name`, `uri` or `uriTemplate`) as the client decodes it;
    /// `None` when it is missing or not a string.
    pub fn name(&self, key: &str) -> Option<&str> {
        let i = NAME_KEYS.iter().position(|k| *k == key)?;
        self.names.get(i)?.as_deref()
    }
}

/// The messages of an answer: one, or a batch. `Ok(None)` for strict JSON that is neither an
/// object nor an array.
pub fn read(text: &str) -> Result<Option<Vec<Message<'_>>>, JsonError> {
    let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    let mut de = serde_json::Deserializer::from_str(text);
    let messages = match trimmed.as_bytes().first() {
        Some(b'{') => de
            .deserialize_map(MessageVisitor(trimmed))
            .map(|m| Some(vec![m])),
        Some(b'[') => de.deserialize_seq(Batch).map(Some),
        _ => de.deserialize_any(Checker).map(|_| None),
    };
    let messages = messages.map_err(crate::json::reason)?;
    de.end().map_err(|e| JsonError::NotJson(e.to_string()))?;
    Ok(messages)
}

/// An error met reading a part on its own, as an error of the walk: without the part's own
/// position, since the walk adds its position in the whole.
fn within<E: de::Error>(e: serde_json::Error) -> E {
    let text = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    E::custom(text.strip_suffix(&at).unwrap_or(&text))
}

struct Batch;

impl<'de> Visitor<'de> for Batch {
    type Value = Vec<Message<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut messages = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            let text = raw.get();
            let mut de = serde_json::Deserializer::from_str(text);
            let message = match text.as_bytes().first() {
                Some(b'{') => de.deserialize_map(MessageVisitor(text)),
                _ => de.deserialize_any(Checker).map(|_| Message {
                    text,
                    ..Message::default()
                }),
            };
            messages.push(message.map_err(within)?);
        }
        Ok(messages)
    }
}

/// Reads a message's members; the text is the message's own, for its place.
struct MessageVisitor<'t>(&'t str);

impl<'de> Visitor<'de> for MessageVisitor<'de> {
    type Value = Message<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut message = Message {
            text: self.0,
            object: true,
            ..Message::default()
        };
        let mut keys = Keys::default();
        while let Some(key) = access.next_key_seed(KeySeed)? {
            match key.as_ref() {
                "id" => {
                    let raw = access.next_value::<&'de RawValue>()?;
                    let id = crate::json::strict(raw.get().as_bytes())
                        .map_err(|e| de::Error::custom(StrictError(e)))?;
                    message.id = Some(id);
                }
                "result" => message.result = Some(access.next_value_seed(ResultSeed)?),
                other => {
                    message.method |= other == "method";
                    message.error |= other == "error";
                    access.next_value::<Checker>()?;
                }
            }
            keys.push(key);
        }
        keys.unique()?;
        Ok(message)
    }
}

/// A strict-JSON error met inside a value read whole, reported as the walk reports its own.
struct StrictError(JsonError);

impl fmt::Display for StrictError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            // Read back by `crate::json::reason` as the same kind of error.
            JsonError::DuplicateKey(key) => write!(f, "duplicate key {key}"),
            JsonError::NotJson(text) => f.write_str(text),
        }
    }
}

struct ResultSeed;

impl<'de> DeserializeSeed<'de> for ResultSeed {
    type Value = Outcome<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResultSeed {
    type Value = Outcome<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a result")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut outcome = Outcome {
            object: true,
            lists: Vec::new(),
        };
        let mut keys = Keys::default();
        while let Some(key) = access.next_key_seed(KeySeed)? {
            match LIST_FIELDS.iter().find(|f| **f == key) {
                Some(field) => outcome.lists.push((field, access.next_value_seed(Items)?)),
                None => {
                    access.next_value::<Checker>()?;
                }
            }
            keys.push(key);
        }
        keys.unique()?;
        Ok(outcome)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        check_seq(seq).map(|()| Outcome::default())
    }
    scalars_give!(Outcome::default());
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Outcome::default())
    }
}

/// A list field's value: its items, or `None` when it is not an array.
struct Items;

impl<'de> DeserializeSeed<'de> for Items {
    type Value = Option<Vec<Item<'de>>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Items {
    type Value = Option<Vec<Item<'de>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            let text = raw.get();
            let names = serde_json::Deserializer::from_str(text)
                .deserialize_any(ItemVisitor)
                .map_err(within)?;
            items.push(Item { text, names });
        }
        Ok(Some(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        check_map(access).map(|()| None)
    }
    scalars_give!(None);
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
}

type Names<'t> = [Option<Cow<'t, str>>; 3];

/// A listed item: its names where they are strings; an item that is not an object has none.
struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Names<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list item")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut names: Names<'de> = Default::default();
        let mut keys = Keys::default();
        while let Some(key) = access.next_key_seed(KeySeed)? {
            match NAME_KEYS
                .iter()
                .position(|k| *k == key)
                .and_then(|i| names.get_mut(i))
            {
                Some(slot) => *slot = access.next_value_seed(Text)?,
                None => {
                    access.next_value::<Checker>()?;
                }
            }
            keys.push(key);
        }
        keys.unique()?;
        Ok(names)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        check_seq(seq).map(|()| Default::default())
    }
    scalars_give!(Default::default());
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Default::default())
    }
}

/// A value kept when it is a string (decoded, borrowed where it has no escapes); anything else
/// is checked and dropped.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        check_map(access).map(|()| None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        check_seq(seq).map(|()| None)
    }
    scalars_give!(None);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What an outcome decides: accepted, a repeated key (which), or not JSON (the message
    /// names a position, which differs between a walk and a whole parse).
    fn kind(outcome: Result<(), JsonError>) -> Result<(), Option<String>> {
        outcome.map_err(|e| match e {
            JsonError::DuplicateKey(key) => Some(key),
            JsonError::NotJson(_) => None,
        })
    }

    #[test]
    fn the_walk_refuses_what_the_strict_parser_refuses() {
        for text in [
            r#"{"id":1,"result":{"tools":[{"name":"a","name":"b"}]}}"#,
            r#"{"id":1,"result":{"tools":[{"name":"a","s":{"t":1,"t":2}}]}}"#,
            r#"{"id":1,"result":{"tools":[],"tools":[]}}"#,
            r#"{"id":1,"result":{"tools":[]},"result":{}}"#,
            r#"{"id":{"a":1,"a":2},"result":{}}"#,
            r#"{"id":1,"error":{"data":{"x":1,"x":1}}}"#,
            r#"{"id":1,"result":{"prompts":[{"n\u0061me":"a","name":"b"}]}}"#,
            r#"{"id":1,"result":{"_meta":{"k":[{"a":0,"a":0}]}}}"#,
            r#"{"id":1,"result":"\ud800"}"#,
            r#"{"id":1,"result":{"tools":[{"name":"\ud800"}]}}"#,
            r#"{"id":1,"result":{"tools":[1e999]}}"#,
            r#"[{"id":1,"result":{}},{"id":2,"result":{"a":1,"a":2}}]"#,
            r#"[{"id":1},7,"x",[{"b":1,"b":2}]]"#,
            r#"{"id":1,"result":{}} x"#,
            r#"{"id":1,"result":{"tools":[{"name":"a"}"#,
            r#"{"id":1,"result":{"tools":[{"name":"a"},]}}"#,
            r#"  {"id": 1, "result": {"tools": [{"name": "a"}, {"name": 2}, 3]}}  "#,
            r#""just a string""#,
            "[]",
            "",
        ] {
            let strict = crate::json::strict(text.as_bytes()).map(|_| ());
            assert_eq!(kind(read(text).map(|_| ())), kind(strict), "{text}");
        }
    }

    #[test]
    fn an_error_is_placed_in_the_whole() {
        let text = r#"{"id":1,"result":{"tools":[{"name":"\ud800"}]}}"#;
        let Err(JsonError::NotJson(reason)) = read(text) else {
            panic!()
        };
        // At the end of the item that holds it (the escape itself is at column 43).
        assert_eq!(reason, "unexpected end of hex escape at line 1 column 45");
    }

    #[test]
    fn a_message_keeps_its_place_its_id_and_its_items() {
        let text = r#" {"jsonrpc":"2.0","result":{"nextCursor":"c","tools":[ {"name":"\u0061dd","x":{"name":"no"}} ,{"uri":"u"}, {"name":7}, "odd" ]},"id":"q"} "#;
        let messages = read(text).unwrap().unwrap();
        let [message] = messages.as_slice() else {
            panic!("{messages:?}")
        };
        assert_eq!(message.text, text.trim());
        assert_eq!(message.id, Some(json!("q")));
        assert!(message.object && !message.method && !message.error);
        let result = message.result.as_ref().unwrap();
        assert!(result.list("prompts").is_none());
        let items = result.list("tools").unwrap();
        let names: Vec<_> = items
            .iter()
            .map(|i| (i.name("name"), i.name("uri")))
            .collect();
        assert_eq!(
            names,
            [
                (Some("add"), None),
                (None, Some("u")),
                (None, None),
                (None, None)
            ]
        );
        assert_eq!(items[1].text, r#"{"uri":"u"}"#);
        assert_eq!(items[3].text, r#""odd""#);
    }

    #[test]
    fn a_batch_is_read_message_by_message() {
        let text = r#"[{"id":1,"method":"ping"}, 5, {"id":2,"error":{},"result":{"tools":{}}}]"#;
        let messages = read(text).unwrap().unwrap();
        assert_eq!(messages.len(), 3);
        assert!(messages[0].method && messages[0].result.is_none());
        assert!(!messages[1].object && messages[1].text == "5");
        assert!(messages[2].error);
        // A list field that is not an array has no items.
        assert!(messages[2].result.as_ref().unwrap().list("tools").is_none());
        assert!(read("3").unwrap().is_none());
    }
}
