//! The typed request, [`PolicyRequest`], built from an attribute list and turned back into one.
//!
//! Postfix's smtpd sends the same attributes in every protocol state, with empty values for what it does not know
//! yet (SMTPD_POLICY_README, "Protocol description"); an attribute missing altogether means the peer is an older
//! Postfix or not Postfix, so fields are `Option`s and `Some("")` is kept apart from `None`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use crate::attributes::{Attributes, SyntaxError};

/// The value of the `request` attribute in every policy request Postfix sends; nothing else is a request we serve.
pub const REQUEST_TYPE: &str = "smtpd_access_policy";

/// The SMTP command, or stage, Postfix is deciding on: the `protocol_state` attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProtocolState {
    /// `CONNECT`: `smtpd_client_restrictions`, before any command.
    Connect,
    /// `EHLO`.
    Ehlo,
    /// `HELO`.
    Helo,
    /// `MAIL`: `smtpd_sender_restrictions`.
    Mail,
    /// `RCPT`: `smtpd_recipient_restrictions` and `smtpd_relay_restrictions`, one request per recipient.
    Rcpt,
    /// `DATA`: `smtpd_data_restrictions`.
    Data,
    /// `END-OF-MESSAGE`: `smtpd_end_of_data_restrictions`; `size` is then the real message size.
    EndOfMessage,
    /// `VRFY`.
    Vrfy,
    /// `ETRN`.
    Etrn,
    /// Any other value, kept as sent.
    Other(String),
}

impl ProtocolState {
    /// Reads a `protocol_state` value; the known names are matched without regard to case.
    pub fn parse(value: &str) -> ProtocolState {
        const KNOWN: [(&str, ProtocolState); 9] = [
            ("CONNECT", ProtocolState::Connect),
            ("EHLO", ProtocolState::Ehlo),
            ("HELO", ProtocolState::Helo),
            ("MAIL", ProtocolState::Mail),
            ("RCPT", ProtocolState::Rcpt),
            ("DATA", ProtocolState::Data),
            ("END-OF-MESSAGE", ProtocolState::EndOfMessage),
            ("VRFY", ProtocolState::Vrfy),
            ("ETRN", ProtocolState::Etrn),
        ];
        KNOWN
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(value))
            .map_or_else(|| ProtocolState::Other(value.to_owned()), |(_, state)| state)
    }

    /// The value as Postfix writes it.
    pub fn as_str(&self) -> &str {
        match self {
            ProtocolState::Connect => "CONNECT",
            ProtocolState::Ehlo => "EHLO",
            ProtocolState::Helo => "HELO",
            ProtocolState::Mail => "MAIL",
            ProtocolState::Rcpt => "RCPT",
            ProtocolState::Data => "DATA",
            ProtocolState::EndOfMessage => "END-OF-MESSAGE",
            ProtocolState::Vrfy => "VRFY",
            ProtocolState::Etrn => "ETRN",
            ProtocolState::Other(value) => value,
        }
    }
}

