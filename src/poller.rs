//! The poller: runs the [`Scheduler`]'s decisions. It starts polls and discovery requests
//! when the scheduler grants a token (within the concurrency limit), records each result in
//! the store, metrics and logs, and feeds the outcome back. A target is never polled twice
//! at once; discovered image sets are added as searches list them and woken when a search
//! shows them changed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{DiscoveryRule, ImageSetTarget, PollingConfig, ShardingConfig};
use crate::discovery::{Discovery, Effect, Request, Response};
use crate::events;
use crate::ids::{DatastoreId, ImageSetKey};
use crate::metrics::ExporterMetrics;
use crate::model::{ImageSetSummary, Snapshot, VersionRecord};
use crate::scheduler::{Cadence, Next, Outcome, Priority, Scheduler, Settings, Watch};
use crate::source::{ErrorKind, ImageSetSource, SourceError};
use crate::store::{Store, Sweep};

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
    /// True while calls fail for want of usable credentials (readiness reads it).
    pub credentials_failing: Arc<AtomicBool>,
}

/// Longest the loop sleeps, so scheduler gauges (lag) stay fresh for scrapes.
const MAX_SLEEP: Duration = Duration::from_secs(1);

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs one API call under the outer deadline and counts it in the self-metrics.
async fn timed<T>(
    ctx: &PollContext,
    operation: &'static str,
    call: impl std::future::Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(ctx.call_timeout, call)
        .await
        .unwrap_or_else(|_| {
            Err(SourceError::new(
                ErrorKind::Timeout,
                format!("no answer within {:?}", ctx.call_timeout),
            ))
        });
    let outcome = match &result {
        Ok(_) => {
            if ctx.credentials_failing.swap(false, Ordering::AcqRel) {
                events::credentials_recovered();
            }
            "success"
        }
        Err(e) => {
            // Credentials are account-wide: one line when they go, not one per image set.
            if e.kind == ErrorKind::Credentials
                && !ctx.credentials_failing.swap(true, Ordering::AcqRel)
            {
                events::credentials_failed(e);
            }
            e.outcome()
        }
    };
    ctx.metrics
        .observe_call(operation, outcome, started.elapsed().as_secs_f64());
    result
}

/// What a poll found, as far as the poller cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Polled {
    /// Recorded; the outcome for the scheduler and the image set's `updatedAt`, if read.
    Done(Outcome, Option<f64>),
    /// The version jumped past versions no poll saw: fetch their history before recording.
    NeedsHistory(Box<Snapshot>),
}

/// Reads one target and records the result (store, metrics, logs), unless skipped
/// versions need their history first.
pub async fn poll_one(ctx: &PollContext, target: &ImageSetTarget) -> Polled {
    let key = target.key();
    let result = timed(
        ctx,
        "GetImageSet",
        ctx.source.get_image_set(key, target.version_id),
    )
    .await;
    match result {
        Ok(snapshot) => {
            let skipped = target.version_id.is_none()
                && ctx
                    .store
                    .known_version(&key)
                    .is_some_and(|v| snapshot.version_id.get() > v.get().saturating_add(1));
            if skipped {
                return Polled::NeedsHistory(Box::new(snapshot));
            }
            record(ctx, &key, &[], snapshot)
        }
        Err(error) => {
            let update = ctx.store.record_failure(&key, &error);
            let account_wide = matches!(error.kind, ErrorKind::Throttled | ErrorKind::Credentials);
            if update.newly_failing && !account_wide {
                events::poll_failed(
                    &key,
                    &error,
                    update.last_version.is_some() || update.discovered,
                );
            }
            if let (Some(t), Some(version)) = (&update.gone, update.last_version) {
                events::transition(&key, version, t, None, false, None);
            }
            let outcome = match error.kind {
                ErrorKind::Throttled => Outcome::Throttled,
                // A discovered set that 404s was deleted (even before its first read).
                ErrorKind::NotFound if update.last_version.is_some() || update.discovered => {
                    Outcome::Gone
                }
                _ => Outcome::Failed,
            };
            Polled::Done(outcome, None)
        }
    }
}

