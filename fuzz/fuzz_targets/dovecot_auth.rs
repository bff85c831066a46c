//! Fuzz target: arbitrary strings through the Dovecot auth endpoint's user-name checks.
//!
//! `decode_user` must accept exactly the names that could be one of our addresses (checked against an independent
//! statement of the rule), and `home_component` must turn any local part into one plain directory name that decodes
//! back to the local part, so that no two users can share a home and no home can sit outside the mail root.
#![no_main]

use couchmail_dovecot_auth::{decode_user, home_component};
use libfuzzer_sys::fuzz_target;

/// The longest user name an address can have (RFC 5321 4.5.3.1.3: a path is at most 256 octets with its brackets).
const MAX_USER_LEN: usize = 254;

fuzz_target!(|data: &[u8]| {
    // Non-UTF-8 input cannot reach these functions through axum, but its lossy form still makes an interesting string.
    let text = String::from_utf8_lossy(data);

    let decoded = decode_user(&text);
    assert_eq!(decoded.is_some(), could_be_user(&text), "decode_user disagrees with the rule for {text:?}");
    if let Some(user) = &decoded {
        assert_eq!(user, &*text, "decode_user must not rewrite an accepted name");
        let (local_part, _domain) = user.rsplit_once('@').expect("an accepted user has an `@`");
        check_home_component(local_part);
    }

    check_home_component(&text);
    if let Some((local_part, _domain)) = text.rsplit_once('@') {
        check_home_component(local_part);
    }
});

/// The rule `decode_user` implements, stated separately: printable lower-case ASCII without `%`, at most 254 bytes,
/// exactly one `@` with something on each side.
fn could_be_user(text: &str) -> bool {
    let plain = !text.is_empty()
        && text.len() <= MAX_USER_LEN
        && text.bytes().all(|byte| byte.is_ascii_graphic() && !byte.is_ascii_uppercase() && byte != b'%');
    let mut parts = text.split('@');
    let one_at = matches!((parts.next(), parts.next(), parts.next()), (Some(local), Some(domain), None)
        if !local.is_empty() && !domain.is_empty());
    plain && one_at
}

/// Checks that the home directory name for `local_part` is one safe path component that decodes back to it.
fn check_home_component(local_part: &str) {
    let name = home_component(local_part);
    assert!(
        name.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-._+=%".contains(&byte)),
        "unexpected byte in {name:?}"
    );
    assert!(!name.starts_with('.'), "hidden, `.` or `..` name {name:?}");
    assert_eq!(name.is_empty(), local_part.is_empty());
    assert_eq!(percent_decode(&name).as_deref(), Some(local_part.as_bytes()), "{name:?} does not decode back");
}

/// Reverses `home_component`'s escaping; `None` for a `%` not followed by two upper-case hex digits.
fn percent_decode(name: &str) -> Option<Vec<u8>> {
    let bytes = name.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut byte_idx = 0;
    while byte_idx < bytes.len() {
        if bytes[byte_idx] == b'%' {
            let hex = name.get(byte_idx + 1..byte_idx + 3)?;
            if hex.bytes().any(|byte| byte.is_ascii_lowercase()) {
                return None;
            }
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            byte_idx += 3;
        } else {
            decoded.push(bytes[byte_idx]);
            byte_idx += 1;
        }
    }
    Some(decoded)
}
