//! User names as Dovecot sends them, and as they become directory names.

/// Decodes a percent-encoded user name from the request path and checks
/// that it could be an address: at most 254 bytes, one `@`, printable
/// ASCII, lower case (Dovecot sends `%Lu`). Anything else is `None`: no user
/// of ours can have that name.
pub fn decode_user(encoded: &str) -> Option<String> {
    // axum already percent-decodes path parameters; decode leftovers only
    // if the client double-encoded, which ours does not, so refuse `%`.
    let user = encoded;
    if user.is_empty() || user.len() > 254 || user.contains('%') {
        return None;
    }
    if !user.bytes().all(|b| b.is_ascii_graphic()) || user.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let (local, domain) = user.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() || local.contains('@') {
        return None;
    }
    Some(user.to_owned())
}

/// A local part made safe as one directory name: letters, digits and
/// `-._+=` stay, everything else (notably `/`, which RFC 5321 allows in a
/// local part) becomes `%XX`, so that no user's home can sit inside another's.
pub fn home_component(local_part: &str) -> String {
    let mut out = String::with_capacity(local_part.len());
    for byte in local_part.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._+=".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.starts_with('.') {
        // Never `.` or `..`, nor a hidden directory.
        out.replace_range(0..1, "%2E");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_accepts_addresses_only() {
        assert_eq!(decode_user("alice@example.com").as_deref(), Some("alice@example.com"));
        for bad in ["", "alice", "@example.com", "alice@", "Alice@example.com", "a b@example.com", "a%40b@x.example"] {
            assert_eq!(decode_user(bad), None, "{bad:?}");
        }
        assert_eq!(decode_user(&format!("{}@example.com", "a".repeat(250))), None);
    }

    #[test]
    fn home_component_never_escapes() {
        assert_eq!(home_component("alice"), "alice");
        assert_eq!(home_component("a/b"), "a%2Fb");
        assert_eq!(home_component(".hidden"), "%2Ehidden");
        assert_eq!(home_component("x+y=z"), "x+y=z");
    }

    proptest::proptest! {
        #[test]
        fn home_component_is_one_plain_name(local in "\\PC{0,70}") {
            let name = home_component(&local);
            proptest::prop_assert!(!name.contains('/'));
            proptest::prop_assert!(!name.starts_with('.'));
            proptest::prop_assert!(name.is_ascii());
        }

        #[test]
        fn decode_never_panics(input in "\\PC{0,300}") {
            let _ = decode_user(&input);
        }
    }
}
