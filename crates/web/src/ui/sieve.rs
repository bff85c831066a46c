//! `/me/sieve`: the logged-in user's Sieve filters — the list of scripts and
//! which one is active, a visual rule editor, and a raw editor for any script.
//!
//! The visual editor is a plain HTML form over a draft of the rules
//! ([`form::Draft`]); its buttons post the whole form and the page comes back
//! with the row added or removed, so it works without JavaScript (the small
//! `editor.js` only hides the fields a condition's or action's kind does not
//! use). Saving turns the draft into a [`RuleSet`], writes it as Sieve with
//! `couchmail-sieve-rules` and stores it through the directory, which has
//! Pigeonhole's `sievec` check it, exactly as the API does. A script that
//! [`from_sieve`] cannot read back (written by hand, by a ManageSieve client,
//! or edited as text) opens in the raw editor and the visual editor refuses
//! to save over it, so it is never rewritten behind the user's back. The
//! raw editor shows `sievec`'s messages by line, beside the numbered script.
//!
//! # Stable element ids (the browser tests drive these; keep them)
//!
//! | page | ids, classes and field names |
//! |---|---|
//! | list (`GET /me/sieve`) | `table#sieve-list`, one `tr` per script with `data-name="<name>"` and `data-active="true"`/`"false"`; in a row: `a.sieve-edit` (the editor), `form.sieve-activate-form` with `button.sieve-activate-submit`, `form.sieve-delete-form` with `button.sieve-delete-submit`; the active script's name is `#sieve-active-name`; `form#sieve-deactivate-form`, `button#sieve-deactivate-submit` |
//! | new filter (on the list) | `form#sieve-new-form` (GET `/me/sieve/edit`), `input#sieve-new-name` (`name`), `button#sieve-new-submit` (visual editor), `button#sieve-new-raw-submit` (raw editor) |
//! | visual editor (`GET /me/sieve/edit?name=N`) | `form#sieve-rules-form`; `input#sieve-activate` (`activate`, a checkbox: make this the active filter when saved); `button#sieve-save` (and `#sieve-save-top`); `button#sieve-add-rule`; a new filter starts with one rule whose condition is header `Subject` contains … and whose action is fileinto with `:create` ticked |
//! | a rule `i` | `fieldset#rule-i`; `input#rule-i-name`, `input#rule-i-enabled` (checkbox), `select#rule-i-match` (`all`/`any`); buttons `#rule-i-add-condition`, `#rule-i-add-action`, `#rule-i-up`, `#rule-i-down`, `#rule-i-remove` |
//! | condition `j` of rule `i` | `select#rule-i-condition-j-kind` (`header`, `address`, `envelope`, `size`), `input#rule-i-condition-j-headers` (comma-separated), `select#…-part` (`all`, `localpart`, `domain`), `select#…-match_type` (`is`, `contains`, `matches`), `input#…-value`, `input#…-not` (checkbox), `select#…-field` (envelope `from`/`to`), `select#…-comparison` (`over`/`under`), `input#…-amount`, `select#…-unit` (`B`, `K`, `M`, `G`); button `#rule-i-condition-j-remove` |
//! | action `k` of rule `i` | `select#rule-i-action-k-kind` (`fileinto`, `redirect`, `keep`, `discard`, `vacation`, `stop`), `input#…-folder`, `input#…-create` (checkbox), `input#…-address`, `input#…-copy` (checkbox), `input#…-days`, `input#…-subject`, `textarea#…-reason`, `input#…-addresses`; button `#rule-i-action-k-remove` |
//! | after a visual save | a 303 to `/me/sieve` with `#flash.flash-ok`; a mistake redraws the editor with `#flash.flash-error` and `#sieve-error` whose `data-field` is the id of the field at fault (which has `aria-invalid="true"`) |
//! | generated script | `pre#sieve-preview` (when the rules are valid); `a#sieve-raw-link` opens the raw editor |
//! | raw editor (`GET /me/sieve/edit?name=N&mode=raw`, or any script the visual editor cannot read) | `form#sieve-raw-form`, `textarea#sieve-script` (`script`), `input#sieve-activate`, `button#sieve-raw-save`; why the visual editor cannot open it: `#sieve-not-representable`; `sievec`'s messages: `ul#sieve-errors` with `li[data-line="N"]`, and the numbered script `ol#sieve-lines` (a faulty line has class `error-line`); `a#sieve-visual-link` when the script can be edited visually |
//!
//! Every field's `name` equals its `id`. The field names of the visual
//! editor mirror the JSON of `couchmail_sieve_rules::RuleSet`; docs/sieve-editor.md
//! describes the rules and the script.

