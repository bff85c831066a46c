//! Sieve back to rules, for the scripts [`to_sieve`](crate::to_sieve) writes.
//!
//! A small tokenizer (RFC 5228 §2: identifiers, tags, numbers with
//! quantifiers, quoted and `text:` strings, comments) and a recursive
//! descent over the subset the editor writes.
//! Whitespace, line ends (LF or CRLF), letter case of identifiers and extra
//! comments may vary; anything else the editor cannot show — another
//! command, test, tag or extension, `elsif`, a script without the marker
//! line — is [`NotRepresentable`], so the UI opens the script in the raw
//! editor and never rewrites it.

use std::collections::BTreeSet;
use std::fmt;

use crate::rules::{
    Action, AddressPart, Condition, EnvelopePart, MatchType, Matching, Rule, RuleSet, SizeComparison, SizeUnit,
};
use crate::write::MARKER;

/// Why a script cannot be shown in the visual editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRepresentable {
    /// What was found, lower case, no trailing period.
    pub reason: String,
    /// The script line it was found on, counting from 1, when there is one.
    pub line: Option<usize>,
}

impl fmt::Display for NotRepresentable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl std::error::Error for NotRepresentable {}

/// Reads a script written by [`to_sieve`](crate::to_sieve) back into the rules it was written from.
pub fn from_sieve(script: &str) -> Result<RuleSet, NotRepresentable> {
    let tokens = lex(script)?;
    let rules = Parser { tokens, pos: 0 }.script()?;
    rules
        .validate()
        .map_err(|err| NotRepresentable { reason: format!("the rules are not valid: {err}"), line: None })?;
    Ok(rules)
}

fn refuse<T>(reason: impl Into<String>, line: usize) -> Result<T, NotRepresentable> {
    Err(NotRepresentable { reason: reason.into(), line: Some(line) })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Identifier(String),
    Tag(String),
    Number(u64, SizeUnit),
    Text { value: String, multi_line: bool },
    HashComment(String),
    LeftBracket,
    RightBracket,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    Comma,
    Semicolon,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    line: usize,
}

/// Splits a script into tokens (RFC 5228 §2.2–§2.4); bracket comments are dropped here, hash comments kept
/// because rule names live in them.
fn lex(script: &str) -> Result<Vec<Token>, NotRepresentable> {
    let bytes = script.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    let mut line = 1;
    while pos < bytes.len() {
        let start_line = line;
        let byte = bytes[pos];
        let single = match byte {
            b'[' => Some(Kind::LeftBracket),
            b']' => Some(Kind::RightBracket),
            b'(' => Some(Kind::LeftParen),
            b')' => Some(Kind::RightParen),
            b'{' => Some(Kind::LeftBrace),
            b'}' => Some(Kind::RightBrace),
            b',' => Some(Kind::Comma),
            b';' => Some(Kind::Semicolon),
            _ => None,
        };
        if let Some(kind) = single {
            tokens.push(Token { kind, line });
            pos += 1;
            continue;
        }
        match byte {
            b'\n' => {
                line += 1;
                pos += 1;
            }
            b' ' | b'\t' | b'\r' => pos += 1,
            b'#' => {
                let end = script[pos..].find('\n').map_or(bytes.len(), |offset| pos + offset);
                let text = script[pos + 1..end].trim_end_matches('\r');
                tokens.push(Token { kind: Kind::HashComment(text.to_owned()), line });
                pos = end;
            }
            b'/' if bytes.get(pos + 1) == Some(&b'*') => {
                let Some(offset) = script[pos + 2..].find("*/") else {
                    return refuse("a /* comment is not closed", line);
                };
                let end = pos + 2 + offset + 2;
                line += script[pos..end].matches('\n').count();
                pos = end;
            }
            b'"' => {
                let (value, end) = quoted_string(script, pos, line)?;
                line += script[pos..end].matches('\n').count();
                tokens.push(Token { kind: Kind::Text { value, multi_line: false }, line: start_line });
                pos = end;
            }
            b':' => {
                let end = identifier_end(bytes, pos + 1);
                if end == pos + 1 {
                    return refuse("a `:` not followed by a tag name", line);
                }
                tokens.push(Token { kind: Kind::Tag(script[pos + 1..end].to_ascii_lowercase()), line });
                pos = end;
            }
            b'0'..=b'9' => {
                let mut end = pos;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                let Ok(amount) = script[pos..end].parse::<u64>() else {
                    return refuse("a number too big for Sieve", line);
                };
                let unit = match bytes.get(end).map(u8::to_ascii_uppercase) {
                    Some(b'K') => SizeUnit::K,
                    Some(b'M') => SizeUnit::M,
                    Some(b'G') => SizeUnit::G,
                    _ => SizeUnit::Bytes,
                };
                if unit != SizeUnit::Bytes {
                    end += 1;
                }
                if bytes.get(end).is_some_and(|next| next.is_ascii_alphanumeric() || *next == b'_') {
                    return refuse("a number followed by letters", line);
                }
                tokens.push(Token { kind: Kind::Number(amount, unit), line });
                pos = end;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let end = identifier_end(bytes, pos);
                let word = script[pos..end].to_ascii_lowercase();
                if word == "text" && bytes.get(end) == Some(&b':') {
                    let (value, after) = multi_line_string(script, end + 1, line)?;
                    line += script[pos..after].matches('\n').count();
                    tokens.push(Token { kind: Kind::Text { value, multi_line: true }, line: start_line });
                    pos = after;
                } else {
                    tokens.push(Token { kind: Kind::Identifier(word), line });
                    pos = end;
                }
            }
            _ => {
                let found = script[pos..].chars().next().unwrap_or('?');
                return refuse(format!("unexpected character {found:?}"), line);
            }
        }
    }
    Ok(tokens)
}

