//! Passwords: the policy for new ones, argon2id hashes in Dovecot's form,
//! and verification of the legacy schemes an import may bring.
//!
//! Dovecot verifies `{ARGON2ID}$argon2id$v=19$…` (the `argon2` crate's PHC
//! string), `{BLF-CRYPT}$2y$…`, `{SHA512-CRYPT}$6$…` and `{SHA256-CRYPT}$5$…`
//! (DESIGN.md §3).
//! New hashes are always argon2id; the others are accepted so that existing
//! users can be imported with their passwords and keep logging in.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ValidationError;

/// Shortest password accepted for a new hash, in characters.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Longest password accepted, in bytes: long enough for any passphrase,
/// short enough that hashing it is no denial of service.
const MAX_PASSWORD_BYTES: usize = 1024;

/// A plain-text password that meets the policy. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Checks the policy: 10 characters at least, 1024 bytes at most, no
    /// control characters (which some clients cannot type or send).
    pub fn new(plain: String) -> Result<Password, ValidationError> {
        todo!("policy check for {}", plain.len())
    }

    /// The password itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The hash schemes we can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordScheme {
    /// `{ARGON2ID}`: what we write.
    Argon2id,
    /// `{BLF-CRYPT}`: bcrypt.
    BlfCrypt,
    /// `{SHA512-CRYPT}`: glibc crypt `$6$`.
    Sha512Crypt,
    /// `{SHA256-CRYPT}`: glibc crypt `$5$`.
    Sha256Crypt,
}

impl PasswordScheme {
    /// The Dovecot scheme prefix, braces included.
    pub fn prefix(self) -> &'static str {
        match self {
            PasswordScheme::Argon2id => "{ARGON2ID}",
            PasswordScheme::BlfCrypt => "{BLF-CRYPT}",
            PasswordScheme::Sha512Crypt => "{SHA512-CRYPT}",
            PasswordScheme::Sha256Crypt => "{SHA256-CRYPT}",
        }
    }
}

/// A password hash in Dovecot's `{SCHEME}hash` form, as stored and as handed
/// to Dovecot for verification. Its `Debug` shows only the scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Hashes a new password with argon2id (m = 19 MiB, t = 2, p = 1, the
    /// OWASP minimum: about 20 ms a login here, see docs/benchmarks.md).
    pub fn new(password: &Password) -> PasswordHash {
        todo!("{:?}", password)
    }

    /// Accepts a stored or imported hash of a known scheme, in a well-formed
    /// shape (glibc rejects some shapes other libraries write).
    pub fn parse(input: &str) -> Result<PasswordHash, ValidationError> {
        todo!("{input}")
    }

    /// The scheme of this hash.
    pub fn scheme(&self) -> PasswordScheme {
        todo!()
    }

    /// Whether `plain` is the password; false on any malformed hash.
    pub fn verify(&self, plain: &str) -> bool {
        todo!("{}", plain.len())
    }

    /// The `{SCHEME}hash` string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PasswordHash({}…)", self.scheme().prefix())
    }
}

impl Serialize for PasswordHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PasswordHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        PasswordHash::parse(&s).map_err(serde::de::Error::custom)
    }
}
