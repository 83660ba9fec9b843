//! The built-in browser console (`GET /console`, SPEC §2.1) and the Origin policy as a real browser
//! sees it. The browser work lives in `tests/browser/*.mjs` (playwright-core driving headless
//! Chromium); these tests start the server and a fake backend, run one script, and assert the JSON
//! line it prints.
//!
//! Needs `node`, Chromium at `/usr/bin/chromium` (or `AUTHBRIDGE_CHROMIUM`) and
//! `npm ci --prefix tests/browser`. Without them the browser tests print "skipping: …" and pass,
//! unless `AUTHBRIDGE_REQUIRE_TOOLS=1` (set by `.ci/run`) makes that a failure.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestServer, backend_accepting, idt, repo_root, server_json, usage_snapshot};

const REFRESH: &str = "account/chatgptAuthTokens/refresh";
/// A bound on a script run (each script bounds itself at 25 s and normally takes a few seconds).
const SCRIPT_LIMIT: Duration = Duration::from_secs(60);

fn chromium() -> PathBuf {
    std::env::var_os("AUTHBRIDGE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Runs `node tests/browser/<script>` with `env`; returns the JSON line it printed.
async fn run_script(script: &str, env: &[(&str, &str)]) -> Value {
    let mut command = tokio::process::Command::new("node");
    command
        .arg(repo_root().join("tests/browser").join(script))
        .current_dir(repo_root())
        .env("AUTHBRIDGE_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().expect("node starts");
    let started = tokio::time::Instant::now();
    let output = tokio::time::timeout(SCRIPT_LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {SCRIPT_LIMIT:?}"))
        .expect("waiting for node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n--- stderr\n{stderr}\n--- stdout\n{stdout}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|line| line.starts_with('{'))
        .unwrap_or_else(|| panic!("{script} printed no JSON line:\n{stdout}\n{stderr}"));
    let observed: Value = serde_json::from_str(line)
        .unwrap_or_else(|err| panic!("{script} printed invalid JSON ({err}): {line}"));
    eprintln!(
        "{script}: finished in {:?} (browser part {} ms)",
        started.elapsed(),
        observed["elapsedMs"]
    );
    observed
}

#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "needs Chromium and tests/browser's packages (bash .ci/run installs them)"
)]
async fn the_console_logs_in_answers_a_refresh_and_shows_rate_limits() {
    let backend = backend_accepting(&["access-refreshed"]).await;
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    // A refresh window other than the default: the countdown must come from the server.
    let server = TestServer::start(&[base.as_str(), "auth.external_refresh_timeout_secs=7"]).await;
    // What a user has: server.json.
    let info = server_json(server.home());
    let console_url = info["consoleUrl"].as_str().unwrap().to_owned();
    let token = info["token"].as_str().unwrap().to_owned();
    assert_eq!(console_url, server.http_url("/console"));

    let screenshot = repo_root().join("tests/artifacts/console.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(&screenshot);

    let id_token = idt("initial@example.com", "pro", "org-initial");
    let refreshed_id_token = idt("refreshed@example.com", "pro", "org-refreshed");
    let observed = run_script(
        "console.mjs",
        &[
            ("AUTHBRIDGE_CONSOLE_URL", &console_url),
            ("AUTHBRIDGE_TOKEN", &token),
            ("AUTHBRIDGE_ID_TOKEN", &id_token),
            ("AUTHBRIDGE_ACCESS_TOKEN", "access-initial"),
            ("AUTHBRIDGE_REFRESHED_ID_TOKEN", &refreshed_id_token),
            ("AUTHBRIDGE_REFRESHED_ACCESS_TOKEN", "access-refreshed"),
            ("AUTHBRIDGE_SCREENSHOT", screenshot.to_str().unwrap()),
        ],
    )
    .await;

    // Connected and initialized from `#token=`, which left the address bar.
    assert_eq!(observed["stateText"], json!("Connected · initialized"));
    assert_eq!(observed["urlAfterLoad"], json!(console_url));
    assert_eq!(observed["tokenInUrl"], json!(false));
    assert_eq!(observed["tokenInputFilled"], json!(true));
    assert_eq!(observed["tokenInputType"], json!("password"));
    assert_eq!(
        observed["initializeRequest"],
        json!({"id": 1, "method": "initialize", "params": {"clientInfo":
            {"name": "authbridge_console", "title": "authbridge console", "version": "1"}}})
    );
    let init = &observed["initialize"];
    assert_eq!(init["id"], json!(1));
    assert_eq!(
        init["result"]["codexHome"],
        json!(server.home().to_str().unwrap())
    );
    assert_eq!(init["result"]["platformFamily"], json!("unix"));
    let user_agent = init["result"]["userAgent"].as_str().unwrap();
    assert!(
        user_agent.starts_with("authbridge_console/")
            && user_agent.ends_with("(authbridge_console; 1)"),
        "{user_agent}"
    );
    assert_eq!(observed["initialized"], json!({"method": "initialized"}));

    // Invalid JSON in the params box: an inline error, nothing sent.
    let invalid = &observed["invalidJson"];
    assert_eq!(invalid["sent"], json!(0), "{invalid}");
    assert_eq!(invalid["ariaInvalid"], json!("true"));
    assert!(
        invalid["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON: "),
        "{invalid}"
    );

    // Login through the method picker.
    assert_eq!(
        observed["loginTemplate"]["type"],
        json!("chatgptAuthTokens")
    );
    assert_eq!(
        observed["loginRequest"],
        json!({"method": "account/login/start", "params":
            {"type": "chatgptAuthTokens", "idToken": id_token, "accessToken": "access-initial"}})
    );
    assert_eq!(observed["loginError"], Value::Null);
    assert_eq!(
        observed["loginResult"],
        json!({"type": "chatgptAuthTokens"})
    );
    assert_eq!(
        observed["loginCompleted"],
        json!({"loginId": null, "success": true, "error": null})
    );
    assert_eq!(
        observed["accountUpdated"],
        json!({"authMode": "chatgptAuthTokens", "planType": "pro"})
    );

    // The refresh request popped up the panel and was answered from it.
    assert_eq!(
        observed["refreshRequest"],
        json!({"id": 0, "method": REFRESH, "params": {"reason": "unauthorized", "previousAccountId": "org-initial"}})
    );
    assert_eq!(observed["refreshMethod"], json!(REFRESH));
    assert_eq!(observed["refreshId"], json!("0"));
    assert_eq!(
        observed["refreshParams"],
        json!({"reason": "unauthorized", "previousAccountId": "org-initial"})
    );
    let countdown = observed["refreshCountdown"].as_str().unwrap();
    let seconds: f64 = countdown
        .strip_suffix(" s")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("countdown {countdown:?}"));
    assert!(seconds > 4.0 && seconds <= 7.0, "countdown {countdown:?}");
    assert_eq!(
        observed["refreshAnswer"],
        json!({"id": 0, "result": {"idToken": refreshed_id_token, "accessToken": "access-refreshed"}})
    );

    // The rate-limits read succeeded with the refreshed tokens.
    assert_eq!(observed["rateLimitsError"], Value::Null);
    assert_eq!(observed["rateLimits"], usage_snapshot());
    assert_eq!(observed["rateLimitsUpdated"], usage_snapshot());
    let seen = backend.received_requests().await.unwrap();
    let bearers: Vec<_> = seen
        .iter()
        .map(|r| r.headers.get("authorization").unwrap().to_str().unwrap())
        .collect();
    assert_eq!(
        bearers,
        ["Bearer access-initial", "Bearer access-refreshed"]
    );

    // Replies are paired with their requests; the session panel follows the account.
    assert_eq!(
        observed["pairing"],
        json!({"login": "done", "rateLimits": "done",
               "rateLimitsReplyTo": "account/rateLimits/read", "serverRequest": "done"})
    );
    assert_eq!(
        observed["sessionPanel"],
        json!({"account": "chatgptAuthTokens · pro", "rateLimitsShown": true})
    );
    assert_eq!(
        observed["filters"],
        json!({"notifications": 4, "text": 1, "countText": "1 of 16 messages", "all": 16})
    );
    assert_eq!(
        observed["compact"],
        json!({"singleLine": true, "sameValue": true})
    );
    assert_eq!(
        observed["log"],
        json!([
            "out:request:initialize",
            "in:response:",
            "out:notification:initialized",
            // On connect the console reads the account and lists the threads.
            "out:request:account/read",
            "out:request:thread/list",
            "in:response:",
            "in:response:",
            "out:request:account/login/start",
            "in:response:",
            "in:notification:account/login/completed",
            "in:notification:account/updated",
            "out:request:account/rateLimits/read",
            format!("in:server-request:{REFRESH}"),
            "out:response:",
            "in:response:",
            "in:notification:account/rateLimits/updated",
        ])
    );
    assert_eq!(observed["pageErrors"], json!([]));
    assert_eq!(observed["consoleErrors"], json!([]));

    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(
        png.len() > 1000 && png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG screenshot ({} bytes)",
        screenshot.display(),
        png.len()
    );
}

#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "needs Chromium and tests/browser's packages (bash .ci/run installs them)"
)]
async fn the_console_chat_streams_answers_runs_a_host_tool_and_interrupts() {
    let backend = authbridge::dev_backend::FakeBackend::start().await.unwrap();
    // As `authbridge dev-backend` does: `/tool`, `/401` and `/slow` in a message pick the answer.
    backend.set_fallback(None);
    let overrides = crate::support::turns::overrides(
        &backend,
        &[
            "model.tool_call_timeout_secs=30",
            "auth.external_refresh_timeout_secs=8",
        ],
    );
    let overrides: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let server = TestServer::start(&overrides).await;
    let info = server_json(server.home());
    let observed = run_script(
        "chat.mjs",
        &[
            (
                "AUTHBRIDGE_CONSOLE_URL",
                info["consoleUrl"].as_str().unwrap(),
            ),
            ("AUTHBRIDGE_TOKEN", info["token"].as_str().unwrap()),
            (
                "AUTHBRIDGE_ID_TOKEN",
                &idt("chat@example.com", "pro", "org-chat"),
            ),
        ],
    )
    .await;
    assert_eq!(observed["accountOnConnect"], json!("signed out"));
    // The method list is the server's: every registered method, plus the page's own "custom".
    let methods = observed["methods"].as_array().unwrap();
    for method in [
        "account/read",
        "thread/start",
        "thread/list",
        "turn/start",
        "turn/interrupt",
        "model/list",
        "custom",
    ] {
        assert!(
            methods.contains(&json!(method)),
            "{method} missing from {methods:?}"
        );
    }
    assert_eq!(
        observed["accountAfterLogin"],
        json!("chatgptAuthTokens · pro")
    );
    let chat = &observed["chat"];
    assert_eq!(chat["user"], json!("hello"));
    assert_eq!(chat["answer"], json!("Hello from fake backend."));
    assert_eq!(chat["reasoningCollapsed"], json!(true));
    assert!(
        chat["usage"].as_str().unwrap().starts_with("tokens: "),
        "{chat}"
    );
    assert_ne!(
        chat["threadPicked"],
        json!(""),
        "the new thread is selected"
    );
    assert_eq!(chat["rateLimitsShown"], json!(true));

    let tool = &observed["toolRequest"];
    assert_eq!(tool["method"], json!("item/tool/call"));
    assert_eq!(tool["params"]["tool"], json!("get_time"));
    assert_eq!(tool["params"]["threadId"], observed["toolThread"]);
    assert_eq!(tool["prefilled"], json!({"output": "", "success": true}));
    assert!(
        tool["note"].as_str().unwrap().contains("get_time"),
        "{tool}"
    );
    let countdown: f64 = tool["countdown"]
        .as_str()
        .unwrap()
        .trim_end_matches(" s")
        .parse()
        .unwrap();
    assert!(
        countdown > 25.0 && countdown <= 30.0,
        "the tool window is the server's: {countdown}"
    );
    // The model got the output the panel sent.
    let outputs: Vec<Value> = backend
        .requests()
        .iter()
        .flat_map(|request| {
            request.body["input"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|item| item["type"] == "function_call_output")
        .collect();
    // (the later `/slow` turn replays it as history too)
    assert!(!outputs.is_empty());
    assert!(
        outputs.iter().all(|output| output["output"] == "12:00"),
        "{outputs:?}"
    );

    // A 401 in a turn: the refresh request was answered from the panel, within the server's
    // window, and the retried request carried the new token.
    assert_eq!(observed["refreshRequest"]["method"], json!(REFRESH));
    let countdown: f64 = observed["refreshRequest"]["countdown"]
        .as_str()
        .unwrap()
        .trim_end_matches(" s")
        .parse()
        .unwrap();
    assert!(countdown > 5.0 && countdown <= 8.0, "{countdown}");
    let bearers: Vec<String> = backend
        .requests()
        .iter()
        .filter_map(|request| request.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(bearers.first().map(String::as_str), Some("Bearer access-1"));
    assert_eq!(bearers.last().map(String::as_str), Some("Bearer access-2"));

    assert_eq!(observed["interrupt"]["threadId"], observed["toolThread"]);
    assert_eq!(observed["pageErrors"], json!([]));
}

#[tokio::test]
#[cfg_attr(
    missing_browser,
    ignore = "needs Chromium and tests/browser's packages (bash .ci/run installs them)"
)]
async fn a_foreign_origin_is_refused_and_the_console_origin_is_accepted() {
    let server = TestServer::start(&[]).await;
    let token = server.token.clone().unwrap();
    let http_base = server.http_url("");
    let observed = run_script(
        "origin.mjs",
        &[
            ("AUTHBRIDGE_WS_URL", &server.url),
            ("AUTHBRIDGE_HTTP_BASE", &http_base),
            ("AUTHBRIDGE_TOKEN", &token),
        ],
    )
    .await;

    let foreign = &observed["foreign"];
    let foreign_origin = foreign["origin"].as_str().unwrap();
    assert!(foreign_origin.starts_with("http://127.0.0.1:"), "{foreign}");
    assert_ne!(foreign_origin, http_base);
    assert_eq!(foreign["opened"], json!(false), "{foreign}");
    assert_eq!(foreign["protocol"], Value::Null);
    assert_eq!(foreign["events"], json!(["error", "close"]));
    assert_eq!(foreign["closeCode"], json!(1006));
    assert_eq!(foreign["timedOut"], json!(false));
    assert_eq!(foreign["handshakes"], json!([]), "no handshake succeeded");
    let messages = foreign["console"].as_array().unwrap();
    assert!(
        messages.iter().any(|m| {
            let m = m.as_str().unwrap();
            m.contains("WebSocket connection to") && m.contains("403")
        }),
        "Chromium should report the 403: {messages:?}"
    );
    // The 403 is the origin refusal (the same Origin header, sent by hand).
    let refused = reqwest::Client::new()
        .get(server.http_url("/"))
        .header("origin", foreign_origin)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.text().await.unwrap(), "forbidden origin");

    let own = &observed["console"];
    assert_eq!(own["origin"], json!(http_base));
    assert_eq!(own["stateBeforeProbe"], json!("disconnected"));
    assert_eq!(own["opened"], json!(true), "{own}");
    assert_eq!(own["protocol"], json!("authbridge"));
    assert_eq!(own["events"], json!(["open", "close"]));
    assert_eq!(own["closeCode"], json!(1000));
    assert_eq!(own["closeReason"], json!("probe done"));
    assert_eq!(own["timedOut"], json!(false));
    assert_eq!(
        own["handshakes"],
        json!([{"status": 101, "statusText": "Switching Protocols"}])
    );
    assert_eq!(own["console"], json!([]));
}

/// Plain HTTP (no browser needed): the page, its assets, and the page's safety rules.
#[tokio::test]
async fn the_console_page_and_its_assets_are_served() {
    let server = TestServer::start(&[]).await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(server.http_url(path)).send();

    let page = get("/console").await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("frame-ancestors 'none'") && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/console/app.js" defer></script>"#));
    assert!(html.contains(r#"<link rel="stylesheet" href="/console/style.css">"#));
    assert!(html.contains("Content-Security-Policy"));
    assert!(
        !html.contains(server.token.as_deref().unwrap()),
        "the page embeds no secret"
    );

    for (asset, content_type) in [
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/style.css", "text/css; charset=utf-8"),
    ] {
        let response = get(asset).await.unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(response.headers()["content-type"], content_type, "{asset}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert!(!response.text().await.unwrap().is_empty(), "{asset}");
    }
    let catalog: Value = get("/console/catalog.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed: Vec<&str> = catalog["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["method"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&"turn/start") && listed.contains(&"account/read"),
        "{listed:?}"
    );
    assert_eq!(catalog["serverRequests"][REFRESH], json!(10_000));
    assert_eq!(catalog["serverRequests"]["item/tool/call"], json!(60_000));
    let missing = get("/console/nope.js").await.unwrap();
    assert_eq!(missing.status(), 404);

    // The script builds the DOM from text nodes only and evaluates nothing.
    let script = get("/console/app.js").await.unwrap().text().await.unwrap();
    for forbidden in [
        "eval(",
        "new Function",
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "localStorage",
        "sessionStorage",
    ] {
        assert!(!script.contains(forbidden), "app.js uses {forbidden}");
    }
}
