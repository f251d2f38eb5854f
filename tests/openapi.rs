//! The OpenAPI document: committed as generated, covering every route and every error code the
//! code can answer, and docs/api.md's tables generated from it.
//!
//! After changing a route, regenerate `docs/openapi.json` and docs/api.md's tables with
//! `KEYPOOL_WRITE_OPENAPI=1 cargo test -p keypool-tests --test openapi`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use keypool::error::ErrorCode;
use keypool::http::openapi::document_json;
use serde_json::Value;

const REGENERATE: &str =
    "regenerate with: KEYPOOL_WRITE_OPENAPI=1 cargo test -p keypool-tests --test openapi";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn writing() -> bool {
    std::env::var("KEYPOOL_WRITE_OPENAPI").is_ok_and(|v| v == "1")
}

fn document() -> Value {
    serde_json::from_str(&document_json()).expect("the document is JSON")
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every operation: (method, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_string(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Error codes of a response, from its schema's `code` enum.
fn codes_of(response: &Value) -> Vec<String> {
    response["content"]["application/json"]["schema"]["properties"]["error"]["properties"]
        ["code"]["enum"]
        .as_array()
        .map(|codes| {
            codes
                .iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Every (code, status) the document names, in operations and shared responses.
fn documented_codes(doc: &Value) -> BTreeSet<(String, u16)> {
    let mut out = BTreeSet::new();
    let mut add = |status: &str, response: &Value| {
        let status: u16 = status.parse().expect("numeric status");
        for code in codes_of(response) {
            out.insert((code, status));
        }
    };
    for (_, _, op) in operations(doc) {
        for (status, response) in op["responses"].as_object().expect("responses") {
            add(status, response);
        }
    }
    for response in doc["components"]["responses"]
        .as_object()
        .expect("shared responses")
        .values()
    {
        let status = response_status(response);
        add(&status.to_string(), response);
    }
    out
}

/// A shared response's status, from the table of codes.
fn response_status(response: &Value) -> u16 {
    let code = codes_of(response).into_iter().next().expect("a code");
    ErrorCode::ALL
        .iter()
        .find(|c| c.as_str() == code)
        .map(|c| c.status())
        .expect("a known code")
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = root().join("docs/openapi.json");
    let generated = document_json();
    if writing() {
        std::fs::write(&path, &generated).expect("writing docs/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi.json differs from the document the code generates; {REGENERATE}"
    );
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
}

#[test]
fn every_code_in_the_table_is_documented_on_a_route_and_every_documented_code_is_in_it() {
    let documented = documented_codes(&document());
    let table: BTreeSet<(String, u16)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), c.status()))
        .collect();
    let missing: Vec<_> = table.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&table).collect();
    assert!(
        missing.is_empty(),
        "codes of the catalogue that no route documents: {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "codes the document names that the catalogue lacks: {unknown:?}"
    );
}

/// Every error an operation can answer has its code in the catalogue by construction (the
/// codes are an enum); the per-line reasons inside `rejected` lists are documented as their own
/// enum, which must list exactly the ones answered.
#[test]
fn the_documented_line_codes_are_the_answered_ones() {
    let doc = document();
    let documented: BTreeSet<&str> = doc["components"]["schemas"]["RejectedLineCode"]["enum"]
        .as_array()
        .expect("the line codes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let answered: BTreeSet<&str> = keypool::ops::paste::LineCode::ALL
        .iter()
        .map(|c| c.as_str())
        .collect();
    assert_eq!(documented, answered);
}

#[test]
fn every_route_is_registered_through_the_document() {
    // Routes added with `.route(...)` would be served but not documented; only the
    // pass-through `/events` route (not reachable over HTTP) may be.
    let mut sources = Vec::new();
    let mut folders = vec![root().join("shared/src/http")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("http folder") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else {
                sources.push(path);
            }
        }
    }
    assert!(sources.len() > 5, "{sources:?}");
    for path in sources {
        let text = std::fs::read_to_string(&path).expect("source");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "events.rs" {
            continue;
        }
        assert!(
            !text.contains(".route(\"") && !text.contains(".route(\n"),
            "{name} registers a route outside `routes!`, so the OpenAPI document would miss it"
        );
    }
}

/// docs/api.md's generated sections: the route table and the error list.
fn readme_sections(doc: &Value) -> (String, String) {
    let common: BTreeSet<&str> = [
        "unauthenticated",
        "forbidden_role",
        "internal_error",
        "invalid_json",
        "invalid_query",
        "invalid_path",
        "payload_too_large",
        "unsupported_media_type",
        "store_busy",
    ]
    .into();
    let schemas = &doc["components"]["schemas"];
    let mut routes =
        String::from("| Route | Who | Answers | Errors of its own |\n|---|---|---|---|\n");
    let mut ops = operations(doc);
    let order = |tag: &str| {
        ["admin", "learner", "local", "service"]
            .iter()
            .position(|t| *t == tag)
    };
    ops.sort_by_key(|(_, path, op)| (order(op["tags"][0].as_str().unwrap_or("")), path.clone()));
    for (method, path, op) in &ops {
        let mut route = format!("{} {path}", method.to_uppercase());
        let query: Vec<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "query")
            .map(|p| format!("{}=", p["name"].as_str().unwrap_or("")))
            .collect();
        if !query.is_empty() {
            route.push('?');
            route.push_str(&query.join("&"));
        }
        let mut cell = format!("`{route}`");
        if let Some(content) = op["requestBody"]["content"].as_object() {
            let mut bodies = Vec::new();
            for (media, body) in content {
                let reference = body["schema"]["$ref"]
                    .as_str()
                    .or_else(|| body["schema"]["oneOf"][1]["$ref"].as_str());
                match reference {
                    Some(r) => {
                        let schema = &schemas[r.rsplit('/').next().unwrap_or("")];
                        let required: BTreeSet<&str> = schema["required"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        let fields: Vec<String> = schema["properties"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(k, _)| {
                                if required.contains(k.as_str()) {
                                    k.clone()
                                } else {
                                    format!("{k}?")
                                }
                            })
                            .collect();
                        bodies.push(format!("`{{{}}}`", fields.join(", ")));
                    }
                    None => bodies.push(media.clone()),
                }
            }
            cell.push(' ');
            cell.push_str(&bodies.join(" or "));
        }
        let roles: Vec<&str> = op["x-roles"]
            .as_array()
            .expect("every operation says its roles")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let who = match (roles.is_empty(), op["tags"][0].as_str().unwrap_or("")) {
            (true, "local") => "link holder (local server)".to_string(),
            (true, _) => "anyone".to_string(),
            (false, _) => roles.join(", "),
        };
        let mut answers = Vec::new();
        let mut errors = Vec::new();
        for (status, response) in op["responses"].as_object().expect("responses") {
            let codes: Vec<String> = codes_of(response)
                .into_iter()
                .filter(|c| !common.contains(c.as_str()))
                .map(|c| format!("`{c}`"))
                .collect();
            if status.starts_with('2') {
                let description = response["description"].as_str().unwrap_or("");
                answers.push(format!("{status} {description}"));
            } else if !codes.is_empty() {
                errors.push(format!("{status} {}", codes.join(", ")));
            }
        }
        routes.push_str(&format!(
            "| {} | {who} | {} | {} |\n",
            cell.replace('|', "\\|"),
            answers.join("; ").replace('|', "\\|"),
            errors.join("; ")
        ));
    }
    let mut errors = String::from("| Code | Status | Meaning |\n|---|---|---|\n");
    let mut table: Vec<ErrorCode> = ErrorCode::ALL.to_vec();
    table.sort_by_key(|c| (c.status(), c.as_str()));
    for code in table {
        errors.push_str(&format!(
            "| `{code}` | {} | {} |\n",
            code.status(),
            code.meaning()
        ));
    }
    (routes, errors)
}

/// A page with its generated sections replaced; `None` if a marker is missing.
fn readme_with(readme: &str, name: &str, content: &str) -> Option<String> {
    let start = format!("<!-- openapi:{name} -->\n");
    let end = format!("<!-- /openapi:{name} -->");
    let from = readme.find(&start)? + start.len();
    let to = readme[from..].find(&end)? + from;
    Some(format!("{}{content}{}", &readme[..from], &readme[to..]))
}

#[test]
fn the_api_page_tables_and_error_list_are_those_of_the_document() {
    let path = root().join("docs/api.md");
    let page = std::fs::read_to_string(&path).expect("docs/api.md");
    let (routes, errors) = readme_sections(&document());
    let expected = readme_with(&page, "routes", &routes)
        .and_then(|r| readme_with(&r, "errors", &errors))
        .expect("docs/api.md has the <!-- openapi:routes --> and <!-- openapi:errors --> sections");
    if writing() {
        std::fs::write(&path, &expected).expect("writing docs/api.md");
    }
    assert!(
        page == expected,
        "docs/api.md's tables differ from the OpenAPI document; {REGENERATE}"
    );
    // And every code of the catalogue is one the document has, and the page names it.
    let documented: BTreeMap<String, u16> = documented_codes(&document()).into_iter().collect();
    for code in ErrorCode::ALL.iter().map(|c| c.as_str()) {
        assert!(
            documented.contains_key(code),
            "{code} is in the error list but not in the document"
        );
        assert!(page.contains(&format!("`{code}`")));
    }
}
