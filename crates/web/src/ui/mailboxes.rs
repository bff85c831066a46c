//! `/mailboxes`: mailboxes (which are also logins) — create with a first
//! password and quota, settings, (de)activate, reset the password, roles,
//! remove.
//!
//! The list is drawn from the index (search, `after` paging) and shows only
//! the domains the principal may read; one mailbox's page reads the store.
//! Changing a mailbox that holds roles needs authority over those roles
//! ([`Resource::Account`]), as in the API. Resetting a password ends every
//! session of that mailbox (but the resetter's own).

use std::collections::BTreeSet;

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use couchmail_model::{Address, DocKind, Document, DomainName, Mailbox, Password, PolicySettings, Role};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::access::{Action, Principal, Resource};
use crate::ui::forms::{
    Outcome, RemoveForm, after_removal, after_write, id_error, invalid, optional_mib, unchanged_since_drawn,
};
use crate::ui::me::{hash, read_mailbox};
use crate::ui::page::{human_bytes, no_such, ser, url_encode};
use crate::ui::policy::{PolicyForm, PolicyView, sending_limits_differ};
use crate::ui::{SessionUser, UiError, UiState, paging, render};

/// The routes of this page group.
pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/mailboxes", get(list).post(create))
        .route("/mailboxes/{address}", get(show))
        .route("/mailboxes/{address}/settings", post(update))
        .route("/mailboxes/{address}/password", post(reset_password))
        .route("/mailboxes/{address}/roles", post(set_roles))
        .route("/mailboxes/{address}/delete", post(remove))
}

/// The domains whose contents a principal may list: all of them, or these.
pub(crate) struct ReadableDomains(Option<BTreeSet<String>>);

impl ReadableDomains {
    /// Whether the contents of `domain` may be listed.
    pub(crate) fn contains(&self, domain: &str) -> bool {
        self.0.as_ref().is_none_or(|domains| domains.contains(domain))
    }

    /// The domains named, in order; none when all may be listed.
    pub(crate) fn named(&self) -> Vec<String> {
        self.0.iter().flatten().cloned().collect()
    }
}

/// The domains whose contents a principal may list: `asked` alone when given (if the principal may).
pub(crate) fn readable_domains(principal: &Principal, asked: Option<&str>) -> Result<ReadableDomains, UiError> {
    if let Some(text) = asked {
        let domain = DomainName::parse(text).map_err(|err| invalid("domain", err.message))?;
        principal.authorize(Action::Read, &Resource::DomainContents(&domain))?;
        return Ok(ReadableDomains(Some([domain.to_string()].into())));
    }
    match principal {
        Principal::Admin { .. } => Ok(ReadableDomains(None)),
        Principal::DomainAdmin { domains, .. } => {
            Ok(ReadableDomains(Some(domains.iter().map(ToString::to_string).collect())))
        }
        Principal::User { .. } => {
            principal.authorize(Action::Read, &Resource::Installation)?;
            Ok(ReadableDomains(Some(BTreeSet::new())))
        }
    }
}

/// One row of the list.
#[derive(Debug, Serialize)]
struct MailboxRow {
    address: String,
    href: String,
    active: bool,
    quota: Option<String>,
    roles: Vec<String>,
}

/// `GET /mailboxes?domain=&q=&after=&limit=`.
async fn list(
    State(state): State<UiState>,
    user: SessionUser,
    Query(query): Query<paging::ListQuery>,
) -> Result<Response, UiError> {
    let domains = readable_domains(&user.principal, query.domain())?;
    let snapshot = state.api.index.snapshot();
    let readable = snapshot.mailboxes().filter(|mailbox| domains.contains(mailbox.domain()));
    let page = paging::page_by(readable, |mailbox| mailbox.address(), &query);
    let rows: Vec<MailboxRow> = page
        .items
        .iter()
        .map(|mailbox| MailboxRow {
            address: mailbox.address().to_owned(),
            href: href(mailbox.address()),
            active: mailbox.is_active(),
            quota: snapshot.mailbox_quota(mailbox.address()).map(human_bytes),
            roles: mailbox.roles().iter().map(ToString::to_string).collect(),
        })
        .collect();
    let creatable: Vec<String> = match &user.principal {
        Principal::DomainAdmin { domains, .. } => domains.iter().map(ToString::to_string).collect(),
        _ => Vec::new(),
    };
    Ok(render(
        Some(&user),
        "mailboxes.html",
        context! {
            title => "Mailboxes",
            nav => "mailboxes",
            rows => ser(&rows),
            creatable => creatable,
            index_ready => snapshot.is_ready(),
            ..page.context("/mailboxes", &query),
        },
    ))
}

