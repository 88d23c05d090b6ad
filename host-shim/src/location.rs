//! Where in the user's YAML file a field is, so a configuration error points at the line and
//! column the user wrote rather than at the internal form the shim hands to the filter's
//! parser. One walk over the file's YAML events (`saphyr-parser`, which marks each event with
//! its place) gives every node's path, spelt as error paths are
//! (`binds[0].listeners[0].routes[0].policies.mcpAuthentication.mode`), and its place; the same
//! walk, stopped at a syntax error's place, names the field the error is in.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser, Span};

/// A place in the file: both 1-based, the column counted in characters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    fn of(span: &Span) -> Position {
        Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        }
    }
}

/// One node of the file: where its key is (mapping entries) and where its value starts.
#[derive(Debug, Clone, Copy)]
struct Node {
    key: Option<Position>,
    value: Position,
    scalar: bool,
}

/// Every node's place, by path. Built from as much of the file as parses.
#[derive(Debug, Clone, Default)]
pub struct Index {
    nodes: BTreeMap<String, Node>,
}

impl Index {
    pub fn new(text: &str) -> Index {
        let mut walk = Walk::default();
        walk.run(text, None);
        Index { nodes: walk.nodes }
    }

    /// Where the error about `path` should point. An unknown field, or a value that is a
    /// whole mapping or list, is shown at its key; a bad scalar at the value itself. A field
    /// that is missing is shown at the nearest enclosing field that exists.
    pub fn locate(&self, path: &str, reason: &str) -> Option<Position> {
        if let Some(node) = self.nodes.get(path) {
            let at_key = reason.starts_with("unknown field")
                || reason.starts_with("unknown rule kind")
                || !node.scalar;
            return Some(match node.key {
                Some(key) if at_key => key,
                _ => node.value,
            });
        }
        let mut path = path;
        while let Some(parent) = parent(path) {
            if let Some(node) = self.nodes.get(parent) {
                return Some(node.key.unwrap_or(node.value));
            }
            path = parent;
        }
        None
    }
}

/// The path of the field at `at`, read from the file's events up to that place (or up to the
/// file's first syntax error, whichever comes first).
pub fn path_at(text: &str, at: Position) -> Option<String> {
    let mut walk = Walk::default();
    walk.run(text, Some(at));
    walk.current(at)
}

