//! Resource URIs as MCP servers resolve them. The TypeScript SDK looks a resource up by
//! `new URL(uri).toString()`, so `DEMO://resource/a/../x`, ` demo://resource/x` and
//! `demo://resource/x` are one resource to it: rules must see the URI in that form, or a
//! deny on one spelling is passed by another. The `url` crate implements the same WHATWG URL
//! standard as the SDK's runtime.

/// Why a resource URI cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the resource URI {uri:?} is not an absolute URL: {reason}")]
pub struct UriError {
    /// The URI as the message wrote it, shortened for the log and the client.
    pub uri: String,
    pub reason: String,
}

/// Longest URI quoted in an error.
const QUOTED: usize = 200;

/// The URI as WHATWG URL serialises it (the `href` a server's `new URL(uri)` gives).
pub fn normalize(raw: &str) -> Result<String, UriError> {
    let refuse = |reason: String| UriError {
        uri: raw.chars().take(QUOTED).collect(),
        reason,
    };
    let url = url::Url::parse(raw).map_err(|e| refuse(e.to_string()))?;
    if url.scheme() != "file" {
        return Ok(url.into());
    }
    let drive = url
        .path_segments()
        .and_then(|mut s| s.next())
        .and_then(drive_letter);
    let Some((letter, _)) = drive else {
        return Ok(url.into());
    };
    // Here the crate follows an older revision of the standard: it drops a host written before
    // a drive letter, and keeps `C|` where the standard writes `C:`. Only spellings both
    // revisions read alike are taken, in the standard's form.
    if !plain_drive_spelling(raw) {
        return Err(refuse(
            "a file URI naming a Windows drive must be written file:///C:/...".into(),
        ));
    }
    let href = String::from(url);
    let rest = href.get("file:///C:".len()..).unwrap_or_default();
    Ok(format!("file:///{letter}:{rest}"))
}

/// `C:` or `C|`, as the letter and its separator.
fn drive_letter(segment: &str) -> Option<(char, char)> {
    let mut chars = segment.chars();
    match (chars.next(), chars.next(), chars.next()) {
        (Some(letter), Some(sep @ (':' | '|')), None) if letter.is_ascii_alphabetic() => {
            Some((letter, sep))
        }
        _ => None,
    }
}

