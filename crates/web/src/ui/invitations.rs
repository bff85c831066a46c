//! Invitations: `/invitations` for administrators (make a one-time link to
//! create a mailbox in a domain, with an expiry; see and revoke them) and the
//! public `/invite/{id}?key=<secret>` where the invited person picks the
//! local part and a password.
//!
//! Making an invitation needs authority to create mailboxes in the domain
//! ([`Resource::DomainContents`]). The link's secret is shown once, when it is
//! made; the store keeps its SHA-256. Redeeming first marks the invitation
//! used at the revision read (so of two redemptions racing, one loses with a
//! conflict), then creates the mailbox; if that fails (the name is taken), the
//! mark is taken back so the person can try another name. The secret travels
//! in the query string, which the request log leaves out.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use couchmail_directory::{Cascade, ListFilter};
use couchmail_model::{Address, DocKind, Document, DomainName, Invitation, Mailbox, Password, PolicySettings};
use couchmail_store::{ListOptions, Rev};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::access::{Action, Resource, domain_is_active};
use crate::ui::auth::PreSessionToken;
use crate::ui::forms::{Outcome, after_write, describe, invalid, now_seconds, optional_number};
use crate::ui::mailboxes::readable_domains;
use crate::ui::me::hash;
use crate::ui::page::{error_page, render, render_status, ser, url_encode};
use crate::ui::session::came_over_tls;
use crate::ui::{SessionUser, UiError, UiState, paging};

/// Days an invitation lasts unless its maker says otherwise.
const DEFAULT_DAYS: u64 = 7;
/// The longest an invitation may last, in days.
const MAX_DAYS: u64 = 90;
/// Invitations shown on one page.
const PAGE: usize = 200;

/// The routes of this page group.
pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/invitations", get(list).post(create))
        .route("/invitations/{id}/delete", post(revoke))
        .route("/invite/{id}", get(redeem_form).post(redeem))
}

/// One row of the list.
#[derive(Debug, Serialize)]
struct InvitationRow {
    id: String,
    domain: String,
    state: &'static str,
    expires: String,
    created_by: Option<String>,
    used_by: Option<String>,
    note: String,
}

/// A time as `YYYY-MM-DD HH:MM UTC`.
fn utc(seconds: u64) -> String {
    let days = seconds / 86_400;
    let (hour, minute) = ((seconds % 86_400) / 3600, (seconds % 3600) / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

fn state_of(invitation: &Invitation, now: u64) -> &'static str {
    match (&invitation.used_by, invitation.is_open(now)) {
        (Some(_), _) => "used",
        (None, true) => "open",
        (None, false) => "expired",
    }
}

/// `GET /invitations?domain=`.
async fn list(
    State(state): State<UiState>,
    user: SessionUser,
    Query(query): Query<paging::ListQuery>,
) -> Result<Response, UiError> {
    let domains = readable_domains(&user.principal, query.domain())?;
    let filter = ListFilter {
        kind: DocKind::Invitation,
        domain: match query.domain() {
            Some(text) => Some(DomainName::parse(text).map_err(|err| invalid("domain", err.message))?),
            None => None,
        },
        owner: None,
        page: ListOptions { start_after: None, limit: Some(PAGE) },
    };
    let now = now_seconds();
    let rows: Vec<InvitationRow> = state
        .api
        .directory
        .list(&filter)
        .await?
        .into_iter()
        .filter_map(|entry| match entry.doc {
            Document::Invitation(invitation) if domains.contains(invitation.domain.as_str()) => Some(InvitationRow {
                state: state_of(&invitation, now),
                expires: utc(invitation.expires),
                id: invitation.id,
                domain: invitation.domain.to_string(),
                created_by: invitation.created_by.map(|address| address.to_string()),
                used_by: invitation.used_by.map(|address| address.to_string()),
                note: invitation.note,
            }),
            _ => None,
        })
        .collect();
    let choices = domains.named();
    Ok(render(
        Some(&user),
        "invitations.html",
        context! {
            title => "Invitations",
            nav => "invitations",
            rows => ser(&rows),
            domain => query.domain(),
            choices => choices,
            default_days => DEFAULT_DAYS,
            max_days => MAX_DAYS,
        },
    ))
}

/// The create form.
#[derive(Deserialize)]
struct CreateForm {
    domain: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    note: String,
}

/// `POST /invitations`: makes an invitation and shows its link, once.
async fn create(
    State(state): State<UiState>,
    user: SessionUser,
    parts: Parts,
    Form(form): Form<CreateForm>,
) -> Result<Response, UiError> {
    let domain = match DomainName::parse(form.domain.trim()) {
        Ok(domain) => domain,
        Err(err) => return after_write(&state, &user, Err(invalid("domain", err.message)), "/invitations"),
    };
    user.principal.authorize(Action::Write, &Resource::DomainContents(&domain))?;
    let made: Result<(Invitation, String), UiError> = async {
        let days = optional_number::<u64>("days", &form.days)?.unwrap_or(DEFAULT_DAYS);
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(invalid("days", format!("must be between 1 and {MAX_DAYS}")));
        }
        let now = now_seconds();
        let (invitation, secret) = Invitation::generate(
            domain.clone(),
            now,
            now + days * 86_400,
            Some(user.mailbox.clone()),
            form.note.trim().to_owned(),
        );
        state.api.directory.create(&Document::Invitation(invitation.clone())).await?;
        Ok((invitation, secret))
    }
    .await;
    let (invitation, secret) = match made {
        Ok(made) => made,
        Err(err) => {
            let outcome: Outcome = Err(err);
            return after_write(&state, &user, outcome, "/invitations");
        }
    };
    tracing::info!(invitation = %invitation.id, %domain, by = %user.mailbox, "invitation made");
    let scheme = if came_over_tls(&parts, state.config.secure_cookies) { "https" } else { "http" };
    let host = parts.headers.get(header::HOST).and_then(|value| value.to_str().ok()).unwrap_or("localhost");
    let link = format!("{scheme}://{host}/invite/{}?key={secret}", invitation.id);
    Ok(render_status(
        StatusCode::CREATED,
        Some(&user),
        "invitation_made.html",
        context! {
            title => "Invitation made",
            nav => "invitations",
            link => link,
            domain => domain.to_string(),
            expires => utc(invitation.expires),
        },
    ))
}

