//! A real browser for end-to-end tests: headless Chromium driven over WebDriver.
//!
//! Some promises of shipgate can only be checked in a browser. The approval page must work without
//! JavaScript, and its decision is a POST that only a click on one of its form buttons sends: a
//! GET of the emailed link (a mail scanner, a link preview) must never decide anything. An HTTP
//! client can send that POST by itself, so it proves nothing about the page; a browser that
//! renders the page, fills its form and clicks its button does.
//!
//! [`Browser::start`] runs one `chromedriver` on a free loopback port (killed with its process
//! group when the [`Browser`] is dropped, and if the test process dies). Each
//! [`Browser::session`] is a fresh headless Chromium with its own profile directory, so two
//! sessions share no cookies or cache. [`Session`] is a thin wrapper over the WebDriver client
//! ([`fantoccini`]) with what a test needs; [`Session::client`] gives the rest. Every operation is
//! bounded ([`OP_TIMEOUT`]; starting a session, 90 s), so a stuck browser fails the test with a
//! message instead of hanging it.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`make apt`). `SHIPGATE_CHROMIUM`
//! and `SHIPGATE_CHROMEDRIVER` override the binaries' paths.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use shipgate_local::process::{ManagedChild, free_port, wait_for_http};

/// Where Debian's `chromium` package puts the browser (a launcher script).
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` package puts chromedriver.
pub const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The bound on every operation of a [`Session`] (loading a page, a click and the navigation it
/// causes, a screenshot, ...).
pub const OP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long chromedriver may take to answer on its port.
const DRIVER_STARTUP: Duration = Duration::from_secs(20);
/// How long a new session may take. Longer than chromedriver's own 60 s wait for a Chromium that
/// does not come up (over a pipe it cannot tell that Chromium died at once), so that its error,
/// which says what happened, arrives before ours.
const SESSION_STARTUP: Duration = Duration::from_secs(90);

/// Chromium's flags for every session, besides its profile directory.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    // Tests run as root in containers and CI, where Chromium's sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    // /dev/shm is small in containers; Chromium then crashes on large pages.
    "--disable-dev-shm-usage",
    "--window-size=1280,1024",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    // chromedriver then talks to Chromium over a pipe instead of a debugging port, and Chromium
    // quits when the pipe closes: if the test process is killed, chromedriver dies of
    // PDEATHSIG and its Chromiums follow within a second. Over a port, they would live on.
    "--remote-debugging-pipe",
];

/// One running chromedriver; sessions are opened with [`Browser::session`].
#[derive(Debug)]
pub struct Browser {
    // Dropped before `dir`: the driver (and its process group) is gone before its files are.
    driver: ManagedChild,
    url: String,
    chromium: PathBuf,
    log: PathBuf,
    sessions: AtomicU32,
    dir: ScratchDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port, its log in a fresh temporary directory.
    pub async fn start() -> Result<Self> {
        let chromium = executable("SHIPGATE_CHROMIUM", DEFAULT_CHROMIUM, "Chromium")?;
        let chromedriver = executable(
            "SHIPGATE_CHROMEDRIVER",
            DEFAULT_CHROMEDRIVER,
            "chromedriver",
        )?;
        let dir = ScratchDir::new("shipgate-browser")?;
        let log = dir.path().join("chromedriver.log");
        // The free port can be taken by someone else before chromedriver binds it; then
        // chromedriver exits ("port not available") and another port is tried.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port()?;
            let url = format!("http://127.0.0.1:{port}");
            // --enable-chrome-logs: Chromium's stderr goes to the log too, so that an error
            // says why Chromium did not start (about 30 lines of harmless D-Bus complaints per
            // session here: there is no system bus).
            let mut driver = ManagedChild::spawn(
                "chromedriver",
                &chromedriver,
                &[&format!("--port={port}"), "--enable-chrome-logs"],
                &[],
                &log,
            )?;
            match driver_ready(&mut driver, &url, &log).await {
                Ok(()) => {
                    return Ok(Self {
                        driver,
                        url,
                        chromium,
                        log,
                        sessions: AtomicU32::new(0),
                        dir,
                    });
                }
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
        bail!(
            "chromedriver did not start: {}\nchromedriver log:\n{}",
            failures.join("; "),
            log_tail(&log)
        )
    }

    /// The WebDriver endpoint, `http://127.0.0.1:<port>`.
    pub fn webdriver_url(&self) -> &str {
        &self.url
    }

    /// chromedriver's process id.
    pub fn pid(&self) -> Option<u32> {
        self.driver.pid()
    }

    /// Opens a new session: a fresh headless Chromium with its own, empty profile directory.
    pub async fn session(&self) -> Result<Session> {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        let profile = self.dir.path().join(format!("profile-{n}"));
        std::fs::create_dir_all(&profile)
            .with_context(|| format!("creating {}", profile.display()))?;
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": args,
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are a JSON object")
        };
        let mut builder = ClientBuilder::new(HttpConnector::new());
        let connect = builder.capabilities(capabilities).connect(&self.url);
        let client = match tokio::time::timeout(SESSION_STARTUP, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => bail!(
                "starting Chromium ({}) through chromedriver at {}: {e}\nchromedriver log:\n{}",
                self.chromium.display(),
                self.url,
                log_tail(&self.log)
            ),
            Err(_) => bail!(
                "timed out after {SESSION_STARTUP:?} starting Chromium ({}) through chromedriver at {}\
                 \nchromedriver log:\n{}",
                self.chromium.display(),
                self.url,
                log_tail(&self.log)
            ),
        };
        Ok(Session { client })
    }
}

