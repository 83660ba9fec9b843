//! The store's reads and writes, each atomic (TURNS §25.2): a thread at `thread/start`,
//! a turn with its user message at turn start, each completed item with its replay items, the
//! turn's end with the thread's totals; plus settings, names, archiving, and reading back.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::records::{StoredThread, ThreadHeader, ThreadSettings, TurnRecord};
use super::{Store, StoreError};
use crate::protocol::{ThreadItem, TokenUsageBreakdown, TurnStatus};

/// The columns [`header_from`] reads, in order.
pub(super) const HEADER_COLUMNS: &str = "id, created_at_ms, updated_at_ms, archived, name, preview, model, effort, summary, base_instructions, developer_instructions, tools, usage";

/// How a turn start changes its thread.
#[derive(Clone, Debug)]
pub struct TurnStart {
    pub thread_id: String,
    pub updated_at_ms: i64,
    pub preview: String,
    pub settings: ThreadSettings,
    /// The turn with its first user message (item and replay).
    pub turn: TurnRecord,
}

impl Store {
    /// `thread/start` of a stored thread: its row, and its lease for this process (nobody else
    /// can hold a thread that did not exist).
    pub async fn create_thread(&self, header: &ThreadHeader) -> Result<(), StoreError> {
        let header = header.clone();
        self.write(move |conn, owner| {
            conn.prepare_cached("INSERT INTO threads (id, created_at_ms, updated_at_ms, archived, name, preview, model, effort, summary,
                 base_instructions, developer_instructions, tools, usage)
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")?.execute(
                params![
                    header.id,
                    header.created_at_ms,
                    header.updated_at_ms,
                    header.name,
                    header.preview,
                    header.settings.model,
                    text_of(&header.settings.effort),
                    text_of(&header.settings.summary),
                    header.settings.base_instructions,
                    header.settings.developer_instructions,
                    json_of(&header.settings.tools),
                    json_of(&header.usage_total),
                ],
            )?;
            conn.prepare_cached("INSERT INTO leases (thread_id, instance, pid) VALUES (?1, ?2, ?3)")?
                .execute(params![header.id, owner.instance.id(), std::process::id()])?;
            Ok(())
        })
        .await
    }

    /// A turn starts: its row (in progress, owned by this process), its first items, and the
    /// thread's new time, preview and sticky settings.
    pub async fn begin_turn(&self, start: &TurnStart) -> Result<(), StoreError> {
        let start = start.clone();
        self.write(move |conn, owner| {
            update_settings(conn, &start.thread_id, &start.settings)?;
            conn.prepare_cached("UPDATE threads SET updated_at_ms = ?2, preview = ?3 WHERE id = ?1")?.execute(
                params![start.thread_id, start.updated_at_ms, start.preview],
            )?;
            let turn = &start.turn;
            conn.prepare_cached("INSERT INTO turns (id, thread_id, seq, status, started_at_ms, instance)
                 VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), -1) + 1 FROM turns WHERE thread_id = ?2), ?3, ?4, ?5)")?.execute(
                params![
                    turn.id,
                    start.thread_id,
                    text_of(&turn.status),
                    turn.started_at_ms,
                    owner.instance.id()
                ],
            )?;
            insert_items(conn, &turn.id, 0, &turn.items)?;
            insert_replay(conn, &turn.id, 0, &turn.replay)?;
            Ok(())
        })
        .await
    }

    /// A completed item (number `item_seq` of its turn) with the replay items it adds from
    /// `replay_seq` on; also used for steering messages, function calls and tool outputs.
    pub async fn add_items(
        &self,
        turn_id: &str,
        item_seq: usize,
        items: Vec<ThreadItem>,
        replay_seq: usize,
        replay: Vec<Value>,
    ) -> Result<(), StoreError> {
        let turn_id = turn_id.to_owned();
        self.write(move |conn, _| {
            insert_items(conn, &turn_id, item_seq, &items)?;
            insert_replay(conn, &turn_id, replay_seq, &replay)?;
            Ok(())
        })
        .await
    }

    /// Drops the replay items an abandoned stream attempt added (from `len` on).
    pub async fn truncate_replay(&self, turn_id: &str, len: usize) -> Result<(), StoreError> {
        let turn_id = turn_id.to_owned();
        self.write(move |conn, _| {
            conn.prepare_cached("DELETE FROM replay WHERE turn_id = ?1 AND seq >= ?2")?
                .execute(params![turn_id, len as i64])
                .map(drop)
        })
        .await
    }

    /// The turn ends: its status, error and time, and the thread's time and token totals.
    pub async fn finish_turn(
        &self,
        thread_id: &str,
        turn: &TurnRecord,
        updated_at_ms: i64,
        usage_total: TokenUsageBreakdown,
    ) -> Result<(), StoreError> {
        let (thread_id, turn) = (thread_id.to_owned(), turn.clone());
        self.write(move |conn, _| {
            conn.prepare_cached("UPDATE turns SET status = ?2, error = ?3, completed_at_ms = ?4, instance = NULL WHERE id = ?1")?.execute(
                params![
                    turn.id,
                    text_of(&turn.status),
                    turn.error.as_ref().map(json_of),
                    turn.completed_at_ms
                ],
            )?;
            conn.prepare_cached("UPDATE threads SET updated_at_ms = ?2, usage = ?3 WHERE id = ?1")?.execute(
                params![thread_id, updated_at_ms, json_of(&usage_total)],
            )?;
            Ok(())
        })
        .await
    }

    /// `thread/resume` overrides for later turns.
    pub async fn save_settings(
        &self,
        thread_id: &str,
        settings: &ThreadSettings,
    ) -> Result<(), StoreError> {
        let (thread_id, settings) = (thread_id.to_owned(), settings.clone());
        self.write(move |conn, _| update_settings(conn, &thread_id, &settings))
            .await
    }

    /// `thread/name/set`; false if there is no such thread.
    pub async fn set_name(
        &self,
        thread_id: &str,
        name: &str,
        updated_at_ms: i64,
    ) -> Result<bool, StoreError> {
        let (thread_id, name) = (thread_id.to_owned(), name.to_owned());
        self.write(move |conn, _| {
            conn.prepare_cached("UPDATE threads SET name = ?2, updated_at_ms = ?3 WHERE id = ?1")?
                .execute(params![thread_id, name, updated_at_ms])
                .map(|changed| changed > 0)
        })
        .await
    }

    /// Archives or unarchives; sets `updated_at_ms` if given. The header after, if the thread exists.
    pub async fn set_archived(
        &self,
        thread_id: &str,
        archived: bool,
        updated_at_ms: Option<i64>,
    ) -> Result<Option<ThreadHeader>, StoreError> {
        let thread_id = thread_id.to_owned();
        self.write(move |conn, _| {
            conn.prepare_cached("UPDATE threads SET archived = ?2, updated_at_ms = COALESCE(?3, updated_at_ms) WHERE id = ?1")?.execute(
                params![thread_id, archived, updated_at_ms],
            )?;
            let header = header(conn, &thread_id)?;
            Ok(header)
        })
        .await
    }

    /// A stored thread, with its turns if asked.
    pub async fn load(
        &self,
        thread_id: &str,
        with_turns: bool,
    ) -> Result<Option<StoredThread>, StoreError> {
        let thread_id = thread_id.to_owned();
        self.read(move |conn, _| {
            let tx = conn.unchecked_transaction()?;
            let Some(header) = header(&tx, &thread_id)? else {
                return Ok(None);
            };
            let turns = if with_turns {
                turns(&tx, &thread_id)?
            } else {
                Vec::new()
            };
            Ok(Some(StoredThread { header, turns }))
        })
        .await
    }
}

