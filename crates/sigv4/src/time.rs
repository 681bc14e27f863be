//! `X-Amz-Date` (`yyyymmddThhmmssZ`) parsing and formatting, without a date-time dependency.
//!
//! The day arithmetic is the proleptic-Gregorian "days from civil" conversion, done in i64 so
//! that no four-digit year can overflow.

use std::time::SystemTime;

/// Parses `yyyymmddThhmmssZ` into seconds since the Unix epoch. `None` unless the value has
/// exactly that shape and names a real calendar date and time of day.
pub(crate) fn parse_amz_date(b: &[u8]) -> Option<i64> {
    let &[
        y0,
        y1,
        y2,
        y3,
        mo0,
        mo1,
        d0,
        d1,
        b'T',
        h0,
        h1,
        mi0,
        mi1,
        s0,
        s1,
        b'Z',
    ] = b
    else {
        return None;
    };
    let year = digits(&[y0, y1, y2, y3])?;
    let month = digits(&[mo0, mo1])?;
    let day = digits(&[d0, d1])?;
    let hour = digits(&[h0, h1])?;
    let minute = digits(&[mi0, mi1])?;
    let second = digits(&[s0, s1])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Formats seconds since the Unix epoch as `yyyymmddThhmmssZ`.
pub(crate) fn format_amz_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Nanoseconds since the Unix epoch (negative before it), saturating far outside ±10^20 years.
pub(crate) fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => i128::try_from(e.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    }
}

fn digits(ds: &[u8]) -> Option<i64> {
    ds.iter().try_fold(0i64, |acc, &c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of the given proleptic-Gregorian date (month 1–12).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    // Count years from March so that the leap day is the last day of the "year".
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_known_dates() {
        assert_eq!(parse_amz_date(b"19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date(b"20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date(b"20000229T235959Z"), Some(951_868_799));
        assert_eq!(parse_amz_date(b"19691231T235959Z"), Some(-1));
    }

    #[test]
    fn rejects_malformed_dates() {
        for bad in [
            &b""[..],
            b"20150830T123600",
            b"20150830T123600z",
            b"20150830 123600Z",
            b"2015-08-30T12:36:00Z",
            b"20151330T123600Z",
            b"20150230T123600Z",
            b"20190229T000000Z",
            b"20150800T123600Z",
            b"20150830T243600Z",
            b"20150830T126000Z",
            b"20150830T123660Z",
            b"2015083aT123600Z",
            b"+0150830T123600Z",
            b"20150830T123600Z ",
        ] {
            assert_eq!(
                parse_amz_date(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn format_round_trips() {
        for s in [
            "19700101T000000Z",
            "20150830T123600Z",
            "20000229T235959Z",
            "19691231T235959Z",
            "99991231T235959Z",
            "00000101T000000Z",
        ] {
            let secs = parse_amz_date(s.as_bytes()).unwrap_or_else(|| panic!("{s}"));
            assert_eq!(format_amz_date(secs), s);
        }
    }

    #[test]
    fn every_day_round_trips() {
        // Walk day by day across several leap cycles, including 2000 and 2100.
        for days in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
        }
    }

    #[test]
    fn unix_nanos_signs() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        assert_eq!(unix_nanos(t), 5_000_000_000);
        let t = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(unix_nanos(t), -5_000_000_000);
    }
}
