//! [`Policy`]: the decisions, in order, for each request Postfix sends.

use std::net::IpAddr;
use std::sync::Arc;

use couchmail_greylist::{Attempt, Clock, Greylist, SystemClock, Verdict};
use couchmail_index::{Index, ListingEntry, Snapshot};
use couchmail_model::{ListingAction, ListingKind};
use couchmail_postfix_policy::{Action, CodeReply, PolicyHandler, PolicyRequest, ProtocolState};
use tracing::{debug, info, warn};

use crate::config::PolicyConfig;
use crate::error::Error;
use crate::rate_limit::{Limits, RateLimiter, RateVerdict};

/// What is answered while the index has not been built yet, to clients that did not log in.
pub const NOT_READY_TEXT: &str = "4.3.0 Mail system starting, please try again later";

/// Couchmail's policy decisions over the index, the greylisting engine and the rate limiter: a
/// [`PolicyHandler`] for `couchmail_postfix_policy::run`.
///
/// At RCPT (`smtpd_recipient_restrictions`), in this order:
/// 1. index not ready: `dunno` for a client that logged in or is trusted, else `defer_if_permit` ([`NOT_READY_TEXT`]),
///    so that no listing is skipped and nothing is refused for good;
/// 2. a block listing that matches (mailbox over domain over global, allow over block within one scope:
///    `couchmail_index::Snapshot::find_listing`): `554 5.7.1` with a text saying which list, in words that reveal
///    nothing the client did not send;
/// 3. an allow listing that matches: greylisting is skipped (rate limits still apply);
/// 4. a SASL-authenticated client: never greylisted; its recipients count against its hourly limits (its mailbox's,
///    else its domain's, else the configuration's), and over a limit: `450 4.7.1`;
/// 5. a client in a trusted network: `dunno`;
/// 6. greylisting, unless the recipient's mailbox or domain opts out: `defer_if_permit 4.7.1 Greylisted, ...` for a
///    new triplet.
///
/// At END-OF-MESSAGE (`smtpd_end_of_data_restrictions`) the message of a SASL-authenticated client is counted with
/// its `recipient_count`. Every other request is `dunno`.
///
/// Any failure of our own (the greylisting state, the rate-limit state) is logged and answered `dunno`: greylisting
/// and rate limits are heuristics, and a broken disk must not hold up every inbound message.
pub struct Policy {
    config: PolicyConfig,
    index: Arc<Index>,
    greylist: Arc<Greylist>,
    rate_limiter: Arc<RateLimiter>,
}

impl Policy {
    /// Opens the greylisting and rate-limit state named in `config`, reading the system clock.
    pub fn open(config: PolicyConfig, index: Arc<Index>) -> Result<Policy, Error> {
        Policy::open_with_clock(config, index, Arc::new(SystemClock))
    }

    /// Opens the state named in `config`, reading time from `clock` (tests move a `ManualClock`).
    pub fn open_with_clock(config: PolicyConfig, index: Arc<Index>, clock: Arc<dyn Clock>) -> Result<Policy, Error> {
        config.validate()?;
        let greylist = Greylist::open_with_clock(&config.greylist_state, config.greylist.clone(), clock.clone())?;
        let rate_limiter = RateLimiter::open(config.rate_limit_state.as_deref(), config.rate_window, clock)?;
        Ok(Policy { config, index, greylist: Arc::new(greylist), rate_limiter: Arc::new(rate_limiter) })
    }

    /// The configuration in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The greylisting engine, for counts and purges.
    pub fn greylist(&self) -> &Arc<Greylist> {
        &self.greylist
    }

    /// The rate limiter, for usage reports.
    pub fn rate_limiter(&self) -> &Arc<RateLimiter> {
        &self.rate_limiter
    }

    async fn at_rcpt(&self, request: &PolicyRequest) -> Action {
        let Some(recipient) = request.recipient.as_deref().filter(|recipient| !recipient.is_empty()) else {
            return Action::Dunno;
        };
        let client = request.client_ip();
        let login = request.sasl_login();
        let trusted = client.is_some_and(|client| self.config.is_trusted(client));
        let snapshot = self.index.snapshot();
        if !snapshot.is_ready() {
            if login.is_some() || trusted {
                return Action::Dunno;
            }
            return Action::DeferIfPermit(NOT_READY_TEXT.to_owned());
        }
        let sender = request.sender.as_deref().unwrap_or_default();
        let scope = snapshot.recipient_scope(recipient);
        let listing = snapshot.find_listing(&scope, client, sender);
        if let Some(entry) = listing
            && entry.action() == ListingAction::Block
        {
            info!(%request, listing = entry.key(), "blocked by a listing");
            return block_action(entry, client, sender);
        }
        let allowed = listing.is_some();
        if let Some(login) = login {
            return self.rate_limit(&snapshot, login, request.instance.as_deref()).await;
        }
        if allowed {
            debug!(%request, listing = listing.map(ListingEntry::key), "allowed by a listing: not greylisted");
            return Action::Dunno;
        }
        if trusted {
            return Action::Dunno;
        }
        let greylisting = snapshot.recipient_policy(&scope).greylisting.unwrap_or(self.config.greylisting);
        if !greylisting {
            return Action::Dunno;
        }
        let Some(client) = client else { return Action::Dunno };
        let Some(sender) = request.sender.clone() else { return Action::Dunno };
        self.greylist_check(client, sender, recipient.to_owned()).await
    }

