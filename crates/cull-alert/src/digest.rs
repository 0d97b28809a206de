//! The durable state of an e-mail digest, and when a digest is due.
//!
//! A digest holds tickets whose Kafka offsets the runtime commits once the state
//! is on disk, so the state is the only copy of what the next digest lists: it is
//! written whole to a temporary file, synced, renamed over the old one and the
//! directory synced, so that a crash leaves the old state or the new one, never a
//! torn file. It keeps only what a digest shows (an [`Item`], not the ticket), and at
//! most `max_items` of them per recipient set with a count of the rest, so that a
//! flood of tickets cannot grow it without bound.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use cull_model::Priority;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::{RoundMode, Timestamp, ToSpan, Unit, ZonedDateTime, ZonedDateTimeRound};
use serde::{Deserialize, Serialize};

use crate::config::{DigestSort, EmailMode};

/// Parses `HH:MM`.
pub fn parse_time_of_day(text: &str) -> Option<(u8, u8)> {
    let (hour, minute) = text.split_once(':')?;
    let (hour, minute): (u8, u8) = (hour.parse().ok()?, minute.parse().ok()?);
    (hour < 24 && minute < 60 && text.len() == 5).then_some((hour, minute))
}

/// When a digest of a mode goes.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The mode (never `as-it-happens`).
    pub mode: EmailMode,
    /// `send_at`: hour and minute.
    pub send_at: (u8, u8),
    /// `weekday`.
    pub weekday: Weekday,
    /// `timezone`.
    pub timezone: TimeZone,
}

/// Returns the weekday of a `weekday` setting.
pub fn parse_weekday(text: &str) -> Option<Weekday> {
    let position = crate::config::WEEKDAYS.iter().position(|day| *day == text)?;
    Weekday::from_monday_one_offset(i8::try_from(position + 1).ok()?).ok()
}

impl Schedule {
    /// Returns when the digest of a period that is open at `now` goes: the first
    /// hour, `send_at` or weekly `send_at` strictly after `now`, in the time zone.
    /// A `send_at` that a DST gap skips goes at the first instant after the gap, and
    /// one that a fold repeats goes at its first occurrence (jiff's "compatible"
    /// rule), so no day loses its digest and none has two.
    pub fn next_due(&self, now: Timestamp) -> Timestamp {
        let local = now.to_zoned_datetime(self.timezone.clone());
        match self.mode {
            EmailMode::AsItHappens | EmailMode::Hourly => {
                let hour = local
                    .round(ZonedDateTimeRound::new().smallest(Unit::Hour).mode(RoundMode::Trunc))
                    .expect("an hour boundary is in range");
                hour.checked_add(1.hour()).expect("the next hour is in range").timestamp()
            }
            EmailMode::Daily => self.at_send_time(&local, |_| true),
            EmailMode::Weekly => self.at_send_time(&local, |day| day.weekday() == self.weekday),
        }
    }

    /// Returns the first `send_at` after `local` on a day that `wanted` accepts.
    fn at_send_time(&self, local: &ZonedDateTime, wanted: impl Fn(&jiff::civil::Date) -> bool) -> Timestamp {
        let (hour, minute) =
            (i8::try_from(self.send_at.0).unwrap_or(0), i8::try_from(self.send_at.1).unwrap_or(0));
        let mut day = local.date();
        loop {
            if wanted(&day) {
                let at = day
                    .at(hour, minute, 0, 0)
                    .to_zoned_datetime(self.timezone.clone())
                    .expect("a time of day is in range");
                if at.timestamp() > local.timestamp() {
                    return at.timestamp();
                }
            }
            day = day.tomorrow().expect("tomorrow is in range");
        }
    }
}

/// What a digest shows of one ticket revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The ticket id and revision: what a replay is recognized by.
    pub key: String,
    /// The ticket id: a later revision replaces the item of an earlier one, so a
    /// sink with `revisions = "all"` lists a ticket once, as it is now.
    pub ticket: String,
    /// The priority.
    pub priority: Priority,
    /// When the revision was made (Unix seconds), for "newest first".
    pub time: i64,
    /// When the first response is due (RFC 3339).
    pub sla_due_at: String,
    /// The rule's name.
    pub rule: String,
    /// The queue.
    pub queue: String,
    /// The mention's title, else its snippet.
    pub title: String,
    /// The snippet around the first match.
    pub snippet: String,
    /// The mention's URL.
    pub url: Option<String>,
    /// The mention in the console.
    pub console: Option<String>,
}

