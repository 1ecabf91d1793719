//! Test support for shipgate's end-to-end tests: release and image fixtures.

pub mod browser;
pub mod drops;
pub mod images;
pub mod story;
pub mod support;
