//! OData string literals (`'O''Neil'`), the one place both clients' callers quote a value
//! for a `$filter`, an alternate key or a metadata name.
//!
//! A value written into a URL by hand has to be quoted for OData (the quote doubled) and then
//! percent-encoded, or a `&` ends the query parameter, a `+` turns into a space, a `#` cuts
//! the URL, a `%` starts an escape, and a space breaks a `$batch` request line. Quoting was
//! done in five places, each encoding a different subset; a value missed by one of them
//! silently matched the wrong rows (or none). Here: [`literal`] for a URL written as text
//! (the Dataverse client's paths and query strings, `$batch` parts), [`quote`] for a URL
//! builder that encodes query values itself (the Partner Center client's `$filter`, given
//! to `Url::query_pairs_mut`), which must not get them encoded twice.

/// `text` as an OData string literal: in single quotes, each quote doubled. For a value that a
/// URL builder encodes afterwards (otherwise [`literal`]).
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `text` as an OData string literal ready to be written into a URL (a path segment or a
/// query string): [`quote`]d, then percent-encoded (UTF-8) but for the unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) and the quotes, which stay readable.
pub fn literal(text: &str) -> String {
    let mut out = String::new();
    for b in quote(text).bytes() {
        if b.is_ascii_alphanumeric() || b"-._~'".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled_inside_the_literal() {
        assert_eq!(quote("O'Neil"), "'O''Neil'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("''"), "''''''");
        assert_eq!(literal("O'Neil"), "'O''Neil'");
    }

    #[test]
    fn query_characters_spaces_and_non_ascii_are_percent_encoded() {
        assert_eq!(
            literal("O'Neil & Sons+ 100%#1"),
            "'O''Neil%20%26%20Sons%2B%20100%25%231'"
        );
        assert_eq!(literal("a/b?c=d"), "'a%2Fb%3Fc%3Dd'");
        assert_eq!(literal("Zürich 東京"), "'Z%C3%BCrich%20%E6%9D%B1%E4%BA%AC'");
        // `quote` leaves encoding to the URL builder.
        assert_eq!(quote("A & B+C #1"), "'A & B+C #1'");
    }

    #[test]
    fn an_encoded_literal_reads_back_as_the_value() {
        let value = "O'Neil & Sons+ 100%#1 Zürich";
        let mut url = reqwest::Url::parse("https://x.example/api/accounts").unwrap();
        url.set_query(Some(&format!("$filter=name eq {}", literal(value))));
        let filter = url
            .query_pairs()
            .find(|(k, _)| k == "$filter")
            .map(|(_, v)| v.into_owned());
        assert_eq!(filter, Some(format!("name eq {}", quote(value))));
    }
}
