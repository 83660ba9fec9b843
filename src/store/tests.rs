//! The store on real files: round trips, paging, leases and recovery across instances, and the
//! files it must never touch or leave inconsistent.

use serde_json::json;

use super::ops::TurnStart;
use super::*;
use crate::protocol::{ThreadItem, TokenUsageBreakdown, TurnStatus, UserInput};

fn settings() -> ThreadSettings {
    ThreadSettings {
        model: "gpt-5.2".into(),
        effort: None,
        summary: None,
        base_instructions: Some("B".into()),
        developer_instructions: None,
        ephemeral: false,
        tools: Vec::new(),
    }
}

fn header(id: &str, at: i64) -> ThreadHeader {
    ThreadHeader {
        id: id.into(),
        created_at_ms: at,
        updated_at_ms: at,
        archived: false,
        name: None,
        preview: String::new(),
        settings: settings(),
        usage_total: TokenUsageBreakdown::default(),
    }
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn user_item(text: &str) -> ThreadItem {
    ThreadItem::UserMessage {
        id: id(),
        content: vec![UserInput::Text {
            text: text.into(),
            text_elements: Vec::new(),
        }],
        started_at_ms: Some(1),
        completed_at_ms: Some(1),
    }
}

async fn thread_with_turn(store: &Store) -> (String, TurnRecord) {
    let thread = id();
    store.create_thread(&header(&thread, 100)).await.unwrap();
    let mut turn = TurnRecord::new(id(), 100_000);
    turn.items.push(user_item("hi"));
    turn.replay.push(json!({"type": "message", "role": "user"}));
    store
        .begin_turn(&TurnStart {
            thread_id: thread.clone(),
            updated_at_ms: 100,
            preview: "hi".into(),
            settings: settings(),
            turn: turn.clone(),
        })
        .await
        .unwrap();
    (thread, turn)
}

#[tokio::test]
async fn a_thread_reads_back_as_written() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let (thread, mut turn) = thread_with_turn(&store).await;
    let answer = ThreadItem::AgentMessage {
        id: "msg_1".into(),
        text: "Hello.".into(),
        started_at_ms: Some(2),
        completed_at_ms: Some(3),
    };
    store
        .add_items(&turn.id, 1, vec![answer.clone()], 1, vec![json!({"n": 1})])
        .await
        .unwrap();
    turn.items.push(answer);
    turn.replay.push(json!({"n": 1}));
    turn.finish(TurnStatus::Completed, None, 101_000);
    let usage = TokenUsageBreakdown {
        total_tokens: 5,
        ..Default::default()
    };
    store.finish_turn(&thread, &turn, 101, usage).await.unwrap();
    let stored = store.load(&thread, true).await.unwrap().unwrap();
    assert_eq!(stored.turns, vec![turn]);
    assert_eq!(stored.header.preview, "hi");
    assert_eq!(stored.header.updated_at_ms, 101);
    assert_eq!(stored.header.usage_total, usage);
    assert_eq!(stored.header.settings, settings());
    assert!(store.load(&id(), false).await.unwrap().is_none());
}

#[tokio::test]
async fn an_abandoned_attempt_leaves_no_replay() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let (thread, turn) = thread_with_turn(&store).await;
    store
        .add_items(&turn.id, 1, Vec::new(), 1, vec![json!({"partial": true})])
        .await
        .unwrap();
    store.truncate_replay(&turn.id, 1).await.unwrap();
    let stored = store.load(&thread, true).await.unwrap().unwrap();
    assert_eq!(stored.turns[0].replay, turn.replay);
}

#[tokio::test]
async fn pages_cover_every_thread_once_newest_first() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let mut ids = Vec::new();
    for n in 0..7 {
        let thread = id();
        // Pairs share a time: ties go by id, descending.
        store
            .create_thread(&header(&thread, 100 + n / 2))
            .await
            .unwrap();
        ids.push(thread);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list(ListQuery {
                archived: false,
                by_created: false,
                limit: 3,
                cursor: cursor.take(),
            })
            .await
            .unwrap()
            .unwrap();
        seen.extend(page.threads.into_iter().map(|t| t.id));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);
    let foreign = store
        .list(ListQuery {
            archived: false,
            by_created: false,
            limit: 3,
            cursor: Some("bm9wZQ".into()),
        })
        .await
        .unwrap();
    assert!(foreign.is_err());
}

