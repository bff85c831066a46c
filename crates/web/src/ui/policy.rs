//! `/policy`: greylisting, spam thresholds and sending limits at a glance —
//! every domain the principal may read, and the mailboxes that set their own
//! (issue #5's `PolicySettings`). The values are changed on each domain's and
//! mailbox's page; this page only gathers them, from the index.
//!
//! The fields those two pages share, and their view, are here too: [`PolicyForm`] reads them from a settings
//! form and [`PolicyView`] shows them, in forms and in this page's tables alike.

use axum::extract::{Query, State};
use axum::response::Response;
use couchmail_model::PolicySettings;
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::access::{Action, Principal, Resource};
use crate::ui::forms::{optional_number, optional_score, tristate, tristate_text};
use crate::ui::mailboxes::readable_domains;
use crate::ui::page::ser;
use crate::ui::{SessionUser, UiError, UiState, domains, mailboxes, paging, render};

/// Most mailboxes with settings of their own shown.
const MAX_MAILBOX_ROWS: usize = 500;

/// The greylisting, spam and sending-limit fields of a domain's or a mailbox's settings form.
#[derive(Deserialize)]
pub(crate) struct PolicyForm {
    #[serde(default)]
    greylisting: String,
    #[serde(default)]
    spam_threshold: String,
    #[serde(default)]
    spam_reject: String,
    #[serde(default)]
    messages_per_hour: Option<String>,
    #[serde(default)]
    recipients_per_hour: Option<String>,
}

impl PolicyForm {
    /// Sets `policy` from the form. The sending limits are in the form only for those who may change them;
    /// absent, they keep their value.
    pub(crate) fn apply(&self, policy: &mut PolicySettings) -> Result<(), UiError> {
        policy.greylisting = tristate("greylisting", &self.greylisting)?;
        policy.spam_threshold = optional_score("spam_threshold", &self.spam_threshold)?;
        policy.spam_reject = optional_score("spam_reject", &self.spam_reject)?;
        if let Some(text) = &self.messages_per_hour {
            policy.messages_per_hour = optional_number("messages_per_hour", text)?;
        }
        if let Some(text) = &self.recipients_per_hour {
            policy.recipients_per_hour = optional_number("recipients_per_hour", text)?;
        }
        Ok(())
    }
}

/// Whether the sending limits of `before` and `after` differ: changing them needs authority over the limits.
pub(crate) fn sending_limits_differ(before: &PolicySettings, after: &PolicySettings) -> bool {
    before.messages_per_hour != after.messages_per_hour || before.recipients_per_hour != after.recipients_per_hour
}

/// Policy settings as the pages show them.
#[derive(Debug, Serialize)]
pub(crate) struct PolicyView {
    greylisting: &'static str,
    spam_threshold: Option<String>,
    spam_reject: Option<String>,
    messages_per_hour: Option<u32>,
    recipients_per_hour: Option<u32>,
}

impl From<&PolicySettings> for PolicyView {
    fn from(policy: &PolicySettings) -> PolicyView {
        PolicyView {
            greylisting: tristate_text(policy.greylisting),
            spam_threshold: policy.spam_threshold.map(|score| score.to_string()),
            spam_reject: policy.spam_reject.map(|score| score.to_string()),
            messages_per_hour: policy.messages_per_hour,
            recipients_per_hour: policy.recipients_per_hour,
        }
    }
}

/// One row: a domain's or a mailbox's own settings.
#[derive(Debug, Serialize)]
struct PolicyRow {
    name: String,
    href: String,
    #[serde(flatten)]
    settings: PolicyView,
}

fn row(name: &str, href: String, policy: &PolicySettings) -> PolicyRow {
    PolicyRow { name: name.to_owned(), href, settings: PolicyView::from(policy) }
}

/// `GET /policy?domain=`.
pub(crate) async fn show(
    State(state): State<UiState>,
    user: SessionUser,
    Query(query): Query<paging::ListQuery>,
) -> Result<Response, UiError> {
    if let Principal::User { .. } = user.principal {
        user.principal.authorize(Action::Read, &Resource::Installation)?;
    }
    let domains = readable_domains(&user.principal, query.domain())?;
    let snapshot = state.api.index.snapshot();
    let mut domain_rows: Vec<PolicyRow> = snapshot
        .domains()
        .filter(|domain| domains.contains(domain.name()))
        .map(|domain| row(domain.name(), domains::href(domain.name()), domain.policy()))
        .collect();
    domain_rows.sort_by(|a, b| a.name.cmp(&b.name));
    let mut mailbox_rows: Vec<PolicyRow> = snapshot
        .mailboxes()
        .filter(|mailbox| domains.contains(mailbox.domain()) && !mailbox.policy().is_empty())
        .map(|mailbox| row(mailbox.address(), mailboxes::href(mailbox.address()), &mailbox.policy()))
        .collect();
    mailbox_rows.sort_by(|a, b| a.name.cmp(&b.name));
    let n_mailboxes = mailbox_rows.len();
    mailbox_rows.truncate(MAX_MAILBOX_ROWS);
    Ok(render(
        Some(&user),
        "policy.html",
        context! {
            title => "Greylisting and spam",
            nav => "policy",
            domains => ser(&domain_rows),
            mailboxes => ser(&mailbox_rows),
            more_mailboxes => n_mailboxes.saturating_sub(MAX_MAILBOX_ROWS),
        },
    ))
}
