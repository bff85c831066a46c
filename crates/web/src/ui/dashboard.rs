//! `/`: the dashboard. Counts of domains, mailboxes and aliases (all of them
//! for the admin, those of its domains for a domain admin) and the stack's
//! health as `/api/v1/health` reports it, read from the index; for the admin
//! only, the daemons couchmail supervises and its own listeners, as
//! `/api/v1/status` reports them ([`crate::StackStatus`]); a user without roles
//! goes to its own page.
//!
//! The daemons are not secret, but they describe the whole installation
//! rather than a domain, so a domain admin does not see them, as it does not
//! see the store's errors.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;

use crate::access::Principal;
use crate::stack_status::{DaemonState, StackStatus, human_duration};
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
    let stack = is_admin.then(|| stack_context(state.api.stack.as_deref()));
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
            stack => stack,
        },
    ))
}

/// The daemons and listeners for the template; `daemons` is none when this process supervises none.
fn stack_context(stack: Option<&dyn StackStatus>) -> minijinja::Value {
    let Some(stack) = stack else { return context! { daemons => None::<()>, listeners => Vec::<()>::new() } };
    let daemons = stack.daemons().map(|daemons| {
        daemons
            .into_iter()
            .map(|daemon| {
                let (pid, uptime, last_exit) = match &daemon.state {
                    DaemonState::Running { pid, uptime } => (Some(*pid), uptime.map(human_duration), None),
                    DaemonState::Restarting { last_exit } => (None, None, Some(last_exit.clone())),
                    DaemonState::Starting | DaemonState::Stopped => (None, None, None),
                };
                context! {
                    name => daemon.name,
                    description => daemon.description,
                    state => daemon.state.label(),
                    healthy => matches!(daemon.state, DaemonState::Running { .. }),
                    pid => pid,
                    uptime => uptime,
                    last_exit => last_exit,
                    restarts => daemon.restarts,
                }
            })
            .collect::<Vec<_>>()
    });
    let listeners: Vec<_> = stack
        .listeners()
        .into_iter()
        .map(|listener| context! { name => listener.name, address => listener.address })
        .collect();
    context! { daemons => daemons, listeners => listeners }
}