/// One browser session (one Chromium, one profile). Close it with [`Session::close`]; dropping
/// it ends the session in the background, and dropping the [`Browser`] kills what is left.
#[derive(Debug)]
pub struct Session {
    client: Client,
}

impl Session {
    /// Loads `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) -> Result<()> {
        bounded(format!("opening {url}"), self.client.goto(url)).await
    }

    /// The page's title.
    pub async fn title(&self) -> Result<String> {
        bounded("reading the page title".into(), self.client.title()).await
    }

    /// The URL of the page now shown.
    pub async fn current_url(&self) -> Result<String> {
        let url = bounded("reading the current URL".into(), self.client.current_url()).await?;
        Ok(url.to_string())
    }

    /// The page's HTML as the browser sees it now.
    pub async fn page_source(&self) -> Result<String> {
        bounded("reading the page source".into(), self.client.source()).await
    }

    /// The visible (rendered) text of the first element matching `css`.
    pub async fn text_of(&self, css: &str) -> Result<String> {
        bounded(format!("reading the text of `{css}`"), async {
            self.client.find(Locator::Css(css)).await?.text().await
        })
        .await
    }

    /// Types `text` into the first element matching `css` (an input or textarea), replacing what
    /// was there.
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        bounded(format!("filling `{css}`"), async {
            let field = self.client.find(Locator::Css(css)).await?;
            field.clear().await?;
            field.send_keys(text).await
        })
        .await
    }

    /// Clicks the first element matching `css` (a real mouse click, e.g. on a submit button) and
    /// waits until the browser has navigated to, and loaded, the next page. The page may have the
    /// same URL (a form that posts to itself): the wait is for a new document, not a new URL. A
    /// click that does not navigate fails after [`OP_TIMEOUT`].
    pub async fn click(&self, css: &str) -> Result<()> {
        bounded(
            format!("clicking `{css}` and waiting for the next page"),
            async {
                let old_page = self.client.find(Locator::Css("html")).await?;
                self.client.find(Locator::Css(css)).await?.click().await?;
                // The old document's root goes stale once the new document replaces it.
                loop {
                    match old_page.tag_name().await {
                        Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        Err(e) if replaced(&e) => break,
                        Err(e) => return Err(e),
                    }
                }
                loop {
                    let state = self
                        .client
                        .execute("return document.readyState", Vec::new())
                        .await?;
                    if state == "complete" {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        )
        .await
    }

    /// Writes a PNG screenshot of the viewport to `path`, creating its parent directories.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let png = bounded("taking a screenshot".into(), self.client.screenshot()).await?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Ends the session: Chromium quits.
    pub async fn close(self) -> Result<()> {
        bounded("closing the session".into(), self.client.close()).await
    }

    /// The WebDriver client, for what this wrapper does not offer.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Runs one WebDriver operation with [`OP_TIMEOUT`], naming `what` in its error.
/// Whether `error` says the element's document has been replaced. WebDriver says so with
/// "stale element reference" (or "no such element"); chromedriver, when the new document
/// arrives while it is resolving the node, answers "unknown error" with DevTools' "Node with
/// given id does not belong to the document": the same fact, seen a moment earlier.
fn replaced(error: &CmdError) -> bool {
    error.is_stale_element_reference()
        || error.is_no_such_element()
        || error
            .to_string()
            .contains("does not belong to the document")
}

async fn bounded<T>(what: String, op: impl Future<Output = Result<T, CmdError>>) -> Result<T> {
    match tokio::time::timeout(OP_TIMEOUT, op).await {
        Ok(result) => result.map_err(|e| anyhow!("{what}: {e}")),
        Err(_) => Err(anyhow!("{what}: timed out after {OP_TIMEOUT:?}")),
    }
}

/// Waits until the child answers as a chromedriver on `url`.
async fn driver_ready(driver: &mut ManagedChild, url: &str, log: &Path) -> Result<()> {
    let status_url = format!("{url}/status");
    wait_for_http(driver, &status_url, DRIVER_STARTUP, log).await?;
    // Something else may have answered on the port; chromedriver says it is ready.
    let status: Value = reqwest::get(&status_url)
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("GET {status_url}"))?
        .json()
        .await
        .with_context(|| format!("GET {status_url}: not JSON"))?;
    driver.check_running()?;
    if status["value"]["ready"] != true {
        bail!("{status_url} does not say chromedriver is ready: {status}");
    }
    Ok(())
}

/// The program named by `env`, else `default`; fails if it is not there.
fn executable(env: &str, default: &str, what: &str) -> Result<PathBuf> {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if !path.is_file() {
        bail!(
            "{what} not found at {} (set {env} to another path); run `make apt` to install the \
             Debian packages chromium and chromium-driver",
            path.display()
        );
    }
    Ok(path)
}

/// The last lines of a log, for error messages (the log itself goes away with its directory).
fn log_tail(log: &Path) -> String {
    const MAX: usize = 4000;
    match std::fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let mut start = text.len().saturating_sub(MAX);
            while !text.is_char_boundary(start) {
                start += 1;
            }
            text[start..].to_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

/// A directory under the system temp dir, removed when dropped, unless the thread is panicking
/// (a failing test): then it is kept, and named on stderr, for inspection.
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(prefix: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} (chromedriver log, profiles)", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
