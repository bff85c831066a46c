//! The directory's referential rules, against a real SQLite store.
#![allow(clippy::unwrap_used)] // Tests unwrap: a failure is the test failing.

use std::sync::Arc;

use couchmail_directory::{Cascade, Directory, ErrorKind, ListFilter};
use couchmail_model::{DocKind, Document};
use couchmail_store::{ListOptions, Store};
use couchmail_testkit::{TempStore, fixtures::*};

async fn directory() -> (TempStore, Directory) {
    let temp = TempStore::new().await;
    let directory = Directory::new(temp.store.clone() as Arc<dyn Store>);
    (temp, directory)
}

/// Creates every document, failing the test on the first refusal.
async fn create_all(directory: &Directory, docs: &[Document]) {
    for doc in docs {
        if let Err(err) = directory.create(doc).await {
            panic!("creating {}: {err}", doc.id());
        }
    }
}

async fn refused(directory: &Directory, doc: &Document) -> String {
    match directory.create(doc).await {
        Err(err) if *err.kind() == ErrorKind::Refused => err.to_string(),
        Err(err) => panic!("{} failed but was not refused: {:?} {err}", doc.id(), err.kind()),
        Ok(_) => panic!("{} was accepted but should have been refused", doc.id()),
    }
}

#[tokio::test]
async fn mailbox_needs_a_real_domain() {
    let (_temp, directory) = directory().await;
    let msg = refused(&directory, &mailbox("alice@example.com")).await;
    assert!(msg.contains("couchmail domain add example.com"), "{msg}");

    create_all(&directory, &[domain("example.com"), domain_alias("example.net", "example.com")]).await;
    let msg = refused(&directory, &mailbox("alice@example.net")).await;
    assert!(msg.contains("alias of `example.com`"), "{msg}");
    create_all(&directory, &[mailbox("alice@example.com")]).await;
}

#[tokio::test]
async fn alias_and_mailbox_never_shadow_each_other() {
    let (_temp, directory) = directory().await;
    create_all(
        &directory,
        &[domain("example.com"), mailbox("alice@example.com"), alias("info@example.com", &["alice@example.com"])],
    )
    .await;
    refused(&directory, &alias("alice@example.com", &["bob@elsewhere.example"])).await;
    refused(&directory, &mailbox("info@example.com")).await;
}

#[tokio::test]
async fn domain_and_domain_alias_are_exclusive() {
    let (_temp, directory) = directory().await;
    create_all(&directory, &[domain("example.com"), domain("example.org")]).await;
    refused(&directory, &domain_alias("example.org", "example.com")).await;
    refused(&directory, &domain_alias("example.net", "missing.example")).await;
    create_all(&directory, &[domain_alias("example.net", "example.com")]).await;
    refused(&directory, &domain("example.net")).await;
}

#[tokio::test]
async fn alias_loops_are_refused() {
    let (_temp, directory) = directory().await;
    create_all(
        &directory,
        &[
            domain("example.com"),
            domain("example.org"),
            mailbox("alice@example.com"),
            alias("a@example.com", &["b@example.com"]),
            alias("b@example.com", &["c@example.com", "alice@example.com"]),
        ],
    )
    .await;
    // Direct cycle through a chain.
    let msg = refused(&directory, &alias("c@example.com", &["a@example.com"])).await;
    assert!(msg.contains("loop"), "{msg}");
    // Through plus-addressing.
    refused(&directory, &alias("c@example.com", &["a+tag@example.com"])).await;
    // Through a catch-all: x@example.org is no mailbox, so the catch-all takes it.
    create_all(&directory, &[alias("relay@example.com", &["x@example.org"])]).await;
    refused(&directory, &alias("@example.org", &["relay@example.com"])).await;
    // A chain that ends in a mailbox or outside is fine.
    create_all(&directory, &[alias("c@example.com", &["alice@example.com", "someone@elsewhere.example"])]).await;
}

