//! The precompiled component artifact cache: machine code kept on disk, so a version compiled
//! once loads again (deploy of a known version, rollback, restart, the drop directory) in
//! milliseconds instead of a Cranelift compile of hundreds.
//!
//! # Layout
//!
//! One file per component and engine in one directory (by default `compiled/` beside the state
//! database): `<engine>-<component>.cwasm`, where `<component>` is the hex SHA-256 of the
//! component bytes after encoding (exactly what the engine compiles) and `<engine>` is a digest
//! of wasmtime's [`Engine::precompile_compatibility_hash`] (wasmtime's version, the target, the
//! compiler flags, tunables such as fuel and epochs, the wasm features) and of this file
//! format's version. An engine with other settings, or another wasmtime, therefore looks for
//! other names and never reads a foreign artifact; wasmtime also checks the same properties
//! itself when it deserializes.
//!
//! A file is wasmtime's serialized component ([`Component::serialize`]) followed by an
//! HMAC-SHA256 of the entry's file name and those bytes, keyed by a random secret kept in the
//! state database ([`crate::store::DeploymentStore::host_secret`]), not in the cache. The tag
//! is verified before wasmtime sees the bytes, so a truncated or corrupted file (a full disk,
//! a power loss before the data reached the disk, a bad copy of a backup) is recompiled
//! instead of being executed as machine code; and so is a file someone else wrote or swapped
//! in, even with a correct plain checksum: without the secret no one can make a tag, and
//! because the name is in it, a genuine entry renamed to stand for another component fails
//! too. A file that fails is deleted before the component is compiled again.
//!
//! # Why deserializing is sound here
//!
//! [`Component::deserialize`] is `unsafe` because wasmtime runs the machine code it is given
//! without validating it. This cache only deserializes bytes that (1) come from a file in a
//! directory that [`ArtifactCache::open`] created or narrowed to mode 0700, so only the host's
//! own user (who could equally change the binary) can write there, and a directory found open
//! to others is emptied when it is narrowed, since anyone could have put files in it; (2) were
//! written by this code, through a temporary file renamed into place, so no reader ever sees a
//! half-written file and a file is never modified after its rename; (3) are named by the hash
//! of what they were compiled from and of the engine; and (4) carry a valid HMAC of that name
//! and their bytes under the host's secret, so what wasmtime gets is byte for byte what this
//! host's `Component::serialize` produced for this very component. The bytes are read into
//! memory and copied by wasmtime,
//! rather than mapped with `deserialize_file`, so nothing that happens to the file later can
//! change code that is running.
//!
//! # Failures never fail a load
//!
//! An entry that cannot be read, fails its HMAC, or is refused by the engine is logged as a
//! warning, counted as an `error`, deleted, recompiled and written again. A cache that cannot be written is
//! a warning too; the load goes on with the compiled component. Only a component that does not
//! compile fails, exactly as without a cache.
//!
//! # Size bound
//!
//! After each write, entries are kept newest first (a hit refreshes an entry's modification
//! time, so "newest" means most recently used) while their sizes add up to at most
//! `max_bytes`; the rest are deleted. The entry just written is always kept, even when it alone
//! is larger than the bound. Temporary files left by a crash are deleted after an hour.

use crate::private_dir::{DirState, create_private_dir};
use anyhow::Context as _;
use ring::hmac;
use sha2::{Digest, Sha256};
use std::hash::{Hash as _, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use subtle::ConstantTimeEq as _;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Named in every file name, so a change of the file format never reads an old file.
const FORMAT_VERSION: &str = "cosell-artifact-2";
/// The extension of an entry.
const EXTENSION: &str = "cwasm";
/// The prefix of a file being written, before it is renamed into place.
const TEMP_PREFIX: &str = ".tmp-";
/// A temporary file older than this was left by a crashed write.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// Length of the HMAC-SHA256 tag after the serialized component.
const TAG_LEN: usize = 32;

/// The default bound on the cache's size: 256 MiB, room for hundreds of versions of a Rust
/// mapping (~0.45 MiB each) or half a dozen of a Python one (the example's is ~38 MiB).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// What the cache did for one load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// The machine code came from the cache: no compilation.
    Hit,
    /// Not in the cache: compiled, then stored.
    Miss,
    /// The cache could not be used for this load (an unreadable, corrupt or incompatible
    /// entry, or a failed write): compiled, and the entry rewritten where possible.
    Error,
    /// The host runs without an artifact cache: compiled.
    Disabled,
}

