//! `/me`: what every mailbox's owner manages itself — its password (the
//! current one required), the addresses that reach it, its spam threshold and
//! its own blocklist and allowlist.
//!
//! A password change ends every other session of the mailbox, so that a
//! stolen session does not outlive the password it was opened with.

use axum::Form;
use axum::extract::State;
use axum::response::Response;
use couchmail_directory::ListFilter;
use couchmail_model::{Address, DocKind, Document, ListingScope, Mailbox, Password, PasswordHash};
use couchmail_store::{ListOptions, Rev};
use minijinja::context;
use serde::Deserialize;

use crate::Error;
use crate::access::{Action, Resource};
use crate::ui::forms::{Outcome, after_write, invalid, optional_score};
use crate::ui::listings::{ListingRow, listing_rows};
use crate::ui::page::ser;
use crate::ui::{SessionUser, UiError, UiState, render};

/// Most aliases walked back from a mailbox (chains are short; this bounds a pathological store).
const MAX_REACHING: usize = 1000;

/// `GET /me`.
pub(crate) async fn show(State(state): State<UiState>, user: SessionUser) -> Result<Response, UiError> {
    let (mailbox, _) = read_mailbox(&state, &user.mailbox).await?;
    let domain = match state.api.directory.get(&DocKind::Domain.id(user.mailbox.domain())).await? {
        Some(entry) => match entry.doc {
            Document::Domain(domain) => Some(domain),
            _ => None,
        },
        None => None,
    };
    let scope = ListingScope::Mailbox(user.mailbox.clone());
    let filter = ListFilter {
        kind: DocKind::Listing,
        domain: None,
        owner: Some(user.mailbox.clone()),
        page: ListOptions { start_after: None, limit: Some(500) },
    };
    let listings: Vec<ListingRow> = listing_rows(&state.api.directory.list(&filter).await?, &scope);
    let domain_threshold = domain.as_ref().and_then(|domain| domain.policy.spam_threshold);
    Ok(render(
        Some(&user),
        "me.html",
        context! {
            title => "My account",
            nav => "me",
            name => mailbox.name,
            roles => mailbox.roles.iter().map(ToString::to_string).collect::<Vec<_>>(),
            quota => mailbox.quota_bytes.or(domain.as_ref().and_then(|d| d.quota_default)).map(crate::ui::page::human_bytes),
            reaching => reaching(&state, &user.mailbox),
            spam_threshold => mailbox.policy.spam_threshold.map(|score| score.to_string()),
            domain_threshold => domain_threshold.map(|score| score.to_string()),
            listings => ser(&listings),
            scope => scope.to_string(),
        },
    ))
}

/// The addresses whose mail reaches `me`: aliases (through chains), catch-alls, and `me` under
/// each alias of its domain.
fn reaching(state: &UiState, me: &Address) -> Vec<String> {
    let snapshot = state.api.index.snapshot();
    let mut reach: Vec<String> = vec![me.to_string()];
    let mut found: Vec<String> = Vec::new();
    // Walk back from the mailbox: an alias reaches it if one of its targets does.
    loop {
        let before = reach.len();
        for alias in snapshot.aliases() {
            if !alias.is_active() || reach.iter().any(|known| known == alias.key()) {
                continue;
            }
            if alias.targets().any(|target| reach.iter().any(|known| known == target)) {
                reach.push(alias.key().to_owned());
                found.push(alias.key().to_owned());
            }
        }
        if reach.len() == before || reach.len() > MAX_REACHING {
            break;
        }
    }
    let local = me.local_part();
    for alias_domain in snapshot.alias_domains() {
        if alias_domain.target() == me.domain().as_str() {
            found.push(format!("{local}@{}", alias_domain.name()));
        }
    }
    found.sort();
    found
}

