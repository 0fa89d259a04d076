//! The token auth method's self-service paths. Tokens themselves are resolved by
//! the host; the engine only shows the caller what the host told it.

pub mod token;
