//! Refuses a [`Stack`] whose values would change the meaning of the rendered files.
//!
//! Postfix expands `$name` and splits lists on commas and spaces, Dovecot
//! expands `%` variables and reads `<path` as a file, Pigeonhole splits
//! locations on `;`, and every one of them ends a value at a newline. Values
//! are therefore held to small character sets rather than escaped: a path
//! with a space is refused with its field name instead of producing a
//! configuration that means something else.

use std::net::SocketAddr;
use std::path::Path;

use crate::error::{Error, ErrorKind};
use crate::spam::Spam;
use crate::stack::{Listen, Stack};

/// Checks every field `render` writes.
pub(crate) fn check(stack: &Stack) -> Result<(), Error> {
    check_hostname("hostname", &stack.hostname)?;
    check_ports(stack)?;
    for (field, path) in stack.paths.named() {
        check_path(field, path)?;
    }
    if !stack.paths.postfix_log.starts_with(&stack.paths.log_dir) {
        return Err(Error::new("paths.postfix_log", ErrorKind::NotInside("paths.log_dir")));
    }
    if let Some(sieve_before) = &stack.sieve_before {
        check_path("sieve_before", sieve_before)?;
    }
    if stack.vmail.uid == 0 {
        return Err(Error::new("vmail.uid", ErrorKind::RootId));
    }
    if stack.vmail.gid == 0 {
        return Err(Error::new("vmail.gid", ErrorKind::RootId));
    }
    check_base_url("auth_endpoint.base_url", &stack.auth_endpoint.base_url)?;
    check_secret("auth_endpoint.secret", &stack.auth_endpoint.secret)?;
    if stack.message_size_limit == 0 {
        return Err(Error::new("message_size_limit", ErrorKind::Zero));
    }
    if stack.auth_cache.size_bytes == 0 {
        return Err(Error::new("auth_cache.size_bytes", ErrorKind::Zero));
    }
    if let Some(address) = &stack.postmaster_address {
        check_address("postmaster_address", address)?;
    }
    if let Listen::Address(address) = stack.listen
        && address.is_unspecified()
    {
        return Err(Error::new("listen", ErrorKind::UnspecifiedAddress));
    }
    if let Some(spam) = &stack.spam {
        check_spam(spam)?;
    }
    if let Some(postscreen) = &stack.postscreen {
        crate::postscreen::check(postscreen)?;
    }
    Ok(())
}

/// spamc refuses sizes above 256 MiB.
const SPAMC_MAX_SIZE: u64 = 256 * 1024 * 1024;

fn check_spam(spam: &Spam) -> Result<(), Error> {
    check_path("spam.spamd_socket", &spam.spamd_socket)?;
    check_path("spam.user_dir_root", &spam.user_dir_root)?;
    check_path("spam.spamc_program", &spam.spamc_program)?;
    if let Some(reject) = &spam.smtp_reject {
        check_path("spam.smtp_reject.milter_socket", &reject.milter_socket)?;
        if reject.score <= spam.required_score {
            return Err(Error::new("spam.smtp_reject.score", ErrorKind::NotAbove("spam.required_score")));
        }
        // spamass-milter reads the threshold and the message's score as whole numbers.
        if reject.score.tenths() % 10 != 0 {
            return Err(Error::new("spam.smtp_reject.score", ErrorKind::NotWhole));
        }
    }
    if spam.max_scan_bytes == 0 {
        return Err(Error::new("spam.max_scan_bytes", ErrorKind::Zero));
    }
    if spam.max_scan_bytes > SPAMC_MAX_SIZE {
        return Err(Error::new("spam.max_scan_bytes", ErrorKind::TooLarge(SPAMC_MAX_SIZE)));
    }
    if spam.scan_timeout_secs == 0 {
        return Err(Error::new("spam.scan_timeout_secs", ErrorKind::Zero));
    }
    if spam.max_children == 0 {
        return Err(Error::new("spam.max_children", ErrorKind::Zero));
    }
    let group_ok = !spam.socket_group.is_empty()
        && spam.socket_group.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"-_".contains(&byte));
    if !group_ok {
        return Err(Error::new("spam.socket_group", ErrorKind::InvalidName));
    }
    Ok(())
}

fn check_hostname(field: &str, hostname: &str) -> Result<(), Error> {
    if hostname.is_empty() {
        return Err(Error::new(field, ErrorKind::Empty));
    }
    let labels_ok = hostname.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
    });
    if hostname.len() > 253 || !labels_ok {
        return Err(Error::new(field, ErrorKind::InvalidHostname));
    }
    Ok(())
}

fn check_address(field: &str, address: &str) -> Result<(), Error> {
    let Some((local, host)) = address.rsplit_once('@') else {
        return Err(Error::new(field, ErrorKind::InvalidAddress));
    };
    let local_ok =
        !local.is_empty() && local.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"._+-".contains(&byte));
    if !local_ok {
        return Err(Error::new(field, ErrorKind::InvalidAddress));
    }
    check_hostname(field, host)
}

