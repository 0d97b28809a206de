//! Business-hours calendars: when a ticket's first-response deadline falls if the SLA
//! counts only the hours a queue is staffed.
//!
//! A contact center counts a target either in calendar time or in the open hours of
//! the queue's calendar: a time zone, weekly hours in local wall time, and holidays
//! (whole local days closed). [`SlaClock::due`] answers "a ticket that arrived at
//! instant T with a target of N minutes: when is it due?" for both.
//!
//! * **Wall time, real minutes.** Hours are what the clock on the office wall shows,
//!   and the target is counted in elapsed minutes, so on the night the clocks change
//!   `00:00-24:00` is 23 or 25 hours long. A boundary that the spring-forward gap skips
//!   is the instant the clocks jump; one that the fall-back fold repeats is its first
//!   occurrence (the shift ends the first time the clock shows its end).
//! * **Bounded work.** The count steps over one open range at a time, never minute by
//!   minute, and looks at most [`MAX_DUE_DAYS`] days ahead; validation refuses
//!   calendars with more than [`MAX_CLOSED_DAYS`] closed days in a row (including one
//!   with no open hours at all), so the next opening is always within reach.
//! * **Saturation, not failure.** A deadline more than [`MAX_DUE_DAYS`] days ahead, or
//!   beyond the year 9999, is [`NEVER_DUE`]: the ticket is never overdue, rather than
//!   the stage failing or spending seconds on one ticket.
//!
//! The workspace speaks `time::OffsetDateTime`; `jiff` (with its bundled copy of the tz
//! database, so a deadline is the same on a machine without `/usr/share/zoneinfo`)
//! is used only inside this module.

use std::collections::BTreeSet;
use std::fmt;

use cull_model::config::{Checks, Invalid};
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// The most consecutive closed days (closed weekdays and holidays) a calendar may have;
/// about three years, more than any real holiday list, and what keeps the search for the
/// next opening short.
pub const MAX_CLOSED_DAYS: usize = 3 * 366;

/// How far ahead a deadline is looked for, in local days: about five years, longer than
/// any first-response target and than the longest closed run, and what bounds the work
/// of a huge target (`u32::MAX` minutes would otherwise walk to the year 9999).
pub const MAX_DUE_DAYS: usize = 5 * 366;

/// The deadline of a ticket whose target cannot be reached: the last instant `time`
/// represents.
pub const NEVER_DUE: OffsetDateTime = PrimitiveDateTime::MAX.assume_utc();

const MINUTES_PER_DAY: u16 = 24 * 60;

/// A `[tickets.calendars.<name>]` section: when a queue is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// The IANA time zone the hours and holidays are in, such as `Europe/Berlin`.
    pub time_zone: String,
    /// Open hours per weekday in local wall time; a day left out is closed.
    #[serde(default)]
    pub hours: WeeklyHours,
    /// Local dates (`YYYY-MM-DD`) closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// Open hours per weekday, each `HH:MM-HH:MM`, several separated by commas
/// (`08:00-12:00,13:00-17:00`); `24:00` ends a range at midnight.
///
/// A struct rather than a map so that a misspelt day is an error, not a closed day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeeklyHours {
    /// Monday.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mon: Option<String>,
    /// Tuesday.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tue: Option<String>,
    /// Wednesday.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wed: Option<String>,
    /// Thursday.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thu: Option<String>,
    /// Friday.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fri: Option<String>,
    /// Saturday.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sat: Option<String>,
    /// Sunday.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sun: Option<String>,
}

impl WeeklyHours {
    /// Returns each day's key and hours, Monday first (the order of
    /// [`Weekday::to_monday_zero_offset`]).
    fn days(&self) -> [(&'static str, Option<&str>); 7] {
        [
            ("mon", self.mon.as_deref()),
            ("tue", self.tue.as_deref()),
            ("wed", self.wed.as_deref()),
            ("thu", self.thu.as_deref()),
            ("fri", self.fri.as_deref()),
            ("sat", self.sat.as_deref()),
            ("sun", self.sun.as_deref()),
        ]
    }
}

impl CalendarConfig {
    /// Returns every invalid setting, keys relative to the calendar (`hours.mon`,
    /// `holidays[2]`).
    pub fn validate(&self) -> Vec<Invalid> {
        self.compile().err().unwrap_or_default()
    }

