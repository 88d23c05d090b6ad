//! JSON-RPC answers read in place, in one walk. A list answer is judged item by item and then
//! passed on as the server wrote it, less the hidden items, so what is kept of a message is
//! where it lies in the text and what decides its fate: its id, whether it carries `method`,
//! `result` or `error`, and, for each list its result holds, where each item lies and the names
//! it is judged by. Everything else is walked by the strict checker ([`crate::json::Checker`])
//! and kept only as text.
//!
//! The walk decides as [`crate::json::strict`] does (no repeated key at any depth, nothing after
//! the value) and reads each byte once. It reads the three levels it keeps (the message, its
//! result, a list) itself, punctuation and whitespace only; every key and value is read by
//! `serde_json`, one value at a time, which also tells where the value ends.

use std::borrow::Cow;
use std::fmt;

use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use crate::json::{
    Checker, JsonError, KeySeed, Keys, MAX_NESTING, Strict, check_map, check_seq, scalars_give,
};

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
    let mut at = Cursor {
        text,
        at: 0,
        depth: 0,
    };
    let messages = match at.peek() {
        Some(b'{') => Some(vec![at.message()?]),
        Some(b'[') => Some(at.batch()?),
        _ => {
            at.value::<Checker>()?;
            None
        }
    };
    match at.peek() {
        None => Ok(messages),
        Some(_) => Err(at.error("trailing characters")),
    }
}

/// A place in the text being read.
struct Cursor<'t> {
    text: &'t str,
    at: usize,
    /// How many of the levels the cursor reads itself are open here.
    depth: usize,
}

/// What the cursor reads through `serde_json`, with how deeply it nests: together with the
/// levels open around it, no deeper than [`MAX_NESTING`], as the strict parser allows.
trait Nested {
    fn nesting(&self) -> usize;
}

impl Nested for Checker {
    fn nesting(&self) -> usize {
        self.0
    }
}

impl Nested for Strict {
    fn nesting(&self) -> usize {
        crate::json::nesting(&self.0)
    }
}

impl<'t> Cursor<'t> {
    /// The next byte that is not JSON whitespace, which the cursor is then on.
    fn peek(&mut self) -> Option<u8> {
        let bytes = self.text.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(self.at) {
            self.at += 1;
        }
        bytes.get(self.at).copied()
    }

    /// The next byte that is not whitespace, taken.
    fn next(&mut self) -> Option<u8> {
        let byte = self.peek();
        self.at += usize::from(byte.is_some());
        byte
    }

