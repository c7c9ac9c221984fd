//! Scheduling decisions under an API budget, as pure logic over a supplied clock.
//!
//! Who is polled next, and when: two due-time queues (in-progress image sets first), a
//! token bucket at the effective rate, AIMD on throttling (halve, then recover linearly),
//! per-target exponential backoff on errors, and removal of vanished image sets after a
//! retention period. The poller drives it; nothing here does I/O or reads the clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// Budget and cadence settings (from `[polling]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Cadence of settled image sets.
    pub interval: Duration,
    /// Cadence of image sets with a workflow in progress.
    pub in_progress_interval: Duration,
    /// Cadence of image sets in a failed status.
    pub failed_interval: Duration,
    /// Budget: sustained calls per second.
    pub max_requests_per_second: f64,
    /// Budget: calls that may go at once after a quiet period.
    pub burst: u32,
    /// Random spread of every delay, as a fraction (0.1 = ±10 %).
    pub jitter: f64,
    /// Longest per-target backoff after repeated errors.
    pub max_backoff: Duration,
    /// How long a vanished image set stays exported before it is dropped.
    pub gone_retention: Duration,
}

/// How often an image set should be read, from its last known status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Settled: `interval`.
    Settled,
    /// A workflow is running: `in_progress_interval`, and ahead of settled ones.
    InProgress,
    /// A workflow failed: `failed_interval`.
    Failed,
}

/// The result of one poll, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Read; the next cadence follows from the status.
    Success(Cadence),
    /// ThrottlingException: slow everyone down, do not punish the target.
    Throttled,
    /// Any other error: back off this target exponentially.
    Failed,
    /// 404 after the image set had been seen: keep it for `gone_retention`, then drop.
    Gone,
}

/// What the poller should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Poll this target (index into the target list).
    Poll(usize),
    /// Nothing may happen before this instant.
    WaitUntil(Instant),
    /// Every target is in flight or dropped.
    Idle,
}

/// Token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            tokens: burst,
            burst,
            rate,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
    }

    /// Takes a token, or says when one will be there.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(now + Duration::from_secs_f64(wait.max(0.001)))
        }
    }

    /// Changes the refill rate from `now` on.
    pub fn set_rate(&mut self, rate: f64, now: Instant) {
        self.refill(now);
        self.rate = rate;
    }

    /// Drops saved-up tokens so a throttled client does not burst straight back in.
    pub fn drain_to_one(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = self.tokens.min(1.0);
    }
}

/// Additive-increase, multiplicative-decrease control of the request rate.
#[derive(Debug, Clone)]
pub struct Aimd {
    max: f64,
    min: f64,
    current: f64,
    last_decrease: Option<Instant>,
    updated: Instant,
}

/// Throttles closer together than this count as one congestion signal.
pub const DECREASE_COOLDOWN: Duration = Duration::from_secs(1);
/// Share of the maximum rate regained per second without throttling.
pub const RECOVERY_PER_SECOND: f64 = 0.05;

impl Aimd {
    /// Starts at `max`; never goes below `max / 20`.
    pub fn new(max: f64, now: Instant) -> Self {
        Aimd {
            max,
            min: (max / 20.0).max(0.01),
            current: max,
            last_decrease: None,
            updated: now,
        }
    }

    /// The allowed rate now.
    pub fn rate(&self) -> f64 {
        self.current
    }

    /// A throttle: halve the rate, at most once per [`DECREASE_COOLDOWN`]. True if it cut.
    pub fn on_throttle(&mut self, now: Instant) -> bool {
        self.updated = now;
        if self
            .last_decrease
            .is_some_and(|t| now.saturating_duration_since(t) < DECREASE_COOLDOWN)
        {
            return false;
        }
        self.last_decrease = Some(now);
        self.current = (self.current / 2.0).max(self.min);
        true
    }

    /// A call that was not throttled: regain rate in proportion to the time passed.
    pub fn on_success(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.current = (self.current + self.max * RECOVERY_PER_SECOND * elapsed).min(self.max);
        self.updated = now;
    }
}

/// Exponential backoff: `base`, `2 base`, `4 base`, ... capped at `cap`.
pub fn backoff(failures: u32, base: Duration, cap: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(cap)
}

#[derive(Debug, Clone)]
struct Target {
    cadence: Cadence,
    failures: u32,
    gone_since: Option<Instant>,
    polled_once: bool,
    dropped: bool,
}

/// The scheduler's state: queues, limiter, rate control and per-target history.
pub struct Scheduler<R> {
    settings: Settings,
    targets: Vec<Target>,
    urgent: BinaryHeap<Reverse<(Instant, usize)>>,
    normal: BinaryHeap<Reverse<(Instant, usize)>>,
    bucket: TokenBucket,
    aimd: Aimd,
    rng: R,
    unpolled: usize,
    in_backoff: usize,
}

