//! Ids in Okta's shape: 20 characters, a three-character prefix naming the kind of object
//! (`00u` a user, `0oa` an application) and 17 letters and digits.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The id of kind `prefix` whose letters and digits come from `bytes` (a digest for an id that
/// must be stable, random bytes for a new one), base64url-encoded without its `-` and `_`.
pub fn okta_id(prefix: &str, bytes: &[u8]) -> String {
    let tail: String = URL_SAFE_NO_PAD
        .encode(bytes)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(17)
        .collect();
    format!("{prefix}{tail}")
}
