//! Times as AWS writes them in events: RFC 3339 in UTC, parsed and formatted with the `time`
//! crate (already in every binary through the AWS SDK) instead of calendar arithmetic of our
//! own. Accepted: `2026-11-24T10:00:00Z`, fractional seconds (`…00.25Z`), the `+00:00`
//! offset, and `+0000` as CloudWatch writes it in an alarm's direct Lambda payload. Other
//! offsets, lower-case or space separators and years before 1970 are refused: every time
//! greenlight reads is UTC from AWS, and anything else is a malformed event.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The longest time text looked at (a date, a time with nanoseconds and an offset fit).
const MAX_LEN: usize = 40;

/// Why a time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time {0} is not an RFC 3339 UTC time like 2026-11-24T10:00:00Z")]
pub struct TimeError(String);

/// Milliseconds since the epoch of an RFC 3339 UTC time (fractions below a millisecond are
/// dropped; a leap second `…:60` reads as the millisecond before the next second).
pub fn parse_ms(text: &str) -> Result<u64, TimeError> {
    let bad = || TimeError(crate::ids::quote(text));
    if text.len() > MAX_LEN {
        return Err(bad());
    }
    // CloudWatch's `+0000` is ISO 8601's basic offset; RFC 3339 spells it `+00:00`.
    let utc = match text.strip_suffix("+0000") {
        Some(body) => format!("{body}+00:00"),
        None => text.to_string(),
    };
    let utc_offset = utc.ends_with('Z') || utc.ends_with("+00:00");
    // `time` accepts any separator between date and time (RFC 3339's note); AWS writes `T`.
    if !utc_offset || utc.as_bytes().get(10) != Some(&b'T') {
        return Err(bad());
    }
    let at = OffsetDateTime::parse(&utc, &Rfc3339).map_err(|_| bad())?;
    if at.year() < 1970 {
        return Err(bad());
    }
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())
}

/// Seconds since the epoch as an RFC 3339 UTC time (`2026-11-24T10:00:00Z`). A time past the
/// year 9999 (no clock of ours reads one) shows as the last second of 9999.
pub fn format(epoch_s: u64) -> String {
    let at = i64::try_from(epoch_s)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or_else(|| {
            time::PrimitiveDateTime::new(time::Date::MAX, time::Time::from_hms(23, 59, 59).expect("a time"))
                .assume_utc()
        });
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_times_aws_writes() {
        let table = [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-11-24T10:00:00Z", 1_795_514_400_000),
            ("2026-11-24T10:00:00.25Z", 1_795_514_400_250),
            ("2026-11-24T10:00:00.2509Z", 1_795_514_400_250),
            ("2024-02-29T23:59:59+00:00", 1_709_251_199_000),
            // A CloudWatch alarm's direct Lambda payload.
            ("2026-11-24T10:04:41.120+0000", 1_795_514_681_120),
            ("2016-12-31T23:59:60Z", 1_483_228_799_999),
        ];
        for (text, want) in table {
            assert_eq!(parse_ms(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn formats_and_reads_back() {
        for (epoch_s, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_795_514_400, "2026-11-24T10:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (253_402_300_799, "9999-12-31T23:59:59Z"),
            (u64::MAX, "9999-12-31T23:59:59Z"),
        ] {
            assert_eq!(format(epoch_s), text);
            if epoch_s < 253_402_300_800 {
                assert_eq!(parse_ms(text), Ok(epoch_s * 1000), "{text} reads back");
            }
        }
    }

    #[test]
    fn refuses_what_is_not_a_utc_time_from_aws() {
        for bad in [
            "",
            "2026-11-24",
            "2026-11-24T10:00:00",
            "2026-13-01T00:00:00Z",
            "2026-11-24T10:00:00+02:00",
            "2026-11-24T10:00:00+0200",
            "2026-11-24T10:00:00-00:00",
            "2026-11-24T10:00:00z",
            "2026-11-24t10:00:00Z",
            "2026-11-24 10:00:00Z",
            "2026-1-24T10:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-11-24T10:00:60Z", // a leap second only ends a month
            "2026-11-24T10:00:00.Z",
            "2026-11-24T10:00:00.1234567890123456789012Z",
            // Calendar dates only (2026-02-31 was once read as 2026-03-03).
            "2026-02-31T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2100-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-11-00T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "\u{ff12}026-11-24T10:00:00Z",
        ] {
            assert!(parse_ms(bad).is_err(), "{bad:?}");
        }
        for good in ["2024-02-29T00:00:00Z", "2000-02-29T00:00:00Z", "2026-12-31T23:59:59Z"] {
            assert!(parse_ms(good).is_ok(), "{good:?}");
        }
    }
}
