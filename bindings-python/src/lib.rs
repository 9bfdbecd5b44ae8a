//! Tidewire's python binding. A placeholder crate for now: the bindings issue
//! fills it in. It links the core so that the workspace build proves the
//! core's public API is reachable from here.

/// The version of the Tidewire core this binding wraps.
pub fn core_version() -> &'static str {
    tidewire::VERSION
}
