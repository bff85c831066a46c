//! Mail-policy settings that a domain or a mailbox may set for itself (issue #5): greylisting opt-out,
//! spam thresholds and outbound rate limits.
//!
//! Every setting is optional and absent means "inherit": a mailbox's own value, else its domain's,
//! else the installation's configuration. Documents written before these settings existed carry none
//! of them and keep working unchanged.
//!
//! The fields sit flat in the domain and mailbox bodies (`"greylisting": false`, `"spam_threshold": 6.5`);
//! [`PolicySettings`] groups them in Rust so that code building a `Domain` or `Mailbox` names one field.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// Lowest spam score a threshold may be, in tenths (0.0): below it every message, ham included, is spam.
pub const MIN_SPAM_SCORE_TENTHS: i32 = 0;
/// Highest spam score a threshold may be, in tenths (100.0): no real message scores that high, so a
/// higher threshold would be the same as none.
pub const MAX_SPAM_SCORE_TENTHS: i32 = 1000;
/// Highest hourly rate limit accepted: a million messages or recipients an hour is more than any one
/// mailbox should send, so anything larger is a typo.
pub const MAX_HOURLY_LIMIT: u32 = 1_000_000;

/// A SpamAssassin score with at most one decimal, between 0.0 and 100.0, stored as a JSON number.
///
/// Kept in tenths so that it compares exactly (a threshold of 5.0 is 5.0, not 4.99999); SpamAssassin
/// itself writes scores with one decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpamScore {
    tenths: i32,
}

impl SpamScore {
    /// The score `tenths / 10`, if within bounds.
    pub fn from_tenths(tenths: i32) -> Result<SpamScore, ValidationError> {
        if !(MIN_SPAM_SCORE_TENTHS..=MAX_SPAM_SCORE_TENTHS).contains(&tenths) {
            return Err(ValidationError::new(format!(
                "a spam score is between {} and {}",
                SpamScore { tenths: MIN_SPAM_SCORE_TENTHS },
                SpamScore { tenths: MAX_SPAM_SCORE_TENTHS }
            )));
        }
        Ok(SpamScore { tenths })
    }

    /// The score of a JSON number such as `5`, `6.5` or `12.0`: one decimal at most, within bounds.
    pub fn from_f64(value: f64) -> Result<SpamScore, ValidationError> {
        let scaled = value * 10.0;
        let rounded = scaled.round();
        // A decimal written with one digit after the point is within float noise of a whole number of tenths.
        if !value.is_finite() || (scaled - rounded).abs() > 1e-6 {
            return Err(ValidationError::new(format!("{value} is not a score with at most one decimal, such as 6.5")));
        }
        if !(f64::from(MIN_SPAM_SCORE_TENTHS)..=f64::from(MAX_SPAM_SCORE_TENTHS)).contains(&rounded) {
            return SpamScore::from_tenths(i32::MAX);
        }
        // In bounds and whole, so the conversion is exact.
        SpamScore::from_tenths(rounded as i32)
    }

    /// The score in tenths: 65 for 6.5.
    pub fn tenths(self) -> i32 {
        self.tenths
    }

    /// The score as a number.
    pub fn as_f64(self) -> f64 {
        f64::from(self.tenths) / 10.0
    }
}

impl fmt::Display for SpamScore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.tenths / 10, self.tenths % 10)
    }
}

impl Serialize for SpamScore {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A whole score is written as an integer, as JavaScript writes it, so that a document
        // keeps the same JSON through a CouchDB-compatible server or Fauxton.
        if self.tenths % 10 == 0 {
            serializer.serialize_i32(self.tenths / 10)
        } else {
            serializer.serialize_f64(self.as_f64())
        }
    }
}

impl<'de> Deserialize<'de> for SpamScore {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        SpamScore::from_f64(value).map_err(|err| serde::de::Error::custom(err.message))
    }
}

/// The policy settings of a domain or a mailbox; every one optional, absent meaning "inherit".
///
/// A mailbox inherits from its domain, a domain from the installation's configuration
/// (the index resolves the chain: `couchmail_index::Snapshot::mailbox_policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PolicySettings {
    /// `false` opts out of greylisting (mail from unknown senders is accepted at once); `true` opts in
    /// where the domain opted out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greylisting: Option<bool>,
    /// At or above this SpamAssassin score a message is spam and is filed into Junk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam_threshold: Option<SpamScore>,
    /// At or above this score a message should be refused at SMTP time; above `spam_threshold`. Not applied
    /// yet: the SMTP-time refusal scans once per message with a site-wide score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam_reject: Option<SpamScore>,
    /// Most messages an hour the mailbox may send when logged in (for a domain: each of its mailboxes).
    /// `0` stops it sending at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_per_hour: Option<u32>,
    /// Most recipients an hour, summed over the messages sent, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients_per_hour: Option<u32>,
}