/// The create form.
#[derive(Deserialize)]
struct CreateForm {
    address: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    quota_mib: String,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /mailboxes`: creates a mailbox in a domain the principal administers.
async fn create(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<CreateForm>,
) -> Result<Response, UiError> {
    let back = crate::ui::page::safe_next(form.back.as_deref().or(Some("/mailboxes")));
    let address = match Address::parse(form.address.trim()) {
        Ok(address) => address,
        Err(err) => return after_write(&state, &user, Err(invalid("address", err.message)), &back),
    };
    user.principal.authorize(Action::Write, &Resource::DomainContents(address.domain()))?;
    let outcome: Outcome = async {
        let password = if form.password.is_empty() {
            None
        } else {
            Some(hash(Password::new(form.password).map_err(|err| invalid("password", err.message))?).await?)
        };
        let mailbox = Mailbox {
            address: address.clone(),
            name: form.name.trim().to_owned(),
            password,
            active: true,
            quota_bytes: optional_mib("quota_mib", &form.quota_mib)?,
            roles: Vec::new(),
            sieve_active: None,
            policy: PolicySettings::default(),
        };
        state.api.directory.create(&Document::Mailbox(mailbox)).await.map_err(id_error("address"))?;
        state.wait_for_index(|snapshot| snapshot.mailbox(&address.to_string()).is_some()).await;
        Ok(format!("Mailbox {address} created."))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// Parses the address of a path, answering 404 for nonsense.
fn path_address(text: &str) -> Result<Address, UiError> {
    Address::parse(text).map_err(|_| no_such("mailbox", text))
}

/// The page of the mailbox `address`.
pub(crate) fn href(address: &str) -> String {
    format!("/mailboxes/{}", url_encode(address))
}

/// `GET /mailboxes/{address}`.
async fn show(
    State(state): State<UiState>,
    user: SessionUser,
    Path(address): Path<String>,
) -> Result<Response, UiError> {
    let address = path_address(&address)?;
    user.principal.authorize(Action::Read, &Resource::Mailbox(&address))?;
    let (mailbox, rev) = read_mailbox(&state, &address).await?;
    let may_write = user.principal.may(Action::Write, &Resource::Account { address: &address, roles: &mailbox.roles });
    let grantable: Vec<String> = match &user.principal {
        Principal::Admin { .. } => Vec::new(),
        Principal::DomainAdmin { domains, .. } => {
            domains.iter().map(|domain| format!("domain-admin:{domain}")).collect()
        }
        Principal::User { .. } => Vec::new(),
    };
    Ok(render(
        Some(&user),
        "mailbox.html",
        context! {
            title => format!("Mailbox {address}"),
            nav => "mailboxes",
            address => address.to_string(),
            domain => address.domain().to_string(),
            href => href(&address.to_string()),
            rev => rev.to_string(),
            name => mailbox.name,
            active => mailbox.active,
            has_password => mailbox.password.is_some(),
            quota_mib => mailbox.quota_bytes.map(|bytes| bytes >> 20),
            roles => mailbox.roles.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
            may_write => may_write,
            may_limits => may_write && user.principal.may(Action::Write, &Resource::MailboxLimits(&address)),
            may_remove => may_write && user.principal.may(Action::Write, &Resource::DomainContents(address.domain())),
            may_roles => may_write && !matches!(user.principal, Principal::User { .. }),
            is_admin => matches!(user.principal, Principal::Admin { .. }),
            grantable => grantable,
            listings_href => format!("/listings?scope={}", url_encode(&format!("mailbox:{address}"))),
            ..ser(&PolicyView::from(&mailbox.policy)),
        },
    ))
}

/// The settings form.
#[derive(Deserialize)]
struct SettingsForm {
    rev: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    quota_mib: Option<String>,
    #[serde(default)]
    active: Option<String>,
    #[serde(flatten)]
    policy: PolicyForm,
}

/// `POST /mailboxes/{address}/settings`.
async fn update(
    State(state): State<UiState>,
    user: SessionUser,
    Path(address): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Result<Response, UiError> {
    let address = path_address(&address)?;
    user.principal.authorize(Action::Write, &Resource::Mailbox(&address))?;
    let back = href(&address.to_string());
    let outcome: Outcome = async {
        let (current, rev) = read_mailbox(&state, &address).await?;
        user.principal.authorize(Action::Write, &Resource::Account { address: &address, roles: &current.roles })?;
        unchanged_since_drawn(format_args!("mailbox `{address}`"), &rev, &form.rev)?;
        let mut mailbox = current.clone();
        mailbox.name = form.name.trim().to_owned();
        form.policy.apply(&mut mailbox.policy)?;
        // Limits are in the form only for those who may change them; absent fields keep their value.
        if let Some(text) = &form.quota_mib {
            mailbox.quota_bytes = optional_mib("quota_mib", text)?;
        }
        if form.quota_mib.is_some() {
            mailbox.active = form.active.is_some();
        }
        if mailbox.quota_bytes != current.quota_bytes
            || mailbox.active != current.active
            || sending_limits_differ(&mailbox.policy, &current.policy)
        {
            user.principal.authorize(Action::Write, &Resource::MailboxLimits(&address))?;
        }
        mailbox.policy.validate().map_err(|err| invalid(&err.field, err.message))?;
        let active = mailbox.active;
        state.api.directory.update(&Document::Mailbox(mailbox), &rev).await?;
        if !active {
            state.sessions.revoke_mailbox(&address, None);
        }
        Ok(format!("Settings of {address} saved."))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// The password reset form.
#[derive(Deserialize)]
struct PasswordForm {
    password: String,
}

/// `POST /mailboxes/{address}/password`: sets a new password and ends the mailbox's sessions.
async fn reset_password(
    State(state): State<UiState>,
    user: SessionUser,
    Path(address): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Result<Response, UiError> {
    let address = path_address(&address)?;
    user.principal.authorize(Action::Write, &Resource::Mailbox(&address))?;
    let back = href(&address.to_string());
    let outcome: Outcome = async {
        let password = Password::new(form.password).map_err(|err| invalid("password", err.message))?;
        let (mut mailbox, rev) = read_mailbox(&state, &address).await?;
        user.principal.authorize(Action::Write, &Resource::Account { address: &address, roles: &mailbox.roles })?;
        mailbox.password = Some(hash(password).await?);
        state.api.directory.update(&Document::Mailbox(mailbox), &rev).await?;
        let keep = (user.mailbox == address).then_some(&user.key);
        let ended = state.sessions.revoke_mailbox(&address, keep);
        Ok(format!("New password set for {address}; {ended} session(s) logged out."))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// The roles form: `admin` and `domain-admin:<domain>`, separated by spaces or commas.
#[derive(Deserialize)]
struct RolesForm {
    #[serde(default)]
    roles: String,
}

/// `POST /mailboxes/{address}/roles`.
async fn set_roles(
    State(state): State<UiState>,
    user: SessionUser,
    Path(address): Path<String>,
    Form(form): Form<RolesForm>,
) -> Result<Response, UiError> {
    let address = path_address(&address)?;
    user.principal.authorize(Action::Write, &Resource::Mailbox(&address))?;
    let back = href(&address.to_string());
    let outcome: Outcome = async {
        let mut roles: Vec<Role> = Vec::new();
        for text in form.roles.split([' ', ',', '\n', '\r', '\t']).filter(|text| !text.is_empty()) {
            let role: Role =
                text.parse().map_err(|err: couchmail_model::ValidationError| invalid("roles", err.message))?;
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        let (mut mailbox, rev) = read_mailbox(&state, &address).await?;
        user.principal.authorize(Action::Write, &Resource::Account { address: &address, roles: &mailbox.roles })?;
        let before: BTreeSet<&Role> = mailbox.roles.iter().collect();
        let after: BTreeSet<&Role> = roles.iter().collect();
        for role in before.symmetric_difference(&after) {
            user.principal.authorize(Action::Write, &Resource::Role(role))?;
        }
        mailbox.roles = roles;
        let shown = mailbox.roles.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        state.api.directory.update(&Document::Mailbox(mailbox), &rev).await?;
        Ok(if shown.is_empty() {
            format!("{address} has no roles now.")
        } else {
            format!("{address} now has: {shown}.")
        })
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// `POST /mailboxes/{address}/delete`: removes a mailbox with its scripts and tokens; taking it out
/// of aliases needs `cascade`.
async fn remove(
    State(state): State<UiState>,
    user: SessionUser,
    Path(address): Path<String>,
    Form(form): Form<RemoveForm>,
) -> Result<Response, UiError> {
    let address = path_address(&address)?;
    user.principal.authorize(Action::Write, &Resource::DomainContents(address.domain()))?;
    let cascade = form.cascade();
    let outcome: Outcome = async {
        let (mailbox, rev) = read_mailbox(&state, &address).await?;
        user.principal.authorize(Action::Write, &Resource::Account { address: &address, roles: &mailbox.roles })?;
        state.api.directory.remove(&DocKind::Mailbox.id(&address), Some(&rev), cascade).await?;
        state.sessions.revoke_mailbox(&address, None);
        state.wait_for_index(|snapshot| snapshot.mailbox(&address.to_string()).is_none()).await;
        Ok(format!("Mailbox {address} removed."))
    }
    .await;
    let list = format!("/mailboxes?domain={}", url_encode(address.domain().as_str()));
    after_removal(&state, &user, outcome, &list, &href(&address.to_string()))
}