#[path = "sieve_form.rs"]
mod form;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use couchmail_directory::{Cascade, ListFilter};
use couchmail_model::{Address, DocKind, Document, SieveName, SieveScript};
use couchmail_sieve_rules::{RuleSet, from_sieve, to_sieve};
use couchmail_store::{ListOptions, Rev};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::access::{Action, Resource};
use crate::ui::forms::describe;
use crate::ui::me::read_mailbox;
use crate::ui::page::{render_status, ser, url_encode};
use crate::ui::session::Flash;
use crate::ui::{SessionUser, UiError, UiState, render};
use form::{Draft, DraftRule, Op, field_id};

/// The Sieve pages' routes, merged into the UI's router behind its session and CSRF checks.
pub(crate) fn routes() -> Router<UiState> {
    Router::new()
        .route("/me/sieve", get(list))
        .route("/me/sieve/edit", get(edit).post(save_rules))
        .route("/me/sieve/raw", post(save_raw))
        .route("/me/sieve/activate", post(activate))
        .route("/me/sieve/delete", post(delete))
        .route("/me/sieve/editor.js", get(editor_script))
        .route("/me/sieve/editor.css", get(editor_style))
}

/// The Sieve pages' templates (`templates/sieve_*.html`), by name, added to the template set.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("sieve_list.html", include_str!("../../templates/sieve_list.html")),
    ("sieve_rules.html", include_str!("../../templates/sieve_rules.html")),
    ("sieve_raw.html", include_str!("../../templates/sieve_raw.html")),
];

/// Hides the fields a condition's or action's kind does not use; the form works without it.
const EDITOR_JS: &str = include_str!("../../static/sieve_editor.js");
/// The editor's few styles of its own (CSP allows only stylesheets from this site).
const EDITOR_CSS: &str = include_str!("../../static/sieve_editor.css");
/// Most scripts listed.
const MAX_SCRIPTS: usize = 500;
/// Where every write goes back to.
const LIST_PATH: &str = "/me/sieve";

/// One row of the list.
#[derive(Debug, Serialize)]
struct ScriptRow {
    name: String,
    href: String,
    rev: String,
    active: bool,
    /// The visual editor can open it.
    visual: bool,
    n_rules: Option<usize>,
}

/// `GET /me/sieve`.
async fn list(State(state): State<UiState>, user: SessionUser) -> Result<Response, UiError> {
    user.principal.authorize(Action::Read, &Resource::Sieve(&user.mailbox))?;
    let (mailbox, _) = read_mailbox(&state, &user.mailbox).await?;
    let filter = ListFilter {
        kind: DocKind::Sieve,
        domain: None,
        owner: Some(user.mailbox.clone()),
        page: ListOptions { start_after: None, limit: Some(MAX_SCRIPTS) },
    };
    let mut rows = Vec::new();
    for entry in state.api.directory.list(&filter).await? {
        if let Document::Sieve(script) = &entry.doc {
            let parsed = from_sieve(&script.script).ok();
            rows.push(ScriptRow {
                name: script.name.to_string(),
                href: edit_href(script.name.as_str(), false),
                rev: entry.rev.to_string(),
                active: mailbox.sieve_active.as_ref() == Some(&script.name),
                visual: parsed.is_some(),
                n_rules: parsed.map(|rules| rules.rules.len()),
            });
        }
    }
    Ok(render(
        Some(&user),
        "sieve_list.html",
        context! {
            title => "Filters",
            nav => "sieve",
            rows => ser(&rows),
            active => mailbox.sieve_active.as_ref().map(ToString::to_string),
            suggested_name => if rows.is_empty() { "filters".to_owned() } else { String::new() },
        },
    ))
}

fn edit_href(name: &str, raw: bool) -> String {
    format!("/me/sieve/edit?name={}{}", url_encode(name), if raw { "&mode=raw" } else { "" })
}

/// The query of the editor page.
#[derive(Deserialize)]
struct EditQuery {
    /// Absent after a login that dropped the query: the list is shown instead.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    mode: Option<String>,
}

