//! The reply: one [`Action`], sent as `action=...` and an empty line.
//!
//! A policy server may answer with any action Postfix's access(5) tables allow (SMTPD_POLICY_README, "Protocol
//! description"); this module types the ones couchmail uses and keeps the rest as [`Action::Other`].
//! Keywords are written in lower case, which Postfix reads without regard to case.

use std::fmt;

/// The longest text an action carries; longer text is cut at a character boundary.
///
/// Postfix turns the text into an SMTP reply line, which RFC 5321 (4.5.3.1.5) limits to 512 bytes with the code
/// and CRLF; this leaves room for the code and the enhanced status code Postfix adds.
pub const MAX_TEXT_LEN: usize = 450;

/// What the server tells Postfix to do with the request.
///
/// Text is optional for every keyword that takes it (an empty string sends none). It may start with an RFC 3463
/// enhanced status code such as `4.7.1`, which Postfix then uses in its SMTP reply. On the wire, a tab becomes a
/// space, every other character that is not printable ASCII becomes `?`, and text is cut to [`MAX_TEXT_LEN`]
/// bytes, because a control character would end the reply early and 8-bit text is not allowed in SMTP replies.
///
/// ```
/// use couchmail_postfix_policy::{Action, CodeReply};
///
/// assert_eq!(Action::DeferIfPermit("4.7.1 Greylisted, try again later".into()).to_string(),
///            "defer_if_permit 4.7.1 Greylisted, try again later");
/// assert_eq!(Action::Dunno.to_string(), "dunno");
/// let blocked = Action::Code(CodeReply::new(554, "5.7.1 Sender blocked by alice@example.com").unwrap());
/// assert_eq!(blocked.to_string(), "554 5.7.1 Sender blocked by alice@example.com");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `ok`: accept this stage; later restriction lists still apply.
    Ok,
    /// `dunno`: no opinion; Postfix goes on with the next restriction in the list.
    Dunno,
    /// `reject [text]`: refuse with Postfix's `access_map_reject_code` (554 by default).
    Reject(String),
    /// `defer [text]`: refuse temporarily with `access_map_defer_code` (450); the client retries.
    Defer(String),
    /// `defer_if_permit [text]`: defer only if the remaining restrictions would accept, so that a later reject
    /// still rejects; the greylisting answer.
    DeferIfPermit(String),
    /// `defer_if_reject [text]`: defer only if the remaining restrictions would reject.
    DeferIfReject(String),
    /// `NNN text`: refuse with this exact SMTP code.
    Code(CodeReply),
    /// `prepend header: value`: accept and add a header to the message.
    Prepend(String),
    /// `warn [text]`: accept and log a warning.
    Warn(String),
    /// `hold [text]`: accept into the hold queue, for a person to look at.
    Hold(String),
    /// `discard [text]`: accept and throw the message away.
    Discard(String),
    /// Any other access(5) action, sent as it is (after the printable-ASCII rule): `filter ...`, `redirect ...`,
    /// a restriction name.
    Other(String),
}

impl Action {
    /// Appends this action to `out` as a complete reply: `action=...`, an LF, and the empty line.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"action=");
        out.extend_from_slice(self.to_string().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    /// Reads the value of an `action` attribute, as Postfix would: the first word is the keyword, in any case.
    ///
    /// A three-digit code that [`CodeReply::new`] refuses, and every keyword not typed here, is [`Action::Other`].
    pub fn parse(value: &str) -> Action {
        let value = value.trim_start_matches([' ', '\t']);
        let (keyword, text) = match value.split_once([' ', '\t']) {
            Some((keyword, text)) => (keyword, text.trim_start_matches([' ', '\t'])),
            None => (value, ""),
        };
        let text = || text.to_owned();
        match keyword.to_ascii_lowercase().as_str() {
            "ok" => Action::Ok,
            "dunno" => Action::Dunno,
            "reject" => Action::Reject(text()),
            "defer" => Action::Defer(text()),
            "defer_if_permit" => Action::DeferIfPermit(text()),
            "defer_if_reject" => Action::DeferIfReject(text()),
            "prepend" => Action::Prepend(text()),
            "warn" => Action::Warn(text()),
            "hold" => Action::Hold(text()),
            "discard" => Action::Discard(text()),
            code if code.len() == 3 && code.bytes().all(|byte| byte.is_ascii_digit()) => {
                let code = code.parse().unwrap_or(0);
                CodeReply::new(code, text()).map_or_else(|_| Action::Other(value.to_owned()), Action::Code)
            }
            _ => Action::Other(value.to_owned()),
        }
    }

    fn keyword_and_text(&self) -> (&str, &str) {
        match self {
            Action::Ok => ("ok", ""),
            Action::Dunno => ("dunno", ""),
            Action::Reject(text) => ("reject", text),
            Action::Defer(text) => ("defer", text),
            Action::DeferIfPermit(text) => ("defer_if_permit", text),
            Action::DeferIfReject(text) => ("defer_if_reject", text),
            Action::Code(reply) => (reply.code_str(), &reply.text),
            Action::Prepend(text) => ("prepend", text),
            Action::Warn(text) => ("warn", text),
            Action::Hold(text) => ("hold", text),
            Action::Discard(text) => ("discard", text),
            Action::Other(text) => ("", text),
        }
    }
}

/// The action as it goes on the wire after `action=`, with the printable-ASCII rule and the length limit applied.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (keyword, text) = self.keyword_and_text();
        let text = sanitize(text);
        match (keyword.is_empty(), text.is_empty()) {
            (true, _) => f.write_str(&text),
            (false, true) => f.write_str(keyword),
            (false, false) => write!(f, "{keyword} {text}"),
        }
    }
}