impl fmt::Display for ProtocolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One policy request: the attributes couchmail decides on as fields, everything else in [`PolicyRequest::other`].
///
/// Each field is `None` when the attribute was not sent and `Some` with the value, possibly empty, when it was.
/// Postfix sends `sender=` (empty) for the null sender `<>`, `sasl_username=` (empty) for an unauthenticated
/// client, and `size=0` when the size is not known yet.
///
/// ```
/// use couchmail_postfix_policy::{PolicyRequest, ProtocolState};
///
/// let request = PolicyRequest {
///     protocol_state: Some(ProtocolState::Rcpt),
///     client_address: Some("192.0.2.1".into()),
///     sender: Some(String::new()),
///     recipient: Some("alice@example.com".into()),
///     ..PolicyRequest::default()
/// };
/// assert!(request.is_null_sender());
/// assert_eq!(request.client_ip(), Some("192.0.2.1".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRequest {
    /// `protocol_state`: the SMTP stage.
    pub protocol_state: Option<ProtocolState>,
    /// `protocol_name`: `SMTP`, `ESMTP` or `LMTP` (an LMTP server can delegate too).
    pub protocol_name: Option<String>,
    /// `client_address`: the SMTP client's IP address, IPv6 without brackets.
    pub client_address: Option<String>,
    /// `client_name`: its verified host name, or `unknown`.
    pub client_name: Option<String>,
    /// `reverse_client_name`: its unverified reverse DNS name, or `unknown`.
    pub reverse_client_name: Option<String>,
    /// `client_port`: its TCP port.
    pub client_port: Option<String>,
    /// `helo_name`: what it said in HELO or EHLO; chosen by the client, so never trusted.
    pub helo_name: Option<String>,
    /// `sender`: the envelope sender without angle brackets; empty for the null sender.
    pub sender: Option<String>,
    /// `recipient`: the envelope recipient being decided on (RCPT state), without angle brackets.
    pub recipient: Option<String>,
    /// `recipient_count`: recipients accepted so far (0 at RCPT), or the total at DATA and END-OF-MESSAGE.
    pub recipient_count: Option<u64>,
    /// `queue_id`: Postfix's queue id, empty before the queue file exists.
    pub queue_id: Option<String>,
    /// `instance`: the same for every request of one message, so recipients can be grouped.
    pub instance: Option<String>,
    /// `size`: the message size in bytes, from `MAIL FROM ... SIZE=` before END-OF-MESSAGE; 0 when not known.
    pub size: Option<u64>,
    /// `sasl_method`: the SASL mechanism, empty when not authenticated.
    pub sasl_method: Option<String>,
    /// `sasl_username`: the authenticated login, empty when not authenticated.
    pub sasl_username: Option<String>,
    /// `sasl_sender`: the `MAIL FROM ... AUTH=` address.
    pub sasl_sender: Option<String>,
    /// Every other attribute by name (`ccert_*`, `encryption_*`, `server_address`, `policy_context`, ...).
    ///
    /// A name here must not be one of the fields above, nor `request`.
    pub other: BTreeMap<String, String>,
    /// The names of the attributes whose value was not UTF-8 and arrived with invalid sequences replaced by U+FFFD.
    pub lossy: BTreeSet<String>,
}

/// The attribute names that have a field, in the order [`PolicyRequest::to_attributes`] writes them.
const FIELD_NAMES: [&str; 16] = [
    "protocol_state",
    "protocol_name",
    "client_address",
    "client_name",
    "reverse_client_name",
    "client_port",
    "helo_name",
    "sender",
    "recipient",
    "recipient_count",
    "queue_id",
    "instance",
    "size",
    "sasl_method",
    "sasl_username",
    "sasl_sender",
];

