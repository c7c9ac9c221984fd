//! Discovery planning, as pure logic over a supplied clock: which datastores are watched,
//! and which ListDatastores, GetDatastore and SearchImageSets request comes next.
//!
//! Per watched datastore two listings run independently: a *full* listing of every image
//! set (first discovery, then every `reconcile_interval`) and a *changes* listing of the
//! image sets whose `updatedAt` falls in a window reaching from the end of the previous
//! window (minus `search_overlap`) to now, every `search_interval`. The poller executes
//! the requests under the budget and turns the [`Effect`]s into store and scheduler
//! updates; nothing here does I/O or reads the clock.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::DiscoveryRule;
use crate::ids::DatastoreId;
use crate::model::{DatastoreSummary, EpochSeconds, ImageSetSummary, Page, SearchQuery};
use crate::scheduler::{Jobs, Priority};
use crate::source::{ErrorKind, SourceError};
use crate::store::Sweep;

/// Wait before a failed request is tried again (the budget limits it further).
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// A request discovery wants made.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// One page of ListDatastores.
    ListDatastores {
        /// Page token.
        next_token: Option<String>,
    },
    /// GetDatastore of an explicitly configured datastore.
    GetDatastore(DatastoreId),
    /// One page of SearchImageSets.
    Search {
        /// The datastore.
        datastore: DatastoreId,
        /// Which listing the page belongs to.
        sweep: Sweep,
        /// Filters.
        query: SearchQuery,
        /// Page token.
        next_token: Option<String>,
    },
}

impl Request {
    /// The API operation name (metric label).
    pub fn operation(&self) -> &'static str {
        match self {
            Request::ListDatastores { .. } => "ListDatastores",
            Request::GetDatastore(_) => "GetDatastore",
            Request::Search { .. } => "SearchImageSets",
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// ListDatastores page.
    Datastores(Result<Page<DatastoreSummary>, SourceError>),
    /// GetDatastore result.
    Datastore(DatastoreId, Result<DatastoreSummary, SourceError>),
    /// SearchImageSets page.
    Search {
        /// The datastore searched.
        datastore: DatastoreId,
        /// Which listing.
        sweep: Sweep,
        /// The page.
        result: Result<Page<ImageSetSummary>, SourceError>,
    },
}

/// What the poller must do after a response.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Record this datastore's name and status.
    Datastore(DatastoreSummary),
    /// Image sets listed by a sweep of `datastore`; `generation` numbers full listings.
    Found {
        /// The datastore.
        datastore: DatastoreId,
        /// Which listing.
        sweep: Sweep,
        /// The full listing's generation (for finding image sets it no longer lists).
        generation: u32,
        /// What was listed.
        items: Vec<ImageSetSummary>,
    },
    /// A full listing of `datastore` completed: image sets it did not list (generation
    /// older than `generation`) may be gone and should be checked.
    FullListingDone {
        /// The datastore.
        datastore: DatastoreId,
        /// The completed listing's generation.
        generation: u32,
    },
    /// A changes listing completed.
    ChangesDone {
        /// The datastore.
        datastore: DatastoreId,
    },
    /// After a complete ListDatastores: every datastore watched now; discovered image
    /// sets of any other datastore are no longer watched.
    Watching(std::collections::BTreeSet<DatastoreId>),
    /// `datastore` is no longer watched (not ACTIVE any more): its sweeps are over.
    Unwatched(DatastoreId),
    /// `datastore` is no longer listed at all (deleted, or filtered out): forget it.
    Vanished(DatastoreId),
    /// A request failed for a new reason (log it); `None` target means ListDatastores.
    Failed {
        /// The datastore concerned, if any.
        datastore: Option<DatastoreId>,
        /// The operation.
        operation: &'static str,
        /// What went wrong.
        error: SourceError,
    },
    /// Requests that had failed work again.
    Recovered {
        /// The datastore concerned, if any.
        datastore: Option<DatastoreId>,
        /// The operation.
        operation: &'static str,
    },
}

/// One listing in progress.
#[derive(Debug, Clone)]
struct Listing {
    query: SearchQuery,
    next_token: Option<String>,
    in_flight: bool,
    retry_at: Option<Instant>,
}

