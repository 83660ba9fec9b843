//! `thread/list` over the store (TURNS §17.4): newest first by the chosen time, ties by id
//! descending, paged by an opaque cursor that names the last row's (time, id). Keyset paging
//! never repeats or skips a row that did not move, however the table changes between pages.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::params;

use super::ops::{HEADER_COLUMNS, header_from};
use super::records::ThreadHeader;
use super::{Store, StoreError};

/// One page's request.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub archived: bool,
    pub by_created: bool,
    pub limit: usize,
    /// The cursor the previous page returned.
    pub cursor: Option<String>,
}

/// One page.
#[derive(Clone, Debug)]
pub struct ListPage {
    pub threads: Vec<ThreadHeader>,
    pub next_cursor: Option<String>,
}

/// A cursor this store did not issue.
#[derive(Debug)]
pub struct InvalidCursor;

impl Store {
    /// A page of stored threads; `Ok(Err(InvalidCursor))` for a foreign cursor.
    pub async fn list(
        &self,
        query: ListQuery,
    ) -> Result<Result<ListPage, InvalidCursor>, StoreError> {
        let after = match query.cursor.as_deref().map(decode) {
            None => None,
            Some(Some(after)) => Some(after),
            Some(None) => return Ok(Err(InvalidCursor)),
        };
        self.read(move |conn, _| {
            let key = if query.by_created {
                "created_at_ms"
            } else {
                "updated_at_ms"
            };
            // The first page starts after a row no thread can have. A row-value comparison lets
            // the (archived, time, id) index seek straight to the cursor, however deep.
            let (time, id) = after.unwrap_or((i64::MAX, String::new()));
            let sql = format!(
                "SELECT {HEADER_COLUMNS} FROM threads
                 WHERE archived = ?1 AND ({key}, id) < (?2, ?3)
                 ORDER BY {key} DESC, id DESC LIMIT ?4"
            );
            let mut statement = conn.prepare_cached(&sql)?;
            let mut threads: Vec<ThreadHeader> = statement
                .query_map(
                    params![query.archived, time, id, query.limit as i64 + 1],
                    header_from,
                )?
                .collect::<rusqlite::Result<_>>()?;
            let next_cursor = if threads.len() > query.limit {
                threads.truncate(query.limit);
                threads.last().map(|last| {
                    let time = if query.by_created {
                        last.created_at_ms
                    } else {
                        last.updated_at_ms
                    };
                    encode(time, &last.id)
                })
            } else {
                None
            };
            Ok(Ok(ListPage {
                threads,
                next_cursor,
            }))
        })
        .await
    }
}

fn encode(time: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{time}|{id}"))
}

fn decode(cursor: &str) -> Option<(i64, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let (time, id) = text.split_once('|')?;
    uuid::Uuid::parse_str(id).ok()?;
    Some((time.parse().ok()?, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_are_refused() {
        let id = uuid::Uuid::now_v7().to_string();
        assert_eq!(decode(&encode(1764576003, &id)), Some((1764576003, id)));
        assert_eq!(decode("nope"), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode("12|not-a-uuid")), None);
        assert_eq!(
            decode(&URL_SAFE_NO_PAD.encode("x|019ad5f0-1c2b-7a3e-9f10-4b5c6d7e8f90")),
            None
        );
    }
}
