//! Postfix 3.7 `main.cf` and `master.cf` for the stack (postconf(5), master(5)).
//!
//! The policy, in the order a message meets it:
//! - postscreen(8), on by default, screens port 25's clients (pregreet and
//!   weighted DNSBL tests) before smtpd sees them (postscreen.rs).
//! - Port 25 (MX) offers STARTTLS and no AUTH, accepts mail only for the
//!   domains couchmail serves (`reject_unauth_destination`) and only for
//!   addresses that exist (`reject_unlisted_recipient`, at RCPT).
//! - Ports 587 (STARTTLS required) and 465 (implicit TLS) accept only
//!   clients that authenticated through Dovecot SASL, and only with a MAIL
//!   FROM address the login owns according to couchmail's `senders` map.
//! - Nothing is ever permitted because of the client's IP address: tests
//!   connect from 127.0.0.1, so `permit_mynetworks` would make an open relay
//!   that every test passes through.
//! - Domains, mailboxes and aliases come from couchmail's socketmap; delivery
//!   goes to Dovecot over LMTP.
//!
//! Every service runs outside a chroot: the sockets of couchmail and Dovecot
//! live in the runtime directory, not below Postfix's queue directory.

use std::net::IpAddr;

use crate::postscreen;
use crate::stack::{Listen, Outbound, Stack};
use crate::text::{Text, path_text};
use crate::tls;

/// What the submission ports require of a client before it may send anything:
/// a successful AUTH (smtpd_delay_reject makes this bite at RCPT TO).
const SUBMISSION_CLIENT_RESTRICTIONS: &str = "permit_sasl_authenticated, reject";

/// Sender rule of the submission ports.
///
/// `reject_sender_login_mismatch` is the union of the authenticated and the
/// unauthenticated variant. For an authenticated client it refuses a MAIL
/// FROM address that the `senders` map does not list as owned by the login,
/// including an address the map does not know at all: a user may send as
/// their own address and the aliases they own, and as nobody else. The
/// unauthenticated half never fires here because the client restrictions
/// already refuse unauthenticated clients, but it keeps the port closed if
/// those were ever loosened.
const SUBMISSION_SENDER_RESTRICTIONS: &str = "reject_non_fqdn_sender, reject_sender_login_mismatch";

/// Authenticated clients may relay anywhere; nobody else may relay.
const SUBMISSION_RELAY_RESTRICTIONS: &str = "permit_sasl_authenticated, reject";

/// Recipient rules of the submission ports: an unknown address in a domain we
/// serve is refused at RCPT instead of bouncing later.
const SUBMISSION_RECIPIENT_RESTRICTIONS: &str = "reject_non_fqdn_recipient, reject_unlisted_recipient";

/// Relay rule of port 25: mail is accepted only for domains we serve.
const MX_RELAY_RESTRICTIONS: &str = "reject_unauth_destination";

/// Recipient rules of port 25; a policy service (greylisting) goes after these.
const MX_RECIPIENT_RESTRICTIONS: &str = "reject_non_fqdn_recipient, reject_unlisted_recipient";

