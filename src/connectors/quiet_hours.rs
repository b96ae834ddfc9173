//! Quiet hours (the seed's manageNotificationPreferences): a daily period in the recipients' time
//! zone during which notifications below a priority should not disturb anyone. The period is
//! data here; each chat vendor applies it as its API allows (holding the message until the
//! period ends, or posting it silently, without a sound or a push).
//!
//! Times are wall-clock times in an IANA time zone (`Europe/London`, UTC when none is given), so
//! `22:00` stays 22:00 through daylight saving changes; a period may run past midnight.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

use crate::wedsync::{is_time_of_day, Priority};

/// Why quiet hours cannot be taken; `field` is relative to the `quiet_hours` table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct QuietHoursError {
    pub field: &'static str,
    pub reason: String,
}

/// A daily quiet period.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, the period's start, in `time_zone`.
    pub from: String,
    /// `HH:MM`, its end (may be earlier than `from`: the period runs past midnight).
    pub to: String,
    /// The recipients' IANA time zone (`Europe/London`, `America/New_York`); UTC when absent.
    pub time_zone: Option<String>,
    /// The lowest priority that is delivered as usual inside the period.
    #[serde(default = "default_breaks_through")]
    pub breaks_through: Priority,
}

fn default_breaks_through() -> Priority {
    Priority::Emergency
}

fn time_of(text: &str) -> Option<Time> {
    let (hours, minutes) = text.split_once(':')?;
    Time::new(hours.parse().ok()?, minutes.parse().ok()?, 0, 0).ok()
}

impl QuietHours {
    /// Checks the times and the time zone, naming the field that is wrong.
    pub fn check(&self) -> Result<(), QuietHoursError> {
        for (field, time) in [("from", &self.from), ("to", &self.to)] {
            if !is_time_of_day(time) || time_of(time).is_none() {
                return Err(QuietHoursError {
                    field,
                    reason: format!("{time:?} is not a time like 22:00"),
                });
            }
        }
        if self.from == self.to {
            return Err(QuietHoursError {
                field: "to",
                reason: "the quiet period must not be empty (from and to are the same time)".into(),
            });
        }
        self.zone()?;
        Ok(())
    }

    fn zone(&self) -> Result<TimeZone, QuietHoursError> {
        match &self.time_zone {
            None => Ok(TimeZone::UTC),
            Some(name) => TimeZone::get(name).map_err(|_| QuietHoursError {
                field: "time_zone",
                reason: format!("{name:?} is not an IANA time zone such as Europe/London"),
            }),
        }
    }

    /// [`Self::ends_at`] for a notification delivered now.
    pub fn end_if_quiet_now(&self, priority: Priority) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.ends_at(priority, now)
    }

    /// When a notification of `priority` delivered at `now` (Unix seconds) falls inside the
    /// period, the Unix time at which the period ends; `None` when it may go now.
    pub fn ends_at(&self, priority: Priority, now: u64) -> Option<u64> {
        if priority >= self.breaks_through {
            return None;
        }
        let (from, to, zone) = (time_of(&self.from)?, time_of(&self.to)?, self.zone().ok()?);
        let here = Timestamp::from_second(i64::try_from(now).ok()?)
            .ok()?
            .to_zoned(zone.clone());
        let time = here.time();
        let inside = if from < to {
            from <= time && time < to
        } else {
            time >= from || time < to
        };
        if !inside {
            return None;
        }
        let end_on = |day: Date| -> Option<i64> {
            Some(
                day.to_datetime(to)
                    .to_zoned(zone.clone())
                    .ok()?
                    .timestamp()
                    .as_second(),
            )
        };
        let today = end_on(here.date())?;
        let end = if today > now as i64 {
            today
        } else {
            end_on(here.date().tomorrow().ok()?)?
        };
        u64::try_from(end).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(from: &str, to: &str, zone: Option<&str>) -> QuietHours {
        QuietHours {
            from: from.into(),
            to: to.into(),
            time_zone: zone.map(str::to_owned),
            breaks_through: Priority::Emergency,
        }
    }

    /// Unix seconds of a UTC date and time.
    fn utc(date: &str, time: &str) -> u64 {
        let at: Timestamp = format!("{date}T{time}:00Z").parse().unwrap();
        at.as_second() as u64
    }

    #[test]
    fn a_period_past_midnight_ends_at_its_next_end_in_utc() {
        let night = quiet("22:00", "07:00", None);
        assert_eq!(
            night.ends_at(Priority::Normal, utc("2027-06-12", "23:30")),
            Some(utc("2027-06-13", "07:00"))
        );
        assert_eq!(
            night.ends_at(Priority::Normal, utc("2027-06-13", "06:59")),
            Some(utc("2027-06-13", "07:00"))
        );
        assert_eq!(
            night.ends_at(Priority::Normal, utc("2027-06-13", "07:00")),
            None
        );
        assert_eq!(
            night.ends_at(Priority::Normal, utc("2027-06-13", "12:00")),
            None
        );
        assert_eq!(
            night.ends_at(Priority::Emergency, utc("2027-06-12", "23:30")),
            None,
            "an emergency breaks through"
        );
    }

    #[test]
    fn times_are_the_recipients_wall_clock_through_daylight_saving() {
        let london = quiet("22:00", "07:00", Some("Europe/London"));
        // Summer: 22:00 in London is 21:00 UTC; the night ends at 06:00 UTC.
        assert_eq!(
            london.ends_at(Priority::Normal, utc("2027-06-12", "20:59")),
            None
        );
        assert_eq!(
            london.ends_at(Priority::Normal, utc("2027-06-12", "21:00")),
            Some(utc("2027-06-13", "06:00"))
        );
        // Winter: London is on UTC.
        assert_eq!(
            london.ends_at(Priority::High, utc("2027-01-16", "22:30")),
            Some(utc("2027-01-17", "07:00"))
        );
        // The night the clocks go forward (28 March 2027, 01:00 UTC): 07:00 BST is 06:00 UTC.
        assert_eq!(
            london.ends_at(Priority::Normal, utc("2027-03-27", "23:00")),
            Some(utc("2027-03-28", "06:00"))
        );
        let new_york = quiet("12:00", "14:00", Some("America/New_York"));
        assert_eq!(
            new_york.ends_at(Priority::Low, utc("2027-06-12", "17:15")),
            Some(utc("2027-06-12", "18:00"))
        );
    }

    #[test]
    fn settings_name_what_is_wrong() {
        assert_eq!(
            quiet("22:00", "07:00", Some("Europe/London")).check(),
            Ok(())
        );
        assert_eq!(
            quiet("10pm", "07:00", None).check().unwrap_err().field,
            "from"
        );
        assert_eq!(
            quiet("07:00", "07:00", None).check().unwrap_err().field,
            "to"
        );
        assert_eq!(
            quiet("24:30", "07:00", None).check().unwrap_err().field,
            "from"
        );
        let zone = quiet("22:00", "07:00", Some("Europe/Londres"))
            .check()
            .unwrap_err();
        assert_eq!(zone.field, "time_zone");
        assert!(zone.reason.contains("Europe/Londres"), "{zone}");
    }
}
