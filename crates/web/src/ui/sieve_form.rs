//! The visual rule editor's form: a draft of the rules as the user typed
//! them, read from and drawn into flat form fields.
//!
//! The draft keeps text as typed (numbers too), so a page drawn again after
//! a mistake or after adding a row shows everything the user entered; only
//! saving turns it into a [`RuleSet`], and the first problem found names the
//! field's element id. Every field's `name` is its `id` (`rule-0-name`,
//! `rule-0-condition-1-value`, `rule-0-action-0-folder`); the `op` button
//! pressed says what to do with the draft (see [`Op`]).

use std::collections::BTreeMap;

use couchmail_model::Address;
use couchmail_sieve_rules::{
    Action, AddressPart, Condition, EnvelopePart, MatchType, Matching, Rule, RuleSet, SizeComparison, SizeUnit,
};
use serde::Serialize;

/// Most rules, conditions per rule and actions per rule the form will hold;
/// beyond this a posted form is refused rather than drawn.
pub(crate) const MAX_ROWS: usize = 200;

/// The rules as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Draft {
    pub(crate) rules: Vec<DraftRule>,
}

/// One rule as typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DraftRule {
    pub(crate) name: String,
    pub(crate) enabled: bool,
    /// `all` or `any`.
    pub(crate) matching: String,
    pub(crate) conditions: Vec<DraftCondition>,
    pub(crate) actions: Vec<DraftAction>,
}

/// One condition as typed: the fields of every kind, so that changing the
/// kind (without JavaScript) loses nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DraftCondition {
    /// `header`, `address`, `envelope` or `size`.
    pub(crate) kind: String,
    /// Header names, separated by commas.
    pub(crate) headers: String,
    pub(crate) part: String,
    pub(crate) match_type: String,
    pub(crate) value: String,
    pub(crate) not: bool,
    /// Envelope `from` or `to`.
    pub(crate) field: String,
    /// Size `over` or `under`.
    pub(crate) comparison: String,
    pub(crate) amount: String,
    pub(crate) unit: String,
}

/// One action as typed, with the fields of every kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DraftAction {
    /// `fileinto`, `redirect`, `discard`, `keep`, `vacation` or `stop`.
    pub(crate) kind: String,
    pub(crate) folder: String,
    pub(crate) create: bool,
    pub(crate) address: String,
    pub(crate) copy: bool,
    pub(crate) days: String,
    pub(crate) subject: String,
    pub(crate) reason: String,
    /// Vacation addresses, separated by commas, spaces or lines.
    pub(crate) addresses: String,
}

impl Default for DraftCondition {
    /// What a new condition starts as: "Subject contains …", the commonest filter.
    fn default() -> DraftCondition {
        DraftCondition {
            kind: "header".to_owned(),
            headers: "Subject".to_owned(),
            part: "all".to_owned(),
            match_type: "contains".to_owned(),
            value: String::new(),
            not: false,
            field: "from".to_owned(),
            comparison: "over".to_owned(),
            amount: String::new(),
            unit: "M".to_owned(),
        }
    }
}

impl Default for DraftAction {
    /// What a new action starts as: file into a folder, creating it.
    fn default() -> DraftAction {
        DraftAction {
            kind: "fileinto".to_owned(),
            folder: String::new(),
            create: true,
            address: String::new(),
            copy: false,
            days: "7".to_owned(),
            subject: String::new(),
            reason: String::new(),
            addresses: String::new(),
        }
    }
}

impl DraftRule {
    /// A new rule: one condition and one action, ready to fill in.
    pub(crate) fn new(number: usize) -> DraftRule {
        DraftRule {
            name: format!("Rule {number}"),
            enabled: true,
            matching: "all".to_owned(),
            conditions: vec![DraftCondition::default()],
            actions: vec![DraftAction::default()],
        }
    }
}

/// What the pressed button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Store the rules.
    Save,
    /// Draw the page again (a changed kind, without JavaScript).
    Refresh,
    AddRule,
    RemoveRule(usize),
    RuleUp(usize),
    RuleDown(usize),
    AddCondition(usize),
    RemoveCondition(usize, usize),
    AddAction(usize),
    RemoveAction(usize, usize),
}

