//! What a rule set must satisfy before it is written as Sieve.
//!
//! Every check here stops something Sieve cannot express in the editor's
//! form, something Pigeonhole would refuse, or something unsafe: a CR or LF
//! in a single-line value would end a comment or a string where the parser
//! does not expect it.
//! Errors name the field as a path into the JSON the form posts
//! (`rules[0].conditions[1].value`), so the UI can show them beside it.

use couchmail_model::{Address, ValidationError};

use crate::rules::{Action, Condition, Rule, RuleSet};

/// Longest rule name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest header name, value, subject or folder name, in characters.
pub const MAX_VALUE_CHARS: usize = 1000;
/// Longest vacation reason, in characters.
pub const MAX_REASON_CHARS: usize = 20_000;
/// Most rules in one rule set.
pub const MAX_RULES: usize = 500;
/// Biggest size amount in any unit; with `G` it still fits Sieve's 64-bit numbers.
pub const MAX_SIZE_AMOUNT: u64 = 1_000_000_000;
/// Most days between two vacation replies to one sender.
pub const MAX_VACATION_DAYS: u32 = 365;

/// The header names Pigeonhole's `address` test accepts (it refuses others
/// at compile time), lower case.
pub const ADDRESS_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "sender",
    "reply-to",
    "resent-from",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "resent-sender",
    "resent-reply-to",
    "errors-to",
    "delivered-to",
    "x-original-to",
    "return-receipt-to",
];

impl RuleSet {
    /// Checks every rule; the first problem found is returned, naming its field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.rules.len() > MAX_RULES {
            return Err(ValidationError::field("rules", format!("more than {MAX_RULES} rules")));
        }
        for (rule_idx, rule) in self.rules.iter().enumerate() {
            rule.validate(&format!("rules[{rule_idx}]"))?;
        }
        Ok(())
    }
}

impl Rule {
    fn validate(&self, path: &str) -> Result<(), ValidationError> {
        let name = self.name.as_str();
        if name.trim().is_empty() {
            return Err(ValidationError::field(format!("{path}.name"), "the rule needs a name"));
        }
        single_line(name, MAX_NAME_CHARS).map_err(|message| ValidationError::field(format!("{path}.name"), message))?;
        for (condition_idx, condition) in self.conditions.iter().enumerate() {
            condition.validate(&format!("{path}.conditions[{condition_idx}]"))?;
        }
        if self.actions.is_empty() {
            return Err(ValidationError::field(format!("{path}.actions"), "the rule needs at least one action"));
        }
        let n_vacations = self.actions.iter().filter(|action| matches!(action, Action::Vacation { .. })).count();
        if n_vacations > 1 {
            return Err(ValidationError::field(
                format!("{path}.actions"),
                "only one vacation reply per rule (Pigeonhole refuses a second at delivery)",
            ));
        }
        let last_idx = self.actions.len() - 1;
        for (action_idx, action) in self.actions.iter().enumerate() {
            let action_path = format!("{path}.actions[{action_idx}]");
            if matches!(action, Action::Stop) && action_idx != last_idx {
                return Err(ValidationError::field(
                    action_path,
                    "stop must be the last action: actions after it would never run",
                ));
            }
            action.validate(&action_path)?;
        }
        Ok(())
    }
}

