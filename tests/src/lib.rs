//! Test support for shipgate's end-to-end tests: the local stack (one per test, or one shared by
//! a test binary), release and image fixtures, CodePipeline jobs, and the release story.

pub mod browser;
pub mod drops;
pub mod images;
pub mod jobs;
pub mod measure;
pub mod moto_proxy;
pub mod recorded;
pub mod releases;
pub mod shared_stack;
pub mod story;
pub mod support;