async fn read(state: &UiState, id: &str) -> Result<Option<(Invitation, Rev)>, UiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    Ok(match state.api.directory.get(&DocKind::Invitation.id(id)).await? {
        Some(entry) => match entry.doc {
            Document::Invitation(invitation) => Some((invitation, entry.rev)),
            _ => None,
        },
        None => None,
    })
}

/// `POST /invitations/{id}/delete`: revokes an invitation.
async fn revoke(State(state): State<UiState>, user: SessionUser, Path(id): Path<String>) -> Result<Response, UiError> {
    let Some((invitation, rev)) = read(&state, &id).await? else {
        return Err(UiError::Api(Error::NotFound("there is no such invitation".to_owned())));
    };
    user.principal.authorize(Action::Write, &Resource::DomainContents(&invitation.domain))?;
    let outcome: Outcome = async {
        state.api.directory.remove(&DocKind::Invitation.id(&id), Some(&rev), Cascade::Refuse).await?;
        Ok(format!("Invitation to {} removed; its link no longer works.", invitation.domain))
    }
    .await;
    after_write(&state, &user, outcome, &format!("/invitations?domain={}", url_encode(invitation.domain.as_str())))
}

/// The secret of a link.
#[derive(Deserialize)]
struct KeyQuery {
    #[serde(default)]
    key: String,
}

/// The invitation `id` if `key` is its secret and it is still open; otherwise the page to show.
async fn open_invitation(state: &UiState, id: &str, key: &str) -> Result<Result<(Invitation, Rev), Response>, UiError> {
    let Some((invitation, rev)) = read(state, id).await? else {
        return Ok(Err(error_page(StatusCode::NOT_FOUND, "This invitation link is not valid.")));
    };
    if !invitation.verify_secret(key) {
        tracing::info!(invitation = %id, "an invitation link with a wrong key");
        return Ok(Err(error_page(StatusCode::NOT_FOUND, "This invitation link is not valid.")));
    }
    if !invitation.is_open(now_seconds()) {
        let message = if invitation.used_by.is_some() {
            "This invitation has been used already; each invitation creates one mailbox."
        } else {
            "This invitation has expired; ask for a new one."
        };
        return Ok(Err(error_page(StatusCode::GONE, message)));
    }
    if !domain_is_active(&state.api.directory, &invitation.domain).await? {
        return Ok(Err(error_page(
            StatusCode::GONE,
            "The domain of this invitation does not take new mailboxes now; ask whoever invited you.",
        )));
    }
    Ok(Ok((invitation, rev)))
}