impl Listing {
    fn new(query: SearchQuery) -> Self {
        Listing {
            query,
            next_token: None,
            in_flight: false,
            retry_at: None,
        }
    }

    fn ready(&self, now: Instant) -> bool {
        !self.in_flight && self.retry_at.is_none_or(|t| t <= now)
    }
}

/// Discovery state of one watched datastore.
#[derive(Debug, Clone)]
struct Watch {
    rule: usize,
    full: Option<Listing>,
    next_full: Instant,
    generation: u32,
    full_done_once: bool,
    full_failed_once: bool,
    changes: Option<Listing>,
    next_changes: Instant,
    /// End of the last completed changes window (or start of the first full listing).
    watermark: Option<EpochSeconds>,
    window_end: EpochSeconds,
    refresh_in_flight: bool,
    next_refresh: Instant,
    last_error: BTreeMap<&'static str, ErrorKind>,
}

/// The ListDatastores side of `all_datastores` rules.
#[derive(Debug, Clone)]
struct DatastoreListing {
    rule: usize,
    next_at: Instant,
    next_token: Option<String>,
    collected: Vec<DatastoreSummary>,
    /// Ids the previous complete listing returned.
    listed: std::collections::BTreeSet<DatastoreId>,
    in_flight: bool,
    done_once: bool,
    last_error: Option<ErrorKind>,
}

/// The discovery planner.
#[derive(Debug)]
pub struct Discovery {
    rules: Vec<DiscoveryRule>,
    watches: BTreeMap<DatastoreId, Watch>,
    listing: Option<DatastoreListing>,
}

impl Discovery {
    /// Plans for `rules`, starting at `now`: explicit datastores are watched at once,
    /// `all_datastores` waits for its first ListDatastores.
    pub fn new(rules: Vec<DiscoveryRule>, now: Instant) -> Self {
        let mut d = Discovery {
            rules,
            watches: BTreeMap::new(),
            listing: None,
        };
        for (n, rule) in d.rules.iter().enumerate() {
            if let Some(id) = rule.datastore_id {
                d.watches.insert(id, Watch::new(n, now));
            }
            if rule.all_datastores {
                d.listing = Some(DatastoreListing {
                    rule: n,
                    next_at: now,
                    next_token: None,
                    collected: Vec::new(),
                    listed: Default::default(),
                    in_flight: false,
                    done_once: false,
                    last_error: None,
                });
            }
        }
        d
    }

    /// True when there is nothing to discover.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// True once every watched datastore has been listed in full once (or failed to be),
    /// and the datastore list has been read once: the aggregates are then complete.
    pub fn initial_done(&self) -> bool {
        self.listing
            .as_ref()
            .is_none_or(|l| l.done_once || l.last_error.is_some())
            && self
                .watches
                .values()
                .all(|w| w.full_done_once || w.full_failed_once)
    }

    /// Which priorities have a request ready at `now`.
    pub fn pending(&self, now: Instant) -> Jobs {
        let mut jobs = Jobs::default();
        if let Some(l) = &self.listing {
            jobs.high |= !l.in_flight && l.next_at <= now;
        }
        for w in self.watches.values() {
            let explicit = self.rules[w.rule].datastore_id.is_some();
            jobs.high |= explicit && !w.refresh_in_flight && w.next_refresh <= now;
            jobs.high |= match &w.changes {
                Some(c) => c.ready(now),
                None => w.watermark.is_some() && w.next_changes <= now,
            };
            jobs.low |= match &w.full {
                Some(f) => f.ready(now),
                None => w.next_full <= now,
            };
        }
        jobs
    }

    /// The request to make now at `priority` (a token was granted for it); marks it in
    /// flight. `epoch` is the wall clock, for search windows.
    pub fn take(
        &mut self,
        priority: Priority,
        now: Instant,
        epoch: EpochSeconds,
    ) -> Option<Request> {
        match priority {
            Priority::High => self.take_high(now, epoch),
            Priority::Low => self.take_low(now, epoch),
        }
    }