/// Fetches the versions between the last known one and `snapshot`'s, then records all of
/// it; returns the poll's result and whether ListImageSetVersions was throttled.
pub async fn backfill_one(
    ctx: &PollContext,
    target: &ImageSetTarget,
    snapshot: Snapshot,
) -> (Polled, bool) {
    let key = target.key();
    let result = timed(
        ctx,
        "ListImageSetVersions",
        ctx.source.list_image_set_versions(key, None),
    )
    .await;
    let throttled = matches!(&result, Err(e) if e.kind == ErrorKind::Throttled);
    let history = match result {
        Ok(page) => {
            let from = ctx.store.known_version(&key).map_or(0, |v| v.get());
            let to = snapshot.version_id.get();
            let found = page
                .items
                .iter()
                .filter(|r| (from + 1..to).contains(&r.version_id.get()))
                .count() as u64;
            if found < to.saturating_sub(from + 1) {
                // One page (50 versions, newest first) is all a backfill spends.
                tracing::warn!(
                    datastore_id = %key.datastore_id,
                    image_set_id = %key.image_set_id,
                    from_version = from,
                    to_version = to,
                    backfilled_versions = found,
                    "backfill incomplete: more skipped versions than one ListImageSetVersions page"
                );
            }
            page.items
        }
        Err(error) => {
            let from = ctx.store.known_version(&key).unwrap_or(snapshot.version_id);
            events::backfill_failed(&key, from, snapshot.version_id, &error);
            Vec::new()
        }
    };
    (record(ctx, &key, &history, snapshot), throttled)
}

fn record(
    ctx: &PollContext,
    key: &ImageSetKey,
    history: &[VersionRecord],
    snapshot: Snapshot,
) -> Polled {
    let version = snapshot.version_id;
    let updated_at = snapshot.updated_at;
    let message = snapshot.message.clone();
    let cadence = match &snapshot.workflow_status {
        Some(s) if s.is_in_progress() => Cadence::InProgress,
        Some(s) if s.is_failed() => Cadence::Failed,
        _ => Cadence::Settled,
    };
    let update = ctx
        .store
        .record_success_after(key, history, snapshot, now_epoch());
    // Throttling and credentials are logged account-wide, not per image set.
    let account_wide = |k: &ErrorKind| matches!(k, ErrorKind::Throttled | ErrorKind::Credentials);
    if let Some(previous) = update.recovered_from.filter(|k| !account_wide(k)) {
        events::poll_recovered(key, previous);
    }
    for b in &update.backfilled {
        events::transition(
            key,
            b.version,
            &b.transition,
            b.message.as_deref(),
            true,
            update.downtime,
        );
    }
    for t in &update.transitions {
        events::transition(key, version, t, message.as_deref(), false, update.downtime);
    }
    Polled::Done(Outcome::Success(cadence), updated_at)
}