impl Op {
    /// Reads the `op` value of a button: `save`, `refresh`, `add-rule`, `rule-2-remove`, `rule-2-up`,
    /// `rule-2-down`, `rule-2-add-condition`, `rule-2-condition-1-remove`, `rule-2-add-action`,
    /// `rule-2-action-0-remove`; anything else is `None`.
    pub(crate) fn parse(text: &str) -> Option<Op> {
        match text {
            "save" => return Some(Op::Save),
            "refresh" => return Some(Op::Refresh),
            "add-rule" => return Some(Op::AddRule),
            _ => {}
        }
        let rest = text.strip_prefix("rule-")?;
        let (rule_text, rest) = rest.split_once('-')?;
        let rule_idx: usize = rule_text.parse().ok()?;
        match rest {
            "remove" => return Some(Op::RemoveRule(rule_idx)),
            "up" => return Some(Op::RuleUp(rule_idx)),
            "down" => return Some(Op::RuleDown(rule_idx)),
            "add-condition" => return Some(Op::AddCondition(rule_idx)),
            "add-action" => return Some(Op::AddAction(rule_idx)),
            _ => {}
        }
        let (what, rest) = rest.split_once('-')?;
        let index: usize = rest.strip_suffix("-remove")?.parse().ok()?;
        match what {
            "condition" => Some(Op::RemoveCondition(rule_idx, index)),
            "action" => Some(Op::RemoveAction(rule_idx, index)),
            _ => None,
        }
    }
}

impl Draft {
    /// Applies an editing button (every op but [`Op::Save`] and [`Op::Refresh`], which change nothing here).
    pub(crate) fn apply(&mut self, op: Op) {
        let rules = &mut self.rules;
        match op {
            Op::Save | Op::Refresh => {}
            Op::AddRule => {
                if rules.len() < MAX_ROWS {
                    rules.push(DraftRule::new(rules.len() + 1));
                }
            }
            Op::RemoveRule(idx) if idx < rules.len() => {
                rules.remove(idx);
            }
            Op::RuleUp(idx) if idx > 0 && idx < rules.len() => rules.swap(idx - 1, idx),
            Op::RuleDown(idx) if idx + 1 < rules.len() => rules.swap(idx, idx + 1),
            Op::AddCondition(idx) => {
                if let Some(rule) = rules.get_mut(idx).filter(|rule| rule.conditions.len() < MAX_ROWS) {
                    rule.conditions.push(DraftCondition::default());
                }
            }
            Op::RemoveCondition(idx, condition_idx) => {
                if let Some(rule) = rules.get_mut(idx).filter(|rule| condition_idx < rule.conditions.len()) {
                    rule.conditions.remove(condition_idx);
                }
            }
            Op::AddAction(idx) => {
                if let Some(rule) = rules.get_mut(idx).filter(|rule| rule.actions.len() < MAX_ROWS) {
                    rule.actions.push(DraftAction::default());
                }
            }
            Op::RemoveAction(idx, action_idx) => {
                if let Some(rule) = rules.get_mut(idx).filter(|rule| action_idx < rule.actions.len()) {
                    rule.actions.remove(action_idx);
                }
            }
            Op::RemoveRule(_) | Op::RuleUp(_) | Op::RuleDown(_) => {}
        }
    }

    /// The draft of stored rules.
    pub(crate) fn of(rules: &RuleSet) -> Draft {
        Draft { rules: rules.rules.iter().map(draft_rule).collect() }
    }

    /// Reads the draft from posted fields (`rule-{i}-…`); other fields are ignored.
    pub(crate) fn from_fields(fields: &[(String, String)]) -> Result<Draft, String> {
        let mut rules: BTreeMap<usize, RuleFields> = BTreeMap::new();
        for (key, value) in fields {
            let Some(rest) = key.strip_prefix("rule-") else { continue };
            let Some((rule_text, rest)) = rest.split_once('-') else { continue };
            let Ok(rule_idx) = rule_text.parse::<usize>() else { continue };
            if rule_idx >= MAX_ROWS {
                return Err(format!("at most {MAX_ROWS} rules"));
            }
            let rule = rules.entry(rule_idx).or_default();
            if let Some(rest) = rest.strip_prefix("condition-") {
                let Some((idx, field)) = indexed(rest) else { continue };
                rule.conditions.entry(idx).or_default().push((field.to_owned(), value.clone()));
            } else if let Some(rest) = rest.strip_prefix("action-") {
                let Some((idx, field)) = indexed(rest) else { continue };
                rule.actions.entry(idx).or_default().push((field.to_owned(), value.clone()));
            } else {
                rule.fields.push((rest.to_owned(), value.clone()));
            }
        }
        Ok(Draft { rules: rules.into_values().map(RuleFields::into_draft).collect() })
    }

