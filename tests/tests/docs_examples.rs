//! Every YAML example in the README and in docs/ is parsed, so a documented configuration is one
//! the gateway accepts. A block holding `binds:` is a whole config file and goes through
//! `host-shim envoy` (the shim's loader, which checks each route's policy with the filter's own
//! parser); any other block is a policy and goes through `FilterConfig::parse`, as the filter
//! reads its plugin configuration.
//!
//! An HTML comment on the line before a block says what else it is:
//! `<!-- example:fragment of=authorization -->` (a part of a policy, parsed nested under those
//! dot-separated keys) and `<!-- example:invalid -->` (shown to be refused: it must fail).

mod envoy_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use envoy_support::{host_shim_binary, repo_root};
use mcp_auth_filter::policy::FilterConfig;

#[derive(Debug, PartialEq)]
enum Mark {
    Whole,
    /// Nested under these keys, outermost first.
    Fragment(Vec<String>),
    Invalid,
}

struct Example {
    at: String,
    mark: Mark,
    yaml: String,
}

fn mark(comment: &str, at: &str) -> Mark {
    let inner = comment
        .trim()
        .strip_prefix("<!-- example:")
        .and_then(|rest| rest.strip_suffix("-->"))
        .unwrap_or_else(|| panic!("{at}: a malformed example marker: {comment}"))
        .trim();
    match inner.split_once(' ') {
        None if inner == "invalid" => Mark::Invalid,
        Some(("fragment", of)) => {
            let keys = of
                .trim()
                .strip_prefix("of=")
                .unwrap_or_else(|| panic!("{at}: `fragment` needs `of=<key.key>`"));
            Mark::Fragment(keys.split('.').map(str::to_string).collect())
        }
        _ => panic!("{at}: unknown example marker `{inner}` (fragment of=…, invalid)"),
    }
}

/// The fenced ```yaml blocks of one Markdown file, each with the marker before it, if any.
fn examples(path: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path
        .strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut pending: Option<(usize, &str)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if trimmed.starts_with("<!-- example:") {
            pending = Some((i + 1, line));
        } else if trimmed.starts_with("```yaml") {
            let indent = line.len() - trimmed.len();
            let start = i + 1;
            let mut body = String::new();
            i += 1;
            while i < lines.len() && lines[i].trim() != "```" {
                body.push_str(
                    lines[i]
                        .get(indent..)
                        .unwrap_or_else(|| lines[i].trim_start()),
                );
                body.push('\n');
                i += 1;
            }
            let at = format!("{name}:{start}");
            let mark = pending.take().map_or(Mark::Whole, |(_, c)| mark(c, &at));
            found.push(Example {
                at,
                mark,
                yaml: body,
            });
        } else if !trimmed.is_empty()
            && let Some((n, c)) = pending
        {
            panic!(
                "{name}:{n}: `{}` is not followed by a ```yaml block",
                c.trim()
            );
        }
        i += 1;
    }
    found
}

fn docs() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// A whole config file: some top-level key is `binds`.
fn is_config_file(yaml: &str) -> bool {
    yaml.lines().any(|l| l.starts_with("binds:"))
}

fn nest(yaml: &str, keys: &[String]) -> String {
    keys.iter().rev().fold(yaml.to_string(), |inner, key| {
        let indented: String = inner.lines().map(|l| format!("  {l}\n")).collect();
        format!("{key}:\n{indented}")
    })
}

/// `Ok` when `host-shim envoy` renders the file, else its error output.
fn render(yaml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(host_shim_binary())
        .arg("envoy")
        .arg(&file)
        .args(["--wasm", env!("FILTER_WASM")])
        .arg("-o")
        .arg(dir.path().join("envoy.yaml"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn parse(example: &Example) -> Result<(), String> {
    let yaml = match &example.mark {
        Mark::Fragment(keys) => nest(&example.yaml, keys),
        Mark::Whole | Mark::Invalid => example.yaml.clone(),
    };
    if is_config_file(&yaml) {
        render(&yaml)
    } else {
        FilterConfig::parse(yaml.as_bytes())
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[test]
fn every_yaml_example_in_the_docs_parses_as_it_is_shown() {
    let all: Vec<Example> = docs().iter().flat_map(|f| examples(f)).collect();
    assert!(
        all.iter().any(|e| e.at.starts_with("README.md")),
        "the README's policy example was not found"
    );
    assert!(
        all.iter().any(|e| is_config_file(&e.yaml)),
        "no whole config file among the examples"
    );
    let mut failures = Vec::new();
    for example in &all {
        match (parse(example), &example.mark) {
            (Ok(()), Mark::Invalid) => failures.push(format!(
                "{}: marked invalid, but it parses:\n{}",
                example.at, example.yaml
            )),
            (Err(e), Mark::Whole | Mark::Fragment(_)) => failures.push(format!(
                "{}: does not parse (mark it `<!-- example:fragment of=… -->` or \
                 `<!-- example:invalid -->` if that is intended): {e}\n{}",
                example.at, example.yaml
            )),
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("{} YAML examples checked", all.len());
}

#[test]
fn markers_say_what_a_block_is() {
    assert_eq!(mark("<!-- example:invalid -->", "x"), Mark::Invalid);
    assert_eq!(
        mark("<!-- example:fragment of=policies.authorization -->", "x"),
        Mark::Fragment(vec!["policies".into(), "authorization".into()])
    );
    assert_eq!(
        nest("rules: []\n", &["authorization".to_string()]),
        "authorization:\n  rules: []\n"
    );
}