/// Runs one discovery request.
async fn discover(ctx: &PollContext, request: Request) -> Response {
    let op = request.operation();
    let source = &ctx.source;
    match request {
        Request::ListDatastores { next_token } => {
            Response::Datastores(timed(ctx, op, source.list_datastores(next_token)).await)
        }
        Request::GetDatastore(id) => {
            Response::Datastore(id, timed(ctx, op, source.get_datastore(id)).await)
        }
        Request::Search {
            datastore,
            sweep,
            query,
            next_token,
        } => Response::Search {
            datastore,
            sweep,
            result: timed(
                ctx,
                op,
                source.search_image_sets(datastore, query, next_token),
            )
            .await,
        },
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

/// One watched image set as the poller tracks it (indexed like the scheduler's targets).
#[derive(Debug, Clone)]
struct Tracked {
    target: ImageSetTarget,
    /// The newest `updatedAt` seen by a search or a poll: a search listing it with a newer
    /// one means it changed.
    updated_at: f64,
    /// Generation of the last full listing that listed it (0: none).
    listed: u32,
    discovered: bool,
}

/// What a finished task produced.
enum Done {
    Poll(usize, Polled),
    Backfill(usize, Polled, bool),
    Discovery(Response),
}

/// What a running task is doing, to recover if it panics.
enum Running {
    Poll(usize),
    Discovery(Request),
}

/// Polls the configured and discovered image sets under the budget until cancelled.
pub struct Poller {
    ctx: Arc<PollContext>,
    tracked: Vec<Tracked>,
    index: HashMap<ImageSetKey, usize>,
    initial: usize,
    settings: Settings,
    concurrency: usize,
    ready: Arc<AtomicBool>,
    throttle_log: ThrottleLog,
    discovery: Discovery,
    sharding: ShardingConfig,
    backfills: VecDeque<(usize, Box<Snapshot>)>,
}

impl Poller {
    /// A poller over `targets` and the datastores `rules` discover; `ready` turns true
    /// once every configured target was polled and every datastore listed once.
    pub fn new(
        ctx: PollContext,
        targets: Vec<ImageSetTarget>,
        restored: Vec<ImageSetKey>,
        rules: Vec<DiscoveryRule>,
        polling: &PollingConfig,
        sharding: ShardingConfig,
        ready: Arc<AtomicBool>,
    ) -> Self {
        let initial = targets.len();
        let mut tracked: Vec<Tracked> = targets
            .into_iter()
            .map(|target| Tracked {
                target,
                updated_at: f64::NEG_INFINITY,
                listed: 0,
                discovered: false,
            })
            .collect();
        // Discovered image sets already in the store (from the state file, or kept over a
        // reload): watched at once, with the updatedAt last seen so that listing them again
        // does not count as a change.
        {
            let state = ctx.store.read();
            tracked.extend(restored.into_iter().map(|key| {
                let entry = state.entries.get(&key);
                let updated_at = entry
                    .and_then(|e| {
                        e.snapshot
                            .as_ref()
                            .and_then(|s| s.updated_at)
                            .or(e.listed.as_ref().and_then(|l| l.updated_at))
                    })
                    .unwrap_or(f64::NEG_INFINITY);
                Tracked {
                    target: ImageSetTarget {
                        datastore_id: key.datastore_id,
                        image_set_id: key.image_set_id,
                        version_id: None,
                    },
                    updated_at,
                    listed: 0,
                    discovered: true,
                }
            }));
        }
        let index = tracked
            .iter()
            .enumerate()
            .map(|(i, t)| (t.target.key(), i))
            .collect();
        Poller {
            ctx: Arc::new(ctx),
            initial,
            tracked,
            index,
            settings: polling.scheduler_settings(),
            concurrency: polling.concurrency,
            ready,
            throttle_log: ThrottleLog::default(),
            discovery: Discovery::new(rules, Instant::now()),
            sharding,
            backfills: VecDeque::new(),
        }
    }

    fn publish(&self, scheduler: &Scheduler<SmallRng>, now: Instant) {
        let m = &self.ctx.metrics;
        m.scheduler_effective_rate.set(scheduler.effective_rate());
        m.scheduler_queue_lag.set(scheduler.lag(now).as_secs_f64());
        m.scheduler_backoff_targets
            .set(scheduler.backoff_targets() as i64);
    }

    /// Runs until `shutdown` fires; in-flight calls are abandoned then.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let started = Instant::now();
        let mut scheduler = Scheduler::new(
            self.initial,
            self.settings.clone(),
            started,
            SmallRng::from_os_rng(),
        );
        {
            let state = self.ctx.store.read();
            for tracked in &self.tracked[self.initial..] {
                // Restored sets are read once (changes while down), as are unread and
                // running ones; settled sets kept over a reload were read before and wait
                // for a change.
                let read_now = state.entries.get(&tracked.target.key()).is_some_and(|e| {
                    let in_progress = e.snapshot.as_ref().is_some_and(|s| {
                        s.workflow_status
                            .as_ref()
                            .is_some_and(|w| w.is_in_progress())
                    });
                    e.restored || e.snapshot.is_none() || in_progress
                });
                if read_now {
                    scheduler.add(Watch::OnChange, started);
                } else {
                    scheduler.add_parked(started);
                }
            }
        }
        let mut tasks: JoinSet<Done> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, Running> = HashMap::new();
        let mut announced = false;
        // Both live across iterations: every completion runs the loop once, and a fresh
        // timer and cancellation waiter each time cost more than the decision itself.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let sleep = tokio::time::sleep_until(started);
        tokio::pin!(sleep);
        loop {
            let now = Instant::now();
            if !announced && scheduler.first_sweep_done() && self.discovery.initial_done() {
                announced = true;
                self.ready.store(true, Ordering::Release);
                tracing::info!(
                    targets = self.tracked.len(),
                    took_seconds = started.elapsed().as_secs_f64(),
                    "first poll round completed"
                );
            }
            self.publish(&scheduler, now);
            let next = if tasks.len() < self.concurrency {
                let mut jobs = self.discovery.pending(now);
                jobs.high |= !self.backfills.is_empty();
                scheduler.next_with_jobs(now, jobs)
            } else {
                Next::Idle
            };
            let wake = match next {
                Next::Poll(i) => {
                    let ctx = self.ctx.clone();
                    let target = self.tracked[i].target.clone();
                    let handle =
                        tasks.spawn(async move { Done::Poll(i, poll_one(&ctx, &target).await) });
                    running.insert(handle.id(), Running::Poll(i));
                    continue;
                }
                Next::Job(priority) => {
                    if priority == Priority::High {
                        if let Some((i, snapshot)) = self.backfills.pop_front() {
                            let ctx = self.ctx.clone();
                            let target = self.tracked[i].target.clone();
                            let handle = tasks.spawn(async move {
                                let (polled, throttled) =
                                    backfill_one(&ctx, &target, *snapshot).await;
                                Done::Backfill(i, polled, throttled)
                            });
                            running.insert(handle.id(), Running::Poll(i));
                            continue;
                        }
                    }
                    if let Some(request) = self.discovery.take(priority, now, now_epoch()) {
                        let ctx = self.ctx.clone();
                        let sent = request.clone();
                        let handle =
                            tasks.spawn(async move { Done::Discovery(discover(&ctx, sent).await) });
                        running.insert(handle.id(), Running::Discovery(request));
                    }
                    continue;
                }
                Next::WaitUntil(at) => at.min(now + MAX_SLEEP),
                Next::Idle => now + MAX_SLEEP,
            };
            sleep.as_mut().reset(wake);
            tokio::select! {
                _ = &mut cancelled => break,
                _ = &mut sleep => {}
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let done = match joined {
                        Ok((id, done)) => {
                            running.remove(&id);
                            done
                        }
                        Err(e) => {
                            // A task that panicked is still accounted for, as a failure.
                            tracing::error!(error = %e, "poll task failed");
                            match running.remove(&e.id()) {
                                Some(Running::Poll(i)) => Done::Poll(i, Polled::Done(Outcome::Failed, None)),
                                Some(Running::Discovery(request)) => {
                                    Done::Discovery(failed_response(request, &e.to_string()))
                                }
                                None => continue,
                            }
                        }
                    };
                    self.finished(&mut scheduler, done, Instant::now());
                }
            }
        }
        tasks.shutdown().await;
    }

    fn finished(&mut self, scheduler: &mut Scheduler<SmallRng>, done: Done, now: Instant) {
        match done {
            Done::Poll(i, Polled::NeedsHistory(snapshot)) => {
                self.backfills.push_back((i, snapshot));
            }
            Done::Poll(i, Polled::Done(outcome, updated_at)) => {
                self.completed(scheduler, i, outcome, updated_at, now)
            }
            Done::Backfill(i, polled, throttled) => {
                scheduler.job_completed(throttled, now);
                let (outcome, updated_at) = match polled {
                    Polled::Done(outcome, updated_at) => (outcome, updated_at),
                    Polled::NeedsHistory(_) => (Outcome::Failed, None),
                };
                self.completed(scheduler, i, outcome, updated_at, now)
            }
            Done::Discovery(response) => {
                let throttled = response_throttled(&response);
                let before = scheduler.effective_rate();
                scheduler.job_completed(throttled, now);
                let outcome = if throttled {
                    Outcome::Throttled
                } else {
                    Outcome::Success(Cadence::Settled)
                };
                self.throttle_log.observe(
                    outcome,
                    before,
                    scheduler.effective_rate(),
                    self.settings.max_requests_per_second,
                    now,
                );
                for effect in self.discovery.on_response(response, now) {
                    self.apply(scheduler, effect, now);
                }
            }
        }
    }

    fn completed(
        &mut self,
        scheduler: &mut Scheduler<SmallRng>,
        i: usize,
        outcome: Outcome,
        updated_at: Option<f64>,
        now: Instant,
    ) {
        if let (Some(u), Some(t)) = (updated_at, self.tracked.get_mut(i)) {
            t.updated_at = t.updated_at.max(u);
        }
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
            let key = self.tracked[i].target.key();
            self.index.remove(&key);
            self.ctx.store.forget(&key);
            tracing::info!(
                datastore_id = %key.datastore_id,
                image_set_id = %key.image_set_id,
                retention_seconds = self.settings.gone_retention.as_secs(),
                "image set dropped: gone for longer than polling.gone_retention"
            );
        }
    }

    /// Carries out one discovery effect on the store and the scheduler.
    fn apply(&mut self, scheduler: &mut Scheduler<SmallRng>, effect: Effect, now: Instant) {
        match effect {
            Effect::Datastore(d) => self.ctx.store.record_datastore(d),
            Effect::Found {
                datastore,
                sweep,
                generation,
                items,
            } => {
                for item in items {
                    self.found(scheduler, datastore, sweep, generation, item, now);
                }
            }
            Effect::FullListingDone {
                datastore,
                generation,
            } => {
                self.ctx
                    .store
                    .record_sweep(datastore, Sweep::Full, now_epoch());
                let mut listed = 0usize;
                let mut unlisted = 0usize;
                for (i, t) in self.tracked.iter().enumerate() {
                    let key = t.target.key();
                    let live = self.index.get(&key) == Some(&i);
                    if !t.discovered || key.datastore_id != datastore || !live {
                        continue;
                    }
                    if t.listed == generation {
                        listed += 1;
                    } else {
                        // Not listed any more: a poll tells deleted from moved.
                        unlisted += 1;
                        scheduler.wake(i);
                    }
                }
                tracing::info!(
                    datastore_id = %datastore,
                    image_sets = listed,
                    unlisted,
                    "datastore listed in full"
                );
            }
            Effect::ChangesDone { datastore } => {
                self.ctx
                    .store
                    .record_sweep(datastore, Sweep::Changes, now_epoch());
            }
            Effect::Vanished(datastore) => self.ctx.store.forget_datastore(datastore, true),
            Effect::Watching(watched) => {
                self.forget_discovered(scheduler, |ds| !watched.contains(&ds));
            }
            Effect::Unwatched(datastore) => {
                self.ctx.store.forget_datastore(datastore, false);
                self.forget_discovered(scheduler, |ds| ds == datastore);
            }
            Effect::Failed {
                datastore,
                operation,
                error,
            } => events::discovery_failed(datastore, operation, &error),
            Effect::Recovered {
                datastore,
                operation,
            } => events::discovery_recovered(datastore, operation),
        }
    }

    /// Stops watching the discovered image sets of datastores `unwatched` says (filtered
    /// out, no longer ACTIVE, or no rule covers them any more): their series go at once.
    fn forget_discovered(
        &mut self,
        scheduler: &mut Scheduler<SmallRng>,
        unwatched: impl Fn(DatastoreId) -> bool,
    ) {
        let mut forgotten = BTreeMap::<DatastoreId, usize>::new();
        for (i, t) in self.tracked.iter().enumerate() {
            let key = t.target.key();
            if t.discovered && unwatched(key.datastore_id) && self.index.get(&key) == Some(&i) {
                scheduler.drop_target(i);
                self.index.remove(&key);
                self.ctx.store.forget(&key);
                *forgotten.entry(key.datastore_id).or_default() += 1;
            }
        }
        for (datastore, image_sets) in forgotten {
            tracing::info!(
                datastore_id = %datastore,
                image_sets,
                "datastore no longer watched: its discovered image sets are forgotten"
            );
        }
    }

    /// One image set listed by a search: new ones are added, changed ones woken.
    fn found(
        &mut self,
        scheduler: &mut Scheduler<SmallRng>,
        datastore: DatastoreId,
        sweep: Sweep,
        generation: u32,
        item: ImageSetSummary,
        now: Instant,
    ) {
        if !self.sharding.owns(&item.image_set_id) {
            return;
        }
        let key = ImageSetKey {
            datastore_id: datastore,
            image_set_id: item.image_set_id,
        };
        let updated_at = item.updated_at.unwrap_or(f64::NEG_INFINITY);
        let listed = if sweep == Sweep::Full { generation } else { 0 };
        match self.index.get(&key) {
            Some(&i) => {
                let t = &mut self.tracked[i];
                if sweep == Sweep::Full {
                    t.listed = generation;
                }
                if updated_at > t.updated_at {
                    t.updated_at = updated_at;
                    self.ctx.store.record_listed(datastore, item);
                    scheduler.wake(i);
                }
            }
            None => {
                let i = scheduler.add(Watch::OnChange, now);
                debug_assert_eq!(i, self.tracked.len());
                self.tracked.push(Tracked {
                    target: ImageSetTarget {
                        datastore_id: datastore,
                        image_set_id: item.image_set_id,
                        version_id: None,
                    },
                    updated_at,
                    listed,
                    discovered: true,
                });
                self.index.insert(key, i);
                self.ctx.store.record_listed(datastore, item);
                if sweep == Sweep::Changes {
                    scheduler.wake(i);
                }
            }
        }
    }
}

/// Whether a discovery call was throttled (the budget slows down for everyone).
fn response_throttled(response: &Response) -> bool {
    let kind = match response {
        Response::Datastores(r) => r.as_ref().err().map(|e| e.kind),
        Response::Datastore(_, r) => r.as_ref().err().map(|e| e.kind),
        Response::Search { result, .. } => result.as_ref().err().map(|e| e.kind),
    };
    kind == Some(ErrorKind::Throttled)
}

/// The response a request gets when its task died.
fn failed_response(request: Request, why: &str) -> Response {
    let error = || SourceError::new(ErrorKind::Unexpected, why.to_string());
    match request {
        Request::ListDatastores { .. } => Response::Datastores(Err(error())),
        Request::GetDatastore(id) => Response::Datastore(id, Err(error())),
        Request::Search {
            datastore, sweep, ..
        } => Response::Search {
            datastore,
            sweep,
            result: Err(error()),
        },
    }
}
