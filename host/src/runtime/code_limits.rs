//! What a component may ask the compiler to do, checked before compiling it.
//!
//! Cranelift's time and memory grow with the code it is given, and faster than linearly with
//! the size of one function (register allocation over one huge body), so a small upload can
//! be a "compile bomb": a deploy that would hold a core and gigabytes for minutes. The size
//! cap alone does not prevent it. Here every function body in the component (its core modules
//! and those of nested components, with one streaming pass of `wasmparser`, before anything is
//! compiled) is counted and measured against [`Limits::max_functions`] and
//! [`Limits::max_function_bytes`], so such a component is refused in milliseconds at deploy.
//! docs/runtime.md gives the figures the defaults come from.

use super::limits::{Limit, Limits};
use wasmparser::{Parser, Payload};

/// Why the code of a component is refused before compiling it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeLimitError {
    /// More function bodies than [`Limits::max_functions`].
    #[error("it defines more than {cap} functions (raise {key})", key = Limit::FunctionCount.config_key())]
    TooManyFunctions {
        /// The [`Limits::max_functions`] in force.
        cap: u64,
    },
    /// A function body larger than [`Limits::max_function_bytes`].
    #[error("function {index} of one of its modules is {size} bytes of code, over {cap} bytes (raise {key})", key = Limit::FunctionSize.config_key())]
    FunctionTooLarge {
        /// Index of the body within its core module.
        index: u32,
        /// Size of the body, in bytes of WebAssembly code.
        size: usize,
        /// The [`Limits::max_function_bytes`] in force.
        cap: u64,
    },
}

/// Checks the function count and body sizes of `component_bytes` (a component, or a core
/// module) against `limits`, without compiling.
pub fn check(component_bytes: &[u8], limits: &Limits) -> Result<(), CodeLimitError> {
    let mut functions: u64 = 0;
    // Index of a body within its module: bodies come in order, one code section per module,
    // and a module's `CodeSectionStart` comes before its bodies.
    let mut index_in_module: u32 = 0;
    for payload in Parser::new(0).parse_all(component_bytes) {
        // A file that cannot be read is left to the decoder and compiler, which refuse it with
        // their own, more precise error; both parse a whole module before compiling any
        // function, so nothing after an unreadable byte is ever compiled.
        let Ok(payload) = payload else {
            return Ok(());
        };
        match payload {
            Payload::CodeSectionStart { .. } => index_in_module = 0,
            Payload::CodeSectionEntry(body) => {
                functions += 1;
                if functions > limits.max_functions {
                    return Err(CodeLimitError::TooManyFunctions {
                        cap: limits.max_functions,
                    });
                }
                let size = body.range().len();
                if size as u64 > limits.max_function_bytes {
                    return Err(CodeLimitError::FunctionTooLarge {
                        index: index_in_module,
                        size,
                        cap: limits.max_function_bytes,
                    });
                }
                index_in_module += 1;
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A component whose core module has `count` functions of `body_ops` `nop`s each.
    fn component(count: usize, body_ops: usize) -> Vec<u8> {
        let body = "nop ".repeat(body_ops);
        let funcs = format!("(func {body})").repeat(count);
        wat::parse_str(format!("(component (core module {funcs}))")).unwrap()
    }

    #[test]
    fn counts_and_sizes_within_the_limits_pass() {
        let limits = Limits {
            max_functions: 10,
            max_function_bytes: 100,
            ..Limits::default()
        };
        assert_eq!(check(&component(10, 90), &limits), Ok(()));
        assert_eq!(
            check(&component(11, 1), &limits),
            Err(CodeLimitError::TooManyFunctions { cap: 10 })
        );
        let err = check(&component(3, 200), &limits).unwrap_err();
        assert!(
            matches!(
                err,
                CodeLimitError::FunctionTooLarge {
                    index: 0,
                    cap: 100,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("limits.max_function_bytes"),
            "{err}"
        );
    }
}