    /// One value, read by `serde_json` as `T`, and where it lies.
    fn value<T: serde::Deserialize<'t> + Nested>(
        &mut self,
    ) -> Result<(T, Range<usize>), JsonError> {
        self.peek();
        let start = self.at;
        let rest = self.text.get(start..).unwrap_or_default();
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<T>();
        match values.next() {
            Some(Ok(value)) if self.depth + value.nesting() > MAX_NESTING => {
                self.at = start;
                Err(self.error("recursion limit exceeded"))
            }
            Some(Ok(value)) => {
                self.at = start + values.byte_offset();
                Ok((value, start..self.at))
            }
            Some(Err(e)) => Err(self.relocated(e, start)),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    /// An object's members, `member` reading each one's value after its key; the object's
    /// place. A repeated key is refused.
    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &str) -> Result<(), JsonError>,
    ) -> Result<Range<usize>, JsonError> {
        let start = self.at;
        self.expect(b'{')?;
        self.open()?;
        let mut keys = Keys::default();
        if self.peek() != Some(b'}') {
            loop {
                if self.peek() != Some(b'"') {
                    return Err(self.error("key must be a string"));
                }
                let (Key(key), _) = self.value::<Key>()?;
                self.expect(b':')?;
                member(self, &key)?;
                keys.push(key);
                match self.next() {
                    Some(b',') => continue,
                    Some(b'}') => break,
                    _ => return Err(self.error("expected `,` or `}`")),
                }
            }
        } else {
            self.at += 1;
        }
        keys.unique::<serde_json::Error>()
            .map_err(crate::json::reason)?;
        self.depth -= 1;
        Ok(start..self.at)
    }

    /// An array's elements, `element` reading each one.
    fn array(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<(), JsonError> {
        self.expect(b'[')?;
        self.open()?;
        if self.peek() == Some(b']') {
            self.at += 1;
        } else {
            loop {
                element(self)?;
                match self.next() {
                    Some(b',') => continue,
                    Some(b']') => break,
                    _ => return Err(self.error("expected `,` or `]`")),
                }
            }
        }
        self.depth -= 1;
        Ok(())
    }

    fn batch(&mut self) -> Result<Vec<Message<'t>>, JsonError> {
        let mut messages = Vec::new();
        self.array(|at| {
            let message = match at.peek() {
                Some(b'{') => at.message()?,
                _ => {
                    let (_, place) = at.value::<Checker>()?;
                    Message {
                        text: at.slice(place),
                        ..Message::default()
                    }
                }
            };
            messages.push(message);
            Ok(())
        })?;
        Ok(messages)
    }

    fn message(&mut self) -> Result<Message<'t>, JsonError> {
        let mut message = Message {
            object: true,
            ..Message::default()
        };
        let place = self.object(|at, key| {
            match key {
                "id" => message.id = Some(at.value::<Strict>()?.0.0),
                "result" => message.result = Some(at.outcome()?),
                other => {
                    message.method |= other == "method";
                    message.error |= other == "error";
                    at.value::<Checker>()?;
                }
            }
            Ok(())
        })?;
        message.text = self.slice(place);
        Ok(message)
    }

    fn outcome(&mut self) -> Result<Outcome<'t>, JsonError> {
        if self.peek() != Some(b'{') {
            self.value::<Checker>()?;
            return Ok(Outcome::default());
        }
        let mut lists = Vec::new();
        self.object(|at, key| {
            match LIST_FIELDS.iter().find(|f| **f == key) {
                Some(field) => lists.push((*field, at.items()?)),
                None => {
                    at.value::<Checker>()?;
                }
            }
            Ok(())
        })?;
        Ok(Outcome {
            object: true,
            lists,
        })
    }

    /// A list field's value: its items, or `None` when it is not an array.
    fn items(&mut self) -> Result<Option<Vec<Item<'t>>>, JsonError> {
        if self.peek() != Some(b'[') {
            self.value::<Checker>()?;
            return Ok(None);
        }
        let mut items = Vec::new();
        self.array(|at| {
            let (ItemNames(names, _), place) = at.value::<ItemNames>()?;
            items.push(Item {
                text: at.slice(place),
                names,
            });
            Ok(())
        })?;
        Ok(Some(items))
    }

    /// One more level open.
    fn open(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        match self.depth > MAX_NESTING {
            true => Err(self.error("recursion limit exceeded")),
            false => Ok(()),
        }
    }

    fn slice(&self, place: Range<usize>) -> &'t str {
        self.text.get(place).unwrap_or_default()
    }

    fn expect(&mut self, byte: u8) -> Result<(), JsonError> {
        match self.next() {
            Some(b) if b == byte => Ok(()),
            _ => Err(self.error(&format!("expected `{}`", char::from(byte)))),
        }
    }

    /// Where the cursor is, as `serde_json` says it: line and column, from 1.
    fn position(&self, at: usize) -> (usize, usize) {
        let before = self.text.get(..at).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1);
        (line, column)
    }

    fn error(&self, what: &str) -> JsonError {
        let (line, column) = self.position(self.at + 1);
        JsonError::NotJson(format!("{what} at line {line} column {column}"))
    }

    /// An error `serde_json` met reading from `start`, placed in the whole text.
    fn relocated(&self, e: serde_json::Error, start: usize) -> JsonError {
        let own = format!(" at line {} column {}", e.line(), e.column());
        let (line, column) = self.position(start);
        let (line, column) = match e.line() {
            1 => (line, column + e.column()),
            n => (line + n - 1, e.column()),
        };
        match crate::json::reason(e) {
            JsonError::NotJson(text) => {
                let what = text.strip_suffix(&own).unwrap_or(&text).to_string();
                JsonError::NotJson(format!("{what} at line {line} column {column}"))
            }
            repeated => repeated,
        }
    }
}

