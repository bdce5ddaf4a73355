//! The live stream of `GET /v1/events`: ticks, decisions and override changes, each
//! with an id, so that a client that reconnects with `Last-Event-ID` (as every
//! `EventSource` does by itself) gets what it missed instead of a gap.
//!
//! Events are numbered from the service's start in microseconds since the Unix epoch,
//! so a later process numbers above an earlier one, and an id from before a restart
//! reads as "older than what is kept". The last [`KEPT`] events are kept for replay
//! while somebody listens and for [`GRACE`] after the last listener left (long enough
//! for a reconnect); with nobody listening nothing is built at all.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;

/// How many events are kept for a reconnecting client.
pub const KEPT: usize = 1024;
/// How long after the last listener left events are still kept.
pub const GRACE: Duration = Duration::from_secs(300);

/// One event: its id, its name (`tick`, `decision`, `override`) and its JSON.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: u64,
    pub name: &'static str,
    pub data: Arc<str>,
}

/// What a new listener gets: the events it missed, how many it missed beyond those
/// (`Some(0)` when none; `None` when its id is from before this process, or unknown),
/// and the live stream from there on.
pub struct Subscription {
    pub replay: Vec<Event>,
    pub lost: Option<u64>,
    pub live: broadcast::Receiver<Event>,
}

pub struct Events {
    sender: broadcast::Sender<Event>,
    /// The id of the first event this process numbers.
    first: u64,
    next: AtomicU64,
    recent: Mutex<VecDeque<Event>>,
    /// Until when events are built and kept (Unix milliseconds): the last time a
    /// listener was seen, plus [`GRACE`].
    wanted_until: AtomicI64,
}

impl Events {
    pub fn new(now: chrono::DateTime<chrono::Utc>) -> Self {
        let first = u64::try_from(now.timestamp_micros()).unwrap_or(0).max(1);
        Events {
            sender: broadcast::channel(KEPT).0,
            first,
            next: AtomicU64::new(first),
            recent: Mutex::new(VecDeque::new()),
            wanted_until: AtomicI64::new(0),
        }
    }

    /// Whether an event is worth building: somebody listens, or listened lately.
    pub fn wanted(&self) -> bool {
        if self.sender.receiver_count() > 0 {
            return true;
        }
        let now = chrono::Utc::now().timestamp_millis();
        if now < self.wanted_until.load(Ordering::Relaxed) {
            return true;
        }
        // Nobody for a while: what is kept would only be replayed to an id the
        // listener can no longer expect to be remembered.
        if let Ok(mut r) = self.recent.lock()
            && !r.is_empty()
        {
            r.clear();
            r.shrink_to_fit();
        }
        false
    }

    pub fn send(&self, name: &'static str, data: Arc<str>) {
        let Ok(mut recent) = self.recent.lock() else {
            return;
        };
        let event = Event {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            name,
            data,
        };
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        if self.sender.receiver_count() > 0 {
            self.wanted_until.store(
                chrono::Utc::now().timestamp_millis() + GRACE.as_millis() as i64,
                Ordering::Relaxed,
            );
        }
        // Sent under the lock, so that a subscriber sees each event exactly once:
        // either in its replay or on its receiver.
        let _ = self.sender.send(event);
    }

    /// Listen from now on, or after the event `last` when the client had seen it.
    pub fn subscribe(&self, last: Option<u64>) -> Subscription {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        self.wanted_until.store(
            chrono::Utc::now().timestamp_millis() + GRACE.as_millis() as i64,
            Ordering::Relaxed,
        );
        let live = self.sender.subscribe();
        let Some(last) = last else {
            return Subscription {
                replay: Vec::new(),
                lost: Some(0),
                live,
            };
        };
        let replay: Vec<Event> = recent.iter().filter(|e| e.id > last).cloned().collect();
        let oldest = replay
            .first()
            .map_or(self.next.load(Ordering::Relaxed), |e| e.id);
        let lost =
            if last < self.first.saturating_sub(1) || last >= self.next.load(Ordering::Relaxed) {
                // From another process (or a made-up id): nobody can say what was missed.
                None
            } else {
                Some(oldest - last - 1)
            };
        Subscription { replay, lost, live }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn events() -> Events {
        Events::new(chrono::Utc.timestamp_opt(1_000, 0).unwrap())
    }

    fn ids(s: &Subscription) -> Vec<u64> {
        s.replay.iter().map(|e| e.id).collect()
    }

    #[test]
    fn a_reconnect_gets_what_it_missed_once() {
        let e = events();
        let mut first = e.subscribe(None);
        for _ in 0..3 {
            e.send("tick", Arc::from("{}"));
        }
        let Ok(first_event) = first.live.try_recv() else {
            unreachable!("the first subscriber missed the first event")
        };
        let seen = first_event.id;
        drop(first);
        let mut again = e.subscribe(Some(seen));
        assert_eq!(ids(&again), vec![seen + 1, seen + 2]);
        assert_eq!(again.lost, Some(0));
        e.send("decision", Arc::from("{}"));
        let live = again.live.try_recv().map(|l| (l.id, l.name));
        assert_eq!(live, Ok((seen + 3, "decision")));
        assert!(again.live.try_recv().is_err(), "nothing twice");
    }

    #[test]
    fn what_is_no_longer_kept_is_counted_or_unknown() {
        let e = events();
        let _listener = e.subscribe(None);
        for _ in 0..KEPT + 10 {
            e.send("tick", Arc::from("{}"));
        }
        let first = e.first;
        let s = e.subscribe(Some(first));
        assert_eq!(s.replay.len(), KEPT);
        assert_eq!(s.lost, Some(9));
        // An id from before this process started.
        let s = e.subscribe(Some(first - 100));
        assert_eq!((s.replay.len(), s.lost), (KEPT, None));
        // An id this process never gave.
        let s = e.subscribe(Some(first + 10 * KEPT as u64));
        assert_eq!((s.replay.len(), s.lost), (0, None));
    }

    #[test]
    fn nothing_is_kept_when_nobody_listens() {
        let e = events();
        assert!(!e.wanted());
        drop(e.subscribe(None));
        assert!(e.wanted(), "a reconnect is expected for a while");
    }
}
