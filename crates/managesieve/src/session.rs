//! One client's session (RFC 5804 §2): the greeting, then commands in the non-authenticated state (`STARTTLS`,
//! `AUTHENTICATE`) and, once authenticated, the script commands; `CAPABILITY`, `NOOP` and `LOGOUT` in both.
//!
//! Every refusal is a `NO` with the response code RFC 5804 §1.3 gives it, and the session goes on; only `LOGOUT`,
//! too many bad commands or failed authentications, timeouts and the server's shutdown end it (with `BYE`, except
//! after `LOGOUT`'s `OK`).

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::backend::{AuthOutcome, Backend, BackendError};
use crate::connection::{Connection, ConnectionError, Io};
use crate::frame::{CommandDecoder, Decoded, Limits, Refusal, Word, encode_literal, encode_string};
use crate::response::{Code, Response};
use crate::server::Shared;

/// Runs one session over `stream` until it ends.
pub(crate) async fn serve_connection<B: Backend>(
    shared: Arc<Shared<B>>,
    stream: Box<dyn Io>,
    peer: String,
    address: Option<IpAddr>,
    shutdown: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let limits = Limits { max_line_len: config.max_line_len, max_literal_len: config.max_script_bytes };
    let connection = Connection::new(stream, CommandDecoder::new(limits), config.idle_timeout, config.command_timeout);
    let mut session = Session {
        shared: shared.clone(),
        connection,
        peer,
        address,
        shutdown,
        tls_active: false,
        user: None,
        n_auth_failures: 0,
        n_bad_in_a_row: 0,
    };
    debug!(peer = %session.peer, "managesieve connection");
    session.run().await;
    debug!(peer = %session.peer, "managesieve connection closed");
}

struct Session<B> {
    shared: Arc<Shared<B>>,
    connection: Connection,
    peer: String,
    address: Option<IpAddr>,
    shutdown: watch::Receiver<bool>,
    tls_active: bool,
    /// The authenticated user, once there is one.
    user: Option<String>,
    n_auth_failures: u32,
    n_bad_in_a_row: u32,
}

/// What to do after a command.
enum Next {
    Continue,
    Close,
    StartTls,
}

impl<B: Backend> Session<B> {
    async fn run(&mut self) {
        self.write_capabilities();
        self.reply(Response::ok("CouchMail ManageSieve ready."));
        loop {
            let Some(item) = self.read_unless_stopping().await else {
                self.reply(Response::bye("Server shutting down.").with_code(Code::TryLater));
                break;
            };
            let next = match item {
                Ok(Some(Decoded::Command(command))) => self.command(command.words).await,
                Ok(Some(Decoded::Refused(refusal))) => self.refused(&refusal),
                Ok(None) => return,
                Err(ConnectionError::IdleTimeout) => {
                    self.reply(Response::bye("Disconnected for inactivity."));
                    break;
                }
                Err(error) => {
                    debug!(peer = %self.peer, %error, "managesieve connection lost");
                    return;
                }
            };
            match next {
                Next::Continue => {}
                Next::Close => break,
                Next::StartTls => {
                    if !self.start_tls().await {
                        return;
                    }
                }
            }
        }
        let _ = self.connection.flush().await;
    }

    /// The next line from the client, or `None` once the server is shutting down: a session waiting for its client
    /// (between commands, or for a SASL response) must not hold up the server's stop.
    async fn read_unless_stopping(&mut self) -> Option<Result<Option<Decoded>, ConnectionError>> {
        tokio::select! {
            biased;
            _ = self.shutdown.wait_for(|stopping| *stopping) => None,
            item = self.connection.read() => Some(item),
        }
    }

    fn reply(&mut self, response: Response) {
        response.encode(self.connection.output());
    }

    /// Counts a refused command; too many in a row end the session.
    fn bad(&mut self, response: Response) -> Next {
        self.n_bad_in_a_row += 1;
        self.reply(response);
        if self.n_bad_in_a_row >= self.shared.config.max_bad_commands {
            self.reply(Response::bye("Too many invalid commands."));
            return Next::Close;
        }
        Next::Continue
    }