fn identifier_end(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
        end += 1;
    }
    end
}

/// A quoted string starting at the `"` at `start`: `\x` stands for `x` (RFC 5228 §2.4.2).
/// Returns the value and the position after the closing quote.
pub(crate) fn quoted_string(script: &str, start: usize, line: usize) -> Result<(String, usize), NotRepresentable> {
    let bytes = script.as_bytes();
    let mut value = Vec::new();
    let mut pos = start + 1;
    while pos < bytes.len() {
        match bytes[pos] {
            b'"' => {
                let Ok(value) = String::from_utf8(value) else {
                    return refuse("a string that is not UTF-8", line);
                };
                return Ok((value, pos + 1));
            }
            b'\\' if pos + 1 < bytes.len() => {
                value.push(bytes[pos + 1]);
                pos += 2;
            }
            other => {
                value.push(other);
                pos += 1;
            }
        }
    }
    refuse("a string is not closed", line)
}

/// A `text:` literal whose `text:` ends just before `start` (RFC 5228 §2.4.2): white space and an optional
/// hash comment to the line end, then lines up to a lone `.`, dot-stuffing undone and CRLF read as LF.
/// Returns the value and the position after the terminating line.
fn multi_line_string(script: &str, start: usize, line: usize) -> Result<(String, usize), NotRepresentable> {
    let Some(offset) = script[start..].find('\n') else {
        return refuse("a text: string is not closed", line);
    };
    let rest_of_line = script[start..start + offset].trim_end_matches('\r');
    let rest_of_line = rest_of_line.trim_start_matches([' ', '\t']);
    if !(rest_of_line.is_empty() || rest_of_line.starts_with('#')) {
        return refuse("text: must end its line", line);
    }
    let mut pos = start + offset + 1;
    let mut value = String::new();
    while pos < script.len() {
        let end = script[pos..].find('\n').map_or(script.len(), |offset| pos + offset);
        let text = script[pos..end].trim_end_matches('\r');
        let next = (end + 1).min(script.len());
        if text == "." {
            return Ok((value, next));
        }
        if end == script.len() {
            break;
        }
        value.push_str(text.strip_prefix('.').filter(|_| text.starts_with("..")).unwrap_or(text));
        value.push('\n');
        pos = next;
    }
    refuse("a text: string has no terminating `.` line", line)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

/// A test as written, before it is matched against the rule shapes the editor knows.
enum Test {
    AllOf(Vec<Test>),
    AnyOf(Vec<Test>),
    True,
    False,
    Condition(Condition),
}

/// One argument of a command or test (RFC 5228 §2.6).
enum Argument {
    Tag(String, usize),
    Number(u64, SizeUnit, usize),
    Text { value: String, multi_line: bool, line: usize },
    List(Vec<String>, usize),
}

impl Argument {
    fn line(&self) -> usize {
        match self {
            Argument::Tag(_, line) | Argument::Number(_, _, line) | Argument::List(_, line) => *line,
            Argument::Text { line, .. } => *line,
        }
    }

    /// A string list: one string, or strings in brackets.
    fn strings(self) -> Result<Vec<String>, NotRepresentable> {
        match self {
            Argument::Text { value, .. } => Ok(vec![value]),
            Argument::List(values, _) => Ok(values),
            other => refuse("expected a string or a list of strings", other.line()),
        }
    }

    /// A single string, also when written as a one-element list.
    fn single_string(self, what: &str) -> Result<String, NotRepresentable> {
        let line = self.line();
        let mut values = self.strings()?;
        if values.len() != 1 {
            return refuse(format!("the editor holds one {what}, not {}", values.len()), line);
        }
        Ok(values.remove(0))
    }
}

impl Parser {
    fn script(mut self) -> Result<RuleSet, NotRepresentable> {
        match self.tokens.first() {
            Some(Token { kind: Kind::HashComment(text), .. }) if format!("#{text}").trim_end() == MARKER => {
                self.pos = 1;
            }
            _ => {
                return Err(NotRepresentable {
                    reason: format!("not written by the visual editor (the first line is not `{MARKER}`)"),
                    line: Some(1),
                });
            }
        }
        let mut required = BTreeSet::new();
        let mut rules = Vec::new();
        let mut name: Option<String> = None;
        while let Some(token) = self.tokens.get(self.pos).cloned() {
            self.pos += 1;
            match token.kind {
                Kind::HashComment(text) => {
                    if let Some(rule_name) = rule_name(&text, token.line)? {
                        name = Some(rule_name);
                    }
                }
                Kind::Identifier(word) if word == "require" => {
                    if !rules.is_empty() {
                        return refuse("require after the first rule", token.line);
                    }
                    let list = self.argument()?.strings()?;
                    self.expect(&Kind::Semicolon, "`;` after require")?;
                    for extension in list {
                        if !["fileinto", "mailbox", "envelope", "vacation", "copy"].contains(&extension.as_str()) {
                            return refuse(
                                format!("the extension {extension:?} is not one the editor uses"),
                                token.line,
                            );
                        }
                        required.insert(extension);
                    }
                }
                Kind::Identifier(word) if word == "if" => {
                    let Some(rule_name) = name.take() else {
                        return refuse("an if block without a `# rule \"name\"` comment above it", token.line);
                    };
                    let rule = self.rule(rule_name)?;
                    if let Some(Token { kind: Kind::Identifier(word), line }) = self.peek_significant()
                        && (word == "elsif" || word == "else")
                    {
                        return refuse(format!("`{word}` is not something the editor writes"), *line);
                    }
                    rules.push(rule);
                }
                Kind::Identifier(word) => {
                    return refuse(format!("`{word}` outside a rule is not something the editor writes"), token.line);
                }
                _ => return refuse("unexpected symbol outside a rule", token.line),
            }
        }
        let rules = RuleSet { rules };
        check_requires(&rules, &required)?;
        Ok(rules)
    }

    /// The next token that is not a comment, without consuming anything.
    fn peek_significant(&self) -> Option<&Token> {
        self.tokens[self.pos..].iter().find(|token| !matches!(token.kind, Kind::HashComment(_)))
    }

    /// Consumes and returns the next token that is not a comment.
    fn next_significant(&mut self) -> Option<Token> {
        while let Some(token) = self.tokens.get(self.pos).cloned() {
            self.pos += 1;
            if !matches!(token.kind, Kind::HashComment(_)) {
                return Some(token);
            }
        }
        None
    }

    fn last_line(&self) -> usize {
        self.tokens.last().map_or(1, |token| token.line)
    }

    fn expect(&mut self, kind: &Kind, what: &str) -> Result<usize, NotRepresentable> {
        match self.next_significant() {
            Some(token) if token.kind == *kind => Ok(token.line),
            Some(token) => refuse(format!("expected {what}"), token.line),
            None => refuse(format!("the script ends where {what} was expected"), self.last_line()),
        }
    }

    /// A rule's test and block, after its `if`.
    fn rule(&mut self, name: String) -> Result<Rule, NotRepresentable> {
        let line = self.peek_significant().map_or(self.last_line(), |token| token.line);
        let test = self.test(0)?;
        let (enabled, group) = match test {
            Test::AllOf(mut tests) if tests.len() == 2 && matches!(tests.first(), Some(Test::False)) => {
                let group = tests.remove(1);
                (false, group)
            }
            other => (true, other),
        };
        let (matching, tests) = match group {
            Test::AllOf(tests) => (Matching::All, tests),
            Test::AnyOf(tests) => (Matching::Any, tests),
            Test::True => (Matching::All, vec![]),
            Test::Condition(condition) => (Matching::All, vec![Test::Condition(condition)]),
            Test::False => return refuse("a rule that can never fire without saying it is disabled", line),
        };
        let tests = match tests.as_slice() {
            [Test::True] => vec![],
            _ => tests,
        };
        let mut conditions = Vec::with_capacity(tests.len());
        for test in tests {
            match test {
                Test::Condition(condition) => conditions.push(condition),
                _ => return refuse("nested allof/anyof, true or false inside a rule's test", line),
            }
        }
        self.expect(&Kind::LeftBrace, "`{` after the rule's test")?;
        let mut actions = Vec::new();
        loop {
            match self.next_significant() {
                Some(Token { kind: Kind::RightBrace, .. }) => break,
                Some(Token { kind: Kind::Identifier(word), line }) => actions.push(self.action(&word, line)?),
                Some(token) => return refuse("expected an action", token.line),
                None => return refuse("a rule's block is not closed", self.last_line()),
            }
        }
        Ok(Rule { name, enabled, matching, conditions, actions })
    }

    /// A test at nesting `depth`; the editor's deepest is `allof (false, anyof (…))`, so anything much deeper is
    /// refused before it can exhaust the stack.
    fn test(&mut self, depth: usize) -> Result<Test, NotRepresentable> {
        let Some(token) = self.next_significant() else {
            return refuse("the script ends where a test was expected", self.last_line());
        };
        let Kind::Identifier(word) = token.kind else {
            return refuse("expected a test", token.line);
        };
        match word.as_str() {
            "allof" | "anyof" if depth >= MAX_TEST_DEPTH => {
                refuse("tests nested deeper than the editor writes them", token.line)
            }
            "allof" => Ok(Test::AllOf(self.test_list(depth + 1)?)),
            "anyof" => Ok(Test::AnyOf(self.test_list(depth + 1)?)),
            "true" => Ok(Test::True),
            "false" => Ok(Test::False),
            "not" => {
                let Some(Token { kind: Kind::Identifier(inner), line }) = self.next_significant() else {
                    return refuse("expected a test after `not`", token.line);
                };
                Ok(Test::Condition(self.condition(&inner, line, true)?))
            }
            _ => Ok(Test::Condition(self.condition(&word, token.line, false)?)),
        }
    }

    fn test_list(&mut self, depth: usize) -> Result<Vec<Test>, NotRepresentable> {
        self.expect(&Kind::LeftParen, "`(`")?;
        let mut tests = vec![self.test(depth)?];
        loop {
            match self.next_significant() {
                Some(Token { kind: Kind::Comma, .. }) => tests.push(self.test(depth)?),
                Some(Token { kind: Kind::RightParen, .. }) => return Ok(tests),
                Some(token) => return refuse("expected `,` or `)` in a test list", token.line),
                None => return refuse("a test list is not closed", self.last_line()),
            }
        }
    }

    /// The arguments of a command or test: tags, numbers and string lists, up to whatever follows them.
    fn arguments(&mut self) -> Result<Vec<Argument>, NotRepresentable> {
        let mut arguments = Vec::new();
        while let Some(token) = self.peek_significant() {
            if !matches!(token.kind, Kind::Tag(_) | Kind::Number(..) | Kind::Text { .. } | Kind::LeftBracket) {
                break;
            }
            arguments.push(self.argument()?);
        }
        Ok(arguments)
    }

    fn argument(&mut self) -> Result<Argument, NotRepresentable> {
        let Some(token) = self.next_significant() else {
            return refuse("the script ends where an argument was expected", self.last_line());
        };
        match token.kind {
            Kind::Tag(name) => Ok(Argument::Tag(name, token.line)),
            Kind::Number(amount, unit) => Ok(Argument::Number(amount, unit, token.line)),
            Kind::Text { value, multi_line } => Ok(Argument::Text { value, multi_line, line: token.line }),
            Kind::LeftBracket => {
                let mut values = Vec::new();
                loop {
                    match self.next_significant() {
                        Some(Token { kind: Kind::Text { value, .. }, .. }) => values.push(value),
                        Some(token) => return refuse("expected a string in a list", token.line),
                        None => return refuse("a string list is not closed", self.last_line()),
                    }
                    match self.next_significant() {
                        Some(Token { kind: Kind::Comma, .. }) => {}
                        Some(Token { kind: Kind::RightBracket, .. }) => break,
                        Some(token) => return refuse("expected `,` or `]` in a string list", token.line),
                        None => return refuse("a string list is not closed", self.last_line()),
                    }
                }
                Ok(Argument::List(values, token.line))
            }
            _ => refuse("expected an argument", token.line),
        }
    }

    fn condition(&mut self, word: &str, line: usize, not: bool) -> Result<Condition, NotRepresentable> {
        let arguments = self.arguments()?;
        let mut tags = Tags::default();
        let mut positional = Vec::new();
        let mut arguments = arguments.into_iter();
        while let Some(argument) = arguments.next() {
            match argument {
                Argument::Tag(tag, tag_line) => {
                    if !positional.is_empty() {
                        return refuse("a tag after the test's positional arguments", tag_line);
                    }
                    tags.take(&tag, tag_line, word, &mut arguments)?;
                }
                other => positional.push(other),
            }
        }
        match word {
            "header" | "address" | "envelope" => {
                let [names, key]: [Argument; 2] = positional.try_into().map_err(|_| NotRepresentable {
                    reason: format!("{word} takes a header list and one value"),
                    line: Some(line),
                })?;
                let names = names.strings()?;
                let value = key.single_string("value")?;
                let match_type = tags.match_type.unwrap_or(MatchType::Is);
                match word {
                    "header" => {
                        if tags.address_part.is_some() {
                            return refuse("header takes no address part", line);
                        }
                        Ok(Condition::Header { headers: names, match_type, value, not })
                    }
                    "address" => Ok(Condition::Address {
                        headers: names,
                        part: tags.address_part.unwrap_or_default(),
                        match_type,
                        value,
                        not,
                    }),
                    _ => {
                        let field = match names.as_slice() {
                            [one] if one.eq_ignore_ascii_case("from") => EnvelopePart::From,
                            [one] if one.eq_ignore_ascii_case("to") => EnvelopePart::To,
                            _ => return refuse("envelope tests \"from\" or \"to\" only", line),
                        };
                        Ok(Condition::Envelope {
                            field,
                            part: tags.address_part.unwrap_or_default(),
                            match_type,
                            value,
                            not,
                        })
                    }
                }
            }
            "size" => {
                let comparison = tags.size.ok_or_else(|| NotRepresentable {
                    reason: "size needs :over or :under".to_owned(),
                    line: Some(line),
                })?;
                if tags.match_type.is_some() || tags.address_part.is_some() {
                    return refuse("size takes only :over or :under", line);
                }
                match positional.as_slice() {
                    [Argument::Number(amount, unit, _)] => {
                        Ok(Condition::Size { comparison, amount: *amount, unit: *unit, not })
                    }
                    _ => refuse("size takes one number", line),
                }
            }
            other => refuse(format!("the test `{other}` is not one the editor writes"), line),
        }
    }

    fn action(&mut self, word: &str, line: usize) -> Result<Action, NotRepresentable> {
        let arguments = self.arguments()?;
        self.expect(&Kind::Semicolon, "`;` after an action")?;
        let mut flags = BTreeSet::new();
        let mut days = None;
        let mut subject = None;
        let mut addresses = None;
        let mut positional = Vec::new();
        let mut arguments = arguments.into_iter();
        while let Some(argument) = arguments.next() {
            match argument {
                Argument::Tag(tag, tag_line) => {
                    let allowed = match word {
                        "fileinto" => tag == "create",
                        "redirect" => tag == "copy",
                        "vacation" => ["days", "subject", "addresses"].contains(&tag.as_str()),
                        _ => false,
                    };
                    if !allowed || !flags.insert(tag.clone()) {
                        return refuse(format!("the tag :{tag} is not one the editor writes for {word}"), tag_line);
                    }
                    match tag.as_str() {
                        "days" => match arguments.next() {
                            Some(Argument::Number(amount, SizeUnit::Bytes, _)) => {
                                days = Some(u32::try_from(amount).map_err(|_| NotRepresentable {
                                    reason: "too many days".to_owned(),
                                    line: Some(tag_line),
                                })?);
                            }
                            _ => return refuse(":days needs a number", tag_line),
                        },
                        "subject" => match arguments.next() {
                            Some(Argument::Text { value, multi_line: false, .. }) => subject = Some(value),
                            _ => return refuse(":subject needs a string", tag_line),
                        },
                        "addresses" => match arguments.next() {
                            Some(argument @ (Argument::Text { .. } | Argument::List(..))) => {
                                addresses = Some(argument.strings()?);
                            }
                            _ => return refuse(":addresses needs a string list", tag_line),
                        },
                        _ => {}
                    }
                }
                other => positional.push(other),
            }
        }
        let no_arguments = |action: Action| {
            if positional.is_empty() { Ok(action) } else { refuse(format!("{word} takes no arguments"), line) }
        };
        match word {
            "keep" => no_arguments(Action::Keep),
            "discard" => no_arguments(Action::Discard),
            "stop" => no_arguments(Action::Stop),
            "fileinto" | "redirect" | "vacation" => {
                let [argument]: [Argument; 1] = positional
                    .try_into()
                    .map_err(|_| NotRepresentable { reason: format!("{word} takes one string"), line: Some(line) })?;
                let Argument::Text { value, multi_line, .. } = argument else {
                    return refuse(format!("{word} takes one string"), line);
                };
                match word {
                    "fileinto" => Ok(Action::Fileinto { folder: value, create: flags.contains("create") }),
                    "redirect" => Ok(Action::Redirect { address: value, copy: flags.contains("copy") }),
                    _ => {
                        // The writer ends every text: literal with a line break that is not part of the reason.
                        let reason = match (multi_line, value.strip_suffix('\n')) {
                            (true, Some(stripped)) => stripped.to_owned(),
                            _ => value,
                        };
                        Ok(Action::Vacation {
                            days: days.unwrap_or(DEFAULT_VACATION_DAYS),
                            subject,
                            reason,
                            addresses: addresses.unwrap_or_default(),
                        })
                    }
                }
            }
            other => refuse(format!("the action `{other}` is not one the editor writes"), line),
        }
    }
}

/// How deep `allof`/`anyof` may nest; the editor writes at most two levels.
const MAX_TEST_DEPTH: usize = 4;

/// Pigeonhole's `:days` when the script gives none (RFC 5230 §4.1 recommends 7).
const DEFAULT_VACATION_DAYS: u32 = 7;

/// The tags of a test, each at most once.
#[derive(Default)]
struct Tags {
    match_type: Option<MatchType>,
    address_part: Option<AddressPart>,
    size: Option<SizeComparison>,
}

impl Tags {
    fn take(
        &mut self,
        tag: &str,
        line: usize,
        test: &str,
        arguments: &mut impl Iterator<Item = Argument>,
    ) -> Result<(), NotRepresentable> {
        let duplicate = match tag {
            "is" | "contains" | "matches" => {
                let match_type = match tag {
                    "is" => MatchType::Is,
                    "contains" => MatchType::Contains,
                    _ => MatchType::Matches,
                };
                self.match_type.replace(match_type).is_some()
            }
            "all" | "localpart" | "domain" if test != "header" && test != "size" => {
                let part = match tag {
                    "all" => AddressPart::All,
                    "localpart" => AddressPart::Localpart,
                    _ => AddressPart::Domain,
                };
                self.address_part.replace(part).is_some()
            }
            "over" | "under" if test == "size" => {
                let comparison = if tag == "over" { SizeComparison::Over } else { SizeComparison::Under };
                self.size.replace(comparison).is_some()
            }
            "comparator" => {
                let comparator = match arguments.next() {
                    Some(argument) => argument.single_string("comparator")?,
                    None => return refuse(":comparator needs a name", line),
                };
                // The default comparator, written out, changes nothing.
                if comparator != "i;ascii-casemap" {
                    return refuse("only the default comparator \"i;ascii-casemap\" can be shown", line);
                }
                false
            }
            other => return refuse(format!("the tag :{other} is not one the editor writes for {test}"), line),
        };
        if duplicate {
            return refuse(format!("more than one :{tag}-like tag"), line);
        }
        Ok(())
    }
}

/// The name in a `# rule "name"` comment; `None` for any other comment.
fn rule_name(comment: &str, line: usize) -> Result<Option<String>, NotRepresentable> {
    let Some(rest) = comment.trim_start().strip_prefix("rule") else {
        return Ok(None);
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    if !rest.starts_with('"') {
        return Ok(None);
    }
    let (name, end) = quoted_string(rest, 0, line)?;
    if !rest[end..].trim().is_empty() {
        return refuse("text after the rule's name", line);
    }
    Ok(Some(name))
}

/// Every extension the rules use must be required, or Pigeonhole would refuse the script.
fn check_requires(rules: &RuleSet, required: &BTreeSet<String>) -> Result<(), NotRepresentable> {
    for extension in crate::write::required_extensions(rules) {
        if !required.contains(extension) {
            return Err(NotRepresentable {
                reason: format!("the script uses {extension:?} without requiring it"),
                line: None,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(script: &str) -> NotRepresentable {
        from_sieve(script).unwrap_err()
    }

    #[test]
    fn the_canonical_form_reads_back() {
        let script = "# couchmail-rules v1\nrequire [\"fileinto\", \"mailbox\"];\n\n# rule \"To folder\"\nif allof (header :contains \"Subject\" \"X\") {\n    fileinto :create \"Folder\";\n}\n";
        assert_eq!(from_sieve(script).unwrap(), RuleSet::documented_example());
    }

    #[test]
    fn whitespace_case_comments_and_crlf_may_vary() {
        let script = "# couchmail-rules v1\r\n/* edited by hand */ REQUIRE \"fileinto\" ;\r\n# a note\r\n# rule  \"A\"\r\nIf AllOf(Header :Contains [\"Subject\"] [\"X\"]){FileInto \"F\";}\r\n";
        let rules = from_sieve(script).unwrap();
        assert_eq!(rules.rules.len(), 1);
        assert_eq!(rules.rules[0].name, "A");
        assert_eq!(rules.rules[0].actions, vec![Action::Fileinto { folder: "F".to_owned(), create: false }]);
        // A bare test without allof is read as "all of" one condition.
        let bare = "# couchmail-rules v1\n# rule \"B\"\nif header \"Subject\" \"Y\" { keep; }\n";
        let rules = from_sieve(bare).unwrap();
        assert_eq!(rules.rules[0].matching, Matching::All);
        assert!(matches!(rules.rules[0].conditions[0], Condition::Header { match_type: MatchType::Is, .. }));
    }

    #[test]
    fn text_literals_undo_dot_stuffing_and_the_final_line_break() {
        let script = "# couchmail-rules v1\nrequire \"vacation\";\n# rule \"away\"\nif allof (true) {\n    vacation :days 3 text: # reply\r\nHi\r\n..x\r\n\r\n.\r\n    ;\n}\n";
        let rules = from_sieve(script).unwrap();
        assert_eq!(
            rules.rules[0].actions,
            vec![Action::Vacation { days: 3, subject: None, reason: "Hi\n.x\n".to_owned(), addresses: vec![] }]
        );
    }

    #[test]
    fn scripts_not_written_by_the_editor_are_refused() {
        assert!(
            refused("require \"fileinto\";\nif header :contains \"Subject\" \"x\" { fileinto \"F\"; }\n")
                .reason
                .contains("not written by the visual editor")
        );
        assert!(refused("").reason.contains("not written"));
    }

    #[test]
    fn constructs_outside_the_subset_are_refused_with_a_line() {
        let cases = [
            ("# rule \"a\"\nif header :regex \"Subject\" \"x\" { keep; }\n", 2),
            ("require \"imap4flags\";\n", 1),
            ("# rule \"a\"\nif true { keep; } else { discard; }\n", 2),
            ("# rule \"a\"\nif true { addflag \"\\\\Seen\"; }\n", 2),
            ("# rule \"a\"\nif header :comparator \"i;octet\" :is \"Subject\" \"x\" { keep; }\n", 2),
            ("keep;\n", 1),
            ("if true { keep; }\n", 1),
            ("# rule \"a\"\nif anyof (allof (true), true) { keep; }\n", 2),
            ("# rule \"a\"\nif header :is \"Subject\" [\"x\", \"y\"] { keep; }\n", 2),
            ("# rule \"a\"\nif exists \"X-Spam\" { keep; }\n", 2),
            ("# rule \"a\"\nif true { fileinto :copy \"F\"; }\n", 2),
        ];
        for (body, line) in cases {
            let script = format!("# couchmail-rules v1\n{body}");
            let err = refused(&script);
            // The marker is line 1, so the body's lines count from 2.
            assert_eq!(err.line, Some(line + 1), "{script}: {err}");
        }
    }

    #[test]
    fn missing_requires_and_invalid_values_are_refused() {
        let err = refused("# couchmail-rules v1\n# rule \"a\"\nif true { fileinto \"F\"; }\n");
        assert!(err.reason.contains("without requiring"), "{err}");
        let err = refused("# couchmail-rules v1\nrequire \"fileinto\";\n# rule \"a\"\nif true { fileinto \"\"; }\n");
        assert!(err.reason.contains("folder"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing_through_it() {
        let depth = 100_000;
        let script = format!(
            "# couchmail-rules v1\n# rule \"a\"\nif {}true{} {{ keep; }}\n",
            "allof (".repeat(depth),
            ")".repeat(depth)
        );
        let err = refused(&script);
        assert!(err.reason.contains("nested deeper"), "{err}");
    }

    #[test]
    fn unterminated_things_are_refused_not_panicking() {
        for tail in ["\"abc", "/* x", "text:\nabc\n", "if allof (", "# rule \"a", "if true { keep;", "[\"a\""] {
            let script = format!("# couchmail-rules v1\n# rule \"a\"\n{tail}");
            let _ = refused(&script);
        }
    }
}
