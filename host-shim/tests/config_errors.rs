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

/// One way to break the guide's file: `from` replaced by `to`, and why it is worth a snapshot.
#[derive(serde::Deserialize)]
struct Case {
    snapshot: String,
    why: String,
    from: String,
    to: String,
}

/// What a user sees for a broken file — the field's path, their line and column, the
/// reason and the line with a caret — as reviewed snapshots (`tests/snapshots/`), one per case
/// of `tests/fixtures/config_errors.json`.
#[test]
fn errors_point_at_the_users_line_and_column() {
    let cases: Vec<Case> =
        serde_json::from_str(include_str!("fixtures/config_errors.json")).unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        insta::with_settings!({ description => case.why.as_str() }, {
            insta::assert_snapshot!(case.snapshot.as_str(), error(&case.from, &case.to));
        });
    }
}