    fn take_high(&mut self, now: Instant, epoch: EpochSeconds) -> Option<Request> {
        if let Some(l) = &mut self.listing {
            if !l.in_flight && l.next_at <= now {
                l.in_flight = true;
                return Some(Request::ListDatastores {
                    next_token: l.next_token.clone(),
                });
            }
        }
        for (id, w) in &mut self.watches {
            let rule = &self.rules[w.rule];
            if rule.datastore_id.is_some() && !w.refresh_in_flight && w.next_refresh <= now {
                w.refresh_in_flight = true;
                return Some(Request::GetDatastore(*id));
            }
            if w.changes.is_none() && w.next_changes <= now {
                if let Some(mark) = w.watermark {
                    let overlap = rule.search_overlap.as_secs_f64();
                    w.window_end = epoch;
                    w.changes = Some(Listing::new(SearchQuery {
                        updated_between: Some(((mark - overlap).max(0.0), epoch)),
                        is_primary: rule.is_primary,
                    }));
                }
            }
            if let Some(c) = &mut w.changes {
                if c.ready(now) {
                    c.in_flight = true;
                    return Some(Request::Search {
                        datastore: *id,
                        sweep: Sweep::Changes,
                        query: c.query.clone(),
                        next_token: c.next_token.clone(),
                    });
                }
            }
        }
        None
    }

    fn take_low(&mut self, now: Instant, epoch: EpochSeconds) -> Option<Request> {
        for (id, w) in &mut self.watches {
            if w.full.is_none() && w.next_full <= now {
                w.generation = w.generation.wrapping_add(1);
                // Changes from here on are the changes listings' job.
                w.watermark.get_or_insert(epoch);
                w.full = Some(Listing::new(SearchQuery {
                    updated_between: None,
                    is_primary: self.rules[w.rule].is_primary,
                }));
            }
            if let Some(f) = &mut w.full {
                if f.ready(now) {
                    f.in_flight = true;
                    return Some(Request::Search {
                        datastore: *id,
                        sweep: Sweep::Full,
                        query: f.query.clone(),
                        next_token: f.next_token.clone(),
                    });
                }
            }
        }
        None
    }

    /// Applies a response; returns what the poller must do.
    pub fn on_response(&mut self, response: Response, now: Instant) -> Vec<Effect> {
        match response {
            Response::Datastores(result) => self.on_datastores(result, now),
            Response::Datastore(id, result) => self.on_datastore(id, result, now),
            Response::Search {
                datastore,
                sweep,
                result,
            } => self.on_search(datastore, sweep, result, now),
        }
    }

