//! The end-to-end stories against the local stack, one module per subject, in one binary.
//!
//! Each module shares what its stories need the way it did as a binary of its own: a module's
//! `SharedStack` (or `Shared` part) starts on first use and serves that module's stories until
//! the binary exits; stories that need a stack of their own start one. Stacks have their own
//! state directories and ports, so modules running side by side never meet.

mod deploy_world;

mod alarms;
mod applications;
mod approval;
mod browser;
mod change_set;
mod checks;
mod cloudformation;
mod deploy;
mod doctor;
mod end_to_end;
mod failed_events;
mod first_run;
mod function_urls;
mod intake;
mod pipeline_standin;
mod promote;
mod registry;
mod rollback;
mod stack;
mod traffic;