    /// Returns the calendar, or every invalid setting.
    fn compile(&self) -> Result<Calendar, Vec<Invalid>> {
        let mut checks = Checks::default();
        let zone = TimeZone::get(&self.time_zone);
        checks.check(zone.is_ok(), "time_zone", || {
            format!("unknown time zone {:?}; use an IANA name such as \"Europe/Berlin\"", self.time_zone)
        });
        let mut weekly: [Vec<OpenRange>; 7] = Default::default();
        let mut hours_valid = true;
        for ((day, hours), ranges) in self.hours.days().into_iter().zip(&mut weekly) {
            match hours.map(parse_day).transpose() {
                Ok(parsed) => *ranges = parsed.unwrap_or_default(),
                Err(message) => {
                    hours_valid = false;
                    checks.check(false, &format!("hours.{day}"), || message);
                }
            }
        }
        checks.check(!hours_valid || weekly.iter().any(|ranges| !ranges.is_empty()), "hours", || {
            "no day has open hours, so no deadline could ever be reached; open at least one day, \
             such as mon = \"09:00-17:00\""
                .to_string()
        });
        let mut holidays = BTreeSet::new();
        let mut holidays_valid = true;
        for (index, text) in self.holidays.iter().enumerate() {
            match parse_date(text) {
                Some(date) => {
                    holidays.insert(date);
                }
                None => {
                    holidays_valid = false;
                    checks.check(false, &format!("holidays[{index}]"), || {
                        format!("{text:?} is not a date; use YYYY-MM-DD, such as \"2026-12-24\"")
                    });
                }
            }
        }
        if hours_valid && holidays_valid {
            if let Some(run) = longest_closed_run(&weekly, &holidays).filter(|run| run.days > MAX_CLOSED_DAYS)
            {
                checks.check(false, "holidays", || {
                    format!(
                        "{} consecutive days from {} to {} are closed; at most {MAX_CLOSED_DAYS} are allowed, \
                         so that the next opening is always found",
                        run.days, run.first, run.last
                    )
                });
            }
        }
        let problems = checks.finish();
        match zone {
            Ok(zone) if problems.is_empty() => Ok(Calendar { zone, weekly, holidays }),
            _ => Err(problems),
        }
    }
}

/// Why a calendar could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid calendar: {}", DisplayProblems(.problems))]
pub struct CalendarError {
    /// Every invalid setting, keys relative to the calendar.
    pub problems: Vec<Invalid>,
}

/// Shows problems as `key: message; key: message`.
struct DisplayProblems<'a>(&'a [Invalid]);

impl fmt::Display for DisplayProblems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            let separator = if index == 0 { "" } else { "; " };
            write!(f, "{separator}{}: {}", problem.key, problem.message)?;
        }
        Ok(())
    }
}

/// A range of one day's open hours, in minutes after local midnight; `end` may be
/// 1440 (`24:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct OpenRange {
    start: u16,
    end: u16,
}

impl fmt::Display for OpenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (start, end) = (self.start, self.end);
        write!(f, "{:02}:{:02}-{:02}:{:02}", start / 60, start % 60, end / 60, end % 60)
    }
}

/// Parses one day's hours into sorted ranges that do not overlap (they may touch).
fn parse_day(text: &str) -> Result<Vec<OpenRange>, String> {
    let mut ranges = text.split(',').map(|range| parse_range(range.trim())).collect::<Result<Vec<_>, _>>()?;
    ranges.sort();
    if let Some(pair) = ranges.windows(2).find(|pair| pair[1].start < pair[0].end) {
        return Err(format!("ranges {} and {} overlap; merge them into one", pair[0], pair[1]));
    }
    Ok(ranges)
}

