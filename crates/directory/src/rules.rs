//! The referential rules, applied on every write and removal.
//!
//! Every check reads the store through [`World`], which overlays the document
//! being written, so that a check sees the world as it would be after the
//! write.

use std::collections::HashSet;

use couchmail_model::{Address, AliasKey, DocKind, Document, DomainName, ListingScope, SieveScript, TokenPrincipal};
use couchmail_store::{ListOptions, Rev, Store};

use crate::{Cascade, Directory, Entry, Error, ErrorKind, ListFilter, Result};

/// Longest alias chain followed when looking for loops; Postfix's own
/// `virtual_alias_recursion_limit` is 1000, but no sane setup needs more than this.
const MAX_ALIAS_DEPTH: usize = 20;
/// Page size when scanning the store.
const SCAN_PAGE: usize = 1000;
/// How many dependents a refusal names before saying "and N more".
const NAMED_DEPENDENTS: usize = 5;

pub(crate) async fn get(directory: &Directory, id: &str) -> Result<Option<Entry>> {
    let Some(raw) = directory.store.get(id).await? else { return Ok(None) };
    let doc = Document::from_stored(&raw.id, &raw.body).map_err(|err| corrupt(id, err))?;
    Ok(Some(Entry { doc, rev: raw.rev }))
}

pub(crate) async fn write(directory: &Directory, doc: &Document, rev: Option<&Rev>) -> Result<Rev> {
    doc.validate()?;
    let world = World { store: directory.store.as_ref(), pending: Some(doc) };
    match doc {
        Document::Domain(domain) => {
            if let Some(alias) = world.domain_alias(&domain.name).await? {
                return Err(refused(format!(
                    "`{}` is already an alias of `{}`; remove the domain alias first",
                    domain.name, alias
                )));
            }
        }
        Document::DomainAlias(alias) => {
            if world.domain(&alias.name).await? {
                return Err(refused(format!("`{}` is a domain of its own; it cannot also be an alias", alias.name)));
            }
            world.require_domain(&alias.target, "target").await?;
            // Aliases whose targets lie in the alias domain now lead elsewhere:
            // make sure none of those chains loops.
            for entry in world.scan(DocKind::Alias).await? {
                if let Document::Alias(a) = &entry.doc
                    && a.active
                    && a.targets.iter().any(|t| t.domain() == &alias.name)
                {
                    world.check_alias_loops(&a.key, &a.targets).await?;
                }
            }
        }
        Document::Mailbox(mailbox) => {
            world.require_domain(mailbox.address.domain(), "_id").await?;
            if world.alias(&AliasKey::Address(mailbox.address.clone())).await?.is_some() {
                return Err(refused(format!(
                    "an alias `{}` exists; remove it before creating a mailbox with the same address",
                    mailbox.address
                )));
            }
            for (role_idx, role) in mailbox.roles.iter().enumerate() {
                if let couchmail_model::Role::DomainAdmin(domain) = role {
                    world.require_domain(domain, &format!("roles[{role_idx}]")).await?;
                }
            }
            if let Some(name) = &mailbox.sieve_active {
                let id = DocKind::Sieve.id(format_args!("{}:{}", mailbox.address, name));
                if world.store.get(&id).await?.is_none() {
                    return Err(Error::from(couchmail_model::ValidationError::field(
                        "sieve_active",
                        format!("there is no Sieve script `{name}` for `{}`; upload it first", mailbox.address),
                    )));
                }
            }
            if rev.is_none() {
                world.check_mailbox_limit(mailbox.address.domain()).await?;
            }
        }
        Document::Alias(alias) => {
            world.require_domain(alias.key.domain(), "_id").await?;
            if let AliasKey::Address(addr) = &alias.key
                && world.mailbox(addr).await?
            {
                return Err(refused(format!("`{addr}` is a mailbox; an alias may not shadow it")));
            }
            if alias.active {
                world.check_alias_loops(&alias.key, &alias.targets).await?;
            }
        }
        Document::Sieve(script) => {
            if !world.mailbox(&script.owner).await? {
                return Err(refused(format!("there is no mailbox `{}` to own this script", script.owner)));
            }
            if let Some(check) = &directory.script_check {
                check.check(&script.script).await?;
            }
        }
        Document::Token(token) => {
            if let TokenPrincipal::Mailbox(addr) = &token.principal
                && !world.mailbox(addr).await?
            {
                return Err(refused(format!("there is no mailbox `{addr}` for the token to act for")));
            }
        }
        Document::Listing(listing) => match &listing.key.scope {
            ListingScope::Global => {}
            ListingScope::Domain(domain) => world.require_domain(domain, "_id").await?,
            ListingScope::Mailbox(addr) => {
                if !world.mailbox(addr).await? {
                    return Err(refused(format!("_id: there is no mailbox `{addr}` for the listing to apply to")));
                }
            }
        },
        Document::Invitation(invitation) => world.require_domain(&invitation.domain, "domain").await?,
    }
    Ok(directory.store.put(&doc.id(), rev, &doc.to_body()).await?)
}

