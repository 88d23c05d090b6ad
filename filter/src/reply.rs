//! JSON-RPC answers read in place, in one walk. A list answer is judged item by item and then
//! passed on as the server wrote it, less the hidden items, so what is kept of a message is
//! where it lies in the text and what decides its fate: its id, whether it carries `method`,
//! `result` or `error`, and, for each list its result holds, where each item lies and the names
//! it is judged by. Everything else is walked and kept only as text.
//!
//! The walk decides as [`crate::json::strict`] does (no repeated key at any depth, nothing after
//! the value, no deeper than `serde_json` reads) and reads each byte once. It reads structure,
//! keys, plain strings, short numbers and `true`/`false`/`null` itself, a string's end found
//! eight bytes at a time; what it would have to interpret the way `serde_json` does (a string
//! with escapes, a number with an exponent or many digits, a misspelt literal, a top-level
//! scalar, the id) it hands to `serde_json`, one value at a time, so every escape, number range
//! and error message is `serde_json`'s own.

use std::borrow::Cow;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer};
use serde_json::Value as Json;

use crate::json::{Checker, JsonError, KeySeed, Keys, MAX_NESTING, Strict};

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
    /// Set when this result is one the walk remembers ([`recall`]): the same number for every
    /// result with these bytes at this depth while it is remembered, never one another result
    /// had, so what is decided about its lists can be remembered with it.
    pub recalled: Option<u64>,
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

    /// The next byte that is not whitespace, taken when it is `one` or `other`; the cursor
    /// stays on any other byte, where an error is placed.
    fn next_of(&mut self, one: u8, other: u8) -> Option<u8> {
        let byte = self.peek().filter(|b| *b == one || *b == other);
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
                let key = self.string()?;
                self.expect(b':')?;
                member(self, &key)?;
                keys.push(key);
                match self.next_of(b',', b'}') {
                    Some(b',') => continue,
                    Some(_) => break,
                    None => return Err(self.error("expected `,` or `}`")),
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
                match self.next_of(b',', b']') {
                    Some(b',') => continue,
                    Some(_) => break,
                    None => return Err(self.error("expected `,` or `]`")),
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
                    let start = at.at;
                    at.skip()?;
                    Message {
                        text: at.slice(start..at.at),
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
                    at.skip()?;
                }
            }
            Ok(())
        })?;
        message.text = self.slice(place);
        Ok(message)
    }

    fn outcome(&mut self) -> Result<Outcome<'t>, JsonError> {
        if self.peek() != Some(b'{') {
            self.skip()?;
            return Ok(Outcome::default());
        }
        let start = self.at;
        let rest = self.text.get(start..).unwrap_or_default();
        if let Some((len, outcome)) = recall(rest, self.depth) {
            self.at = start + len;
            return Ok(outcome);
        }
        let mut lists = Vec::new();
        let place = self.object(|at, key| {
            match LIST_FIELDS.iter().find(|f| **f == key) {
                Some(field) => lists.push((*field, at.items()?)),
                None => at.skip()?,
            }
            Ok(())
        })?;
        let mut outcome = Outcome {
            object: true,
            recalled: None,
            lists,
        };
        remember(self.slice(place), self.depth, &mut outcome);
        Ok(outcome)
    }

    /// A list field's value: its items, or `None` when it is not an array.
    fn items(&mut self) -> Result<Option<Vec<Item<'t>>>, JsonError> {
        if self.peek() != Some(b'[') {
            self.skip()?;
            return Ok(None);
        }
        let mut items = Vec::new();
        self.array(|at| {
            items.push(at.item()?);
            Ok(())
        })?;
        Ok(Some(items))
    }

    /// A listed item: its names where they are strings; an item that is not an object has none.
    fn item(&mut self) -> Result<Item<'t>, JsonError> {
        let first = self.peek();
        let start = self.at;
        let mut names: Names<'t> = Default::default();
        match first {
            Some(b'{') => {
                self.object(|at, key| {
                    match NAME_KEYS
                        .iter()
                        .position(|k| *k == key)
                        .and_then(|i| names.get_mut(i))
                    {
                        Some(slot) => *slot = at.text()?,
                        None => at.skip()?,
                    }
                    Ok(())
                })?;
            }
            _ => self.skip()?,
        }
        Ok(Item {
            text: self.slice(start..self.at),
            names,
        })
    }

    /// A value kept when it is a string (decoded); anything else is walked and dropped.
    fn text(&mut self) -> Result<Option<Cow<'t, str>>, JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(Some),
            _ => self.skip().map(|()| None),
        }
    }

    /// One value of any kind, walked as the strict parser reads it and kept only as text.
    fn skip(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(|at, _| at.skip()).map(drop),
            Some(b'[') => self.array(Self::skip),
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            _ => self.value::<Checker>().map(drop),
        }
    }

    /// The string the cursor is on, decoded: borrowed when it has no escape, which is read
    /// here up to its closing quote; one with an escape is decoded by `serde_json`.
    fn string(&mut self) -> Result<Cow<'t, str>, JsonError> {
        let start = self.at;
        self.expect(b'"')?;
        let text = self.text;
        let inside = text.as_bytes().get(self.at..).unwrap_or_default();
        let end = self.at + plain_len(inside);
        match text.as_bytes().get(end) {
            Some(b'"') => {
                let plain = text.get(self.at..end).unwrap_or_default();
                self.at = end + 1;
                Ok(Cow::Borrowed(plain))
            }
            // An escape, a control character or the end of the text: `serde_json` decodes it
            // or words the error.
            _ => {
                self.at = start;
                self.value::<Key>().map(|(Key(key), _)| key)
            }
        }
    }

    /// The number the cursor is on. An integer of up to 15 digits, with or without a
    /// fraction, is in range whatever follows; anything else (an exponent, more digits, a
    /// malformed number) is read by `serde_json`, which refuses what does not fit an `f64`.
    fn number(&mut self) -> Result<(), JsonError> {
        let bytes = self.text.as_bytes();
        let digits_from = |at: usize| {
            at + bytes
                .get(at..)
                .unwrap_or_default()
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let start = self.at;
        let int = start + usize::from(bytes.get(start) == Some(&b'-'));
        let mut end = digits_from(int);
        let digits = end - int;
        let leading_zero = digits > 1 && bytes.get(int) == Some(&b'0');
        let mut plain = (1..=15).contains(&digits) && !leading_zero;
        if plain && bytes.get(end) == Some(&b'.') {
            let fraction = digits_from(end + 1);
            plain = fraction > end + 1;
            end = fraction;
        }
        match plain && !matches!(bytes.get(end), Some(b'e' | b'E')) {
            true => {
                self.at = end;
                Ok(())
            }
            false => self.value::<Checker>().map(drop),
        }
    }

    /// `true`, `false` or `null`; anything else starting like one is `serde_json`'s to refuse.
    fn literal(&mut self, word: &str) -> Result<(), JsonError> {
        match self
            .text
            .get(self.at..)
            .is_some_and(|rest| rest.starts_with(word))
        {
            true => {
                self.at += word.len();
                Ok(())
            }
            false => self.value::<Checker>().map(drop),
        }
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
        match self.next_of(byte, byte) {
            Some(_) => Ok(()),
            None => Err(self.error(&format!("expected `{}`", char::from(byte)))),
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

/// Results read before, as they were read: a server answers `tools/list` with the same bytes
/// again and again (its tools change rarely; only the id around the result differs), so a
/// result that is byte for byte one already walked is not walked again. The bytes are compared
/// in full, never a hash of them, and at the same depth (the nesting limit counts from where
/// the result lies), so what is recalled is exactly what the walk would read. Only results
/// holding a list and at least [`RECALL_MIN`] bytes long are kept, the last [`RECALL_SLOTS`]
/// of them, each at most [`RECALL_MAX`] bytes.
struct Recalled {
    serial: u64,
    text: String,
    depth: usize,
    lists: Vec<(&'static str, Option<Vec<RecalledItem>>)>,
}

/// An item of a recalled result: where it lies in the result and its names.
struct RecalledItem {
    place: Range<usize>,
    names: [Option<RecalledName>; 3],
}

enum RecalledName {
    /// Where the name lies in the result, as written (it has no escape).
    At(Range<usize>),
    /// The name decoded from escapes.
    Decoded(String),
}

const RECALL_SLOTS: usize = 4;
const RECALL_MIN: usize = 1024;
const RECALL_MAX: usize = 256 * 1024;

thread_local! {
    static RECALLED: std::cell::RefCell<Vec<Recalled>> = const { std::cell::RefCell::new(Vec::new()) };
    static NEXT_SERIAL: std::cell::Cell<u64> = const { std::cell::Cell::new(1) };
}

/// The result `rest` starts with, when it is one kept at this depth: its length and what it
/// holds, placed in `rest`.
fn recall(rest: &str, depth: usize) -> Option<(usize, Outcome<'_>)> {
    RECALLED.with_borrow(|kept| {
        let seen = kept.iter().find(|seen| {
            seen.depth == depth
                && rest
                    .as_bytes()
                    .get(..seen.text.len())
                    .is_some_and(|head| same_bytes(head, seen.text.as_bytes()))
        })?;
        let lists = seen
            .lists
            .iter()
            .map(|(field, items)| {
                let items = items.as_ref().map(|items| {
                    items
                        .iter()
                        .map(|item| Item {
                            text: rest.get(item.place.clone()).unwrap_or_default(),
                            names: item.names.each_ref().map(|name| match name {
                                Some(RecalledName::At(at)) => {
                                    rest.get(at.clone()).map(Cow::Borrowed)
                                }
                                Some(RecalledName::Decoded(name)) => Some(Cow::Owned(name.clone())),
                                None => None,
                            }),
                        })
                        .collect()
                });
                (*field, items)
            })
            .collect();
        Some((
            seen.text.len(),
            Outcome {
                object: true,
                recalled: Some(seen.serial),
                lists,
            },
        ))
    })
}

/// Keeps a result just walked (`text`, read at `depth`) for [`recall`], when it is worth it,
/// and marks it with its serial.
fn remember(text: &str, depth: usize, outcome: &mut Outcome<'_>) {
    if outcome.lists.is_empty() || !(RECALL_MIN..=RECALL_MAX).contains(&text.len()) {
        return;
    }
    let Some(lists) = outcome
        .lists
        .iter()
        .map(|(field, items)| {
            let items = match items {
                None => None,
                Some(items) => Some(
                    items
                        .iter()
                        .map(|item| {
                            let place = crate::json::span(text, item.text)?;
                            let names = item.names.each_ref().map(|name| match name {
                                Some(Cow::Borrowed(name)) => {
                                    crate::json::span(text, name).map(RecalledName::At)
                                }
                                Some(Cow::Owned(name)) => Some(RecalledName::Decoded(name.clone())),
                                None => None,
                            });
                            // A borrowed name is always placed; one that is not would be lost.
                            let lost = names
                                .iter()
                                .zip(&item.names)
                                .any(|(r, n)| r.is_none() != n.is_none());
                            (!lost).then_some(RecalledItem { place, names })
                        })
                        .collect::<Option<Vec<_>>>()?,
                ),
            };
            Some((*field, items))
        })
        .collect::<Option<Vec<_>>>()
    else {
        return;
    };
    let serial = NEXT_SERIAL.get();
    NEXT_SERIAL.set(serial + 1);
    outcome.recalled = Some(serial);
    RECALLED.with_borrow_mut(|kept| {
        if kept.len() >= RECALL_SLOTS {
            kept.remove(0);
        }
        kept.push(Recalled {
            serial,
            text: text.to_string(),
            depth,
            lists,
        });
    });
}

/// Whether two byte strings of the same length are equal, eight bytes at a time (the
/// byte-by-byte `memcmp` a wasm build links would take four times as long on a list answer).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |chunk: &[u8]| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        u64::from_ne_bytes(bytes)
    };
    let (x, y) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails = x.remainder() == y.remainder();
    tails && x.zip(y).all(|(x, y)| word(x) == word(y))
}

/// A listed item's `name`, `uri` and `uriTemplate` where they are strings, decoded.
type Names<'t> = [Option<Cow<'t, str>>; 3];

/// How many bytes of `inside` (a string's text after its opening quote) come before the first
/// quote, backslash or control character: a quote there ends a string with no escape. Eight
/// bytes at a time, each word tested for all three at once.
fn plain_len(inside: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte of `word` that is zero, exact up to the first such byte.
    let zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGH;
    let mut chunks = inside.chunks_exact(8);
    let mut seen = 0;
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        // Below 0x20 (control), or equal to `"` or `\\`.
        let stop = (word.wrapping_sub(ONES * 0x20) & !word & HIGH)
            | zero(word ^ (ONES * u64::from(b'"')))
            | zero(word ^ (ONES * u64::from(b'\\')));
        if stop != 0 {
            return seen + (stop.trailing_zeros() / 8) as usize;
        }
        seen += 8;
    }
    seen + chunks
        .remainder()
        .iter()
        .take_while(|b| !matches!(b, b'"' | b'\\' | 0..0x20))
        .count()
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
    fn numbers_strings_and_literals_are_decided_as_the_strict_parser_decides() {
        let values = [
            "0",
            "-0",
            "7",
            "-12",
            "01",
            "-",
            "--1",
            "1.",
            "1.5",
            "-0.25",
            ".5",
            "1.2.3",
            "1e3",
            "1E+2",
            "2e-5",
            "1e999",
            "-1e999",
            "1e",
            "123456789012345",
            "1234567890123456",
            "123456789012345678901234567890",
            "1x",
            "0x10",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "truex",
            "True",
            r#""""#,
            r#""a""#,
            r#""a\"b""#,
            r#""\u0041""#,
            r#""\ud800""#,
            r#""\x""#,
            "\"tab\there\"",
            "\"nl\nhere\"",
            "\"\u{7f}\"",
            r#""é ü 中""#,
            r#""unterminated"#,
            "[1,2]",
            "[1 2]",
            "{}",
            "{\"a\":1}",
            "{\"a\" 1}",
            "{1:2}",
        ];
        for value in values {
            for text in [
                format!(r#"{{"id":1,"result":{{"tools":[{{"name":"a","x":{value}}}]}}}}"#),
                format!(r#"{{"id":1,"result":{{"tools":[{value}]}}}}"#),
                format!(r#"{{"id":1,"result":{value}}}"#),
                format!(r#"[{value}]"#),
            ] {
                let strict = crate::json::strict(text.as_bytes()).map(|_| ());
                assert_eq!(kind(read(&text).map(|_| ())), kind(strict), "{text}");
            }
        }
    }

    #[test]
    fn a_string_ends_at_its_first_quote_backslash_or_control_character() {
        // Every place in and around an eight-byte word, with multi-byte text before it.
        for stop in ["\"", "\\", "\n", "\u{1f}"] {
            for before in 0..20 {
                let inside = format!(
                    "{}{}{stop}z\"",
                    "é".repeat(before / 2),
                    "a".repeat(before % 2)
                );
                let expected = inside.find(['"', '\\', '\n', '\u{1f}']).unwrap();
                assert_eq!(plain_len(inside.as_bytes()), expected, "{inside:?}");
            }
        }
        assert_eq!(plain_len(b"no end at all"), 13);
        assert_eq!(plain_len(b"\x7f\xff~ "), 4);
    }

    /// A `tools/list` result of `n` tools, big enough to be remembered, the last one `last`.
    fn big_result(n: usize, last: &str) -> String {
        let tools: Vec<String> = (0..n)
            .map(|i| match i + 1 == n {
                true => format!(r#"{{"name":"{last}","description":"the last"}}"#),
                false => format!(r#"{{"name":"tool_{i}","description":"a tool that does {i}"}}"#),
            })
            .collect();
        format!(r#"{{"tools":[{}],"nextCursor":"c"}}"#, tools.join(","))
    }

    fn names(text: &str) -> Vec<String> {
        let messages = read(text).unwrap().unwrap();
        messages
            .iter()
            .flat_map(|m| {
                m.result
                    .as_ref()
                    .and_then(|r| r.list("tools"))
                    .unwrap_or_default()
            })
            .map(|item| item.name("name").unwrap_or("?").to_string())
            .collect()
    }

    #[test]
    fn a_result_read_before_is_recalled_only_when_every_byte_is_the_same() {
        let result = big_result(60, "last");
        assert!(result.len() >= RECALL_MIN);
        let first = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#);
        let seen = names(&first);
        assert_eq!(seen.len(), 60);
        // The same result under another id, spaced differently: recalled, placed in this text.
        let again = format!(r#" {{ "id" : "x7", "result" : {result} , "jsonrpc":"2.0"}}"#);
        let messages = read(&again).unwrap().unwrap();
        let items = messages[0].result.as_ref().unwrap().list("tools").unwrap();
        assert_eq!(items.len(), 60);
        assert_eq!(
            items[59].text,
            r#"{"name":"last","description":"the last"}"#
        );
        assert!(crate::json::span(&again, items[0].text).is_some());
        // One byte changed at the very end of the result: read anew, with the new name.
        let changed = big_result(60, "lasT");
        let text = format!(r#"{{"id":2,"result":{changed}}}"#);
        assert_eq!(names(&text).last().map(String::as_str), Some("lasT"));
        // A result that starts as the remembered one but repeats a key after it is refused.
        let repeated = result.replacen(r#""nextCursor":"c""#, r#""nextCursor":"c","tools":[]"#, 1);
        let text = format!(r#"{{"id":3,"result":{repeated}}}"#);
        assert!(matches!(read(&text), Err(JsonError::DuplicateKey(_))));
    }

    #[test]
    fn a_result_is_recalled_only_at_the_depth_it_was_read() {
        // Nested to the limit inside a single answer; one level deeper in a batch.
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_NESTING - 4),
            "]".repeat(MAX_NESTING - 4)
        );
        let pad = "p".repeat(RECALL_MIN);
        let result = format!(r#"{{"tools":[{{"name":"a","deep":{deep}}}],"pad":"{pad}"}}"#);
        let single = format!(r#"{{"id":1,"result":{result}}}"#);
        assert!(crate::json::strict(single.as_bytes()).is_ok());
        assert_eq!(names(&single), ["a"]);
        let batch = format!(r#"[{{"id":1,"result":{result}}}]"#);
        assert!(crate::json::strict(batch.as_bytes()).is_err());
        assert!(
            read(&batch).is_err(),
            "too deep in a batch, remembered or not"
        );
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