fn parse_range(text: &str) -> Result<OpenRange, String> {
    let syntax = || format!("{text:?} is not a range; use HH:MM-HH:MM, such as \"08:00-18:00\"");
    let (start, end) = text.split_once('-').ok_or_else(syntax)?;
    let (start, end) =
        (parse_clock(start.trim()).ok_or_else(syntax)?, parse_clock(end.trim()).ok_or_else(syntax)?);
    if start == MINUTES_PER_DAY {
        return Err(format!("{text:?} starts at 24:00; a range starts at 23:59 at the latest"));
    }
    if end <= start {
        return Err(format!(
            "{text:?} ends before it starts; a day's hours cannot cross midnight, so end this day's range \
             at 24:00 and start the next day's at 00:00"
        ));
    }
    Ok(OpenRange { start, end })
}

/// Parses `HH:MM` (`00:00` to `24:00`) into minutes after midnight.
fn parse_clock(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return None;
    }
    let (hours, minutes): (u16, u16) = (hours.parse().ok()?, minutes.parse().ok()?);
    let total = hours * 60 + minutes;
    (minutes < 60 && total <= MINUTES_PER_DAY).then_some(total)
}

/// Parses a date written exactly `YYYY-MM-DD`: jiff reads other ISO 8601 forms too, so
/// only a date that prints back as written is taken.
fn parse_date(text: &str) -> Option<Date> {
    text.parse::<Date>().ok().filter(|date| date.to_string() == text)
}

/// A run of consecutive closed days.
#[derive(Debug, PartialEq)]
struct ClosedRun {
    first: Date,
    last: Date,
    days: usize,
}

/// Returns the longest run of closed days that contains a holiday (a run of closed
/// weekdays alone is at most six days in a calendar with open hours); the work is a few
/// steps per holiday, however far apart the holidays are.
fn longest_closed_run(weekly: &[Vec<OpenRange>; 7], holidays: &BTreeSet<Date>) -> Option<ClosedRun> {
    let closed = |date: Date| holidays.contains(&date) || weekly[weekday_index(date.weekday())].is_empty();
    let step = |date: Date, forward: bool| if forward { date.tomorrow().ok() } else { date.yesterday().ok() };
    let run_end = |from: Date, forward: bool| {
        let mut end = from;
        while let Some(next) = step(end, forward).filter(|&next| closed(next)) {
            end = next;
        }
        end
    };
    let mut longest: Option<ClosedRun> = None;
    let mut covered_until: Option<Date> = None;
    for &holiday in holidays {
        if covered_until.is_some_and(|until| holiday <= until) {
            continue;
        }
        let (first, last) = (run_end(holiday, false), run_end(holiday, true));
        covered_until = Some(last);
        let days = usize::try_from((last - first).get_days()).unwrap_or(0) + 1;
        if longest.as_ref().is_none_or(|run| days > run.days) {
            longest = Some(ClosedRun { first, last, days });
        }
    }
    longest
}

fn weekday_index(weekday: Weekday) -> usize {
    usize::try_from(weekday.to_monday_zero_offset()).unwrap_or(0)
}

/// A deadline and the work it took.
#[derive(Debug)]
struct Count {
    due: OffsetDateTime,
    /// Open ranges stepped over.
    open_ranges: usize,
    /// Local days looked at.
    days: usize,
}

/// A valid calendar, ready to compute deadlines.
#[derive(Debug, Clone)]
pub struct Calendar {
    zone: TimeZone,
    weekly: [Vec<OpenRange>; 7],
    holidays: BTreeSet<Date>,
}

impl Calendar {
    /// Returns the calendar `config` describes, or every problem
    /// [`CalendarConfig::validate`] reports.
    pub fn new(config: &CalendarConfig) -> Result<Calendar, CalendarError> {
        config.compile().map_err(|problems| CalendarError { problems })
    }

    /// Returns when `minutes` of open time have passed from `start`; a start outside
    /// the open hours begins counting at the next opening. A deadline the calendar
    /// cannot reach is [`NEVER_DUE`].
    pub fn due(&self, start: OffsetDateTime, minutes: u32) -> OffsetDateTime {
        self.count(start, minutes).due
    }

