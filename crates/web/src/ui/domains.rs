//! `/domains`: the mail domains and their domain aliases.
//!
//! The list comes from the index (search by substring, paged by `after`);
//! one domain's page reads the store, and its forms carry the revision they
//! were drawn from, so that two administrators editing at once get a
//! "changed since you read it" instead of losing an edit. Creating, removing
//! and (de)activating domains is the admin's; a domain admin sees and edits
//! its own domains' settings (not their limits) and domain aliases.

use std::collections::HashMap;

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use couchmail_directory::Cascade;
use couchmail_model::{DocKind, Document, Domain, DomainAlias, DomainName, PolicySettings};
use couchmail_store::Rev;
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::access::{Action, Resource};
use crate::ui::forms::{
    Outcome, RemoveForm, after_removal, after_write, id_error, invalid, optional_mib, optional_number, tristate,
    unchanged_since_drawn,
};
use crate::ui::mailboxes::readable_domains;
use crate::ui::page::{human_bytes, no_such, ser, url_encode};
use crate::ui::policy::{PolicyForm, PolicyView, sending_limits_differ};
use crate::ui::{SessionUser, UiError, UiState, paging, render};

/// The routes of this page group.
pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/domains", get(list).post(create))
        .route("/domains/{domain}", get(show))
        .route("/domains/{domain}/settings", post(update))
        .route("/domains/{domain}/active", post(set_active))
        .route("/domains/{domain}/delete", post(remove))
        .route("/domains/{domain}/aliases", post(add_alias))
        .route("/domain-aliases/{name}/delete", post(remove_alias))
}

/// One row of the list.
#[derive(Debug, Serialize)]
struct DomainRow {
    name: String,
    unicode: String,
    active: bool,
    mailboxes: usize,
    href: String,
}

/// `GET /domains?q=&after=`.
async fn list(
    State(state): State<UiState>,
    user: SessionUser,
    Query(query): Query<paging::ListQuery>,
) -> Result<Response, UiError> {
    // A user (who administers nothing) is refused here; the domains are the principal's, whatever `domain` asks.
    let domains = readable_domains(&user.principal, None)?;
    let snapshot = state.api.index.snapshot();
    let readable = snapshot.domains().filter(|domain| domains.contains(domain.name()));
    let page = paging::page_by(readable, |domain| domain.name(), &query);
    let mut counts: HashMap<&str, usize> = page.items.iter().map(|domain| (domain.name(), 0)).collect();
    for mailbox in snapshot.mailboxes() {
        if let Some(count) = counts.get_mut(mailbox.domain()) {
            *count += 1;
        }
    }
    let rows: Vec<DomainRow> = page
        .items
        .iter()
        .map(|domain| DomainRow {
            name: domain.name().to_owned(),
            unicode: DomainName::parse(domain.name()).map(|name| name.to_unicode()).unwrap_or_default(),
            active: domain.is_active(),
            mailboxes: counts.get(domain.name()).copied().unwrap_or(0),
            href: href(domain.name()),
        })
        .collect();
    Ok(render(
        Some(&user),
        "domains.html",
        context! {
            title => "Domains",
            nav => "domains",
            rows => ser(&rows),
            may_create => user.principal.may(Action::Write, &Resource::Installation),
            index_ready => snapshot.is_ready(),
            ..page.context("/domains", &query),
        },
    ))
}

/// The create form.
#[derive(Deserialize)]
struct CreateForm {
    name: String,
    #[serde(default)]
    quota_default_mib: String,
}

/// `POST /domains`: creates a domain (admin only).
async fn create(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<CreateForm>,
) -> Result<Response, UiError> {
    user.principal.authorize(Action::Write, &Resource::Installation)?;
    let outcome: Outcome = async {
        let name = DomainName::parse(form.name.trim()).map_err(|err| invalid("name", err.message))?;
        let domain = Domain {
            name: name.clone(),
            active: true,
            quota_default: optional_mib("quota_default_mib", &form.quota_default_mib)?,
            max_mailboxes: None,
            policy: PolicySettings::default(),
        };
        state.api.directory.create(&Document::Domain(domain)).await.map_err(id_error("name"))?;
        state.wait_for_index(|snapshot| snapshot.domain(name.as_str()).is_some()).await;
        Ok(format!("Domain {name} created."))
    }
    .await;
    after_write(&state, &user, outcome, "/domains")
}