    fn on_datastores(
        &mut self,
        result: Result<Page<DatastoreSummary>, SourceError>,
        now: Instant,
    ) -> Vec<Effect> {
        let Some(l) = &mut self.listing else {
            return Vec::new();
        };
        l.in_flight = false;
        let rule = &self.rules[l.rule];
        let page = match result {
            Ok(page) => page,
            Err(error) => {
                l.next_at = now + RETRY_AFTER;
                let new = l.last_error.replace(error.kind) != Some(error.kind);
                return new
                    .then_some(Effect::Failed {
                        datastore: None,
                        operation: "ListDatastores",
                        error,
                    })
                    .into_iter()
                    .collect();
            }
        };
        let mut effects = Vec::new();
        if l.last_error.take().is_some() {
            effects.push(Effect::Recovered {
                datastore: None,
                operation: "ListDatastores",
            });
        }
        let selected = |d: &DatastoreSummary| {
            let matches = |p: &crate::config::Patterns| {
                p.any_matches(d.id.as_str()) || p.any_matches(&d.name)
            };
            (rule.include.is_empty() || matches(&rule.include)) && !matches(&rule.exclude)
        };
        l.collected.extend(page.items.into_iter().filter(selected));
        if let Some(token) = page.next_token.filter(|t| !t.is_empty()) {
            l.next_token = Some(token);
            l.next_at = now;
            return effects;
        }
        // The list is complete: reconcile the watches with it.
        l.next_token = None;
        l.next_at = now + rule.refresh_interval;
        l.done_once = true;
        let collected = std::mem::take(&mut l.collected);
        let rule_index = l.rule;
        let mut active = std::collections::BTreeSet::new();
        let listed: std::collections::BTreeSet<DatastoreId> =
            collected.iter().map(|d| d.id).collect();
        for id in l.listed.difference(&listed) {
            effects.push(Effect::Vanished(*id));
        }
        l.listed = listed;
        for d in collected {
            if d.status == "ACTIVE" {
                active.insert(d.id);
                self.watches
                    .entry(d.id)
                    .or_insert_with(|| Watch::new(rule_index, now));
            }
            effects.push(Effect::Datastore(d));
        }
        let gone: Vec<DatastoreId> = self
            .watches
            .iter()
            .filter(|(id, w)| w.rule == rule_index && !active.contains(*id))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.watches.remove(&id);
            effects.push(Effect::Unwatched(id));
        }
        effects.push(Effect::Watching(self.watches.keys().copied().collect()));
        effects
    }

    fn on_datastore(
        &mut self,
        id: DatastoreId,
        result: Result<DatastoreSummary, SourceError>,
        now: Instant,
    ) -> Vec<Effect> {
        let Some(w) = self.watches.get_mut(&id) else {
            return Vec::new();
        };
        w.refresh_in_flight = false;
        w.next_refresh = now + self.rules[w.rule].refresh_interval;
        match result {
            Ok(d) => {
                let mut effects = Vec::new();
                if w.last_error.remove("GetDatastore").is_some() {
                    effects.push(Effect::Recovered {
                        datastore: Some(id),
                        operation: "GetDatastore",
                    });
                }
                effects.push(Effect::Datastore(d));
                effects
            }
            Err(error) => {
                w.next_refresh = now + RETRY_AFTER.max(self.rules[w.rule].refresh_interval / 10);
                w.failed("GetDatastore", Some(id), error)
            }
        }
    }

    fn on_search(
        &mut self,
        id: DatastoreId,
        sweep: Sweep,
        result: Result<Page<ImageSetSummary>, SourceError>,
        now: Instant,
    ) -> Vec<Effect> {
        let Some(w) = self.watches.get_mut(&id) else {
            return Vec::new();
        };
        let rule = &self.rules[w.rule];
        let listing = match sweep {
            Sweep::Full => &mut w.full,
            Sweep::Changes => &mut w.changes,
        };
        let Some(l) = listing else {
            return Vec::new();
        };
        l.in_flight = false;
        let page = match result {
            Ok(page) => page,
            Err(error) => {
                l.retry_at = Some(now + RETRY_AFTER);
                if sweep == Sweep::Full {
                    w.full_failed_once = true;
                }
                return w.failed("SearchImageSets", Some(id), error);
            }
        };
        l.retry_at = None;
        let mut effects = Vec::new();
        if w.last_error.remove("SearchImageSets").is_some() {
            effects.push(Effect::Recovered {
                datastore: Some(id),
                operation: "SearchImageSets",
            });
        }
        effects.push(Effect::Found {
            datastore: id,
            sweep,
            generation: w.generation,
            items: page.items,
        });
        if let Some(token) = page.next_token.filter(|t| !t.is_empty()) {
            l.next_token = Some(token);
            return effects;
        }
        match sweep {
            Sweep::Full => {
                w.full = None;
                w.full_done_once = true;
                w.next_full = now + rule.reconcile_interval;
                effects.push(Effect::FullListingDone {
                    datastore: id,
                    generation: w.generation,
                });
            }
            Sweep::Changes => {
                w.changes = None;
                w.watermark = Some(w.window_end);
                w.next_changes = now + rule.search_interval;
                effects.push(Effect::ChangesDone { datastore: id });
            }
        }
        effects
    }
}

impl Watch {
    fn new(rule: usize, now: Instant) -> Self {
        Watch {
            rule,
            full: None,
            next_full: now,
            generation: 0,
            full_done_once: false,
            full_failed_once: false,
            changes: None,
            next_changes: now,
            watermark: None,
            window_end: 0.0,
            refresh_in_flight: false,
            next_refresh: now,
            last_error: BTreeMap::new(),
        }
    }