    /// The rules the draft describes, or the element id of the first field at fault and why.
    pub(crate) fn to_rules(&self) -> Result<RuleSet, (String, String)> {
        let mut rules = Vec::with_capacity(self.rules.len());
        for (rule_idx, draft) in self.rules.iter().enumerate() {
            let prefix = format!("rule-{rule_idx}");
            let matching = match draft.matching.as_str() {
                "any" => Matching::Any,
                _ => Matching::All,
            };
            let mut conditions = Vec::with_capacity(draft.conditions.len());
            for (condition_idx, condition) in draft.conditions.iter().enumerate() {
                conditions.push(condition.to_condition(&format!("{prefix}-condition-{condition_idx}"))?);
            }
            let mut actions = Vec::with_capacity(draft.actions.len());
            for (action_idx, action) in draft.actions.iter().enumerate() {
                actions.push(action.to_action(&format!("{prefix}-action-{action_idx}"))?);
            }
            rules.push(Rule {
                name: draft.name.trim().to_owned(),
                enabled: draft.enabled,
                matching,
                conditions,
                actions,
            });
        }
        Ok(RuleSet { rules })
    }
}

/// `3-value` → (3, "value").
fn indexed(text: &str) -> Option<(usize, &str)> {
    let (idx, field) = text.split_once('-')?;
    let idx: usize = idx.parse().ok()?;
    (idx < MAX_ROWS).then_some((idx, field))
}

/// The posted fields of one rule, grouped.
#[derive(Default)]
struct RuleFields {
    fields: Vec<(String, String)>,
    conditions: BTreeMap<usize, Vec<(String, String)>>,
    actions: BTreeMap<usize, Vec<(String, String)>>,
}

impl RuleFields {
    fn into_draft(self) -> DraftRule {
        let get = |name: &str| self.fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
        DraftRule {
            name: get("name").unwrap_or_default(),
            // A checkbox is sent only when ticked.
            enabled: get("enabled").is_some(),
            matching: get("match").unwrap_or_else(|| "all".to_owned()),
            conditions: self.conditions.into_values().map(|fields| condition_fields(&fields)).collect(),
            actions: self.actions.into_values().map(|fields| action_fields(&fields)).collect(),
        }
    }
}

fn condition_fields(fields: &[(String, String)]) -> DraftCondition {
    let get = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    let blank = DraftCondition::default();
    DraftCondition {
        kind: get("kind").unwrap_or(blank.kind),
        headers: get("headers").unwrap_or_default(),
        part: get("part").unwrap_or(blank.part),
        match_type: get("match_type").unwrap_or(blank.match_type),
        value: get("value").unwrap_or_default(),
        not: get("not").is_some(),
        field: get("field").unwrap_or(blank.field),
        comparison: get("comparison").unwrap_or(blank.comparison),
        amount: get("amount").unwrap_or_default(),
        unit: get("unit").unwrap_or(blank.unit),
    }
}

fn action_fields(fields: &[(String, String)]) -> DraftAction {
    let get = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone());
    DraftAction {
        kind: get("kind").unwrap_or_else(|| "keep".to_owned()),
        folder: get("folder").unwrap_or_default(),
        create: get("create").is_some(),
        address: get("address").unwrap_or_default(),
        copy: get("copy").is_some(),
        days: get("days").unwrap_or_default(),
        subject: get("subject").unwrap_or_default(),
        // Browsers send a text area's line ends as CRLF; Sieve text keeps LF.
        reason: get("reason").unwrap_or_default().replace("\r\n", "\n"),
        addresses: get("addresses").unwrap_or_default(),
    }
}