#[tokio::test]
async fn alias_loops_through_domain_aliases_are_refused() {
    let (_temp, directory) = directory().await;
    create_all(
        &directory,
        &[
            domain("example.com"),
            domain_alias("example.net", "example.com"),
            alias("a@example.com", &["b@example.net"]),
        ],
    )
    .await;
    // b@example.net is b@example.com, which would lead back to a@.
    refused(&directory, &alias("b@example.com", &["a@example.com"])).await;

    // A domain alias created after the aliases can close a loop too.
    create_all(
        &directory,
        &[
            domain("example.org"),
            alias("c@example.com", &["d@example.info"]),
            alias("d@example.org", &["c@example.com"]),
        ],
    )
    .await;
    let msg = refused(&directory, &domain_alias("example.info", "example.org")).await;
    assert!(msg.contains("loop"), "{msg}");
}

#[tokio::test]
async fn inactive_aliases_do_not_count_until_activated() {
    let (_temp, directory) = directory().await;
    create_all(&directory, &[domain("example.com"), alias("a@example.com", &["b@example.com"])]).await;
    let Document::Alias(mut b) = alias("b@example.com", &["a@example.com"]) else { unreachable!() };
    b.active = false;
    let rev = directory.create(&Document::Alias(b.clone())).await.unwrap();
    b.active = true;
    let err = directory.update(&Document::Alias(b), &rev).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Refused);
}

#[tokio::test]
async fn invalid_documents_are_refused_naming_the_field() {
    let (temp, directory) = directory().await;
    create_all(&directory, &[domain("example.com")]).await;
    let Document::Mailbox(mut m) = mailbox("alice@example.com") else { unreachable!() };
    m.quota_bytes = Some(10);
    let err = directory.create(&Document::Mailbox(m)).await.unwrap_err();
    match err.kind() {
        ErrorKind::Invalid(v) => assert_eq!(v.field, "quota_bytes"),
        other => panic!("expected invalid, got {other:?}"),
    }
    // Nothing was written.
    assert!(temp.store.get("mailbox:alice@example.com").await.unwrap().is_none());
}

#[tokio::test]
async fn stale_revision_is_a_conflict() {
    let (_temp, directory) = directory().await;
    let rev1 = directory.create(&domain("example.com")).await.unwrap();
    let Document::Domain(mut d) = domain("example.com") else { unreachable!() };
    d.max_mailboxes = Some(5);
    directory.update(&Document::Domain(d.clone()), &rev1).await.unwrap();
    d.max_mailboxes = Some(6);
    let err = directory.update(&Document::Domain(d), &rev1).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Conflict);
    let Some(entry) = directory.get("domain:example.com").await.unwrap() else { panic!("domain vanished") };
    assert!(matches!(entry.doc, Document::Domain(d) if d.max_mailboxes == Some(5)));
    let err = directory.create(&domain("example.com")).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Conflict);
}

#[tokio::test]
async fn mailbox_limit_is_enforced() {
    let (_temp, directory) = directory().await;
    let Document::Domain(mut d) = domain("example.com") else { unreachable!() };
    d.max_mailboxes = Some(2);
    create_all(&directory, &[Document::Domain(d), mailbox("a@example.com"), mailbox("b@example.com")]).await;
    let msg = refused(&directory, &mailbox("c@example.com")).await;
    assert!(msg.contains("max_mailboxes"), "{msg}");
}

