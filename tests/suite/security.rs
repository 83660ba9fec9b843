//! Listener security: capability tokens, signed bearer tokens, Origin and Host rules, loopback
//! rules, server.json, and secrets hygiene across a whole session (SPEC §2.1, §13 scenarios 34–37, 45).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use crate::support::{Child, Client, TestServer, backend_accepting, idt, server_json};

/// The outcome of a WebSocket upgrade: the selected subprotocol, or the refusal.
#[derive(Debug, PartialEq)]
enum Upgrade {
    Accepted {
        protocol: Option<String>,
    },
    Refused {
        status: u16,
        body: String,
        www_authenticate: Option<String>,
    },
}

async fn upgrade(url: &str, headers: &[(&str, &str)]) -> Upgrade {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => Upgrade::Accepted {
            protocol: response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_owned()),
        },
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Upgrade::Refused {
            status: response.status().as_u16(),
            body: String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned(),
            www_authenticate: response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned()),
        },
        Err(other) => panic!("upgrade failed unexpectedly: {other}"),
    }
}

fn refused_401(body: &str) -> Upgrade {
    Upgrade::Refused {
        status: 401,
        body: body.to_owned(),
        www_authenticate: Some("Bearer".to_owned()),
    }
}

fn refused(status: u16, body: &str) -> Upgrade {
    Upgrade::Refused {
        status,
        body: body.to_owned(),
        www_authenticate: None,
    }
}

fn accepted(protocol: Option<&str>) -> Upgrade {
    Upgrade::Accepted {
        protocol: protocol.map(str::to_owned),
    }
}

