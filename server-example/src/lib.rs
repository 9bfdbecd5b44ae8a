//! The parts of the Tidewire reference server that tests and embedders use
//! directly: the chat's message [`store`].

pub mod store;