#[tokio::test]
async fn sieve_scripts_belong_to_mailboxes() {
    let (_temp, directory) = directory().await;
    create_all(&directory, &[domain("example.com")]).await;
    refused(&directory, &sieve("alice@example.com", "main", "keep;")).await;
    create_all(&directory, &[mailbox("alice@example.com"), sieve("alice@example.com", "main", "keep;")]).await;
    let Document::Mailbox(mut m) = mailbox("alice@example.com") else { unreachable!() };
    let rev = directory.get("mailbox:alice@example.com").await.unwrap().unwrap().rev;
    m.sieve_active = Some("missing".parse().unwrap());
    let err = directory.update(&Document::Mailbox(m.clone()), &rev).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Invalid(v) if v.field == "sieve_active"), "{err}");
    m.sieve_active = Some("main".parse().unwrap());
    directory.update(&Document::Mailbox(m), &rev).await.unwrap();

    // Removing the active script clears it from the mailbox.
    let changed = directory.remove("sieve:alice@example.com:main", None, Cascade::Refuse).await.unwrap_err();
    assert_eq!(*changed.kind(), ErrorKind::Refused);
    directory.remove("sieve:alice@example.com:main", None, Cascade::Remove).await.unwrap();
    let entry = directory.get("mailbox:alice@example.com").await.unwrap().unwrap();
    assert!(matches!(entry.doc, Document::Mailbox(m) if m.sieve_active.is_none()));
}

#[tokio::test]
async fn removing_a_domain_refuses_or_cascades() {
    let (temp, directory) = directory().await;
    create_all(
        &directory,
        &[
            domain("example.com"),
            domain("example.org"),
            domain_alias("example.net", "example.com"),
            mailbox("alice@example.com"),
            mailbox("bob@example.org"),
            alias("info@example.com", &["alice@example.com"]),
            alias("@example.com", &["alice@example.com"]),
            alias("team@example.org", &["alice@example.com", "bob@example.org"]),
            sieve("alice@example.com", "main", "keep;"),
        ],
    )
    .await;
    let err = directory.remove("domain:example.com", None, Cascade::Refuse).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Refused);
    assert!(err.to_string().contains("cascade"), "{err}");
    assert!(directory.get("mailbox:alice@example.com").await.unwrap().is_some(), "refusal removed something");

    let changed = directory.remove("domain:example.com", None, Cascade::Remove).await.unwrap();
    assert_eq!(changed.last().map(String::as_str), Some("domain:example.com"));
    for gone in [
        "domain:example.com",
        "domain-alias:example.net",
        "mailbox:alice@example.com",
        "alias:info@example.com",
        "alias:@example.com",
        "sieve:alice@example.com:main",
    ] {
        assert!(temp.store.get(gone).await.unwrap().is_none(), "{gone} survived the cascade");
    }
    // The other domain keeps its mailbox; its alias lost only the removed target.
    let team = directory.get("alias:team@example.org").await.unwrap().unwrap();
    assert!(matches!(team.doc, Document::Alias(a) if a.targets == vec![address("bob@example.org")]));
}

#[tokio::test]
async fn removing_a_mailbox_takes_it_out_of_aliases() {
    let (temp, directory) = directory().await;
    create_all(
        &directory,
        &[
            domain("example.com"),
            mailbox("alice@example.com"),
            mailbox("bob@example.com"),
            alias("solo@example.com", &["alice@example.com"]),
            alias("both@example.com", &["alice@example.com", "bob@example.com"]),
        ],
    )
    .await;
    let err = directory.remove("mailbox:alice@example.com", None, Cascade::Refuse).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Refused);
    directory.remove("mailbox:alice@example.com", None, Cascade::Remove).await.unwrap();
    assert!(temp.store.get("alias:solo@example.com").await.unwrap().is_none());
    let both = directory.get("alias:both@example.com").await.unwrap().unwrap();
    assert!(matches!(both.doc, Document::Alias(a) if a.targets == vec![address("bob@example.com")]));
    // A mailbox with nothing hanging off it goes without cascade.
    let rev = directory.get("mailbox:bob@example.com").await.unwrap().unwrap().rev;
    let err = directory.remove("mailbox:bob@example.com", None, Cascade::Refuse).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Refused, "bob is still a target of both@");
    directory.remove("alias:both@example.com", None, Cascade::Refuse).await.unwrap();
    directory.remove("mailbox:bob@example.com", Some(&rev), Cascade::Refuse).await.unwrap();
}