    fn refused(&mut self, refusal: &Refusal) -> Next {
        let response = match refusal {
            Refusal::LiteralTooLarge { .. } => Response::no(refusal.to_string()).with_code(Code::QuotaMaxSize),
            Refusal::LineTooLong { .. } | Refusal::Syntax(_) => Response::no(refusal.to_string()),
        };
        self.bad(response)
    }

    fn write_capabilities(&mut self) {
        let config = &self.shared.config;
        let mut lines: Vec<(&str, Option<String>)> = vec![
            ("IMPLEMENTATION", Some(config.implementation.clone())),
            ("SIEVE", Some(config.sieve_extensions.join(" "))),
            ("NOTIFY", Some("mailto".to_owned())),
        ];
        // RFC 5804 §1.7: SASL lists what may be used now; without TLS, PLAIN is not offered unless allowed.
        let sasl = if self.user.is_none() && (self.tls_active || config.allow_plaintext_auth) { "PLAIN" } else { "" };
        lines.push(("SASL", Some(sasl.to_owned())));
        if self.shared.tls.is_some() && !self.tls_active && self.user.is_none() {
            lines.push(("STARTTLS", None));
        }
        if let Some(max_redirects) = config.max_redirects {
            lines.push(("MAXREDIRECTS", Some(max_redirects.to_string())));
        }
        if let Some(user) = &self.user {
            lines.push(("OWNER", Some(user.clone())));
        }
        lines.push(("UNAUTHENTICATE", None));
        lines.push(("VERSION", Some("1.0".to_owned())));
        let output = self.connection.output();
        for (name, value) in lines {
            encode_string(output, name.as_bytes());
            if let Some(value) = value {
                output.push(b' ');
                encode_string(output, value.as_bytes());
            }
            output.extend_from_slice(b"\r\n");
        }
    }

    async fn command(&mut self, words: Vec<Word>) -> Next {
        let Some(name) = words[0].as_atom().map(str::to_ascii_uppercase) else {
            return self.bad(Response::no("A command starts with its name."));
        };
        let args = &words[1..];
        match (name.as_str(), self.user.clone()) {
            ("CAPABILITY", _) => self.no_args(args, "CAPABILITY", |session| {
                session.write_capabilities();
                Response::ok("Capability completed.")
            }),
            ("NOOP", _) => match args {
                [] => self.done(Response::ok("Done.")),
                [Word::String(tag)] => self.done(Response::ok("Done.").with_code(Code::Tag(tag.clone()))),
                _ => self.usage("NOOP [tag]"),
            },
            ("LOGOUT", _) => {
                self.reply(Response::ok("Logout completed."));
                Next::Close
            }
            ("STARTTLS", None) => self.starttls(args),
            ("AUTHENTICATE", None) => self.authenticate(args).await,
            ("STARTTLS" | "AUTHENTICATE", Some(_)) => self.bad(Response::no("Already authenticated.")),
            ("UNAUTHENTICATE", Some(_)) => self.no_args(args, "UNAUTHENTICATE", |session| {
                info!(peer = %session.peer, user = session.user.as_deref().unwrap_or_default(), "managesieve unauthenticated");
                session.user = None;
                Response::ok("Unauthenticate completed.")
            }),
            (
                "LISTSCRIPTS" | "GETSCRIPT" | "PUTSCRIPT" | "CHECKSCRIPT" | "SETACTIVE" | "DELETESCRIPT"
                | "RENAMESCRIPT" | "HAVESPACE" | "UNAUTHENTICATE",
                None,
            ) => self.bad(Response::no("Authenticate first.")),
            ("LISTSCRIPTS", Some(user)) => match args {
                [] => self.listscripts(&user).await,
                _ => self.usage("LISTSCRIPTS"),
            },
            ("GETSCRIPT", Some(user)) => match args {
                [Word::String(name)] => self.getscript(&user, name).await,
                _ => self.usage("GETSCRIPT <name>"),
            },
            ("PUTSCRIPT", Some(user)) => match args {
                [Word::String(name), Word::String(script)] => self.putscript(&user, name, script).await,
                _ => self.usage("PUTSCRIPT <name> <script>"),
            },
            ("CHECKSCRIPT", Some(user)) => match args {
                [Word::String(script)] => self.checkscript(&user, script).await,
                _ => self.usage("CHECKSCRIPT <script>"),
            },
            ("SETACTIVE", Some(user)) => match args {
                [Word::String(name)] => self.setactive(&user, name).await,
                _ => self.usage("SETACTIVE <name>"),
            },
            ("DELETESCRIPT", Some(user)) => match args {
                [Word::String(name)] => self.deletescript(&user, name).await,
                _ => self.usage("DELETESCRIPT <name>"),
            },
            ("RENAMESCRIPT", Some(user)) => match args {
                [Word::String(old), Word::String(new)] => self.renamescript(&user, old, new).await,
                _ => self.usage("RENAMESCRIPT <old name> <new name>"),
            },
            ("HAVESPACE", Some(user)) => match args {
                [Word::String(name), size] => self.havespace(&user, name, size).await,
                _ => self.usage("HAVESPACE <name> <size>"),
            },
            _ => self.bad(Response::no("Unknown command.")),
        }
    }