/// Reads `address`'s mailbox with its revision.
pub(crate) async fn read_mailbox(state: &UiState, address: &Address) -> Result<(Mailbox, Rev), UiError> {
    state
        .read(DocKind::Mailbox, address, "mailbox", |doc| match doc {
            Document::Mailbox(mailbox) => Some(mailbox),
            _ => None,
        })
        .await
}

/// The password form.
#[derive(Deserialize)]
pub(crate) struct PasswordForm {
    current: String,
    new: String,
    confirm: String,
}

/// `POST /me/password`: the current password, then the new one twice.
pub(crate) async fn change_password(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<PasswordForm>,
) -> Result<Response, UiError> {
    let outcome = change(&state, &user, form).await;
    after_write(&state, &user, outcome, "/me")
}

async fn change(state: &UiState, user: &SessionUser, form: PasswordForm) -> Outcome {
    if form.new != form.confirm {
        return Err(invalid("confirm", "the two new passwords differ"));
    }
    let password = Password::new(form.new).map_err(|err| invalid("new", err.message))?;
    // Guessing the current password through this form is throttled like logging in.
    let account = format!("account:{}", user.mailbox);
    if let Err(wait) = state.throttle.begin(std::slice::from_ref(&account)) {
        return Err(invalid(
            "current",
            format!("too many wrong passwords; wait {} seconds and try again", wait.as_secs() + 1),
        ));
    }
    let (mut mailbox, rev) = read_mailbox(state, &user.mailbox).await?;
    user.principal.authorize(Action::Write, &Resource::Account { address: &user.mailbox, roles: &mailbox.roles })?;
    let current_ok = match mailbox.password.clone() {
        Some(hash) => {
            let current = form.current;
            tokio::task::spawn_blocking(move || hash.verify(&current))
                .await
                .map_err(|err| UiError::Api(Error::Internal(format!("password verification task failed: {err}"))))?
        }
        None => false,
    };
    if !current_ok {
        return Err(invalid("current", "is not your current password"));
    }
    state.throttle.succeeded(&account, &[]);
    mailbox.password = Some(hash(password).await?);
    state.api.directory.update(&Document::Mailbox(mailbox), &rev).await?;
    let ended = state.sessions.revoke_mailbox(&user.mailbox, Some(&user.key));
    tracing::info!(mailbox = %user.mailbox, other_sessions_ended = ended, "password changed in the web UI");
    Ok(if ended == 0 {
        "Your password is changed.".to_owned()
    } else {
        format!("Your password is changed; {ended} other session(s) were logged out.")
    })
}

/// Hashes off the async threads: argon2id takes tens of milliseconds by design.
pub(crate) async fn hash(password: Password) -> Result<PasswordHash, UiError> {
    tokio::task::spawn_blocking(move || PasswordHash::new(&password))
        .await
        .map_err(|err| UiError::Api(Error::Internal(format!("password hashing task failed: {err}"))))
}

/// The spam form.
#[derive(Deserialize)]
pub(crate) struct SpamForm {
    #[serde(default)]
    spam_threshold: String,
}

/// `POST /me/spam`: the score at or above which mail goes to Junk; empty follows the domain.
pub(crate) async fn set_spam(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<SpamForm>,
) -> Result<Response, UiError> {
    let outcome = async {
        let threshold = optional_score("spam_threshold", &form.spam_threshold)?;
        let (mut mailbox, rev) = read_mailbox(&state, &user.mailbox).await?;
        user.principal
            .authorize(Action::Write, &Resource::Account { address: &user.mailbox, roles: &mailbox.roles })?;
        mailbox.policy.spam_threshold = threshold;
        mailbox.policy.validate().map_err(|err| invalid(&err.field, err.message))?;
        state.api.directory.update(&Document::Mailbox(mailbox), &rev).await?;
        Ok(match threshold {
            Some(score) => format!("Mail scoring {score} or more now goes to your Junk folder."),
            None => "Your spam threshold now follows your domain's.".to_owned(),
        })
    }
    .await;
    after_write(&state, &user, outcome, "/me")
}