/// Renders `main.cf`.
pub(crate) fn main_cf(stack: &Stack) -> String {
    let paths = &stack.paths;
    let socketmap = |map: &str| format!("socketmap:unix:{}:{map}", path_text(&paths.socketmap_socket));
    let mut text = Text::with_header("Postfix main.cf of the couchmail stack; postconf(5) describes every parameter.");
    text.blank();
    text.setting("compatibility_level", "3.6");
    text.blank();

    text.comment("Identity, and Postfix's own directories and log.");
    text.setting("myhostname", &stack.hostname);
    text.setting("smtpd_banner", "$myhostname ESMTP");
    text.setting("queue_directory", &path_text(&paths.postfix_queue_dir));
    text.setting("data_directory", &path_text(&paths.postfix_data_dir));
    text.setting("maillog_file", &path_text(&paths.postfix_log));
    text.setting("maillog_file_prefixes", &format!("/dev/stdout, {}/", path_text(&paths.log_dir)));
    let (interfaces, protocols) = match stack.listen {
        Listen::AllInterfaces => ("all".to_owned(), "all"),
        Listen::Address(address @ IpAddr::V4(_)) => (address.to_string(), "ipv4"),
        Listen::Address(address @ IpAddr::V6(_)) => (format!("[{address}]"), "ipv6"),
    };
    text.setting("inet_interfaces", &interfaces);
    text.setting("inet_protocols", protocols);
    text.blank();

    text.comment("Nothing is delivered to local Unix accounts: every domain is virtual and lives in couchmail.");
    text.setting("mydestination", "");
    text.setting("local_transport", "error:local delivery is disabled");
    text.setting("alias_maps", "");
    text.setting("alias_database", "");
    text.setting("relay_domains", "");
    text.setting("biff", "no");
    text.blank();

    text.comment("Domains, mailboxes and aliases are answered by couchmail's socketmap server.");
    text.comment("Addresses in an alias domain that no alias matches are unknown, so they are refused at RCPT.");
    text.setting("virtual_mailbox_domains", &socketmap("domains"));
    text.setting("virtual_mailbox_maps", &socketmap("mailboxes"));
    text.setting("virtual_alias_domains", &socketmap("alias-domains"));
    text.setting("virtual_alias_maps", &socketmap("aliases"));
    text.setting("smtpd_sender_login_maps", &socketmap("senders"));
    text.comment("Delivery goes to Dovecot over LMTP; user+tag@ reaches user@ (Dovecot files it into INBOX).");
    text.setting("virtual_transport", &format!("lmtp:unix:{}", path_text(&paths.lmtp_socket)));
    text.setting("recipient_delimiter", "+");
    text.setting("message_size_limit", &stack.message_size_limit.to_string());
    text.comment("Only local(8) reads this limit and it must not be below message_size_limit; quotas are Dovecot's.");
    text.setting("mailbox_size_limit", "0");
    text.blank();

    text.comment("Mail for other domains.");
    match stack.outbound {
        Outbound::Direct => text.setting("default_transport", "smtp"),
        Outbound::Error => text.setting("default_transport", "error:outbound mail is disabled"),
    }
    text.comment("Outgoing TLS is opportunistic with Postfix's default ciphers: other servers are not ours to choose.");
    text.setting("smtp_tls_security_level", "may");
    text.setting("smtp_tls_loglevel", "1");
    text.blank();

    text.comment("Incoming TLS on every port: TLS 1.2 and newer with Mozilla's intermediate ciphers.");
    text.comment("The server uses the \"high\" grade, redefined here, so that outgoing mail keeps Postfix's defaults.");
    text.setting(
        "smtpd_tls_chain_files",
        &format!("{}, {}", path_text(&paths.tls_key), path_text(&paths.tls_certificate)),
    );
    text.setting("smtpd_tls_security_level", "may");
    text.setting("smtpd_tls_protocols", tls::POSTFIX_PROTOCOLS);
    text.setting("smtpd_tls_mandatory_protocols", tls::POSTFIX_PROTOCOLS);
    text.setting("smtpd_tls_ciphers", "high");
    text.setting("smtpd_tls_mandatory_ciphers", "high");
    text.setting("tls_high_cipherlist", tls::MOZILLA_INTERMEDIATE_CIPHERS);
    text.setting("tls_preempt_cipherlist", "no");
    text.setting("smtpd_tls_loglevel", "1");
    text.setting("smtpd_tls_received_header", "yes");
    text.blank();

    text.comment("Authentication through Dovecot; master.cf turns it on for the submission ports only.");
    text.setting("smtpd_sasl_auth_enable", "no");
    text.setting("smtpd_sasl_type", "dovecot");
    text.setting("smtpd_sasl_path", &path_text(&paths.auth_socket));
    text.setting("smtpd_sasl_security_options", "noanonymous");
    text.setting("smtpd_sasl_tls_security_options", "noanonymous");
    text.setting("smtpd_tls_auth_only", "yes");
    text.blank();

    text.comment("Restrictions of port 25; master.cf replaces them on the submission ports.");
    text.comment("No rule permits by client address: mynetworks, localhost included, is not trusted.");
    text.setting("smtpd_helo_required", "yes");
    text.setting("disable_vrfy_command", "yes");
    text.setting("smtpd_relay_restrictions", MX_RELAY_RESTRICTIONS);
    text.setting("smtpd_recipient_restrictions", &with_policy(stack, MX_RECIPIENT_RESTRICTIONS));
    if stack.policy {
        // Our own failure must never bounce mail: without an answer, Postfix defers.
        text.setting("smtpd_policy_service_default_action", "451 4.3.5 Policy service unavailable, try again later");
    }
    text.setting("smtpd_reject_unlisted_recipient", "yes");
    text.setting("smtpd_data_restrictions", "reject_unauth_pipelining");
    if let Some(postscreen) = &stack.postscreen {
        text.blank();
        postscreen::main_cf(postscreen, &mut text);
    }
    if let Some(reject) = stack.spam.as_ref().and_then(|spam| spam.smtp_reject.as_ref()) {
        text.blank();
        text.comment(&format!(
            "SpamAssassin at SMTP time (docs/spam.md): spamass-milter refuses a message scoring {} or more at the",
            reject.score
        ));
        text.comment("end of DATA, so the sending server tells its user and nobody here bounces to a forged sender.");
        text.comment(
            "A milter that is down or too slow lets the mail through: the delivery-time scan still files spam.",
        );
        text.comment("master.cf turns it off on the submission ports: users' own mail is not refused for its content.");
        text.setting("smtpd_milters", &format!("unix:{}", path_text(&reject.milter_socket)));
        text.setting("milter_default_action", "accept");
        text.setting("milter_protocol", "6");
    }
    text.finish()
}