fn check_ports(stack: &Stack) -> Result<(), Error> {
    let ports = [
        ("ports.smtp", stack.ports.smtp),
        ("ports.submission", stack.ports.submission),
        ("ports.submissions", stack.ports.submissions),
        ("ports.imaps", stack.ports.imaps),
    ];
    for (port_idx, (field, port)) in ports.iter().enumerate() {
        if *port == 0 {
            return Err(Error::new(*field, ErrorKind::ZeroPort));
        }
        if ports[..port_idx].iter().any(|(_, earlier)| earlier == port) {
            return Err(Error::new(*field, ErrorKind::DuplicatePort(*port)));
        }
    }
    Ok(())
}

/// Paths may hold letters, digits and `/._+-@`: enough for any sane layout, and
/// nothing that Postfix, Dovecot or Pigeonhole read as syntax.
fn check_path(field: &str, path: &Path) -> Result<(), Error> {
    let Some(text) = path.to_str() else {
        return Err(Error::new(field, ErrorKind::UnsafeCharacter(char::REPLACEMENT_CHARACTER)));
    };
    if text.is_empty() {
        return Err(Error::new(field, ErrorKind::Empty));
    }
    if !path.is_absolute() {
        return Err(Error::new(field, ErrorKind::NotAbsolute));
    }
    if let Some(bad) = text.chars().find(|&character| !is_path_character(character)) {
        return Err(Error::new(field, ErrorKind::UnsafeCharacter(bad)));
    }
    Ok(())
}

fn is_path_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || "/._+-@".contains(character)
}

/// The endpoint must be `http://` and an IP literal with a port (docs/runtime.md:
/// no name lookups inside the auth worker), optionally followed by a path prefix.
fn check_base_url(field: &str, url: &str) -> Result<(), Error> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(Error::new(field, ErrorKind::InvalidUrl));
    };
    let (authority, path) = match rest.find('/') {
        Some(slash_idx) => rest.split_at(slash_idx),
        None => (rest, ""),
    };
    if authority.parse::<SocketAddr>().is_err() {
        return Err(Error::new(field, ErrorKind::InvalidUrl));
    }
    if let Some(bad) =
        path.chars().find(|&character| !(character.is_ascii_alphanumeric() || "/._-~".contains(character)))
    {
        return Err(Error::new(field, ErrorKind::UnsafeCharacter(bad)));
    }
    Ok(())
}