pub(crate) async fn remove(
    directory: &Directory,
    id: &str,
    rev: Option<&Rev>,
    cascade: Cascade,
) -> Result<Vec<String>> {
    let Some(entry) = get(directory, id).await? else {
        return Err(Error::new(ErrorKind::NotFound, format!("`{id}` does not exist")));
    };
    if let Some(rev) = rev
        && rev != &entry.rev
    {
        return Err(Error::new(ErrorKind::Conflict, format!("`{id}` was changed meanwhile; read it again")));
    }
    let world = World { store: directory.store.as_ref(), pending: None };
    let plan = world.dependents(&entry.doc).await?;
    if !plan.is_empty() && cascade == Cascade::Refuse {
        return Err(refused(format!(
            "{} still depend on `{id}`: {}; remove them first, or remove with cascade (CLI `--cascade`, API `?cascade=true`)",
            plan.len(),
            plan.describe()
        )));
    }
    let mut changed = Vec::new();
    for edit in plan.edits {
        let edit_id = edit.doc.id();
        directory.store.put(&edit_id, Some(&edit.rev), &edit.doc.to_body()).await?;
        changed.push(edit_id);
    }
    for dependent in plan.removals {
        let dependent_id = dependent.doc.id();
        directory.store.delete(&dependent_id, &dependent.rev).await?;
        changed.push(dependent_id);
    }
    directory.store.delete(id, &entry.rev).await?;
    changed.push(id.to_owned());
    Ok(changed)
}

pub(crate) async fn list(directory: &Directory, filter: &ListFilter) -> Result<Vec<Entry>> {
    let prefix = match (&filter.kind, &filter.owner, &filter.domain) {
        (DocKind::Sieve, Some(owner), _) => DocKind::Sieve.id(format_args!("{owner}:")),
        (DocKind::Listing, Some(owner), _) => {
            DocKind::Listing.id(format_args!("{}:", ListingScope::Mailbox(owner.clone())))
        }
        (kind, _, _) => kind.id_prefix(),
    };
    let limit = filter.page.limit.unwrap_or(usize::MAX);
    let mut found = Vec::new();
    let mut page = ListOptions { start_after: filter.page.start_after.clone(), limit: Some(limit.clamp(1, SCAN_PAGE)) };
    loop {
        let raws = directory.store.list(&prefix, &page).await?;
        let n_raws = raws.len();
        for raw in raws {
            page.start_after = Some(raw.id.clone());
            match Document::from_stored(&raw.id, &raw.body) {
                Ok(doc) if matches(&doc, filter) => {
                    found.push(Entry { doc, rev: raw.rev });
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(id = %raw.id, reason = %err, "skipping an invalid stored document"),
            }
        }
        if n_raws < page.limit.unwrap_or(SCAN_PAGE) {
            return Ok(found);
        }
    }
}

/// Whether `doc` passes the domain and owner parts of `filter`.
fn matches(doc: &Document, filter: &ListFilter) -> bool {
    let in_domain = |d: &DomainName| filter.domain.as_ref().is_none_or(|want| want == d);
    let owned_by = |a: &Address| filter.owner.as_ref().is_none_or(|want| want == a);
    match doc {
        Document::Domain(d) => in_domain(&d.name),
        Document::DomainAlias(d) => in_domain(&d.target) || in_domain(&d.name),
        Document::Mailbox(m) => in_domain(m.address.domain()),
        Document::Alias(a) => in_domain(a.key.domain()),
        Document::Sieve(s) => in_domain(s.owner.domain()) && owned_by(&s.owner),
        Document::Token(t) => match &t.principal {
            TokenPrincipal::Admin => filter.domain.is_none() && filter.owner.is_none(),
            TokenPrincipal::Mailbox(a) => in_domain(a.domain()) && owned_by(a),
        },
        Document::Listing(l) => match &l.key.scope {
            ListingScope::Global => filter.domain.is_none() && filter.owner.is_none(),
            ListingScope::Domain(d) => in_domain(d) && filter.owner.is_none(),
            ListingScope::Mailbox(a) => in_domain(a.domain()) && owned_by(a),
        },
        Document::Invitation(i) => in_domain(&i.domain) && filter.owner.is_none(),
    }
}

fn refused(message: String) -> Error {
    Error::new(ErrorKind::Refused, message)
}

fn corrupt(id: &str, err: couchmail_model::ValidationError) -> Error {
    let message = format!("the stored document `{id}` is invalid ({err}); fix or remove it in the store");
    Error::new(ErrorKind::Corrupt(err), message)
}

/// What removing a document takes with it.
#[derive(Default)]
struct Plan {
    /// Documents to rewrite (an alias losing a target, a mailbox losing its active script).
    edits: Vec<Entry>,
    /// Documents to remove, in an order that never leaves a dangling reference.
    removals: Vec<Entry>,
}

impl Plan {
    fn is_empty(&self) -> bool {
        self.edits.is_empty() && self.removals.is_empty()
    }

    fn len(&self) -> usize {
        self.edits.len() + self.removals.len()
    }

    fn describe(&self) -> String {
        let ids: Vec<String> = self.edits.iter().chain(&self.removals).map(|entry| entry.doc.id()).collect();
        let mut text = ids.iter().take(NAMED_DEPENDENTS).map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", ");
        if ids.len() > NAMED_DEPENDENTS {
            text.push_str(&format!(" and {} more", ids.len() - NAMED_DEPENDENTS));
        }
        text
    }
}