    /// Notes an error; an effect only when its kind changed (no log floods).
    fn failed(
        &mut self,
        operation: &'static str,
        datastore: Option<DatastoreId>,
        error: SourceError,
    ) -> Vec<Effect> {
        if self.last_error.insert(operation, error.kind) == Some(error.kind) {
            return Vec::new();
        }
        vec![Effect::Failed {
            datastore,
            operation,
            error,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Pattern, Patterns};
    use crate::ids::{ImageSetId, VersionId};

    fn ds(n: u8) -> DatastoreId {
        DatastoreId::parse(&format!("{n:032x}")).unwrap()
    }

    fn rule(datastore: Option<DatastoreId>) -> DiscoveryRule {
        DiscoveryRule {
            datastore_id: datastore,
            all_datastores: datastore.is_none(),
            include: Default::default(),
            exclude: Default::default(),
            is_primary: None,
            refresh_interval: Duration::from_secs(300),
            search_interval: Duration::from_secs(30),
            search_overlap: Duration::from_secs(120),
            reconcile_interval: Duration::from_secs(3600),
        }
    }

    fn summary(n: u32) -> ImageSetSummary {
        ImageSetSummary {
            image_set_id: ImageSetId::parse(&format!("{n:032x}")).unwrap(),
            version: Some(VersionId::new(1)),
            created_at: Some(1.0),
            updated_at: Some(2.0),
            storage_tier: None,
            is_primary: Some(true),
        }
    }

    fn page<T>(items: Vec<T>, next: Option<&str>) -> Page<T> {
        Page {
            items,
            next_token: next.map(str::to_owned),
        }
    }

    #[test]
    fn explicit_datastore_lists_in_full_then_searches_windows_with_overlap() {
        let t0 = Instant::now();
        let mut d = Discovery::new(vec![rule(Some(ds(1)))], t0);
        assert!(!d.initial_done());
        // GetDatastore first (high), the full listing is low priority.
        let jobs = d.pending(t0);
        assert!(jobs.high && jobs.low);
        assert_eq!(
            d.take(Priority::High, t0, 1000.0),
            Some(Request::GetDatastore(ds(1)))
        );
        // No changes search before the full listing started (no watermark yet).
        assert_eq!(d.take(Priority::High, t0, 1000.0), None);
        let Some(Request::Search {
            sweep: Sweep::Full,
            query,
            next_token: None,
            ..
        }) = d.take(Priority::Low, t0, 1000.0)
        else {
            panic!("expected the first full listing page");
        };
        assert_eq!(query.updated_between, None);
        let e = d.on_response(
            Response::Search {
                datastore: ds(1),
                sweep: Sweep::Full,
                result: Ok(page(vec![summary(1)], Some("p2"))),
            },
            t0,
        );
        assert!(matches!(&e[..], [Effect::Found { generation: 1, .. }]));
        let Some(Request::Search { next_token, .. }) = d.take(Priority::Low, t0, 1001.0) else {
            panic!("expected page 2");
        };
        assert_eq!(next_token.as_deref(), Some("p2"));
        // Meanwhile the changes window starts at the full listing's start minus overlap.
        let Some(Request::Search {
            sweep: Sweep::Changes,
            query,
            ..
        }) = d.take(Priority::High, t0, 1005.0)
        else {
            panic!("expected a changes search");
        };
        assert_eq!(query.updated_between, Some((880.0, 1005.0)));
        d.on_response(
            Response::Search {
                datastore: ds(1),
                sweep: Sweep::Changes,
                result: Ok(page(vec![], None)),
            },
            t0,
        );
        let e = d.on_response(
            Response::Search {
                datastore: ds(1),
                sweep: Sweep::Full,
                result: Ok(page(vec![summary(2)], None)),
            },
            t0,
        );
        assert!(e.contains(&Effect::FullListingDone {
            datastore: ds(1),
            generation: 1
        }));
        assert!(d.initial_done());
        // The next window is due after search_interval and continues from 1005.
        let later = t0 + Duration::from_secs(30);
        assert!(!d.pending(t0 + Duration::from_secs(29)).low);
        let Some(Request::Search { query, .. }) = d.take(Priority::High, later, 1035.0) else {
            panic!("expected the next window");
        };
        assert_eq!(query.updated_between, Some((885.0, 1035.0)));
        // Reconciliation after reconcile_interval, as a new generation.
        let much_later = t0 + Duration::from_secs(3600);
        assert!(d.pending(much_later).low);
        d.take(Priority::Low, much_later, 4600.0);
        let e = d.on_response(
            Response::Search {
                datastore: ds(1),
                sweep: Sweep::Full,
                result: Ok(page(vec![], None)),
            },
            much_later,
        );
        assert!(e.contains(&Effect::FullListingDone {
            datastore: ds(1),
            generation: 2
        }));
    }

    #[test]
    fn failed_pages_are_retried_and_logged_once_per_kind() {
        let t0 = Instant::now();
        let mut r = rule(Some(ds(1)));
        r.is_primary = Some(true);
        let mut d = Discovery::new(vec![r], t0);
        let Some(Request::Search { query, .. }) = d.take(Priority::Low, t0, 1000.0) else {
            panic!("expected a search");
        };
        assert_eq!(query.is_primary, Some(true));
        let fail = |d: &mut Discovery, at| {
            d.on_response(
                Response::Search {
                    datastore: ds(1),
                    sweep: Sweep::Full,
                    result: Err(SourceError::new(ErrorKind::ServerError, "boom")),
                },
                at,
            )
        };
        assert!(matches!(&fail(&mut d, t0)[..], [Effect::Failed { .. }]));
        assert!(
            d.initial_done(),
            "a failed first listing must not block readiness"
        );
        assert!(!d.pending(t0).low, "retried only after a pause");
        let t1 = t0 + RETRY_AFTER;
        assert!(d.take(Priority::Low, t1, 1005.0).is_some());
        assert!(
            fail(&mut d, t1).is_empty(),
            "same error kind is not logged again"
        );
        let t2 = t1 + RETRY_AFTER;
        d.take(Priority::Low, t2, 1010.0);
        let e = d.on_response(
            Response::Search {
                datastore: ds(1),
                sweep: Sweep::Full,
                result: Ok(page(vec![], None)),
            },
            t2,
        );
        assert!(matches!(e[0], Effect::Recovered { .. }));
    }

    #[test]
    fn all_datastores_watches_active_matching_ones_and_drops_vanished_ones() {
        let t0 = Instant::now();
        let mut r = rule(None);
        r.exclude = Patterns(vec![Pattern::new("scratch-.*").unwrap()]);
        let mut d = Discovery::new(vec![r], t0);
        assert!(
            !d.pending(t0).low,
            "nothing to list before the datastores are known"
        );
        assert_eq!(
            d.take(Priority::High, t0, 1000.0),
            Some(Request::ListDatastores { next_token: None })
        );
        let summary = |n: u8, name: &str, status: &str| DatastoreSummary {
            id: ds(n),
            name: name.into(),
            status: status.into(),
        };
        let e = d.on_response(
            Response::Datastores(Ok(page(
                vec![
                    summary(1, "prod", "ACTIVE"),
                    summary(2, "scratch-a", "ACTIVE"),
                ],
                Some("next"),
            ))),
            t0,
        );
        assert!(
            e.is_empty(),
            "datastores are applied once the list is complete"
        );
        assert_eq!(
            d.take(Priority::High, t0, 1000.0),
            Some(Request::ListDatastores {
                next_token: Some("next".into())
            })
        );
        let e = d.on_response(
            Response::Datastores(Ok(page(vec![summary(3, "new", "CREATING")], None))),
            t0,
        );
        assert_eq!(
            e.len(),
            3,
            "prod and new are recorded, scratch-a is excluded"
        );
        assert_eq!(e[2], Effect::Watching([ds(1)].into()));
        assert!(d.pending(t0).low);
        assert!(matches!(
            d.take(Priority::Low, t0, 1000.0),
            Some(Request::Search { datastore, .. }) if datastore == ds(1)
        ));
        assert!(
            d.take(Priority::Low, t0, 1000.0).is_none(),
            "CREATING is not searched"
        );
        // Next refresh: prod is gone.
        let later = t0 + Duration::from_secs(300);
        d.take(Priority::High, later, 1300.0);
        let e = d.on_response(Response::Datastores(Ok(page(vec![], None))), later);
        assert!(e.contains(&Effect::Unwatched(ds(1))));
        assert!(e.contains(&Effect::Vanished(ds(1))) && e.contains(&Effect::Vanished(ds(3))));
    }
}