/// Reads a domain with its revision.
async fn read(state: &UiState, name: &DomainName) -> Result<(Domain, Rev), UiError> {
    state
        .read(DocKind::Domain, name, "domain", |doc| match doc {
            Document::Domain(domain) => Some(domain),
            _ => None,
        })
        .await
}

/// Parses the domain of a path, answering 404 (not 400) for nonsense, as for any unknown page.
fn path_domain(text: &str) -> Result<DomainName, UiError> {
    DomainName::parse(text).map_err(|_| no_such("domain", text))
}

/// The page of the domain `name`.
pub(crate) fn href(name: &str) -> String {
    format!("/domains/{}", url_encode(name))
}

/// `GET /domains/{domain}`: settings, limits, domain aliases.
async fn show(
    State(state): State<UiState>,
    user: SessionUser,
    Path(domain): Path<String>,
) -> Result<Response, UiError> {
    let name = path_domain(&domain)?;
    user.principal.authorize(Action::Read, &Resource::Domain(&name))?;
    let (domain, rev) = read(&state, &name).await?;
    let snapshot = state.api.index.snapshot();
    let mut aliases: Vec<String> = snapshot
        .alias_domains()
        .filter(|alias| alias.target() == name.as_str())
        .map(|alias| alias.name().to_owned())
        .collect();
    aliases.sort();
    let mailboxes = snapshot.mailboxes().filter(|mailbox| mailbox.domain() == name.as_str()).count();
    Ok(render(
        Some(&user),
        "domain.html",
        context! {
            title => format!("Domain {name}"),
            nav => "domains",
            name => name.to_string(),
            unicode => name.to_unicode(),
            href => href(name.as_str()),
            enc => url_encode(name.as_str()),
            rev => rev.to_string(),
            active => domain.active,
            mailboxes => mailboxes,
            quota_default_mib => domain.quota_default.map(|bytes| bytes >> 20),
            quota_default => domain.quota_default.map(human_bytes),
            max_mailboxes => domain.max_mailboxes,
            aliases => aliases,
            may_limits => user.principal.may(Action::Write, &Resource::DomainLimits(&name)),
            may_remove => user.principal.may(Action::Write, &Resource::Installation),
            ..ser(&PolicyView::from(&domain.policy)),
        },
    ))
}

/// The settings form.
#[derive(Deserialize)]
struct SettingsForm {
    rev: String,
    #[serde(default)]
    quota_default_mib: String,
    #[serde(default)]
    max_mailboxes: Option<String>,
    #[serde(flatten)]
    policy: PolicyForm,
}