#[tokio::test]
async fn remove_checks_the_revision() {
    let (_temp, directory) = directory().await;
    let rev = directory.create(&domain("example.com")).await.unwrap();
    let Document::Domain(mut d) = domain("example.com") else { unreachable!() };
    d.active = false;
    directory.update(&Document::Domain(d), &rev).await.unwrap();
    let err = directory.remove("domain:example.com", Some(&rev), Cascade::Refuse).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Conflict);
    let err = directory.remove("domain:missing.example", None, Cascade::Refuse).await.unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn list_filters_by_domain_and_pages() {
    let (temp, directory) = directory().await;
    create_all(&directory, &[domain("a.example"), domain("b.example")]).await;
    for n in 0..30 {
        create_all(&directory, &[mailbox(&format!("user{n:02}@a.example")), mailbox(&format!("user{n:02}@b.example"))])
            .await;
    }
    // An invalid document written straight into the store is skipped, not fatal.
    let bad = serde_json::json!({ "type": "mailbox", "active": "yes" });
    temp.store.put("mailbox:user15x@a.example", None, bad.as_object().unwrap()).await.unwrap();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let filter = ListFilter {
            kind: DocKind::Mailbox,
            domain: Some(domain_name("a.example")),
            owner: None,
            page: ListOptions { start_after: after.clone(), limit: Some(7) },
        };
        let page = directory.list(&filter).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = Some(last.doc.id());
        seen.extend(page.into_iter().map(|e| e.doc.id()));
    }
    let expected: Vec<String> = (0..30).map(|n| format!("mailbox:user{n:02}@a.example")).collect();
    assert_eq!(seen, expected);
}

/// Refuses scripts containing `bad`, as a compiler would.
struct RefuseBad;

impl couchmail_directory::ScriptCheck for RefuseBad {
    fn check<'a>(
        &'a self,
        script: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = couchmail_directory::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            if script.contains("bad") {
                let err = couchmail_model::ValidationError::field("script", "line 1: error: unknown command 'bad'.");
                return Err(err.into());
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn scripts_are_checked_before_they_are_stored() {
    let (temp, directory) = directory().await;
    let directory = directory.with_script_check(Arc::new(RefuseBad));
    create_all(
        &directory,
        &[domain("example.com"), mailbox("alice@example.com"), sieve("alice@example.com", "ok", "keep;")],
    )
    .await;
    let err = directory.create(&sieve("alice@example.com", "broken", "bad;")).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Invalid(v) if v.field == "script" && v.message.starts_with("line 1:")),
        "{err}"
    );
    assert!(temp.store.get("sieve:alice@example.com:broken").await.unwrap().is_none());
}

#[tokio::test]
async fn listings_need_their_domain_or_mailbox() {
    let (_temp, directory) = directory().await;
    let msg = refused(&directory, &listing("domain:example.com:block:sender-domain:bad.example")).await;
    assert!(msg.contains("there is no domain `example.com`"), "{msg}");
    let msg = refused(&directory, &listing("mailbox:alice@example.com:block:sender:spam@bad.example")).await;
    assert!(msg.contains("there is no mailbox `alice@example.com`"), "{msg}");
    create_all(
        &directory,
        &[
            listing("global:block:client:192.0.2.0/24"),
            domain("example.com"),
            domain_alias("example.net", "example.com"),
            mailbox("alice@example.com"),
            listing("domain:example.com:block:sender-domain:bad.example"),
            listing("mailbox:alice@example.com:block:sender:spam@bad.example"),
        ],
    )
    .await;
    let msg = refused(&directory, &listing("domain:example.net:allow:client:2001:db8::/32")).await;
    assert!(msg.contains("alias of `example.com`"), "{msg}");
    // The normal form of the `_id` makes a duplicate a conflict, however it was written.
    let again = directory.create(&listing("mailbox:Alice@Example.com:block:sender:SPAM@bad.example")).await;
    assert_eq!(again.unwrap_err().kind(), &ErrorKind::Conflict);
}

