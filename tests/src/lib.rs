//! Test support for shipgate's end-to-end tests: release and image fixtures.

pub mod drops;
pub mod images;
pub mod support;
