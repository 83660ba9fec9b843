//! Threads in the store (TURNS §17, §25, conformance scenarios 65, 72–75): list, read, resume
//! after a restart, archive, names, ephemeral threads, a crash mid-turn, a store that cannot be
//! used, and several processes sharing one home.

use std::time::Duration;

use authbridge::dev_backend::{FakeBackend, Reply};
use serde_json::{Value, json};

use crate::support::turns::{
    Fixture, MARKER, input, last_turn, of, overrides, start_thread, start_turn, until_completed,
    until_delta, user,
};
use crate::support::{Child, Client};

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|thread| thread["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every item/completed item of a turn's messages.
fn completed_items(messages: &[Value]) -> Vec<Value> {
    of(messages, "item/completed")
        .into_iter()
        .map(|params| params["item"].clone())
        .collect()
}

#[tokio::test]
async fn threads_list_read_and_resume_after_a_restart() {
    let mut f = Fixture::start(&[]).await;
    let first = f.thread(json!({})).await;
    let turn_a = f.turn(&first, "one").await;
    let live_a = completed_items(&f.completed().await);
    let turn_b = f.turn(&first, "two").await;
    f.completed().await;
    let second = f.thread(json!({})).await;
    f.turn(&second, "other").await;
    f.completed().await;

    let mut f = f.restart().await;
    let page = f.client.call_result("thread/list", json!({})).await;
    assert_eq!(ids(&page), [second.clone(), first.clone()]);
    assert_eq!(page["nextCursor"], Value::Null);
    assert_eq!(page["data"][0]["status"], json!({"type": "notLoaded"}));
    assert_eq!(page["data"][1]["preview"], "one");
    assert_eq!(page["data"][0]["turns"], json!([]));

    let read = f
        .client
        .call_result(
            "thread/read",
            json!({"threadId": first, "includeTurns": true}),
        )
        .await;
    let turns = read["thread"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    assert_eq!(
        (&turns[0]["id"], &turns[1]["id"]),
        (&json!(turn_a), &json!(turn_b))
    );
    assert_eq!(turns[0]["items"].as_array().unwrap(), &live_a);
    assert_eq!(turns[1]["status"], "completed");

    let resumed = f
        .client
        .call_result("thread/resume", json!({"threadId": first}))
        .await;
    assert_eq!(resumed["thread"]["turns"], read["thread"]["turns"]);
    f.turn(&first, "three").await;
    let messages = f.completed().await;
    let requests = f.backend.requests();
    let history = input(requests.last().unwrap());
    assert_eq!(history.len(), 2 * 3 + 1, "{history:#?}");
    assert_eq!(history[0], user("one"));
    assert_eq!(history[3], user("two"));
    assert_eq!(history[6], user("three"));
    let usage = &of(&messages, "thread/tokenUsage/updated")[0]["tokenUsage"]["total"];
    assert_eq!(usage["totalTokens"], 1290 * 3);
}

#[tokio::test]
async fn resume_excludes_turns_when_asked_and_overrides_later_requests() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    f.turn(&thread, "one").await;
    f.completed().await;
    let mut f = f.restart().await;
    let resumed = f
        .client
        .call_result(
            "thread/resume",
            json!({"threadId": thread, "excludeTurns": true, "model": "gpt-5.2", "developerInstructions": "D"}),
        )
        .await;
    assert_eq!(resumed["thread"]["turns"], json!([]));
    assert_eq!(resumed["model"], "gpt-5.2");
    f.turn(&thread, "two").await;
    f.completed().await;
    let body = &f.backend.requests()[1].body;
    assert_eq!(body["model"], "gpt-5.2");
    assert_eq!(body["input"][0]["role"], "developer");
}

#[tokio::test]
async fn list_pages_see_every_thread_once_and_sort_by_creation_on_request() {
    let mut f = Fixture::start(&[]).await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(f.thread(json!({})).await);
    }
    // The oldest thread gets a turn: it is the most recently updated.
    f.turn(&created[0], "bump").await;
    f.completed().await;
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut params = json!({"limit": 2});
        if !cursor.is_null() {
            params["cursor"] = cursor.clone();
        }
        let page = f.client.call_result("thread/list", params).await;
        assert!(page["data"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&page));
        cursor = page["nextCursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0], created[0]);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5);
    let by_created = f
        .client
        .call_result(
            "thread/list",
            json!({"sortKey": "created_at", "limit": 100}),
        )
        .await;
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(ids(&by_created), newest_first);
    let clamped = f
        .client
        .call_result("thread/list", json!({"limit": 0}))
        .await;
    assert_eq!(ids(&clamped).len(), 1);
    let reply = f
        .client
        .call("thread/list", json!({"cursor": "not-ours"}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": "invalid cursor: not-ours"})
    );
}

#[tokio::test]
async fn ephemeral_threads_work_but_are_never_stored() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({"ephemeral": true})).await;
    f.turn(&thread, "secret chat").await;
    let messages = f.completed().await;
    assert_eq!(last_turn(&messages)["status"], "completed");
    let read = f
        .client
        .call_result(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    assert_eq!(read["thread"]["ephemeral"], true);
    assert_eq!(read["thread"]["turns"][0]["status"], "completed");
    let page = f.client.call_result("thread/list", json!({})).await;
    assert!(ids(&page).is_empty());
    let reply = f
        .client
        .call("thread/archive", json!({"threadId": thread}))
        .await;
    assert_eq!(
        reply["error"],
        json!({"code": -32600, "message": format!("no rollout found for thread id {thread}")})
    );
    let mut f = f.restart().await;
    let reply = f
        .client
        .call("thread/read", json!({"threadId": thread}))
        .await;
    assert_eq!(
        reply["error"]["message"],
        format!("thread not loaded: {thread}")
    );
    let file = std::fs::read(f.server.home().join("threads.sqlite")).unwrap();
    assert!(!contains(&file, b"secret chat"));
}

#[tokio::test]
async fn archive_and_unarchive() {
    let mut f = Fixture::start(&[]).await;
    let thread = f.thread(json!({})).await;
    f.running_turn(&thread, 50).await;
    // A running turn is interrupted first; its end reaches the subscriber before the reply.
    let id = f
        .client
        .request("thread/archive", json!({"threadId": thread}))
        .await;
    let messages = f.client.until("the archive reply", |m| m["id"] == id).await;
    assert_eq!(messages.last().unwrap()["result"], json!({}));
    assert_eq!(
        last_turn(&of_turn_completed(&messages))["status"],
        "interrupted"
    );
    let page = f.client.call_result("thread/list", json!({})).await;
    assert!(ids(&page).is_empty());
    let archived = f
        .client
        .call_result("thread/list", json!({"archived": true}))
        .await;
    assert_eq!(ids(&archived), [thread.as_str()]);
    for (method, params, text) in [
        (
            "turn/start",
            json!({"threadId": thread, "input": []}),
            format!("thread not found: {thread}"),
        ),
        (
            "turn/interrupt",
            json!({"threadId": thread, "turnId": "t"}),
            format!("thread not found: {thread}"),
        ),
        (
            "thread/resume",
            json!({"threadId": thread}),
            format!("no rollout found for thread id {thread}"),
        ),
    ] {
        let reply = f.client.call(method, params).await;
        assert_eq!(
            reply["error"],
            json!({"code": -32600, "message": text}),
            "{method}"
        );
    }
    let read = f
        .client
        .call_result(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    assert_eq!(read["thread"]["turns"][0]["status"], "interrupted");
    // Idempotent both ways.
    f.client
        .call_result("thread/archive", json!({"threadId": thread}))
        .await;
    let unarchived = f
        .client
        .call_result("thread/unarchive", json!({"threadId": thread}))
        .await;
    assert_eq!(unarchived["thread"]["id"], thread);
    assert!(
        unarchived["thread"]["updatedAt"].as_i64().unwrap()
            >= read["thread"]["updatedAt"].as_i64().unwrap()
    );
    f.client
        .call_result("thread/unarchive", json!({"threadId": thread}))
        .await;
    let page = f.client.call_result("thread/list", json!({})).await;
    assert_eq!(ids(&page), [thread.as_str()]);
    f.turn(&thread, "back").await;
    f.completed().await;
}

fn of_turn_completed(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m["method"] == "turn/completed")
        .cloned()
        .collect()
}

#[tokio::test]
async fn names_are_stored_and_announced() {
    let mut f = Fixture::start(&[]).await;
    let mut watcher = f.server.client().await;
    let thread = f.thread(json!({})).await;
    watcher
        .call_result("thread/resume", json!({"threadId": thread}))
        .await;
    let reply = f
        .client
        .call(
            "thread/name/set",
            json!({"threadId": thread, "name": "  Weather chat "}),
        )
        .await;
    assert_eq!(reply["result"], json!({}));
    let expected = json!({"threadId": thread, "threadName": "Weather chat"});
    assert_eq!(f.client.notification("thread/name/updated").await, expected);
    assert_eq!(watcher.notification("thread/name/updated").await, expected);
    for (name, text) in [
        ("   ", "thread name must not be empty".to_owned()),
        (
            &*"n".repeat(257),
            "thread name must be at most 256 characters".to_owned(),
        ),
    ] {
        let reply = f
            .client
            .call("thread/name/set", json!({"threadId": thread, "name": name}))
            .await;
        assert_eq!(reply["error"], json!({"code": -32600, "message": text}));
    }
    let unknown = "019ad5f0-1c2b-7a3e-9f10-4b5c6d7e8f90";
    for (method, params, text) in [
        (
            "thread/name/set",
            json!({"threadId": unknown, "name": "x"}),
            format!("thread not found: {unknown}"),
        ),
        (
            "thread/archive",
            json!({"threadId": unknown}),
            format!("no rollout found for thread id {unknown}"),
        ),
        (
            "thread/unarchive",
            json!({"threadId": unknown}),
            format!("no rollout found for thread id {unknown}"),
        ),
    ] {
        let reply = f.client.call(method, params).await;
        assert_eq!(
            reply["error"],
            json!({"code": -32600, "message": text}),
            "{method}"
        );
    }
    let mut f = f.restart().await;
    let page = f.client.call_result("thread/list", json!({})).await;
    assert_eq!(page["data"][0]["name"], "Weather chat");
    // A thread not loaded here is renamed in the store; the caller hears of it.
    f.client
        .call_result(
            "thread/name/set",
            json!({"threadId": thread, "name": "Renamed"}),
        )
        .await;
    assert_eq!(
        f.client.notification("thread/name/updated").await["threadName"],
        "Renamed"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The `-c` arguments of a child server pointed at `backend` on `home`.
fn child_args(home: &std::path::Path, backend: &FakeBackend, listen: &str) -> Vec<String> {
    let mut args = vec![
        "--home".to_owned(),
        home.to_str().unwrap().to_owned(),
        "--listen".to_owned(),
        listen.to_owned(),
        "--ws-auth".to_owned(),
        "none".to_owned(),
    ];
    for item in overrides(backend, &[]) {
        args.extend(["-c".to_owned(), item]);
    }
    args
}

async fn spawn(home: &std::path::Path, backend: &FakeBackend, listen: &str) -> (Child, Client) {
    let args = child_args(home, backend, listen);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = Child::spawn(&args, &[]).await;
    let mut client = match child.url.clone() {
        Some(url) => Client::connect(&url, None).await,
        None => Client::over_stdio(&mut child),
    };
    client.initialize().await;
    client.login_external("me@example.com", "acct-1", "A").await;
    (child, client)
}

#[tokio::test]
async fn a_kill_during_a_turn_leaves_it_interrupted_and_the_rest_intact() {
    let backend = FakeBackend::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let (child, mut client) = spawn(home.path(), &backend, "ws://127.0.0.1:0").await;
    let thread = start_thread(&mut client, json!({})).await;
    let first = start_turn(&mut client, &thread, "kept").await;
    until_completed(&mut client).await;
    drop(client);
    let mut killed_turns = Vec::new();
    let mut first_child = Some(child);
    for _ in 0..20 {
        backend.script([Reply::Slow {
            deltas: 100,
            gap: Duration::from_millis(20),
        }]);
        let (mut child, mut client) = match first_child.take() {
            Some(child) => {
                let mut client = Client::connect(child.url.as_deref().unwrap(), None).await;
                client.initialize().await;
                client.login_external("me@example.com", "acct-1", "A").await;
                (child, client)
            }
            None => spawn(home.path(), &backend, "ws://127.0.0.1:0").await,
        };
        let turn = start_turn(&mut client, &thread, "slow").await;
        until_delta(&mut client).await;
        child.process.start_kill().unwrap();
        child.process.wait().await.unwrap();
        killed_turns.push(turn);
    }
    let (_child, mut client) = spawn(home.path(), &backend, "ws://127.0.0.1:0").await;
    let read = client
        .call_result(
            "thread/read",
            json!({"threadId": thread, "includeTurns": true}),
        )
        .await;
    let turns = read["thread"]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 21);
    assert_eq!(
        (&turns[0]["id"], &turns[0]["status"]),
        (&json!(first), &json!("completed"))
    );
    assert_eq!(turns[0]["items"].as_array().unwrap().len(), 3);
    for (turn, killed) in turns[1..].iter().zip(&killed_turns) {
        assert_eq!(
            (&turn["id"], &turn["status"]),
            (&json!(killed), &json!("interrupted"))
        );
        // The user message was committed with the turn; the partial answer never completed.
        assert_eq!(turn["items"].as_array().unwrap().len(), 1);
    }
    start_turn(&mut client, &thread, "after").await;
    until_completed(&mut client).await;
    let history = input(backend.requests().last().unwrap());
    assert_eq!(history[0], user("kept"));
    assert_eq!(&history[3..5], [user("slow"), user(MARKER)]);
    assert_eq!(history.last().unwrap(), &user("after"));
}

#[tokio::test]
async fn processes_on_one_home_share_threads_but_open_each_in_one() {
    let backend = FakeBackend::start().await.unwrap();
    let home = tempfile::tempdir().unwrap();
    let (_ws, mut ws) = spawn(home.path(), &backend, "ws://127.0.0.1:0").await;
    let (mut editor, mut stdio) = spawn(home.path(), &backend, "stdio://").await;
    let (_other, mut second_stdio) = spawn(home.path(), &backend, "stdio://").await;
    let thread = start_thread(&mut ws, json!({})).await;
    start_turn(&mut ws, &thread, "from the app").await;
    until_completed(&mut ws).await;
    for client in [&mut stdio, &mut second_stdio] {
        let page = client.call_result("thread/list", json!({})).await;
        assert_eq!(ids(&page), [thread.as_str()]);
        let read = client
            .call_result(
                "thread/read",
                json!({"threadId": thread, "includeTurns": true}),
            )
            .await;
        assert_eq!(read["thread"]["turns"][0]["status"], "completed");
    }
    let refused = stdio
        .call("thread/resume", json!({"threadId": thread}))
        .await;
    let pid = _ws.process.id().unwrap();
    assert_eq!(
        refused["error"],
        json!({"code": -32600, "message": format!("thread {thread} is open in another authbridge process (pid {pid})")})
    );
    let refused = stdio
        .call(
            "turn/start",
            json!({"threadId": thread, "input": [{"type": "text", "text": "x"}]}),
        )
        .await;
    assert_eq!(refused["error"]["code"], -32600);
    // The app lets go of the thread (its only subscriber leaves): the editor may open it.
    ws.close().await;
    let resumed = eventually_resumed(&mut stdio, &thread).await;
    assert_eq!(resumed["thread"]["turns"][0]["status"], "completed");
    // While the editor has it, the second editor is refused; once the editor is killed, not.
    let refused = second_stdio
        .call("thread/resume", json!({"threadId": thread}))
        .await;
    assert_eq!(refused["error"]["code"], -32600);
    editor.process.start_kill().unwrap();
    editor.process.wait().await.unwrap();
    second_stdio
        .call_result("thread/resume", json!({"threadId": thread}))
        .await;
}

/// `thread/resume` until the thread's previous holder has let go of it (its unload follows its
/// last subscriber's close, asynchronously).
async fn eventually_resumed(client: &mut Client, thread: &str) -> Value {
    for _ in 0..500 {
        let reply = client
            .call("thread/resume", json!({"threadId": thread}))
            .await;
        if let Some(result) = reply.get("result") {
            return result.clone();
        }
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("is open in another authbridge process"),
            "{reply}"
        );
        tokio::task::yield_now().await;
    }
    panic!("the thread was never released");
}

/// Spoils a database file before the server starts.
type Prepare = Box<dyn Fn(&std::path::Path)>;

#[tokio::test]
async fn an_unusable_store_refuses_thread_methods_and_keeps_the_rest() {
    let cases: [(&str, Prepare); 2] = [
        (
            "corrupt",
            Box::new(|path| {
                std::fs::write(path, b"not a database at all, but precious".repeat(64)).unwrap()
            }),
        ),
        ("newer", Box::new(future_database)),
    ];
    for (case, prepare) in cases {
        let backend = FakeBackend::start().await.unwrap();
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("threads.sqlite");
        prepare(&path);
        let before = std::fs::read(&path).unwrap();
        let (_child, mut client) = spawn(home.path(), &backend, "stdio://").await;
        let reply = client.call("thread/list", json!({})).await;
        assert_eq!(reply["error"]["code"], -32603, "{case}");
        let text = reply["error"]["message"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("thread store unavailable: {}: ", path.display())),
            "{case}: {text}"
        );
        if case == "newer" {
            assert!(
                text.ends_with("schema version 99 is newer than this authbridge supports (1)"),
                "{text}"
            );
        }
        let reply = client.call("thread/start", json!({})).await;
        assert_eq!(reply["error"]["message"], text, "{case}");
        let account = client.call_result("account/read", json!({})).await;
        assert_eq!(account["account"]["type"], "chatgpt");
        // Ephemeral threads and their turns still work.
        let thread = start_thread(&mut client, json!({"ephemeral": true})).await;
        start_turn(&mut client, &thread, "hi").await;
        let messages = until_completed(&mut client).await;
        assert_eq!(last_turn(&messages)["status"], "completed");
        assert_eq!(std::fs::read(&path).unwrap(), before, "{case}");
    }
}

