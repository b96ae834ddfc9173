//! The integration's rate limiter: a governor GCRA quota at the vendor's rate, a smaller quota
//! for normal traffic so a share is always left for emergencies, and a hold that honours the
//! vendor's `Retry-After`.
//!
//! It is driven by the `now` the caller passes (governor runs on a clock we advance), so it is
//! tested by passing instants, never by sleeping. Every attempt, retries included, takes one token
//! per request it makes to the vendor (a CRM sync can be three): vendors count requests.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, FakeRelativeClock};
use governor::{Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::wedsync::Lane;

type Gcra = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    FakeRelativeClock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

pub struct Limiter {
    clock: FakeRelativeClock,
    clock_at: Instant,
    /// The vendor's whole quota; every attempt takes from it.
    vendor: Gcra,
    /// The share normal traffic may use; the rest is the emergency reserve.
    normal: Gcra,
    held_until: Option<Instant>,
}

impl Limiter {
    pub fn new(config: &RateLimitConfig, now: Instant) -> Self {
        let clock = FakeRelativeClock::default();
        let normal_share = 1.0 - config.emergency_reserve;
        let vendor = quota(config.per_second, config.burst);
        let normal = quota(
            config.per_second * normal_share,
            (config.burst as f64 * normal_share).floor().max(1.0) as u32,
        );
        Self {
            vendor: RateLimiter::direct_with_clock(vendor, clock.clone()),
            normal: RateLimiter::direct_with_clock(normal, clock.clone()),
            clock,
            clock_at: now,
            held_until: None,
        }
    }

    /// Takes `requests` tokens for one attempt in `lane`, or says how long to wait for them.
    /// An attempt costlier than the whole burst takes the burst (it could never run otherwise).
    pub fn try_acquire(&mut self, lane: Lane, now: Instant, requests: u32) -> Result<(), Duration> {
        if let Some(until) = self.held_until {
            if now < until {
                return Err(until - now);
            }
            self.held_until = None;
        }
        self.advance_to(now);
        if lane == Lane::Normal {
            take(&self.normal, requests, &self.clock)?;
        }
        take(&self.vendor, requests, &self.clock)
    }

    /// Stops all attempts until `until` (the vendor said Retry-After).
    pub fn hold_until(&mut self, until: Instant) {
        self.held_until = Some(self.held_until.map_or(until, |held| held.max(until)));
    }

    pub fn held_until(&self) -> Option<Instant> {
        self.held_until
    }

    fn advance_to(&mut self, now: Instant) {
        if now > self.clock_at {
            self.clock.advance(now - self.clock_at);
            self.clock_at = now;
        }
    }
}

fn take(gcra: &Gcra, requests: u32, clock: &FakeRelativeClock) -> Result<(), Duration> {
    let mut cost = NonZeroU32::new(requests.max(1)).expect("at least 1");
    loop {
        match gcra.check_n(cost) {
            Ok(outcome) => return outcome.map_err(|wait| wait.wait_time_from(clock.now())),
            // More than the burst: take the whole burst instead.
            Err(governor::InsufficientCapacity(burst)) => {
                cost = NonZeroU32::new(burst.max(1)).expect("at least 1")
            }
        }
    }
}

fn quota(per_second: f64, burst: u32) -> Quota {
    let period = Duration::from_secs_f64(1.0 / per_second.max(1e-6)).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(burst.max(1)).expect("burst is at least 1");
    Quota::with_period(period)
        .expect("period is positive")
        .allow_burst(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_second: f64, burst: u32, reserve: f64) -> RateLimitConfig {
        RateLimitConfig {
            per_second,
            burst,
            emergency_reserve: reserve,
        }
    }

    /// The most grants in any `window` of a limiter asked for a token every millisecond.
    fn busiest_window(rate: &RateLimitConfig, window: Duration, run: Duration) -> usize {
        let start = Instant::now();
        let mut limiter = Limiter::new(rate, start);
        let mut granted: Vec<Instant> = Vec::new();
        for step in 0..run.as_millis() as u64 {
            let now = start + Duration::from_millis(step);
            if limiter.try_acquire(Lane::Emergency, now, 1).is_ok() {
                granted.push(now);
            }
        }
        granted
            .iter()
            .enumerate()
            .map(|(index, &at)| {
                granted[index..]
                    .iter()
                    .take_while(|&&t| t < at + window)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn vendor_defaults_stay_inside_the_vendors_documented_windows() {
        let mut checked = Vec::new();
        for vendor in crate::vendors::all() {
            let rate = vendor.describe().default_rate;
            let Some(limit) = rate.window else { continue };
            let config = RateLimitConfig {
                per_second: rate.per_second,
                burst: rate.burst,
                emergency_reserve: 0.2,
            };
            let window = Duration::from_secs(limit.seconds);
            let busiest = busiest_window(&config, window, window * 4);
            assert!(
                busiest <= limit.requests as usize,
                "{}: {busiest} requests in {window:?}, the vendor allows {}",
                vendor.kind(),
                limit.requests
            );
            checked.push(vendor.kind());
        }
        assert!(
            !checked.is_empty(),
            "no registered vendor publishes an exact window to hold its default to"
        );
    }

    #[test]
    fn never_exceeds_the_vendor_rate() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&config(10.0, 1, 0.0), start);
        let mut granted = 0;
        for step in 0..1000 {
            let now = start + Duration::from_millis(step);
            if limiter.try_acquire(Lane::Normal, now, 1).is_ok() {
                granted += 1;
            }
        }
        // One second at 10/s with a burst of 1: the first token at 0 ms, then one every 100 ms.
        assert_eq!(granted, 10);
    }

    #[test]
    fn normal_traffic_leaves_the_emergency_reserve() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&config(10.0, 10, 0.2), start);
        let normal = (0..100)
            .filter(|_| limiter.try_acquire(Lane::Normal, start, 1).is_ok())
            .count();
        assert_eq!(normal, 8, "normal traffic gets 80% of the burst");
        let emergency = (0..100)
            .filter(|_| limiter.try_acquire(Lane::Emergency, start, 1).is_ok())
            .count();
        assert_eq!(
            emergency, 2,
            "emergencies get the reserved 20%, and no more than the vendor's burst"
        );
    }

    #[test]
    fn the_wait_it_reports_is_enough() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&config(2.0, 1, 0.0), start);
        limiter.try_acquire(Lane::Emergency, start, 1).unwrap();
        let wait = limiter.try_acquire(Lane::Emergency, start, 1).unwrap_err();
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::from_millis(400),
            "{wait:?}"
        );
        assert!(limiter
            .try_acquire(Lane::Emergency, start + wait, 1)
            .is_ok());
    }

    #[test]
    fn an_attempt_takes_a_token_per_vendor_request() {
        let start = Instant::now();
        // A CRM's: 10 requests per second, burst 10; a sync costs 3 requests.
        let mut limiter = Limiter::new(&config(10.0, 10, 0.0), start);
        let syncs = (0..10)
            .filter(|_| limiter.try_acquire(Lane::Normal, start, 3).is_ok())
            .count();
        assert_eq!(syncs, 3, "ten tokens pay for three three-request syncs");
        let wait = limiter.try_acquire(Lane::Normal, start, 3).unwrap_err();
        assert!(
            wait > Duration::from_millis(190) && wait <= Duration::from_millis(300),
            "{wait:?}"
        );
        let mut small = Limiter::new(&config(1.0, 2, 0.0), start);
        assert!(
            small.try_acquire(Lane::Normal, start, 5).is_ok(),
            "an attempt costlier than the burst takes the burst"
        );
        assert!(small.try_acquire(Lane::Normal, start, 1).is_err());
    }

    #[test]
    fn a_hold_blocks_every_lane_until_it_ends() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&config(100.0, 100, 0.2), start);
        limiter.hold_until(start + Duration::from_secs(2));
        limiter.hold_until(start + Duration::from_secs(1)); // a shorter hold does not shorten it
        assert_eq!(
            limiter.try_acquire(Lane::Emergency, start + Duration::from_secs(1), 1),
            Err(Duration::from_secs(1))
        );
        assert!(limiter
            .try_acquire(Lane::Normal, start + Duration::from_secs(2), 1)
            .is_ok());
        assert_eq!(limiter.held_until(), None);
    }
}
