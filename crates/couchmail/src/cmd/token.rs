//! `couchmail token create|list|revoke`: bearer tokens for the REST API.
//!
//! The store keeps only a token's id and the SHA-256 of its secret, so the
//! bearer is printed once, at creation, and never again.

use couchmail_directory::Cascade;
use couchmail_model::{DocKind, Document, Token, TokenPrincipal};
use serde::Serialize;

use super::{Context, create, fetch, format_time, list, now_unix, print_removed, remove, wrong_kind};
use crate::cli::TokenCommand;
use crate::output::{self, Table, or_dash};

/// A token as `--json` shows it; `bearer` only at creation.
#[derive(Debug, Serialize)]
struct TokenView {
    id: String,
    principal: String,
    label: String,
    created: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    bearer: Option<String>,
}

impl TokenView {
    fn new(token: &Token, bearer: Option<String>) -> TokenView {
        TokenView {
            id: token.id.clone(),
            principal: token.principal.to_string(),
            label: token.label.clone(),
            created: token.created,
            bearer,
        }
    }
}

pub async fn run(command: TokenCommand, context: &Context) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { admin, mailbox, label } => {
            let principal = match (admin, mailbox) {
                (_, Some(address)) => {
                    let (mailbox, _) = super::mailbox::read(context, &address).await?;
                    TokenPrincipal::Mailbox(mailbox.address)
                }
                (true, None) => TokenPrincipal::Admin,
                (false, None) => unreachable!("clap requires --admin or --mailbox"),
            };
            let (token, bearer) = prepare_token(principal, &label);
            store_token(context, &token).await?;
            if context.json {
                return output::json(&TokenView::new(&token, Some(bearer)));
            }
            output::note(&format!(
                "created token {} for {}; this is the only time its bearer is shown, store it now:",
                token.id, token.principal
            ));
            output::text(&bearer)
        }
        TokenCommand::List => {
            let mut views = Vec::new();
            for entry in list(context, DocKind::Token, None).await? {
                match &entry.doc {
                    Document::Token(token) => views.push(TokenView::new(token, None)),
                    other => return Err(wrong_kind(&other.id(), other)),
                }
            }
            if context.json {
                return output::json(&views);
            }
            let mut table = Table::new(&["id", "principal", "created", "label"]);
            for view in &views {
                table.row(vec![
                    view.id.clone(),
                    view.principal.clone(),
                    format_time(view.created),
                    or_dash(Some(view.label.clone()).filter(|label| !label.is_empty())),
                ]);
            }
            table.print("no tokens yet; create one with `couchmail token create --admin`")
        }
        TokenCommand::Revoke { id } => {
            let doc_id = DocKind::Token.id(&id);
            let entry = fetch(context, &doc_id, format!("token {id}"), "token list").await?;
            let removed = remove(context, &doc_id, &entry.rev, Cascade::Refuse, format!("token {id}")).await?;
            print_removed(context, &removed)
        }
    }
}

/// Makes a new token for `principal`, not stored yet, with its bearer string.
pub fn prepare_token(principal: TokenPrincipal, label: &str) -> (Token, String) {
    Token::generate(principal, label.to_owned(), now_unix())
}

/// Stores a token made by [`prepare_token`].
pub async fn store_token(context: &Context, token: &Token) -> anyhow::Result<()> {
    create(context, &Document::Token(token.clone()), format!("token {}", token.id), "run the command again").await?;
    Ok(())
}