impl<R: Rng> Scheduler<R> {
    /// `n` targets, all due at `now`: the limiter spreads the first sweep at the budget.
    pub fn new(n: usize, settings: Settings, now: Instant, rng: R) -> Self {
        let bucket = TokenBucket::new(settings.max_requests_per_second, settings.burst, now);
        let aimd = Aimd::new(settings.max_requests_per_second, now);
        Scheduler {
            targets: vec![
                Target {
                    cadence: Cadence::Settled,
                    failures: 0,
                    gone_since: None,
                    polled_once: false,
                    dropped: false,
                };
                n
            ],
            urgent: BinaryHeap::new(),
            normal: (0..n).map(|i| Reverse((now, i))).collect(),
            settings,
            bucket,
            aimd,
            rng,
            unpolled: n,
            in_backoff: 0,
        }
    }

    /// Decides the next step at `now`.
    pub fn next(&mut self, now: Instant) -> Next {
        let head =
            |q: &BinaryHeap<Reverse<(Instant, usize)>>| q.peek().map(|Reverse((due, _))| *due);
        let (urgent, normal) = (head(&self.urgent), head(&self.normal));
        let queue = match (urgent, normal) {
            (Some(u), _) if u <= now => &mut self.urgent,
            (_, Some(n)) if n <= now => &mut self.normal,
            (None, None) => return Next::Idle,
            (u, n) => {
                let earliest = u.into_iter().chain(n).min().unwrap_or(now);
                return Next::WaitUntil(earliest);
            }
        };
        if let Err(when) = self.bucket.take(now) {
            return Next::WaitUntil(when);
        }
        match queue.pop() {
            Some(Reverse((_, i))) => Next::Poll(i),
            None => Next::Idle,
        }
    }

    fn jittered(&mut self, d: Duration) -> Duration {
        let j = self.settings.jitter;
        if j <= 0.0 {
            return d;
        }
        d.mul_f64(1.0 + self.rng.random_range(-j..=j))
    }

    /// Records a finished poll of target `i`; returns true when the target is dropped
    /// (gone for longer than `gone_retention`) and must be forgotten.
    pub fn complete(&mut self, i: usize, outcome: Outcome, now: Instant) -> bool {
        let Some(target) = self.targets.get_mut(i) else {
            return false;
        };
        if !target.polled_once {
            target.polled_once = true;
            self.unpolled -= 1;
        }
        let was_backing_off = target.failures > 0;
        let s = &self.settings;
        let delay = match outcome {
            Outcome::Success(cadence) => {
                target.cadence = cadence;
                target.failures = 0;
                target.gone_since = None;
                self.aimd.on_success(now);
                match cadence {
                    Cadence::Settled => s.interval,
                    Cadence::InProgress => s.in_progress_interval,
                    Cadence::Failed => s.failed_interval,
                }
            }
            Outcome::Throttled => {
                if self.aimd.on_throttle(now) {
                    self.bucket.drain_to_one(now);
                }
                match target.cadence {
                    Cadence::InProgress => s.in_progress_interval,
                    _ => s.interval.min(s.failed_interval),
                }
            }
            Outcome::Failed | Outcome::Gone => {
                self.aimd.on_success(now);
                target.failures = target.failures.saturating_add(1);
                if outcome == Outcome::Gone {
                    let since = *target.gone_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= s.gone_retention {
                        target.dropped = true;
                        if was_backing_off {
                            self.in_backoff -= 1;
                        }
                        return true;
                    }
                }
                backoff(target.failures, s.in_progress_interval, s.max_backoff)
            }
        };
        match (was_backing_off, target.failures > 0) {
            (false, true) => self.in_backoff += 1,
            (true, false) => self.in_backoff -= 1,
            _ => {}
        }
        self.bucket.set_rate(self.aimd.rate(), now);
        let urgent = target.cadence == Cadence::InProgress && target.failures == 0;
        let due = now + self.jittered(delay);
        if urgent {
            self.urgent.push(Reverse((due, i)));
        } else {
            self.normal.push(Reverse((due, i)));
        }
        false
    }

    /// The request rate currently allowed (req/s).
    pub fn effective_rate(&self) -> f64 {
        self.aimd.rate()
    }

    /// How overdue the most overdue queued target is.
    pub fn lag(&self, now: Instant) -> Duration {
        self.urgent
            .peek()
            .into_iter()
            .chain(self.normal.peek())
            .map(|Reverse((due, _))| now.saturating_duration_since(*due))
            .max()
            .unwrap_or_default()
    }

    /// Targets in error backoff.
    pub fn backoff_targets(&self) -> usize {
        self.targets
            .iter()
            .filter(|t| t.failures > 0 && !t.dropped)
            .count()
    }