/// `GET /me/sieve/edit?name=N[&mode=raw]`: the visual editor when the script
/// is the editor's (or new), else the raw editor.
async fn edit(
    State(state): State<UiState>,
    user: SessionUser,
    Query(query): Query<EditQuery>,
) -> Result<Response, UiError> {
    user.principal.authorize(Action::Read, &Resource::Sieve(&user.mailbox))?;
    let Some(name) = query.name else {
        return Ok(Redirect::to(LIST_PATH).into_response());
    };
    let name = match SieveName::parse(name.trim()) {
        Ok(name) => name,
        Err(err) => {
            user.flash(&state, Flash::error(format!("name: {}", err.message)));
            return Ok(Redirect::to(LIST_PATH).into_response());
        }
    };
    let (mailbox, _) = read_mailbox(&state, &user.mailbox).await?;
    let active = mailbox.sieve_active.as_ref();
    // A new filter becomes the active one unless another is; an active one stays active.
    let activate = active.is_none() || active == Some(&name);
    let stored = read_script(&state, &user.mailbox, &name).await?;
    let raw_asked = query.mode.as_deref() == Some("raw");
    let page = match stored {
        Some((script, rev)) => match (raw_asked, from_sieve(&script.script)) {
            (false, Ok(rules)) => {
                VisualPage { name, rev: Some(rev), activate, draft: Draft::of(&rules), error: None }.draw(&user)
            }
            (_, parsed) => RawPage {
                name,
                rev: Some(rev),
                activate,
                not_representable: parsed.err().map(|why| why.to_string()),
                script: script.script,
                errors: Vec::new(),
            }
            .draw(&user, StatusCode::OK),
        },
        None if raw_asked => {
            RawPage { name, rev: None, activate, not_representable: None, script: String::new(), errors: Vec::new() }
                .draw(&user, StatusCode::OK)
        }
        None => VisualPage { name, rev: None, activate, draft: Draft { rules: vec![DraftRule::new(1)] }, error: None }
            .draw(&user),
    };
    Ok(page)
}

/// The visual editor, drawn.
struct VisualPage {
    name: SieveName,
    rev: Option<Rev>,
    activate: bool,
    draft: Draft,
    /// The element id at fault and the message.
    error: Option<(String, String)>,
}

impl VisualPage {
    fn draw(self, user: &SessionUser) -> Response {
        let preview = self.draft.to_rules().ok().and_then(|rules| to_sieve(&rules).ok());
        let (status, user) = match &self.error {
            Some((id, message)) => {
                let mut shown = user.clone();
                let text = if id.starts_with("rule-") {
                    format!("{}: {message}", form::field_label(id))
                } else {
                    message.clone()
                };
                shown.flash = Some(Flash::error(text));
                (StatusCode::UNPROCESSABLE_ENTITY, shown)
            }
            None => (StatusCode::OK, user.clone()),
        };
        render_status(
            status,
            Some(&user),
            "sieve_rules.html",
            context! {
                title => format!("Filter {}", self.name),
                nav => "sieve",
                name => self.name.to_string(),
                rev => self.rev.as_ref().map(ToString::to_string).unwrap_or_default(),
                is_new => self.rev.is_none(),
                activate => self.activate,
                draft => ser(&self.draft),
                preview => preview,
                raw_href => edit_href(self.name.as_str(), true),
                error_id => self.error.as_ref().map(|(id, _)| id.clone()).unwrap_or_default(),
                error_message => self.error.map(|(_, message)| message),
            },
        )
    }
}

/// One of `sievec`'s messages, with the line it names.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct ScriptError {
    line: Option<usize>,
    text: String,
}

/// One line of the numbered script.
#[derive(Debug, Serialize)]
struct ScriptLine {
    number: usize,
    text: String,
    bad: bool,
}

/// The raw editor, drawn.
struct RawPage {
    name: SieveName,
    rev: Option<Rev>,
    activate: bool,
    /// Why the visual editor cannot open the script, when it cannot.
    not_representable: Option<String>,
    script: String,
    errors: Vec<ScriptError>,
}

