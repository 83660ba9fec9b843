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
    MethodSpec {
        method: methods::THREAD_START,
        kind: Kind::ClientRequest,
        params: Some("ThreadStartParams"),
        result: Some("ThreadStartResponse"),
    },
    MethodSpec {
        method: methods::THREAD_RESUME,
        kind: Kind::ClientRequest,
        params: Some("ThreadResumeParams"),
        result: Some("ThreadResumeResponse"),
    },
    MethodSpec {
        method: methods::THREAD_READ,
        kind: Kind::ClientRequest,
        params: Some("ThreadReadParams"),
        result: Some("ThreadReadResponse"),
    },
    MethodSpec {
        method: methods::THREAD_LIST,
        kind: Kind::ClientRequest,
        params: Some("ThreadListParams"),
        result: Some("ThreadListResponse"),
    },
    MethodSpec {
        method: methods::THREAD_ARCHIVE,
        kind: Kind::ClientRequest,
        params: Some("ThreadArchiveParams"),
        result: Some("ThreadArchiveResponse"),
    },
    MethodSpec {
        method: methods::THREAD_UNARCHIVE,
        kind: Kind::ClientRequest,
        params: Some("ThreadUnarchiveParams"),
        result: Some("ThreadUnarchiveResponse"),
    },
    MethodSpec {
        method: methods::THREAD_NAME_SET,
        kind: Kind::ClientRequest,
        params: Some("ThreadSetNameParams"),
        result: Some("ThreadSetNameResponse"),
    },
    MethodSpec {
        method: methods::TURN_START,
        kind: Kind::ClientRequest,
        params: Some("TurnStartParams"),
        result: Some("TurnStartResponse"),
    },
    MethodSpec {
        method: methods::TURN_INTERRUPT,
        kind: Kind::ClientRequest,
        params: Some("TurnInterruptParams"),
        result: Some("TurnInterruptResponse"),
    },
    MethodSpec {
        method: methods::MODEL_LIST,
        kind: Kind::ClientRequest,
        params: Some("ModelListParams"),
        result: Some("ModelListResponse"),
    },
    MethodSpec {
        method: methods::THREAD_STARTED,
        kind: Kind::ServerNotification,
        params: Some("ThreadStartedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::THREAD_NAME_UPDATED,
        kind: Kind::ServerNotification,
        params: Some("ThreadNameUpdatedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::TOKEN_USAGE_UPDATED,
        kind: Kind::ServerNotification,
        params: Some("ThreadTokenUsageUpdatedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::TURN_STARTED,
        kind: Kind::ServerNotification,
        params: Some("TurnStartedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::TURN_COMPLETED,
        kind: Kind::ServerNotification,
        params: Some("TurnCompletedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::ITEM_STARTED,
        kind: Kind::ServerNotification,
        params: Some("ItemStartedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::ITEM_COMPLETED,
        kind: Kind::ServerNotification,
        params: Some("ItemCompletedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::AGENT_MESSAGE_DELTA,
        kind: Kind::ServerNotification,
        params: Some("AgentMessageDeltaNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::REASONING_SUMMARY_PART_ADDED,
        kind: Kind::ServerNotification,
        params: Some("ReasoningSummaryPartAddedNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::REASONING_SUMMARY_TEXT_DELTA,
        kind: Kind::ServerNotification,
        params: Some("ReasoningSummaryTextDeltaNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::REASONING_TEXT_DELTA,
        kind: Kind::ServerNotification,
        params: Some("ReasoningTextDeltaNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::ERROR,
        kind: Kind::ServerNotification,
        params: Some("ErrorNotification"),
        result: None,
    },
    MethodSpec {
        method: methods::TOOL_CALL,
        kind: Kind::ServerRequest,
        params: Some("DynamicToolCallParams"),
        result: Some("DynamicToolCallResponse"),
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

/// `name`: the schema of `T` under another name, and a TypeScript alias of `target`.
fn alias<T: JsonSchema + TS + 'static>(name: &'static str, target: &'static str) -> Generated {
    let mut generated = entry::<T>(name);
    generated.typescript = Typescript::Alias(target);
    generated
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
    all.extend([
        entry::<protocol::ThreadStartParams>("ThreadStartParams"),
        entry::<protocol::ThreadStartResponse>("ThreadStartResponse"),
        entry::<protocol::ThreadResumeParams>("ThreadResumeParams"),
        entry::<protocol::ThreadReadParams>("ThreadReadParams"),
        entry::<protocol::ThreadReadResponse>("ThreadReadResponse"),
        entry::<protocol::ThreadListParams>("ThreadListParams"),
        entry::<protocol::ThreadListResponse>("ThreadListResponse"),
        entry::<protocol::ThreadIdParams>("ThreadIdParams"),
        entry::<protocol::ThreadArchiveResponse>("ThreadArchiveResponse"),
        entry::<protocol::ThreadUnarchiveResponse>("ThreadUnarchiveResponse"),
        entry::<protocol::ThreadSetNameParams>("ThreadSetNameParams"),
        entry::<protocol::ThreadSetNameResponse>("ThreadSetNameResponse"),
        entry::<protocol::TurnStartParams>("TurnStartParams"),
        entry::<protocol::TurnStartResponse>("TurnStartResponse"),
        entry::<protocol::TurnInterruptParams>("TurnInterruptParams"),
        entry::<protocol::TurnInterruptResponse>("TurnInterruptResponse"),
        entry::<protocol::ModelListParams>("ModelListParams"),
        entry::<protocol::ModelListResponse>("ModelListResponse"),
        entry::<protocol::ThreadStartedNotification>("ThreadStartedNotification"),
        entry::<protocol::ThreadNameUpdatedNotification>("ThreadNameUpdatedNotification"),
        entry::<protocol::ThreadTokenUsageUpdatedNotification>(
            "ThreadTokenUsageUpdatedNotification",
        ),
        entry::<protocol::TurnNotification>("TurnNotification"),
        entry::<protocol::ItemStartedNotification>("ItemStartedNotification"),
        entry::<protocol::ItemCompletedNotification>("ItemCompletedNotification"),
        entry::<protocol::AgentMessageDeltaNotification>("AgentMessageDeltaNotification"),
        entry::<protocol::ReasoningSummaryPartAddedNotification>(
            "ReasoningSummaryPartAddedNotification",
        ),
        entry::<protocol::ReasoningSummaryTextDeltaNotification>(
            "ReasoningSummaryTextDeltaNotification",
        ),
        entry::<protocol::ReasoningTextDeltaNotification>("ReasoningTextDeltaNotification"),
        entry::<protocol::ErrorNotification>("ErrorNotification"),
        entry::<protocol::DynamicToolCallParams>("DynamicToolCallParams"),
        entry::<protocol::DynamicToolCallResponse>("DynamicToolCallResponse"),
    ]);
    // Codex's names for shapes authbridge shares between methods.
    all.extend([
        alias::<protocol::ExternalTokenParams>(
            "ChatgptAuthTokensRefreshResponse",
            "ExternalTokenParams",
        ),
        alias::<protocol::ThreadStartResponse>("ThreadResumeResponse", "ThreadStartResponse"),
        alias::<protocol::ThreadIdParams>("ThreadArchiveParams", "ThreadIdParams"),
        alias::<protocol::ThreadIdParams>("ThreadUnarchiveParams", "ThreadIdParams"),
        alias::<protocol::TurnNotification>("TurnStartedNotification", "TurnNotification"),
        alias::<protocol::TurnNotification>("TurnCompletedNotification", "TurnNotification"),
    ]);
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
        "protocol": "Codex app-server protocol: accounts, threads, turns and host tools (authbridge)",
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
mod tests;
