//! The TLS policy shared by Postfix and Dovecot: TLS 1.2 and newer, Mozilla's "intermediate" ciphers.

/// Mozilla's "intermediate" cipher list for TLS 1.2, in OpenSSL names
/// (<https://ssl-config.mozilla.org/guidelines/5.7.json>). TLS 1.3 suites
/// are OpenSSL's defaults, which are the ones Mozilla recommends.
pub(crate) const MOZILLA_INTERMEDIATE_CIPHERS: &str = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:\
DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";

/// The lowest protocol, in Dovecot's spelling.
pub(crate) const DOVECOT_MIN_PROTOCOL: &str = "TLSv1.2";

/// The accepted protocols, in Postfix's spelling (3.6 and newer).
pub(crate) const POSTFIX_PROTOCOLS: &str = ">=TLSv1.2";