    /// Answers a command that was well formed, whatever its outcome (`OK`, or a `NO` such as `NONEXISTENT`); only
    /// malformed or misplaced commands count towards [`crate::ServerConfig::max_bad_commands`].
    fn done(&mut self, response: Response) -> Next {
        self.n_bad_in_a_row = 0;
        self.reply(response);
        Next::Continue
    }

    fn usage(&mut self, syntax: &str) -> Next {
        self.bad(Response::no(format!("Syntax: {syntax}")))
    }

    fn no_args(&mut self, args: &[Word], syntax: &str, run: impl FnOnce(&mut Self) -> Response) -> Next {
        if !args.is_empty() {
            return self.usage(syntax);
        }
        let response = run(self);
        self.done(response)
    }

    /// Answers a store's result: `OK` with `done`, or the `NO` its error means.
    fn answer(&mut self, result: Result<(), BackendError>, done: &str) -> Next {
        match result {
            Ok(()) => self.done(Response::ok(done)),
            Err(error) => {
                let response = self.backend_failure(error);
                self.done(response)
            }
        }
    }

    fn backend_failure(&self, error: BackendError) -> Response {
        match error {
            BackendError::NonExistent(message) => Response::no(message).with_code(Code::NonExistent),
            BackendError::AlreadyExists(message) => Response::no(message).with_code(Code::AlreadyExists),
            BackendError::Active(message) => Response::no(message).with_code(Code::Active),
            BackendError::InvalidScript(message) | BackendError::Refused(message) => Response::no(message),
            BackendError::TryLater(message) => {
                warn!(peer = %self.peer, %message, "managesieve: store unavailable");
                Response::no("The script store is not available now; try again later.").with_code(Code::TryLater)
            }
            BackendError::Internal(message) => {
                warn!(peer = %self.peer, %message, "managesieve: internal error");
                Response::no("Internal error; try again later.").with_code(Code::TryLater)
            }
        }
    }

    fn starttls(&mut self, args: &[Word]) -> Next {
        if !args.is_empty() {
            return self.usage("STARTTLS");
        }
        if self.tls_active {
            return self.bad(Response::no("TLS is already active."));
        }
        if self.shared.tls.is_none() {
            return self.bad(Response::no("STARTTLS is not available."));
        }
        if self.connection.has_buffered_input() {
            // RFC 5804 §2.2: the client waits for the OK; bytes after STARTTLS in the clear are an injection.
            return self.bad(Response::no("Commands were sent after STARTTLS; not starting TLS."));
        }
        self.n_bad_in_a_row = 0;
        self.reply(Response::ok("Begin TLS negotiation now."));
        Next::StartTls
    }