    /// True once every target has been polled at least once.
    pub fn first_sweep_done(&self) -> bool {
        self.unpolled == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn settings() -> Settings {
        Settings {
            interval: Duration::from_secs(60),
            in_progress_interval: Duration::from_secs(10),
            failed_interval: Duration::from_secs(60),
            max_requests_per_second: 5.0,
            burst: 5,
            jitter: 0.0,
            max_backoff: Duration::from_secs(300),
            gone_retention: Duration::from_secs(3600),
        }
    }

    fn scheduler(n: usize, s: Settings) -> Scheduler<SmallRng> {
        Scheduler::new(n, s, Instant::now(), SmallRng::seed_from_u64(7))
    }

    /// Runs the scheduler for `length` of paused time, completing each poll at once with
    /// `outcome(target, now)`; returns (time since start, target) of every poll.
    async fn drive(
        s: &mut Scheduler<SmallRng>,
        length: Duration,
        mut outcome: impl FnMut(usize, Instant) -> Outcome,
    ) -> Vec<(Duration, usize)> {
        let start = Instant::now();
        let mut polls = Vec::new();
        while start.elapsed() < length {
            match s.next(Instant::now()) {
                Next::Poll(i) => {
                    polls.push((start.elapsed(), i));
                    let now = Instant::now();
                    s.complete(i, outcome(i, now), now);
                }
                Next::WaitUntil(t) => {
                    tokio::time::advance(t.saturating_duration_since(Instant::now())).await
                }
                Next::Idle => break,
            }
        }
        polls
    }

    fn max_in_window(polls: &[(Duration, usize)], window: Duration) -> usize {
        let times: Vec<_> = polls.iter().map(|p| p.0).collect();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t < times[i] + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_rate_plus_burst_in_any_window() {
        let mut s = scheduler(
            1000,
            Settings {
                max_requests_per_second: 20.0,
                burst: 10,
                ..settings()
            },
        );
        let polls = drive(&mut s, Duration::from_secs(120), |_, _| {
            Outcome::Success(Cadence::Settled)
        })
        .await;
        for secs in [1u64, 5, 30] {
            let limit = (20 * secs + 10) as usize;
            let seen = max_in_window(&polls, Duration::from_secs(secs));
            assert!(seen <= limit, "{seen} calls in {secs}s > {limit}");
        }
        // Demand (1000 / 60 s = 16.7/s) is below the budget: the first sweep takes ~50 s,
        // after which each target is read once per interval.
        assert!(s.first_sweep_done());
        assert!(s.lag(Instant::now()) < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn settled_targets_are_read_once_per_interval_and_spread() {
        let mut s = scheduler(
            60,
            Settings {
                max_requests_per_second: 100.0,
                burst: 100,
                jitter: 0.1,
                ..settings()
            },
        );
        let polls = drive(&mut s, Duration::from_secs(600), |_, _| {
            Outcome::Success(Cadence::Settled)
        })
        .await;
        for target in 0..60 {
            let times: Vec<_> = polls
                .iter()
                .filter(|p| p.1 == target)
                .map(|p| p.0.as_secs_f64())
                .collect();
            assert!(
                (10..=11).contains(&times.len()),
                "target {target}: {} polls",
                times.len()
            );
            for gap in times.windows(2).map(|w| w[1] - w[0]) {
                assert!(
                    (54.0..=66.0).contains(&gap),
                    "gap {gap}s outside 60 s ± 10 %"
                );
            }
        }
        // Jitter spreads the initial burst: in steady state no second sees more than a few.
        let steady: Vec<_> = polls
            .iter()
            .filter(|p| p.0 > Duration::from_secs(300))
            .cloned()
            .collect();
        assert!(
            max_in_window(&steady, Duration::from_secs(1)) <= 12,
            "thundering herd"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn in_progress_targets_are_read_faster_and_first_when_overloaded() {
        // 600 settled targets want 10/s from a 5/s budget; target 0 is importing.
        let mut s = scheduler(600, settings());
        let polls = drive(&mut s, Duration::from_secs(300), |i, _| {
            Outcome::Success(if i == 0 {
                Cadence::InProgress
            } else {
                Cadence::Settled
            })
        })
        .await;
        let importing: Vec<_> = polls
            .iter()
            .filter(|p| p.1 == 0)
            .map(|p| p.0.as_secs_f64())
            .collect();
        let gaps: Vec<_> = importing.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g <= 10.5), "in-progress gaps {gaps:?}");
        assert!(importing.len() >= 28);
        assert!(
            s.lag(Instant::now()) > Duration::from_secs(30),
            "overload shows as lag"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_the_rate_and_it_recovers_linearly() {
        let mut s = scheduler(
            100,
            Settings {
                max_requests_per_second: 20.0,
                burst: 20,
                interval: Duration::from_secs(5),
                ..settings()
            },
        );
        let start = Instant::now();
        let storm = Duration::from_secs(30)..Duration::from_secs(60);
        let mut i = 0u32;
        let polls = drive(&mut s, Duration::from_secs(120), |_, now| {
            i += 1;
            if storm.contains(&now.duration_since(start)) && i.is_multiple_of(2) {
                Outcome::Throttled
            } else {
                Outcome::Success(Cadence::Settled)
            }
        })
        .await;
        let rate = |from: u64, to: u64| {
            polls
                .iter()
                .filter(|p| p.0 >= Duration::from_secs(from) && p.0 < Duration::from_secs(to))
                .count() as f64
                / (to - from) as f64
        };
        assert!(rate(10, 30) > 18.0, "full budget before: {}", rate(10, 30));
        assert!(rate(35, 60) < 5.0, "cut within seconds: {}", rate(35, 60));
        assert!(rate(100, 120) > 18.0, "recovered after: {}", rate(100, 120));
    }

    #[test]
    fn aimd_cuts_once_per_cooldown_and_respects_bounds() {
        let t0 = Instant::now();
        let mut a = Aimd::new(20.0, t0);
        assert!(a.on_throttle(t0));
        assert!(
            !a.on_throttle(t0 + Duration::from_millis(500)),
            "one cut per burst of throttles"
        );
        assert_eq!(a.rate(), 10.0);
        for k in 1..20 {
            a.on_throttle(t0 + Duration::from_secs(k));
        }
        assert_eq!(a.rate(), 1.0, "floor at max / 20");
        a.on_success(t0 + Duration::from_secs(29));
        assert!(
            (a.rate() - 11.0).abs() < 1e-9,
            "10 s regain 5 %/s of 20: {}",
            a.rate()
        );
        a.on_success(t0 + Duration::from_secs(100));
        assert_eq!(a.rate(), 20.0, "ceiling at max");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let base = Duration::from_secs(10);
        let cap = Duration::from_secs(300);
        let delays: Vec<_> = (1..=7).map(|n| backoff(n, base, cap).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX, base, cap), cap);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_back_off_per_target_and_reset_on_success() {
        let mut s = scheduler(
            2,
            Settings {
                max_requests_per_second: 100.0,
                burst: 100,
                ..settings()
            },
        );
        let start = Instant::now();
        let polls = drive(&mut s, Duration::from_secs(900), |i, now| {
            if i == 0 && now.duration_since(start) < Duration::from_secs(600) {
                Outcome::Failed
            } else {
                Outcome::Success(Cadence::Settled)
            }
        })
        .await;
        let failing: Vec<_> = polls
            .iter()
            .filter(|p| p.1 == 0)
            .map(|p| p.0.as_secs())
            .collect();
        assert_eq!(
            &failing[..7],
            &[0, 10, 30, 70, 150, 310, 610],
            "doubling, capped at 300 s"
        );
        assert_eq!(failing[7], 670, "back to the interval after a success");
        assert_eq!(s.backoff_targets(), 0);
    }

    #[test]
    fn backoff_count_follows_failures_successes_and_drops() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(
            3,
            Settings {
                gone_retention: Duration::ZERO,
                ..settings()
            },
            t0,
            SmallRng::seed_from_u64(1),
        );
        s.complete(0, Outcome::Failed, t0);
        s.complete(1, Outcome::Failed, t0);
        s.complete(1, Outcome::Failed, t0);
        s.complete(2, Outcome::Throttled, t0);
        assert_eq!(
            s.backoff_targets(),
            2,
            "throttling is no per-target backoff"
        );
        s.complete(0, Outcome::Success(Cadence::Settled), t0);
        assert_eq!(s.backoff_targets(), 1);
        assert!(
            s.complete(1, Outcome::Gone, t0),
            "dropped at once with zero retention"
        );
        assert_eq!(s.backoff_targets(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn gone_targets_are_dropped_after_retention() {
        let mut s = scheduler(
            1,
            Settings {
                gone_retention: Duration::from_secs(120),
                ..settings()
            },
        );
        let t0 = Instant::now();
        assert_eq!(s.next(t0), Next::Poll(0));
        assert!(!s.complete(0, Outcome::Gone, t0));
        let mut now = t0;
        loop {
            match s.next(now) {
                Next::Poll(0) => {
                    if s.complete(0, Outcome::Gone, now) {
                        break;
                    }
                }
                Next::WaitUntil(t) => now = t,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(now.duration_since(t0) >= Duration::from_secs(120));
        assert_eq!(
            s.next(now),
            Next::Idle,
            "a dropped target is never polled again"
        );
    }
}
