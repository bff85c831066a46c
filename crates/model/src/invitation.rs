//! Invitations: a one-time link that lets someone create a mailbox in a
//! domain, until it expires.
//!
//! An invitation is the document `invitation:<id>`; the link carries the id
//! and a 256-bit secret, of which only the SHA-256 is stored
//! ([`Invitation::secret_sha256`]), as for API tokens. Redeeming it marks it
//! used (a write at the revision read, so two redemptions racing cannot both
//! win) before the mailbox is created.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Address, DomainName, ValidationError};

/// Length of an invitation id, in hex digits.
pub const INVITATION_ID_LEN: usize = 16;
/// Length of an invitation secret, in hex digits.
pub const INVITATION_SECRET_LEN: usize = 64;
/// Longest note on an invitation, in characters.
pub const MAX_INVITATION_NOTE_CHARS: usize = 256;

/// A one-time permission to create a mailbox in a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The public part of the link (from the `_id`).
    #[serde(rename = "__key", skip_serializing)]
    pub id: String,
    /// The domain the new mailbox will be in.
    pub domain: DomainName,
    /// Hex SHA-256 of the link's secret.
    pub secret_sha256: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// The link stops working at this time, seconds since the Unix epoch.
    pub expires: u64,
    /// Who made it (a mailbox with authority over the domain), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<Address>,
    /// What it is for, as its creator said (shown to administrators only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The mailbox it created, once used; a used invitation never works again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<Address>,
}

impl Invitation {
    /// Makes an invitation to `domain` valid from `now_unix` until `expires_unix`, and returns it with
    /// the secret to put in the link (shown to its creator once, never stored).
    pub fn generate(
        domain: DomainName,
        now_unix: u64,
        expires_unix: u64,
        created_by: Option<Address>,
        note: String,
    ) -> (Invitation, String) {
        // The thread RNG is a CSPRNG seeded from the operating system.
        let id = hex::encode(rand::random::<[u8; INVITATION_ID_LEN / 2]>());
        let secret = hex::encode(rand::random::<[u8; INVITATION_SECRET_LEN / 2]>());
        let invitation = Invitation {
            id,
            domain,
            secret_sha256: hex::encode(Sha256::digest(secret.as_bytes())),
            created: now_unix,
            expires: expires_unix,
            created_by,
            note,
            used_by: None,
        };
        (invitation, secret)
    }

    /// Whether `secret` is this invitation's, compared in constant time.
    pub fn verify_secret(&self, secret: &str) -> bool {
        let Ok(stored) = hex::decode(&self.secret_sha256) else { return false };
        let given = Sha256::digest(secret.as_bytes());
        stored.len() == given.len() && bool::from(stored.as_slice().ct_eq(given.as_slice()))
    }

    /// Whether it can still be redeemed at `now_unix`: unused and not expired.
    pub fn is_open(&self, now_unix: u64) -> bool {
        self.used_by.is_none() && now_unix < self.expires
    }

    /// Checks the rules of the body.
    pub(crate) fn validate(&self) -> Result<(), ValidationError> {
        if self.id.is_empty() || self.id.len() > 64 || !self.id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ValidationError::field("_id", "an invitation id is 1 to 64 letters and digits"));
        }
        if self.secret_sha256.len() != 64 || !self.secret_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ValidationError::field("secret_sha256", "must be 64 hex digits"));
        }
        if self.expires < self.created {
            return Err(ValidationError::field("expires", "is before `created`"));
        }
        if self.note.chars().count() > MAX_INVITATION_NOTE_CHARS {
            return Err(ValidationError::field(
                "note",
                format!("is longer than {MAX_INVITATION_NOTE_CHARS} characters"),
            ));
        }
        if self.note.chars().any(char::is_control) {
            return Err(ValidationError::field("note", "may not contain control characters"));
        }
        if let Some(used_by) = &self.used_by
            && used_by.domain() != &self.domain
        {
            return Err(ValidationError::field(
                "used_by",
                format!("is not in the invitation's domain `{}`", self.domain),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_and_invitations_close() {
        let domain: DomainName = "example.com".parse().unwrap();
        let (invitation, secret) = Invitation::generate(domain, 100, 200, None, String::new());
        assert_eq!(invitation.id.len(), INVITATION_ID_LEN);
        assert_eq!(secret.len(), INVITATION_SECRET_LEN);
        assert!(invitation.verify_secret(&secret));
        assert!(!invitation.verify_secret(&"0".repeat(64)));
        assert!(!invitation.verify_secret(""));
        assert!(invitation.is_open(150));
        assert!(!invitation.is_open(200), "expired at `expires`");
        let used = Invitation { used_by: Some("bob@example.com".parse().unwrap()), ..invitation.clone() };
        assert!(!used.is_open(150));
        assert!(invitation.validate().is_ok());
        let elsewhere = Invitation { used_by: Some("bob@example.org".parse().unwrap()), ..invitation.clone() };
        assert_eq!(elsewhere.validate().unwrap_err().field, "used_by");
        let backwards = Invitation { expires: 50, ..invitation };
        assert_eq!(backwards.validate().unwrap_err().field, "expires");
    }
}
