//! Cleans up what users walked away from: pending uploads past their window
//! (plus a grace period, since a POST that started before the deadline may
//! still be running) become `expired`, and their object or multipart upload
//! is removed from storage.
//!
//! Safe with several server instances on one database: an upload is claimed
//! by a compare-and-set from `pending` to `expired` (only one instance wins),
//! and `cleanup_pending` stays set until storage is clean, so a cleanup that
//! failed (store down, instance killed) is retried later instead of lost.

use std::time::Duration;

use upload_core::wire::UploadState;

use crate::AppState;
use crate::db::UploadRow;
use crate::time_util::now_ms;

/// Uploads handled per batch.
const BATCH: u32 = 100;
/// A claimed cleanup not finished after this long is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Uploads this instance marked expired.
    pub expired: u64,
    /// Uploads whose storage was cleaned.
    pub cleaned: u64,
    /// Cleanups that failed and will be retried.
    pub failed: u64,
}

/// One pass: expire uploads more than `grace` past their window and clean their storage.
pub async fn sweep_once(state: &AppState, grace: Duration) -> Result<SweepReport, sqlx::Error> {
    sweep_until(state, now_ms() - grace.as_millis() as i64).await
}

/// One pass over the pending uploads whose window closed before `cutoff_ms`
/// (unix milliseconds); tests pass a time in the future instead of waiting.
pub async fn sweep_until(state: &AppState, cutoff_ms: i64) -> Result<SweepReport, sqlx::Error> {
    let mut report = SweepReport::default();
    let db = state.db();
    loop {
        let overdue = db.overdue_pending(cutoff_ms, BATCH).await?;
        let batch_len = overdue.len();
        for row in overdue {
            if db.claim_expired(&row.id, now_ms()).await? {
                report.expired += 1;
                state.metrics().upload_expired(row.plan.kind());
                clean(state, &row, &mut report).await?;
            }
        }
        if batch_len < BATCH as usize {
            break;
        }
    }
    for row in db.stale_cleanups(now_ms() - RETRY_AFTER.as_millis() as i64, BATCH).await? {
        if db.touch_cleanup(&row.id, now_ms()).await? {
            clean(state, &row, &mut report).await?;
        }
    }
    state.storage().housekeeping().await;
    // Rate limits' buckets that have refilled are as good as none: the
    // table keeps only the owners of the last few seconds.
    state.rate_limiter().forget_full_buckets(db).await?;
    state.metrics().sweep(&report);
    Ok(report)
}

async fn clean(state: &AppState, row: &UploadRow, report: &mut SweepReport) -> Result<(), sqlx::Error> {
    match row.plan.discard(state.storage(), &row.object_key).await {
        Ok(()) => {
            state.db().finish_cleanup(&row.id).await?;
            report.cleaned += 1;
            tracing::info!(id = %row.id, state = UploadState::Expired.as_str(), "abandoned upload cleaned up");
        }
        Err(e) => {
            report.failed += 1;
            tracing::warn!(id = %row.id, error = %e, "cleanup failed; will retry");
        }
    }
    Ok(())
}

/// Sweeps every `interval` until the process ends.
pub async fn run(state: AppState, interval: Duration, grace: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match sweep_once(&state, grace).await {
            Ok(report) if report != SweepReport::default() => tracing::info!(?report, "sweep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
    }
}