#[tokio::test]
async fn a_lease_held_by_a_live_process_refuses_and_lapses_with_it() {
    let home = tempfile::tempdir().unwrap();
    let first = Store::open(home.path()).unwrap();
    let second = Store::open(home.path()).unwrap();
    let thread = id();
    first.create_thread(&header(&thread, 1)).await.unwrap();
    first.acquire_lease(&thread).await.unwrap();
    first.acquire_lease(&thread).await.unwrap();
    let refused = second.acquire_lease(&thread).await.unwrap_err();
    assert_eq!(
        refused.to_string(),
        format!(
            "thread {thread} is open in another authbridge process (pid {})",
            std::process::id()
        )
    );
    first.release_lease(&thread).await.unwrap();
    second.acquire_lease(&thread).await.unwrap();
    // A holder that goes away without releasing (a crash) does not hold it either.
    drop(first);
    let third = Store::open(home.path()).unwrap();
    assert!(third.acquire_lease(&thread).await.is_err());
    drop(second);
    third.acquire_lease(&thread).await.unwrap();
}

#[tokio::test]
async fn many_leases_release_in_one_write_and_the_cache_can_be_given_back() {
    let home = tempfile::tempdir().unwrap();
    let first = Store::open(home.path()).unwrap();
    let second = Store::open(home.path()).unwrap();
    let threads: Vec<String> = (0..3).map(|_| id()).collect();
    for thread in &threads {
        first.create_thread(&header(thread, 1)).await.unwrap();
        first.acquire_lease(thread).await.unwrap();
    }
    first.release_leases(threads[..2].to_vec()).await.unwrap();
    first.release_memory().await.unwrap();
    second.acquire_lease(&threads[0]).await.unwrap();
    second.acquire_lease(&threads[1]).await.unwrap();
    assert!(second.acquire_lease(&threads[2]).await.is_err());
    // The store reads what it gave back again from the file.
    assert!(first.load(&threads[2], true).await.unwrap().is_some());
}

#[tokio::test]
async fn recovery_interrupts_only_the_turns_of_stopped_processes() {
    let home = tempfile::tempdir().unwrap();
    let running = Store::open(home.path()).unwrap();
    let crashed = Store::open(home.path()).unwrap();
    let (live_thread, _) = thread_with_turn(&running).await;
    let (dead_thread, _) = thread_with_turn(&crashed).await;
    drop(crashed);
    let restarted = Store::open(home.path()).unwrap();
    let status = |stored: Option<StoredThread>| stored.unwrap().turns[0].status;
    assert_eq!(
        status(restarted.load(&live_thread, true).await.unwrap()),
        TurnStatus::InProgress
    );
    assert_eq!(
        status(restarted.load(&dead_thread, true).await.unwrap()),
        TurnStatus::Interrupted
    );
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join(FILE_NAME);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = Store::open(home.path()).err().unwrap();
    assert_eq!(
        error.to_string(),
        format!(
            "thread store unavailable: {}: schema version 99 is newer than this authbridge supports ({})",
            path.display(),
            schema::CURRENT_VERSION
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert!(!home.path().join("threads.sqlite-wal").exists());
}

#[test]
fn a_corrupt_file_is_refused_and_left_untouched() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join(FILE_NAME);
    let garbage = b"this is not a database, just some bytes that must survive".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    let error = Store::open(home.path()).err().unwrap().to_string();
    assert!(
        error.starts_with(&format!("thread store unavailable: {}: ", path.display())),
        "{error}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), garbage);
}

#[tokio::test]
async fn a_full_disk_fails_the_write_and_keeps_the_file_consistent() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let (thread, turn) = thread_with_turn(&store).await;
    store.fill_up_for_tests();
    let big = ThreadItem::AgentMessage {
        id: "msg_big".into(),
        text: "x".repeat(1 << 20),
        started_at_ms: None,
        completed_at_ms: None,
    };
    let error = store
        .add_items(&turn.id, 1, vec![big], 1, vec![json!("x".repeat(1 << 20))])
        .await
        .unwrap_err();
    assert!(error.detail().contains("full"), "{error}");
    let stored = store.load(&thread, true).await.unwrap().unwrap();
    assert_eq!(stored.turns[0].items, turn.items);
    assert_eq!(stored.turns[0].replay, turn.replay);
}

#[test]
fn the_file_and_its_companions_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let _store = Store::open(home.path()).unwrap();
    for name in [FILE_NAME, "threads.sqlite-wal", "threads.sqlite-shm"] {
        let mode = std::fs::metadata(home.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[tokio::test]
async fn writes_asked_for_together_stand_alone_when_one_fails() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let taken = uuid::Uuid::now_v7().to_string();
    store.create_thread(&header(&taken, 1)).await.unwrap();
    // Queued at once, these share transactions; the duplicate fails alone.
    let ids: Vec<String> = (0..20).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let mut writes: Vec<_> = ids
        .iter()
        .map(|id| {
            let store = store.clone();
            let header = header(id, 2);
            tokio::spawn(async move { store.create_thread(&header).await })
        })
        .collect();
    let duplicate = {
        let store = store.clone();
        let header = header(&taken, 3);
        tokio::spawn(async move { store.create_thread(&header).await })
    };
    writes.insert(10, duplicate);
    let outcomes: Vec<_> = futures::future::join_all(writes).await;
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let outcome = outcome.unwrap();
        if index == 10 {
            let err = outcome.unwrap_err().to_string();
            assert!(err.contains("UNIQUE constraint failed"), "{err}");
        } else {
            outcome.unwrap();
        }
    }
    let page = store
        .list(ListQuery {
            archived: false,
            by_created: false,
            limit: 100,
            cursor: None,
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.threads.len(), 21);
    let kept = store.load(&taken, false).await.unwrap().unwrap();
    assert_eq!(kept.header.updated_at_ms, header(&taken, 1).updated_at_ms);
}

#[tokio::test]
async fn checkpoints_run_on_their_own_thread_and_reach_the_database_file() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let auto: i64 = store
        .read(|conn, _| conn.query_row("PRAGMA wal_autocheckpoint", [], |row| row.get(0)))
        .await
        .unwrap();
    assert_eq!(auto, 0, "no write runs a checkpoint itself");
    // One commit each (every write is awaited before the next is asked for).
    for at in 0..checkpoint::COMMITS_PER_CHECKPOINT {
        store
            .create_thread(&header(&id(), at as i64))
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), store.wait_for_checkpoints(1))
        .await
        .expect("a checkpoint after that many commits");
    // The database file alone, without its log, now holds the threads.
    assert!(database_file_holds(
        home.path(),
        checkpoint::COMMITS_PER_CHECKPOINT
    ));
}