impl CacheOutcome {
    /// The label used in metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            CacheOutcome::Hit => "hit",
            CacheOutcome::Miss => "miss",
            CacheOutcome::Error => "error",
            CacheOutcome::Disabled => "disabled",
        }
    }
}

/// The secret that authenticates entries: 32 random bytes kept in the state database.
#[derive(Clone)]
pub struct ArtifactKey(hmac::Key);

impl ArtifactKey {
    /// The key made of `secret` (the host's [`crate::store::ARTIFACT_CACHE_SECRET`]).
    pub fn new(secret: &[u8; 32]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// The tag of the entry named `name` holding `body`.
    fn tag(&self, name: &str, body: &[u8]) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.0);
        // Length-prefixed, so no name and body can be cut differently into the same input.
        context.update(&(name.len() as u64).to_le_bytes());
        context.update(name.as_bytes());
        context.update(body);
        context.sign()
    }
}

impl std::fmt::Debug for ArtifactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArtifactKey(<redacted>)")
    }
}

/// A directory of precompiled components, bounded in size.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
    max_bytes: u64,
    key: ArtifactKey,
}

impl ArtifactCache {
    /// Opens the cache in `dir`, creating it with mode 0700 (its parents as usual), or
    /// narrowing an existing one to 0700 and then deleting its entries, which anyone could
    /// have written while it was open. Entries are authenticated with `key`. Fails when the
    /// directory cannot be made private, for example when it belongs to another user: a cache
    /// someone else can write to is not used.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64, key: ArtifactKey) -> anyhow::Result<Self> {
        let dir = dir.into();
        if create_private_dir(&dir, "the artifact cache directory")? == DirState::Narrowed {
            let purged = purge_entries(&dir);
            tracing::warn!(dir = %dir.display(), purged, "the artifact cache directory was open to other users; narrowed it to 0700 and deleted its entries (they compile again when next loaded)");
        }
        Ok(Self {
            dir,
            max_bytes,
            key,
        })
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The precompiled form of `component_bytes` for `engine`: from the cache when a usable
    /// entry exists, else compiled and stored. Fails only when the component does not compile.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        component_bytes: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.entry_path(engine, component_bytes);
        let mut outcome = match read_entry(engine, &path, &self.key) {
            Ok(Some(component)) => {
                refresh_use_time(&path);
                tracing::debug!(entry = %path.display(), "component loaded from the artifact cache");
                return Ok((component, CacheOutcome::Hit));
            }
            Ok(None) => CacheOutcome::Miss,
            Err(reason) => {
                tracing::warn!(entry = %path.display(), %reason, "unusable artifact cache entry; deleted it, compiling the component again");
                // Deleted first, so it is gone even if the new entry cannot be written.
                if let Err(err) = std::fs::remove_file(&path) {
                    tracing::warn!(entry = %path.display(), error = %err, "could not delete the unusable artifact cache entry");
                }
                CacheOutcome::Error
            }
        };
        let component = Component::new(engine, component_bytes)?;
        match self.write_entry(&path, &component) {
            Ok(()) => {
                tracing::debug!(entry = %path.display(), "component compiled and stored in the artifact cache");
                self.prune(&path);
            }
            Err(err) => {
                tracing::warn!(dir = %self.dir.display(), error = %format!("{err:#}"), "could not store the compiled component in the artifact cache; carrying on without it (the next load compiles again)");
                outcome = CacheOutcome::Error;
            }
        }
        Ok((component, outcome))
    }

    /// Where the entry for `component_bytes` compiled by `engine` lives.
    pub fn entry_path(&self, engine: &Engine, component_bytes: &[u8]) -> PathBuf {
        let component = hex::encode(Sha256::digest(component_bytes));
        self.dir
            .join(format!("{}-{component}.{EXTENSION}", engine_tag(engine)))
    }

    fn write_entry(&self, path: &Path, component: &Component) -> anyhow::Result<()> {
        let mut bytes = component
            .serialize()
            .map_err(anyhow::Error::from)
            .context("serializing the compiled component")?;
        let tag = self.key.tag(&entry_name(path), &bytes);
        bytes.extend_from_slice(tag.as_ref());
        // tempfile creates the file 0600. No fsync: a file cut short by a crash fails its
        // HMAC on the next read and is recompiled.
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)
            .with_context(|| format!("creating a temporary file in {}", self.dir.display()))?;
        temp.write_all(&bytes)
            .with_context(|| format!("writing {}", temp.path().display()))?;
        temp.persist(path)
            .with_context(|| format!("renaming the temporary file to {}", path.display()))?;
        Ok(())
    }

    /// Deletes the least recently used entries beyond `max_bytes` (never `keep`) and stale
    /// temporary files. Best effort: whatever cannot be listed or deleted stays.
    fn prune(&self, keep: &Path) {
        let Ok(listing) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut entries = Vec::new();
        for item in listing.flatten() {
            let Ok(meta) = item.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let path = item.path();
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let name = item.file_name();
            if name.to_string_lossy().starts_with(TEMP_PREFIX) {
                let age = now.duration_since(modified).unwrap_or_default();
                if age > STALE_TEMP_AGE {
                    let _ = std::fs::remove_file(&path);
                }
            } else if path.extension().is_some_and(|ext| ext == EXTENSION) {
                entries.push((modified, meta.len(), path));
            }
        }
        entries.sort_by_key(|(modified, _, _)| std::cmp::Reverse(*modified));
        let mut kept = 0u64;
        for (_, size, path) in entries {
            if path == keep || kept + size <= self.max_bytes {
                kept += size;
            } else if std::fs::remove_file(&path).is_ok() {
                tracing::debug!(entry = %path.display(), "evicted from the artifact cache");
            }
        }
    }
}

