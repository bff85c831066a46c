//! API bearer tokens: making one, reading one off the wire, checking it.
//!
//! A bearer token reads `cmt_<id>_<secret>`:
//! - `cmt_` says what it is, so that secret scanners and people recognise it;
//! - `<id>` is 16 lower-case hex digits (64 random bits), the public part,
//!   which names the stored `token:<id>` document;
//! - `<secret>` is 64 lower-case hex digits (256 random bits). Hex rather
//!   than base64url keeps the token one "word" (no `-` or `_` inside), so a
//!   double click selects it whole and splitting it is unambiguous.
//!
//! Only the SHA-256 of the secret is stored ([`Token::secret_sha256`]); the
//! bearer string is shown once, when the token is made.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Token, TokenPrincipal};

/// What every bearer token starts with.
pub const TOKEN_PREFIX: &str = "cmt_";
/// Length of a token id, in hex digits.
pub const TOKEN_ID_LEN: usize = 16;
/// Length of a token secret, in hex digits.
pub const TOKEN_SECRET_LEN: usize = 64;

impl Token {
    /// Makes a new token for `principal` and returns it with the bearer
    /// string `cmt_<id>_<secret>`, which is to be shown to its creator once
    /// and never stored.
    pub fn generate(principal: TokenPrincipal, label: String, now_unix: u64) -> (Token, String) {
        // The thread RNG is a CSPRNG seeded from the operating system.
        let id = hex::encode(rand::random::<[u8; TOKEN_ID_LEN / 2]>());
        let secret = hex::encode(rand::random::<[u8; TOKEN_SECRET_LEN / 2]>());
        let token = Token { id, secret_sha256: sha256_hex(&secret), principal, label, created: now_unix };
        let bearer = format!("{TOKEN_PREFIX}{}_{secret}", token.id);
        (token, bearer)
    }

    /// Whether `secret` (the part after the id) is this token's secret.
    /// The comparison takes the same time wherever the digests differ.
    pub fn verify_secret(&self, secret: &str) -> bool {
        let Ok(stored) = hex::decode(&self.secret_sha256) else {
            return false;
        };
        let given = Sha256::digest(secret.as_bytes());
        stored.len() == given.len() && bool::from(stored.as_slice().ct_eq(given.as_slice()))
    }
}

/// Splits a bearer token `cmt_<id>_<secret>` into its id and secret, or
/// `None` when it does not have that shape (a 16-hex-digit id and a
/// 64-hex-digit secret, lower case).
pub fn split_bearer(bearer: &str) -> Option<(&str, &str)> {
    let (id, secret) = bearer.strip_prefix(TOKEN_PREFIX)?.split_once('_')?;
    let is_lower_hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if is_lower_hex(id, TOKEN_ID_LEN) && is_lower_hex(secret, TOKEN_SECRET_LEN) { Some((id, secret)) } else { None }
}

fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use super::*;
    use crate::{Address, Document};

    #[test]
    fn generated_token_verifies_its_own_secret_only() {
        let principal = TokenPrincipal::Mailbox(Address::parse("alice@example.com").unwrap());
        let (token, bearer) = Token::generate(principal.clone(), "laptop".to_owned(), 1_700_000_000);
        assert_eq!(token.principal, principal);
        assert_eq!(token.label, "laptop");
        assert_eq!(token.created, 1_700_000_000);

        let (id, secret) = split_bearer(&bearer).unwrap();
        assert_eq!(id, token.id);
        assert_eq!(bearer, format!("cmt_{id}_{secret}"));
        assert!(token.verify_secret(secret));
        let last_flipped = format!("{}{}", &secret[..63], if secret.ends_with('0') { '1' } else { '0' });
        assert!(!token.verify_secret(&last_flipped));
        assert!(!token.verify_secret(""));
        assert!(!token.verify_secret(&bearer));
        // The secret is not stored, only its digest.
        assert_ne!(token.secret_sha256, secret);
        assert_eq!(token.secret_sha256, sha256_hex(secret));
    }

    #[test]
    fn generated_tokens_differ_and_store_as_valid_documents() {
        let (first, first_bearer) = Token::generate(TokenPrincipal::Admin, String::new(), 1);
        let (second, second_bearer) = Token::generate(TokenPrincipal::Admin, String::new(), 1);
        assert_ne!(first.id, second.id);
        assert_ne!(first_bearer, second_bearer);
        assert!(!first.verify_secret(split_bearer(&second_bearer).unwrap().1));

        let doc = Document::Token(first);
        assert_eq!(doc.validate(), Ok(()));
        assert_eq!(Document::from_stored(&doc.id(), &doc.to_body()), Ok(doc));
    }

    #[test]
    fn known_secret_digest() {
        // `printf %s 00…00 | sha256sum` for a secret of 64 zeros.
        let secret = "0".repeat(64);
        let token = Token {
            id: "0123456789abcdef".to_owned(),
            secret_sha256: "60e05bd1b195af2f94112fa7197a5c88289058840ce7c6df9693756bc6250f55".to_owned(),
            principal: TokenPrincipal::Admin,
            label: String::new(),
            created: 0,
        };
        assert!(token.verify_secret(&secret));
        // A digest that is not hex verifies nothing.
        let broken = Token { secret_sha256: "zz".repeat(32), ..token };
        assert!(!broken.verify_secret(&secret));
    }

    #[test]
    fn split_bearer_refuses_other_shapes() {
        let id = "0123456789abcdef";
        let secret = "ab".repeat(32);
        assert_eq!(split_bearer(&format!("cmt_{id}_{secret}")), Some((id, secret.as_str())));
        for bad in [
            String::new(),
            "cmt_".to_owned(),
            format!("{id}_{secret}"),
            format!("CMT_{id}_{secret}"),
            format!("cmt_{id}{secret}"),
            format!("cmt_{}_{secret}", &id[1..]),
            format!("cmt_{id}0_{secret}"),
            format!("cmt_{id}_{}", &secret[1..]),
            format!("cmt_{id}_{secret}0"),
            format!("cmt_{}_{secret}", id.to_uppercase()),
            format!("cmt_{id}_{}", secret.to_uppercase()),
            format!("cmt_{id}_{secret}_"),
            format!("cmt_{id}_{}é", &secret[2..]),
            format!("Bearer cmt_{id}_{secret}"),
        ] {
            assert_eq!(split_bearer(&bad), None, "{bad}");
        }
    }
}
