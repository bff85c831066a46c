//! `/policy`: greylisting, spam thresholds and sending limits at a glance —
//! every domain the principal may read, and the mailboxes that set their own
//! (issue #5's `PolicySettings`). The values are changed on each domain's and
//! mailbox's page; this page only gathers them, from the index.

use axum::extract::{Query, State};
use axum::response::Response;
use couchmail_model::PolicySettings;
use minijinja::context;
use serde::Serialize;

use crate::access::{Action, Principal, Resource};
use crate::ui::forms::tristate_text;
use crate::ui::mailboxes::readable_domains;
use crate::ui::page::{ser, url_encode};
use crate::ui::{SessionUser, UiError, UiState, paging, render};

/// Most mailboxes with settings of their own shown.
const MAX_MAILBOX_ROWS: usize = 500;

/// One row: a domain's or a mailbox's own settings.
#[derive(Debug, Serialize)]
struct PolicyRow {
    name: String,
    href: String,
    greylisting: &'static str,
    spam_threshold: Option<String>,
    spam_reject: Option<String>,
    messages_per_hour: Option<u32>,
    recipients_per_hour: Option<u32>,
}

fn row(name: &str, href: String, policy: &PolicySettings) -> PolicyRow {
    PolicyRow {
        name: name.to_owned(),
        href,
        greylisting: tristate_text(policy.greylisting),
        spam_threshold: policy.spam_threshold.map(|score| score.to_string()),
        spam_reject: policy.spam_reject.map(|score| score.to_string()),
        messages_per_hour: policy.messages_per_hour,
        recipients_per_hour: policy.recipients_per_hour,
    }
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
    let readable = |domain: &str| domains.as_ref().is_none_or(|domains| domains.contains(domain));
    let snapshot = state.api.index.snapshot();
    let mut domain_rows: Vec<PolicyRow> = snapshot
        .domains()
        .filter(|domain| readable(domain.name()))
        .map(|domain| row(domain.name(), format!("/domains/{}", url_encode(domain.name())), domain.policy()))
        .collect();
    domain_rows.sort_by(|a, b| a.name.cmp(&b.name));
    let mut mailbox_rows: Vec<PolicyRow> = snapshot
        .mailboxes()
        .filter(|mailbox| readable(mailbox.domain()) && !mailbox.policy().is_empty())
        .map(|mailbox| {
            row(mailbox.address(), format!("/mailboxes/{}", url_encode(mailbox.address())), &mailbox.policy())
        })
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