/// The entry at `path`: `Ok(None)` when there is none, `Err` with the reason when there is
/// one that cannot be used.
fn read_entry(
    engine: &Engine,
    path: &Path,
    key: &ArtifactKey,
) -> Result<Option<Component>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(format!("it cannot be read: {err}")),
    };
    let Some(body_len) = bytes.len().checked_sub(TAG_LEN) else {
        return Err(format!("it is truncated ({} bytes)", bytes.len()));
    };
    let (body, tag) = bytes.split_at(body_len);
    let expected = key.tag(&entry_name(path), body);
    if !bool::from(expected.as_ref().ct_eq(tag)) {
        return Err(
            "its HMAC does not match: it is truncated, corrupt, or was not written by this host"
                .into(),
        );
    }
    // SAFETY: see the module documentation: `body` is, byte for byte (HMAC verified under the
    // host's secret, with this entry's name), what this host's `Component::serialize` wrote
    // for this component into this 0700 directory, under a name derived from this engine's
    // compatibility hash; wasmtime still checks its header against the engine.
    let component = unsafe { Component::deserialize(engine, body) }
        .map_err(|err| format!("this engine does not accept it: {err:#}"))?;
    Ok(Some(component))
}

/// The file name of the entry at `path`, which its HMAC covers.
fn entry_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Deletes every entry and temporary file in `dir`; how many it deleted. Best effort.
fn purge_entries(dir: &Path) -> usize {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return 0;
    };
    listing
        .flatten()
        .map(|item| item.path())
        .filter(|path| {
            let name = entry_name(path);
            name.starts_with(TEMP_PREFIX) || path.extension().is_some_and(|ext| ext == EXTENSION)
        })
        .filter(|path| std::fs::remove_file(path).is_ok())
        .count()
}