/// The pending digest of one set of recipients.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The recipients.
    pub to: Vec<String>,
    /// The best `max_items` items, in digest order.
    pub items: Vec<Item>,
    /// How many more items the period had.
    pub more: u64,
}

/// A sink's digest state, as it is on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// When the pending digests go (Unix seconds); none while nothing is pending.
    pub due: Option<i64>,
    /// The pending digests, by recipient set.
    pub groups: BTreeMap<String, Group>,
    /// The keys taken, with the due time of the digest they went or go into: those
    /// of the pending period and of the last one sent, so that a ticket replayed
    /// after its digest went (its offset not yet committed) is not listed again.
    pub taken: BTreeMap<String, i64>,
}

impl State {
    /// Adds `item` for recipients `to` unless its key was taken; returns whether it
    /// was added. Keeps the `max_items` best in `sort` order and counts the rest.
    pub fn add(&mut self, to: &[String], item: Item, due: i64, max_items: usize, sort: DigestSort) -> bool {
        if self.taken.contains_key(&item.key) {
            return false;
        }
        let due = *self.due.get_or_insert(due);
        self.taken.insert(item.key.clone(), due);
        let group =
            self.groups.entry(to.join(", ")).or_insert_with(|| Group { to: to.to_vec(), ..Group::default() });
        group.items.retain(|earlier| earlier.ticket != item.ticket);
        group.items.push(item);
        match sort {
            DigestSort::Priority => {
                group.items.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.time.cmp(&a.time)))
            }
            DigestSort::Time => group.items.sort_by_key(|item| std::cmp::Reverse(item.time)),
        }
        if group.items.len() > max_items {
            group.items.truncate(max_items);
            group.more += 1;
        }
        true
    }

    /// Returns how many items the pending digests hold, those counted only included.
    pub fn pending(&self) -> u64 {
        self.groups.values().map(|g| g.items.len() as u64 + g.more).sum()
    }

    /// Removes the digest of `group`, which the server accepted; once none is left,
    /// forgets the keys of periods before this one.
    pub fn sent(&mut self, group: &str) {
        self.groups.remove(group);
        if self.groups.is_empty() {
            if let Some(due) = self.due.take() {
                self.taken.retain(|_, period| *period >= due);
            }
        }
    }
}

