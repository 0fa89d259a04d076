//! Shared pieces of the end-to-end tests: faithful fakes of the providers that
//! have no emulator (built on one small framework with a fault table and an
//! admin endpoint), and a fault-injecting proxy for the ones that do (moto).

pub mod fake;
