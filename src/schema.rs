//! `authbridge schema --out DIR`: JSON Schema (schemars) and TypeScript (ts-rs) definitions of every
//! request, response, notification and server request, plus a catalog naming each method's types.
//!
//! The generated files are committed under `schema/`; a test regenerates them and fails on drift.

use std::fs;
use std::path::Path;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;
use ts_rs::TS;

use crate::protocol::{self, methods};

/// Who sends a message, and whether it expects a reply.
#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Kind {
    ClientRequest,
    ClientNotification,
    ServerNotification,
    ServerRequest,
}

/// One method of the protocol and the types of its params and result.
#[derive(Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodSpec {
    pub method: &'static str,
    pub kind: Kind,
    pub params: Option<&'static str>,
    pub result: Option<&'static str>,
}

/// Every method authbridge speaks.
pub const METHODS: &[MethodSpec] = &[
    MethodSpec {
        method: methods::INITIALIZE,
        kind: Kind::ClientRequest,
        params: Some("InitializeParams"),
        result: Some("InitializeResponse"),
    },
    MethodSpec {
        method: methods::INITIALIZED,
        kind: Kind::ClientNotification,
        params: None,
        result: None,
    },
    MethodSpec {
        method: methods::READ,
        kind: Kind::ClientRequest,
        params: Some("GetAccountParams"),
        result: Some("GetAccountResponse"),
    },
    MethodSpec {
        method: methods::LOGIN_START,
        kind: Kind::ClientRequest,
        params: Some("LoginAccountParams"),
        result: Some("LoginAccountResponse"),
    },
    MethodSpec {
        method: methods::LOGIN_CANCEL,
        kind: Kind::ClientRequest,
        params: Some("CancelLoginAccountParams"),
        result: Some("CancelLoginAccountResponse"),
    },
    MethodSpec {
        method: methods::LOGOUT,
        kind: Kind::ClientRequest,
        params: Some("LogoutAccountParams"),
        result: Some("LogoutAccountResponse"),
    },
    MethodSpec {
        method: methods::RATE_LIMITS_READ,
        kind: Kind::ClientRequest,
        params: Some("GetAccountRateLimitsParams"),
        result: Some("GetAccountRateLimitsResponse"),
    },
    MethodSpec {
        method: methods::LOGIN_COMPLETED,
        kind: Kind::ServerNotification,
        params: Some("AccountLoginCompletedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::UPDATED,
        kind: Kind::ServerNotification,
        params: Some("AccountUpdatedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::RATE_LIMITS_UPDATED,
        kind: Kind::ServerNotification,
        params: Some("AccountRateLimitsUpdatedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::TOKENS_REFRESH,
        kind: Kind::ServerRequest,
        params: Some("ChatgptAuthTokensRefreshParams"),
        result: Some("ChatgptAuthTokensRefreshResponse"),
    },
];

/// A named schema and its TypeScript export.
struct Generated {
    name: &'static str,
    json: serde_json::Value,
    typescript: Typescript,
}

enum Typescript {
    /// Export the type with ts-rs (with its dependencies).
    Export(fn(&Path) -> Result<(), ts_rs::ExportError>),
    /// A hand-written alias of another exported type.
    Alias(&'static str),
}

fn entry<T: JsonSchema + TS + 'static>(name: &'static str) -> Generated {
    let mut schema = serde_json::to_value(schemars::schema_for!(T)).expect("schemas serialize");
    schema["title"] = json!(name);
    Generated {
        name,
        json: schema,
        typescript: Typescript::Export(|dir| T::export_all_to(dir)),
    }
}

fn entries() -> Vec<Generated> {
    let mut all = vec![
        entry::<protocol::InitializeParams>("InitializeParams"),
        entry::<protocol::InitializeResponse>("InitializeResponse"),
        entry::<protocol::GetAccountParams>("GetAccountParams"),
        entry::<protocol::GetAccountResponse>("GetAccountResponse"),
        entry::<protocol::LoginAccountParams>("LoginAccountParams"),
        entry::<protocol::LoginAccountResponse>("LoginAccountResponse"),
        entry::<protocol::CancelLoginAccountParams>("CancelLoginAccountParams"),
        entry::<protocol::CancelLoginAccountResponse>("CancelLoginAccountResponse"),
        entry::<protocol::LogoutAccountParams>("LogoutAccountParams"),
        entry::<protocol::LogoutAccountResponse>("LogoutAccountResponse"),
        entry::<protocol::GetAccountRateLimitsParams>("GetAccountRateLimitsParams"),
        entry::<protocol::GetAccountRateLimitsResponse>("GetAccountRateLimitsResponse"),
        entry::<protocol::AccountLoginCompletedNotification>("AccountLoginCompletedNotification"),
        entry::<protocol::AccountUpdatedNotification>("AccountUpdatedNotification"),
        entry::<protocol::AccountRateLimitsUpdatedNotification>(
            "AccountRateLimitsUpdatedNotification",
        ),
        entry::<protocol::ChatgptAuthTokensRefreshParams>("ChatgptAuthTokensRefreshParams"),
    ];
    let mut refresh = entry::<protocol::ExternalTokenParams>("ChatgptAuthTokensRefreshResponse");
    refresh.typescript = Typescript::Alias("ExternalTokenParams");
    all.push(refresh);
    all
}

/// Writes `json/*.json`, `typescript/*.ts` and `messages.json` under `out`; returns the file count.
pub fn write_all(out: &Path) -> Result<usize, String> {
    let json_dir = out.join("json");
    let ts_dir = out.join("typescript");
    for dir in [&json_dir, &ts_dir] {
        fs::create_dir_all(dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    let write = |path: &Path, text: String| {
        fs::write(path, text).map_err(|err| format!("cannot write {}: {err}", path.display()))
    };
    let mut exported = Vec::new();
    for generated in entries() {
        let mut text = serde_json::to_string_pretty(&generated.json).expect("schemas serialize");
        text.push('\n');
        write(&json_dir.join(format!("{}.json", generated.name)), text)?;
        match generated.typescript {
            Typescript::Export(export) => export(&ts_dir)
                .map_err(|err| format!("cannot export {} to TypeScript: {err}", generated.name))?,
            Typescript::Alias(target) => write(
                &ts_dir.join(format!("{}.ts", generated.name)),
                format!(
                    "// Generated by `authbridge schema`. Do not edit this file manually.\nimport type {{ {target} }} from \"./{target}\";\n\nexport type {} = {target};\n",
                    generated.name
                ),
            )?,
        }
        exported.push(generated.name);
    }
    let mut catalog = serde_json::to_string_pretty(&json!({
        "protocol": "Codex app-server account protocol (authbridge)",
        "methods": METHODS,
    }))
    .expect("catalog serializes");
    catalog.push('\n');
    write(&out.join("messages.json"), catalog)?;

    let mut modules: Vec<String> = fs::read_dir(&ts_dir)
        .map_err(|err| format!("cannot list {}: {err}", ts_dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".ts").map(str::to_owned))
        .filter(|name| name != "index")
        .collect();
    modules.sort();
    let index: String = std::iter::once(
        "// Generated by `authbridge schema`. Do not edit this file manually.\n".to_owned(),
    )
    .chain(
        modules
            .iter()
            .map(|name| format!("export type {{ {name} }} from \"./{name}\";\n")),
    )
    .collect();
    write(&ts_dir.join("index.ts"), index)?;
    Ok(exported.len() + modules.len() + 2)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;

    fn files_under(root: &Path) -> BTreeMap<PathBuf, String> {
        let mut found = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(root).unwrap().to_path_buf();
                    found.insert(relative, fs::read_to_string(&path).unwrap());
                }
            }
        }
        found
    }

    /// The committed `schema/` must match the code. Regenerate with
    /// `cargo run -- schema --out schema`.
    #[test]
    fn committed_schemas_match_the_code() {
        let fresh = tempfile::tempdir().unwrap();
        write_all(fresh.path()).unwrap();
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema");
        let expected = files_under(fresh.path());
        let actual = files_under(&committed);
        let expected_names: Vec<_> = expected.keys().collect();
        let actual_names: Vec<_> = actual.keys().collect();
        assert_eq!(
            actual_names, expected_names,
            "schema/ files differ; run `cargo run -- schema --out schema`"
        );
        for (name, text) in &expected {
            assert!(
                actual[name] == *text,
                "schema/{} is stale; run `cargo run -- schema --out schema`",
                name.display()
            );
        }
    }

    #[test]
    fn every_method_names_exported_types() {
        let fresh = tempfile::tempdir().unwrap();
        write_all(fresh.path()).unwrap();
        for spec in METHODS {
            for name in spec.params.iter().chain(spec.result.iter()) {
                assert!(
                    fresh
                        .path()
                        .join("json")
                        .join(format!("{name}.json"))
                        .exists(),
                    "{name}"
                );
                assert!(
                    fresh
                        .path()
                        .join("typescript")
                        .join(format!("{name}.ts"))
                        .exists(),
                    "{name}"
                );
            }
        }
    }
}