/// One master.cf service line: `name type private unpriv chroot wakeup maxproc command`,
/// with every chroot column `n`.
pub(crate) struct Service<'a> {
    name: String,
    kind: &'a str,
    private: &'a str,
    unprivileged: &'a str,
    wakeup: &'a str,
    max_processes: &'a str,
    command: &'a str,
    options: Vec<(&'a str, String)>,
}

impl<'a> Service<'a> {
    pub(crate) fn new(name: impl Into<String>, kind: &'a str, command: &'a str) -> Service<'a> {
        Service {
            name: name.into(),
            kind,
            private: "-",
            unprivileged: "-",
            wakeup: "-",
            max_processes: "-",
            command,
            options: Vec::new(),
        }
    }

    pub(crate) fn private(mut self, private: &'a str) -> Service<'a> {
        self.private = private;
        self
    }

    fn wakeup(mut self, wakeup: &'a str) -> Service<'a> {
        self.wakeup = wakeup;
        self
    }

    pub(crate) fn max_processes(mut self, max_processes: &'a str) -> Service<'a> {
        self.max_processes = max_processes;
        self
    }

    fn option(mut self, key: &'a str, value: impl Into<String>) -> Service<'a> {
        self.options.push((key, value.into()));
        self
    }

    fn write(&self, text: &mut Text) {
        text.line(&columns([
            &self.name,
            self.kind,
            self.private,
            self.unprivileged,
            "n",
            self.wakeup,
            self.max_processes,
            self.command,
        ]));
        for (key, value) in &self.options {
            // master(5): a value with spaces or commas needs the { name = value } form.
            if value.contains([' ', ',']) {
                text.line(&format!("  -o {{ {key} = {value} }}"));
            } else {
                text.line(&format!("  -o {key}={value}"));
            }
        }
    }
}

/// The eight master.cf columns, aligned for reading.
fn columns(fields: [&str; 8]) -> String {
    let [name, kind, private, unprivileged, chroot, wakeup, max_processes, command] = fields;
    format!("{name:<14} {kind:<10} {private:<7} {unprivileged:<7} {chroot:<7} {wakeup:<7} {max_processes:<7} {command}")
}

/// `address:port` as master.cf wants an inet service name.
fn inet_name(listen: Listen, port: u16) -> String {
    match listen {
        Listen::AllInterfaces => port.to_string(),
        Listen::Address(IpAddr::V4(address)) => format!("{address}:{port}"),
        Listen::Address(IpAddr::V6(address)) => format!("[{address}]:{port}"),
    }
}

/// The public port 25 services: `smtpd` alone, or with [`Stack::postscreen`] set, `postscreen` in front
/// of `smtpd pass` with its helpers (postscreen.rs).
fn mx_services(stack: &Stack) -> Vec<Service<'static>> {
    let name = inet_name(stack.listen, stack.ports.smtp);
    match stack.postscreen {
        Some(_) => postscreen::mx_services(name),
        None => vec![Service::new(name, "inet", "smtpd").private("n")],
    }
}

/// A submission service (587 or 465): TLS required, AUTH on, and only an
/// authenticated client may send, as an address it owns. `tls_options` come
/// right after the log name (465 adds wrapper mode).
fn submission_service<'a>(
    stack: &Stack,
    port: u16,
    syslog_name: &'a str,
    tls_options: &[(&'a str, &'a str)],
) -> Service<'a> {
    let mut service =
        Service::new(inet_name(stack.listen, port), "inet", "smtpd").private("n").option("syslog_name", syslog_name);
    for (key, value) in tls_options {
        service = service.option(key, *value);
    }
    if stack.spam.as_ref().is_some_and(|spam| spam.smtp_reject.is_some()) {
        service = service.option("smtpd_milters", "");
    }
    service = service
        .option("smtpd_tls_security_level", "encrypt")
        .option("smtpd_sasl_auth_enable", "yes")
        .option("smtpd_client_restrictions", SUBMISSION_CLIENT_RESTRICTIONS)
        .option("smtpd_sender_restrictions", SUBMISSION_SENDER_RESTRICTIONS)
        .option("smtpd_relay_restrictions", SUBMISSION_RELAY_RESTRICTIONS)
        .option("smtpd_recipient_restrictions", with_policy(stack, SUBMISSION_RECIPIENT_RESTRICTIONS));
    if stack.policy {
        // The policy service counts a logged-in user's messages and recipients for the sending
        // limits once the message is complete.
        service = service.option("smtpd_end_of_data_restrictions", policy_check(stack));
    }
    service
}