/// `a.b[0].c` → `a.b[0]` → `a.b` → `a`; `None` at the top.
fn parent(path: &str) -> Option<&str> {
    path.rfind(['.', '[']).and_then(|i| path.get(..i))
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

enum Frame {
    /// A mapping, and the key whose value comes next.
    Map {
        path: String,
        key: Option<(String, Position)>,
    },
    Seq {
        path: String,
        next: usize,
    },
    /// Inside a key that is itself a mapping or a list (`? [a, b]: c`): no path reaches it.
    ComplexKey {
        depth: usize,
        at: Position,
    },
}

#[derive(Default)]
struct Walk {
    stack: Vec<Frame>,
    nodes: BTreeMap<String, Node>,
    /// The last node begun, and where.
    last: Option<(String, Position)>,
}

impl Walk {
    fn run(&mut self, text: &str, stop: Option<Position>) {
        let mut parser = Parser::new_from_str(text);
        while let Some(Ok((event, span))) = parser.next_event() {
            let at = Position::of(&span);
            if stop.is_some_and(|stop| at >= stop) {
                return;
            }
            match event {
                Event::Scalar(value, ..) => self.node(at, Some(&value), false),
                Event::Alias(_) => self.node(at, Some("*"), false),
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    let map = matches!(event, Event::MappingStart(..));
                    self.node(at, None, map);
                }
                Event::SequenceEnd | Event::MappingEnd => self.end(),
                _ => {}
            }
        }
    }

    /// A node begins: a scalar (`text`), or a mapping (`map`) or a list.
    fn node(&mut self, at: Position, text: Option<&str>, map: bool) {
        let path = match self.stack.last_mut() {
            Some(Frame::ComplexKey { depth, .. }) => {
                if text.is_none() {
                    *depth += 1;
                }
                return;
            }
            Some(Frame::Map {
                key: key @ None, ..
            }) => {
                match text {
                    Some(text) => *key = Some((text.to_string(), at)),
                    None => self.stack.push(Frame::ComplexKey { depth: 1, at }),
                }
                return;
            }
            Some(Frame::Map { path, key }) => {
                let (name, key_at) = key.take().unwrap_or_default();
                let path = join(path, &name);
                self.record(&path, Some(key_at), at, text.is_some());
                path
            }
            Some(Frame::Seq { path, next }) => {
                let path = format!("{path}[{next}]");
                *next += 1;
                self.record(&path, None, at, text.is_some());
                path
            }
            None => {
                self.record("", None, at, text.is_some());
                String::new()
            }
        };
        if text.is_none() {
            self.stack.push(if map {
                Frame::Map { path, key: None }
            } else {
                Frame::Seq { path, next: 0 }
            });
        }
    }

    fn record(&mut self, path: &str, key: Option<Position>, value: Position, scalar: bool) {
        self.last = Some((path.to_string(), value));
        // The first occurrence is the one a parser reports a duplicate against.
        self.nodes
            .entry(path.to_string())
            .or_insert(Node { key, value, scalar });
    }

    fn end(&mut self) {
        if let Some(Frame::ComplexKey { depth, at }) = self.stack.last_mut() {
            *depth -= 1;
            if *depth > 0 {
                return;
            }
            let at = *at;
            self.stack.pop();
            if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                *key = Some(("?".to_string(), at));
            }
            return;
        }
        self.stack.pop();
    }

    /// The path of the node being read where the walk stopped, at `at`: the pending key's,
    /// or the value's just read on that line (`mode: strict: x` is an error in `mode`).
    fn current(&self, at: Position) -> Option<String> {
        if let (Some(Frame::Map { key: None, .. }), Some((path, value))) =
            (self.stack.last(), &self.last)
            && value.line == at.line
        {
            return Some(path.clone());
        }
        self.stack.iter().rev().find_map(|frame| match frame {
            Frame::Map {
                path,
                key: Some((key, _)),
            } => Some(join(path, key)),
            Frame::Map { path, key: None } => Some(path.clone()),
            Frame::Seq { path, next } => Some(format!("{path}[{next}]")),
            Frame::ComplexKey { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
binds:
- port: 3000
  listeners:
  - routes:
    - backends:
      - mcp:
          targets: [{name: a, stdio: {cmd: npx}}]
      policies:
        mcpAuthentication:
          mode: stric
          audiences:
          - api://x
";

    fn at(line: usize, column: usize) -> Option<Position> {
        Some(Position { line, column })
    }

    #[test]
    fn fields_are_found_by_their_error_path() {
        let index = Index::new(TEXT);
        let mode = "binds[0].listeners[0].routes[0].policies.mcpAuthentication.mode";
        assert_eq!(index.locate(mode, "unknown variant `stric`"), at(10, 17));
        assert_eq!(index.locate(mode, "unknown field `mode`"), at(10, 11));
        let audience = "binds[0].listeners[0].routes[0].policies.mcpAuthentication.audiences[0]";
        assert_eq!(index.locate(audience, "bad"), at(12, 13));
        // A list or a mapping is shown at its key.
        let targets = "binds[0].listeners[0].routes[0].backends[0].mcp.targets";
        assert_eq!(index.locate(targets, "bad"), at(7, 11));
        assert_eq!(
            index.locate(&format!("{targets}[0].stdio.cmd"), "not found"),
            at(7, 44)
        );
        // Missing: the nearest field that is there.
        let issuer = "binds[0].listeners[0].routes[0].policies.mcpAuthentication.issuer";
        assert_eq!(index.locate(issuer, "is required"), at(9, 9));
        assert_eq!(index.locate("nothing.here", "x"), None);
    }

    #[test]
    fn a_place_names_its_field() {
        assert_eq!(
            path_at(
                TEXT,
                Position {
                    line: 10,
                    column: 17
                }
            )
            .as_deref(),
            Some("binds[0].listeners[0].routes[0].policies.mcpAuthentication.mode")
        );
        // A syntax error stops the walk where it is: the field being read is named.
        let broken = TEXT.replace("mode: stric", "mode: \"stric");
        assert_eq!(
            path_at(
                &broken,
                Position {
                    line: 99,
                    column: 1
                }
            )
            .as_deref(),
            Some("binds[0].listeners[0].routes[0].policies.mcpAuthentication.mode")
        );
        let broken = TEXT.replace("mode: stric", "mode: stric: x");
        assert_eq!(
            path_at(
                &broken,
                Position {
                    line: 10,
                    column: 22
                }
            )
            .as_deref(),
            Some("binds[0].listeners[0].routes[0].policies.mcpAuthentication.mode")
        );
        assert_eq!(
            path_at(TEXT, Position { line: 2, column: 9 }).as_deref(),
            Some("binds[0].port")
        );
    }

    #[test]
    fn complex_keys_and_aliases_do_not_lose_the_walk() {
        let text = "a: &x {b: 1}\n? [k, l]\n: v\nc: *x\nd: [1, 2]\n";
        let index = Index::new(text);
        assert_eq!(index.locate("c", "bad"), at(4, 4));
        assert_eq!(index.locate("d[1]", "bad"), at(5, 8));
        assert_eq!(index.locate("a.b", "bad"), at(1, 11));
    }
}
