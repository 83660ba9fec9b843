//! Which process has a thread open (TURNS §25.3): a lease row naming the holder's instance, valid
//! while that instance's lock is held. Start-up recovery interrupts only the in-progress turns
//! whose process is gone.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Owner, Store, StoreError};

/// Why a thread could not be opened here.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("thread {thread_id} is open in another authbridge process (pid {pid})")]
    Held { thread_id: String, pid: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Opens `thread_id` in this process, unless a live process has it open.
    pub async fn acquire_lease(&self, thread_id: &str) -> Result<(), LeaseError> {
        let id = thread_id.to_owned();
        let held = self
            .write(move |conn, owner| {
                let holder: Option<(String, i64)> = conn
                    .query_row(
                        "SELECT instance, pid FROM leases WHERE thread_id = ?1",
                        [&id],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                if let Some((instance, pid)) = holder
                    && owner.instance.is_alive(&instance)
                    && instance != owner.instance.id()
                {
                    return Ok(Some(pid));
                }
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO leases (thread_id, instance, pid) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![id, owner.instance.id(), std::process::id()])?;
                Ok(None)
            })
            .await?;
        match held {
            Some(pid) => Err(LeaseError::Held {
                thread_id: thread_id.to_owned(),
                pid,
            }),
            None => Ok(()),
        }
    }

    /// Closes `thread_id` in this process.
    pub async fn release_lease(&self, thread_id: &str) -> Result<(), StoreError> {
        self.release_leases(vec![thread_id.to_owned()]).await
    }

    /// Closes every thread of `thread_ids` in this process, in one write.
    pub async fn release_leases(&self, thread_ids: Vec<String>) -> Result<(), StoreError> {
        self.write(move |conn, owner| {
            let mut delete =
                conn.prepare_cached("DELETE FROM leases WHERE thread_id = ?1 AND instance = ?2")?;
            for id in &thread_ids {
                delete.execute(params![id, owner.instance.id()])?;
            }
            Ok(())
        })
        .await
    }

    pub(super) async fn release_all_leases(&self) -> Result<(), StoreError> {
        self.write(|conn, owner| {
            conn.prepare_cached("DELETE FROM leases WHERE instance = ?1")?
                .execute([owner.instance.id()])
                .map(drop)
        })
        .await
    }
}

/// Marks the in-progress turns of stopped processes interrupted and drops their leases; returns
/// how many turns it marked.
pub(super) fn recover(conn: &mut Connection, owner: &Owner<'_>) -> rusqlite::Result<usize> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut instances: Vec<String> = {
        let mut query = tx.prepare(
            "SELECT DISTINCT instance FROM turns WHERE status = 'inProgress' AND instance IS NOT NULL
             UNION SELECT DISTINCT instance FROM leases",
        )?;
        query
            .query_map([], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    instances.retain(|instance| !owner.instance.is_alive(instance));
    let mut marked = 0;
    for instance in &instances {
        marked += tx
            .prepare_cached(
                "UPDATE turns SET status = 'interrupted', instance = NULL
             WHERE status = 'inProgress' AND instance = ?1",
            )?
            .execute([instance])?;
        tx.prepare_cached("DELETE FROM leases WHERE instance = ?1")?
            .execute([instance])?;
    }
    // A turn left without an owner at all cannot be running anywhere.
    marked += tx.prepare_cached("UPDATE turns SET status = 'interrupted' WHERE status = 'inProgress' AND instance IS NULL")?.execute(
        [],
    )?;
    tx.commit()?;
    Ok(marked)
}