impl PolicySettings {
    /// The names of the fields, as they stand in a document body.
    pub const FIELDS: [&'static str; 5] =
        ["greylisting", "spam_threshold", "spam_reject", "messages_per_hour", "recipients_per_hour"];

    /// Whether nothing is set: everything is inherited.
    pub fn is_empty(&self) -> bool {
        *self == PolicySettings::default()
    }

    /// These settings where set, else `fallback`'s: how a mailbox inherits from its domain.
    pub fn or(self, fallback: PolicySettings) -> PolicySettings {
        PolicySettings {
            greylisting: self.greylisting.or(fallback.greylisting),
            spam_threshold: self.spam_threshold.or(fallback.spam_threshold),
            spam_reject: self.spam_reject.or(fallback.spam_reject),
            messages_per_hour: self.messages_per_hour.or(fallback.messages_per_hour),
            recipients_per_hour: self.recipients_per_hour.or(fallback.recipients_per_hour),
        }
    }

    /// Checks the rules among the settings of one document.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (field, limit) in
            [("messages_per_hour", self.messages_per_hour), ("recipients_per_hour", self.recipients_per_hour)]
        {
            if limit.is_some_and(|limit| limit > MAX_HOURLY_LIMIT) {
                return Err(ValidationError::field(field, format!("must be at most {MAX_HOURLY_LIMIT}")));
            }
        }
        if let (Some(threshold), Some(reject)) = (self.spam_threshold, self.spam_reject)
            && reject <= threshold
        {
            return Err(ValidationError::field(
                "spam_reject",
                format!(
                    "must be above spam_threshold ({threshold}), so that mail between the two still reaches the Junk folder"
                ),
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
    fn scores_have_one_decimal_and_bounds() {
        for (value, tenths) in [(0.0, 0), (5.0, 50), (6.5, 65), (0.1, 1), (12.3, 123), (100.0, 1000)] {
            assert_eq!(SpamScore::from_f64(value).unwrap().tenths(), tenths, "{value}");
        }
        for bad in [-0.1, 100.1, 6.55, 0.01, f64::NAN, f64::INFINITY, -5.0, 1e300] {
            assert!(SpamScore::from_f64(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(SpamScore::from_tenths(65).unwrap().to_string(), "6.5");
        assert_eq!(SpamScore::from_tenths(150).unwrap().to_string(), "15.0");
        assert_eq!(SpamScore::from_tenths(65).unwrap().as_f64(), 6.5);
        assert!(SpamScore::from_tenths(-1).is_err());
        assert!(SpamScore::from_tenths(1001).is_err());
    }

    #[test]
    fn scores_are_json_numbers() {
        let score: SpamScore = serde_json::from_str("6.5").unwrap();
        assert_eq!(serde_json::to_string(&score).unwrap(), "6.5");
        let whole: SpamScore = serde_json::from_str("15").unwrap();
        assert_eq!(serde_json::to_string(&whole).unwrap(), "15");
        assert!(serde_json::from_str::<SpamScore>("\"6.5\"").is_err());
    }

    #[test]
    fn settings_inherit_field_by_field() {
        let mailbox =
            PolicySettings { greylisting: Some(true), messages_per_hour: Some(10), ..PolicySettings::default() };
        let domain = PolicySettings {
            greylisting: Some(false),
            spam_threshold: Some(SpamScore::from_tenths(40).unwrap()),
            ..PolicySettings::default()
        };
        let resolved = mailbox.or(domain);
        assert_eq!(resolved.greylisting, Some(true));
        assert_eq!(resolved.messages_per_hour, Some(10));
        assert_eq!(resolved.spam_threshold, domain.spam_threshold);
        assert_eq!(resolved.recipients_per_hour, None);
        assert!(PolicySettings::default().is_empty() && !resolved.is_empty());
    }

    #[test]
    fn settings_rules() {
        let score = |tenths| Some(SpamScore::from_tenths(tenths).unwrap());
        let ok = PolicySettings { spam_threshold: score(50), spam_reject: score(150), ..PolicySettings::default() };
        assert_eq!(ok.validate(), Ok(()));
        let inverted = PolicySettings { spam_reject: score(50), ..ok };
        assert_eq!(inverted.validate().unwrap_err().field, "spam_reject");
        let equal = PolicySettings { spam_reject: score(150), spam_threshold: score(150), ..ok };
        assert_eq!(equal.validate().unwrap_err().field, "spam_reject");
        let too_many = PolicySettings { recipients_per_hour: Some(MAX_HOURLY_LIMIT + 1), ..PolicySettings::default() };
        assert_eq!(too_many.validate().unwrap_err().field, "recipients_per_hour");
        let stopped = PolicySettings { messages_per_hour: Some(0), ..PolicySettings::default() };
        assert_eq!(stopped.validate(), Ok(()));
    }
}
