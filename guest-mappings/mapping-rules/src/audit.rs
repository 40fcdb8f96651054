//! The Audit column: a short, newest-last trail of what the mapping changed.
//!
//! A line is added only when the mapping changes something, so re-running an unchanged
//! referral produces exactly the columns the opportunity already has. A line depends on the
//! context only through `event` and `timestamp` (to the second): not on `mapping_version`, so
//! a rebuilt but identical component gives identical output, and not on sub-second digits,
//! which hosts format differently.

use crate::Context;

/// Appends a line for `summary` to the `existing` trail, keeping at most `max_lines`.
pub fn append(ctx: &Context, existing: Option<&str>, summary: &str, max_lines: usize) -> String {
    let line = format!("{} {}: {summary}", to_seconds(&ctx.timestamp), ctx.event);
    let mut lines: Vec<&str> = existing
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines.push(&line);
    let skip = lines.len().saturating_sub(max_lines);
    lines[skip..].join("\n")
}

/// `2026-11-24T12:00:00.000Z` or `…+00:00` → `2026-11-24T12:00:00Z`; other text unchanged.
fn to_seconds(timestamp: &str) -> String {
    let t = timestamp.trim();
    let (Some(head), Some(mut rest)) = (t.get(..19), t.get(19..)) else {
        return t.to_owned();
    };
    let shape_ok = head.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b'T' || b == b't',
        13 | 16 => b == b':',
        _ => b.is_ascii_digit(),
    });
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        rest = &fraction[digits..];
    }
    if shape_ok && matches!(rest, "Z" | "z" | "+00:00" | "-00:00") {
        format!("{}T{}Z", &head[..10], &head[11..])
    } else {
        t.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::to_seconds;

    #[test]
    fn timestamps_are_cut_to_the_second_in_utc_only() {
        assert_eq!(to_seconds("2026-11-24T12:00:00Z"), "2026-11-24T12:00:00Z");
        assert_eq!(
            to_seconds("2026-11-24T12:00:00.000Z"),
            "2026-11-24T12:00:00Z"
        );
        assert_eq!(
            to_seconds("2026-11-24t12:00:00.123456+00:00"),
            "2026-11-24T12:00:00Z"
        );
        assert_eq!(
            to_seconds("2026-11-24T12:00:00+01:00"),
            "2026-11-24T12:00:00+01:00"
        );
        assert_eq!(to_seconds("yesterday"), "yesterday");
        assert_eq!(
            to_seconds("2026-11-24T12:00:0é.0Z"),
            "2026-11-24T12:00:0é.0Z"
        );
    }
}
