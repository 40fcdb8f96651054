//! Shared glue for the cosell mapping components.
//!
//! Every guest in this workspace that implements the `cosell:mapping/mapping-step` world links
//! this crate instead of calling `wit_bindgen::generate!` itself. It provides:
//!
//! * [`bindings`]: the bindings of the world, generated once from `wit/mapping.wit` at the root
//!   of the repository (never copied);
//! * [`Mapping`] and [`export_mapping!`]: implement the trait, invoke the macro once, and the
//!   component exports `map`;
//! * [`install_panic_hook`]: a panic hook that writes the panic message to the host log (level
//!   `error`) before the guest traps, so an operator sees *why* a step failed. `export_mapping!`
//!   installs it on every call before running the mapping;
//! * [`log`] and [`config`]: small wrappers around the imports;
//! * [`rules`] (feature `rules`): conversions between the WIT types and the `mapping-rules`
//!   library types, used by the default components;
//! * the global allocator (`allocator.rs`): talc on a static arena, so a typical record never
//!   grows linear memory.

#![forbid(unsafe_op_in_unsafe_fn)]

/// Bindings of `cosell:mapping/mapping-step@0.1.0`.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        // The single source of truth: `wit/` at the root of the repository.
        path: "../../../wit",
        world: "cosell:mapping/mapping-step@0.1.0",
        // The export macro is used from the component crates (see `export_mapping!`).
        pub_export_macro: true,
        default_bindings_module: "guest_glue::bindings",
        export_macro_name: "export",
    });
}

pub use bindings::cosell::mapping::types::{Context, Direction, MappingError};

// The global allocator of every guest (single-threaded wasm only, where talc's lock-free cell
// is sound; native builds of this crate, e.g. `cargo check`, keep the system allocator).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod allocator;

/// A mapping step: what a component implements. Same signature as the WIT export
/// `map: func(ctx: context, input: string, current: option<string>) -> result<string, mapping-error>`.
pub trait Mapping {
    /// Maps `input` (JSON text) to the output document (JSON text).
    fn map(ctx: Context, input: String, current: Option<String>) -> Result<String, MappingError>;
}

/// Exports a type implementing [`Mapping`] as the component's `map` function, with the panic
/// hook installed before every call. Invoke once per component crate:
///
/// ```ignore
/// struct MyStep;
/// impl guest_glue::Mapping for MyStep { fn map(/* ... */) -> /* ... */ { /* ... */ } }
/// guest_glue::export_mapping!(MyStep);
/// ```
#[macro_export]
macro_rules! export_mapping {
    ($ty:ident) => {
        const _: () = {
            impl $crate::bindings::Guest for $ty {
                fn map(
                    ctx: $crate::Context,
                    input: ::std::string::String,
                    current: ::std::option::Option<::std::string::String>,
                ) -> ::std::result::Result<::std::string::String, $crate::MappingError> {
                    $crate::install_panic_hook();
                    <$ty as $crate::Mapping>::map(ctx, input, current)
                }
            }
        };
        $crate::bindings::export!($ty with_types_in $crate::bindings);
    };
}

/// Installs (once) a panic hook that sends the panic message and location through the `log`
/// import at level `error`. The guest then aborts (`panic = "abort"`), which the host sees as a
/// trap; the log line is what tells the operator why.
pub fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload_as_str()
                .unwrap_or("panic payload is not a string");
            let line = match info.location() {
                Some(at) => format!(
                    "mapping step panicked: {message} (at {}:{}:{})",
                    at.file(),
                    at.line(),
                    at.column()
                ),
                None => format!("mapping step panicked: {message}"),
            };
            bindings::cosell::mapping::log::log(log::Level::Error, &line);
        }));
    });
}

/// Levelled logging into the host log (the `log` import).
pub mod log {
    pub use crate::bindings::cosell::mapping::log::Level;

    /// Writes one line at `level`.
    pub fn log(level: Level, message: &str) {
        crate::bindings::cosell::mapping::log::log(level, message);
    }
    /// Writes one line at level `trace`.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Writes one line at level `debug`.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Writes one line at level `info`.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Writes one line at level `warn`.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Writes one line at level `error`.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The operator's configuration of this step (the `config` import).
pub mod config {
    /// The value of `key`, if the operator set it.
    pub fn get(key: &str) -> Option<String> {
        crate::bindings::cosell::mapping::config::get(key)
    }
    /// Every key the operator set, sorted.
    pub fn keys() -> Vec<String> {
        crate::bindings::cosell::mapping::config::keys()
    }
}

/// Conversions between the WIT types and the `mapping-rules` library (the default components).
#[cfg(feature = "rules")]
pub mod rules {
    use crate::{Context, Direction, MappingError};

    /// The signature shared by `mapping_rules::referral_to_opportunity` and
    /// `mapping_rules::opportunity_to_referral`.
    pub type RuleFn = fn(
        &mapping_rules::Context,
        &str,
        Option<&str>,
        &dyn mapping_rules::Config,
    ) -> Result<String, mapping_rules::MappingError>;

    /// `mapping_rules::Config` backed by the `config` import.
    ///
    /// It asks the host for the list of keys once, and for a value only when the key is set:
    /// the default mapping looks up some 25 keys per record, and an operator sets few or none,
    /// so this saves a host call per key that is not set (the configuration cannot change
    /// during a call).
    pub struct HostConfig {
        /// The keys the operator set, sorted (as the `keys` import returns them).
        keys: Vec<String>,
    }

    impl HostConfig {
        /// Reads the list of keys from the host.
        pub fn new() -> Self {
            Self {
                keys: crate::config::keys(),
            }
        }
    }

    impl Default for HostConfig {
        fn default() -> Self {
            Self::new()
        }
    }

    impl mapping_rules::Config for HostConfig {
        fn get(&self, key: &str) -> Option<String> {
            let is_set = self.keys.binary_search_by(|k| k.as_str().cmp(key)).is_ok();
            if is_set {
                crate::config::get(key)
            } else {
                None
            }
        }
    }

    impl From<Context> for mapping_rules::Context {
        fn from(ctx: Context) -> Self {
            mapping_rules::Context {
                direction: match ctx.direction {
                    Direction::PartnerCenterToCrm => mapping_rules::Direction::PartnerCenterToCrm,
                    Direction::CrmToPartnerCenter => mapping_rules::Direction::CrmToPartnerCenter,
                },
                event: ctx.event,
                tenant: ctx.tenant,
                mapping_name: ctx.mapping_name,
                mapping_version: ctx.mapping_version,
                timestamp: ctx.timestamp,
            }
        }
    }

    impl From<mapping_rules::MappingError> for MappingError {
        fn from(error: mapping_rules::MappingError) -> Self {
            match error {
                mapping_rules::MappingError::Reject(why) => MappingError::Reject(why),
                mapping_rules::MappingError::Skip(why) => MappingError::Skip(why),
                mapping_rules::MappingError::Fail(why) => MappingError::Fail(why),
            }
        }
    }

    /// Runs a `mapping-rules` function on the WIT arguments of `map`.
    pub fn run(
        rule: RuleFn,
        ctx: Context,
        input: String,
        current: Option<String>,
    ) -> Result<String, MappingError> {
        let ctx = mapping_rules::Context::from(ctx);
        rule(&ctx, &input, current.as_deref(), &HostConfig::new()).map_err(MappingError::from)
    }
}
