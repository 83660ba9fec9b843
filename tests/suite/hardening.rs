//! What a hostile or clumsy local client can do: idle and trickling sockets, oversized headers,
//! descriptor exhaustion, repeated headers, broken WebSocket frames (SPEC §2.1 limits).

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Child, Client, TestServer, WAIT};

/// Reads until the server closes the socket; returns what it sent. Panics if it stays open.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut received)).await;
    match read {
        Ok(_) => String::from_utf8_lossy(&received).into_owned(),
        Err(_) => panic!("the server kept the socket open; it sent {received:?}"),
    }
}

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.addr).await.unwrap()
}

fn host(server: &TestServer) -> String {
    format!("127.0.0.1:{}", server.addr.port())
}

#[tokio::test]
async fn a_socket_that_never_sends_a_request_is_closed() {
    let server = TestServer::start(&["server.header_timeout_secs=1"]).await;
    let mut silent = connect(&server).await;
    assert_eq!(read_until_closed(&mut silent).await, "");
}

#[tokio::test]
async fn a_trickled_header_is_cut_off() {
    let server = TestServer::start(&["server.header_timeout_secs=1"]).await;
    let mut trickle = connect(&server).await;
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Slow: ",
        host(&server)
    );
    trickle.write_all(head.as_bytes()).await.unwrap();
    // Keep sending a byte at a time; the server must close well before the header would end.
    let closed = tokio::time::timeout(WAIT, async {
        let mut byte = [0u8; 1];
        loop {
            if trickle.write_all(b"a").await.is_err() {
                return;
            }
            match tokio::time::timeout(Duration::from_millis(100), trickle.read(&mut byte)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the trickling socket was never closed");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let server = TestServer::start(&["server.header_timeout_secs=1"]).await;
    let mut stream = connect(&server).await;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", host(&server));
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
}

#[tokio::test]
async fn an_oversized_header_gets_431() {
    let server = TestServer::start(&["server.max_header_bytes=16384"]).await;
    let mut stream = connect(&server).await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        host(&server),
        "b".repeat(20_000)
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let answer = read_until_closed(&mut stream).await;
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
        "{answer}"
    );
    // A header under the cap still works.
    let mut stream = connect(&server).await;
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        host(&server),
        "b".repeat(8_000)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    assert!(
        read_until_closed(&mut stream)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
}

#[tokio::test]
async fn idle_sockets_cannot_lock_out_a_healthy_client() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Child::spawn_with_fd_limit(
        256,
        &[
            "--home",
            home.path().to_str().unwrap(),
            "--listen",
            "ws://127.0.0.1:0",
            "--ws-auth",
            "none",
        ],
        &[],
    )
    .await;
    let url = child.url.clone().expect("listening line");
    let addr = url
        .trim_start_matches("ws://")
        .trim_end_matches('/')
        .to_owned();
    // 400 sockets that never finish a request: half silent, half stuck in a partial header.
    let mut idle = Vec::new();
    for n in 0..400 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        if n % 2 == 1 {
            let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: x").await;
        }
        idle.push(stream);
    }
    let mut client = Client::connect(&url, None).await;
    client.initialize().await;
    let account = client.call_result("account/read", json!({})).await;
    assert_eq!(
        account,
        json!({"account": null, "requiresOpenaiAuth": true})
    );
    assert!(
        !child.stderr().contains("Too many open files"),
        "{}",
        child.stderr()
    );
    drop(idle);
    child.terminate();
    assert_eq!(child.exit_code().await, Some(0));
}

#[tokio::test]
async fn repeated_host_or_origin_headers_are_refused() {
    let server = TestServer::start(&[]).await;
    for extra in [
        format!("Host: {}\r\n", host(&server)),
        "Origin: http://evil.example\r\nOrigin: http://evil.example\r\n".to_owned(),
    ] {
        let mut stream = connect(&server).await;
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: {}\r\n{extra}Connection: close\r\n\r\n",
            host(&server)
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request"), "{answer}");
        assert!(
            answer.ends_with("repeated host or origin header"),
            "{answer}"
        );
    }
}

/// Completes a WebSocket handshake, writes `frame` as raw bytes and returns the close code the
/// server answers with.
async fn close_code_after_raw_frame(server: &TestServer, frame: &[u8]) -> Option<u16> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut request = server.url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", server.token.as_deref().unwrap())).unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::client_async(request, connect(server).await)
        .await
        .unwrap();
    socket.get_mut().write_all(frame).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a close frame")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("no close frame: {err}"),
            None => return None,
        }
    }
}