#[tokio::test]
async fn capability_token_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "super-secret-token\n").unwrap();
    let child = Child::spawn(
        &[
            "--home",
            dir.path().to_str().unwrap(),
            "--listen",
            "ws://0.0.0.0:0",
            "--ws-token-file",
            token_file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let url = child.url.clone().unwrap();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    assert_eq!(
        upgrade(&url, &[]).await,
        refused_401("missing websocket bearer token")
    );
    assert_eq!(
        upgrade(&url, &[("authorization", "Bearer wrong-token")]).await,
        refused_401("invalid websocket bearer token")
    );
    assert_eq!(
        upgrade(&url, &[("authorization", "Basic c3VwZXI=")]).await,
        refused_401("invalid authorization header")
    );
    assert_eq!(
        upgrade(&url, &[("authorization", "Bearer super-secret-token")]).await,
        accepted(None)
    );
    assert_eq!(
        upgrade(
            &url,
            &[(
                "sec-websocket-protocol",
                "authbridge, authbridge.bearer.super-secret-token"
            )]
        )
        .await,
        accepted(Some("authbridge"))
    );
    assert_eq!(
        upgrade(
            &url,
            &[(
                "sec-websocket-protocol",
                "authbridge.bearer.a, authbridge.bearer.b"
            )]
        )
        .await,
        refused_401("invalid websocket bearer token")
    );
    // A present Authorization header alone is evaluated.
    assert_eq!(
        upgrade(
            &url,
            &[
                ("authorization", "Bearer wrong"),
                (
                    "sec-websocket-protocol",
                    "authbridge.bearer.super-secret-token"
                )
            ]
        )
        .await,
        refused_401("invalid websocket bearer token")
    );
    let info = server_json(dir.path());
    assert_eq!(info["token"], json!("super-secret-token"));
    assert!(
        !child.stderr().contains("super-secret-token"),
        "the token never reaches stderr"
    );
}

#[tokio::test]
async fn server_json_describes_the_listener() {
    let server = TestServer::start(&[]).await;
    let path = server.home().join("server.json");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let info = server_json(server.home());
    let port = server.addr.port();
    assert_eq!(info["pid"], json!(std::process::id()));
    assert_eq!(info["url"], json!(format!("ws://127.0.0.1:{port}/")));
    assert_eq!(info["auth"], json!("capability-token"));
    assert_eq!(
        info["consoleUrl"],
        json!(format!("http://127.0.0.1:{port}/console"))
    );
    let token = info["token"].as_str().unwrap();
    assert_eq!(token.len(), 64);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert!(!server.running().connect_hint().contains(token));
}

#[tokio::test]
async fn each_start_gets_a_new_token() {
    let first = TestServer::start(&[]).await;
    let second = TestServer::start(&[]).await;
    assert_ne!(first.token, second.token);
    assert_eq!(
        upgrade(
            &second.url,
            &[(
                "authorization",
                &format!("Bearer {}", first.token.as_deref().unwrap())
            )]
        )
        .await,
        refused_401("invalid websocket bearer token")
    );
}

fn signed(claims: Value, secret: &[u8], algorithm: Algorithm) -> String {
    encode(
        &Header::new(algorithm),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

#[tokio::test]
async fn signed_bearer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"0123456789abcdef0123456789abcdef";
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, secret).unwrap();
    let child = Child::spawn(
        &[
            "--home",
            dir.path().to_str().unwrap(),
            "--listen",
            "ws://127.0.0.1:0",
            "--ws-auth",
            "signed-bearer-token",
            "--ws-shared-secret-file",
            secret_file.to_str().unwrap(),
            "--ws-issuer",
            "codex-enroller",
            "--ws-audience",
            "codex-app-server",
            "--ws-max-clock-skew-seconds",
            "1",
        ],
        &[],
    )
    .await;
    let url = child.url.clone().unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let good = json!({"exp": now + 300, "iss": "codex-enroller", "aud": "codex-app-server"});
    let bearer = |token: String| format!("Bearer {token}");
    let cases = [
        (
            signed(
                json!({"exp": now - 60, "iss": "codex-enroller", "aud": "codex-app-server"}),
                secret,
                Algorithm::HS256,
            ),
            "expired websocket jwt",
        ),
        ("not-a-jwt".to_owned(), "invalid websocket jwt"),
        (
            signed(
                json!({"exp": now + 300, "nbf": now + 60, "iss": "codex-enroller", "aud": "codex-app-server"}),
                secret,
                Algorithm::HS256,
            ),
            "websocket jwt is not valid yet",
        ),
        (
            signed(
                json!({"exp": now + 300, "iss": "someone-else", "aud": "codex-app-server"}),
                secret,
                Algorithm::HS256,
            ),
            "websocket jwt issuer mismatch",
        ),
        (
            signed(
                json!({"exp": now + 300, "iss": "codex-enroller", "aud": "other"}),
                secret,
                Algorithm::HS256,
            ),
            "websocket jwt audience mismatch",
        ),
        (
            signed(
                good.clone(),
                b"another-secret-another-secret-xx",
                Algorithm::HS256,
            ),
            "invalid websocket jwt",
        ),
        (
            signed(good.clone(), secret, Algorithm::HS512),
            "invalid websocket jwt",
        ),
        (
            signed(
                json!({"iss": "codex-enroller", "aud": "codex-app-server"}),
                secret,
                Algorithm::HS256,
            ),
            "invalid websocket jwt",
        ),
    ];
    for (token, reason) in cases {
        assert_eq!(
            upgrade(&url, &[("authorization", &bearer(token))]).await,
            refused_401(reason),
            "{reason}"
        );
    }
    assert_eq!(
        upgrade(
            &url,
            &[(
                "authorization",
                &bearer(signed(good.clone(), secret, Algorithm::HS256))
            )]
        )
        .await,
        accepted(None)
    );
    let aud_list =
        json!({"exp": now + 300, "iss": "codex-enroller", "aud": ["x", "codex-app-server"]});
    assert_eq!(
        upgrade(
            &url,
            &[(
                "sec-websocket-protocol",
                &format!(
                    "authbridge, authbridge.bearer.{}",
                    signed(aud_list, secret, Algorithm::HS256)
                )
            )]
        )
        .await,
        accepted(Some("authbridge"))
    );
    let info = server_json(dir.path());
    assert_eq!(info["auth"], json!("signed-bearer-token"));
    assert_eq!(info["token"], json!(null));
}

#[tokio::test]
async fn startup_refusals_exit_non_zero_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().to_str().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "too-short").unwrap();
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec!["--listen".into(), "ws://127.0.0.1:0".into(), "--ws-auth".into(), "signed-bearer-token".into(), "--ws-shared-secret-file".into(), short.display().to_string()],
            format!("signed websocket bearer secret {} must be at least 32 bytes", short.display()),
        ),
        (
            vec!["--listen".into(), "ws://0.0.0.0:0".into(), "--ws-auth".into(), "none".into()],
            "refusing to listen on non-loopback address 0.0.0.0:0 without websocket auth".into(),
        ),
        (
            vec!["--listen".into(), "ws://127.0.0.1:0".into(), "--ws-token-file".into(), "relative/token".into()],
            "--ws-token-file must be an absolute path".into(),
        ),
        (
            vec!["--listen".into(), "ws://127.0.0.1:0".into(), "--ws-auth".into(), "signed-bearer-token".into()],
            "`--ws-shared-secret-file` is required when `--ws-auth signed-bearer-token` is set".into(),
        ),
        (
            vec!["--listen".into(), "ws://127.0.0.1:0".into(), "--ws-auth".into(), "none".into(), "--ws-token-file".into(), "/abs/token".into()],
            "websocket auth flags require `--ws-auth capability-token` or `--ws-auth signed-bearer-token`".into(),
        ),
        (
            vec!["--listen".into(), "http://localhost:80".into()],
            "unsupported --listen URL `http://localhost:80`; expected `stdio://` or `ws://IP:PORT`".into(),
        ),
        (
            vec!["-c".into(), "server.max_connections=\"lots\"".into(), "--listen".into(), "ws://127.0.0.1:0".into()],
            "max_connections".into(),
        ),
    ];
    for (args, message) in cases {
        let mut all: Vec<&str> = vec!["--home", home];
        all.extend(args.iter().map(String::as_str));
        let mut child = Child::spawn(&all, &[]).await;
        assert_ne!(child.exit_code().await, Some(0), "{args:?}");
        let stderr = child.stderr();
        assert!(
            stderr.contains(&message),
            "{args:?}: expected {message:?} in {stderr}"
        );
    }
}

