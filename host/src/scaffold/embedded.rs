//! The files `cosell mapping new` writes, embedded in the binary by `host/build.rs`: the
//! scaffold templates (`scaffold/<lang>/...`), the contract (`wit`), the JSON Schemas and
//! generated types (`schema/...`), the guest SDK (`sdk/...`), the default mapping's rules
//! library (`mapping-rules/...`), the workspace manifests those two inherit settings from
//! (`workspace/...`) and the repository's fixtures (`fixtures/<direction>/<case>/...`).

include!(concat!(env!("OUT_DIR"), "/embedded_files.rs"));

/// The embedded file at `key`, e.g. `wit`.
pub fn file(key: &str) -> Option<&'static [u8]> {
    FILES
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, bytes)| *bytes)
}

/// The embedded files under the directory `prefix` (without a trailing `/`), as (path relative
/// to it, bytes), in path order.
pub fn dir(prefix: &str) -> impl Iterator<Item = (&'static str, &'static [u8])> + '_ {
    FILES.iter().filter_map(move |(key, bytes)| {
        key.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|relative| (relative, *bytes))
    })
}