/// An explicit SMTP reply, `4NN text` or `5NN text`, whose enhanced status code (if the text starts with one)
/// agrees with the code's class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeReply {
    code: u16,
    code_text: String,
    text: String,
}

impl CodeReply {
    /// A reply with `code` (400 to 559, as RFC 5321 section 4.2 allows after the first digit) and `text`.
    ///
    /// Refused: a code that is not a 4yz or 5yz reply with y from 0 to 5, and text starting with an enhanced
    /// status code of another class (`450 5.7.1`), which Postfix would not pass on as written.
    /// 421 and 521 also make Postfix disconnect the client, as in access(5).
    ///
    /// ```
    /// use couchmail_postfix_policy::CodeReply;
    ///
    /// assert!(CodeReply::new(450, "4.7.1 Try again later").is_ok());
    /// assert!(CodeReply::new(250, "ok").is_err());
    /// assert!(CodeReply::new(450, "5.7.1 mismatched").is_err());
    /// ```
    pub fn new(code: u16, text: impl Into<String>) -> Result<CodeReply, ActionError> {
        let class = code / 100;
        if !(class == 4 || class == 5) || (code / 10) % 10 > 5 {
            return Err(ActionError::InvalidCode { code });
        }
        let text = text.into();
        if let Some(enhanced_class) = enhanced_status_class(&text)
            && u16::from(enhanced_class) != class
        {
            return Err(ActionError::MismatchedEnhancedStatus { code });
        }
        Ok(CodeReply { code, code_text: code.to_string(), text })
    }

    /// The three-digit code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The text after the code.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn code_str(&self) -> &str {
        &self.code_text
    }
}

/// The class digit of the RFC 3463 enhanced status code `class.subject.detail` that starts `text`, if one does.
fn enhanced_status_class(text: &str) -> Option<u8> {
    // Leading blanks are dropped on the wire, so the code is looked for where Postfix will see it.
    let first_word = text.trim_start_matches([' ', '\t']).split([' ', '\t']).next()?;
    let mut parts = first_word.split('.');
    let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
    let is_number = |part: &str, max_len: usize| {
        !part.is_empty() && part.len() <= max_len && part.bytes().all(|byte| byte.is_ascii_digit())
    };
    if parts.next().is_some() || !is_number(class, 1) || !is_number(subject, 3) || !is_number(detail, 3) {
        return None;
    }
    class.bytes().next().map(|byte| byte - b'0').filter(|class| matches!(class, 2 | 4 | 5))
}

/// Applies the wire rule: surrounding blanks go, a tab becomes a space, every other character outside printable
/// ASCII becomes `?`, and the result is cut to [`MAX_TEXT_LEN`] bytes (all ASCII by then, so any cut is a
/// character boundary) without trailing spaces, so that reading the text back and writing it again gives the same
/// bytes.
///
/// A tab stays a blank because [`Action::parse`] splits words at tabs as at spaces: as `?` it would join the word
/// after it to a code in front, and an action kept whole as [`Action::Other`] (`551 <tab>4.0.0`, whose enhanced
/// status code does not match) would read back as a different [`Action::Code`] (found by fuzzing).
fn sanitize(text: &str) -> String {
    let text = text.trim_matches([' ', '\t']);
    let mut sanitized: String = text
        .chars()
        .map(|c| match c {
            ' '..='~' => c,
            '\t' => ' ',
            _ => '?',
        })
        .take(MAX_TEXT_LEN)
        .collect();
    sanitized.truncate(sanitized.trim_end_matches(' ').len());
    sanitized
}

