//! One local stack for a whole test binary, as zero-to-production's `spawn_app` would share one
//! database: tests tell their stories side by side on it, each under names of its own
//! (releases, S3 keys, repositories, stacks), so none reads another's state.
//!
//! A stack outlives the tests that use it, so it cannot live on theirs: `#[tokio::test]` gives
//! each test a runtime that ends with the test, and would take the stack's servers (the
//! CodePipeline stand-in, function URLs, the S3 and alarm pumps, all tokio tasks) and the
//! connections its clients pool with it. A [`SharedStack`] starts on a thread of its own, with a
//! runtime of its own that serves it until the binary exits; that thread also starts moto and
//! the registries, which die with it (`PR_SET_PDEATHSIG`), so nothing outlives the binary.
//!
//! Tests talk to it with clients of their own, built from `stack.sdk` (it carries no HTTP
//! client, so each client built from it pools its connections on the test's runtime), and run
//! functions they build themselves; `stack.functions` belongs to the stack's runtime.
//!
//! [`Shared`] does the same for a part of a stack (moto alone, registries).

use std::future::Future;

use anyhow::{Context, Result, anyhow};
use futures::future::BoxFuture;
use shipgate_local::stack::{Stack, StackOptions};
use tokio::sync::OnceCell;

use crate::support::start_stack;

/// A stack started on first use and shared by every test of the binary.
pub struct SharedStack {
    name: &'static str,
    configure: fn(&mut StackOptions),
    stack: OnceCell<Stack>,
}

impl SharedStack {
    /// A stack named `name` (its state dir), configured by `configure`, not started yet.
    pub const fn new(name: &'static str, configure: fn(&mut StackOptions)) -> Self {
        Self {
            name,
            configure,
            stack: OnceCell::const_new(),
        }
    }

    /// The stack, started by the first test that asks (the others wait for it).
    pub async fn get(&'static self) -> Result<&'static Stack> {
        let (name, configure) = (self.name, self.configure);
        self.stack
            .get_or_try_init(|| start_on_own_thread(name, move || start_stack(name, configure)))
            .await
    }
}

/// Anything a test binary shares that runs processes or servers (moto, registries), started
/// on first use on a thread and runtime of its own, as a [`SharedStack`] is.
pub struct Shared<T> {
    name: &'static str,
    start: fn() -> BoxFuture<'static, Result<T>>,
    value: OnceCell<T>,
}

impl<T: Send + Sync + 'static> Shared<T> {
    /// What `start` makes, named `name` (its thread), not started yet.
    pub const fn new(name: &'static str, start: fn() -> BoxFuture<'static, Result<T>>) -> Self {
        Self {
            name,
            start,
            value: OnceCell::const_new(),
        }
    }

    /// The value, made by the first test that asks (the others wait for it).
    pub async fn get(&'static self) -> Result<&'static T> {
        self.value
            .get_or_try_init(|| start_on_own_thread(self.name, self.start))
            .await
    }
}

/// Runs `start` on a new thread with a runtime of its own, both kept for the rest of the
/// binary's life once `start` succeeded.
async fn start_on_own_thread<T, F, Fut>(name: &'static str, start: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
{
    let (started, stack) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("shared-{name}"))
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(format!("shared-{name}-worker"))
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = started.send(Err(anyhow!(e).context("building the runtime")));
                    return;
                }
            };
            // `block_on` runs the start on this thread, so the processes it spawns are this
            // thread's children; the servers it spawns run on the runtime's workers.
            let result = runtime.block_on(start());
            let ok = result.is_ok();
            if started.send(result).is_ok() && ok {
                runtime.block_on(std::future::pending::<()>());
            }
        })
        .with_context(|| format!("spawning the thread of {name}"))?;
    stack
        .await
        .with_context(|| format!("the thread of {name} ended"))?
}
