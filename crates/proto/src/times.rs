//! Times as people read them in messages and output.

/// Unix seconds as RFC 3339 (UTC, `2025-01-01T00:00:00Z`); the number
/// itself when it is out of the representable range.
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_and_keeps_out_of_range_numbers() {
        assert_eq!(super::rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(i64::MAX), i64::MAX.to_string());
    }
}