impl PolicyRequest {
    /// Builds a request from an attribute list, checking what makes it a request at all.
    ///
    /// The list must hold `request=smtpd_access_policy`; `recipient_count` and `size`, when present, must be
    /// decimal numbers. Every other attribute is optional and free-form, and missing ones are `None`: what a
    /// request lacks is for the [`PolicyHandler`](crate::PolicyHandler) to judge.
    ///
    /// ```
    /// use couchmail_postfix_policy::{Limits, PolicyRequest, RequestError, parse_attributes};
    ///
    /// let (attributes, _) = parse_attributes(b"request=smtpd_access_policy\nsize=12\n\n", &Limits::default()).unwrap();
    /// assert_eq!(PolicyRequest::from_attributes(attributes).unwrap().size, Some(12));
    /// let (attributes, _) = parse_attributes(b"sender=a@b\n\n", &Limits::default()).unwrap();
    /// assert_eq!(PolicyRequest::from_attributes(attributes), Err(RequestError::MissingRequestType));
    /// ```
    pub fn from_attributes(attributes: Attributes) -> Result<PolicyRequest, RequestError> {
        let mut request = PolicyRequest::default();
        let mut request_type = None;
        for attribute in attributes {
            if attribute.lossy {
                request.lossy.insert(attribute.name.clone());
            }
            let value = attribute.value;
            let number = |value: &str| {
                value.parse::<u64>().map_err(|_| RequestError::InvalidNumber { name: attribute.name.clone() })
            };
            match attribute.name.as_str() {
                "request" => request_type = Some(value),
                "protocol_state" => request.protocol_state = Some(ProtocolState::parse(&value)),
                "protocol_name" => request.protocol_name = Some(value),
                "client_address" => request.client_address = Some(value),
                "client_name" => request.client_name = Some(value),
                "reverse_client_name" => request.reverse_client_name = Some(value),
                "client_port" => request.client_port = Some(value),
                "helo_name" => request.helo_name = Some(value),
                "sender" => request.sender = Some(value),
                "recipient" => request.recipient = Some(value),
                "recipient_count" => request.recipient_count = Some(number(&value)?),
                "queue_id" => request.queue_id = Some(value),
                "instance" => request.instance = Some(value),
                "size" => request.size = Some(number(&value)?),
                "sasl_method" => request.sasl_method = Some(value),
                "sasl_username" => request.sasl_username = Some(value),
                "sasl_sender" => request.sasl_sender = Some(value),
                _ => {
                    request.other.insert(attribute.name, value);
                }
            }
        }
        match request_type {
            Some(value) if value == REQUEST_TYPE => Ok(request),
            Some(value) => Err(RequestError::UnknownRequestType { value }),
            None => Err(RequestError::MissingRequestType),
        }
    }

    /// The attribute list that sends this request: `request=smtpd_access_policy`, the fields that are `Some` in
    /// declaration order, then [`PolicyRequest::other`].
    ///
    /// Fails when a value holds an LF or ends with a CR, when a name in `other` is invalid, or when it is `request`
    /// or the name of a field ([`SyntaxError::DuplicateName`]): none of these would be read back as they are.
    pub fn to_attributes(&self) -> Result<Attributes, SyntaxError> {
        let mut attributes = Attributes::new();
        attributes.push("request", REQUEST_TYPE)?;
        let numbers = [self.recipient_count.map(|count| count.to_string()), self.size.map(|size| size.to_string())];
        let [recipient_count, size] = numbers;
        let values: [Option<&str>; 16] = [
            self.protocol_state.as_ref().map(ProtocolState::as_str),
            self.protocol_name.as_deref(),
            self.client_address.as_deref(),
            self.client_name.as_deref(),
            self.reverse_client_name.as_deref(),
            self.client_port.as_deref(),
            self.helo_name.as_deref(),
            self.sender.as_deref(),
            self.recipient.as_deref(),
            recipient_count.as_deref(),
            self.queue_id.as_deref(),
            self.instance.as_deref(),
            size.as_deref(),
            self.sasl_method.as_deref(),
            self.sasl_username.as_deref(),
            self.sasl_sender.as_deref(),
        ];
        for (name, value) in FIELD_NAMES.into_iter().zip(values) {
            if let Some(value) = value {
                attributes.push(name, value)?;
            }
        }
        for (name, value) in &self.other {
            if name == "request" || FIELD_NAMES.contains(&name.as_str()) {
                return Err(SyntaxError::DuplicateName { name: name.clone() });
            }
            attributes.push(name.as_str(), value.as_str())?;
        }
        Ok(attributes)
    }

    /// The client's address as an IP address, when `client_address` holds one.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.client_address.as_deref()?.parse().ok()
    }

    /// Whether the envelope sender is the null sender `<>` (bounces and other delivery notifications).
    pub fn is_null_sender(&self) -> bool {
        self.sender.as_deref() == Some("")
    }

    /// The SASL login, when the client authenticated.
    pub fn sasl_login(&self) -> Option<&str> {
        self.sasl_username.as_deref().filter(|login| !login.is_empty())
    }

    /// Whether the value of attribute `name` was not UTF-8 on the wire (see [`PolicyRequest::lossy`]).
    pub fn is_lossy(&self, name: &str) -> bool {
        self.lossy.contains(name)
    }
}