/// `file:` then at most three slashes (no host) and the drive, read as the standard reads
/// input: surrounding C0 controls and spaces trimmed, tabs and newlines removed, `\` as `/`.
fn plain_drive_spelling(raw: &str) -> bool {
    let text: String = raw
        .trim_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'))
        .map(|c| if c == '\\' { '/' } else { c })
        .collect();
    let Some(rest) = text
        .get(.."file:".len())
        .filter(|s| s.eq_ignore_ascii_case("file:"))
        .and_then(|_| text.get("file:".len()..))
    else {
        return false;
    };
    let after = rest.trim_start_matches('/');
    let drive = after.get(..2).and_then(drive_letter);
    let then = after.get(2..).and_then(|s| s.chars().next());
    rest.len() - after.len() <= 3 && drive.is_some() && matches!(then, None | Some('/' | '?' | '#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each pair is what Node 22's `new URL(input).href` printed for the input.
    const NODE: &[(&str, &str)] = &[
        ("DEMO://resource/a/../x", "demo://resource/x"),
        ("demo://resource/./x", "demo://resource/x"),
        (" demo://resource/x ", "demo://resource/x"),
        ("\u{1}demo://resource/x\u{1f}", "demo://resource/x"),
        ("demo://res\tource/x\n", "demo://resource/x"),
        ("demo://resource/\r\nx", "demo://resource/x"),
        ("demo://RESOURCE/x", "demo://RESOURCE/x"),
        ("demo://resource/a b", "demo://resource/a%20b"),
        ("demo://resource/%7e", "demo://resource/%7e"),
        ("demo://resource/%2e%2e/x", "demo://resource/x"),
        ("demo://resource/a/%2e%2E/x", "demo://resource/x"),
        ("demo://resource/.%2e/x", "demo://resource/x"),
        ("demo://resource/{id}", "demo://resource/%7Bid%7D"),
        ("demo://resource/x/..", "demo://resource/"),
        ("demo://resource//x", "demo://resource//x"),
        ("demo://resource/\\x", "demo://resource/\\x"),
        ("demo://resource/é", "demo://resource/%C3%A9"),
        ("demo://resource/%zz", "demo://resource/%zz"),
        ("demo://resource/x?q=a b", "demo://resource/x?q=a%20b"),
        ("demo://h:0080/x", "demo://h:80/x"),
        ("demo://u:p@h/x", "demo://u:p@h/x"),
        ("demo://[::1]/x", "demo://[::1]/x"),
        ("demo://0x7f.1/", "demo://0x7f.1/"),
        ("demo://bücher/x", "demo://b%C3%BCcher/x"),
        ("demo:x/../y", "demo:x/../y"),
        ("demo:/x/../y", "demo:/y"),
        ("demo:opaque path", "demo:opaque path"),
        ("file:///a/../b", "file:///b"),
        ("FILE:///C:/x", "file:///C:/x"),
        ("file://localhost/etc", "file:///etc"),
        ("file:///C|/x", "file:///C:/x"),
        ("HTTP://EXAMPLE.com:80/a/%2e%2e/b", "http://example.com/b"),
        (
            "https://example.com:443/x?a b#c d",
            "https://example.com/x?a%20b#c%20d",
        ),
        ("http://a/b\\c", "http://a/b/c"),
        ("http://%41.com/", "http://a.com/"),
        ("http://0x7f.1/", "http://127.0.0.1/"),
        ("test://static/resource/1", "test://static/resource/1"),
        ("file:///C:/../x", "file:///C:/x"),
        ("file:///C:/a/../../x", "file:///C:/x"),
        ("file:///C|/../x", "file:///C:/x"),
        ("file:///C:", "file:///C:"),
        ("file:///C:/", "file:///C:/"),
        ("file:///D|x", "file:///D|x"),
        ("file:///C:x", "file:///C:x"),
        ("file://C:/x", "file:///C:/x"),
        ("file://C|/x", "file:///C:/x"),
        ("file:///%43:/x", "file:///%43:/x"),
        ("file:///C%3A/x", "file:///C%3A/x"),
        ("file:///CC:/x", "file:///CC:/x"),
        ("file:C|/x", "file:///C:/x"),
        ("file:///c|", "file:///c:"),
        ("file:///C|?q", "file:///C:?q"),
        ("file:///C|#f", "file:///C:#f"),
        ("file:///x/C|/y", "file:///x/C|/y"),
        ("file:/C|/x", "file:///C:/x"),
        ("file:C:/x", "file:///C:/x"),
        ("file:///C%7C/x", "file:///C%7C/x"),
        ("file:\\\\\\C|\\x", "file:///C:/x"),
        ("FILE://LOCALHOST/x", "file:///x"),
        ("file://HOST/x", "file://host/x"),
        ("file:///a/./%2e/b", "file:///a/b"),
        ("demo://h/x/%2E%2e", "demo://h/"),
        ("http://h/%2e%2e", "http://h/"),
        ("demo://h?x", "demo://h?x"),
        ("demo://h#x", "demo://h#x"),
        ("demo:#x", "demo:#x"),
        ("demo:?x", "demo:?x"),
        ("demo:/.//x", "demo:/.//x"),
        ("demo:/a/..//x", "demo:/.//x"),
        ("http://h:/", "http://h/"),
        ("demo://h:/x", "demo://h/x"),
        ("http://[0::1]/", "http://[::1]/"),
        ("demo://[0::1]/", "demo://[::1]/"),
        ("ws://h:80/", "ws://h/"),
        ("wss://h:443/", "wss://h/"),
        ("http://h/`{}", "http://h/%60%7B%7D"),
        ("demo://h/`{}|^", "demo://h/%60%7B%7D|^"),
        ("demo://h/x?`{}'", "demo://h/x?`{}'"),
        ("http://h/x?'", "http://h/x?%27"),
        ("demo://h/x#`", "demo://h/x#%60"),
        ("demo://h/%", "demo://h/%"),
        ("demo:x%20 y", "demo:x%20 y"),
        ("demo:x \t", "demo:x"),
        ("http://h/a/b/../../../c", "http://h/c"),
    ];

    #[test]
    fn uris_normalise_as_nodes_url_prints_them() {
        let wrong: Vec<_> = NODE
            .iter()
            .filter(|(input, href)| normalize(input).as_deref() != Ok(*href))
            .map(|(input, href)| (input, href, normalize(input)))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn uris_node_refuses_do_not_parse() {
        for input in ["relative/x", "/abs/path", "demo://a b/x", "", "://x"] {
            let e = normalize(input).unwrap_err();
            assert!(e.to_string().contains("not an absolute URL"), "{e}");
        }
    }

    #[test]
    fn file_uris_whose_drive_letter_the_crate_reads_otherwise_are_refused() {
        // Node keeps the host (`file://host/C:/x`) or the slashes (`file:////C:/x`); the crate
        // drops them. Refused rather than judged under the wrong name.
        for input in [
            "file://host/C:/x",
            "file://host/C|/x",
            "file:////C:/x",
            "file://localhost/C:/x",
        ] {
            let e = normalize(input).unwrap_err();
            assert!(e.reason.contains("Windows drive"), "{input}: {e}");
        }
    }

    #[test]
    fn a_long_uri_is_quoted_shortened() {
        let long = format!("relative/{}", "x".repeat(10_000));
        assert_eq!(normalize(&long).unwrap_err().uri.chars().count(), QUOTED);
    }
}