    /// Runs the handshake; RFC 5804 §2.2: the capabilities are sent again after it. False when the session is over.
    async fn start_tls(&mut self) -> bool {
        let Some(acceptor) = self.shared.tls.clone() else { return false };
        let placeholder = Connection::new(
            Box::new(tokio::io::duplex(1).0),
            CommandDecoder::default(),
            self.shared.config.idle_timeout,
            self.shared.config.command_timeout,
        );
        let plain = std::mem::replace(&mut self.connection, placeholder);
        // A handshake in progress is abandoned when the server stops (it is bounded by the command timeout too).
        let handshake = tokio::select! {
            biased;
            _ = self.shutdown.wait_for(|stopping| *stopping) => None,
            handshake = plain.start_tls(&acceptor) => Some(handshake),
        };
        let Some(handshake) = handshake else { return false };
        match handshake {
            Ok(tls) => {
                self.connection = tls;
                self.tls_active = true;
                self.write_capabilities();
                self.reply(Response::ok("TLS negotiation successful."));
                true
            }
            Err(error) => {
                debug!(peer = %self.peer, %error, "managesieve TLS handshake failed");
                false
            }
        }
    }

    async fn authenticate(&mut self, args: &[Word]) -> Next {
        let (mechanism, initial) = match args {
            [mechanism] => (mechanism, None),
            [mechanism, Word::String(initial)] => (mechanism, Some(initial.clone())),
            _ => return self.usage("AUTHENTICATE <mechanism> [<initial response>]"),
        };
        let mechanism = match mechanism {
            Word::String(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Word::Atom(atom) => atom.clone(),
        };
        if !mechanism.eq_ignore_ascii_case("PLAIN") {
            return self.bad(Response::no(format!("Unsupported SASL mechanism {mechanism:?}; use PLAIN.")));
        }
        if !self.tls_active && !self.shared.config.allow_plaintext_auth {
            return self.bad(Response::no("Use STARTTLS first.").with_code(Code::EncryptNeeded));
        }
        let response = match initial {
            Some(initial) => initial,
            None => {
                // RFC 5804 §2.1: the server's challenge is a string; PLAIN's is empty.
                self.connection.output().extend_from_slice(b"\"\"\r\n");
                match self.read_unless_stopping().await {
                    None => {
                        self.reply(Response::bye("Server shutting down.").with_code(Code::TryLater));
                        return Next::Close;
                    }
                    Some(Ok(Some(Decoded::Command(command)))) => match command.words.as_slice() {
                        [Word::String(response)] => response.clone(),
                        // RFC 5804 has a string here; an unquoted base64 word is accepted all the same.
                        [Word::Atom(response)] => response.clone().into_bytes(),
                        _ => return self.bad(Response::no("Expected a SASL response string.")),
                    },
                    Some(Ok(Some(Decoded::Refused(refusal)))) => return self.refused(&refusal),
                    Some(Ok(None) | Err(_)) => return Next::Close,
                }
            }
        };
        if response == b"*" {
            return self.bad(Response::no("Authentication cancelled."));
        }
        let Some((user, password)) = decode_plain(&response) else {
            return self.auth_failed("malformed PLAIN response").await;
        };
        if !self.shared.throttle.allows(self.address) {
            info!(peer = %self.peer, user, "managesieve authentication refused: too many failures from this address");
            return self.bad(
                Response::no("Too many failed authentications from your address; try again later.")
                    .with_code(Code::TryLater),
            );
        }
        match self.shared.backend.authenticate(&user, &password).await {
            AuthOutcome::Authenticated(user) => {
                info!(peer = %self.peer, user, tls = self.tls_active, "managesieve login");
                self.shared.throttle.record_success(self.address);
                self.user = Some(user);
                self.n_auth_failures = 0;
                self.done(Response::ok("Logged in."))
            }
            AuthOutcome::Failed => self.auth_failed_for(&user, "wrong user name or password").await,
            AuthOutcome::Disabled => self.auth_failed_for(&user, "mailbox or domain disabled").await,
            AuthOutcome::TryLater => {
                warn!(peer = %self.peer, user, "managesieve authentication unavailable: index not ready");
                self.bad(Response::no("Temporary authentication failure; try again later.").with_code(Code::TryLater))
            }
        }
    }

    async fn auth_failed_for(&mut self, user: &str, why: &str) -> Next {
        info!(peer = %self.peer, user, why, "managesieve authentication failed");
        self.auth_failed(why).await
    }

    /// A failed authentication: counted for the address, answered after the failure delay, and after too many on
    /// this connection the session ends.
    async fn auth_failed(&mut self, why: &str) -> Next {
        debug!(peer = %self.peer, why, "managesieve authentication failed");
        self.shared.throttle.record_failure(self.address);
        self.n_auth_failures += 1;
        tokio::time::sleep(self.shared.config.auth_failure_delay).await;
        if self.n_auth_failures >= self.shared.config.max_auth_failures_per_connection {
            self.reply(Response::bye("Too many failed authentications."));
            return Next::Close;
        }
        self.bad(Response::no("Authentication failed."))
    }

    async fn listscripts(&mut self, user: &str) -> Next {
        match self.shared.backend.list(user).await {
            Ok(scripts) => {
                let output = self.connection.output();
                for script in scripts {
                    encode_string(output, script.name.as_bytes());
                    if script.active {
                        output.extend_from_slice(b" ACTIVE");
                    }
                    output.extend_from_slice(b"\r\n");
                }
                self.done(Response::ok("Listscripts completed."))
            }
            Err(error) => self.answer(Err(error), ""),
        }
    }

    async fn getscript(&mut self, user: &str, name: &[u8]) -> Next {
        let Some(name) = self.script_name(name) else { return self.bad_name() };
        match self.shared.backend.get(user, &name).await {
            Ok(script) => {
                let output = self.connection.output();
                encode_literal(output, script.as_bytes());
                output.extend_from_slice(b"\r\n");
                self.done(Response::ok("Getscript completed."))
            }
            Err(error) => self.answer(Err(error), ""),
        }
    }

    async fn putscript(&mut self, user: &str, name: &[u8], script: &[u8]) -> Next {
        let Some(name) = self.script_name(name) else { return self.bad_name() };
        let Ok(script) = std::str::from_utf8(script) else {
            return self.bad(Response::no("A Sieve script is UTF-8 text (RFC 5228 §2.2)."));
        };
        if let Some(refusal) = self.size_refusal(script.len()) {
            return self.done(refusal);
        }
        match self.count_refusal(user, &name).await {
            Ok(Some(refusal)) => return self.done(refusal),
            Ok(None) => {}
            Err(error) => return self.answer(Err(error), ""),
        }
        let result = self.shared.backend.put(user, &name, script).await;
        if result.is_ok() {
            info!(peer = %self.peer, user, script = name, n_bytes = script.len(), "managesieve script stored");
        }
        self.answer(result, "Putscript completed.")
    }

    async fn checkscript(&mut self, user: &str, script: &[u8]) -> Next {
        let Ok(script) = std::str::from_utf8(script) else {
            return self.bad(Response::no("A Sieve script is UTF-8 text (RFC 5228 §2.2)."));
        };
        if let Some(refusal) = self.size_refusal(script.len()) {
            return self.done(refusal);
        }
        let result = self.shared.backend.check(user, script).await;
        self.answer(result, "Script is valid.")
    }

    async fn setactive(&mut self, user: &str, name: &[u8]) -> Next {
        // RFC 5804 §2.8: the empty name deactivates every script.
        let name = if name.is_empty() {
            None
        } else {
            match self.script_name(name) {
                Some(name) => Some(name),
                None => return self.bad_name(),
            }
        };
        let result = self.shared.backend.set_active(user, name.as_deref()).await;
        if result.is_ok() {
            info!(peer = %self.peer, user, script = name.as_deref().unwrap_or(""), "managesieve active script set");
        }
        self.answer(result, "Setactive completed.")
    }

    async fn deletescript(&mut self, user: &str, name: &[u8]) -> Next {
        let Some(name) = self.script_name(name) else { return self.bad_name() };
        let result = self.shared.backend.delete(user, &name).await;
        if result.is_ok() {
            info!(peer = %self.peer, user, script = name, "managesieve script deleted");
        }
        self.answer(result, "Deletescript completed.")
    }

    async fn renamescript(&mut self, user: &str, old: &[u8], new: &[u8]) -> Next {
        let (Some(old), Some(new)) = (self.script_name(old), self.script_name(new)) else { return self.bad_name() };
        let result = self.shared.backend.rename(user, &old, &new).await;
        self.answer(result, "Renamescript completed.")
    }

    async fn havespace(&mut self, user: &str, name: &[u8], size: &Word) -> Next {
        let Some(name) = self.script_name(name) else { return self.bad_name() };
        let size = match size {
            Word::Atom(digits) => digits.parse::<u64>().ok(),
            Word::String(_) => None,
        };
        let Some(size) = size else { return self.usage("HAVESPACE <name> <size>") };
        if let Some(refusal) = self.size_refusal(usize::try_from(size).unwrap_or(usize::MAX)) {
            return self.done(refusal);
        }
        match self.count_refusal(user, &name).await {
            Ok(Some(refusal)) => self.done(refusal),
            Ok(None) => self.done(Response::ok("Putscript would succeed.")),
            Err(error) => self.answer(Err(error), ""),
        }
    }

    /// A script name as UTF-8 text (RFC 5804 §1.6); the store checks its own rules on top.
    fn script_name(&self, name: &[u8]) -> Option<String> {
        let name = std::str::from_utf8(name).ok()?;
        let allowed = !name.is_empty()
            && name.len() <= 1024
            && !name.chars().any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}');
        allowed.then(|| name.to_owned())
    }

