//! The integration's in-memory view of its durable mailbox: two lanes ordered by due time, the
//! emergency lane always served first, and the jobs currently leased to an attempt.
//!
//! Every job here is also a row in the store (pending or retrying), so the mailbox is rebuilt from
//! the store when the actor (re)starts; this struct only orders and de-duplicates.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::store::UnixMillis;
use crate::wedsync::{Coordination, Lane, WeddingNotification};

/// One delivery waiting for, or out on, an attempt.
#[derive(Debug, Clone)]
pub struct Job {
    pub delivery_id: i64,
    pub notification: Arc<WeddingNotification>,
    /// Attempts made so far.
    pub attempts: u32,
    pub created_at: UnixMillis,
    pub emergency: bool,
    /// Whether this delivery was handed over from another integration (it is not handed on again).
    pub is_failover: bool,
    /// Whether the credential was already reloaded for this delivery.
    pub credentials_refreshed: bool,
    /// How the delivery relates to the others of its routing (sequence, error strategy).
    pub coordination: Coordination,
}

impl Job {
    pub fn lane(&self) -> Lane {
        if self.emergency {
            Lane::Emergency
        } else {
            Lane::Normal
        }
    }
}

#[derive(Default)]
pub struct Mailbox {
    queued: HashMap<i64, Job>,
    emergency: BinaryHeap<Reverse<(Instant, i64)>>,
    normal: BinaryHeap<Reverse<(Instant, i64)>>,
    leased: HashMap<i64, Job>,
}

impl Mailbox {
    /// Queues a job due at `due`; returns false if the mailbox already has this delivery.
    pub fn insert(&mut self, job: Job, due: Instant) -> bool {
        if self.queued.contains_key(&job.delivery_id) || self.leased.contains_key(&job.delivery_id)
        {
            return false;
        }
        self.push(job, due);
        true
    }

    /// Returns the lane of the next job that is due, emergency first.
    pub fn peek_due(&self, now: Instant) -> Option<Lane> {
        let due = |heap: &BinaryHeap<Reverse<(Instant, i64)>>| {
            heap.peek().is_some_and(|Reverse((at, _))| *at <= now)
        };
        if due(&self.emergency) {
            Some(Lane::Emergency)
        } else if due(&self.normal) {
            Some(Lane::Normal)
        } else {
            None
        }
    }

    /// The head of `lane`, without taking it.
    pub fn peek_next(&self, lane: Lane) -> Option<&Job> {
        let heap = match lane {
            Lane::Emergency => &self.emergency,
            Lane::Normal => &self.normal,
        };
        heap.peek().and_then(|Reverse((_, id))| self.queued.get(id))
    }

    /// Moves the head of `lane` to the leased set and returns it.
    pub fn lease_next(&mut self, lane: Lane) -> Option<Job> {
        let Reverse((_, id)) = self.heap(lane).pop()?;
        let job = self.queued.remove(&id)?;
        self.leased.insert(id, job.clone());
        Some(job)
    }

    /// Removes every due job of either lane, for handing them to a backup integration.
    pub fn take_due(&mut self, now: Instant) -> Vec<Job> {
        let mut taken = Vec::new();
        while let Some(lane) = self.peek_due(now) {
            let Reverse((_, id)) = self.heap(lane).pop().expect("peeked");
            taken.extend(self.queued.remove(&id));
        }
        taken
    }

    /// Ends a lease; returns the job so the caller can settle or requeue it.
    pub fn end_lease(&mut self, delivery_id: i64) -> Option<Job> {
        self.leased.remove(&delivery_id)
    }

    /// Puts a job back, due at `due`.
    pub fn requeue(&mut self, job: Job, due: Instant) {
        self.push(job, due);
    }

    /// The earliest due time of any queued job.
    pub fn next_due(&self) -> Option<Instant> {
        let head =
            |heap: &BinaryHeap<Reverse<(Instant, i64)>>| heap.peek().map(|Reverse((at, _))| *at);
        match (head(&self.emergency), head(&self.normal)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    pub fn leased(&self) -> usize {
        self.leased.len()
    }

    pub fn leased_in(&self, lane: Lane) -> usize {
        self.leased
            .values()
            .filter(|job| job.lane() == lane)
            .count()
    }

    fn push(&mut self, job: Job, due: Instant) {
        let entry = Reverse((due, job.delivery_id));
        match job.lane() {
            Lane::Emergency => self.emergency.push(entry),
            Lane::Normal => self.normal.push(entry),
        }
        self.queued.insert(job.delivery_id, job);
    }

    fn heap(&mut self, lane: Lane) -> &mut BinaryHeap<Reverse<(Instant, i64)>> {
        match lane {
            Lane::Emergency => &mut self.emergency,
            Lane::Normal => &mut self.normal,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::wedsync::Priority;

    fn job(id: i64, emergency: bool) -> Job {
        let notification = WeddingNotification {
            notification_id: format!("n-{id}"),
            organization_id: None,
            notification_type: "t".into(),
            priority: if emergency {
                Priority::Emergency
            } else {
                Priority::Normal
            },
            title: "t".into(),
            message: "m".into(),
            wedding_context: None,
            contacts: vec![],
            actions: vec![],
            metadata: Default::default(),
            created_at: None,
            booking_id: None,
            tave_job_id: None,
        };
        Job {
            delivery_id: id,
            notification: Arc::new(notification),
            attempts: 0,
            created_at: 0,
            emergency,
            is_failover: false,
            credentials_refreshed: false,
            coordination: Default::default(),
        }
    }

    #[test]
    fn emergencies_jump_a_due_backlog() {
        let now = Instant::now();
        let mut mailbox = Mailbox::default();
        for id in 0..1000 {
            mailbox.insert(job(id, false), now);
        }
        mailbox.insert(job(5000, true), now + Duration::from_millis(1));
        assert_eq!(
            mailbox.peek_due(now),
            Some(Lane::Normal),
            "the emergency is not due yet"
        );
        let later = now + Duration::from_millis(1);
        assert_eq!(mailbox.peek_due(later), Some(Lane::Emergency));
        assert_eq!(
            mailbox.lease_next(Lane::Emergency).unwrap().delivery_id,
            5000
        );
        assert_eq!(
            mailbox.lease_next(Lane::Normal).unwrap().delivery_id,
            0,
            "normal lane is FIFO by due time"
        );
    }

    #[test]
    fn a_delivery_is_held_once_whether_queued_or_leased() {
        let now = Instant::now();
        let mut mailbox = Mailbox::default();
        assert!(mailbox.insert(job(1, false), now));
        assert!(!mailbox.insert(job(1, false), now));
        let leased = mailbox.lease_next(Lane::Normal).unwrap();
        assert!(
            !mailbox.insert(job(1, false), now),
            "a leased delivery is not queued twice"
        );
        mailbox.end_lease(leased.delivery_id).unwrap();
        mailbox.requeue(leased, now + Duration::from_secs(5));
        assert_eq!(mailbox.peek_due(now), None);
        assert_eq!(mailbox.next_due(), Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn take_due_leaves_future_jobs() {
        let now = Instant::now();
        let mut mailbox = Mailbox::default();
        mailbox.insert(job(1, true), now);
        mailbox.insert(job(2, false), now);
        mailbox.insert(job(3, false), now + Duration::from_secs(60));
        let taken: Vec<i64> = mailbox
            .take_due(now)
            .iter()
            .map(|j| j.delivery_id)
            .collect();
        assert_eq!(taken, vec![1, 2]);
        assert_eq!(mailbox.queued(), 1);
    }
}
