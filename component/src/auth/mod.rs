//! Auth methods. The token store (`auth/token/`) is the only one: its records
//! live in the host (the `tokens` import); the engine serves its endpoints.

pub mod token;
