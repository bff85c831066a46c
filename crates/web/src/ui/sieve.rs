//! The Sieve filter pages (`/me/sieve` and below). This file is a placeholder
//! for the Sieve editor's own module, which replaces it: keep the two items
//! below, which `ui::router` and the template set use.

use axum::Router;

use crate::ui::UiState;

/// The Sieve pages' routes, merged into the UI's router behind its session and CSRF checks.
pub(crate) fn routes() -> Router<UiState> {
    Router::new()
}

/// The Sieve pages' templates (`templates/sieve_*.html`), by name, added to the template set.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[];