/// The secret travels in an HTTP header, so it must be visible ASCII without spaces.
fn check_secret(field: &str, secret: &str) -> Result<(), Error> {
    if secret.is_empty() {
        return Err(Error::new(field, ErrorKind::Empty));
    }
    if let Some(bad) = secret.chars().find(|character| !character.is_ascii_graphic()) {
        return Err(Error::new(field, ErrorKind::UnsafeCharacter(bad)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Stack {
        let mut stack = Stack::dev("/srv/couchmail");
        stack.auth_endpoint.secret = "s3cret".to_owned();
        stack
    }

    fn check_error(change: impl FnOnce(&mut Stack)) -> (String, ErrorKind) {
        let mut stack = valid();
        change(&mut stack);
        let error = check(&stack).unwrap_err();
        (error.field().to_owned(), error.kind().clone())
    }

    #[test]
    fn defaults_with_a_secret_pass() {
        check(&valid()).unwrap();
        let mut production = Stack::production();
        production.auth_endpoint.secret = "s3cret".to_owned();
        check(&production).unwrap();
    }

    #[test]
    fn empty_secret_is_refused() {
        assert_eq!(
            check_error(|stack| stack.auth_endpoint.secret.clear()),
            ("auth_endpoint.secret".into(), ErrorKind::Empty)
        );
    }

    #[test]
    fn secret_with_a_newline_is_refused() {
        let (field, kind) = check_error(|stack| stack.auth_endpoint.secret = "a\nb".into());
        assert_eq!((field.as_str(), kind), ("auth_endpoint.secret", ErrorKind::UnsafeCharacter('\n')));
    }

    #[test]
    fn relative_path_is_refused() {
        assert_eq!(
            check_error(|stack| stack.paths.tls_key = "tls/key.pem".into()),
            ("paths.tls_key".into(), ErrorKind::NotAbsolute)
        );
    }

    #[test]
    fn path_with_syntax_characters_is_refused() {
        for (bad, character) in
            [("/srv/my mail", ' '), ("/srv/$x", '$'), ("/srv/%u", '%'), ("/srv/a,b", ','), ("/srv/a;b", ';')]
        {
            let (field, kind) = check_error(|stack| stack.paths.dict_socket = bad.into());
            assert_eq!((field.as_str(), kind), ("paths.dict_socket", ErrorKind::UnsafeCharacter(character)), "{bad}");
        }
    }

    #[test]
    fn sieve_before_is_checked_when_set() {
        assert_eq!(
            check_error(|stack| stack.sieve_before = Some("before.sieve".into())),
            ("sieve_before".into(), ErrorKind::NotAbsolute)
        );
    }

    #[test]
    fn postfix_log_outside_the_log_dir_is_refused() {
        let (field, kind) = check_error(|stack| stack.paths.postfix_log = "/var/log/postfix.log".into());
        assert_eq!((field.as_str(), kind), ("paths.postfix_log", ErrorKind::NotInside("paths.log_dir")));
    }

    #[test]
    fn hostname_must_be_a_host_name() {
        for bad in ["", "mail example.com", "mail..example.com", "-mail.example.com", "mail.example.com\n#"] {
            let (field, _) = check_error(|stack| stack.hostname = bad.into());
            assert_eq!(field, "hostname", "{bad:?}");
        }
    }

    #[test]
    fn ports_must_be_distinct_and_nonzero() {
        assert_eq!(check_error(|stack| stack.ports.imaps = 0), ("ports.imaps".into(), ErrorKind::ZeroPort));
        assert_eq!(
            check_error(|stack| stack.ports.imaps = 2525),
            ("ports.imaps".into(), ErrorKind::DuplicatePort(2525))
        );
    }

    #[test]
    fn auth_endpoint_must_be_an_ip_literal_over_http() {
        for bad in ["https://127.0.0.1:8091", "http://localhost:8091", "http://127.0.0.1", "http://127.0.0.1:8091/a b"]
        {
            let (field, _) = check_error(|stack| stack.auth_endpoint.base_url = bad.into());
            assert_eq!(field, "auth_endpoint.base_url", "{bad}");
        }
        let mut stack = valid();
        stack.auth_endpoint.base_url = "http://[::1]:8091/internal".into();
        check(&stack).unwrap();
    }

    #[test]
    fn vmail_must_not_be_root() {
        assert_eq!(check_error(|stack| stack.vmail.uid = 0), ("vmail.uid".into(), ErrorKind::RootId));
        assert_eq!(check_error(|stack| stack.vmail.gid = 0), ("vmail.gid".into(), ErrorKind::RootId));
    }

    #[test]
    fn postmaster_address_is_checked_when_set() {
        let (field, kind) = check_error(|stack| stack.postmaster_address = Some("postmaster".into()));
        assert_eq!((field.as_str(), kind), ("postmaster_address", ErrorKind::InvalidAddress));
    }

    #[test]
    fn spam_settings_are_checked_when_spam_is_on() {
        let with_spam = |change: fn(&mut Spam)| {
            move |stack: &mut Stack| {
                let mut spam = Spam::new(&stack.paths).with_smtp_reject(&stack.paths, "15".parse().unwrap());
                change(&mut spam);
                stack.spam = Some(spam);
            }
        };
        let mut stack = valid();
        with_spam(|_| {})(&mut stack);
        check(&stack).unwrap();
        assert_eq!(
            check_error(with_spam(|spam| spam.spamd_socket = "spamd.sock".into())),
            ("spam.spamd_socket".into(), ErrorKind::NotAbsolute)
        );
        assert_eq!(
            check_error(with_spam(|spam| spam.smtp_reject.as_mut().unwrap().score = "5".parse().unwrap())),
            ("spam.smtp_reject.score".into(), ErrorKind::NotAbove("spam.required_score"))
        );
        assert_eq!(
            check_error(with_spam(|spam| spam.smtp_reject.as_mut().unwrap().score = "15.5".parse().unwrap())),
            ("spam.smtp_reject.score".into(), ErrorKind::NotWhole)
        );
        assert_eq!(
            check_error(with_spam(|spam| spam.max_scan_bytes = 0)),
            ("spam.max_scan_bytes".into(), ErrorKind::Zero)
        );
        assert_eq!(
            check_error(with_spam(|spam| spam.max_scan_bytes = 512 * 1024 * 1024)),
            ("spam.max_scan_bytes".into(), ErrorKind::TooLarge(256 * 1024 * 1024))
        );
        assert_eq!(
            check_error(with_spam(|spam| spam.scan_timeout_secs = 0)),
            ("spam.scan_timeout_secs".into(), ErrorKind::Zero)
        );
        assert_eq!(
            check_error(with_spam(|spam| spam.socket_group = "a b".into())),
            ("spam.socket_group".into(), ErrorKind::InvalidName)
        );
    }

    #[test]
    fn unspecified_listen_address_is_refused() {
        let (field, _) = check_error(|stack| stack.listen = Listen::Address("0.0.0.0".parse().unwrap()));
        assert_eq!(field, "listen");
    }
}