/// An object key, borrowed where it has no escapes.
struct Key<'t>(Cow<'t, str>);

impl Nested for Key<'_> {
    fn nesting(&self) -> usize {
        0
    }
}

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        KeySeed.deserialize(deserializer).map(Key)
    }
}

/// A listed item's names ([`ItemVisitor`]), and how deeply it nests.
struct ItemNames<'t>(Names<'t>, usize);

impl Nested for ItemNames<'_> {
    fn nesting(&self) -> usize {
        self.1
    }
}

impl<'de> serde::Deserialize<'de> for ItemNames<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ItemVisitor)
            .map(|(names, depth)| ItemNames(names, depth))
    }
}

type Names<'t> = [Option<Cow<'t, str>>; 3];

/// A listed item: its names where they are strings; an item that is not an object has none.
struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = (Names<'de>, usize);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list item")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut names: Names<'de> = Default::default();
        let mut keys = Keys::default();
        let mut deepest = 0;
        while let Some(key) = access.next_key_seed(KeySeed)? {
            let depth = match NAME_KEYS
                .iter()
                .position(|k| *k == key)
                .and_then(|i| names.get_mut(i))
            {
                Some(slot) => {
                    let (text, depth) = access.next_value_seed(Text)?;
                    *slot = text;
                    depth
                }
                None => access.next_value::<Checker>()?.0,
            };
            deepest = deepest.max(depth);
            keys.push(key);
        }
        keys.unique()?;
        Ok((names, deepest + 1))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        check_seq(seq).map(|inner| (Default::default(), inner + 1))
    }
    scalars_give!((Default::default(), 0));
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok((Default::default(), 0))
    }
}

/// A value kept when it is a string (decoded, borrowed where it has no escapes); anything else
/// is checked and dropped.
struct Text;

impl<'de> DeserializeSeed<'de> for Text {
    type Value = (Option<Cow<'de, str>>, usize);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = (Option<Cow<'de, str>>, usize);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok((Some(Cow::Borrowed(v)), 0))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok((Some(Cow::Owned(v.to_string())), 0))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok((Some(Cow::Owned(v)), 0))
    }
    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Self::Value, A::Error> {
        check_map(access).map(|inner| (None, inner + 1))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        check_seq(seq).map(|inner| (None, inner + 1))
    }
    scalars_give!((None, 0));
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
    fn nesting_is_limited_as_the_strict_parser_limits_it() {
        // The levels the walk reads itself count with those serde_json reads: at every place
        // and around the limit, the walk accepts exactly what the strict parser accepts.
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let places = [
            r#"{"id":1,"result":{"tools":[X]}}"#,
            r#"{"id":1,"result":{"tools":[{"name":"a","s":X}]}}"#,
            r#"{"id":1,"result":{"_meta":X}}"#,
            r#"{"id":1,"result":X}"#,
            r#"{"id":X,"result":{}}"#,
            r#"[{"id":1,"result":{"tools":[X]}}]"#,
            r#"[X]"#,
            "X",
        ];
        let mut accepted = 0;
        for place in places {
            for depth in 120..=130 {
                let text = place.replace('X', &nested(depth));
                let strict = crate::json::strict(text.as_bytes()).is_ok();
                assert_eq!(read(&text).is_ok(), strict, "{place} at depth {depth}");
                accepted += usize::from(strict);
            }
        }
        // Both sides of the limit were met.
        assert!(accepted > 0 && accepted < places.len() * 11);
    }

    #[test]
    fn an_error_is_placed_in_the_whole() {
        let text = r#"{"id":1,"result":{"tools":[{"name":"\ud800"}]}}"#;
        let Err(JsonError::NotJson(reason)) = read(text) else {
            panic!()
        };
        // Where the whole parse places it.
        assert_eq!(reason, "unexpected end of hex escape at line 1 column 43");
        let text = "{\"id\":1,\n \"result\": {\"tools\": [\n  {\"name\": 1x}]}}";
        let whole = crate::json::strict(text.as_bytes());
        assert_eq!(read(text).map(|_| ()), whole.map(|_| ()));
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
