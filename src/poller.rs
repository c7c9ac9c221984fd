//! The poller: reads every target once at start, then once per interval, spread evenly
//! over the interval, with bounded concurrency; rounds never overlap.
//!
//! This is the seam where a budget-aware scheduler will plug in: it decides *when* each
//! target is read; reading and recording are in [`poll_one`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{ImageSetTarget, PollingConfig};
use crate::events;
use crate::metrics::ExporterMetrics;
use crate::source::{ErrorKind, ImageSetSource, SourceError};
use crate::store::Store;

/// Everything one poll needs, shared by all poll tasks.
pub struct PollContext {
    /// Where snapshots come from.
    pub source: Arc<dyn ImageSetSource>,
    /// Where results go.
    pub store: Arc<Store>,
    /// Self-metrics.
    pub metrics: ExporterMetrics,
    /// Outer deadline of one call (the SDK has its own, this is the safety net).
    pub call_timeout: Duration,
}

/// Offsets at which `n` targets start within one round of length `spread`.
pub fn round_offsets(n: usize, spread: Duration) -> impl Iterator<Item = Duration> {
    (0..n).map(move |i| spread.mul_f64(i as f64 / n as f64))
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads one target and records the result: store, metrics, logs.
pub async fn poll_one(ctx: &PollContext, target: &ImageSetTarget) {
    let key = target.key();
    let started = Instant::now();
    let result = tokio::time::timeout(
        ctx.call_timeout,
        ctx.source.get_image_set(key, target.version_id),
    )
    .await
    .unwrap_or_else(|_| {
        Err(SourceError::new(
            ErrorKind::Timeout,
            format!("no answer within {:?}", ctx.call_timeout),
        ))
    });
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(snapshot) => {
            ctx.metrics.observe_call("GetImageSet", "success", elapsed);
            let version = snapshot.version_id;
            let message = snapshot.message.clone();
            let update = ctx.store.record_success(&key, snapshot, now_epoch());
            if let Some(previous) = update.recovered_from {
                events::poll_recovered(&key, previous);
            }
            for t in &update.transitions {
                events::transition(&key, version, t, message.as_deref());
            }
        }
        Err(error) => {
            ctx.metrics
                .observe_call("GetImageSet", error.outcome(), elapsed);
            let update = ctx.store.record_failure(&key, &error);
            if update.newly_failing {
                events::poll_failed(&key, &error, update.last_version.is_some());
            }
            if let (Some(t), Some(version)) = (&update.gone, update.last_version) {
                events::transition(&key, version, t, None);
            }
        }
    }
}

/// Polls the configured targets until cancelled.
pub struct Poller {
    ctx: Arc<PollContext>,
    targets: Arc<Vec<ImageSetTarget>>,
    interval: Duration,
    concurrency: usize,
    ready: Arc<AtomicBool>,
}

impl Poller {
    /// A poller over `targets`; `ready` turns true after the first round.
    pub fn new(
        ctx: PollContext,
        targets: Vec<ImageSetTarget>,
        polling: &PollingConfig,
        ready: Arc<AtomicBool>,
    ) -> Self {
        Poller {
            ctx: Arc::new(ctx),
            targets: Arc::new(targets),
            interval: polling.interval,
            concurrency: polling.concurrency,
            ready,
        }
    }

    /// Runs rounds until `shutdown` fires. The first round reads everything at once (within
    /// the concurrency limit) so readiness comes quickly; later rounds spread out.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut first = true;
        loop {
            let started = tokio::time::Instant::now();
            let spread = if first { Duration::ZERO } else { self.interval };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.round(spread) => {}
            }
            if first {
                first = false;
                self.ready.store(true, Ordering::Release);
                tracing::info!(
                    targets = self.targets.len(),
                    took_seconds = started.elapsed().as_secs_f64(),
                    "first poll round completed"
                );
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(started + self.interval) => {}
            }
        }
    }

    async fn round(&self, spread: Duration) {
        let start = tokio::time::Instant::now();
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut tasks = JoinSet::new();
        for (i, offset) in round_offsets(self.targets.len(), spread).enumerate() {
            tokio::time::sleep_until(start + offset).await;
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let ctx = self.ctx.clone();
            let targets = self.targets.clone();
            tasks.spawn(async move {
                poll_one(&ctx, &targets[i]).await;
                drop(permit);
            });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "poll task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_spread_evenly_over_the_round() {
        let offsets: Vec<_> = round_offsets(4, Duration::from_secs(60)).collect();
        assert_eq!(offsets, [0, 15, 30, 45].map(Duration::from_secs));
        assert!(round_offsets(3, Duration::ZERO).all(|d| d.is_zero()));
        assert_eq!(round_offsets(0, Duration::from_secs(60)).count(), 0);
    }
}