/// Marks an entry as just used, for the least-recently-used eviction. Best effort.
fn refresh_use_time(path: &Path) {
    let touched = std::fs::File::open(path).and_then(|file| file.set_modified(SystemTime::now()));
    if let Err(err) = touched {
        tracing::debug!(entry = %path.display(), error = %err, "could not refresh the entry's modification time");
    }
}

/// The engine part of an entry's name: 16 hex digits of the SHA-256 of the file format's
/// version and wasmtime's compatibility hash. Truncation is harmless: wasmtime checks
/// compatibility itself, so a collision could only cost a recompile.
fn engine_tag(engine: &Engine) -> String {
    let mut hasher = DigestHasher(Sha256::new());
    FORMAT_VERSION.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// Feeds a [`std::hash::Hash`] into SHA-256: unlike `DefaultHasher`, stable across Rust
/// releases and processes, which an on-disk name must be.
struct DigestHasher(Sha256);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 has 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine; `fuel` changes its compilation settings (fuel metering is compiled in).
    fn engine(fuel: bool) -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.consume_fuel(fuel);
        Engine::new(&config).unwrap()
    }

    /// A small component exporting `answer`; each `answer` gives other bytes, so another
    /// entry, and code that says which component it is.
    fn component(answer: i32) -> Vec<u8> {
        format!(
            r#"(component
                 (core module $m (func (export "answer") (result i32) i32.const {answer}))
                 (core instance $i (instantiate $m))
                 (func (export "answer") (result s32) (canon lift (core func $i "answer"))))"#
        )
        .into_bytes()
    }

    /// What `component` answers when run.
    fn answer(engine: &Engine, component: &Component) -> i32 {
        let mut store = wasmtime::Store::new(engine, ());
        store.set_fuel(1_000).unwrap();
        let linker = wasmtime::component::Linker::<()>::new(engine);
        let instance = linker.instantiate(&mut store, component).unwrap();
        let func = instance
            .get_typed_func::<(), (i32,)>(&mut store, "answer")
            .unwrap();
        func.call(&mut store, ()).unwrap().0
    }

    fn key(byte: u8) -> ArtifactKey {
        ArtifactKey::new(&[byte; 32])
    }

    fn open(dir: &Path) -> ArtifactCache {
        ArtifactCache::open(dir.join("compiled"), DEFAULT_MAX_BYTES, key(1)).unwrap()
    }

    fn outcome(cache: &ArtifactCache, engine: &Engine, bytes: &[u8]) -> CacheOutcome {
        cache.load_or_compile(engine, bytes).unwrap().1
    }

    #[test]
    fn a_component_compiled_once_is_loaded_from_the_cache_afterwards() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let engine = engine(true);
        assert_eq!(outcome(&cache, &engine, &component(1)), CacheOutcome::Miss);
        assert!(cache.entry_path(&engine, &component(1)).is_file());
        assert_eq!(outcome(&cache, &engine, &component(1)), CacheOutcome::Hit);
        // Another cache on the same directory (a restarted host) finds it too.
        let reopened = open(dir.path());
        assert_eq!(
            outcome(&reopened, &engine, &component(1)),
            CacheOutcome::Hit
        );
        assert_eq!(
            outcome(&reopened, &engine, &component(2)),
            CacheOutcome::Miss
        );
    }

    #[test]
    fn a_corrupt_or_truncated_entry_is_recompiled_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let engine = engine(true);
        let bytes = component(7);
        assert_eq!(outcome(&cache, &engine, &bytes), CacheOutcome::Miss);
        let path = cache.entry_path(&engine, &bytes);
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x40;
        let damaged: [(&str, Vec<u8>); 4] = [
            ("one byte flipped in the machine code", flipped),
            ("cut in half", good[..good.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("not an artifact", b"hello".to_vec()),
        ];
        for (what, bytes_on_disk) in damaged {
            std::fs::write(&path, &bytes_on_disk).unwrap();
            let (loaded, result) = cache.load_or_compile(&engine, &bytes).unwrap();
            assert_eq!(result, CacheOutcome::Error, "{what}: not detected");
            assert!(loaded.serialize().is_ok());
            assert_eq!(
                std::fs::read(&path).unwrap(),
                good,
                "{what}: the entry was not rewritten"
            );
            assert_eq!(
                outcome(&cache, &engine, &bytes),
                CacheOutcome::Hit,
                "{what}"
            );
        }
    }

    #[test]
    fn an_engine_with_other_settings_never_uses_another_engines_artifact() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let (with_fuel, without_fuel) = (engine(true), engine(false));
        let bytes = component(3);
        let fuel_entry = cache.entry_path(&with_fuel, &bytes);
        let plain_entry = cache.entry_path(&without_fuel, &bytes);
        assert_ne!(
            fuel_entry, plain_entry,
            "engine settings are not in the name"
        );
        assert_eq!(outcome(&cache, &with_fuel, &bytes), CacheOutcome::Miss);
        assert_eq!(outcome(&cache, &without_fuel, &bytes), CacheOutcome::Miss);
        // Even a foreign artifact put under this engine's name (a valid file, checksum and
        // all) is refused by wasmtime's own check, then replaced.
        std::fs::copy(&fuel_entry, &plain_entry).unwrap();
        assert_eq!(outcome(&cache, &without_fuel, &bytes), CacheOutcome::Error);
        assert_eq!(outcome(&cache, &without_fuel, &bytes), CacheOutcome::Hit);
        assert_eq!(outcome(&cache, &with_fuel, &bytes), CacheOutcome::Hit);
    }

    #[cfg(unix)]
    #[test]
    fn the_directory_is_its_owners_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("state/compiled");
        ArtifactCache::open(&fresh, DEFAULT_MAX_BYTES, key(1)).unwrap();
        assert_eq!(mode(&fresh), 0o700);
        let wide = dir.path().join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o777)).unwrap();
        ArtifactCache::open(&wide, DEFAULT_MAX_BYTES, key(1)).unwrap();
        assert_eq!(mode(&wide), 0o700, "an existing directory is narrowed");
    }

    #[cfg(unix)]
    #[test]
    fn narrowing_a_directory_that_was_open_deletes_its_entries() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(true);
        let cache = open(dir.path());
        assert_eq!(outcome(&cache, &engine, &component(1)), CacheOutcome::Miss);
        let entry = cache.entry_path(&engine, &component(1));
        // Reopened while still private: the entry stays.
        let cache = open(dir.path());
        assert_eq!(outcome(&cache, &engine, &component(1)), CacheOutcome::Hit);
        // Someone widened it: anyone could have written there since, so nothing in it is
        // trusted, however it looks.
        std::fs::set_permissions(cache.dir(), std::fs::Permissions::from_mode(0o775)).unwrap();
        let cache = open(dir.path());
        assert!(!entry.exists(), "an entry of the open directory was kept");
        assert_eq!(outcome(&cache, &engine, &component(1)), CacheOutcome::Miss);
    }

    #[test]
    fn a_tampered_entry_with_a_correct_plain_checksum_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        let engine = engine(true);
        let (wanted, other) = (component(1), component(2));
        outcome(&cache, &engine, &wanted);
        outcome(&cache, &engine, &other);
        let path = cache.entry_path(&engine, &wanted);
        let genuine_other = std::fs::read(cache.entry_path(&engine, &other)).unwrap();
        let other_body = &genuine_other[..genuine_other.len() - TAG_LEN];
        // Another component's machine code under this component's name, once with a SHA-256
        // of it (what a checksum-only cache accepts), once with its own genuine tag (an entry
        // renamed), once tagged under another host's secret.
        let with_checksum = [other_body, Sha256::digest(other_body).as_slice()].concat();
        let foreign_key = key(2).tag(&entry_name(&path), other_body);
        let forged: [(&str, Vec<u8>); 3] = [
            ("a correct plain checksum", with_checksum),
            ("another entry's genuine tag", genuine_other.clone()),
            (
                "another host's key",
                [other_body, foreign_key.as_ref()].concat(),
            ),
        ];
        for (what, bytes_on_disk) in forged {
            std::fs::write(&path, &bytes_on_disk).unwrap();
            let (loaded, result) = cache.load_or_compile(&engine, &wanted).unwrap();
            assert_eq!(result, CacheOutcome::Error, "{what}: accepted");
            assert_eq!(answer(&engine, &loaded), 1, "{what}: ran the other code");
            assert_ne!(
                std::fs::read(&path).unwrap(),
                bytes_on_disk,
                "{what}: the forged entry was kept"
            );
            let (loaded, result) = cache.load_or_compile(&engine, &wanted).unwrap();
            assert_eq!(result, CacheOutcome::Hit, "{what}: not rewritten");
            assert_eq!(answer(&engine, &loaded), 1, "{what}");
        }
        // Entries of a host with another secret (another state database) are not used.
        let other_host = ArtifactCache::open(cache.dir(), DEFAULT_MAX_BYTES, key(3)).unwrap();
        assert_eq!(outcome(&other_host, &engine, &wanted), CacheOutcome::Error);
    }

    #[test]
    fn a_cache_that_cannot_be_written_costs_a_compile_not_the_load() {
        let dir = tempfile::tempdir().unwrap();
        let cache = open(dir.path());
        std::fs::remove_dir(cache.dir()).unwrap();
        let engine = engine(true);
        let (_, result) = cache.load_or_compile(&engine, &component(5)).unwrap();
        assert_eq!(result, CacheOutcome::Error);
        // A component that does not compile still fails, cache or not.
        assert!(cache.load_or_compile(&engine, b"(component (").is_err());
    }

    #[test]
    fn the_least_recently_used_entries_go_when_the_cache_is_over_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(true);
        let probe = open(dir.path());
        probe.load_or_compile(&engine, &component(0)).unwrap();
        let entry_size = std::fs::metadata(probe.entry_path(&engine, &component(0)))
            .unwrap()
            .len();
        std::fs::remove_dir_all(probe.dir()).unwrap();
        // Room for two entries.
        let cache =
            ArtifactCache::open(dir.path().join("compiled"), entry_size * 5 / 2, key(1)).unwrap();
        let stale_temp = cache.dir().join(format!("{TEMP_PREFIX}crashed"));
        let fresh_temp = cache.dir().join(format!("{TEMP_PREFIX}being-written"));
        for temp in [&stale_temp, &fresh_temp] {
            std::fs::write(temp, b"partial").unwrap();
        }
        std::fs::File::options()
            .write(true)
            .open(&stale_temp)
            .unwrap()
            .set_modified(SystemTime::now() - 2 * STALE_TEMP_AGE)
            .unwrap();
        let present = |answer| cache.entry_path(&engine, &component(answer)).exists();

        outcome(&cache, &engine, &component(1));
        outcome(&cache, &engine, &component(2));
        assert_eq!(outcome(&cache, &engine, &component(1)), CacheOutcome::Hit);
        outcome(&cache, &engine, &component(3));
        assert!(present(1), "the most recently used entry was evicted");
        assert!(present(3), "the entry just written was evicted");
        assert!(!present(2), "the least recently used entry was kept");
        assert!(
            !stale_temp.exists(),
            "a crashed write's temporary file was kept"
        );
        assert!(fresh_temp.exists(), "a write in progress lost its file");

        // An entry larger than the whole bound is kept while it is the newest.
        let tiny = ArtifactCache::open(cache.dir(), 1, key(1)).unwrap();
        outcome(&tiny, &engine, &component(4));
        assert!(present(4));
        assert!(!present(1) && !present(3));
    }
}