/// Why a [`CodeReply`] cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ActionError {
    /// The code is not a 4yz or 5yz SMTP reply code.
    InvalidCode {
        /// The code given.
        code: u16,
    },
    /// The text starts with an enhanced status code whose class is not the code's.
    MismatchedEnhancedStatus {
        /// The code given.
        code: u16,
    },
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionError::InvalidCode { code } => write!(f, "{code} is not a 4yz or 5yz smtp reply code"),
            ActionError::MismatchedEnhancedStatus { code } => {
                write!(f, "enhanced status code does not match the class of reply code {code}")
            }
        }
    }
}

impl std::error::Error for ActionError {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn wire(action: &Action) -> String {
        let mut out = Vec::new();
        action.encode(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn encodes_every_kind() {
        assert_eq!(wire(&Action::Ok), "action=ok\n\n");
        assert_eq!(wire(&Action::Dunno), "action=dunno\n\n");
        assert_eq!(wire(&Action::Reject(String::new())), "action=reject\n\n");
        assert_eq!(wire(&Action::Reject("5.7.1 No".into())), "action=reject 5.7.1 No\n\n");
        assert_eq!(wire(&Action::Defer("4.3.0 Later".into())), "action=defer 4.3.0 Later\n\n");
        assert_eq!(
            wire(&Action::DeferIfPermit("Service temporarily unavailable".into())),
            "action=defer_if_permit Service temporarily unavailable\n\n"
        );
        assert_eq!(wire(&Action::DeferIfReject("x".into())), "action=defer_if_reject x\n\n");
        assert_eq!(
            wire(&Action::Code(CodeReply::new(450, "4.7.1 Greylisted").unwrap())),
            "action=450 4.7.1 Greylisted\n\n"
        );
        assert_eq!(
            wire(&Action::Prepend("X-Greylist: delayed 300 s".into())),
            "action=prepend X-Greylist: delayed 300 s\n\n"
        );
        assert_eq!(wire(&Action::Warn("w".into())), "action=warn w\n\n");
        assert_eq!(wire(&Action::Hold("h".into())), "action=hold h\n\n");
        assert_eq!(wire(&Action::Discard(String::new())), "action=discard\n\n");
        assert_eq!(wire(&Action::Other("permit_mynetworks".into())), "action=permit_mynetworks\n\n");
    }

    #[test]
    fn text_cannot_break_the_framing_or_carry_8bit() {
        assert_eq!(wire(&Action::Reject("a\n\nb\rc\0d".into())), "action=reject a??b?c?d\n\n");
        assert_eq!(wire(&Action::Reject("café".into())), "action=reject caf?\n\n");
        assert_eq!(wire(&Action::Other("dunno\naction=ok".into())), "action=dunno?action=ok\n\n");
        let long = Action::Reject("x".repeat(2 * MAX_TEXT_LEN));
        assert_eq!(long.to_string().len(), "reject ".len() + MAX_TEXT_LEN);
        let wide = Action::Reject("é".repeat(MAX_TEXT_LEN));
        assert_eq!(wide.to_string().len(), "reject ".len() + MAX_TEXT_LEN);
        let cut_at_a_space = Action::Reject(format!("{} tail", "x".repeat(MAX_TEXT_LEN - 1)));
        assert_eq!(cut_at_a_space.to_string(), format!("reject {}", "x".repeat(MAX_TEXT_LEN - 1)));
    }

    #[test]
    fn checks_codes_and_enhanced_status_codes() {
        assert_eq!(CodeReply::new(250, "ok"), Err(ActionError::InvalidCode { code: 250 }));
        assert_eq!(CodeReply::new(600, ""), Err(ActionError::InvalidCode { code: 600 }));
        assert_eq!(CodeReply::new(460, ""), Err(ActionError::InvalidCode { code: 460 }));
        assert_eq!(CodeReply::new(45, ""), Err(ActionError::InvalidCode { code: 45 }));
        assert_eq!(CodeReply::new(450, "5.7.1 x"), Err(ActionError::MismatchedEnhancedStatus { code: 450 }));
        assert_eq!(CodeReply::new(554, "4.7.1 x"), Err(ActionError::MismatchedEnhancedStatus { code: 554 }));
        let reply = CodeReply::new(421, "4.7.0 Go away").unwrap();
        assert_eq!((reply.code(), reply.text()), (421, "4.7.0 Go away"));
        // Leading blanks do not hide a mismatch, since they are dropped on the wire.
        assert_eq!(CodeReply::new(450, " \t5.7.1 x"), Err(ActionError::MismatchedEnhancedStatus { code: 450 }));
        // Text that merely looks numeric is not an enhanced status code (found by fuzzing: a control character
        // where the class digit stands).
        assert!(CodeReply::new(551, "\n.16.1").is_ok());
        assert!(CodeReply::new(551, "x.7.1").is_ok());
        assert!(CodeReply::new(450, "5.7 later").is_ok());
        assert!(CodeReply::new(450, "5.7.1234 later").is_ok());
    }

    #[test]
    fn a_tab_is_sent_as_a_space_so_that_an_action_reads_back_the_same() {
        // Found by `cargo xtask fuzz` (postfix_policy, docs/fuzzing.md): the enhanced status code 4.0.0 does not
        // match 551, so this is kept whole as `Other`; with the tab written as `?`, the text read back was
        // `?4.0.0`, a valid `Code`, which wrote as `551 ?4.0.0`.
        let value = format!("551{}\t4.0.0", " ".repeat(46));
        let once = Action::parse(&value).to_string();
        assert_eq!(once, format!("551{} 4.0.0", " ".repeat(46)));
        assert_eq!(Action::parse(&once), Action::Other(once.clone()));
        assert_eq!(Action::parse(&once).to_string(), once);
        assert_eq!(wire(&Action::Reject("a\tb".into())), "action=reject a b\n\n");
    }

    #[test]
    fn parses_what_it_encodes_and_what_people_write() {
        assert_eq!(Action::parse("DUNNO"), Action::Dunno);
        assert_eq!(Action::parse("ok"), Action::Ok);
        assert_eq!(
            Action::parse("DEFER_IF_PERMIT  4.7.1 Greylisted"),
            Action::DeferIfPermit("4.7.1 Greylisted".into())
        );
        assert_eq!(Action::parse("reject"), Action::Reject(String::new()));
        assert_eq!(Action::parse("554 5.7.1 No"), Action::Code(CodeReply::new(554, "5.7.1 No").unwrap()));
        assert_eq!(Action::parse("250 fine"), Action::Other("250 fine".into()));
        assert_eq!(Action::parse("permit_sasl_authenticated"), Action::Other("permit_sasl_authenticated".into()));
        assert_eq!(Action::parse(""), Action::Other(String::new()));
        assert_eq!(Action::parse("  ok trailing words"), Action::Ok);
    }

    fn any_text() -> impl Strategy<Value = String> {
        "[ -~]{0,30}".prop_map(|text| text.trim_matches(' ').to_owned())
    }

    fn any_action() -> impl Strategy<Value = Action> {
        prop_oneof![
            Just(Action::Ok),
            Just(Action::Dunno),
            any_text().prop_map(Action::Reject),
            any_text().prop_map(Action::Defer),
            any_text().prop_map(Action::DeferIfPermit),
            any_text().prop_map(Action::DeferIfReject),
            any_text().prop_map(Action::Prepend),
            any_text().prop_map(Action::Warn),
            any_text().prop_map(Action::Hold),
            any_text().prop_map(Action::Discard),
            (400u16..560, any_text())
                .prop_filter_map("valid code", |(code, text)| CodeReply::new(code, text).ok().map(Action::Code)),
        ]
    }

    proptest! {
        #[test]
        fn parse_inverts_display(action in any_action()) {
            prop_assert_eq!(Action::parse(&action.to_string()), action);
        }

        #[test]
        fn display_of_any_parse_is_a_fixed_point(
            value in "(\\PC|[ \t\r\n]){0,40}|[a-z ]{440,460}|[2-6][0-69][0-9][ \t]{1,4}(.|\n){1,2}\\.[0-9]{1,4}\\.[0-9]{1,4}.{0,5}"
        ) {
            let once = Action::parse(&value).to_string();
            prop_assert!(once.bytes().all(|byte| (b' '..=b'~').contains(&byte)));
            prop_assert_eq!(Action::parse(&once).to_string(), once);
        }
    }
}
