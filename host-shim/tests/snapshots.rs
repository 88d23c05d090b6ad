//! Snapshots (`insta`) of what a person reads: the Envoy bootstrap `host-shim envoy` renders for
//! the default config and for a route with two targets, and the configuration errors a handful
//! of broken files give (the field's path, the user's line and column, the reason, the line with
//! a caret). A change to any of them shows as a diff of a committed `.snap` file under
//! `tests/snapshots/`; `cargo insta review` (or `INSTA_UPDATE=always cargo test`) accepts it,
//! while a plain `cargo test` only compares.
#![allow(clippy::unwrap_used, clippy::panic)] // helpers outside `#[test]` functions too

use std::path::PathBuf;

use host_shim::config::Config;
use host_shim::envoy_config::{self, DEFAULT_CA_FILE, DEFAULT_HEALTH_PATH, RenderOptions};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The options `host-shim envoy` uses by default, with a module path that is the same on
/// every machine.
fn options() -> RenderOptions {
    RenderOptions {
        wasm: "/opt/mcp-auth-filter/mcp_auth_filter.wasm".into(),
        shims: vec!["127.0.0.1:3100".parse().unwrap()],
        listen_address: "127.0.0.1".into(),
        admin_port: 9901,
        ca_file: DEFAULT_CA_FILE.into(),
        health_path: Some(DEFAULT_HEALTH_PATH.into()),
    }
}

#[test]
fn the_default_config_renders_this_bootstrap() {
    let config = Config::load(&repo_root().join("examples/okta-local.yaml")).unwrap();
    insta::assert_snapshot!(envoy_config::render(&config, &options()).unwrap());
}

#[test]
fn two_routes_one_with_two_targets_render_this_bootstrap() {
    let config = Config::parse(
        r#"
binds:
- port: 3000
  listeners:
  - routes:
    - name: tools
      matches:
      - path: {pathPrefix: /mcp}
      backends:
      - mcp:
          sessionTtl: 5m
          targets:
          - name: a
            stdio: {cmd: a-server}
          - name: b
            stdio: {cmd: b-server, args: [--quiet]}
      policies:
        mcpAuthentication:
          mode: strict
          issuer: https://example.okta.com/oauth2/default
          audiences: [api://agentgateway]
          jwks:
            url: https://example.okta.com/oauth2/default/v1/keys
        authorization:
          rules:
          - 'mcp.tool.name == "a_echo"'
    - name: open
      matches:
      - path: {pathPrefix: /open}
      backends:
      - mcp:
          targets:
          - name: c
            stdio: {cmd: c-server}
"#,
    )
    .unwrap();
    let mut options = options();
    options
        .shims
        .push("unix:/run/host-shim/2.sock".parse().unwrap());
    insta::assert_snapshot!(envoy_config::render(&config, &options).unwrap());
}

/// The file the errors below point into, the Okta guide's configuration as the repository ships
/// it; each case changes one line of it.
const FILE: &str = include_str!("../../examples/okta.yaml");

/// The error `FILE` gives with `from` replaced by `to`, as the user sees it.
fn error(from: &str, to: &str) -> String {
    assert!(FILE.contains(from), "{from}");
    Config::parse(FILE).unwrap();
    Config::parse(&FILE.replace(from, to))
        .err()
        .unwrap_or_else(|| panic!("{to:?} is accepted"))
        .to_string()
}

#[test]
fn configuration_errors_point_at_the_users_line_and_column() {
    // A misspelt field: at its key.
    insta::assert_snapshot!("misspelt_field", error("cmd: npx", "comand: npx"));
    // A value the filter refuses (its parser reads an internal JSON form): at the value in this
    // file, and no place in that form.
    insta::assert_snapshot!("unknown_mode", error("mode: strict", "mode: stric"));
    // A rule that does not compile: at the expression.
    insta::assert_snapshot!(
        "bad_rule",
        error(
            "- if: '\"AI-Users\" in auth.claims.groups'",
            "- if: '\"AI-Users\" in in'",
        )
    );
    // A YAML syntax error: at its place, with the field it is in.
    insta::assert_snapshot!("yaml_syntax", error("mode: strict", "mode: strict: x"));
    // An open quote runs on to the next `"`, where the parser notices: the field is still the
    // one being read, and the reason keeps the place it started in.
    insta::assert_snapshot!("open_quote", error("issuer: https", "issuer: \"https"));
    // A value of the file's own fields, and a missing one: at the field, or the field that
    // lacks it.
    insta::assert_snapshot!("port_not_a_number", error("port: 3000", "port: http"));
    insta::assert_snapshot!(
        "missing_issuer",
        error(
            "          issuer: https://your-org.okta.com/oauth2/default\n",
            ""
        )
    );
    insta::assert_snapshot!(
        "bad_target_name",
        error("name: my-server", "name: my.server")
    );
}