    /// Counts `minutes` of open time from `start`, one open range at a time, over at
    /// most [`MAX_DUE_DAYS`] local days.
    fn count(&self, start: OffsetDateTime, minutes: u32) -> Count {
        let offset = start.offset();
        let mut count = Count { due: NEVER_DUE, open_ranges: 0, days: 0 };
        let Ok(start) = Timestamp::from_nanosecond(start.unix_timestamp_nanos()) else {
            return count;
        };
        let mut remaining = SignedDuration::from_mins(i64::from(minutes));
        // The day before the start's local date too, in case a fold at midnight puts
        // the start on a local date earlier than an open range that contains it.
        let mut date = self.zone.to_datetime(start).date().yesterday().ok();
        while let Some(day) = date.filter(|_| count.days <= MAX_DUE_DAYS) {
            count.days += 1;
            if !self.holidays.contains(&day) {
                for range in &self.weekly[weekday_index(day.weekday())] {
                    let (Some(opens), Some(closes)) =
                        (self.instant(day, range.start), self.instant(day, range.end))
                    else {
                        return count;
                    };
                    let opens = opens.max(start);
                    if closes <= opens {
                        continue;
                    }
                    count.open_ranges += 1;
                    let open = closes.duration_since(opens);
                    if remaining <= open {
                        let due = opens
                            .checked_add(remaining)
                            .ok()
                            .and_then(|due| to_offset_date_time(due, offset));
                        count.due = due.unwrap_or(NEVER_DUE);
                        return count;
                    }
                    remaining -= open;
                }
            }
            date = day.tomorrow().ok();
        }
        count
    }

    /// Returns the instant the wall clock first shows `minute` minutes after the start
    /// of local `day` (1440 is the next midnight): a time the spring-forward gap skips
    /// is the instant of the jump, one the fall-back fold repeats its first occurrence.
    fn instant(&self, day: Date, minute: u16) -> Option<Timestamp> {
        let wall = day
            .to_datetime(Time::midnight())
            .checked_add(SignedDuration::from_mins(i64::from(minute)))
            .ok()?;
        let ambiguous = self.zone.to_ambiguous_timestamp(wall);
        match ambiguous.offset() {
            AmbiguousOffset::Gap { after, .. } => {
                // `wall` read with the offset after the jump is an instant before it.
                let before_jump = after.to_timestamp(wall).ok()?;
                self.zone.following(before_jump).next().map(|transition| transition.timestamp())
            }
            AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => ambiguous.earlier().ok(),
        }
    }
}

/// Returns `instant` at `offset`, the start's, as a calendar-time deadline keeps it.
fn to_offset_date_time(instant: Timestamp, offset: UtcOffset) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(instant.as_nanosecond()).ok()?.checked_to_offset(offset)
}

/// How a queue's SLA target is counted.
#[derive(Debug, Clone)]
pub enum SlaClock {
    /// Every minute counts.
    Calendar,
    /// Only the open hours of the calendar count.
    Business(Calendar),
}

