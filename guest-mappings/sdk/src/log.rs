//! Levelled logging into the host log (the `log` import). The host tags each line with the
//! step's name and version and caps the bytes one call may log.

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
