//! Turning uploaded bytes into a compiled, type-checked mapping component.
//!
//! Accepts a WebAssembly component, or a core module that carries its component type in a
//! custom section (what `wit-bindgen` produces for `wasm32-unknown-unknown`), which is encoded
//! into a component with `wit-component`. The bytes are compiled once and type-checked against
//! the `mapping-step` world with `instantiate_pre`, so a component for another world, or one
//! that imports something the host does not offer, is refused here, before it can go live.
//! With an [`ArtifactCache`], a component compiled before is deserialized instead of compiled.

use super::artifact_cache::{ArtifactCache, CacheOutcome};
use super::bindings::MappingStepPre;
use super::code_limits::{self, CodeLimitError};
use super::guest_env::CallState;
use super::limits::Limit;
use super::limits::Limits;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// Why uploaded bytes cannot become a mapping component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file is over [`Limits::max_component_bytes`].
    #[error("the file is {size} bytes, over the {limit} of {cap} bytes (raise {key})", limit = Limit::ComponentSize, key = Limit::ComponentSize.config_key())]
    TooLarge {
        /// Size of the file, in bytes.
        size: usize,
        /// The [`Limits::max_component_bytes`] in force.
        cap: u64,
    },
    /// The bytes do not start with the WebAssembly magic number.
    #[error("not a WebAssembly file: it does not start with the `\\0asm` magic number")]
    NotWasm,
    /// The component has too many functions, or too large a one, to be compiled safely.
    #[error("the component is refused before compiling: {0}")]
    Code(#[from] CodeLimitError),
    /// A core module that is not valid, or that `wit-component` could not turn into a
    /// component; holds the reason.
    #[error(
        "this core module could not be encoded as a component ({0}); build it with wit-bindgen against wit/mapping.wit, or pass a component"
    )]
    Encode(String),
    /// Cranelift (or the artifact cache) refused the component; holds its error.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// The component is for another world, or imports something the host does not offer.
    #[error(
        "the component does not implement the cosell:mapping/mapping-step world: {0}. Build it against wit/mapping.wit (package cosell:mapping@0.1.0)"
    )]
    WrongWorld(String),
}

/// A compiled mapping component, ready to instantiate once per record.
pub struct MappingComponent {
    /// `sha256:` + the hex SHA-256 of the bytes as uploaded (so `sha256sum file.wasm` matches).
    pub version: Arc<str>,
    /// Size of the uploaded bytes.
    pub size: usize,
    /// Whether the machine code came from the artifact cache or was compiled.
    pub artifact: CacheOutcome,
    pub(crate) pre: MappingStepPre<CallState>,
}

impl std::fmt::Debug for MappingComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappingComponent")
            .field("version", &self.version)
            .field("size", &self.size)
            .field("artifact", &self.artifact)
            .finish()
    }
}

/// The content hash that names a version: `sha256:` followed by 64 hex digits.
pub fn content_hash(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The component form of `bytes`: unchanged for a component, encoded for a core module.
pub fn component_bytes(bytes: &[u8]) -> Result<Cow<'_, [u8]>, LoadError> {
    if wasmparser::Parser::is_component(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    if !wasmparser::Parser::is_core_wasm(bytes) {
        return Err(LoadError::NotWasm);
    }
    // Validate before encoding: the encoder trusts the module's structure and can panic on a
    // truncated or crafted file (seen with a half-uploaded module).
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|err| LoadError::Encode(format!("it is not a valid core module: {err}")))?;
    let encode = || {
        wit_component::ComponentEncoder::default()
            .validate(true)
            .module(bytes)
            .and_then(|mut encoder| encoder.encode())
    };
    // A panic in the encoder on hostile input must not take the host down.
    let encoded = std::panic::catch_unwind(encode)
        .map_err(|_| LoadError::Encode("the component encoder could not read it".into()))?
        .map_err(|err| LoadError::Encode(format!("{err:#}")))?;
    Ok(Cow::Owned(encoded))
}

/// Compiles `bytes` (or takes them from `cache`) and type-checks them against the world.
/// `limits` gives the size cap and what the code may ask of the compiler.
pub fn load(
    engine: &Engine,
    linker: &Linker<CallState>,
    cache: Option<&ArtifactCache>,
    bytes: &[u8],
    limits: &Limits,
) -> Result<MappingComponent, LoadError> {
    let max_size = limits.max_component_bytes;
    if bytes.len() as u64 > max_size {
        return Err(LoadError::TooLarge {
            size: bytes.len(),
            cap: max_size,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Before encoding and compiling: both cost time in proportion to the code.
    code_limits::check(bytes, limits)?;
    let component_bytes = component_bytes(bytes)?;
    let (component, artifact) = match cache {
        Some(cache) => cache.load_or_compile(engine, &component_bytes),
        None => Component::new(engine, &component_bytes).map(|c| (c, CacheOutcome::Disabled)),
    }
    .map_err(|err| LoadError::Compile(format!("{err:#}")))?;
    let instance_pre = linker
        .instantiate_pre(&component)
        .map_err(|err| LoadError::WrongWorld(format!("{err:#}")))?;
    let pre = MappingStepPre::new(instance_pre)
        .map_err(|err| LoadError::WrongWorld(format!("{err:#}")))?;
    Ok(MappingComponent {
        version: content_hash(bytes).into(),
        size: bytes.len(),
        artifact,
        pre,
    })
}