impl SlaClock {
    /// Returns when a ticket that arrived at `start` with a target of `minutes` is
    /// due; a deadline that cannot be represented is [`NEVER_DUE`].
    pub fn due(&self, start: OffsetDateTime, minutes: u32) -> OffsetDateTime {
        match self {
            SlaClock::Calendar => {
                start.checked_add(Duration::minutes(i64::from(minutes))).unwrap_or(NEVER_DUE)
            }
            SlaClock::Business(calendar) => calendar.due(start, minutes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use jiff::ToSpan;
    use proptest::prelude::*;
    use time::format_description::well_known::Rfc3339;

    fn at(text: &str) -> OffsetDateTime {
        OffsetDateTime::parse(text, &Rfc3339).unwrap()
    }

    fn config(time_zone: &str, hours: WeeklyHours, holidays: &[&str]) -> CalendarConfig {
        CalendarConfig {
            time_zone: time_zone.to_string(),
            hours,
            holidays: holidays.iter().map(|day| day.to_string()).collect(),
        }
    }

    fn weekdays(hours: &str) -> WeeklyHours {
        let day = Some(hours.to_string());
        WeeklyHours {
            mon: day.clone(),
            tue: day.clone(),
            wed: day.clone(),
            thu: day.clone(),
            fri: day,
            ..WeeklyHours::default()
        }
    }

    fn sundays(hours: &str) -> WeeklyHours {
        WeeklyHours { sun: Some(hours.to_string()), ..WeeklyHours::default() }
    }

    /// The calendar of the pipeline-file example: Berlin, 08:00-18:00, Fridays to 16:00.
    fn emea() -> Calendar {
        let toml = r#"
            time_zone = "Europe/Berlin"
            hours = { mon = "08:00-18:00", tue = "08:00-18:00", wed = "08:00-18:00", thu = "08:00-18:00", fri = "08:00-16:00" }
            holidays = ["2026-12-24", "2026-12-25", "2026-12-26"]
        "#;
        Calendar::new(&toml::from_str(toml).unwrap()).unwrap()
    }

    fn calendar(time_zone: &str, hours: WeeklyHours) -> Calendar {
        Calendar::new(&config(time_zone, hours, &[])).unwrap()
    }

    fn problems(config: &CalendarConfig) -> Vec<(String, String)> {
        config.validate().into_iter().map(|p| (p.key, p.message)).collect()
    }

    #[test]
    fn a_friday_afternoon_ticket_in_berlin_is_due_monday_morning() {
        // Friday 15:30 CET: 30 minutes on Friday, 30 more from Monday 08:00.
        let due = emea().due(at("2026-11-27T14:30:00Z"), 60);
        assert_eq!(due, at("2026-11-30T07:30:00Z"));
        // Arriving after Friday's closing, the count starts on Monday.
        assert_eq!(emea().due(at("2026-11-27T17:30:00Z"), 60), at("2026-11-30T08:00:00Z"));
    }

    #[test]
    fn a_target_spans_the_lunch_break() {
        let calendar = calendar("Europe/Berlin", weekdays("08:00-12:00,13:00-17:00"));
        // Wednesday 11:30 CET + 60 open minutes: 11:30-12:00, then 13:00-13:30.
        assert_eq!(calendar.due(at("2026-11-25T10:30:00Z"), 60), at("2026-11-25T12:30:00Z"));
        // Arriving during lunch starts at 13:00.
        assert_eq!(calendar.due(at("2026-11-25T11:15:00Z"), 15), at("2026-11-25T12:15:00Z"));
    }

    #[test]
    fn holidays_are_skipped_whole() {
        // Wednesday 23 December 17:30 CET: 30 minutes, then Christmas Eve and Day
        // (holidays), Saturday 26th (a holiday and closed anyway), Sunday, and Monday
        // 28th from 08:00.
        assert_eq!(emea().due(at("2026-12-23T16:30:00Z"), 60), at("2026-12-28T07:30:00Z"));
    }

    #[test]
    fn the_clock_change_in_berlin_makes_days_of_23_and_25_hours() {
        let calendar = calendar("Europe/Berlin", sundays("00:00-24:00"));
        // Sunday 29 March 2026 opens at 00:00 CET and closes at 24:00 CEST: 23 hours.
        let saturday = at("2026-03-28T12:00:00Z");
        assert_eq!(calendar.due(saturday, 23 * 60), at("2026-03-29T22:00:00Z"));
        assert_eq!(calendar.due(saturday, 23 * 60 + 1), at("2026-04-04T22:01:00Z"));
        // Sunday 25 October 2026 opens at 00:00 CEST and closes at 24:00 CET: 25 hours.
        let saturday = at("2026-10-24T12:00:00Z");
        assert_eq!(calendar.due(saturday, 25 * 60), at("2026-10-25T23:00:00Z"));
        assert_eq!(calendar.due(saturday, 25 * 60 + 1), at("2026-10-31T23:01:00Z"));
    }

    #[test]
    fn business_hours_across_the_clock_change_in_berlin_are_local_wall_time() {
        // Friday 27 March 17:00 CET: 60 minutes on Friday, 60 from Monday 08:00 CEST.
        assert_eq!(emea().due(at("2026-03-27T14:00:00Z"), 120), at("2026-03-30T07:00:00Z"));
        // Friday 23 October 15:00 CEST: 60 minutes on Friday, 60 from Monday 08:00 CET.
        assert_eq!(emea().due(at("2026-10-23T13:00:00Z"), 120), at("2026-10-26T08:00:00Z"));
    }

    #[test]
    fn the_clock_change_in_new_york_makes_days_of_23_and_25_hours() {
        let calendar = calendar("America/New_York", sundays("00:00-24:00"));
        // Sunday 8 March 2026: 00:00 EST to 24:00 EDT.
        assert_eq!(calendar.due(at("2026-03-07T12:00:00Z"), 23 * 60), at("2026-03-09T04:00:00Z"));
        // Sunday 1 November 2026: 00:00 EDT to 24:00 EST.
        assert_eq!(calendar.due(at("2026-10-31T12:00:00Z"), 25 * 60), at("2026-11-02T05:00:00Z"));
    }

    #[test]
    fn hours_in_the_skipped_or_repeated_hour_count_real_minutes() {
        // 02:00-04:00 on 8 March in New York: 02:00-03:00 does not exist, so the range
        // opens at the jump (03:00 EDT, 07:00Z) and lasts one hour.
        let spring = calendar("America/New_York", sundays("02:00-04:00"));
        let saturday = at("2026-03-07T12:00:00Z");
        assert_eq!(spring.due(saturday, 60), at("2026-03-08T08:00:00Z"));
        assert_eq!(spring.due(saturday, 61), at("2026-03-15T06:01:00Z"));
        // 01:30-03:00 on 1 November: from the first 01:30 (EDT, 05:30Z) to 03:00 EST
        // (08:00Z), two and a half hours.
        let fall = calendar("America/New_York", sundays("01:30-03:00"));
        let saturday = at("2026-10-31T12:00:00Z");
        assert_eq!(fall.due(saturday, 150), at("2026-11-01T08:00:00Z"));
        assert_eq!(fall.due(saturday, 151), at("2026-11-08T06:31:00Z"));
    }

    #[test]
    fn a_start_at_opening_counts_from_it_and_one_at_closing_from_the_next_opening() {
        let monday_opening = at("2026-11-30T07:00:00Z");
        assert_eq!(emea().due(monday_opening, 1), at("2026-11-30T07:01:00Z"));
        // The whole day ends exactly at closing, not at the next opening.
        assert_eq!(emea().due(monday_opening, 600), at("2026-11-30T17:00:00Z"));
        let monday_closing = at("2026-11-30T17:00:00Z");
        assert_eq!(emea().due(monday_closing, 1), at("2026-12-01T07:01:00Z"));
    }

    #[test]
    fn a_deadline_keeps_the_offset_of_the_start() {
        let due = emea().due(at("2026-11-27T15:30:00+01:00"), 60);
        assert_eq!(due.offset(), UtcOffset::from_hms(1, 0, 0).unwrap());
        assert_eq!(due, at("2026-11-30T08:30:00+01:00"));
    }

    #[test]
    fn a_large_target_steps_over_open_ranges_not_minutes() {
        let count = emea().count(at("2026-01-05T07:00:00Z"), 100_000);
        // 100,000 minutes at 48 hours a week (the clocks change on Sundays, when it is
        // closed) is 34 weeks, to Monday 31 August 08:00 CEST, and 34 hours 40 minutes:
        // Monday to Wednesday and 4 hours 40 minutes of Thursday 3 September.
        assert_eq!(count.due, at("2026-09-03T10:40:00Z"));
        // One range a working day: 34 weeks of five, and four more.
        assert_eq!(count.open_ranges, 34 * 5 + 4);
    }

    #[test]
    fn a_target_beyond_the_horizon_is_never_due_in_bounded_work() {
        let count = emea().count(at("2026-01-05T07:00:00Z"), u32::MAX);
        assert_eq!(count.due, NEVER_DUE);
        assert!(count.days <= MAX_DUE_DAYS + 1, "{} days looked at", count.days);
        let always =
            calendar("UTC", WeeklyHours { sat: Some("00:00-24:00".into()), ..weekdays("00:00-24:00") });
        assert_eq!(always.due(at("9999-12-01T00:00:00Z"), 60 * 24 * 60), NEVER_DUE);
        assert_eq!(SlaClock::Calendar.due(at("9999-01-01T00:00:00Z"), u32::MAX), NEVER_DUE);
    }

    #[test]
    fn long_holidays_are_scanned_to_their_end() {
        let days: Vec<String> =
            date(2026, 1, 1).series(1.day()).take(1000).map(|day| day.to_string()).collect();
        let holidays: Vec<&str> = days.iter().map(String::as_str).collect();
        let calendar = Calendar::new(&config("Europe/Berlin", weekdays("08:00-18:00"), &holidays)).unwrap();
        // 1000 days from 1 January 2026 end on 26 September 2028, a Tuesday; the
        // Wednesday after opens at 08:00 CEST.
        assert_eq!(calendar.due(at("2026-01-01T00:00:00Z"), 1), at("2028-09-27T06:01:00Z"));
    }

    #[test]
    fn the_calendar_clock_counts_every_minute() {
        let due = SlaClock::Calendar.due(at("2026-11-27T17:30:00Z"), 60);
        assert_eq!(due, at("2026-11-27T18:30:00Z"));
        assert_eq!(
            SlaClock::Business(emea()).due(at("2026-11-27T17:30:00Z"), 60),
            at("2026-11-30T08:00:00Z")
        );
    }

    #[test]
    fn each_bad_setting_is_named_by_its_key() {
        let mut hours = weekdays("08:00-18:00");
        hours.mon = Some("18:00-08:00".into());
        hours.tue = Some("08:00-12:00,11:00-13:00".into());
        hours.wed = Some("8-18".into());
        hours.thu = Some("24:00-24:00".into());
        hours.fri = Some("08:00-24:01".into());
        hours.sat = Some("09:00-09:00".into());
        let bad = config("Europe/Berlinn", hours, &["2026-12-24", "2026-02-30", "20261225"]);
        let problems = problems(&bad);
        let keys: Vec<&str> = problems.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "time_zone",
                "hours.mon",
                "hours.tue",
                "hours.wed",
                "hours.thu",
                "hours.fri",
                "hours.sat",
                "holidays[1]",
                "holidays[2]"
            ]
        );
        let message = |key: &str| &problems.iter().find(|(k, _)| k == key).unwrap().1;
        assert!(
            message("time_zone").contains("unknown time zone \"Europe/Berlinn\""),
            "{}",
            message("time_zone")
        );
        assert!(
            message("hours.mon").contains("\"18:00-08:00\" ends before it starts"),
            "{}",
            message("hours.mon")
        );
        assert!(
            message("hours.tue").contains("08:00-12:00 and 11:00-13:00 overlap"),
            "{}",
            message("hours.tue")
        );
        assert!(message("hours.wed").contains("use HH:MM-HH:MM"), "{}", message("hours.wed"));
        assert!(message("hours.thu").contains("starts at 24:00"), "{}", message("hours.thu"));
        assert!(message("hours.fri").contains("use HH:MM-HH:MM"), "{}", message("hours.fri"));
        assert!(message("hours.sat").contains("ends before it starts"), "{}", message("hours.sat"));
        assert!(
            message("holidays[1]").contains("\"2026-02-30\" is not a date"),
            "{}",
            message("holidays[1]")
        );
        assert!(message("holidays[2]").contains("use YYYY-MM-DD"), "{}", message("holidays[2]"));
        let error = Calendar::new(&bad).unwrap_err();
        assert_eq!(error.problems.len(), 9);
        assert!(error.to_string().starts_with("invalid calendar: time_zone: unknown time zone"), "{error}");
    }

    #[test]
    fn ranges_that_touch_or_come_unsorted_and_24_00_are_valid() {
        let hours = weekdays("13:00-24:00, 00:00 - 08:00,08:00-12:00");
        assert_eq!(problems(&config("Asia/Tokyo", hours, &[])), []);
    }

    #[test]
    fn a_calendar_never_open_is_invalid() {
        let never = config("Europe/Berlin", WeeklyHours::default(), &[]);
        let problems = problems(&never);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "hours");
        assert!(problems[0].1.contains("no day has open hours"), "{}", problems[0].1);
    }