/// `check_policy_service` for couchmail's policy service.
fn policy_check(stack: &Stack) -> String {
    format!("check_policy_service unix:{}", path_text(&stack.paths.policy_socket))
}

/// `restrictions` followed by the policy service when it is on: last, after the checks that
/// refuse unknown recipients, so that it greylists only mail that could be delivered, and
/// before any `permit_*` (there is none in these lists).
fn with_policy(stack: &Stack, restrictions: &str) -> String {
    if stack.policy { format!("{restrictions}, {}", policy_check(stack)) } else { restrictions.to_owned() }
}

/// Renders `master.cf`.
pub(crate) fn master_cf(stack: &Stack) -> String {
    let mut text = Text::with_header("Postfix master.cf of the couchmail stack; master(5) describes the columns.");
    text.comment("Every chroot column is n: the sockets Postfix talks to live outside its queue directory.");
    text.blank();
    text.line(&columns(["# service", "type", "private", "unpriv", "chroot", "wakeup", "maxproc", "command + args"]));
    for service in mx_services(stack) {
        service.write(&mut text);
    }
    submission_service(stack, stack.ports.submission, "postfix/submission", &[]).write(&mut text);
    submission_service(stack, stack.ports.submissions, "postfix/submissions", &[("smtpd_tls_wrappermode", "yes")])
        .write(&mut text);

    // Postfix's internal services, as in its stock master.cf minus local(8) and
    // virtual(8), which this stack never delivers with.
    let internal = [
        Service::new("pickup", "unix", "pickup").private("n").wakeup("60").max_processes("1"),
        Service::new("cleanup", "unix", "cleanup").private("n").max_processes("0"),
        Service::new("qmgr", "unix", "qmgr").private("n").wakeup("300").max_processes("1"),
        Service::new("tlsmgr", "unix", "tlsmgr").wakeup("1000?").max_processes("1"),
        Service::new("rewrite", "unix", "trivial-rewrite"),
        Service::new("bounce", "unix", "bounce").max_processes("0"),
        Service::new("defer", "unix", "bounce").max_processes("0"),
        Service::new("trace", "unix", "bounce").max_processes("0"),
        Service::new("verify", "unix", "verify").max_processes("1"),
        Service::new("flush", "unix", "flush").private("n").wakeup("1000?").max_processes("0"),
        Service::new("proxymap", "unix", "proxymap"),
        Service::new("proxywrite", "unix", "proxymap").max_processes("1"),
        Service::new("smtp", "unix", "smtp"),
        Service::new("relay", "unix", "smtp").option("syslog_name", "postfix/$service_name"),
        Service::new("showq", "unix", "showq").private("n"),
        Service::new("error", "unix", "error"),
        Service::new("retry", "unix", "error"),
        Service::new("discard", "unix", "discard"),
        Service::new("lmtp", "unix", "lmtp"),
        Service::new("anvil", "unix", "anvil").max_processes("1"),
        Service::new("scache", "unix", "scache").max_processes("1"),
        Service::new("postlog", "unix-dgram", "postlogd").private("n").max_processes("1"),
    ];
    for service in internal {
        service.write(&mut text);
    }
    text.finish()
}