/// `POST /domains/{domain}/settings`: quota default, greylisting, spam thresholds and (admin) limits.
async fn update(
    State(state): State<UiState>,
    user: SessionUser,
    Path(domain): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Result<Response, UiError> {
    let name = path_domain(&domain)?;
    user.principal.authorize(Action::Write, &Resource::Domain(&name))?;
    let back = href(name.as_str());
    let outcome: Outcome = async {
        let (current, rev) = read(&state, &name).await?;
        unchanged_since_drawn(format_args!("domain `{name}`"), &rev, &form.rev)?;
        let mut domain = current.clone();
        domain.quota_default = optional_mib("quota_default_mib", &form.quota_default_mib)?;
        form.policy.apply(&mut domain.policy)?;
        // Limits are only in the form for those who may change them; absent fields keep their value.
        if let Some(text) = &form.max_mailboxes {
            domain.max_mailboxes = optional_number("max_mailboxes", text)?;
        }
        if domain.max_mailboxes != current.max_mailboxes || sending_limits_differ(&domain.policy, &current.policy) {
            user.principal.authorize(Action::Write, &Resource::DomainLimits(&name))?;
        }
        state.api.directory.update(&Document::Domain(domain), &rev).await?;
        Ok(format!("Settings of {name} saved."))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// The activate form.
#[derive(Deserialize)]
struct ActiveForm {
    active: String,
}

/// `POST /domains/{domain}/active`: `active=on|off` (admin only: it bounds what the domain's admins can do).
async fn set_active(
    State(state): State<UiState>,
    user: SessionUser,
    Path(domain): Path<String>,
    Form(form): Form<ActiveForm>,
) -> Result<Response, UiError> {
    let name = path_domain(&domain)?;
    user.principal.authorize(Action::Write, &Resource::DomainLimits(&name))?;
    let back = href(name.as_str());
    let outcome: Outcome = async {
        let active = tristate("active", &form.active)?.ok_or_else(|| invalid("active", "say on or off"))?;
        let (mut domain, rev) = read(&state, &name).await?;
        domain.active = active;
        state.api.directory.update(&Document::Domain(domain), &rev).await?;
        state
            .wait_for_index(|snapshot| snapshot.domain(name.as_str()).is_some_and(|entry| entry.is_active() == active))
            .await;
        Ok(if active {
            format!("{name} is active: it receives mail and its users can log in.")
        } else {
            format!("{name} is inactive: it receives no mail and its users cannot log in.")
        })
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// `POST /domains/{domain}/delete`: removes a domain (admin only), with what hangs off it when asked.
async fn remove(
    State(state): State<UiState>,
    user: SessionUser,
    Path(domain): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Result<Response, UiError> {
    let name = path_domain(&domain)?;
    user.principal.authorize(Action::Write, &Resource::Installation)?;
    let cascade = form.cascade();
    let outcome: Outcome = async {
        let (_, rev) = read(&state, &name).await?;
        let removed = state.api.directory.remove(&DocKind::Domain.id(&name), Some(&rev), cascade).await?;
        state.wait_for_index(|snapshot| snapshot.domain(name.as_str()).is_none()).await;
        Ok(format!("Domain {name} removed ({} documents).", removed.len()))
    }
    .await;
    after_removal(&state, &user, outcome, "/domains", &href(name.as_str()))
}

/// The domain alias form.
#[derive(Deserialize)]
struct AliasForm {
    name: String,
}

/// `POST /domains/{domain}/aliases`: another name for the domain.
async fn add_alias(
    State(state): State<UiState>,
    user: SessionUser,
    Path(domain): Path<String>,
    Form(form): Form<AliasForm>,
) -> Result<Response, UiError> {
    let target = path_domain(&domain)?;
    user.principal.authorize(Action::Write, &Resource::DomainAlias { target: &target })?;
    let back = href(target.as_str());
    let outcome: Outcome = async {
        let name = DomainName::parse(form.name.trim()).map_err(|err| invalid("name", err.message))?;
        let alias = DomainAlias { name: name.clone(), target: target.clone() };
        state.api.directory.create(&Document::DomainAlias(alias)).await.map_err(id_error("name"))?;
        state.wait_for_index(|snapshot| snapshot.alias_domain(name.as_str()).is_some()).await;
        Ok(format!("{name} is now another name for {target}."))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// `POST /domain-aliases/{name}/delete`.
async fn remove_alias(
    State(state): State<UiState>,
    user: SessionUser,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let name = path_domain(&name)?;
    let (alias, rev) = state
        .read(DocKind::DomainAlias, &name, "domain alias", |doc| match doc {
            Document::DomainAlias(alias) => Some(alias),
            _ => None,
        })
        .await?;
    user.principal.authorize(Action::Write, &Resource::DomainAlias { target: &alias.target })?;
    let back = href(alias.target.as_str());
    let outcome: Outcome = async {
        state.api.directory.remove(&DocKind::DomainAlias.id(&name), Some(&rev), Cascade::Refuse).await?;
        state.wait_for_index(|snapshot| snapshot.alias_domain(name.as_str()).is_none()).await;
        Ok(format!("Domain alias {name} removed."))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}
