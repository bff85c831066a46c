//! Bootstrap: idempotent, and safe when several processes connect to one database at once.

use couchmail_store::{CouchConfig, CouchSetup, CouchStore, MangoIndex};
use serde_json::{Value, json};

use crate::{fresh_database, server_url};

fn full_setup(validate_doc_update: &str) -> CouchSetup {
    CouchSetup {
        validate_doc_update: Some(validate_doc_update.to_owned()),
        indexes: vec![
            MangoIndex { name: "by-type".to_owned(), fields: vec!["type".to_owned()] },
            MangoIndex { name: "by-type-and-active".to_owned(), fields: vec!["type".to_owned(), "active".to_owned()] },
        ],
        members: vec!["mta".to_owned(), "couchmail".to_owned()],
    }
}

async fn get_json(url: &str) -> Value {
    crate::http_client().get(url).send().await.unwrap().json().await.unwrap()
}

const REFUSE_NOTHING: &str = "function (newDoc, oldDoc, userCtx, secObj) { }";
const REFUSE_UNTYPED: &str = "function (newDoc, oldDoc, userCtx, secObj) { if (!newDoc._deleted && !newDoc.type) throw({forbidden: 'untyped'}); }";

#[tokio::test]
async fn concurrent_bootstraps_install_everything_once() {
    let Some(url) = server_url() else { return };
    let database = fresh_database();
    let config = CouchConfig { setup: full_setup(REFUSE_NOTHING), ..CouchConfig::new(url.clone(), database.clone()) };
    let connects: Vec<_> = (0..4).map(|_| tokio::spawn(CouchStore::connect(config.clone()))).collect();
    for connect in connects {
        connect.await.unwrap().unwrap_or_else(|error| panic!("a concurrent bootstrap failed: {error}"));
    }

    let design = get_json(&format!("{url}/{database}/_design/couchmail")).await;
    assert!(design["_rev"].as_str().unwrap().starts_with("1-"), "written more than once: {design}");
    assert_eq!(design["validate_doc_update"], json!(REFUSE_NOTHING));
    assert!(design["views"]["conflicts"]["map"].as_str().unwrap().contains("_conflicts"), "{design}");

    let security = get_json(&format!("{url}/{database}/_security")).await;
    assert_eq!(security["members"]["names"], json!(["couchmail", "mta"]), "{security}");

    let indexes = get_json(&format!("{url}/{database}/_index")).await;
    let mut names: Vec<(&str, &str)> = indexes["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|index| index["ddoc"] == json!("_design/couchmail-indexes"))
        .map(|index| (index["name"].as_str().unwrap(), index["type"].as_str().unwrap()))
        .collect();
    names.sort();
    assert_eq!(names, [("by-type", "json"), ("by-type-and-active", "json")], "{indexes}");

    // A later start changes nothing.
    CouchStore::connect(config).await.unwrap();
    let again = get_json(&format!("{url}/{database}/_design/couchmail")).await;
    assert_eq!(again["_rev"], design["_rev"]);
}

#[tokio::test]
async fn a_new_function_replaces_the_old_and_none_keeps_it() {
    let Some(url) = server_url() else { return };
    let database = fresh_database();
    let design_url = format!("{url}/{database}/_design/couchmail");
    let first = CouchConfig { setup: full_setup(REFUSE_NOTHING), ..CouchConfig::new(url.clone(), database.clone()) };
    CouchStore::connect(first).await.unwrap();

    let second = CouchConfig { setup: full_setup(REFUSE_UNTYPED), ..CouchConfig::new(url.clone(), database.clone()) };
    let store = CouchStore::connect(second).await.unwrap();
    let design = get_json(&design_url).await;
    assert!(design["_rev"].as_str().unwrap().starts_with("2-"), "{design}");
    assert_eq!(design["validate_doc_update"], json!(REFUSE_UNTYPED));
    let untyped = serde_json::Map::from_iter([("name".to_owned(), json!("x"))]);
    use couchmail_store::Store;
    let error = store.put("thing:x", None, &untyped).await.expect_err("the new function refuses it");
    assert!(error.to_string().contains("untyped"), "{error}");

    // A tool connecting without a function leaves validation on.
    CouchStore::connect(CouchConfig::new(url.clone(), database.clone())).await.unwrap();
    let design = get_json(&design_url).await;
    assert!(design["_rev"].as_str().unwrap().starts_with("2-"), "{design}");
    assert_eq!(design["validate_doc_update"], json!(REFUSE_UNTYPED));
}

#[tokio::test]
async fn security_admins_are_kept() {
    let Some(url) = server_url() else { return };
    let database = fresh_database();
    CouchStore::connect(CouchConfig::new(url.clone(), database.clone())).await.unwrap();
    let security_url = format!("{url}/{database}/_security");
    let admins = json!({ "names": ["root"], "roles": ["ops"] });
    let response = crate::http_client()
        .put(&security_url)
        .json(&json!({ "admins": admins, "members": { "names": ["someone"], "roles": [] } }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());

    let config = CouchConfig { setup: full_setup(REFUSE_NOTHING), ..CouchConfig::new(url, database) };
    CouchStore::connect(config).await.unwrap();
    let security = get_json(&security_url).await;
    assert_eq!(security["admins"], admins);
    assert_eq!(security["members"]["names"], json!(["couchmail", "mta"]));
}

#[tokio::test]
async fn a_deleted_design_document_is_put_back_for_conflicts() {
    let Some(url) = server_url() else { return };
    let database = fresh_database();
    let store = CouchStore::connect(CouchConfig::new(url.clone(), database.clone())).await.unwrap();
    let design_url = format!("{url}/{database}/_design/couchmail");
    let rev = get_json(&design_url).await["_rev"].as_str().unwrap().to_owned();
    let client = crate::http_client();
    let response = client.delete(&design_url).query(&[("rev", rev.as_str())]).send().await.unwrap();
    assert!(response.status().is_success());

    use couchmail_store::Store;
    assert_eq!(store.conflicts().await.unwrap(), []);
    assert!(get_json(&design_url).await["views"]["conflicts"].is_object());
}