fn update_settings(
    conn: &Connection,
    thread_id: &str,
    settings: &ThreadSettings,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE threads SET model = ?2, effort = ?3, summary = ?4, base_instructions = ?5,
         developer_instructions = ?6, tools = ?7 WHERE id = ?1",
    )?
    .execute(params![
        thread_id,
        settings.model,
        text_of(&settings.effort),
        text_of(&settings.summary),
        settings.base_instructions,
        settings.developer_instructions,
        json_of(&settings.tools),
    ])
    .map(drop)
}

fn insert_items(
    conn: &Connection,
    turn_id: &str,
    from: usize,
    items: &[ThreadItem],
) -> rusqlite::Result<()> {
    let mut insert =
        conn.prepare_cached("INSERT INTO items (turn_id, seq, item) VALUES (?1, ?2, ?3)")?;
    for (offset, item) in items.iter().enumerate() {
        insert.execute(params![turn_id, (from + offset) as i64, json_of(item)])?;
    }
    Ok(())
}

fn insert_replay(
    conn: &Connection,
    turn_id: &str,
    from: usize,
    replay: &[Value],
) -> rusqlite::Result<()> {
    let mut insert = conn
        .prepare_cached("INSERT OR REPLACE INTO replay (turn_id, seq, item) VALUES (?1, ?2, ?3)")?;
    for (offset, item) in replay.iter().enumerate() {
        insert.execute(params![turn_id, (from + offset) as i64, item.to_string()])?;
    }
    Ok(())
}

