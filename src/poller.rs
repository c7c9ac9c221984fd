//! The poller: runs the [`Scheduler`]'s decisions. It starts polls when the scheduler says
//! so (within the concurrency limit), records each result in the store, metrics and logs,
//! and feeds the outcome back. A target is never polled twice at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ImageSetTarget, PollingConfig};
use crate::events;
use crate::metrics::ExporterMetrics;
use crate::scheduler::{Cadence, Next, Outcome, Scheduler, Settings};
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

/// Longest the loop sleeps, so scheduler gauges (lag) stay fresh for scrapes.
const MAX_SLEEP: Duration = Duration::from_secs(1);

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads one target and records the result (store, metrics, logs); returns what the
/// scheduler needs to know.
pub async fn poll_one(ctx: &PollContext, target: &ImageSetTarget) -> Outcome {
    let key = target.key();
    let started = std::time::Instant::now();
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
            let cadence = match &snapshot.workflow_status {
                Some(s) if s.is_in_progress() => Cadence::InProgress,
                Some(s) if s.is_failed() => Cadence::Failed,
                _ => Cadence::Settled,
            };
            let update = ctx.store.record_success(&key, snapshot, now_epoch());
            // Throttling is logged account-wide by the poller, not per image set.
            if let Some(previous) = update.recovered_from.filter(|k| *k != ErrorKind::Throttled) {
                events::poll_recovered(&key, previous);
            }
            for t in &update.transitions {
                events::transition(&key, version, t, message.as_deref());
            }
            Outcome::Success(cadence)
        }
        Err(error) => {
            ctx.metrics
                .observe_call("GetImageSet", error.outcome(), elapsed);
            let update = ctx.store.record_failure(&key, &error);
            if update.newly_failing && error.kind != ErrorKind::Throttled {
                events::poll_failed(&key, &error, update.last_version.is_some());
            }
            if let (Some(t), Some(version)) = (&update.gone, update.last_version) {
                events::transition(&key, version, t, None);
            }
            match error.kind {
                ErrorKind::Throttled => Outcome::Throttled,
                ErrorKind::NotFound if update.last_version.is_some() => Outcome::Gone,
                _ => Outcome::Failed,
            }
        }
    }
}

/// Minimum time between two throttling log lines.
const THROTTLE_LOG_EVERY: Duration = Duration::from_secs(30);

/// Logs throttling as the account-wide condition it is: when the rate is cut (at most
/// every [`THROTTLE_LOG_EVERY`]) and once when it is back at the budget.
#[derive(Debug, Default)]
struct ThrottleLog {
    last: Option<Instant>,
    unlogged: u64,
    lowered: bool,
}

impl ThrottleLog {
    fn observe(&mut self, outcome: Outcome, before: f64, after: f64, max: f64, now: Instant) {
        if outcome == Outcome::Throttled {
            self.unlogged += 1;
            let due = self
                .last
                .is_none_or(|t| now.saturating_duration_since(t) >= THROTTLE_LOG_EVERY);
            if after < before && due {
                events::throttling(after, max, self.unlogged);
                self.last = Some(now);
                self.unlogged = 0;
                self.lowered = true;
            }
        } else if self.lowered && after >= max {
            events::throttling_over(after);
            self.lowered = false;
        }
    }
}

/// Polls the configured targets under the budget until cancelled.
pub struct Poller {
    ctx: Arc<PollContext>,
    targets: Arc<Vec<ImageSetTarget>>,
    settings: Settings,
    concurrency: usize,
    ready: Arc<AtomicBool>,
    throttle_log: ThrottleLog,
}

impl Poller {
    /// A poller over `targets`; `ready` turns true once every target was polled.
    pub fn new(
        ctx: PollContext,
        targets: Vec<ImageSetTarget>,
        polling: &PollingConfig,
        ready: Arc<AtomicBool>,
    ) -> Self {
        Poller {
            ctx: Arc::new(ctx),
            targets: Arc::new(targets),
            settings: polling.scheduler_settings(),
            concurrency: polling.concurrency,
            ready,
            throttle_log: ThrottleLog::default(),
        }
    }

    fn publish(&self, scheduler: &Scheduler<SmallRng>, now: Instant) {
        let m = &self.ctx.metrics;
        m.scheduler_effective_rate.set(scheduler.effective_rate());
        m.scheduler_queue_lag.set(scheduler.lag(now).as_secs_f64());
        m.scheduler_backoff_targets
            .set(scheduler.backoff_targets() as i64);
    }

    /// Runs until `shutdown` fires; in-flight polls are abandoned then.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let started = Instant::now();
        let mut scheduler = Scheduler::new(
            self.targets.len(),
            self.settings.clone(),
            started,
            SmallRng::from_os_rng(),
        );
        let mut tasks: JoinSet<(usize, Outcome)> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, usize> = HashMap::new();
        let mut announced = false;
        loop {
            let now = Instant::now();
            if !announced && scheduler.first_sweep_done() {
                announced = true;
                self.ready.store(true, Ordering::Release);
                tracing::info!(
                    targets = self.targets.len(),
                    took_seconds = started.elapsed().as_secs_f64(),
                    "first poll round completed"
                );
            }
            self.publish(&scheduler, now);
            let next = if tasks.len() < self.concurrency {
                scheduler.next(now)
            } else {
                Next::Idle
            };
            let wake = match next {
                Next::Poll(i) => {
                    let (ctx, targets) = (self.ctx.clone(), self.targets.clone());
                    let handle = tasks.spawn(async move { (i, poll_one(&ctx, &targets[i]).await) });
                    running.insert(handle.id(), i);
                    continue;
                }
                Next::WaitUntil(at) => at.min(now + MAX_SLEEP),
                Next::Idle => now + MAX_SLEEP,
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (i, outcome) = match joined {
                        Ok((id, done)) => {
                            running.remove(&id);
                            done
                        }
                        Err(e) => {
                            // A poll that panicked still gets rescheduled, as a failure.
                            tracing::error!(error = %e, "poll task failed");
                            let Some(i) = running.remove(&e.id()) else { continue };
                            (i, Outcome::Failed)
                        }
                    };
                    self.completed(&mut scheduler, i, outcome, Instant::now());
                }
            }
        }
        tasks.shutdown().await;
    }

    fn completed(
        &mut self,
        scheduler: &mut Scheduler<SmallRng>,
        i: usize,
        outcome: Outcome,
        now: Instant,
    ) {
        let before = scheduler.effective_rate();
        let dropped = scheduler.complete(i, outcome, now);
        let after = scheduler.effective_rate();
        self.throttle_log.observe(
            outcome,
            before,
            after,
            self.settings.max_requests_per_second,
            now,
        );
        if dropped {
            let key = self.targets[i].key();
            self.ctx.store.forget(&key);
            tracing::info!(
                datastore_id = %key.datastore_id,
                image_set_id = %key.image_set_id,
                retention_seconds = self.settings.gone_retention.as_secs(),
                "image set dropped: gone for longer than polling.gone_retention"
            );
        }
    }
}