#[tokio::test]
async fn open_loopback_listener_warns() {
    let dir = tempfile::tempdir().unwrap();
    let child = Child::spawn(
        &[
            "--home",
            dir.path().to_str().unwrap(),
            "--listen",
            "ws://127.0.0.1:0",
            "--ws-auth",
            "none",
        ],
        &[],
    )
    .await;
    let url = child.url.clone().unwrap();
    assert_eq!(upgrade(&url, &[]).await, accepted(None));
    assert!(
        child.stderr().contains("websocket auth is off"),
        "{}",
        child.stderr()
    );
    assert_eq!(server_json(dir.path())["token"], json!(null));
}

#[tokio::test]
async fn origin_rules() {
    let server = TestServer::start(&["server.allowed_origins=[\"app://myapp\", \"null\"]"]).await;
    let bearer = format!("Bearer {}", server.token.as_deref().unwrap());
    let port = server.addr.port();
    assert_eq!(
        upgrade(
            &server.url,
            &[
                ("authorization", &bearer),
                ("origin", "https://evil.example")
            ]
        )
        .await,
        refused(403, "forbidden origin")
    );
    assert_eq!(
        upgrade(
            &server.url,
            &[("authorization", &bearer), ("origin", "app://myapp")]
        )
        .await,
        accepted(None)
    );
    assert_eq!(
        upgrade(
            &server.url,
            &[
                ("authorization", &bearer),
                ("origin", &format!("http://127.0.0.1:{port}"))
            ]
        )
        .await,
        accepted(None)
    );
    assert_eq!(
        upgrade(
            &server.url,
            &[("authorization", &bearer), ("origin", "null")]
        )
        .await,
        refused(403, "forbidden origin"),
        "null never passes"
    );
    // The origin check comes before the token check.
    assert_eq!(
        upgrade(&server.url, &[("origin", "https://evil.example")]).await,
        refused(403, "forbidden origin")
    );
    // Other routes too.
    let http = reqwest::Client::new();
    let response = http
        .get(server.http_url("/readyz"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // A browser page of the server itself (the console) may connect with the subprotocol form.
    let local = format!("ws://localhost:{port}/");
    assert_eq!(
        upgrade(
            &local,
            &[
                ("origin", &format!("http://localhost:{port}")),
                (
                    "sec-websocket-protocol",
                    &format!(
                        "authbridge, authbridge.bearer.{}",
                        server.token.as_deref().unwrap()
                    )
                )
            ]
        )
        .await,
        accepted(Some("authbridge"))
    );
}

#[tokio::test]
async fn host_rules() {
    let server = TestServer::start(&["server.allowed_hosts=[\"bridge.internal\"]"]).await;
    let port = server.addr.port();
    let bearer = format!("Bearer {}", server.token.as_deref().unwrap());
    assert_eq!(
        upgrade(
            &server.url,
            &[
                ("authorization", &bearer),
                ("host", &format!("evil.example:{port}"))
            ]
        )
        .await,
        refused(403, "forbidden host")
    );
    assert_eq!(
        upgrade(
            &server.url,
            &[
                ("authorization", &bearer),
                ("host", &format!("bridge.internal:{port}"))
            ]
        )
        .await,
        accepted(None)
    );
    let http = reqwest::Client::new();
    for route in ["/readyz", "/healthz", "/console", "/nope"] {
        let response = http
            .get(server.http_url(route))
            .header("host", format!("evil.example:{port}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{route}");
        assert_eq!(response.text().await.unwrap(), "forbidden host");
    }
    let response = http
        .get(server.http_url("/readyz"))
        .header("host", format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Replaces `@` with the byte 0xff (not UTF-8).
fn with_byte_ff(text: String) -> Vec<u8> {
    text.into_bytes()
        .into_iter()
        .map(|b| if b == b'@' { 0xff } else { b })
        .collect()
}

#[tokio::test]
async fn malformed_headers_never_crash_the_server() {
    let server = TestServer::start(&[]).await;
    let raw_requests: Vec<Vec<u8>> = vec![
        b"GET /readyz HTTP/1.1\r\nHost: [::1\r\n\r\n".to_vec(),
        b"GET /readyz HTTP/1.1\r\nHost: a:b:c\r\n\r\n".to_vec(),
        b"GET /readyz HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n".to_vec(),
        b"GET /readyz HTTP/1.1\r\n\r\n".to_vec(),
        with_byte_ff(format!(
            "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: @\r\n\r\n",
            server.addr.port()
        )),
        with_byte_ff(format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer @\r\n\r\n",
            server.addr.port()
        )),
    ];
    for raw in raw_requests {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(&raw).await.unwrap();
        let mut response = vec![0; 512];
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut response))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&response[..read]).into_owned();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        assert!([400, 401, 403].contains(&status), "{head}");
    }
    let mut client = server.client().await;
    assert!(
        client
            .call("account/read", json!({}))
            .await
            .get("result")
            .is_some()
    );
}

/// A whole session at TRACE with sentinel secrets: login, refresh, rate limits, logout.
#[tokio::test]
async fn a_full_session_never_leaks_secrets() {
    let backend = backend_accepting(&["SENTINEL-refreshed-access"]).await;
    let home = tempfile::tempdir().unwrap();
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let mut child = Child::spawn(
        &[
            "--home",
            home.path().to_str().unwrap(),
            "--listen",
            "ws://127.0.0.1:0",
            "-c",
            &base,
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "trace")],
    )
    .await;
    let token = server_json(home.path())["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut client = Client::connect(child.url.as_deref().unwrap(), Some(&token)).await;
    client.initialize().await;
    let id_token = idt("sentinel@example.com", "pro", "org-sentinel");
    let secrets = [
        "SENTINEL-initial-access",
        "SENTINEL-refreshed-access",
        "sk-SENTINEL-key",
        id_token.as_str(),
        token.as_str(),
    ];
    let mut replies = Vec::new();
    replies.push(
        client
            .call(
                "account/login/start",
                json!({"type": "apiKey", "apiKey": "sk-SENTINEL-key"}),
            )
            .await,
    );
    replies.push(client.call("account/rateLimits/read", Value::Null).await);
    replies.push(client.call("account/logout", json!({})).await);
    replies.push(
        client
            .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": id_token, "accessToken": "SENTINEL-initial-access"}))
            .await,
    );
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client
        .server_request("account/chatgptAuthTokens/refresh")
        .await;
    client
        .send(json!({"id": request["id"], "result": {"idToken": id_token, "accessToken": "SENTINEL-refreshed-access"}}))
        .await;
    replies.push(client.response(id).await);
    // Failures must not echo secrets either.
    replies.push(
        client
            .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": "SENTINEL-garbage", "accessToken": "SENTINEL-initial-access"}))
            .await,
    );
    client
        .call("account/login/start", json!({"type": "chatgptAuthTokens", "idToken": id_token, "accessToken": "SENTINEL-initial-access"}))
        .await;
    let id = client.request("account/rateLimits/read", Value::Null).await;
    let request = client
        .server_request("account/chatgptAuthTokens/refresh")
        .await;
    client.send(json!({"id": request["id"], "result": {"accessToken": "SENTINEL-x", "idToken": "SENTINEL-not-jwt"}})).await;
    replies.push(client.response(id).await);
    replies.push(client.call("account/logout", json!({})).await);
    assert!(replies[4].get("result").is_some(), "{}", replies[4]);
    child.terminate();
    assert_eq!(child.exit_code().await, Some(0));
    let stderr = child.stderr();
    assert!(
        stderr.contains("\"level\":\"TRACE\""),
        "TRACE logging is on"
    );
    for secret in secrets {
        assert!(
            !stderr.contains(secret),
            "a secret reached stderr:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("SENTINEL"),
        "a sentinel reached stderr:\n{stderr}"
    );
    for reply in &replies {
        assert!(
            !reply.to_string().contains("SENTINEL"),
            "a sentinel reached a client: {reply}"
        );
    }
    client.close().await;
    assert!(client.all_received().len() > replies.len());
    for message in client.all_received() {
        assert!(
            !message.to_string().contains("SENTINEL"),
            "a sentinel reached a client: {message}"
        );
    }
}
