//! The rules a user builds in the visual editor, as plain data.
//!
//! These types are what the web form posts as JSON and what
//! [`to_sieve`](crate::to_sieve) and [`from_sieve`](crate::from_sieve)
//! translate; they hold exactly what the editor can show, so that a script
//! parsed into them and written out again is the same script.

use serde::{Deserialize, Serialize};

/// A user's filter: rules run in order, as the Sieve script runs its `if` blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    /// The rules, first to last.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The rule set docs/sieve-editor.md shows as JSON and as Sieve: one rule, "To folder", that files mail
    /// whose `Subject` contains `X` into `Folder` (created when missing).
    ///
    /// The browser tests build it in the editor, and the tests of this crate and of the web UI compare what
    /// they read or post against it, so that all of them mean the one documented rule.
    pub fn documented_example() -> RuleSet {
        RuleSet {
            rules: vec![Rule {
                name: "To folder".to_owned(),
                enabled: true,
                matching: Matching::All,
                conditions: vec![Condition::Header {
                    headers: vec!["Subject".to_owned()],
                    match_type: MatchType::Contains,
                    value: "X".to_owned(),
                    not: false,
                }],
                actions: vec![Action::Fileinto { folder: "Folder".to_owned(), create: true }],
            }],
        }
    }
}

/// One `if` block: when the conditions hold, the actions run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What the user calls the rule; kept in a comment above the block.
    pub name: String,
    /// A disabled rule stays in the script but its test is `allof (false, …)`, so it never fires.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Whether every condition must hold (`allof`) or one is enough (`anyof`).
    #[serde(rename = "match", default)]
    pub matching: Matching,
    /// The tests; none means the rule always fires.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// What happens to the message, in order.
    pub actions: Vec<Action>,
}

fn enabled_by_default() -> bool {
    true
}

/// How a rule combines its conditions (RFC 5228 §5.2, §5.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matching {
    /// Every condition must hold: `allof`.
    #[default]
    All,
    /// One condition is enough: `anyof`.
    Any,
}

/// How a value is compared (RFC 5228 §2.7.1), always case-insensitively
/// (the default comparator, `i;ascii-casemap`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchType {
    /// `:is`, the whole value.
    Is,
    /// `:contains`, a substring.
    #[default]
    Contains,
    /// `:matches`, a pattern with `*` and `?`.
    Matches,
}

/// Which part of an address a test looks at (RFC 5228 §2.7.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressPart {
    /// `:all`, the whole address.
    #[default]
    All,
    /// `:localpart`, left of the `@`.
    Localpart,
    /// `:domain`, right of the `@`.
    Domain,
}

/// Which address of the SMTP envelope a test looks at (RFC 5228 §5.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvelopePart {
    /// `"from"`, the MAIL FROM address.
    #[default]
    From,
    /// `"to"`, the RCPT TO address this delivery is for.
    To,
}

/// Whether a size test asks for bigger or smaller messages (RFC 5228 §5.9).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeComparison {
    /// `:over`, strictly bigger.
    #[default]
    Over,
    /// `:under`, strictly smaller.
    Under,
}

/// The unit of a size (RFC 5228 §2.4.1 quantifiers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SizeUnit {
    /// Plain octets.
    #[serde(rename = "B")]
    Bytes,
    /// Kibibytes, `K`.
    #[default]
    K,
    /// Mebibytes, `M`.
    M,
    /// Gibibytes, `G`.
    G,
}

impl SizeUnit {
    /// The quantifier letter written after the number; empty for octets.
    pub fn suffix(self) -> &'static str {
        match self {
            SizeUnit::Bytes => "",
            SizeUnit::K => "K",
            SizeUnit::M => "M",
            SizeUnit::G => "G",
        }
    }
}

/// One test of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// `header`: the value of one of the named header fields.
    Header {
        /// Header field names, such as `Subject`; the test holds when any of them matches.
        headers: Vec<String>,
        /// How `value` is compared.
        #[serde(default)]
        match_type: MatchType,
        /// What is looked for.
        value: String,
        /// Inverts the test (`not`).
        #[serde(default)]
        not: bool,
    },
    /// `address`: an address in one of the named address header fields.
    Address {
        /// Address header names, such as `From` or `To` (only those Pigeonhole accepts).
        headers: Vec<String>,
        /// Which part of the address is compared.
        #[serde(default)]
        part: AddressPart,
        /// How `value` is compared.
        #[serde(default)]
        match_type: MatchType,
        /// What is looked for.
        value: String,
        /// Inverts the test (`not`).
        #[serde(default)]
        not: bool,
    },
    /// `envelope`: the SMTP envelope's sender or recipient.
    Envelope {
        /// Sender or recipient.
        field: EnvelopePart,
        /// Which part of the address is compared.
        #[serde(default)]
        part: AddressPart,
        /// How `value` is compared.
        #[serde(default)]
        match_type: MatchType,
        /// What is looked for.
        value: String,
        /// Inverts the test (`not`).
        #[serde(default)]
        not: bool,
    },
    /// `size`: the message's size against a limit.
    Size {
        /// Over or under the limit.
        comparison: SizeComparison,
        /// The limit, in `unit`s.
        amount: u64,
        /// The unit of `amount`.
        #[serde(default)]
        unit: SizeUnit,
        /// Inverts the test (`not`).
        #[serde(default)]
        not: bool,
    },
}

/// One thing a rule does with the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// `fileinto`: deliver into a folder (RFC 5228 §4.1).
    Fileinto {
        /// The folder's name, such as `Lists/rust`.
        folder: String,
        /// `:create` (RFC 5490 §3.2): make the folder when it does not exist.
        #[serde(default)]
        create: bool,
    },
    /// `redirect`: send the message on to another address (RFC 5228 §4.2).
    Redirect {
        /// Where to; in normal form (lower case, A-label domain).
        address: String,
        /// `:copy` (RFC 3894): keep a copy here as well.
        #[serde(default)]
        copy: bool,
    },
    /// `discard`: drop the message silently (RFC 5228 §4.4).
    Discard,
    /// `keep`: deliver into the inbox (RFC 5228 §4.3).
    Keep,
    /// `vacation`: answer the sender, at most once per `days` (RFC 5230).
    Vacation {
        /// Days before the same sender is answered again.
        days: u32,
        /// The reply's subject; Pigeonhole's default when absent.
        #[serde(default)]
        subject: Option<String>,
        /// The reply's body text.
        reason: String,
        /// The user's other addresses, so that mail to them is answered too.
        #[serde(default)]
        addresses: Vec<String>,
    },
    /// `stop`: run no further rules (RFC 5228 §3.3).
    Stop,
}
