//! Rules to canonical Sieve (RFC 5228 with fileinto, mailbox, envelope,
//! vacation and copy).
//!
//! The output is the one form [`from_sieve`](crate::from_sieve) reads back
//! exactly: a marker comment first, one `require` naming only the
//! extensions used, then each rule as a `# rule "name"` comment above its
//! `if` block.
//! The test is always `allof (…)` or `anyof (…)` (with `true` when there is
//! no condition), so that the all/any choice survives even for one
//! condition; a disabled rule is wrapped as `allof (false, …)`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use couchmail_model::ValidationError;

use crate::rules::{Action, AddressPart, Condition, EnvelopePart, MatchType, Matching, Rule, RuleSet, SizeComparison};

/// The first line of every script this crate writes; the parser insists on it.
pub const MARKER: &str = "# couchmail-rules v1";

/// Writes `rules` as a Sieve script, after checking them with [`RuleSet::validate`].
pub fn to_sieve(rules: &RuleSet) -> Result<String, ValidationError> {
    rules.validate()?;
    let mut out = String::new();
    out.push_str(MARKER);
    out.push('\n');
    let extensions = required_extensions(rules);
    if !extensions.is_empty() {
        let list: Vec<String> = extensions.iter().map(|name| quoted(name)).collect();
        let _ = writeln!(out, "require [{}];", list.join(", "));
    }
    for rule in &rules.rules {
        out.push('\n');
        write_rule(&mut out, rule);
    }
    Ok(out)
}

/// The `require` capabilities the rules use, in sorted order.
pub(crate) fn required_extensions(rules: &RuleSet) -> BTreeSet<&'static str> {
    let mut extensions = BTreeSet::new();
    for rule in &rules.rules {
        for condition in &rule.conditions {
            if matches!(condition, Condition::Envelope { .. }) {
                extensions.insert("envelope");
            }
        }
        for action in &rule.actions {
            match action {
                Action::Fileinto { create, .. } => {
                    extensions.insert("fileinto");
                    if *create {
                        extensions.insert("mailbox");
                    }
                }
                Action::Redirect { copy: true, .. } => {
                    extensions.insert("copy");
                }
                Action::Vacation { .. } => {
                    extensions.insert("vacation");
                }
                Action::Redirect { copy: false, .. } | Action::Discard | Action::Keep | Action::Stop => {}
            }
        }
    }
    extensions
}

fn write_rule(out: &mut String, rule: &Rule) {
    let _ = writeln!(out, "# rule {}", quoted(&rule.name));
    let combinator = match rule.matching {
        Matching::All => "allof",
        Matching::Any => "anyof",
    };
    let tests: Vec<String> = if rule.conditions.is_empty() {
        vec!["true".to_owned()]
    } else {
        rule.conditions.iter().map(condition_text).collect()
    };
    let group = if tests.len() == 1 {
        format!("{combinator} ({})", tests[0])
    } else {
        format!("{combinator} (\n    {}\n)", tests.join(",\n    "))
    };
    if rule.enabled {
        let _ = writeln!(out, "if {group} {{");
    } else {
        let _ = writeln!(out, "if allof (false, {group}) {{");
    }
    for action in &rule.actions {
        write_action(out, action);
    }
    out.push_str("}\n");
}

fn condition_text(condition: &Condition) -> String {
    let (not, text) = match condition {
        Condition::Header { headers, match_type, value, not } => {
            (*not, format!("header {} {} {}", match_type_tag(*match_type), string_list(headers), quoted(value)))
        }
        Condition::Address { headers, part, match_type, value, not } => (
            *not,
            format!(
                "address {} {} {} {}",
                address_part_tag(*part),
                match_type_tag(*match_type),
                string_list(headers),
                quoted(value)
            ),
        ),
        Condition::Envelope { field, part, match_type, value, not } => {
            let field = match field {
                EnvelopePart::From => "from",
                EnvelopePart::To => "to",
            };
            (
                *not,
                format!(
                    "envelope {} {} {} {}",
                    address_part_tag(*part),
                    match_type_tag(*match_type),
                    quoted(field),
                    quoted(value)
                ),
            )
        }
        Condition::Size { comparison, amount, unit, not } => {
            let tag = match comparison {
                SizeComparison::Over => ":over",
                SizeComparison::Under => ":under",
            };
            (*not, format!("size {tag} {amount}{}", unit.suffix()))
        }
    };
    if not { format!("not {text}") } else { text }
}

fn write_action(out: &mut String, action: &Action) {
    match action {
        Action::Fileinto { folder, create } => {
            let create = if *create { ":create " } else { "" };
            let _ = writeln!(out, "    fileinto {create}{};", quoted(folder));
        }
        Action::Redirect { address, copy } => {
            let copy = if *copy { ":copy " } else { "" };
            let _ = writeln!(out, "    redirect {copy}{};", quoted(address));
        }
        Action::Discard => out.push_str("    discard;\n"),
        Action::Keep => out.push_str("    keep;\n"),
        Action::Stop => out.push_str("    stop;\n"),
        Action::Vacation { days, subject, reason, addresses } => {
            let _ = write!(out, "    vacation :days {days}");
            if let Some(subject) = subject {
                let _ = write!(out, " :subject {}", quoted(subject));
            }
            if !addresses.is_empty() {
                let list: Vec<String> = addresses.iter().map(|address| quoted(address)).collect();
                let _ = write!(out, " :addresses [{}]", list.join(", "));
            }
            if reason.contains('\n') {
                out.push_str(" text:\n");
                out.push_str(&multi_line(reason));
                out.push_str("    ;\n");
            } else {
                let _ = writeln!(out, " {};", quoted(reason));
            }
        }
    }
}