    fn bad_name(&mut self) -> Next {
        self.bad(Response::no("Invalid script name (RFC 5804 §1.6: UTF-8 text without control characters)."))
    }

    fn size_refusal(&self, n_bytes: usize) -> Option<Response> {
        let max = self.shared.config.max_script_bytes;
        (n_bytes > max).then(|| {
            Response::no(format!("The script is larger than the limit of {max} octets.")).with_code(Code::QuotaMaxSize)
        })
    }

    /// The refusal when storing `name` would give `user` more scripts than allowed.
    async fn count_refusal(&self, user: &str, name: &str) -> Result<Option<Response>, BackendError> {
        let scripts = self.shared.backend.list(user).await?;
        let max = self.shared.config.max_scripts;
        let is_new = !scripts.iter().any(|script| script.name == name);
        Ok((is_new && scripts.len() >= max).then(|| {
            Response::no(format!("You have the most scripts allowed ({max}); delete one first."))
                .with_code(Code::QuotaMaxScripts)
        }))
    }
}

/// The user name and password of a SASL PLAIN response (RFC 4616): `authzid NUL authcid NUL passwd`, base64.
/// An authorization identity other than the user itself is refused (no one may act for another).
fn decode_plain(response: &[u8]) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(response).ok()?;
    let mut parts = decoded.split(|&byte| byte == 0);
    let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || authcid.is_empty() || password.is_empty() {
        return None;
    }
    if !authzid.is_empty() && authzid != authcid {
        return None;
    }
    Some((String::from_utf8(authcid.to_vec()).ok()?, String::from_utf8(password.to_vec()).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_responses() {
        let encode = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw).into_bytes();
        assert_eq!(decode_plain(&encode(b"\0alice@example.com\0pw")), Some(("alice@example.com".into(), "pw".into())));
        assert_eq!(decode_plain(&encode(b"a@x\0a@x\0pw")), Some(("a@x".into(), "pw".into())));
        assert_eq!(decode_plain(&encode(b"admin@x\0a@x\0pw")), None, "acting for another user");
        assert_eq!(decode_plain(&encode(b"\0a@x\0")), None);
        assert_eq!(decode_plain(&encode(b"\0a@x")), None);
        assert_eq!(decode_plain(&encode(b"\0a@x\0p\0w")), None);
        assert_eq!(decode_plain(b"not base64!"), None);
    }
}