/// A short summary for logs: state, client, sender, recipient, login.
impl fmt::Display for PolicyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |value: &Option<String>| value.as_deref().map_or_else(|| "-".to_owned(), |v| format!("{v:?}"));
        let state = self.protocol_state.as_ref().map_or("-", ProtocolState::as_str);
        write!(
            f,
            "state={state} client={} sender={} recipient={}",
            shown(&self.client_address),
            shown(&self.sender),
            shown(&self.recipient)
        )?;
        if let Some(login) = self.sasl_login() {
            write!(f, " sasl_username={login:?}")?;
        }
        Ok(())
    }
}

/// Why a well-formed attribute list is not a policy request.
///
/// The server closes the connection on these, as on a [`SyntaxError`]: Postfix never sends them, so the peer is
/// not Postfix's policy client or is broken, and any answer could be read as a decision about mail.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// The list has no `request` attribute.
    MissingRequestType,
    /// `request` is not `smtpd_access_policy`.
    UnknownRequestType {
        /// The value sent.
        value: String,
    },
    /// `recipient_count` or `size` is not a decimal number.
    InvalidNumber {
        /// The attribute's name.
        name: String,
    },
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::MissingRequestType => f.write_str("attribute list has no request attribute"),
            RequestError::UnknownRequestType { value } => write!(f, "unknown request type {value:?}"),
            RequestError::InvalidNumber { name } => write!(f, "attribute {name:?} is not a decimal number"),
        }
    }
}

