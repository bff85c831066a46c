//! The server's replies (RFC 5804 §1.2, §4 `response`): `OK`, `NO` or `BYE`, an optional response code in
//! parentheses, and an optional human-readable string.

use crate::frame::encode_string;

/// The status word of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The command succeeded.
    Ok,
    /// The command failed; the connection stays open.
    No,
    /// The server closes the connection.
    Bye,
}

/// A response code (RFC 5804 §1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// A security layer must be negotiated (STARTTLS) before the command.
    EncryptNeeded,
    /// The user has too many scripts.
    QuotaMaxScripts,
    /// The script is too large.
    QuotaMaxSize,
    /// A temporary failure on the server: try again later.
    TryLater,
    /// The script is the active one.
    Active,
    /// The script does not exist.
    NonExistent,
    /// A script of that name exists already.
    AlreadyExists,
    /// The tag of a `NOOP` (RFC 5804 §2.11), echoed.
    Tag(Vec<u8>),
}

impl Code {
    fn encode(&self, output: &mut Vec<u8>) {
        let name: &[u8] = match self {
            Code::EncryptNeeded => b"ENCRYPT-NEEDED",
            Code::QuotaMaxScripts => b"QUOTA/MAXSCRIPTS",
            Code::QuotaMaxSize => b"QUOTA/MAXSIZE",
            Code::TryLater => b"TRYLATER",
            Code::Active => b"ACTIVE",
            Code::NonExistent => b"NONEXISTENT",
            Code::AlreadyExists => b"ALREADYEXISTS",
            Code::Tag(tag) => {
                output.extend_from_slice(b"TAG ");
                encode_string(output, tag);
                return;
            }
        };
        output.extend_from_slice(name);
    }
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `OK`, `NO` or `BYE`.
    pub status: Status,
    /// The response code, if any.
    pub code: Option<Code>,
    /// The text for humans, if any.
    pub text: Option<String>,
}

impl Response {
    /// `OK "text"`.
    pub fn ok(text: impl Into<String>) -> Response {
        Response { status: Status::Ok, code: None, text: Some(text.into()) }
    }

    /// `NO "text"`.
    pub fn no(text: impl Into<String>) -> Response {
        Response { status: Status::No, code: None, text: Some(text.into()) }
    }

    /// `BYE "text"`.
    pub fn bye(text: impl Into<String>) -> Response {
        Response { status: Status::Bye, code: None, text: Some(text.into()) }
    }

    /// The same reply with response code `code`.
    pub fn with_code(mut self, code: Code) -> Response {
        self.code = Some(code);
        self
    }

    /// Appends the reply, CRLF included.
    pub fn encode(&self, output: &mut Vec<u8>) {
        output.extend_from_slice(match self.status {
            Status::Ok => b"OK",
            Status::No => b"NO",
            Status::Bye => b"BYE",
        });
        if let Some(code) = &self.code {
            output.extend_from_slice(b" (");
            code.encode(output);
            output.push(b')');
        }
        if let Some(text) = &self.text {
            output.push(b' ');
            encode_string(output, text.as_bytes());
        }
        output.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(response: Response) -> String {
        let mut output = Vec::new();
        response.encode(&mut output);
        String::from_utf8(output).unwrap()
    }

    #[test]
    fn replies_with_codes_and_texts() {
        assert_eq!(encoded(Response::ok("Done")), "OK \"Done\"\r\n");
        assert_eq!(
            encoded(Response::no("There is no script \"x\"").with_code(Code::NonExistent)),
            "NO (NONEXISTENT) \"There is no script \\\"x\\\"\"\r\n"
        );
        assert_eq!(encoded(Response::no("big").with_code(Code::QuotaMaxSize)), "NO (QUOTA/MAXSIZE) \"big\"\r\n");
        assert_eq!(encoded(Response::ok("Done").with_code(Code::Tag(b"t1".to_vec()))), "OK (TAG \"t1\") \"Done\"\r\n");
        assert_eq!(encoded(Response::bye("later").with_code(Code::TryLater)), "BYE (TRYLATER) \"later\"\r\n");
        assert_eq!(encoded(Response::no("line 1\nline 2")), "NO {13}\r\nline 1\nline 2\r\n");
    }
}
