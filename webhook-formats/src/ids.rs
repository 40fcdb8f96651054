//! Record ids taken from deliveries. An id ends up in URLs of both services and in SQLite
//! keys, so anything but a plain token (GUIDs, Partner Center ids) is refused rather than
//! escaped: there is no legitimate id with a slash, a dot-dot or a query in it.

/// Whether `id` looks like a record id (GUIDs, Partner Center ids): no path or query tricks.
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 100
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_tokens_are_ids() {
        assert!(plausible_id("7f3c2a52-0000-4000-8000-000000000001"));
        assert!(plausible_id("abc_1"));
        for bad in ["", "../x", "a/b", "a?b", "a b", "é", &"x".repeat(101)] {
            assert!(!plausible_id(bad), "{bad}");
        }
    }
}
