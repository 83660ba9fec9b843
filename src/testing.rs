//! Helpers for the unit tests: a server core on a fresh home to connect to in memory, and the
//! JWTs the tests log in with (claims only; signatures are never checked).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::peer::Overflow;
use crate::rpc::RpcServer;
use crate::rpc::memory::{self, MemoryClient};
use crate::server::Core;
use crate::turns::Threads;

/// A server core on a fresh home, for in-memory connections.
pub struct TestCore {
    pub rpc: Arc<RpcServer>,
    pub threads: Arc<Threads>,
    pub shutdown: CancellationToken,
    pub home: TempDir,
}

impl TestCore {
    /// A core configured with `overrides` (`-c` syntax).
    pub fn new(overrides: &[&str]) -> Self {
        let home = tempfile::tempdir().unwrap();
        let config = Config::from_overrides(home.path(), overrides).expect("test config");
        let shutdown = CancellationToken::new();
        let core = Core::build(Arc::new(config), shutdown.clone()).expect("core builds");
        Self {
            rpc: core.rpc,
            threads: core.threads,
            shutdown,
            home,
        }
    }

    /// A new WebSocket-like connection (a full queue disconnects).
    pub fn connect(&self) -> MemoryClient {
        memory::connect(&self.rpc, Overflow::Disconnect)
    }
}

/// Logs `client` in with host-owned tokens (bearer `access`) and takes the two notifications.
pub async fn login_external(client: &mut MemoryClient, access: &str) {
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "chatgptAuthTokens", "idToken": id_token("e@example.com", "org-e"), "accessToken": access}),
        )
        .await;
    assert_eq!(
        reply["result"],
        json!({"type": "chatgptAuthTokens"}),
        "{reply}"
    );
    assert_eq!(
        client.next_json().await["method"],
        "account/login/completed"
    );
    assert_eq!(client.next_json().await["method"], "account/updated");
}

/// An unsigned JWT with `claims`.
pub fn jwt(claims: Value) -> String {
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    format!(
        "{}.{}.c2ln",
        encode(&json!({"alg": "none"})),
        encode(&claims)
    )
}

/// An id token naming `email`, plan `pro` and `workspace`.
pub fn id_token(email: &str, workspace: &str) -> String {
    jwt(
        json!({"email": email, "https://api.openai.com/auth": {"chatgpt_plan_type": "pro", "chatgpt_account_id": workspace}}),
    )
}
