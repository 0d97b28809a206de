//! The durable state of an e-mail digest, and when a digest is due.

/// Parses `HH:MM`.
pub fn parse_time_of_day(text: &str) -> Option<(u8, u8)> {
    let (hour, minute) = text.split_once(':')?;
    let (hour, minute): (u8, u8) = (hour.parse().ok()?, minute.parse().ok()?);
    (hour < 24 && minute < 60 && text.len() == 5).then_some((hour, minute))
}
