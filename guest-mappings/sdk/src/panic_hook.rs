//! The panic hook: a guest built with `panic = "abort"` traps on a panic, and the host only
//! sees the trap. The hook first writes the message and location to the host log (level
//! `error`), so an operator sees *why* the step failed.

/// Installs (once) a panic hook that sends the panic message and location through the `log`
/// import at level `error`. The export macros call it before every `map`.
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
            crate::log::error(&line);
        }));
    });
}