/// Whether the database file alone, without its log, holds `threads` threads.
fn database_file_holds(home: &Path, threads: usize) -> bool {
    let copy = tempfile::tempdir().unwrap();
    let copied = copy.path().join(FILE_NAME);
    std::fs::copy(home.join(FILE_NAME), &copied).unwrap();
    let conn = Connection::open(&copied).unwrap();
    let count: usize = conn
        .query_row("SELECT count(*) FROM threads", [], |row| row.get(0))
        .unwrap();
    count == threads
}

#[tokio::test]
async fn a_quiet_store_checkpoints_what_it_wrote() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    for at in 0..3 {
        store.create_thread(&header(&id(), at)).await.unwrap();
    }
    // Far fewer commits than a checkpoint waits for, then nothing.
    tokio::time::timeout(Duration::from_secs(10), store.wait_for_checkpoints(1))
        .await
        .expect("a checkpoint once the store is quiet");
    assert!(database_file_holds(home.path(), 3));
}

#[tokio::test]
async fn a_quiet_checkpoint_empties_the_log_file() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let wal = home.path().join(format!("{FILE_NAME}-wal"));
    // A reader on an old snapshot (another process's, say) keeps every checkpoint from
    // finishing, so the log grows past 4 MiB.
    let reader = Connection::open(home.path().join(FILE_NAME)).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM threads", [], |row| row.get(0))
        .unwrap();
    let mut written = 0;
    while std::fs::metadata(&wal).unwrap().len() <= 6 * 1024 * 1024 {
        let mut thread = header(&id(), written);
        thread.preview = "x".repeat(64 * 1024);
        store.create_thread(&thread).await.unwrap();
        written += 1;
    }
    reader.execute_batch("COMMIT").unwrap();
    let checkpoints = *store.inner.checkpoints.borrow();
    tokio::time::timeout(
        Duration::from_secs(10),
        store.wait_for_checkpoints(checkpoints + 1),
    )
    .await
    .expect("a checkpoint once the store is quiet");
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
    assert!(database_file_holds(home.path(), written as usize));
}

#[tokio::test]
async fn under_steady_writes_the_log_still_starts_over() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let wal = home.path().join(format!("{FILE_NAME}-wal"));
    // Never quiet: each write follows the last at once, so every checkpoint overlaps writes.
    // 2 000 commits of 16 KiB make a log of about 100 MiB unless it starts over.
    for at in 0..2000 {
        let mut thread = header(&id(), at);
        thread.preview = "x".repeat(16 * 1024);
        store.create_thread(&thread).await.unwrap();
    }
    // At the first commit past the limit, the store's thread waits for the checkpoint thread's
    // checkpoint, if one is running, and checkpoints everything; the log then starts over and
    // its file is reused from the start. So the file never holds more than the limit and one
    // commit, however slow the disk's fsync (the log reached 25 MB on a slow machine when the
    // two checkpoints did not wait for each other).
    let size = std::fs::metadata(&wal).unwrap().len();
    let bound = checkpoint::WAL_LIMIT_BYTES as u64 + 1024 * 1024;
    assert!(size <= bound, "the log file grew to {size} bytes");
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn the_store_thread_is_a_batch_thread() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    // Runs on the store's thread: once it answers, the thread has set its policy.
    let tid = store
        // SAFETY: gettid takes no arguments.
        .read(|_, _| Ok(unsafe { libc::gettid() }))
        .await
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the parenthesised name: state is field 3, the scheduling policy field 41.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(fields[41 - 3], libc::SCHED_BATCH.to_string(), "{stat}");
}
