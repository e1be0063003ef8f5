//! The WAL checkpointer, a task beside the writer, so that creates never
//! wait on a checkpoint's fsync (the writer itself never checkpoints).

use std::time::Duration;

use sqlx::SqlitePool;

/// How often the WAL is copied back into the database.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// WAL frames (pages) past which the checkpointer makes the writer start the
/// WAL over (16 MiB of 4 KiB pages).
pub(super) const WAL_RESTART_FRAMES: i64 = 4096;

/// The checkpointer task. Every [`CHECKPOINT_EVERY`], a PASSIVE checkpoint:
/// it copies what no reader still needs and never blocks the writer. But
/// the WAL only starts over when a write begins with every frame copied,
/// which a busy writer never lets happen, so once it holds more than
/// [`WAL_RESTART_FRAMES`] a RESTART checkpoint waits for the writer's current
/// transaction, copies the few frames the passive ones left, and has the
/// next write start the file over. Ends with the last handle on the database.
pub(super) async fn checkpoint_wal(pool: SqlitePool, database_in_use: impl Fn() -> bool + Send) {
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !database_in_use() {
            pool.close().await;
            return;
        }
        // (busy, frames in the WAL, frames copied)
        let passive: Result<(i64, i64, i64), _> =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&pool).await;
        let frames = match passive {
            Ok((_, frames, _)) => frames,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; will try again");
                continue;
            }
        };
        if frames > WAL_RESTART_FRAMES
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&pool).await
        {
            // Busy now and then is expected (a long read); only a WAL that
            // keeps growing is worth a warning.
            if frames > 16 * WAL_RESTART_FRAMES {
                tracing::warn!(frames, error = %e, "the WAL keeps growing: its restart keeps timing out");
            } else {
                tracing::debug!(frames, error = %e, "WAL restart timed out; will try again");
            }
        }
    }
}