/// `GET /invite/{id}?key=…`: the form to pick an address and a password.
async fn redeem_form(
    State(state): State<UiState>,
    Path(id): Path<String>,
    Query(query): Query<KeyQuery>,
    token: PreSessionToken,
) -> Result<Response, UiError> {
    let (invitation, _) = match open_invitation(&state, &id, &query.key).await? {
        Ok(open) => open,
        Err(page) => return Ok(page),
    };
    let page = redeem_page(StatusCode::OK, &token.token, &id, &query.key, &invitation, "", "", None);
    Ok(token.attach(page))
}

#[allow(clippy::too_many_arguments, reason = "one page's fields, named at the two call sites")]
fn redeem_page(
    status: StatusCode,
    csrf: &str,
    id: &str,
    key: &str,
    invitation: &Invitation,
    local: &str,
    name: &str,
    error: Option<&str>,
) -> Response {
    render_status(
        status,
        None,
        "invite.html",
        context! {
            title => format!("Create your mailbox at {}", invitation.domain),
            csrf => csrf,
            action => format!("/invite/{id}"),
            key => key,
            domain => invitation.domain.to_string(),
            expires => utc(invitation.expires),
            local => local,
            name => name,
            error => error,
        },
    )
}

/// The redeem form.
#[derive(Deserialize)]
struct RedeemForm {
    key: String,
    local: String,
    password: String,
    confirm: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    csrf: String,
}

/// `POST /invite/{id}`: creates the mailbox and uses the invitation up.
async fn redeem(
    State(state): State<UiState>,
    Path(id): Path<String>,
    Form(form): Form<RedeemForm>,
) -> Result<Response, UiError> {
    let (invitation, rev) = match open_invitation(&state, &id, &form.key).await? {
        Ok(open) => open,
        Err(page) => return Ok(page),
    };
    let retry = |error: &str| {
        redeem_page(
            StatusCode::BAD_REQUEST,
            &form.csrf,
            &id,
            &form.key,
            &invitation,
            &form.local,
            &form.name,
            Some(error),
        )
    };
    let local = form.local.trim().to_lowercase();
    let address = match Address::parse(&format!("{local}@{}", invitation.domain)) {
        Ok(address) if !local.is_empty() && !local.contains('@') => address,
        Ok(_) => return Ok(retry("Write only the part before the @.")),
        Err(err) => return Ok(retry(&format!("That address cannot be used: {}.", err.message))),
    };
    if form.password != form.confirm {
        return Ok(retry("The two passwords differ."));
    }
    let password = match Password::new(form.password) {
        Ok(password) => password,
        Err(err) => return Ok(retry(&format!("Choose another password: {}.", err.message))),
    };
    let password = hash(password).await?;
    // Used first, at the revision read: of two redemptions at once, one gets a conflict here.
    let used = Invitation { used_by: Some(address.clone()), ..invitation.clone() };
    let used_rev = match state.api.directory.update(&Document::Invitation(used), &rev).await {
        Ok(rev) => rev,
        Err(err) if matches!(err.kind(), couchmail_directory::ErrorKind::Conflict) => {
            return Ok(error_page(StatusCode::GONE, "This invitation has been used already."));
        }
        Err(err) => return Err(err.into()),
    };
    let mailbox = Mailbox {
        address: address.clone(),
        name: form.name.trim().to_owned(),
        password: Some(password),
        active: true,
        quota_bytes: None,
        roles: Vec::new(),
        sieve_active: None,
        policy: PolicySettings::default(),
    };
    if let Err(err) = state.api.directory.create(&Document::Mailbox(mailbox)).await {
        // Give the invitation back, so that another name can be tried.
        if let Err(undo) = state.api.directory.update(&Document::Invitation(invitation.clone()), &used_rev).await {
            tracing::warn!(invitation = %id, error = %undo, "cannot reopen an invitation after a failed redemption");
        }
        let err = Error::from(err);
        return match err {
            Error::Conflict(_) => Ok(retry("That address is taken; choose another.")),
            Error::Invalid { .. } | Error::Refused(_) => Ok(retry(&describe(&err))),
            other => Err(UiError::Api(other)),
        };
    }
    tracing::info!(invitation = %id, mailbox = %address, "invitation redeemed");
    state.wait_for_index(|snapshot| snapshot.mailbox(&address.to_string()).is_some()).await;
    Ok(Redirect::to(&format!("/login?welcome={}", url_encode(&address.to_string()))).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
    }
}
