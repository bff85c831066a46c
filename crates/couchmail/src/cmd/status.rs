//! `couchmail status`: is the store reachable, and what does it hold.

use std::collections::BTreeMap;

use couchmail_model::DocKind;
use serde::Serialize;

use super::{Context, list};
use crate::output::{self, or_dash};

#[derive(Debug, Serialize)]
struct StatusView {
    /// `sqlite` or `couchdb`.
    backend: &'static str,
    /// The store's own description: its file or database URL, never credentials.
    store: String,
    config_file: Option<String>,
    reachable: bool,
    counts: BTreeMap<&'static str, usize>,
}

pub async fn run(context: &Context) -> anyhow::Result<()> {
    let mut counts = BTreeMap::new();
    // Listing every kind proves the store answers and counts in one go; the
    // numbers are small enough at this stage for that to be cheap.
    for kind in DocKind::ALL {
        counts.insert(kind.as_str(), list(context, kind, None).await?.len());
    }
    let view = StatusView {
        backend: if context.config.store.is_couchdb() { "couchdb" } else { "sqlite" },
        store: context.directory.store().describe(),
        config_file: context.config.file.as_ref().map(|path| path.display().to_string()),
        reachable: true,
        counts,
    };
    if context.json {
        return output::json(&view);
    }
    let mut pairs = vec![
        ("backend", view.backend.to_owned()),
        ("store", format!("{} (reachable)", view.store)),
        ("config file", or_dash(view.config_file.clone())),
    ];
    for (kind, count) in &view.counts {
        pairs.push((kind, count.to_string()));
    }
    output::text(&output::fields(&pairs))
}
