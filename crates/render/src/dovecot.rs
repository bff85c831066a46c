//! Dovecot 2.3 `dovecot.conf` for the stack: IMAP over implicit TLS, LMTP for Postfix, Lua auth, quota and Sieve.
//!
//! The settings follow Dovecot 2.3.19 and Pigeonhole 0.5.19, the versions of
//! Debian 12. Dovecot 2.4 renamed most of them (see the report of issue #3
//! and the comments below): this file will need a 2.4 twin, not an edit.

use crate::spam::{self, JUNK_MAILBOX, TRASH_MAILBOX};
use crate::stack::{Listen, Stack};
use crate::text::{Text, path_text};
use crate::tls;

/// Special-use mailboxes every user gets, created and subscribed on first
/// login, sorted by name (RFC 6154). Spam filing and training use Junk and Trash by these names.
const SPECIAL_USE_MAILBOXES: [(&str, &str); 4] =
    [("Drafts", "\\Drafts"), (JUNK_MAILBOX, "\\Junk"), ("Sent", "\\Sent"), (TRASH_MAILBOX, "\\Trash")];

/// The Dovecot instance name shown by `doveadm instance list` and used in its process titles.
const INSTANCE_NAME: &str = "couchmail";

/// Renders `dovecot.conf`.
pub(crate) fn dovecot_conf(stack: &Stack) -> String {
    let paths = &stack.paths;
    let mut text =
        Text::with_header("Dovecot 2.3 configuration of the couchmail stack; `doveconf -n` shows what it sets.");
    text.blank();
    text.setting("protocols", "imap lmtp");
    let listen = match stack.listen {
        Listen::AllInterfaces => "*, ::".to_owned(),
        Listen::Address(address) => address.to_string(),
    };
    text.setting("listen", &listen);
    text.setting("hostname", &stack.hostname);
    text.setting("instance_name", INSTANCE_NAME);
    text.setting("base_dir", &path_text(&paths.dovecot_base_dir));
    text.setting("state_dir", &path_text(&paths.dovecot_state_dir));
    text.setting("log_path", &path_text(&paths.dovecot_log));
    let postmaster_address = match &stack.postmaster_address {
        Some(address) => address.clone(),
        None => format!("postmaster@{}", stack.hostname),
    };
    text.setting("postmaster_address", &postmaster_address);
    text.blank();

    text.comment("TLS on every listener: TLS 1.2 and newer with Mozilla's intermediate ciphers.");
    text.comment("Without ssl_dh the DHE suites are never chosen; every client offers ECDHE, which comes first.");
    text.setting("ssl", "required");
    text.setting("ssl_cert", &format!("<{}", path_text(&paths.tls_certificate)));
    text.setting("ssl_key", &format!("<{}", path_text(&paths.tls_key)));
    text.setting("ssl_min_protocol", tls::DOVECOT_MIN_PROTOCOL);
    text.setting("ssl_cipher_list", tls::MOZILLA_INTERMEDIATE_CIPHERS);
    text.setting("ssl_prefer_server_ciphers", "no");
    text.blank();

    text.comment("Authentication: couchmail answers over HTTP through auth.lua; Dovecot verifies the password hash.");
    text.comment(
        "Dovecot 2.4: auth_allow_cleartext = no, %{user | lower}, passdb lua { lua_file = ...; use_worker = yes }.",
    );
    text.setting("disable_plaintext_auth", "yes");
    text.setting("auth_mechanisms", "plain login");
    text.setting("auth_username_format", "%Lu");
    text.setting("auth_verbose", "yes");
    text.setting("auth_failure_delay", &format!("{} secs", stack.auth_failure_delay_secs));
    text.setting("auth_cache_size", &format!("{}k", stack.auth_cache.size_bytes.div_ceil(1024)));
    text.setting("auth_cache_ttl", &format!("{} secs", stack.auth_cache.ttl_secs));
    text.setting("auth_cache_negative_ttl", &format!("{} secs", stack.auth_cache.negative_ttl_secs));
    let lua_args = format!("file={} blocking=yes", path_text(&paths.dovecot_auth_script()));
    text.open("passdb");
    text.setting("driver", "lua");
    text.setting("args", &lua_args);
    text.close();
    text.open("userdb");
    text.setting("driver", "lua");
    text.setting("args", &lua_args);
    text.close();
    text.blank();

    text.comment("Mail is stored as vmail in ~/Maildir; the auth endpoint returns home, uid and gid.");
    text.comment("Dovecot 2.4: mail_driver = maildir, mail_path = ~/Maildir.");
    text.setting("mail_location", "maildir:~/Maildir");
    text.setting("mail_uid", &stack.vmail.uid.to_string());
    text.setting("mail_gid", &stack.vmail.gid.to_string());
    text.setting("first_valid_uid", &stack.vmail.uid.to_string());
    text.setting("last_valid_uid", &stack.vmail.uid.to_string());
    text.setting("first_valid_gid", &stack.vmail.gid.to_string());
    text.setting("last_valid_gid", &stack.vmail.gid.to_string());
    text.setting("mail_plugins", "$mail_plugins quota");
    text.open("namespace inbox");
    text.setting("inbox", "yes");
    for (name, special_use) in SPECIAL_USE_MAILBOXES {
        text.open(&format!("mailbox {name}"));
        text.setting("auto", "subscribe");
        text.setting("special_use", special_use);
        text.close();
    }
    text.close();
    text.blank();

    text.comment("IMAP only over implicit TLS: the plain-text listener is off.");
    text.open("service imap-login");
    text.open("inet_listener imap");
    text.setting("port", "0");
    text.close();
    text.open("inet_listener imaps");
    text.setting("port", &stack.ports.imaps.to_string());
    text.setting("ssl", "yes");
    text.close();
    text.close();
    text.comment("Postfix delivers over this socket and nothing else may.");
    text.open("service lmtp");
    text.open(&format!("unix_listener {}", path_text(&paths.lmtp_socket)));
    text.setting("group", "postfix");
    text.setting("mode", "0600");
    text.setting("user", "postfix");
    text.close();
    text.close();
    text.comment("Postfix's SASL client (smtpd_sasl_type = dovecot) asks here.");
    text.open("service auth");
    text.open(&format!("unix_listener {}", path_text(&paths.auth_socket)));
    text.setting("group", "postfix");
    text.setting("mode", "0660");
    text.setting("user", "postfix");
    text.close();
    text.close();
    text.comment(
        "The Lua script only talks HTTP to couchmail: it needs no root, only to read auth.lua (group dovecot).",
    );
    text.open("service auth-worker");
    text.setting("user", "$default_internal_user");
    text.close();
    text.blank();

    if stack.spam.is_some() {
        text.comment("IMAP shows quota usage and runs IMAPSieve (spam training); LMTP runs Sieve.");
        text.open("protocol imap");
        text.setting("mail_plugins", "$mail_plugins imap_quota imap_sieve");
    } else {
        text.comment("IMAP shows quota usage; LMTP runs Sieve.");
        text.open("protocol imap");
        text.setting("mail_plugins", "$mail_plugins imap_quota");
    }
    text.close();
    text.open("protocol lmtp");
    text.setting("mail_plugins", "$mail_plugins sieve");
    text.close();
    text.comment("user+tag@ is delivered to user's INBOX, not to a mailbox named tag.");
    text.setting("recipient_delimiter", "+");
    text.setting("lmtp_save_to_detail_mailbox", "no");
    text.comment("Sieve may file into a mailbox that does not exist yet.");
    text.setting("lda_mailbox_autocreate", "yes");
    text.setting("lda_mailbox_autosubscribe", "yes");
    text.blank();

    text.comment("quota_rule comes from the userdb answer; without one the user has no limit.");
    text.comment("Sieve scripts come from couchmail's dict server: priv/sieve/name/active, then priv/sieve/data/<id>.");
    text.comment("Dovecot 2.4: sieve_script personal { driver = dict; name = active; bin_path = ~/.sieve-bin;");
    text.comment(
        "dict proxy { socket_path = <dict socket>; name = sieve } } and quota \"User quota\" { driver = maildir }.",
    );
    text.open("plugin");
    text.setting("quota", "maildir:User quota");
    text.setting(
        "sieve",
        &format!("dict:proxy:{}:sieve;name=active;bindir=~/.sieve-bin", path_text(&paths.dict_socket)),
    );
    match &stack.spam {
        Some(spam) => {
            text.comment("SpamAssassin (docs/spam.md): the spam filter runs first at delivery; the administrator's");
            text.comment("sieve_before, if any, second. IMAPSieve trains on moves into and out of Junk. Only global");
            text.comment("scripts may run programs. Dovecot 2.4: sieve_script blocks of type before and imapsieve.");
            for (key, value) in spam::dovecot_plugin_settings(stack, spam) {
                text.setting(&key, &value);
            }
        }
        None => {
            if let Some(sieve_before) = &stack.sieve_before {
                text.setting("sieve_before", &path_text(sieve_before));
            }
        }
    }
    text.close();
    text.finish()
}