impl DraftCondition {
    fn to_condition(&self, id: &str) -> Result<Condition, (String, String)> {
        let fault = |field: &str, message: String| (format!("{id}-{field}"), message);
        let match_type = match self.match_type.as_str() {
            "is" => MatchType::Is,
            "contains" => MatchType::Contains,
            "matches" => MatchType::Matches,
            other => return Err(fault("match_type", format!("`{other}` is not is, contains or matches"))),
        };
        let part = match self.part.as_str() {
            "all" => AddressPart::All,
            "localpart" => AddressPart::Localpart,
            "domain" => AddressPart::Domain,
            other => return Err(fault("part", format!("`{other}` is not all, localpart or domain"))),
        };
        let headers: Vec<String> =
            self.headers.split(',').map(str::trim).filter(|header| !header.is_empty()).map(str::to_owned).collect();
        let value = self.value.clone();
        let not = self.not;
        match self.kind.as_str() {
            "header" => Ok(Condition::Header { headers, match_type, value, not }),
            "address" => Ok(Condition::Address { headers, part, match_type, value, not }),
            "envelope" => {
                let field = match self.field.as_str() {
                    "from" => EnvelopePart::From,
                    "to" => EnvelopePart::To,
                    other => return Err(fault("field", format!("`{other}` is not from or to"))),
                };
                Ok(Condition::Envelope { field, part, match_type, value, not })
            }
            "size" => {
                let comparison = match self.comparison.as_str() {
                    "over" => SizeComparison::Over,
                    "under" => SizeComparison::Under,
                    other => return Err(fault("comparison", format!("`{other}` is not over or under"))),
                };
                let amount_text = self.amount.trim();
                let amount: u64 = amount_text
                    .parse()
                    .map_err(|_| fault("amount", format!("`{amount_text}` is not a whole number")))?;
                let unit = match self.unit.as_str() {
                    "B" => SizeUnit::Bytes,
                    "K" => SizeUnit::K,
                    "M" => SizeUnit::M,
                    "G" => SizeUnit::G,
                    other => return Err(fault("unit", format!("`{other}` is not B, K, M or G"))),
                };
                Ok(Condition::Size { comparison, amount, unit, not })
            }
            other => Err(fault("kind", format!("`{other}` is not a kind of condition"))),
        }
    }
}

impl DraftAction {
    fn to_action(&self, id: &str) -> Result<Action, (String, String)> {
        let fault = |field: &str, message: String| (format!("{id}-{field}"), message);
        match self.kind.as_str() {
            "fileinto" => Ok(Action::Fileinto { folder: self.folder.trim().to_owned(), create: self.create }),
            "redirect" => {
                let address = normal_address(self.address.trim()).map_err(|message| fault("address", message))?;
                Ok(Action::Redirect { address, copy: self.copy })
            }
            "discard" => Ok(Action::Discard),
            "keep" => Ok(Action::Keep),
            "stop" => Ok(Action::Stop),
            "vacation" => {
                let days_text = self.days.trim();
                let days: u32 =
                    days_text.parse().map_err(|_| fault("days", format!("`{days_text}` is not a whole number")))?;
                let subject = Some(self.subject.trim().to_owned()).filter(|subject| !subject.is_empty());
                let mut addresses = Vec::new();
                for item in self.addresses.split([',', ' ', ';', '\n', '\r', '\t']).filter(|item| !item.is_empty()) {
                    addresses.push(normal_address(item).map_err(|message| fault("addresses", message))?);
                }
                Ok(Action::Vacation { days, subject, reason: self.reason.clone(), addresses })
            }
            other => Err(fault("kind", format!("`{other}` is not a kind of action"))),
        }
    }
}

/// An address typed in any case, in couchmail's normal form.
fn normal_address(text: &str) -> Result<String, String> {
    Address::parse(text).map(|address| address.to_string()).map_err(|err| err.message)
}

fn draft_rule(rule: &Rule) -> DraftRule {
    DraftRule {
        name: rule.name.clone(),
        enabled: rule.enabled,
        matching: match rule.matching {
            Matching::All => "all",
            Matching::Any => "any",
        }
        .to_owned(),
        conditions: rule.conditions.iter().map(draft_condition).collect(),
        actions: rule.actions.iter().map(draft_action).collect(),
    }
}

