//! Timestamps as images, registries and Prefect servers write them.

use std::time::SystemTime;

/// RFC 3339 with any offset (`…Z`, `…+02:00`: jiff honours it, where humantime's weak
/// parser silently reads every time as UTC), else the weak form without an offset, read
/// as UTC (`2023-01-01 10:11:12`). A time before 1970 is unknown: it is Go's zero time
/// (`0001-01-01T00:00:00Z`, what `crane append` and reproducible builds write), not a
/// date anything was made.
pub fn parse(text: &str) -> Option<SystemTime> {
    match text.parse::<jiff::Timestamp>() {
        Ok(t) if t < jiff::Timestamp::UNIX_EPOCH => None,
        Ok(t) => Some(SystemTime::from(t)),
        Err(_) => humantime::parse_rfc3339_weak(text).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn offsets_are_honoured() {
        assert!(parse("2023-01-01T08:11:12Z").is_some());
        assert_eq!(
            parse("2023-01-01T10:11:12+02:00"),
            parse("2023-01-01T08:11:12Z")
        );
        assert_eq!(parse("0001-01-01T00:00:00Z"), None, "Go's zero time");
        assert_eq!(parse("1970-01-01T00:00:00+01:00"), None);
        assert!(parse("2023-01-01 10:11:12").is_some());
        assert!(parse("soon").is_none());
    }
}
