//! The database's tables and their versions (TURNS §25.1): `PRAGMA user_version` says which
//! migrations ran; each runs once, in order, in one transaction at start. A file from a newer
//! authbridge is left untouched.

use rusqlite::{Connection, TransactionBehavior};

/// Each migration's SQL; version `n` is `MIGRATIONS[n - 1]`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE threads (
    id TEXT PRIMARY KEY NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    name TEXT,
    preview TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL,
    effort TEXT,
    summary TEXT,
    base_instructions TEXT,
    developer_instructions TEXT,
    tools TEXT NOT NULL DEFAULT '[]',
    usage TEXT NOT NULL DEFAULT 'null'
) STRICT;
CREATE INDEX threads_by_updated ON threads (archived, updated_at_ms DESC, id DESC);
CREATE INDEX threads_by_created ON threads (archived, created_at_ms DESC, id DESC);

CREATE TABLE turns (
    id TEXT PRIMARY KEY NOT NULL,
    thread_id TEXT NOT NULL REFERENCES threads (id),
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    started_at_ms INTEGER NOT NULL,
    completed_at_ms INTEGER,
    -- The process running it while it is in progress (its instance lock, §25.3).
    instance TEXT
) STRICT;
CREATE UNIQUE INDEX turns_by_thread ON turns (thread_id, seq);
CREATE INDEX turns_in_progress ON turns (instance) WHERE status = 'inProgress';

-- Completed ThreadItems, as JSON.
CREATE TABLE items (
    turn_id TEXT NOT NULL REFERENCES turns (id),
    seq INTEGER NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (turn_id, seq)
) STRICT, WITHOUT ROWID;

-- What replays each turn to the backend (TURNS §20.4), as JSON input items.
CREATE TABLE replay (
    turn_id TEXT NOT NULL REFERENCES turns (id),
    seq INTEGER NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (turn_id, seq)
) STRICT, WITHOUT ROWID;

-- Which process has a thread open (TURNS §25.3).
CREATE TABLE leases (
    thread_id TEXT PRIMARY KEY NOT NULL,
    instance TEXT NOT NULL,
    pid INTEGER NOT NULL
) STRICT;
"#];

/// The newest schema this binary knows.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why the schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema version {found} is newer than this authbridge supports ({supported})")]
    Newer { found: i64, supported: i64 },
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

pub fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Refuses a newer schema before anything is written.
pub fn check_not_newer(conn: &Connection) -> Result<(), SchemaError> {
    let found = version(conn)?;
    if found > CURRENT_VERSION {
        return Err(SchemaError::Newer {
            found,
            supported: CURRENT_VERSION,
        });
    }
    Ok(())
}

/// Brings the schema up to date in one transaction (another process may be doing the same: the
/// version is read again under the write lock).
pub fn migrate(conn: &mut Connection) -> Result<(), SchemaError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = version(&tx)?;
    if found > CURRENT_VERSION {
        return Err(SchemaError::Newer {
            found,
            supported: CURRENT_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}