impl Condition {
    fn validate(&self, path: &str) -> Result<(), ValidationError> {
        match self {
            Condition::Header { headers, value, .. } => {
                header_names(headers, &format!("{path}.headers"), false)?;
                match_value(value, &format!("{path}.value"))
            }
            Condition::Address { headers, value, .. } => {
                header_names(headers, &format!("{path}.headers"), true)?;
                match_value(value, &format!("{path}.value"))
            }
            Condition::Envelope { value, .. } => match_value(value, &format!("{path}.value")),
            Condition::Size { amount, .. } => {
                if *amount > MAX_SIZE_AMOUNT {
                    return Err(ValidationError::field(
                        format!("{path}.amount"),
                        format!("the size must be at most {MAX_SIZE_AMOUNT}"),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Action {
    fn validate(&self, path: &str) -> Result<(), ValidationError> {
        match self {
            Action::Fileinto { folder, .. } => {
                folder_name(folder).map_err(|message| ValidationError::field(format!("{path}.folder"), message))
            }
            Action::Redirect { address, .. } => {
                normal_address(address).map_err(|message| ValidationError::field(format!("{path}.address"), message))
            }
            Action::Discard | Action::Keep | Action::Stop => Ok(()),
            Action::Vacation { days, subject, reason, addresses } => {
                if !(1..=MAX_VACATION_DAYS).contains(days) {
                    return Err(ValidationError::field(
                        format!("{path}.days"),
                        format!("days must be between 1 and {MAX_VACATION_DAYS}"),
                    ));
                }
                if let Some(subject) = subject {
                    if subject.trim().is_empty() {
                        return Err(ValidationError::field(
                            format!("{path}.subject"),
                            "the subject is empty: leave it out to use the default",
                        ));
                    }
                    single_line(subject, MAX_VALUE_CHARS)
                        .map_err(|message| ValidationError::field(format!("{path}.subject"), message))?;
                }
                if reason.trim().is_empty() {
                    return Err(ValidationError::field(format!("{path}.reason"), "the reply needs a text"));
                }
                multi_line(reason, MAX_REASON_CHARS)
                    .map_err(|message| ValidationError::field(format!("{path}.reason"), message))?;
                for (address_idx, address) in addresses.iter().enumerate() {
                    normal_address(address).map_err(|message| {
                        ValidationError::field(format!("{path}.addresses[{address_idx}]"), message)
                    })?;
                }
                Ok(())
            }
        }
    }
}

/// A value compared against the message: one line, not empty.
fn match_value(value: &str, path: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::field(path, "the value is empty"));
    }
    single_line(value, MAX_VALUE_CHARS).map_err(|message| ValidationError::field(path, message))
}

/// Header field names: printable ASCII except `:` (RFC 5322 §3.6.8), and for
/// the address test only the names Pigeonhole allows there.
fn header_names(headers: &[String], path: &str, address_test: bool) -> Result<(), ValidationError> {
    if headers.is_empty() {
        return Err(ValidationError::field(path, "name at least one header"));
    }
    for (header_idx, header) in headers.iter().enumerate() {
        let header_path = format!("{path}[{header_idx}]");
        if header.is_empty() {
            return Err(ValidationError::field(header_path, "the header name is empty"));
        }
        if header.len() > MAX_VALUE_CHARS {
            return Err(ValidationError::field(header_path, "the header name is too long"));
        }
        if let Some(bad) = header.chars().find(|c| !c.is_ascii_graphic() || *c == ':') {
            return Err(ValidationError::field(
                header_path,
                format!("a header name cannot contain {bad:?} (printable ASCII without `:` only)"),
            ));
        }
        if address_test && !ADDRESS_HEADERS.contains(&header.to_ascii_lowercase().as_str()) {
            return Err(ValidationError::field(
                header_path,
                format!("`{header}` does not hold addresses; use one of From, To, Cc, Bcc, Sender, Reply-To, …"),
            ));
        }
    }
    Ok(())
}

/// A folder name Dovecot accepts: not empty, one line, no empty hierarchy level.
fn folder_name(folder: &str) -> Result<(), String> {
    if folder.trim().is_empty() {
        return Err("the folder name is empty".to_owned());
    }
    single_line(folder, MAX_VALUE_CHARS)?;
    if folder.trim() != folder {
        return Err("the folder name starts or ends with a space".to_owned());
    }
    if folder.starts_with('~') {
        return Err("a folder name cannot start with `~`".to_owned());
    }
    if folder.split('/').any(|level| level.trim().is_empty()) {
        return Err("the folder name has an empty level (a leading, trailing or doubled `/`)".to_owned());
    }
    Ok(())
}

/// An address in couchmail's normal form, as the model writes it.
fn normal_address(address: &str) -> Result<(), String> {
    let parsed = Address::parse(address).map_err(|err| err.message)?;
    let normal = parsed.to_string();
    if normal != address {
        return Err(format!("write the address as `{normal}`"));
    }
    Ok(())
}

/// One line of text: no control characters other than tab.
fn single_line(text: &str, max_chars: usize) -> Result<(), String> {
    if let Some(bad) = text.chars().find(|c| c.is_control() && *c != '\t') {
        let what = match bad {
            '\r' | '\n' => "a line break".to_owned(),
            other => format!("the control character {other:?}"),
        };
        return Err(format!("must be one line without control characters, found {what}"));
    }
    if text.chars().count() > max_chars {
        return Err(format!("longer than {max_chars} characters"));
    }
    Ok(())
}

/// Text that may span lines: line feeds and tabs but no other control
/// characters (a CR would make the script's line ends ambiguous).
fn multi_line(text: &str, max_chars: usize) -> Result<(), String> {
    if let Some(bad) = text.chars().find(|c| c.is_control() && *c != '\t' && *c != '\n') {
        let what = match bad {
            '\r' => "a carriage return (use line feeds only)".to_owned(),
            other => format!("the control character {other:?}"),
        };
        return Err(format!("must not contain {what}"));
    }
    if text.chars().count() > max_chars {
        return Err(format!("longer than {max_chars} characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{AddressPart, MatchType, Matching, SizeUnit};

    fn rule(conditions: Vec<Condition>, actions: Vec<Action>) -> RuleSet {
        RuleSet {
            rules: vec![Rule { name: "r".to_owned(), enabled: true, matching: Matching::All, conditions, actions }],
        }
    }

    fn field_of(set: &RuleSet) -> String {
        set.validate().unwrap_err().field
    }

    fn subject_contains(value: &str) -> Condition {
        Condition::Header {
            headers: vec!["Subject".to_owned()],
            match_type: MatchType::Contains,
            value: value.to_owned(),
            not: false,
        }
    }

    #[test]
    fn a_plain_rule_is_valid() {
        let set = rule(vec![subject_contains("x")], vec![Action::Fileinto { folder: "A/B".to_owned(), create: true }]);
        set.validate().unwrap();
    }

    #[test]
    fn line_breaks_in_values_are_refused_naming_the_field() {
        let set = rule(vec![subject_contains("a\r\nb")], vec![Action::Keep]);
        let err = set.validate().unwrap_err();
        assert_eq!(err.field, "rules[0].conditions[0].value");
        assert!(err.message.contains("line break"), "{err}");
        let mut named = rule(vec![], vec![Action::Keep]);
        named.rules[0].name = "a\nb".to_owned();
        assert_eq!(field_of(&named), "rules[0].name");
    }

    #[test]
    fn bad_folders_are_refused() {
        for folder in ["", "  ", "a//b", "/a", "a/", "~x", " a", "a\u{0}b"] {
            let set = rule(vec![], vec![Action::Fileinto { folder: folder.to_owned(), create: false }]);
            assert_eq!(field_of(&set), "rules[0].actions[0].folder", "{folder:?}");
        }
    }

    #[test]
    fn addresses_must_be_valid_and_normal() {
        for address in ["bob", "bob@", "Bob@Example.com", "a b@example.com", "bob@example.com\n"] {
            let set = rule(vec![], vec![Action::Redirect { address: address.to_owned(), copy: false }]);
            assert_eq!(field_of(&set), "rules[0].actions[0].address", "{address:?}");
        }
        let set = rule(vec![], vec![Action::Redirect { address: "bob@example.com".to_owned(), copy: true }]);
        set.validate().unwrap();
    }

    #[test]
    fn address_tests_take_only_address_headers() {
        let condition = |header: &str| Condition::Address {
            headers: vec![header.to_owned()],
            part: AddressPart::Domain,
            match_type: MatchType::Is,
            value: "example.com".to_owned(),
            not: false,
        };
        rule(vec![condition("From")], vec![Action::Keep]).validate().unwrap();
        assert_eq!(
            field_of(&rule(vec![condition("Subject")], vec![Action::Keep])),
            "rules[0].conditions[0].headers[0]"
        );
    }

    #[test]
    fn header_names_are_printable_ascii_without_colon() {
        for header in ["", "X Spam", "Subject:", "Sübject"] {
            let set = rule(
                vec![Condition::Header {
                    headers: vec![header.to_owned()],
                    match_type: MatchType::Is,
                    value: "x".to_owned(),
                    not: false,
                }],
                vec![Action::Keep],
            );
            assert_eq!(field_of(&set), "rules[0].conditions[0].headers[0]", "{header:?}");
        }
    }

    #[test]
    fn stop_must_come_last_and_rules_need_an_action() {
        assert_eq!(field_of(&rule(vec![], vec![Action::Stop, Action::Keep])), "rules[0].actions[0]");
        assert_eq!(field_of(&rule(vec![], vec![])), "rules[0].actions");
    }

    #[test]
    fn vacation_fields_are_checked() {
        let vacation = |days: u32, subject: Option<&str>, reason: &str| Action::Vacation {
            days,
            subject: subject.map(str::to_owned),
            reason: reason.to_owned(),
            addresses: vec![],
        };
        rule(vec![], vec![vacation(7, Some("Away"), "Back on Monday.\nBye")]).validate().unwrap();
        assert_eq!(field_of(&rule(vec![], vec![vacation(0, None, "x")])), "rules[0].actions[0].days");
        assert_eq!(field_of(&rule(vec![], vec![vacation(7, Some(""), "x")])), "rules[0].actions[0].subject");
        assert_eq!(field_of(&rule(vec![], vec![vacation(7, None, "a\r\nb")])), "rules[0].actions[0].reason");
        assert_eq!(field_of(&rule(vec![], vec![vacation(7, None, " ")])), "rules[0].actions[0].reason");
    }

    #[test]
    fn sizes_stay_within_sieve_numbers() {
        let size = |amount: u64, unit: SizeUnit| Condition::Size {
            comparison: crate::rules::SizeComparison::Over,
            amount,
            unit,
            not: false,
        };
        rule(vec![size(MAX_SIZE_AMOUNT, SizeUnit::G)], vec![Action::Keep]).validate().unwrap();
        assert_eq!(
            field_of(&rule(vec![size(MAX_SIZE_AMOUNT + 1, SizeUnit::Bytes)], vec![Action::Keep])),
            "rules[0].conditions[0].amount"
        );
    }
}