fn match_type_text(match_type: MatchType) -> String {
    match match_type {
        MatchType::Is => "is",
        MatchType::Contains => "contains",
        MatchType::Matches => "matches",
    }
    .to_owned()
}

fn part_text(part: AddressPart) -> String {
    match part {
        AddressPart::All => "all",
        AddressPart::Localpart => "localpart",
        AddressPart::Domain => "domain",
    }
    .to_owned()
}

fn draft_condition(condition: &Condition) -> DraftCondition {
    let blank = DraftCondition::default();
    match condition {
        Condition::Header { headers, match_type, value, not } => DraftCondition {
            kind: "header".to_owned(),
            headers: headers.join(", "),
            match_type: match_type_text(*match_type),
            value: value.clone(),
            not: *not,
            ..blank
        },
        Condition::Address { headers, part, match_type, value, not } => DraftCondition {
            kind: "address".to_owned(),
            headers: headers.join(", "),
            part: part_text(*part),
            match_type: match_type_text(*match_type),
            value: value.clone(),
            not: *not,
            ..blank
        },
        Condition::Envelope { field, part, match_type, value, not } => DraftCondition {
            kind: "envelope".to_owned(),
            headers: String::new(),
            field: match field {
                EnvelopePart::From => "from",
                EnvelopePart::To => "to",
            }
            .to_owned(),
            part: part_text(*part),
            match_type: match_type_text(*match_type),
            value: value.clone(),
            not: *not,
            ..blank
        },
        Condition::Size { comparison, amount, unit, not } => DraftCondition {
            kind: "size".to_owned(),
            headers: String::new(),
            comparison: match comparison {
                SizeComparison::Over => "over",
                SizeComparison::Under => "under",
            }
            .to_owned(),
            amount: amount.to_string(),
            unit: match unit {
                SizeUnit::Bytes => "B",
                SizeUnit::K => "K",
                SizeUnit::M => "M",
                SizeUnit::G => "G",
            }
            .to_owned(),
            not: *not,
            ..blank
        },
    }
}

fn draft_action(action: &Action) -> DraftAction {
    let blank = DraftAction { create: false, ..DraftAction::default() };
    match action {
        Action::Fileinto { folder, create } => {
            DraftAction { kind: "fileinto".to_owned(), folder: folder.clone(), create: *create, ..blank }
        }
        Action::Redirect { address, copy } => {
            DraftAction { kind: "redirect".to_owned(), address: address.clone(), copy: *copy, ..blank }
        }
        Action::Discard => DraftAction { kind: "discard".to_owned(), ..blank },
        Action::Keep => DraftAction { kind: "keep".to_owned(), ..blank },
        Action::Stop => DraftAction { kind: "stop".to_owned(), ..blank },
        Action::Vacation { days, subject, reason, addresses } => DraftAction {
            kind: "vacation".to_owned(),
            days: days.to_string(),
            subject: subject.clone().unwrap_or_default(),
            reason: reason.clone(),
            addresses: addresses.join(", "),
            ..blank
        },
    }
}

/// The element id of a field the rules' validation names (`rules[0].conditions[1].value` →
/// `rule-0-condition-1-value`; list positions inside a field, `headers[2]`, point at the field).
pub(crate) fn field_id(path: &str) -> String {
    let mut id = String::with_capacity(path.len());
    for (segment_idx, segment) in path.split('.').enumerate() {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.strip_suffix(']')),
            None => (segment, None),
        };
        // A list's position names one row of it (`rules[0]` is `rule-0`); the list itself keeps its name.
        let name = match (name, index) {
            ("rules", Some(_)) => "rule",
            ("conditions", Some(_)) => "condition",
            ("actions", Some(_)) => "action",
            (other, _) => other,
        };
        if segment_idx > 0 {
            id.push('-');
        }
        id.push_str(name);
        // Positions inside a rule's own lists matter; a position inside a field's list does not.
        if let Some(index) = index.filter(|_| matches!(name, "rule" | "condition" | "action")) {
            id.push('-');
            id.push_str(index);
        }
    }
    id
}

