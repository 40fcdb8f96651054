//! # cosell-mapping: write cosell mapping steps in Rust
//!
//! A cosell mapping step is a sandboxed WebAssembly component that turns one JSON document into
//! another: a Partner Center referral into a Dataverse opportunity, an opportunity into a
//! referral, or any shape a customer's pipeline passes between its own steps. The host calls
//! one function per record, `map(ctx, input, current)`, and gives the step two imports:
//! `log` (lines in the host's log) and `config` (the operator's settings for this step). This
//! crate is everything a Rust step needs:
//!
//! * [`Step`] and [`export_step!`]: a **typed** step. Say what the input, the current record and
//!   the output are ([`Referral`], [`Opportunity`], your own serde types, or
//!   [`serde_json::Value`] for untyped steps); the SDK parses and serialises, and an input that
//!   does not parse becomes a [`MappingError::Reject`] that names the type and the problem.
//! * [`Mapping`] and [`export_mapping!`]: the raw form, JSON text in and out, for steps that
//!   want the text itself (the default components pass it to the `mapping-rules` library).
//! * [`Referral`] and [`Opportunity`]: typed documents. Every field the default mapping reads or
//!   writes is a field; everything else (Dataverse custom columns such as `cosell_audit` or
//!   `contoso_territory`, OData annotations, fields Partner Center adds later) is kept in the
//!   `extra` map of the struct it belongs to, so parsing and serialising a document never
//!   loses data. A field that is absent, `null` or set is a [`Field`]: the three stay distinct.
//! * [`log`] and [`config`]: the imports, with helpers (`log::info`, `config::get_or`,
//!   `config::parse`).
//! * the guest's global allocator (a static arena, so a typical record never grows linear
//!   memory) and a panic hook that writes the panic message to the host log before the guest
//!   traps. Both are installed by the export macros; there is nothing to call.
//! * `rules` (feature `rules`): run the default mapping (the `mapping-rules` library) and then
//!   change its output — how a `--from-default` project starts.
//!
//! ## An example step
//!
//! Stamps the owning team (from the step's config) on every opportunity the previous step made:
//!
//! ```no_run
//! use cosell_mapping::{Context, MappingError, Opportunity, Step, config, log};
//!
//! struct StampTeam;
//!
//! impl Step for StampTeam {
//!     type Input = Opportunity;
//!     type Current = serde_json::Value; // not used: any JSON
//!     type Output = Opportunity;
//!
//!     fn map(ctx: &Context, mut opportunity: Opportunity, _current: Option<serde_json::Value>)
//!         -> Result<Opportunity, MappingError>
//!     {
//!         let team = config::get_or("owner-team", "unassigned");
//!         log::info(&format!("{}: owner team {team}", ctx.event));
//!         opportunity.set_column("contoso_ownerteam", team);
//!         Ok(opportunity)
//!     }
//! }
//!
//! cosell_mapping::export_step!(StampTeam);
//! ```
//!
//! Return [`MappingError::Reject`] for a bad record (retrying will not help),
//! [`MappingError::Skip`] for a record that is deliberately not synced and
//! [`MappingError::Fail`] for a transient problem (the host retries). Use `ctx.timestamp`, never
//! a clock: a step must give the same output for the same call.
//!
//! ## Building
//!
//! A project made by `cosell mapping new <name> --lang rust` builds with one command,
//! `./build.sh`, into `dist/<name>.wasm` (a core wasm module for `wasm32-unknown-unknown` that
//! carries its WIT world; the host turns it into a component when it is deployed). The script
//! uses an installed `wasm32-unknown-unknown` target, or builds the standard library from
//! source where rustup cannot download targets (see the project's `toolchain.sh`). Then:
//!
//! ```sh
//! cosell mapping test dist/<name>.wasm --fixtures fixtures
//! cosell mapping deploy <step> dist/<name>.wasm --shadow
//! ```
//!
//! The crate needs the release profile of a guest (`panic = "abort"`, LTO, one codegen unit);
//! the project's `Cargo.toml` has it. The contract it implements is `wit/mapping.wit` of this
//! crate, `cosell:mapping/mapping-step@0.1.0`.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

/// Bindings of `cosell:mapping/mapping-step@0.1.0`, generated from this crate's own copy of
/// the contract (`wit/mapping.wit`), so the crate builds wherever it is copied.
#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "cosell:mapping/mapping-step@0.1.0",
        // The export macro is used from the component crates (see `export_mapping!`).
        pub_export_macro: true,
        default_bindings_module: "cosell_mapping::bindings",
        export_macro_name: "export",
    });
}

pub use bindings::cosell::mapping::types::{Context, Direction, MappingError};
pub use opportunity::{Account, Contact, Currency, Opportunity};
pub use referral::{
    Address, Consent, CustomerProfile, Details, InviteContext, Member, Referral, Requirements,
    Solution,
};
pub use serde_json;
pub use step::Step;
pub use typed::Field;

// The global allocator of every guest (single-threaded wasm only, where talc's lock-free cell
// is sound; native builds of this crate, e.g. its tests, keep the system allocator).
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
mod allocator;
pub mod config;
pub mod log;
pub mod opportunity;
mod panic_hook;
pub mod referral;
#[cfg(feature = "rules")]
pub mod rules;
pub mod step;
mod typed;

pub use panic_hook::install_panic_hook;

/// A mapping step in its raw form: JSON text in and out, the same signature as the WIT export
/// `map: func(ctx: context, input: string, current: option<string>) -> result<string, mapping-error>`.
/// Prefer [`Step`] unless the step works on the text itself.
pub trait Mapping {
    /// Maps `input` (JSON text) to the output document (JSON text).
    fn map(ctx: Context, input: String, current: Option<String>) -> Result<String, MappingError>;
}

/// Exports a type implementing [`Mapping`] as the component's `map` function, with the panic
/// hook installed before every call. Invoke once per component crate:
///
/// ```ignore
/// struct MyStep;
/// impl cosell_mapping::Mapping for MyStep { fn map(/* ... */) -> /* ... */ { /* ... */ } }
/// cosell_mapping::export_mapping!(MyStep);
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

/// Exports a type implementing [`Step`] as the component's `map` function: the SDK parses the
/// input and current documents into the step's types, calls [`Step::map`] and serialises the
/// output. Invoke once per component crate: `cosell_mapping::export_step!(MyStep);`
#[macro_export]
macro_rules! export_step {
    ($ty:ident) => {
        impl $crate::Mapping for $ty {
            fn map(
                ctx: $crate::Context,
                input: ::std::string::String,
                current: ::std::option::Option<::std::string::String>,
            ) -> ::std::result::Result<::std::string::String, $crate::MappingError> {
                $crate::step::run::<$ty>(&ctx, &input, current.as_deref())
            }
        }
        $crate::export_mapping!($ty);
    };
}
