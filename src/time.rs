//! Timestamps as images, registries and Prefect servers write them.

use std::time::SystemTime;

/// RFC 3339 with any offset (`…Z`, `…+02:00`: jiff honours it, where humantime's weak
/// parser silently reads every time as UTC), else the weak form without an offset, read
/// as UTC (`2023-01-01 10:11:12`).
pub fn parse(text: &str) -> Option<SystemTime> {
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Some(SystemTime::from(t)),
        Err(_) => humantime::parse_rfc3339_weak(text).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn offsets_are_honoured() {
        assert_eq!(
            parse("2023-01-01T10:11:12+02:00"),
            parse("2023-01-01T08:11:12Z")
        );
        assert!(parse("2023-01-01 10:11:12").is_some());
        assert!(parse("soon").is_none());
    }
}
