//! The AWS calls the operator makes: one module per service, each taking a concrete SDK client
//! and returning plain data (or the SDK error, kept whole).

pub mod cloudformation;
pub mod lambda;
pub mod sqs;