/// Reads the state at `path`: an empty one when there is no file yet.
pub fn read(path: &Path) -> Result<State, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("{} is not a digest state: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes `state` to `path` atomically and durably.
pub fn write(path: &Path, state: &State) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", path.display());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| fail("create the directory of", e))?;
    let mut temp = PathBuf::from(path);
    temp.as_mut_os_string().push(".tmp");
    let bytes = serde_json::to_vec_pretty(state).expect("a digest state always serializes");
    let mut file = std::fs::File::create(&temp).map_err(|e| fail("create a temporary file for", e))?;
    file.write_all(&bytes).and_then(|()| file.sync_all()).map_err(|e| fail("write", e))?;
    std::fs::rename(&temp, path).map_err(|e| fail("rename into", e))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| fail("sync the directory of", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(mode: EmailMode, send_at: (u8, u8), weekday: Weekday) -> Schedule {
        Schedule { mode, send_at, weekday, timezone: TimeZone::get("Europe/Berlin").unwrap() }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn hourly_is_due_on_the_next_hour() {
        let hourly = schedule(EmailMode::Hourly, (8, 0), Weekday::Monday);
        assert_eq!(hourly.next_due(at("2026-11-25T10:20:00Z")), at("2026-11-25T11:00:00Z"));
        assert_eq!(hourly.next_due(at("2026-11-25T11:00:00Z")), at("2026-11-25T12:00:00Z"), "strictly after");
    }

    #[test]
    fn daily_is_at_send_at_in_the_zone_across_dst() {
        let daily = schedule(EmailMode::Daily, (8, 0), Weekday::Monday);
        // 08:00 in Berlin is 07:00 UTC in winter and 06:00 UTC in summer.
        assert_eq!(daily.next_due(at("2026-11-25T06:59:00Z")), at("2026-11-25T07:00:00Z"));
        assert_eq!(daily.next_due(at("2026-11-25T07:00:00Z")), at("2026-11-26T07:00:00Z"));
        // Spring forward on 2026-03-29: the digest of that day is at 06:00 UTC.
        assert_eq!(daily.next_due(at("2026-03-28T08:00:00Z")), at("2026-03-29T06:00:00Z"));
        // Fall back on 2026-10-25: 07:00 UTC.
        assert_eq!(daily.next_due(at("2026-10-24T07:00:00Z")), at("2026-10-25T07:00:00Z"));
        // 02:30 does not exist on 2026-03-29: the first instant after the gap.
        let night = schedule(EmailMode::Daily, (2, 30), Weekday::Monday);
        assert_eq!(night.next_due(at("2026-03-28T12:00:00Z")), at("2026-03-29T01:30:00Z"));
        // 02:30 is there twice on 2026-10-25: the first one, once.
        assert_eq!(night.next_due(at("2026-10-24T12:00:00Z")), at("2026-10-25T00:30:00Z"));
        assert_eq!(night.next_due(at("2026-10-25T00:30:00Z")), at("2026-10-26T01:30:00Z"));
    }

    #[test]
    fn weekly_is_on_the_weekday_at_send_at() {
        let weekly = schedule(EmailMode::Weekly, (9, 30), Weekday::Monday);
        // Wednesday 2026-11-25 → Monday 2026-11-30 09:30 CET.
        assert_eq!(weekly.next_due(at("2026-11-25T10:00:00Z")), at("2026-11-30T08:30:00Z"));
        // On Monday before 09:30: the same day; after: a week later.
        assert_eq!(weekly.next_due(at("2026-11-30T08:00:00Z")), at("2026-11-30T08:30:00Z"));
        assert_eq!(weekly.next_due(at("2026-11-30T08:30:00Z")), at("2026-12-07T08:30:00Z"));
        // Across the spring change (Sunday 2026-03-29): Monday 09:30 CEST is 07:30 UTC.
        assert_eq!(weekly.next_due(at("2026-03-25T10:00:00Z")), at("2026-03-30T07:30:00Z"));
        assert_eq!(parse_weekday("sunday"), Some(Weekday::Sunday));
        assert_eq!(parse_weekday("funday"), None);
    }

    fn item(key: &str, priority: Priority, time: i64) -> Item {
        Item {
            key: key.into(),
            ticket: key.split('.').next().unwrap_or(key).into(),
            priority,
            time,
            sla_due_at: String::new(),
            rule: String::new(),
            queue: String::new(),
            title: key.into(),
            snippet: String::new(),
            url: None,
            console: None,
        }
    }

    #[test]
    fn keeps_the_best_items_counts_the_rest_and_refuses_a_taken_key() {
        let mut state = State::default();
        let to = vec!["a@example.com".to_string()];
        for (key, priority, time) in
            [("a", Priority::P3, 1), ("b", Priority::P1, 2), ("c", Priority::P2, 3), ("d", Priority::P1, 4)]
        {
            assert!(state.add(&to, item(key, priority, time), 100, 3, DigestSort::Priority));
        }
        assert!(!state.add(&to, item("b", Priority::P1, 2), 100, 3, DigestSort::Priority), "a replay");
        let group = &state.groups["a@example.com"];
        let keys: Vec<&str> = group.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!((keys, group.more, state.pending()), (vec!["d", "b", "c"], 1, 4));
        state.sent("a@example.com");
        assert_eq!((state.due, state.pending()), (None, 0));
        assert!(
            !state.add(&to, item("a", Priority::P3, 1), 200, 3, DigestSort::Time),
            "sent in the last digest"
        );
        assert!(state.add(&to, item("e", Priority::P3, 5), 200, 3, DigestSort::Time));
        state.sent("a@example.com");
        assert!(
            state.add(&to, item("a", Priority::P3, 1), 300, 3, DigestSort::Time),
            "two periods ago: forgotten"
        );
        assert!(state.add(&to, item("a.r2", Priority::P1, 6), 300, 3, DigestSort::Time), "a later revision");
        let keys: Vec<&str> = state.groups["a@example.com"].items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["a.r2"], "it replaces the earlier one");
    }

    #[test]
    fn state_survives_a_write_and_a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/digest.json");
        assert_eq!(read(&path).unwrap(), State::default());
        let mut state = State::default();
        state.add(&["x@example.com".to_string()], item("k", Priority::P2, 1), 10, 5, DigestSort::Priority);
        write(&path, &state).unwrap();
        assert_eq!(read(&path).unwrap(), state);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(read(&path).unwrap_err().contains("digest.json is not a digest state"));
    }
}