impl std::error::Error for RequestError {}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::attributes::{Limits, parse_attributes};

    /// A request with the 29 attributes Postfix 3.7's smtpd sends at RCPT (the smtpd test in tests/ checks the
    /// list against the real thing).
    const POSTFIX_RCPT: &[u8] = b"request=smtpd_access_policy\n\
        protocol_state=RCPT\n\
        protocol_name=ESMTP\n\
        client_address=2001:db8::1\n\
        client_name=mail.example.net\n\
        client_port=41234\n\
        reverse_client_name=mail.example.net\n\
        server_address=192.0.2.25\n\
        server_port=25\n\
        helo_name=mail.example.net\n\
        sender=bob@example.net\n\
        recipient=alice@example.com\n\
        recipient_count=0\n\
        queue_id=\n\
        instance=1d2f.6745a3b1.8c9e2.0\n\
        size=1234\n\
        etrn_domain=\n\
        stress=\n\
        sasl_method=\n\
        sasl_username=\n\
        sasl_sender=\n\
        ccert_subject=\n\
        ccert_issuer=\n\
        ccert_fingerprint=\n\
        ccert_pubkey_fingerprint=\n\
        encryption_protocol=TLSv1.3\n\
        encryption_cipher=TLS_AES_256_GCM_SHA384\n\
        encryption_keysize=256\n\
        policy_context=\n\
        \n";

    fn parse(bytes: &[u8]) -> Result<PolicyRequest, RequestError> {
        let (attributes, n_used) = parse_attributes(bytes, &Limits::default()).unwrap();
        assert_eq!(n_used, bytes.len());
        PolicyRequest::from_attributes(attributes)
    }

    #[test]
    fn reads_a_real_rcpt_request() {
        let request = parse(POSTFIX_RCPT).unwrap();
        assert_eq!(request.protocol_state, Some(ProtocolState::Rcpt));
        assert_eq!(request.client_ip(), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(request.sender.as_deref(), Some("bob@example.net"));
        assert_eq!(request.recipient.as_deref(), Some("alice@example.com"));
        assert_eq!((request.recipient_count, request.size), (Some(0), Some(1234)));
        assert_eq!(request.queue_id.as_deref(), Some(""));
        assert_eq!(request.sasl_login(), None);
        assert!(!request.is_null_sender());
        assert_eq!(request.other.get("encryption_protocol").map(String::as_str), Some("TLSv1.3"));
        assert_eq!(request.other.get("server_port").map(String::as_str), Some("25"));
        assert_eq!(request.other.len(), 12);
        assert!(request.lossy.is_empty());
        assert_eq!(
            request.to_string(),
            r#"state=RCPT client="2001:db8::1" sender="bob@example.net" recipient="alice@example.com""#
        );
    }

    #[test]
    fn keeps_empty_apart_from_missing() {
        let request = parse(b"request=smtpd_access_policy\nsender=\nsasl_username=alice\n\n").unwrap();
        assert!(request.is_null_sender());
        assert_eq!(request.recipient, None);
        assert_eq!(request.sasl_login(), Some("alice"));
        let request = parse(b"request=smtpd_access_policy\n\n").unwrap();
        assert_eq!(request, PolicyRequest::default());
        assert!(!request.is_null_sender());
    }

    #[test]
    fn refuses_lists_that_are_not_requests() {
        assert_eq!(parse(b"\n"), Err(RequestError::MissingRequestType));
        assert_eq!(parse(b"sender=a@b\n\n"), Err(RequestError::MissingRequestType));
        assert_eq!(parse(b"request=junk\n\n"), Err(RequestError::UnknownRequestType { value: "junk".into() }));
        assert_eq!(
            parse(b"request=smtpd_access_policy\nsize=big\n\n"),
            Err(RequestError::InvalidNumber { name: "size".into() })
        );
        assert_eq!(
            parse(b"request=smtpd_access_policy\nrecipient_count=-1\n\n"),
            Err(RequestError::InvalidNumber { name: "recipient_count".into() })
        );
    }

    #[test]
    fn marks_values_that_were_not_utf8() {
        let request = parse(b"request=smtpd_access_policy\nhelo_name=\xc0\xff\n\n").unwrap();
        assert_eq!(request.helo_name.as_deref(), Some("\u{fffd}\u{fffd}"));
        assert!(request.is_lossy("helo_name"));
        assert!(!request.is_lossy("sender"));
    }

    #[test]
    fn reads_protocol_states_without_regard_to_case() {
        assert_eq!(ProtocolState::parse("rcpt"), ProtocolState::Rcpt);
        assert_eq!(ProtocolState::parse("END-OF-MESSAGE"), ProtocolState::EndOfMessage);
        assert_eq!(ProtocolState::parse("BDAT"), ProtocolState::Other("BDAT".into()));
        assert_eq!(ProtocolState::EndOfMessage.to_string(), "END-OF-MESSAGE");
    }

    #[test]
    fn to_attributes_refuses_what_would_not_come_back() {
        let mut request = PolicyRequest::default();
        request.other.insert("sender".into(), "a@b".into());
        assert_eq!(request.to_attributes(), Err(SyntaxError::DuplicateName { name: "sender".into() }));
        let request = PolicyRequest { helo_name: Some("a\nb".into()), ..PolicyRequest::default() };
        assert_eq!(request.to_attributes(), Err(SyntaxError::InvalidValue { name: "helo_name".into() }));
    }

    fn any_request() -> impl Strategy<Value = PolicyRequest> {
        let text = || proptest::option::of("[^\n]{0,12}".prop_map(|value| value.trim_end_matches('\r').to_owned()));
        (
            proptest::option::of("[A-Z-]{1,14}".prop_map(|state| ProtocolState::parse(&state))),
            (text(), text(), text(), text()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u64>()),
            proptest::collection::btree_map("x_[a-z]{1,6}", "[a-z0-9.]{0,10}", 0..4),
        )
            .prop_map(
                |(protocol_state, (client_address, sender, recipient, sasl_username), size, count, other)| {
                    PolicyRequest {
                        protocol_state,
                        client_address,
                        sender,
                        recipient,
                        sasl_username,
                        size,
                        recipient_count: count,
                        other,
                        ..PolicyRequest::default()
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn from_attributes_inverts_to_attributes(request in any_request()) {
            let mut wire = Vec::new();
            request.to_attributes().unwrap().encode(&mut wire);
            prop_assert_eq!(parse(&wire), Ok(request));
        }
    }
}
