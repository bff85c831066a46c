//! `/`: the dashboard. Counts of domains, mailboxes and aliases (all of them
//! for the admin, those of its domains for a domain admin) and the stack's
//! health as `/api/v1/health` reports it, read from the index; a user without
//! roles goes to its own page.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use crate::access::Principal;
use crate::ui::{SessionUser, UiError, UiState, render};

/// `GET /`.
pub(crate) async fn show(State(state): State<UiState>, user: SessionUser) -> Result<Response, UiError> {
    let health = state.api.index.health();
    let (domains, mailboxes, aliases, alias_domains) = match &user.principal {
        Principal::Admin { .. } => {
            let counts = health.counts;
            (counts.domains, counts.mailboxes, counts.aliases, counts.alias_domains)
        }
        Principal::DomainAdmin { domains, .. } => {
            let snapshot = state.api.index.snapshot();
            let mine = |domain: &str| domains.iter().any(|name| name.as_str() == domain);
            (
                domains.iter().filter(|name| snapshot.domain(name.as_str()).is_some()).count(),
                snapshot.mailboxes().filter(|mailbox| mine(mailbox.domain())).count(),
                snapshot.aliases().filter(|alias| mine(alias.domain())).count(),
                snapshot.alias_domains().filter(|alias| mine(alias.target())).count(),
            )
        }
        Principal::User { .. } => return Ok(Redirect::to("/me").into_response()),
    };
    let is_admin = matches!(user.principal, Principal::Admin { .. });
    let store_failing = health.last_store_error.is_some();
    Ok(render(
        Some(&user),
        "dashboard.html",
        context! {
            title => "Dashboard",
            nav => "dashboard",
            counts => context! {
                domains => domains,
                mailboxes => mailboxes,
                aliases => aliases,
                alias_domains => alias_domains,
            },
            health => context! {
                ready => health.ready,
                last_seq => health.last_seq.map(|seq| seq.to_string()),
                store_failing => store_failing,
                store_error => is_admin.then_some(health.last_store_error).flatten(),
                skipped => health.skipped_total,
                sessions => is_admin.then(|| state.sessions.len()),
            },
        },
    ))
}
