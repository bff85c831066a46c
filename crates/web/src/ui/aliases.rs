//! `/aliases`: addresses that forward to one or more targets, and catch-alls
//! (`@example.com`, which take mail for every address of the domain that is
//! not a mailbox or another alias).
//!
//! The list is drawn from the index (search, `after` paging); an alias's page
//! reads the store and its form carries the revision it was drawn from.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use couchmail_directory::Cascade;
use couchmail_model::{Address, Alias, AliasKey, DocKind, Document, MAX_ALIAS_TARGETS};
use couchmail_store::Rev;
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::access::{Action, Resource};
use crate::ui::forms::{Outcome, after_removal, after_write, id_error, invalid, unchanged_since_drawn};
use crate::ui::mailboxes::readable_domains;
use crate::ui::page::{no_such, safe_next, ser, url_encode};
use crate::ui::{SessionUser, UiError, UiState, paging, render};

/// The routes of this page group.
pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/aliases", get(list).post(create))
        .route("/aliases/{key}", get(show).post(update))
        .route("/aliases/{key}/delete", post(remove))
}

/// One row of the list.
#[derive(Debug, Serialize)]
struct AliasRow {
    key: String,
    href: String,
    catch_all: bool,
    active: bool,
    targets: Vec<String>,
}

/// `GET /aliases?domain=&q=&after=`.
async fn list(
    State(state): State<UiState>,
    user: SessionUser,
    Query(query): Query<paging::ListQuery>,
) -> Result<Response, UiError> {
    let domains = readable_domains(&user.principal, query.domain())?;
    let snapshot = state.api.index.snapshot();
    let readable = snapshot.aliases().filter(|alias| domains.contains(alias.domain()));
    let page = paging::page_by(readable, |alias| alias.key(), &query);
    let rows: Vec<AliasRow> = page
        .items
        .iter()
        .map(|alias| AliasRow {
            key: alias.key().to_owned(),
            href: href(alias.key()),
            catch_all: alias.is_catch_all(),
            active: alias.is_active(),
            targets: alias.targets().map(str::to_owned).collect(),
        })
        .collect();
    Ok(render(
        Some(&user),
        "aliases.html",
        context! {
            title => "Aliases",
            nav => "aliases",
            rows => ser(&rows),
            index_ready => snapshot.is_ready(),
            ..page.context("/aliases", &query),
        },
    ))
}

/// The targets typed in a text area: addresses separated by spaces, commas or lines.
fn parse_targets(text: &str) -> Result<Vec<Address>, UiError> {
    let mut targets: Vec<Address> = Vec::new();
    for item in text.split([' ', ',', ';', '\n', '\r', '\t']).filter(|item| !item.is_empty()) {
        let target = Address::parse(item).map_err(|err| invalid("targets", format!("`{item}`: {}", err.message)))?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    if targets.is_empty() {
        return Err(invalid("targets", "name at least one address"));
    }
    if targets.len() > MAX_ALIAS_TARGETS {
        return Err(invalid("targets", format!("at most {MAX_ALIAS_TARGETS} addresses")));
    }
    Ok(targets)
}

/// The create form.
#[derive(Deserialize)]
struct CreateForm {
    key: String,
    targets: String,
    #[serde(default)]
    back: Option<String>,
}

/// `POST /aliases`: creates an alias or catch-all.
async fn create(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<CreateForm>,
) -> Result<Response, UiError> {
    let back = safe_next(form.back.as_deref().or(Some("/aliases")));
    let key = match AliasKey::parse(form.key.trim()) {
        Ok(key) => key,
        Err(err) => return after_write(&state, &user, Err(invalid("key", err.message)), &back),
    };
    user.principal.authorize(Action::Write, &Resource::Alias(&key))?;
    let outcome: Outcome = async {
        let targets = parse_targets(&form.targets)?;
        let n_targets = targets.len();
        let alias = Alias { key: key.clone(), targets, active: true };
        state.api.directory.create(&Document::Alias(alias)).await.map_err(id_error("key"))?;
        state.wait_for_index(|snapshot| snapshot.alias(&key.to_string()).is_some()).await;
        Ok(format!("Alias {key} created, forwarding to {n_targets} address(es)."))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// Parses the alias of a path, answering 404 for nonsense.
fn path_key(text: &str) -> Result<AliasKey, UiError> {
    AliasKey::parse(text).map_err(|_| no_such("alias", text))
}

/// The page of the alias `key`.
fn href(key: &str) -> String {
    format!("/aliases/{}", url_encode(key))
}

/// Reads an alias with its revision.
async fn read(state: &UiState, key: &AliasKey) -> Result<(Alias, Rev), UiError> {
    state
        .read(DocKind::Alias, key, "alias", |doc| match doc {
            Document::Alias(alias) => Some(alias),
            _ => None,
        })
        .await
}

/// `GET /aliases/{key}`.
async fn show(State(state): State<UiState>, user: SessionUser, Path(key): Path<String>) -> Result<Response, UiError> {
    let key = path_key(&key)?;
    user.principal.authorize(Action::Read, &Resource::Alias(&key))?;
    let (alias, rev) = read(&state, &key).await?;
    Ok(render(
        Some(&user),
        "alias.html",
        context! {
            title => format!("Alias {key}"),
            nav => "aliases",
            key => key.to_string(),
            domain => key.domain().to_string(),
            href => href(&key.to_string()),
            rev => rev.to_string(),
            catch_all => key.to_string().starts_with('@'),
            active => alias.active,
            targets => alias.targets.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"),
        },
    ))
}

/// The edit form.
#[derive(Deserialize)]
struct UpdateForm {
    rev: String,
    targets: String,
    #[serde(default)]
    active: Option<String>,
}

/// `POST /aliases/{key}`: new targets and active flag.
async fn update(
    State(state): State<UiState>,
    user: SessionUser,
    Path(key): Path<String>,
    Form(form): Form<UpdateForm>,
) -> Result<Response, UiError> {
    let key = path_key(&key)?;
    user.principal.authorize(Action::Write, &Resource::Alias(&key))?;
    let back = href(&key.to_string());
    let outcome: Outcome = async {
        let targets = parse_targets(&form.targets)?;
        let (_, rev) = read(&state, &key).await?;
        unchanged_since_drawn(format_args!("alias `{key}`"), &rev, &form.rev)?;
        let alias = Alias { key: key.clone(), targets, active: form.active.is_some() };
        state.api.directory.update(&Document::Alias(alias), &rev).await?;
        Ok(format!("Alias {key} saved."))
    }
    .await;
    after_write(&state, &user, outcome, &back)
}

/// `POST /aliases/{key}/delete`.
async fn remove(State(state): State<UiState>, user: SessionUser, Path(key): Path<String>) -> Result<Response, UiError> {
    let key = path_key(&key)?;
    user.principal.authorize(Action::Write, &Resource::Alias(&key))?;
    let outcome: Outcome = async {
        let (_, rev) = read(&state, &key).await?;
        state.api.directory.remove(&DocKind::Alias.id(&key), Some(&rev), Cascade::Refuse).await?;
        state.wait_for_index(|snapshot| snapshot.alias(&key.to_string()).is_none()).await;
        Ok(format!("Alias {key} removed."))
    }
    .await;
    let list = format!("/aliases?domain={}", url_encode(key.domain().as_str()));
    after_removal(&state, &user, outcome, &list, &href(&key.to_string()))
}