/// A field's element id for people: `rule-0-action-1-folder` → `rule 1, action 2, folder`.
pub(crate) fn field_label(id: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut parts = id.split('-').peekable();
    while let Some(part) = parts.next() {
        let numbered = matches!(part, "rule" | "condition" | "action");
        match parts.peek().and_then(|next| next.parse::<usize>().ok()) {
            Some(idx) if numbered => {
                parts.next();
                words.push(format!("{part} {}", idx + 1));
            }
            _ => words.push(part.replace('_', " ")),
        }
    }
    words.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect()
    }

    #[test]
    fn the_browser_tests_form_becomes_the_rule() {
        let posted = fields(&[
            ("csrf", "x"),
            ("rule-0-name", "To folder"),
            ("rule-0-enabled", "on"),
            ("rule-0-match", "all"),
            ("rule-0-condition-0-kind", "header"),
            ("rule-0-condition-0-headers", "Subject"),
            ("rule-0-condition-0-match_type", "contains"),
            ("rule-0-condition-0-value", "X"),
            ("rule-0-action-0-kind", "fileinto"),
            ("rule-0-action-0-folder", " Folder "),
            ("rule-0-action-0-create", "on"),
            ("op", "save"),
        ]);
        let rules = Draft::from_fields(&posted).unwrap().to_rules().unwrap();
        assert_eq!(rules, RuleSet::documented_example());
    }

    #[test]
    fn stored_rules_draw_and_read_back_identically() {
        let rules = RuleSet {
            rules: vec![Rule {
                name: "all kinds".to_owned(),
                enabled: false,
                matching: Matching::Any,
                conditions: vec![
                    Condition::Address {
                        headers: vec!["From".to_owned(), "Sender".to_owned()],
                        part: AddressPart::Domain,
                        match_type: MatchType::Is,
                        value: "example.com".to_owned(),
                        not: true,
                    },
                    Condition::Envelope {
                        field: EnvelopePart::To,
                        part: AddressPart::Localpart,
                        match_type: MatchType::Matches,
                        value: "a*".to_owned(),
                        not: false,
                    },
                    Condition::Size { comparison: SizeComparison::Under, amount: 3, unit: SizeUnit::Bytes, not: false },
                ],
                actions: vec![
                    Action::Redirect { address: "bob@example.com".to_owned(), copy: true },
                    Action::Vacation {
                        days: 3,
                        subject: Some("Away".to_owned()),
                        reason: "a\nb".to_owned(),
                        addresses: vec!["me@example.com".to_owned(), "me2@example.com".to_owned()],
                    },
                    Action::Discard,
                    Action::Keep,
                    Action::Stop,
                ],
            }],
        };
        let draft = Draft::of(&rules);
        assert_eq!(draft.to_rules().unwrap(), rules);
        // Through the form fields too, as a browser would post them back.
        let mut posted = Vec::new();
        for (rule_idx, rule) in draft.rules.iter().enumerate() {
            let prefix = format!("rule-{rule_idx}");
            posted.push((format!("{prefix}-name"), rule.name.clone()));
            if rule.enabled {
                posted.push((format!("{prefix}-enabled"), "on".to_owned()));
            }
            posted.push((format!("{prefix}-match"), rule.matching.clone()));
            for (idx, condition) in rule.conditions.iter().enumerate() {
                let p = format!("{prefix}-condition-{idx}");
                for (field, value) in [
                    ("kind", &condition.kind),
                    ("headers", &condition.headers),
                    ("part", &condition.part),
                    ("match_type", &condition.match_type),
                    ("value", &condition.value),
                    ("field", &condition.field),
                    ("comparison", &condition.comparison),
                    ("amount", &condition.amount),
                    ("unit", &condition.unit),
                ] {
                    posted.push((format!("{p}-{field}"), value.clone()));
                }
                if condition.not {
                    posted.push((format!("{p}-not"), "on".to_owned()));
                }
            }
            for (idx, action) in rule.actions.iter().enumerate() {
                let p = format!("{prefix}-action-{idx}");
                for (field, value) in [
                    ("kind", &action.kind),
                    ("folder", &action.folder),
                    ("address", &action.address),
                    ("days", &action.days),
                    ("subject", &action.subject),
                    ("reason", &action.reason.replace('\n', "\r\n")),
                    ("addresses", &action.addresses),
                ] {
                    posted.push((format!("{p}-{field}"), value.clone()));
                }
                for (field, on) in [("create", action.create), ("copy", action.copy)] {
                    if on {
                        posted.push((format!("{p}-{field}"), "on".to_owned()));
                    }
                }
            }
        }
        assert_eq!(Draft::from_fields(&posted).unwrap(), draft);
    }

    #[test]
    fn typing_mistakes_name_the_element() {
        let posted = fields(&[
            ("rule-0-name", "r"),
            ("rule-0-condition-0-kind", "size"),
            ("rule-0-condition-0-amount", "ten"),
            ("rule-0-action-0-kind", "keep"),
        ]);
        let err = Draft::from_fields(&posted).unwrap().to_rules().unwrap_err();
        assert_eq!(err.0, "rule-0-condition-0-amount");
        let posted =
            fields(&[("rule-0-name", "r"), ("rule-0-action-0-kind", "redirect"), ("rule-0-action-0-address", "x")]);
        let err = Draft::from_fields(&posted).unwrap().to_rules().unwrap_err();
        assert_eq!(err.0, "rule-0-action-0-address");
        // Addresses are put in normal form rather than refused for their case.
        let posted = fields(&[
            ("rule-0-name", "r"),
            ("rule-0-action-0-kind", "redirect"),
            ("rule-0-action-0-address", "Bob@Example.COM"),
        ]);
        let rules = Draft::from_fields(&posted).unwrap().to_rules().unwrap();
        assert_eq!(rules.rules[0].actions[0], Action::Redirect { address: "bob@example.com".to_owned(), copy: false });
    }

    #[test]
    fn buttons_edit_the_draft() {
        let mut draft = Draft { rules: vec![DraftRule::new(1)] };
        draft.apply(Op::parse("add-rule").unwrap());
        assert_eq!(draft.rules.len(), 2);
        assert_eq!(draft.rules[1].name, "Rule 2");
        draft.apply(Op::parse("rule-1-up").unwrap());
        assert_eq!(draft.rules[0].name, "Rule 2");
        draft.apply(Op::parse("rule-0-add-condition").unwrap());
        assert_eq!(draft.rules[0].conditions.len(), 2);
        draft.apply(Op::parse("rule-0-condition-0-remove").unwrap());
        assert_eq!(draft.rules[0].conditions.len(), 1);
        draft.apply(Op::parse("rule-0-add-action").unwrap());
        draft.apply(Op::parse("rule-0-action-1-remove").unwrap());
        assert_eq!(draft.rules[0].actions.len(), 1);
        draft.apply(Op::parse("rule-0-remove").unwrap());
        assert_eq!(draft.rules.len(), 1);
        // Out-of-range buttons change nothing.
        draft.apply(Op::parse("rule-9-remove").unwrap());
        draft.apply(Op::parse("rule-0-condition-9-remove").unwrap());
        assert_eq!(draft.rules.len(), 1);
        assert_eq!(Op::parse("rule-x-remove"), None);
        assert_eq!(Op::parse("drop"), None);
    }

    #[test]
    fn too_many_rows_are_refused() {
        assert!(Draft::from_fields(&fields(&[("rule-5000-name", "x")])).is_err());
    }

    #[test]
    fn validation_paths_become_element_ids() {
        assert_eq!(field_id("rules[0].conditions[1].value"), "rule-0-condition-1-value");
        assert_eq!(field_id("rules[2].actions[0].addresses[1]"), "rule-2-action-0-addresses");
        assert_eq!(field_id("rules[0].conditions[0].headers[0]"), "rule-0-condition-0-headers");
        assert_eq!(field_id("rules[3].name"), "rule-3-name");
        assert_eq!(field_id("rules[3].actions"), "rule-3-actions");
        assert_eq!(field_label("rule-0-action-1-folder"), "rule 1, action 2, folder");
        assert_eq!(field_label("rule-2-condition-0-match_type"), "rule 3, condition 1, match type");
        assert_eq!(field_label("rule-0-actions"), "rule 1, actions");
    }
}