impl RawPage {
    fn draw(self, user: &SessionUser, status: StatusCode) -> Response {
        let lines: Vec<ScriptLine> = if self.errors.is_empty() {
            Vec::new()
        } else {
            self.script
                .lines()
                .enumerate()
                .map(|(idx, text)| ScriptLine {
                    number: idx + 1,
                    text: text.to_owned(),
                    bad: self.errors.iter().any(|error| error.line == Some(idx + 1)),
                })
                .collect()
        };
        let visual = self.rev.is_some() && from_sieve(&self.script).is_ok();
        render_status(
            status,
            Some(user),
            "sieve_raw.html",
            context! {
                title => format!("Filter {} (Sieve)", self.name),
                nav => "sieve",
                name => self.name.to_string(),
                rev => self.rev.as_ref().map(ToString::to_string).unwrap_or_default(),
                is_new => self.rev.is_none(),
                activate => self.activate,
                not_representable => self.not_representable,
                script => self.script,
                errors => ser(&self.errors),
                lines => ser(&lines),
                visual_href => visual.then(|| edit_href(self.name.as_str(), false)),
            },
        )
    }
}

/// `POST /me/sieve/edit`: a button of the visual editor. Editing buttons draw
/// the page again with the change; `save` stores the rules.
async fn save_rules(
    State(state): State<UiState>,
    user: SessionUser,
    Form(fields): Form<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let field = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let name = match SieveName::parse(field("name").unwrap_or_default().trim()) {
        Ok(name) => name,
        Err(err) => return Err(UiError::Api(Error::invalid("name", err.message))),
    };
    let rev = field("rev").filter(|rev| !rev.is_empty()).map(|rev| Rev(rev.to_owned()));
    let activate = field("activate").is_some();
    let op = field("op").and_then(Op::parse).unwrap_or(Op::Refresh);
    let mut draft = match Draft::from_fields(&fields) {
        Ok(draft) => draft,
        Err(message) => return Err(UiError::Api(Error::invalid("rules", message))),
    };
    if op != Op::Save {
        draft.apply(op);
        return Ok(VisualPage { name, rev, activate, draft, error: None }.draw(&user));
    }
    let rules: RuleSet = match draft.to_rules() {
        Ok(rules) => rules,
        Err(error) => return Ok(VisualPage { name, rev, activate, draft, error: Some(error) }.draw(&user)),
    };
    let script = match to_sieve(&rules) {
        Ok(script) => script,
        Err(err) => {
            let error = (field_id(&err.field), err.message);
            return Ok(VisualPage { name, rev, activate, draft, error: Some(error) }.draw(&user));
        }
    };
    authorize_owner(&state, &user).await?;
    // The visual editor writes over its own scripts only: one changed as text
    // since (here, in the raw editor or over ManageSieve) is never rewritten.
    if let Some((stored, _)) = read_script(&state, &user.mailbox, &name).await?
        && let Err(why) = from_sieve(&stored.script)
    {
        let message = format!(
            "The filter {name} was changed as text and the visual editor cannot show it ({why}); edit it in the raw editor."
        );
        return Ok(
            VisualPage { name, rev, activate, draft, error: Some(("sieve-raw-link".to_owned(), message)) }.draw(&user)
        );
    }
    match store(&state, &user.mailbox, &name, rev.as_ref(), script, activate).await {
        Ok(message) => {
            tracing::info!(mailbox = %user.mailbox, script = %name, n_rules = rules.rules.len(), "filter saved in the visual editor");
            user.flash(&state, Flash::ok(message));
            Ok(Redirect::to(LIST_PATH).into_response())
        }
        Err(StoreError::Refused(err)) => {
            let error = ("sieve-preview".to_owned(), describe(&err));
            Ok(VisualPage { name, rev, activate, draft, error: Some(error) }.draw(&user))
        }
        Err(StoreError::Page(err)) => Err(err),
    }
}

/// The raw editor's form.
#[derive(Deserialize)]
struct RawForm {
    name: String,
    #[serde(default)]
    rev: String,
    script: String,
    #[serde(default)]
    activate: Option<String>,
}