#[tokio::test]
async fn listings_go_with_their_mailbox_and_domain() {
    let (_temp, directory) = directory().await;
    create_all(
        &directory,
        &[
            domain("example.com"),
            domain("example.org"),
            mailbox("alice@example.com"),
            mailbox("bob@example.com"),
            mailbox("erin@example.org"),
            listing("global:block:client:192.0.2.0/24"),
            listing("domain:example.com:block:sender-domain:bad.example"),
            listing("domain:example.org:block:sender-domain:bad.example"),
            listing("mailbox:alice@example.com:block:sender:spam@bad.example"),
            listing("mailbox:bob@example.com:allow:client:198.51.100.7"),
            listing("mailbox:erin@example.org:allow:client:198.51.100.7"),
        ],
    )
    .await;
    let alice_listing = "listing:mailbox:alice@example.com:block:sender:spam@bad.example";
    let err = directory.remove("mailbox:alice@example.com", None, Cascade::Refuse).await.unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Refused);
    assert!(err.to_string().contains(alice_listing), "{err}");
    let removed = directory.remove("mailbox:alice@example.com", None, Cascade::Remove).await.unwrap();
    assert_eq!(removed, [alice_listing, "mailbox:alice@example.com"]);

    let removed = directory.remove("domain:example.com", None, Cascade::Remove).await.unwrap();
    assert!(removed.contains(&"listing:domain:example.com:block:sender-domain:bad.example".to_owned()), "{removed:?}");
    assert!(removed.contains(&"listing:mailbox:bob@example.com:allow:client:198.51.100.7".to_owned()), "{removed:?}");
    // Other domains' listings and global ones stay.
    let all = ListFilter { kind: DocKind::Listing, domain: None, owner: None, page: ListOptions::default() };
    let left: Vec<String> = directory.list(&all).await.unwrap().iter().map(|entry| entry.doc.id()).collect();
    assert_eq!(
        left,
        [
            "listing:domain:example.org:block:sender-domain:bad.example",
            "listing:global:block:client:192.0.2.0/24",
            "listing:mailbox:erin@example.org:allow:client:198.51.100.7",
        ]
    );
}

#[tokio::test]
async fn listings_filter_by_domain_and_owner() {
    let (_temp, directory) = directory().await;
    create_all(
        &directory,
        &[
            domain("example.com"),
            domain("example.org"),
            mailbox("alice@example.com"),
            mailbox("erin@example.org"),
            listing("global:block:client:192.0.2.0/24"),
            listing("domain:example.com:block:sender-domain:bad.example"),
            listing("mailbox:alice@example.com:block:sender:spam@bad.example"),
            listing("mailbox:alice@example.com:allow:sender-domain:friends.example"),
            listing("mailbox:erin@example.org:allow:client:198.51.100.7"),
        ],
    )
    .await;
    let ids = |filter: ListFilter| {
        let directory = directory.clone();
        async move { directory.list(&filter).await.unwrap().iter().map(|entry| entry.doc.id()).collect::<Vec<_>>() }
    };
    let page = ListOptions::default();
    let in_example_com = ids(ListFilter {
        kind: DocKind::Listing,
        domain: Some(domain_name("example.com")),
        owner: None,
        page: page.clone(),
    })
    .await;
    assert_eq!(
        in_example_com,
        [
            "listing:domain:example.com:block:sender-domain:bad.example",
            "listing:mailbox:alice@example.com:allow:sender-domain:friends.example",
            "listing:mailbox:alice@example.com:block:sender:spam@bad.example",
        ]
    );
    let of_alice =
        ids(ListFilter { kind: DocKind::Listing, domain: None, owner: Some(address("alice@example.com")), page }).await;
    assert_eq!(
        of_alice,
        [
            "listing:mailbox:alice@example.com:allow:sender-domain:friends.example",
            "listing:mailbox:alice@example.com:block:sender:spam@bad.example",
        ]
    );
}