pub(super) fn header(conn: &Connection, thread_id: &str) -> rusqlite::Result<Option<ThreadHeader>> {
    conn.query_row(
        &format!("SELECT {HEADER_COLUMNS} FROM threads WHERE id = ?1"),
        [thread_id],
        header_from,
    )
    .optional()
}

/// A header from a row of [`HEADER_COLUMNS`].
pub(super) fn header_from(row: &Row<'_>) -> rusqlite::Result<ThreadHeader> {
    Ok(ThreadHeader {
        id: row.get(0)?,
        created_at_ms: row.get(1)?,
        updated_at_ms: row.get(2)?,
        archived: row.get(3)?,
        name: row.get(4)?,
        preview: row.get(5)?,
        settings: ThreadSettings {
            model: row.get(6)?,
            effort: parse_text(row, 7)?,
            summary: parse_text(row, 8)?,
            base_instructions: row.get(9)?,
            developer_instructions: row.get(10)?,
            ephemeral: false,
            tools: parse_json(row, 11)?,
        },
        usage_total: parse_json::<Option<TokenUsageBreakdown>>(row, 12)?.unwrap_or_default(),
    })
}

fn turns(conn: &Connection, thread_id: &str) -> rusqlite::Result<Vec<TurnRecord>> {
    let mut query = conn.prepare(
        "SELECT id, status, error, started_at_ms, completed_at_ms FROM turns WHERE thread_id = ?1 ORDER BY seq",
    )?;
    let mut turns: Vec<TurnRecord> = query
        .query_map([thread_id], |row| {
            Ok(TurnRecord {
                id: row.get(0)?,
                status: parse_text::<TurnStatus>(row, 1)?.unwrap_or(TurnStatus::Interrupted),
                error: parse_json(row, 2)?,
                started_at_ms: row.get(3)?,
                completed_at_ms: row.get(4)?,
                items: Vec::new(),
                replay: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let position = |turns: &[TurnRecord], id: &str| turns.iter().position(|turn| turn.id == id);
    let mut items = conn.prepare(
        "SELECT i.turn_id, i.item FROM items i JOIN turns t ON t.id = i.turn_id
         WHERE t.thread_id = ?1 ORDER BY t.seq, i.seq",
    )?;
    let mut rows = items.query([thread_id])?;
    while let Some(row) = rows.next()? {
        let turn_id: String = row.get(0)?;
        let item: ThreadItem = parse_json(row, 1)?;
        if let Some(index) = position(&turns, &turn_id) {
            turns[index].items.push(item);
        }
    }
    let mut replay = conn.prepare(
        "SELECT r.turn_id, r.item FROM replay r JOIN turns t ON t.id = r.turn_id
         WHERE t.thread_id = ?1 ORDER BY t.seq, r.seq",
    )?;
    let mut rows = replay.query([thread_id])?;
    while let Some(row) = rows.next()? {
        let turn_id: String = row.get(0)?;
        let item: Value = parse_json(row, 1)?;
        if let Some(index) = position(&turns, &turn_id) {
            turns[index].replay.push(item);
        }
    }
    Ok(turns)
}

/// A unit enum (status, effort, summary) as its JSON string, for a text column.
fn text_of<T: Serialize>(value: &T) -> Option<String> {
    match serde_json::to_value(value) {
        Ok(Value::String(text)) => Some(text),
        _ => None,
    }
}

fn json_of<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("stored values serialize")
}

fn parse_text<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(index)?;
    text.map(|text| {
        serde_json::from_value(Value::String(text)).map_err(|err| bad_column(index, err))
    })
    .transpose()
}

fn parse_json<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: Option<String> = row.get(index)?;
    serde_json::from_str(text.as_deref().unwrap_or("null")).map_err(|err| bad_column(index, err))
}

fn bad_column(index: usize, err: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, Box::new(err))
}