/// The store as a write would leave it: reads see `pending` in place of the stored document with its id.
struct World<'a> {
    store: &'a dyn Store,
    pending: Option<&'a Document>,
}

impl World<'_> {
    /// The document with `id`, typed; a stored document that no longer
    /// validates counts as absent for rule checks (the index skips it too).
    async fn doc(&self, id: &str) -> Result<Option<Document>> {
        if let Some(pending) = self.pending
            && pending.id() == id
        {
            return Ok(Some(pending.clone()));
        }
        let Some(raw) = self.store.get(id).await? else { return Ok(None) };
        match Document::from_stored(&raw.id, &raw.body) {
            Ok(doc) => Ok(Some(doc)),
            Err(err) => {
                tracing::warn!(%id, reason = %err, "ignoring an invalid stored document in a rule check");
                Ok(None)
            }
        }
    }

    async fn domain(&self, name: &DomainName) -> Result<bool> {
        Ok(matches!(self.doc(&DocKind::Domain.id(name)).await?, Some(Document::Domain(_))))
    }

    async fn domain_alias(&self, name: &DomainName) -> Result<Option<DomainName>> {
        match self.doc(&DocKind::DomainAlias.id(name)).await? {
            Some(Document::DomainAlias(alias)) => Ok(Some(alias.target)),
            _ => Ok(None),
        }
    }

    async fn mailbox(&self, addr: &Address) -> Result<bool> {
        Ok(matches!(self.doc(&DocKind::Mailbox.id(addr)).await?, Some(Document::Mailbox(_))))
    }

    /// The targets of an active alias.
    async fn alias(&self, key: &AliasKey) -> Result<Option<Vec<Address>>> {
        match self.doc(&DocKind::Alias.id(key)).await? {
            Some(Document::Alias(alias)) if alias.active => Ok(Some(alias.targets)),
            _ => Ok(None),
        }
    }

    /// Refuses unless `name` is a real domain (not an alias of one).
    async fn require_domain(&self, name: &DomainName, field: &str) -> Result<()> {
        if self.domain(name).await? {
            return Ok(());
        }
        let message = match self.domain_alias(name).await? {
            Some(target) => format!("`{name}` is an alias of `{target}`; use `{target}` instead"),
            None => format!("there is no domain `{name}`; add it first (couchmail domain add {name})"),
        };
        Err(Error::new(ErrorKind::Refused, format!("{field}: {message}")))
    }

    async fn check_mailbox_limit(&self, domain: &DomainName) -> Result<()> {
        let Some(Document::Domain(d)) = self.doc(&DocKind::Domain.id(domain)).await? else { return Ok(()) };
        let Some(max) = d.max_mailboxes else { return Ok(()) };
        let n_mailboxes = self
            .scan(DocKind::Mailbox)
            .await?
            .iter()
            .filter(|entry| matches!(&entry.doc, Document::Mailbox(m) if m.address.domain() == domain))
            .count();
        if n_mailboxes >= max as usize {
            return Err(refused(format!(
                "`{domain}` already has {n_mailboxes} mailboxes, its limit (max_mailboxes = {max}); raise the limit first"
            )));
        }
        Ok(())
    }

    /// Follows every chain from `targets` as Postfix would expand them
    /// (domain aliases rewritten, `+` extensions stripped, catch-alls
    /// applied) and refuses one that comes back to `start` or runs too deep.
    async fn check_alias_loops(&self, start: &AliasKey, targets: &[Address]) -> Result<()> {
        let mut expanded: HashSet<AliasKey> = HashSet::new();
        let mut queue: Vec<(Address, usize)> = targets.iter().map(|t| (t.clone(), 1)).collect();
        while let Some((target, depth)) = queue.pop() {
            if depth > MAX_ALIAS_DEPTH {
                return Err(refused(format!(
                    "alias `{start}` leads through more than {MAX_ALIAS_DEPTH} aliases; shorten the chain"
                )));
            }
            let Some(key) = self.expansion_of(&target).await? else { continue };
            if &key == start {
                return Err(refused(format!(
                    "alias `{start}` would loop: its target `{target}` leads back to it; remove one link of the chain"
                )));
            }
            if !expanded.insert(key.clone()) {
                continue;
            }
            if let Some(next) = self.alias(&key).await? {
                queue.extend(next.into_iter().map(|t| (t, depth + 1)));
            }
        }
        Ok(())
    }

    /// The alias that mail to `target` is expanded by, if any.
    async fn expansion_of(&self, target: &Address) -> Result<Option<AliasKey>> {
        let target = match self.domain_alias(target.domain()).await? {
            Some(real) => target.with_domain(&real)?,
            None => target.clone(),
        };
        if !self.domain(target.domain()).await? {
            return Ok(None); // Not ours: it leaves the system.
        }
        let mut candidates = vec![target.clone()];
        if let Some((base, _extension)) = target.local_part().split_once('+')
            && let Ok(base) = Address::parse(&format!("{base}@{}", target.domain()))
        {
            candidates.push(base);
        }
        for candidate in candidates {
            if self.mailbox(&candidate).await? {
                return Ok(None);
            }
            let key = AliasKey::Address(candidate);
            if self.alias(&key).await?.is_some() {
                return Ok(Some(key));
            }
        }
        let catch_all = AliasKey::CatchAll(target.domain().clone());
        Ok(self.alias(&catch_all).await?.map(|_| catch_all))
    }

    /// Every valid document of `kind`.
    async fn scan(&self, kind: DocKind) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let prefix = kind.id_prefix();
        let mut page = ListOptions { start_after: None, limit: Some(SCAN_PAGE) };
        loop {
            let raws = self.store.list(&prefix, &page).await?;
            let n_raws = raws.len();
            for raw in raws {
                page.start_after = Some(raw.id.clone());
                match Document::from_stored(&raw.id, &raw.body) {
                    Ok(doc) => entries.push(Entry { doc, rev: raw.rev }),
                    Err(err) => tracing::warn!(id = %raw.id, reason = %err, "skipping an invalid stored document"),
                }
            }
            if n_raws < SCAN_PAGE {
                return Ok(entries);
            }
        }
    }

    /// The Sieve scripts of `owner`.
    async fn scripts_of(&self, owner: &Address) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let prefix = DocKind::Sieve.id(format_args!("{owner}:"));
        for raw in self.store.list(&prefix, &ListOptions::default()).await? {
            if let Ok(doc) = Document::from_stored(&raw.id, &raw.body) {
                entries.push(Entry { doc, rev: raw.rev });
            }
        }
        Ok(entries)
    }

    /// The listings that apply to mailbox `owner`.
    async fn listings_of(&self, owner: &Address) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let prefix = DocKind::Listing.id(format_args!("{}:", ListingScope::Mailbox(owner.clone())));
        let mut page = ListOptions { start_after: None, limit: Some(SCAN_PAGE) };
        loop {
            let raws = self.store.list(&prefix, &page).await?;
            let n_raws = raws.len();
            for raw in raws {
                page.start_after = Some(raw.id.clone());
                if let Ok(doc) = Document::from_stored(&raw.id, &raw.body) {
                    entries.push(Entry { doc, rev: raw.rev });
                }
            }
            if n_raws < SCAN_PAGE {
                return Ok(entries);
            }
        }
    }

    /// What hangs off `doc`, as edits and removals in a safe order.
    async fn dependents(&self, doc: &Document) -> Result<Plan> {
        let mut plan = Plan::default();
        match doc {
            Document::Domain(domain) => {
                let name = &domain.name;
                let mut mailboxes = Vec::new();
                for entry in self.scan(DocKind::Mailbox).await? {
                    if matches!(&entry.doc, Document::Mailbox(m) if m.address.domain() == name) {
                        mailboxes.push(entry);
                    }
                }
                for entry in self.scan(DocKind::Sieve).await? {
                    if matches!(&entry.doc, Document::Sieve(s) if s.owner.domain() == name) {
                        plan.removals.push(entry);
                    }
                }
                for entry in self.scan(DocKind::Token).await? {
                    if matches!(&entry.doc, Document::Token(t) if matches!(&t.principal, TokenPrincipal::Mailbox(a) if a.domain() == name))
                    {
                        plan.removals.push(entry);
                    }
                }
                for entry in self.scan(DocKind::Listing).await? {
                    if matches!(&entry.doc, Document::Listing(l) if l.key.scope.domain() == Some(name)) {
                        plan.removals.push(entry);
                    }
                }
                for entry in self.scan(DocKind::Invitation).await? {
                    if matches!(&entry.doc, Document::Invitation(i) if &i.domain == name) {
                        plan.removals.push(entry);
                    }
                }
                let mut gone_domains = vec![name.clone()];
                let mut domain_aliases = Vec::new();
                for entry in self.scan(DocKind::DomainAlias).await? {
                    if let Document::DomainAlias(a) = &entry.doc
                        && &a.target == name
                    {
                        gone_domains.push(a.name.clone());
                        domain_aliases.push(entry);
                    }
                }
                // Aliases of the domain go; aliases elsewhere lose the targets that
                // pointed into it (or through one of its alias domains).
                for entry in self.scan(DocKind::Alias).await? {
                    let Document::Alias(mut alias) = entry.doc else { continue };
                    if alias.key.domain() == name {
                        plan.removals.push(Entry { doc: Document::Alias(alias), rev: entry.rev });
                        continue;
                    }
                    let n_targets = alias.targets.len();
                    alias.targets.retain(|t| !gone_domains.contains(t.domain()));
                    if alias.targets.len() == n_targets {
                        continue;
                    }
                    let emptied = alias.targets.is_empty();
                    let edited = Entry { doc: Document::Alias(alias), rev: entry.rev };
                    if emptied { plan.removals.push(edited) } else { plan.edits.push(edited) }
                }
                plan.removals.extend(mailboxes);
                plan.removals.extend(domain_aliases);
            }
            Document::Mailbox(mailbox) => {
                let addr = &mailbox.address;
                self.drop_target(addr, &mut plan).await?;
                plan.removals.extend(self.scripts_of(addr).await?);
                for entry in self.scan(DocKind::Token).await? {
                    if matches!(&entry.doc, Document::Token(t) if t.principal == TokenPrincipal::Mailbox(addr.clone()))
                    {
                        plan.removals.push(entry);
                    }
                }
                plan.removals.extend(self.listings_of(addr).await?);
            }
            Document::Alias(alias) => {
                if let AliasKey::Address(addr) = &alias.key {
                    self.drop_target(addr, &mut plan).await?;
                }
            }
            Document::Sieve(SieveScript { owner, name, .. }) => {
                let id = DocKind::Mailbox.id(owner);
                if let Some(raw) = self.store.get(&id).await?
                    && let Ok(Document::Mailbox(mut mailbox)) = Document::from_stored(&raw.id, &raw.body)
                    && mailbox.sieve_active.as_ref() == Some(name)
                {
                    mailbox.sieve_active = None;
                    plan.edits.push(Entry { doc: Document::Mailbox(mailbox), rev: raw.rev });
                }
            }
            Document::DomainAlias(_) | Document::Token(_) | Document::Listing(_) | Document::Invitation(_) => {}
        }
        Ok(plan)
    }

    /// Plans taking `addr` out of every alias that targets it; an alias left
    /// with no target is removed.
    async fn drop_target(&self, addr: &Address, plan: &mut Plan) -> Result<()> {
        for entry in self.scan(DocKind::Alias).await? {
            let Document::Alias(mut alias) = entry.doc else { continue };
            if !alias.targets.contains(addr) {
                continue;
            }
            alias.targets.retain(|t| t != addr);
            let doc = Document::Alias(alias);
            if matches!(&doc, Document::Alias(a) if a.targets.is_empty()) {
                plan.removals.push(Entry { doc, rev: entry.rev });
            } else {
                plan.edits.push(Entry { doc, rev: entry.rev });
            }
        }
        Ok(())
    }
}