/// `POST /me/sieve/raw`: stores the script as typed (line ends as LF); a refusal
/// draws the editor again with the text and `sievec`'s messages by line.
async fn save_raw(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<RawForm>,
) -> Result<Response, UiError> {
    let name = SieveName::parse(form.name.trim()).map_err(|err| UiError::Api(Error::invalid("name", err.message)))?;
    let rev = Some(form.rev.as_str()).filter(|rev| !rev.is_empty()).map(|rev| Rev(rev.to_owned()));
    let activate = form.activate.is_some();
    // Browsers send a text area's line ends as CRLF; the stored script keeps LF.
    let script = form.script.replace("\r\n", "\n");
    authorize_owner(&state, &user).await?;
    match store(&state, &user.mailbox, &name, rev.as_ref(), script.clone(), activate).await {
        Ok(message) => {
            tracing::info!(mailbox = %user.mailbox, script = %name, "filter saved in the raw editor");
            user.flash(&state, Flash::ok(message));
            Ok(Redirect::to(LIST_PATH).into_response())
        }
        Err(StoreError::Refused(err)) => {
            let errors = script_errors(&err);
            let mut shown = user.clone();
            shown.flash = Some(Flash::error(if errors.iter().any(|error| error.line.is_some()) {
                "Sieve refused the script; see the messages by line below.".to_owned()
            } else {
                describe(&err)
            }));
            // A stored script keeps saying why the rule editor cannot show it; a new one needs no such note.
            let not_representable = rev.as_ref().and_then(|_| from_sieve(&script).err()).map(|why| why.to_string());
            Ok(RawPage { name, rev, activate, not_representable, script, errors }
                .draw(&shown, StatusCode::UNPROCESSABLE_ENTITY))
        }
        Err(StoreError::Page(err)) => Err(err),
    }
}

/// `sievec`'s messages in a refusal (`line N: error: …`, one a line), or the refusal itself.
fn script_errors(err: &Error) -> Vec<ScriptError> {
    let message = match err {
        Error::Invalid { message, field: Some(field) } if field == "script" => message.clone(),
        other => return vec![ScriptError { line: None, text: describe(other) }],
    };
    message
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|text| {
            let line = text
                .strip_prefix("line ")
                .and_then(|rest| rest.split_once(':'))
                .and_then(|(number, _)| number.trim().parse().ok());
            ScriptError { line, text: text.to_owned() }
        })
        .collect()
}

/// Why a write did not happen.
enum StoreError {
    /// The user can fix it on the same page: an invalid script, a stale revision, a name taken.
    Refused(Error),
    /// An error page: no authority, the store down, a bug.
    Page(UiError),
}

impl From<UiError> for StoreError {
    fn from(err: UiError) -> StoreError {
        match err {
            UiError::Api(err) => StoreError::from(err),
            other => StoreError::Page(other),
        }
    }
}

impl From<Error> for StoreError {
    fn from(err: Error) -> StoreError {
        match err {
            Error::Invalid { .. } | Error::Conflict(_) | Error::Refused(_) | Error::NotFound(_) => {
                StoreError::Refused(err)
            }
            other => StoreError::Page(UiError::Api(other)),
        }
    }
}

impl From<couchmail_directory::Error> for StoreError {
    fn from(err: couchmail_directory::Error) -> StoreError {
        StoreError::from(Error::from(err))
    }
}

/// Creates (no `rev`) or replaces (at `rev`) the script, then makes it the active one if asked.
async fn store(
    state: &UiState,
    owner: &Address,
    name: &SieveName,
    rev: Option<&Rev>,
    script: String,
    activate: bool,
) -> Result<String, StoreError> {
    let doc = Document::Sieve(SieveScript { owner: owner.clone(), name: name.clone(), script });
    match rev {
        Some(rev) => {
            state.api.directory.update(&doc, rev).await.map_err(|err| match Error::from(err) {
                Error::Conflict(_) => StoreError::Refused(Error::Conflict(format!(
                    "the filter {name} was changed elsewhere since this page was drawn; open it again"
                ))),
                other => StoreError::from(other),
            })?;
        }
        None => {
            state.api.directory.create(&doc).await.map_err(|err| match Error::from(err) {
                Error::Conflict(_) => StoreError::Refused(Error::invalid(
                    "name",
                    format!("a filter named {name} exists already; open it from the list"),
                )),
                other => StoreError::from(other),
            })?;
        }
    }
    if activate {
        set_active(state, owner, Some(name.clone())).await?;
        Ok(format!("Filter {name} saved; it is your active filter."))
    } else {
        Ok(format!("Filter {name} saved."))
    }
}

/// Makes `name` the mailbox's active script (`None`: no filter runs).
async fn set_active(state: &UiState, owner: &Address, name: Option<SieveName>) -> Result<(), StoreError> {
    let (mut mailbox, rev) = read_mailbox(state, owner).await?;
    if mailbox.sieve_active == name {
        return Ok(());
    }
    mailbox.sieve_active = name;
    state.api.directory.update(&Document::Mailbox(mailbox), &rev).await?;
    Ok(())
}

