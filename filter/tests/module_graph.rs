//! The filter's modules point one way. Each module of `src/` has a place in [`LAYERS`], from
//! the leaves up to the proxy adapter, and may name (`crate::…`) only modules placed before
//! it; its tests may also use `testing`. A new module must be given a place here, and every
//! file must open with a `//!` doc saying why it exists.
//!
//! `cargo test -p mcp-auth-filter --test module_graph -- --nocapture` prints the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules, lowest first.
const LAYERS: &[&str] = &[
    // Leaves: parsing and arithmetic that know nothing of the rest.
    "rsa_verify",
    "ec_p256",
    "ec_verify",
    "json",
    "reply",
    "uri",
    "sse",
    "location",
    "target",
    "cel_value",
    "config_error",
    "metric",
    "header_map",
    // The seam to the proxy.
    "host",
    // Tokens: keys, then verification.
    "jwks",
    "jwt",
    // MCP's JSON-RPC, then the rules that read it.
    "mcp",
    "authz",
    "cache",
    // The configuration, compiled.
    "registration",
    "policy",
    // Answers, discovery, keys over time, one decision, a stream's life.
    "response",
    "discovery",
    "keystore",
    "engine",
    "audit",
    "lifecycle",
    "testing",
    "adapter",
];

/// `crate::<module>` names in `text`.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::C}`: the first name of each item, at the group's top level.
            let mut depth = 0usize;
            let mut item_start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[j..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_ascii_alphanumeric() || c == '_') => {
                        let name: String = group[j..]
                            .chars()
                            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                            .collect();
                        out.insert(name);
                        item_start = false;
                    }
                    _ => {}
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// The file's code and its test module, apart (the test module is the file's last item).
fn split_tests(text: &str) -> (&str, &str) {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text.split_at(i),
        None => (text, ""),
    }
}

/// What one module names: in its code, in its tests, and whether it opens with a doc.
type Module = (BTreeSet<String>, BTreeSet<String>, bool);

/// Each module's code with comments removed (doc links name modules without importing them).
fn graph() -> std::io::Result<BTreeMap<String, Module>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&src)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let Some(name) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if name == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let documented = text.starts_with("//!");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let (main, tests) = split_tests(&code);
        let mut uses = named_modules(main);
        uses.remove(&name);
        let mut test_uses = named_modules(tests);
        test_uses.remove(&name);
        out.insert(name, (uses, test_uses, documented));
    }
    Ok(out)
}

#[test]
fn modules_import_only_modules_below_them() {
    let graph = graph().expect("src/ is readable");
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut problems = Vec::new();
    for (module, (uses, test_uses, documented)) in &graph {
        let Some(mine) = rank(module) else {
            problems.push(format!("src/{module}.rs has no place in LAYERS"));
            continue;
        };
        if !documented {
            problems.push(format!("src/{module}.rs does not open with a //! doc"));
        }
        println!(
            "{module} -> {}",
            uses.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        for used in uses {
            match rank(used) {
                Some(theirs) if theirs < mine => {}
                Some(_) => problems.push(format!("{module} imports {used}, which is above it")),
                None => problems.push(format!("{module} names crate::{used}, not a module")),
            }
        }
        for used in test_uses {
            let fine = used == "testing" || rank(used).is_some_and(|theirs| theirs < mine);
            if !fine {
                problems.push(format!("{module}'s tests import {used}, which is above it"));
            }
        }
    }
    for module in LAYERS {
        if !graph.contains_key(*module) {
            problems.push(format!("LAYERS names {module}, which src/ does not have"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    let (main, tests) =
        split_tests("use crate::engine::x;\n#[cfg(test)]\nmod tests {\n use crate::testing;\n}");
    assert_eq!(named_modules(main), BTreeSet::from(["engine".to_string()]));
    assert_eq!(
        named_modules(tests),
        BTreeSet::from(["testing".to_string()])
    );
    assert_eq!(
        named_modules("use crate::{jwt::{A, B}, mcp};"),
        BTreeSet::from(["jwt".to_string(), "mcp".to_string()])
    );
}
