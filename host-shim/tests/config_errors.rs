//! What a user sees for a broken configuration file: the field's path, their line and column,
//! the reason and the line with a caret. Each case breaks the Okta guide's file in one place;
//! the output is a reviewed snapshot.

use host_shim::config::Config;

/// The Okta guide's configuration, as the repository ships it.
const GUIDE: &str = include_str!("../../examples/okta.yaml");

/// The error `GUIDE` gives with `from` replaced by `to`, as the user sees it.
fn error(from: &str, to: &str) -> String {
    assert!(GUIDE.contains(from), "{from}");
    assert!(Config::parse(GUIDE).is_ok());
    match Config::parse(&GUIDE.replace(from, to)) {
        Err(e) => e.to_string(),
        Ok(_) => format!("{to:?} is accepted"),
    }
}

/// What a user sees for a broken file — the field's path, their line and column, the
/// reason and the line with a caret — as reviewed snapshots (`tests/snapshots/`).
#[test]
fn errors_point_at_the_users_line_and_column() {
    // Each case: the snapshot's name, and what is replaced in the guide by what.
    let cases: &[(&str, &str, &str)] = &[
        // A misspelt field: at its key.
        ("misspelt_field", "cmd: npx", "comand: npx"),
        // A value the filter refuses (its parser reads an internal JSON form): at the value in
        // this file, and no place in that form.
        ("unknown_mode", "mode: strict", "mode: stric"),
        // A rule that does not compile: at the expression.
        (
            "bad_rule",
            "- if: '\"AI-Users\" in auth.claims.groups'",
            "- if: '\"AI-Users\" in in'",
        ),
        // A YAML syntax error: at its place, with the field it is in.
        ("yaml_syntax", "mode: strict", "mode: strict: x"),
        // An open quote runs on to the next `"`, where the parser notices: the field is still
        // the one being read, and the reason keeps the place it started in.
        ("open_quote", "issuer: https", "issuer: \"https"),
        // A value of the file's own fields, and a missing one: at the field, or the field
        // that lacks it.
        ("port_not_a_number", "port: 3000", "port: http"),
        (
            "missing_issuer",
            "          issuer: https://your-org.okta.com/oauth2/default\n",
            "",
        ),
        ("bad_target_name", "name: my-server", "name: my.server"),
    ];
    for (name, from, to) in cases {
        insta::assert_snapshot!(*name, error(from, to));
    }
}