/// Changing scripts needs authority over the mailbox and every role it holds, as in the API.
async fn authorize_owner(state: &UiState, user: &SessionUser) -> Result<(), UiError> {
    user.principal.authorize(Action::Write, &Resource::Sieve(&user.mailbox))?;
    let (mailbox, _) = read_mailbox(state, &user.mailbox).await?;
    user.principal.authorize(Action::Write, &Resource::Account { address: &user.mailbox, roles: &mailbox.roles })?;
    Ok(())
}

async fn read_script(
    state: &UiState,
    owner: &Address,
    name: &SieveName,
) -> Result<Option<(SieveScript, Rev)>, UiError> {
    match state.api.directory.get(&script_id(owner, name)).await? {
        Some(entry) => match entry.doc {
            Document::Sieve(script) => Ok(Some((script, entry.rev))),
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

fn script_id(owner: &Address, name: &SieveName) -> String {
    DocKind::Sieve.id(format_args!("{owner}:{name}"))
}

/// The activation form: an empty name deactivates.
#[derive(Deserialize)]
struct ActivateForm {
    #[serde(default)]
    name: String,
}

/// `POST /me/sieve/activate`.
async fn activate(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<ActivateForm>,
) -> Result<Response, UiError> {
    authorize_owner(&state, &user).await?;
    let name = match form.name.trim() {
        "" => None,
        text => Some(SieveName::parse(text).map_err(|err| UiError::Api(Error::invalid("name", err.message)))?),
    };
    let message = match &name {
        Some(name) => format!("Filter {name} is now your active filter."),
        None => "No filter runs on your mail now.".to_owned(),
    };
    finish(&state, &user, set_active(&state, &user.mailbox, name).await.map(|()| message))
}

/// The removal form.
#[derive(Deserialize)]
struct DeleteForm {
    name: String,
    rev: String,
}

/// `POST /me/sieve/delete`: removes a script (at the revision listed); removing the active one deactivates it.
async fn delete(
    State(state): State<UiState>,
    user: SessionUser,
    Form(form): Form<DeleteForm>,
) -> Result<Response, UiError> {
    authorize_owner(&state, &user).await?;
    let name = SieveName::parse(form.name.trim()).map_err(|err| UiError::Api(Error::invalid("name", err.message)))?;
    let rev = Rev(form.rev.clone());
    let outcome = state
        .api
        .directory
        .remove(&script_id(&user.mailbox, &name), Some(&rev), Cascade::Remove)
        .await
        .map(|_| format!("Filter {name} removed."))
        .map_err(StoreError::from);
    finish(&state, &user, outcome)
}

/// Flashes the outcome and goes back to the list; errors the user cannot fix are error pages.
fn finish(state: &UiState, user: &SessionUser, outcome: Result<String, StoreError>) -> Result<Response, UiError> {
    match outcome {
        Ok(message) => user.flash(state, Flash::ok(message)),
        Err(StoreError::Refused(err)) => user.flash(state, Flash::error(describe(&err))),
        Err(StoreError::Page(err)) => return Err(err),
    }
    Ok(Redirect::to(LIST_PATH).into_response())
}

/// `GET /me/sieve/editor.js`.
async fn editor_script() -> Response {
    asset(EDITOR_JS, "text/javascript; charset=utf-8")
}

/// `GET /me/sieve/editor.css`.
async fn editor_style() -> Response {
    asset(EDITOR_CSS, "text/css; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sievec_messages_are_split_by_line() {
        let err = Error::invalid(
            "script",
            "line 4: error: unexpected end of command.\nerror: parse failed.\nline 12: warning: x",
        );
        assert_eq!(
            script_errors(&err),
            vec![
                ScriptError { line: Some(4), text: "line 4: error: unexpected end of command.".to_owned() },
                ScriptError { line: None, text: "error: parse failed.".to_owned() },
                ScriptError { line: Some(12), text: "line 12: warning: x".to_owned() },
            ]
        );
        let other = script_errors(&Error::Conflict("stale".to_owned()));
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].line, None);
    }

    #[test]
    fn editor_links_encode_the_name() {
        assert_eq!(edit_href("my filter", false), "/me/sieve/edit?name=my%20filter");
        assert_eq!(edit_href("a&b", true), "/me/sieve/edit?name=a%26b&mode=raw");
    }
}