/// A string list: a plain string for one element, brackets for more.
fn string_list(items: &[String]) -> String {
    if let [only] = items {
        return quoted(only);
    }
    let list: Vec<String> = items.iter().map(|item| quoted(item)).collect();
    format!("[{}]", list.join(", "))
}

fn match_type_tag(match_type: MatchType) -> &'static str {
    match match_type {
        MatchType::Is => ":is",
        MatchType::Contains => ":contains",
        MatchType::Matches => ":matches",
    }
}

fn address_part_tag(part: AddressPart) -> &'static str {
    match part {
        AddressPart::All => ":all",
        AddressPart::Localpart => ":localpart",
        AddressPart::Domain => ":domain",
    }
}

/// A quoted string (RFC 5228 §2.4.2): `\` and `"` escaped, nothing else.
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The body of a `text:` literal (RFC 5228 §2.4.2) and its terminating dot:
/// lines starting with `.` get another, and a final line break is always
/// added, which the parser takes off again.
fn multi_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for line in text.split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(".\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_rule(rule: Rule) -> String {
        to_sieve(&RuleSet { rules: vec![rule] }).unwrap()
    }

    #[test]
    fn subject_into_folder_is_written_canonically() {
        let script = one_rule(Rule {
            name: "Lists \"x\"".to_owned(),
            enabled: true,
            matching: Matching::All,
            conditions: vec![Condition::Header {
                headers: vec!["Subject".to_owned()],
                match_type: MatchType::Contains,
                value: "a\\b".to_owned(),
                not: false,
            }],
            actions: vec![Action::Fileinto { folder: "Folder".to_owned(), create: true }, Action::Stop],
        });
        let expected = "# couchmail-rules v1\n\
            require [\"fileinto\", \"mailbox\"];\n\
            \n\
            # rule \"Lists \\\"x\\\"\"\n\
            if allof (header :contains \"Subject\" \"a\\\\b\") {\n    \
            fileinto :create \"Folder\";\n    \
            stop;\n\
            }\n";
        assert_eq!(script, expected);
    }

    #[test]
    fn an_empty_rule_set_is_the_marker_alone() {
        assert_eq!(to_sieve(&RuleSet::default()).unwrap(), "# couchmail-rules v1\n");
    }

    #[test]
    fn disabled_rules_and_several_conditions() {
        let script = one_rule(Rule {
            name: "big".to_owned(),
            enabled: false,
            matching: Matching::Any,
            conditions: vec![
                Condition::Size {
                    comparison: SizeComparison::Over,
                    amount: 10,
                    unit: crate::rules::SizeUnit::M,
                    not: false,
                },
                Condition::Envelope {
                    field: EnvelopePart::From,
                    part: AddressPart::Domain,
                    match_type: MatchType::Is,
                    value: "example.com".to_owned(),
                    not: true,
                },
            ],
            actions: vec![Action::Redirect { address: "bob@example.com".to_owned(), copy: true }],
        });
        assert!(script.contains("require [\"copy\", \"envelope\"];\n"), "{script}");
        assert!(
            script.contains(
                "if allof (false, anyof (\n    size :over 10M,\n    not envelope :domain :is \"from\" \"example.com\"\n)) {\n"
            ),
            "{script}"
        );
        assert!(script.contains("    redirect :copy \"bob@example.com\";\n"), "{script}");
    }

    #[test]
    fn vacation_reason_with_lines_is_a_dot_stuffed_text_literal() {
        let script = one_rule(Rule {
            name: "away".to_owned(),
            enabled: true,
            matching: Matching::All,
            conditions: vec![],
            actions: vec![Action::Vacation {
                days: 7,
                subject: Some("Away".to_owned()),
                reason: "Hi,\n.\n.. back soon".to_owned(),
                addresses: vec!["me@example.com".to_owned()],
            }],
        });
        assert!(script.contains("if allof (true) {\n"), "{script}");
        assert!(
            script.contains(
                "    vacation :days 7 :subject \"Away\" :addresses [\"me@example.com\"] text:\nHi,\n..\n... back soon\n.\n    ;\n"
            ),
            "{script}"
        );
    }

    #[test]
    fn invalid_rules_are_not_written() {
        let err = to_sieve(&RuleSet {
            rules: vec![Rule {
                name: "x".to_owned(),
                enabled: true,
                matching: Matching::All,
                conditions: vec![],
                actions: vec![Action::Fileinto { folder: "a\nb".to_owned(), create: false }],
            }],
        })
        .unwrap_err();
        assert_eq!(err.field, "rules[0].actions[0].folder");
    }
}