#[tokio::test]
async fn broken_frames_close_with_the_rfc_6455_codes() {
    let server = TestServer::start(&[]).await;
    // Masked (key 0) text frame whose payload is not UTF-8.
    let invalid_utf8 = [0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe];
    assert_eq!(
        close_code_after_raw_frame(&server, &invalid_utf8).await,
        Some(1007)
    );
    for (what, frame) in [
        ("RSV1 set", &[0xc1u8, 0x80, 0, 0, 0, 0][..]),
        ("unmasked client frame", &[0x81, 0x02, b'{', b'}'][..]),
        ("reserved opcode", &[0x83, 0x80, 0, 0, 0, 0][..]),
        (
            "continuation without a start",
            &[0x80, 0x80, 0, 0, 0, 0][..],
        ),
    ] {
        assert_eq!(
            close_code_after_raw_frame(&server, frame).await,
            Some(1002),
            "{what}"
        );
    }
    // The server itself is fine.
    server
        .client()
        .await
        .call_result("account/read", json!({}))
        .await;
}

/// A usage endpoint that holds every request until released, counting how many wait at once.
struct GatedBackend {
    url: String,
    waiting: tokio::sync::watch::Receiver<usize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    release: std::sync::Arc<tokio::sync::Semaphore>,
}

async fn gated_backend() -> GatedBackend {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let (count_tx, waiting) = tokio::sync::watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let most = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let app = axum::Router::new().route(
        "/api/codex/usage",
        axum::routing::get({
            let (count_tx, most, release) = (count_tx.clone(), most.clone(), release.clone());
            move || async move {
                count_tx.send_modify(|n| *n += 1);
                most.fetch_max(*count_tx.borrow(), Ordering::SeqCst);
                release.acquire().await.unwrap().forget();
                count_tx.send_modify(|n| *n -= 1);
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    crate::support::usage_body().to_string(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    GatedBackend {
        url,
        waiting,
        most,
        release,
    }
}

#[tokio::test]
async fn backend_calls_beyond_the_process_limit_wait_for_a_slot() {
    let mut backend = gated_backend().await;
    let base = format!("chatgpt_base_url=\"{}\"", backend.url);
    let server = TestServer::start(&[&base, "backend.max_concurrent=2"]).await;
    let mut first = server.client().await;
    first
        .login_external("gate@example.com", "org-gate", "access-gate")
        .await;
    let mut second = server.client().await;
    let mut ids = Vec::new();
    for client in [&mut first, &mut second] {
        for _ in 0..3 {
            ids.push(client.request("account/rateLimits/read", json!({})).await);
        }
    }
    tokio::time::timeout(WAIT, backend.waiting.wait_for(|n| *n == 2))
        .await
        .expect("two calls reach the backend")
        .unwrap();
    // Four calls wait in authbridge, not at the backend.
    let third = tokio::time::timeout(
        Duration::from_millis(300),
        backend.waiting.wait_for(|n| *n > 2),
    )
    .await;
    assert!(third.is_err(), "a third call reached the backend");
    backend.release.add_permits(6);
    for (n, id) in ids.into_iter().enumerate() {
        let client = if n < 3 { &mut first } else { &mut second };
        assert!(client.result(id).await["rateLimits"].is_object());
    }
    assert_eq!(backend.most.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn client_info_members_are_bounded() {
    let server = TestServer::start(&[]).await;
    let mut client = server.connect().await;
    for (member, info) in [
        ("name", json!({"name": "n".repeat(100_000), "version": "1"})),
        (
            "title",
            json!({"name": "ok", "title": "t".repeat(257), "version": "1"}),
        ),
        ("version", json!({"name": "ok", "version": "1".repeat(257)})),
    ] {
        let reply = client.call("initialize", json!({"clientInfo": info})).await;
        assert_eq!(
            reply["error"],
            json!({"code": -32600, "message": format!("Invalid clientInfo.{member}: must be at most 256 characters.")})
        );
    }
    // The refused name did not become the originator.
    let reply = client.initialize().await;
    let user_agent = reply["result"]["userAgent"].as_str().unwrap();
    assert!(
        user_agent.starts_with("codex-app-server-tests/"),
        "{user_agent}"
    );
}

#[tokio::test]
async fn unusable_api_keys_are_refused_and_nothing_is_written() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    for key in ["", "   ", "sk-has space", "sk-new\nline", "sk-\u{7}bell"] {
        let reply = client
            .call(
                "account/login/start",
                json!({"type": "apiKey", "apiKey": key}),
            )
            .await;
        assert_eq!(reply["error"]["code"], json!(-32602), "{key:?}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("Invalid params: apiKey must be a non-empty key without whitespace or control characters"),
            "{message}"
        );
    }
    client
        .assert_no_method(Duration::from_millis(200), "account/login/completed")
        .await;
    assert!(!server.auth_json().exists());
}

#[tokio::test]
async fn account_ids_that_are_not_header_values_are_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    for id in ["org\r\nX-Injected: 1", "org\u{0}", ""] {
        let reply = client
            .call(
                "account/login/start",
                json!({"type": "chatgptAuthTokens", "accessToken": crate::support::jwt(json!({"email": "a@b"})), "chatgptAccountId": id}),
            )
            .await;
        assert_eq!(reply["error"]["code"], json!(-32602), "{reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("chatgptAccountId must be a non-empty valid HTTP header value"),
            "{reply}"
        );
    }
    let account = client.call_result("account/read", json!({})).await;
    assert_eq!(account["account"], json!(null));
}

#[tokio::test]
async fn a_refresh_reply_with_a_bad_account_id_fails_the_call() {
    let backend = crate::support::backend_accepting(&["never"]).await;
    let base = format!("chatgpt_base_url=\"{}\"", backend.uri());
    let server = TestServer::start(&[&base]).await;
    let mut client = server.client().await;
    client
        .login_external("a@example.com", "org-a", "access-a")
        .await;
    let id = client.request("account/rateLimits/read", json!({})).await;
    let refresh = client
        .server_request("account/chatgptAuthTokens/refresh")
        .await;
    client
        .send(json!({"id": refresh["id"], "result": {"accessToken": crate::support::jwt(json!({"email": "a@b"})), "chatgptAccountId": "org\r\nX: y"}}))
        .await;
    let reply = client.response(id).await;
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("failed to fetch codex rate limits: invalid auth refresh response: chatgptAccountId must be a non-empty valid HTTP header value"),
        "{message}"
    );
}

#[tokio::test]
async fn positional_params_are_refused() {
    let server = TestServer::start(&[]).await;
    let mut client = server.client().await;
    for (method, params) in [
        ("account/login/start", json!(["apiKey", "sk-positional"])),
        ("account/read", json!([true])),
        ("account/logout", json!("x")),
    ] {
        let reply = client.call(method, params).await;
        assert_eq!(
            reply["error"],
            json!({"code": -32602, "message": "Invalid params: params must be an object"}),
            "{method}"
        );
    }
    assert!(!server.auth_json().exists());
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_fifo_for_auth_json_is_neither_read_nor_waited_on() {
    let home = tempfile::tempdir().unwrap();
    let fifo = home.path().join("auth.json");
    mkfifo(&fifo);
    // A writer that would hand the server credentials if it opened the FIFO.
    std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            if let Ok(mut writer) = std::fs::OpenOptions::new().write(true).open(&fifo) {
                use std::io::Write;
                let _ =
                    writer.write_all(br#"{"auth_mode":"apikey","OPENAI_API_KEY":"sk-from-fifo"}"#);
            }
        }
    });
    let server = TestServer::start_in(home, &[]).await;
    let mut client = server.client().await;
    let account = client.call_result("account/read", json!({})).await;
    assert_eq!(
        account,
        json!({"account": null, "requiresOpenaiAuth": true})
    );
    let health = reqwest::get(server.http_url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn lock_files_are_never_followed() {
    let server = TestServer::start(&[]).await;
    let target = server.home().join("elsewhere");
    let lock = server.home().join("auth.json.lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let mut client = server.client().await;
    let reply = client
        .call(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-test"}),
        )
        .await;
    assert_eq!(reply["error"]["code"], json!(-32603), "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("failed to save api key: "), "{message}");
    assert!(
        message.ends_with("auth.json.lock is a symbolic link; refusing to follow it"),
        "{message}"
    );
    assert!(!target.exists(), "the link's target was created");
    assert!(!server.auth_json().exists());
}

fn temp_files(home: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(home)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(".auth.json.") && name.ends_with(".tmp"))
        .collect()
}

#[tokio::test]
async fn temp_files_left_by_a_killed_writer_are_removed_at_start_and_logout() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join(".auth.json.Xa1b2c.tmp"),
        r#"{"OPENAI_API_KEY":"sk-orphan"}"#,
    )
    .unwrap();
    let server = TestServer::start_in(home, &[]).await;
    assert_eq!(temp_files(server.home()), Vec::<String>::new());
    std::fs::write(server.home().join(".auth.json.Yd3e4f.tmp"), "sk-orphan-2").unwrap();
    let mut client = server.client().await;
    client.call_result("account/logout", json!({})).await;
    assert_eq!(temp_files(server.home()), Vec::<String>::new());
}

fn serve_args(home: &std::path::Path, listen: &'static str) -> Vec<String> {
    [
        "--home",
        home.to_str().unwrap(),
        "--listen",
        listen,
        "--ws-auth",
        "none",
    ]
    .map(str::to_owned)
    .to_vec()
}

async fn spawn(args: &[String]) -> Child {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Child::spawn(&args, &[]).await
}

#[tokio::test]
async fn one_websocket_server_per_home() {
    let home = tempfile::tempdir().unwrap();
    let mut first = spawn(&serve_args(home.path(), "ws://127.0.0.1:0")).await;
    let running = crate::support::server_json(home.path());
    let mut second = spawn(&serve_args(home.path(), "ws://127.0.0.1:0")).await;
    assert_eq!(second.exit_code().await, Some(1));
    let expected = format!(
        "authbridge: another authbridge server is already running on this home (pid {}, {}); stop it or pass another --home",
        running["pid"],
        running["url"].as_str().unwrap()
    );
    assert!(second.stderr().contains(&expected), "{}", second.stderr());
    assert_eq!(
        crate::support::server_json(home.path()),
        running,
        "server.json untouched"
    );
    // stdio servers share the home with it.
    let mut stdio = spawn(&serve_args(home.path(), "stdio://")).await;
    let mut client = Client::over_stdio(&mut stdio);
    client.initialize().await;
    client.call_result("account/read", json!({})).await;
    client.close_input().await;
    assert_eq!(stdio.exit_code().await, Some(0));
    assert_eq!(crate::support::server_json(home.path()), running);
    first.terminate();
    assert_eq!(first.exit_code().await, Some(0));
    assert!(!home.path().join("server.json").exists());
}

#[tokio::test]
async fn a_stale_server_json_is_replaced() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("server.json"),
        r#"{"pid":999999,"url":"ws://127.0.0.1:1/","auth":"none","token":null,"consoleUrl":"x"}"#,
    )
    .unwrap();
    let mut child = spawn(&serve_args(home.path(), "ws://127.0.0.1:0")).await;
    let info = crate::support::server_json(home.path());
    assert_eq!(info["pid"], json!(child.process.id().unwrap()));
    assert_eq!(
        format!("{}", info["url"].as_str().unwrap()),
        child.url.clone().unwrap()
    );
    child.terminate();
    assert_eq!(child.exit_code().await, Some(0));
}

#[tokio::test]
async fn every_interface_is_reported_with_a_warning_and_localhost_is_accepted() {
    let home = tempfile::tempdir().unwrap();
    let args = [
        "--home",
        home.path().to_str().unwrap(),
        "--listen",
        "ws://0.0.0.0:0",
    ]
    .map(str::to_owned);
    let mut child = spawn(&args).await;
    let stderr = child.stderr();
    let info = crate::support::server_json(home.path());
    let listen = info["listen"].as_str().unwrap();
    assert!(listen.starts_with("ws://0.0.0.0:"), "{info}");
    assert!(
        stderr.contains(&format!("authbridge listening on {listen} — every interface, reachable from the network (local clients: {};", info["url"].as_str().unwrap())),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "listening on every interface: other machines on the network can reach this server"
        ),
        "{stderr}"
    );
    child.terminate();
    assert_eq!(child.exit_code().await, Some(0));

    let args = [
        "--home",
        home.path().to_str().unwrap(),
        "--listen",
        "ws://localhost:0",
        "--ws-auth",
        "none",
    ]
    .map(str::to_owned);
    let mut child = spawn(&args).await;
    let url = child.url.clone().unwrap();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let mut client = Client::connect(&url, None).await;
    client.initialize().await;
    child.terminate();
    assert_eq!(child.exit_code().await, Some(0));
}

#[tokio::test]
async fn sigterm_ends_a_stdio_server_while_stdin_stays_open() {
    let home = tempfile::tempdir().unwrap();
    let mut child = spawn(&serve_args(home.path(), "stdio://")).await;
    let mut client = Client::over_stdio(&mut child);
    client.initialize().await;
    child.terminate();
    assert_eq!(child.exit_code().await, Some(0));
    drop(client);
}

#[tokio::test]
async fn logs_to_a_pipe_have_no_colour_and_json_logs_are_all_json() {
    let home = tempfile::tempdir().unwrap();
    let mut args = serve_args(home.path(), "ws://127.0.0.1:0");
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut text = Child::spawn(&strs, &[("RUST_LOG", "debug")]).await;
    text.terminate();
    assert_eq!(text.exit_code().await, Some(0));
    let stderr = text.stderr();
    assert!(stderr.contains(" WARN "), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour escapes in piped logs: {stderr:?}"
    );

    args.extend(["--log-format".to_owned(), "json".to_owned()]);
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut json_logs = Child::spawn(&strs, &[("RUST_LOG", "debug")]).await;
    let stderr = json_logs.stderr();
    let line = stderr
        .lines()
        .find(|line| line.contains("authbridge listening on"))
        .expect("the listening line")
        .to_owned();
    json_logs.terminate();
    assert_eq!(json_logs.exit_code().await, Some(0));
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert!(
        event["fields"]["message"]
            .as_str()
            .unwrap()
            .starts_with("authbridge listening on ws://127.0.0.1:"),
        "{event}"
    );
    for line in json_logs.stderr().lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}

/// Runs the server on a pseudo-terminal (`script`) until it fails to bind a taken port; returns
/// what the terminal showed.
async fn terminal_output(no_color: bool) -> String {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let home = tempfile::tempdir().unwrap();
    let command = format!(
        "{} serve --home {} --listen ws://{} --ws-auth none",
        crate::support::binary(),
        home.path().display(),
        taken.local_addr().unwrap()
    );
    let mut script = tokio::process::Command::new("script");
    script.args(["-qefc", &command, "/dev/null"]);
    if no_color {
        script.env("NO_COLOR", "1");
    } else {
        script.env_remove("NO_COLOR");
    }
    let output = tokio::time::timeout(WAIT, script.output())
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
#[cfg_attr(missing_script, ignore = "needs `script` from util-linux")]
async fn colour_only_on_a_terminal_without_no_color() {
    let coloured = terminal_output(false).await;
    assert!(coloured.contains("websocket auth is off"), "{coloured}");
    assert!(coloured.contains('\u{1b}'), "{coloured:?}");
    let plain = terminal_output(true).await;
    assert!(plain.contains("websocket auth is off"), "{plain}");
    assert!(!plain.contains('\u{1b}'), "{plain:?}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_with_1008_after_its_queue_fills() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let home = tempfile::tempdir().unwrap();
    let mut args = serve_args(home.path(), "ws://127.0.0.1:0");
    args.extend([
        "-c".to_owned(),
        "server.outbound_queue_bytes=65536".to_owned(),
    ]);
    let mut child = spawn(&args).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = child
        .url
        .as_deref()
        .unwrap()
        .trim_start_matches("ws://")
        .trim_end_matches('/');
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let (websocket, _) = tokio_tungstenite::client_async(child.url.as_deref().unwrap(), stream)
        .await
        .unwrap();
    let (mut sink, mut stream) = websocket.split();
    // Requests whose echoed ids are 100 KB each; the client reads nothing meanwhile.
    let id = serde_json::to_string(&"i".repeat(100_000)).unwrap();
    let initialize =
        r#"{"id":0,"method":"initialize","params":{"clientInfo":{"name":"hog","version":"1"}}}"#;
    sink.send(Message::Text(initialize.into())).await.unwrap();
    let flood = tokio::spawn(async move {
        for _ in 0..400 {
            let request = format!(r#"{{"id":{id},"method":"account/read"}}"#);
            if sink.send(Message::Text(request.into())).await.is_err() {
                return;
            }
        }
    });
    child
        .stderr_line("outbound queue full: disconnecting a peer that does not read")
        .await;
    let close = tokio::time::timeout(WAIT, async {
        while let Some(message) = stream.next().await {
            match message {
                Ok(Message::Close(frame)) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Ok(_) => continue,
                Err(err) => panic!("no close frame: {err}"),
            }
        }
        None
    })
    .await
    .expect("the server closes the connection");
    assert_eq!(close, Some((1008, "outbound queue full".to_owned())));
    flood.abort();
    child.terminate();
    assert_eq!(child.exit_code().await, Some(0));
}

#[tokio::test]
async fn cancel_request_stops_a_running_call_and_frees_its_slot() {
    let mut backend = gated_backend().await;
    let base = format!("chatgpt_base_url=\"{}\"", backend.url);
    let server = TestServer::start(&[&base, "server.max_in_flight_per_connection=1"]).await;
    let mut client = server.client().await;
    client
        .login_external("c@example.com", "org-c", "access-c")
        .await;
    let id = client.request("account/rateLimits/read", json!({})).await;
    tokio::time::timeout(WAIT, backend.waiting.wait_for(|n| *n == 1))
        .await
        .expect("the call reaches the backend")
        .unwrap();
    // An unknown id is ignored; the running call's id cancels it.
    client
        .send(json!({"method": "$/cancelRequest", "params": {"id": 424242}}))
        .await;
    client
        .send(json!({"method": "$/cancelRequest", "params": {"id": id}}))
        .await;
    assert_eq!(
        client.response(id).await,
        json!({"id": id, "error": {"code": -32800, "message": "Request cancelled"}})
    );
    // The slot it held is free again.
    let account = client.call_result("account/read", json!({})).await;
    assert_eq!(account["account"]["email"], json!("c@example.com"));
    client
        .assert_none(Duration::from_millis(200), "a second reply", |v| {
            v["id"] == json!(id)
        })
        .await;
}