    #[test]
    fn more_than_three_years_closed_in_a_row_is_invalid() {
        // Holidays on the 1098 days from Monday 5 January 2026 to Saturday 6 January
        // 2029: with the weekends around them the run is Saturday 3 January 2026 to
        // Sunday 7 January 2029.
        let days: Vec<String> =
            date(2026, 1, 5).series(1.day()).take(MAX_CLOSED_DAYS).map(|day| day.to_string()).collect();
        let holidays: Vec<&str> = days.iter().map(String::as_str).collect();
        let problems = problems(&config("Europe/Berlin", weekdays("08:00-18:00"), &holidays));
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "holidays");
        assert!(
            problems[0].1.starts_with("1101 consecutive days from 2026-01-03 to 2029-01-07 are closed"),
            "{}",
            problems[0].1
        );
        let shorter = &holidays[..MAX_CLOSED_DAYS - 10];
        assert_eq!(super::tests::problems(&config("Europe/Berlin", weekdays("08:00-18:00"), shorter)), []);
    }

    #[test]
    fn an_unknown_day_or_setting_is_a_parse_error() {
        let misspelt = "time_zone = 'UTC'\nhours = { monday = '08:00-18:00' }";
        let error = toml::from_str::<CalendarConfig>(misspelt).unwrap_err().to_string();
        assert!(error.contains("unknown field `monday`"), "{error}");
        let unknown = "time_zone = 'UTC'\nholiday = ['2026-12-24']";
        assert!(toml::from_str::<CalendarConfig>(unknown).is_err());
    }

    /// Whether the queue is open during the minute starting at `instant`, by reading
    /// the wall clock: the reference the range-by-range count must agree with.
    fn open_at(calendar: &Calendar, instant: Timestamp) -> bool {
        let wall = calendar.zone.to_datetime(instant);
        let minute = u16::try_from(wall.hour()).unwrap() * 60 + u16::try_from(wall.minute()).unwrap();
        !calendar.holidays.contains(&wall.date())
            && calendar.weekly[weekday_index(wall.weekday())]
                .iter()
                .any(|range| range.start <= minute && minute < range.end)
    }

    /// Returns the end of the `minutes`-th open minute from `start`, walking minute by
    /// minute.
    fn due_by_walking(calendar: &Calendar, start: OffsetDateTime, minutes: u32) -> OffsetDateTime {
        let mut instant = Timestamp::from_second(start.unix_timestamp()).unwrap();
        let mut counted = 0;
        while counted < minutes {
            counted += u32::from(open_at(calendar, instant));
            instant += SignedDuration::from_mins(1);
        }
        OffsetDateTime::from_unix_timestamp(instant.as_second()).unwrap()
    }

    fn dst_calendars() -> [Calendar; 3] {
        let mut split = weekdays("08:00-12:00,13:00-17:30");
        split.sun = Some("00:00-01:00,03:00-24:00".into());
        [
            calendar("Europe/Berlin", split.clone()),
            calendar("America/New_York", split),
            Calendar::new(&config("Europe/Berlin", sundays("00:00-24:00"), &["2026-03-29"])).unwrap(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_deadline_agrees_with_a_walk_over_the_wall_clock(
            which in 0usize..3,
            // Whole minutes within three weeks before each 2026 clock change.
            transition in prop::sample::select(vec![
                "2026-03-08T07:00:00Z", "2026-03-29T01:00:00Z", "2026-10-25T01:00:00Z", "2026-11-01T06:00:00Z",
            ]),
            minutes_before in 0i64..(21 * 24 * 60),
            minutes in 1u32..3000,
        ) {
            let calendar = &dst_calendars()[which];
            let start = at(transition) - Duration::minutes(minutes_before);
            prop_assert_eq!(calendar.due(start, minutes), due_by_walking(calendar, start, minutes));
        }

        #[test]
        fn the_deadline_is_never_before_the_start_and_grows_with_the_target(
            seconds in 1_700_000_000i64..2_100_000_000,
            nanos in 0i128..1_000_000_000,
            shorter in 0u32..100_000,
            extra in 0u32..100_000,
        ) {
            let start = OffsetDateTime::from_unix_timestamp_nanos(i128::from(seconds) * 1_000_000_000 + nanos).unwrap();
            for calendar in dst_calendars().into_iter().chain([emea()]) {
                let (near, far) = (calendar.due(start, shorter), calendar.due(start, shorter + extra));
                prop_assert!(near >= start, "{} before {}", near, start);
                prop_assert!(far >= near, "{} before {}", far, near);
            }
        }
    }
}