    async fn rate_limit(&self, snapshot: &Snapshot, login: &str, instance: Option<&str>) -> Action {
        let own = snapshot.mailbox_policy(login);
        let limits = Limits {
            messages: own.messages_per_hour.or(self.config.messages_per_hour),
            recipients: own.recipients_per_hour.or(self.config.recipients_per_hour),
        };
        let window_minutes = self.config.rate_window.as_secs().div_ceil(60);
        let text = match self.rate_limiter.check_recipient(login, instance, limits) {
            RateVerdict::Allowed => return Action::Dunno,
            RateVerdict::TooManyMessages { sent, limit } => {
                format!(
                    "4.7.1 Sending limit reached: {sent} messages in the last {window_minutes} minutes (at most {limit}); try again later"
                )
            }
            RateVerdict::TooManyRecipients { sent, limit } => {
                format!(
                    "4.7.1 Sending limit reached: {sent} recipients in the last {window_minutes} minutes (at most {limit}); try again later"
                )
            }
        };
        info!(login, %text, "rate limited");
        match CodeReply::new(450, text) {
            Ok(reply) => Action::Code(reply),
            Err(error) => {
                warn!(%error, "a rate-limit reply did not build; deferring without text");
                Action::Defer(String::new())
            }
        }
    }

    async fn greylist_check(&self, client: IpAddr, sender: String, recipient: String) -> Action {
        let greylist = self.greylist.clone();
        let checked = tokio::task::spawn_blocking(move || {
            greylist.check(&Attempt { client_address: client, sender: &sender, recipient: &recipient })
        })
        .await;
        match checked {
            Ok(Ok(Verdict::Defer { retry_after })) => {
                // Whole seconds, rounded up, so that a retry after the number said always passes.
                let seconds = retry_after.as_millis().div_ceil(1000);
                Action::DeferIfPermit(format!("4.7.1 Greylisted, please try again in {seconds} seconds"))
            }
            Ok(Ok(Verdict::Pass(reason))) => {
                debug!(%client, ?reason, "greylisting passed");
                Action::Dunno
            }
            Ok(Err(error)) => {
                warn!(%error, "greylisting failed; letting the message through");
                Action::Dunno
            }
            Err(error) => {
                warn!(%error, "greylisting task failed; letting the message through");
                Action::Dunno
            }
        }
    }

    async fn at_end_of_message(&self, request: &PolicyRequest) -> Action {
        let Some(login) = request.sasl_login() else { return Action::Dunno };
        let counted = self.rate_limiter.record_message(login, request.instance.as_deref(), request.recipient_count);
        let limiter = self.rate_limiter.clone();
        match tokio::task::spawn_blocking(move || limiter.persist(&counted)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "a sent message was counted in memory only"),
            Err(error) => warn!(%error, "a sent message was counted in memory only"),
        }
        Action::Dunno
    }
}

impl PolicyHandler for Policy {
    async fn decide(&self, request: &PolicyRequest) -> Action {
        match request.protocol_state {
            Some(ProtocolState::Rcpt) => self.at_rcpt(request).await,
            Some(ProtocolState::EndOfMessage) => self.at_end_of_message(request).await,
            _ => Action::Dunno,
        }
    }
}

/// The refusal for a block listing. It names the list by scope (the recipient's, the recipient domain's, this
/// server's) and what matched by the client's own data (its address, its sender), never the listing's value, the
/// final mailbox an alias leads to, or the note: those are the list owner's business.
fn block_action(entry: &ListingEntry, client: Option<IpAddr>, sender: &str) -> Action {
    let list = match entry.level() {
        "mailbox" => "the recipient's blocklist",
        "domain" => "the recipient domain's blocklist",
        _ => "this server's blocklist",
    };
    let what = match entry.kind() {
        ListingKind::Sender => format!("Sender address <{sender}>"),
        ListingKind::SenderDomain => {
            let domain = sender.rsplit_once('@').map_or(sender, |(_, domain)| domain);
            format!("Sender domain {domain}")
        }
        ListingKind::Client => match client {
            Some(client) => format!("Client address {client}"),
            None => "Client address".to_owned(),
        },
    };
    let text = format!("5.7.1 {what} is on {list}");
    match CodeReply::new(554, text) {
        Ok(reply) => Action::Code(reply),
        // A 554 with a 5.x.x code always builds; were it not to, Postfix's own reject code says the same.
        Err(_) => Action::Reject(format!("5.7.1 Blocked by {list}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly on an unexpected error")]
mod tests {
    use couchmail_index::Snapshot;
    use couchmail_testkit::fixtures::*;

    use super::*;

    fn entry(key: &str) -> ListingEntry {
        let snapshot = Snapshot::from_documents([listing(key)]);
        snapshot.listing(&couchmail_model::ListingKey::parse(key).unwrap().to_string()).unwrap().clone()
    }

    #[test]
    fn block_texts_say_which_list_in_the_clients_words() {
        let client = Some("192.0.2.7".parse().unwrap());
        let check = |key: &str, sender: &str, expected: &str| {
            assert_eq!(block_action(&entry(key), client, sender).to_string(), expected, "{key}");
        };
        check(
            "mailbox:alice@example.com:block:sender:spam@bad.example",
            "SPAM+x@bad.example",
            "554 5.7.1 Sender address <SPAM+x@bad.example> is on the recipient's blocklist",
        );
        check(
            "domain:example.com:block:sender-domain:bad.example",
            "x@mail.bad.example",
            "554 5.7.1 Sender domain mail.bad.example is on the recipient domain's blocklist",
        );
        check(
            "global:block:client:192.0.2.0/24",
            "",
            "554 5.7.1 Client address 192.0.2.7 is on this server's blocklist",
        );
    }
}