/// A database whose schema version is from the future (99).
fn future_database(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE later (x); PRAGMA user_version = 99;")
        .unwrap();
}

#[tokio::test]
async fn no_secret_reaches_the_database() {
    let mut f = Fixture::without_login(&[]).await;
    let access = "sentinel-access-token-0123456789";
    f.client
        .login_external("me@example.com", "acct-1", access)
        .await;
    let thread = f.thread(json!({"dynamicTools": [{"name": "t", "description": "", "inputSchema": {"type": "object"}}]})).await;
    f.turn(&thread, "hello").await;
    f.completed().await;
    f.client.call_result("account/logout", json!({})).await;
    f.client
        .call_result(
            "account/login/start",
            json!({"type": "apiKey", "apiKey": "sk-sentinel-api-key-9876543210"}),
        )
        .await;
    f.turn(&thread, "again").await;
    f.completed().await;
    let home = f.server.home().to_owned();
    let mut stored = Vec::new();
    for name in ["threads.sqlite", "threads.sqlite-wal"] {
        stored.extend(std::fs::read(home.join(name)).unwrap_or_default());
    }
    assert!(contains(&stored, b"hello"), "the turn is stored");
    for secret in [access.as_bytes(), b"sk-sentinel-api-key-9876543210"] {
        assert!(!contains(&stored, secret), "a secret is stored");
    }
}
