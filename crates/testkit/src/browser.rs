//! Headless Chromium driven over WebDriver, for the web UI's browser tests.
//!
//! [`Browser::start`] runs Debian's `chromedriver` on a free 127.0.0.1 port
//! and opens a session in a headless Chromium with a user-data directory of
//! its own; [`Browser`]'s methods (open a URL, fill a field by name or id,
//! click, read text, take a PNG screenshot) block, so that the synchronous
//! end-to-end tests call them directly. [`StaticSite`] is a tiny HTTP server
//! for pages a test writes itself: the harness's smoke test, or a page on
//! another origin that posts a forged form to the UI.
//!
//! Processes: chromedriver runs under the stack's guard shell
//! ([`Guarded`]), in a process group and session of its own, and starts
//! Chromium, which stays in that group. Dropping the [`Browser`] ends the
//! WebDriver session (chromedriver quits Chromium), stops chromedriver
//! (SIGTERM to the group, SIGKILL after a while), and then kills by PID
//! every process recorded as a descendant of chromedriver that is still
//! there. When the test process dies without a drop, the guard shell sees
//! its pipe close and stops the group.
//!
//! Needs Debian's `chromium` and `chromium-driver`; [`availability`] says
//! which is missing and [`runnable`] turns that into a skip off CI and a
//! failure on CI (`CI` set).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use rustix::process::Signal;
use serde_json::{Value, json};

use crate::stack::process::{GuardSpec, Guarded, all_processes, process_info, signal_group, signal_process};

/// How long one WebDriver command may take before it counts as hung.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long chromedriver may take to listen after it starts.
const DRIVER_START_TIMEOUT: Duration = Duration::from_secs(15);
/// The window every screenshot shows, so that screenshots compare across runs.
const WINDOW_WIDTH: u32 = 1280;
const WINDOW_HEIGHT: u32 = 900;

/// Where the browser tests put their screenshots unless `COUCHMAIL_SCREENSHOT_DIR` says otherwise.
pub const SCREENSHOT_DIR_ENV: &str = "COUCHMAIL_SCREENSHOT_DIR";

/// What went wrong talking to the browser, with the page it was on.
pub struct BrowserError {
    message: String,
}

impl BrowserError {
    fn new(message: impl Into<String>) -> BrowserError {
        BrowserError { message: message.into() }
    }
}

impl fmt::Display for BrowserError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

// Tests unwrap these; Debug prints the message itself so that the panic reads like one.
impl fmt::Debug for BrowserError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message)
    }
}

impl std::error::Error for BrowserError {}

/// The programs the browser tests need, found on `PATH`: `(chromium, chromedriver)`, or which are missing.
pub fn availability() -> Result<(PathBuf, PathBuf), String> {
    let chromium = find_program("chromium");
    let chromedriver = find_program("chromedriver");
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Ok((chromium, chromedriver)),
        (chromium, chromedriver) => {
            let mut missing = Vec::new();
            if chromium.is_none() {
                missing.push("chromium (Debian package chromium)");
            }
            if chromedriver.is_none() {
                missing.push("chromedriver (Debian package chromium-driver)");
            }
            Err(format!("the browser tests need {}", missing.join(" and ")))
        }
    }
}

/// Whether the browser tests can run here. Without Chromium a test prints
/// why and returns, except on CI (`CI` set), where that is a failure.
///
/// # Panics
/// On CI, when Chromium or chromedriver is missing.
pub fn runnable() -> bool {
    match availability() {
        Ok(_) => true,
        Err(err) if std::env::var_os("CI").is_some() => panic!("CI must run the browser tests: {err}"),
        Err(err) => {
            eprintln!("note: skipping a browser test: {err}");
            false
        }
    }
}

/// The directory screenshots go to: `COUCHMAIL_SCREENSHOT_DIR`, else
/// `e2e-screenshots` in the Cargo target directory of the running test
/// binary, else one in the system's temporary directory. Created if missing.
pub fn screenshot_dir() -> PathBuf {
    let executable = std::env::current_exe().unwrap_or_default();
    let directory = screenshot_dir_for(std::env::var_os(SCREENSHOT_DIR_ENV), &executable);
    // A directory that cannot be made shows up as a failed screenshot, with the path in the message.
    let _ = std::fs::create_dir_all(&directory);
    directory
}

/// [`screenshot_dir`] without the environment: `configured` wins, then the
/// target directory above `executable` (`<target>/<profile>/deps/<binary>`).
fn screenshot_dir_for(configured: Option<OsString>, executable: &Path) -> PathBuf {
    if let Some(configured) = configured.filter(|value| !value.is_empty()) {
        return PathBuf::from(configured);
    }
    let target = executable
        .ancestors()
        .find(|ancestor| ancestor.file_name() == Some(OsStr::new("deps")))
        .and_then(Path::parent)
        .and_then(Path::parent);
    match target {
        Some(target) => target.join("e2e-screenshots"),
        None => std::env::temp_dir().join("couchmail-e2e-screenshots"),
    }
}

/// A cookie as the browser holds it (HttpOnly cookies included: WebDriver sees them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrowserCookie {
    /// Its name.
    pub name: String,
    /// Its value.
    pub value: String,
    /// Whether it carries `HttpOnly`.
    pub http_only: bool,
    /// Whether it carries `Secure`.
    pub secure: bool,
    /// Its `SameSite` attribute as the browser reports it (`Strict`, `Lax`, `None`), if any.
    pub same_site: Option<String>,
}

/// A headless Chromium under chromedriver, with one WebDriver session.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Option<Guarded>,
    driver_log: PathBuf,
    directory: tempfile::TempDir,
}

impl fmt::Debug for Browser {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("Browser").field("directory", &self.directory.path()).finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` when
    /// [`runnable`] says the machine has no Chromium (off CI).
    ///
    /// # Panics
    /// When Chromium is there but does not start: a broken machine, not a skip.
    pub fn start_if_available() -> Option<Browser> {
        if !runnable() {
            return None;
        }
        match Browser::start() {
            Ok(browser) => Some(browser),
            Err(err) => panic!("the browser did not start: {err}"),
        }
    }

    /// Starts chromedriver on a free port and opens a session in a headless Chromium.
    pub fn start() -> Result<Browser, BrowserError> {
        let (chromium, chromedriver) = availability().map_err(BrowserError::new)?;
        let directory = tempfile::Builder::new()
            .prefix("couchmail-browser-")
            .tempdir()
            .map_err(|err| BrowserError::new(format!("cannot create the browser's directory: {err}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| BrowserError::new(format!("cannot build a runtime for WebDriver: {err}")))?;
        let driver_log = directory.path().join("chromedriver.log");
        let mut browser = Browser { runtime, client: None, driver: None, driver_log, directory };
        // Another process may take the free port between our probe and chromedriver's bind: try again then.
        let mut last_error = None;
        for _ in 0..3 {
            match browser.start_driver(&chromedriver) {
                Ok(port) => {
                    last_error = None;
                    browser.connect(port, &chromium)?;
                    break;
                }
                Err(err) => last_error = Some(err),
            }
        }
        match last_error {
            Some(err) => Err(err),
            None => Ok(browser),
        }
    }

    fn start_driver(&mut self, chromedriver: &Path) -> Result<u16, BrowserError> {
        if let Some(mut old) = self.driver.take() {
            let _ = old.stop(Duration::from_secs(5));
        }
        let port = free_port().map_err(|err| BrowserError::new(format!("cannot find a free port: {err}")))?;
        let port_arg = OsString::from(format!("--port={port}"));
        let args = [port_arg.as_os_str(), OsStr::new("--allowed-ips=127.0.0.1")];
        // Chromium's crash handler keeps its database under XDG_CONFIG_HOME whatever the user-data-dir says:
        // point it (and the cache) into the browser's directory, so that a test leaves nothing in $HOME.
        let config_home = self.directory.path().join("config").to_string_lossy().into_owned();
        let cache_home = self.directory.path().join("cache").to_string_lossy().into_owned();
        let driver = Guarded::spawn(GuardSpec {
            name: "chromedriver",
            program: chromedriver,
            args: &args,
            log: &self.driver_log,
            envs: &[("XDG_CONFIG_HOME", &config_home), ("XDG_CACHE_HOME", &cache_home)],
            cleanup: Some(self.directory.path()),
            leftover_pid_file: None,
        })
        .map_err(BrowserError::new)?;
        let driver = self.driver.insert(driver);
        let deadline = Instant::now() + DRIVER_START_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(200)).is_ok()
            {
                return Ok(port);
            }
            if !driver.is_running() || Instant::now() >= deadline {
                return Err(BrowserError::new(format!(
                    "chromedriver did not listen on 127.0.0.1:{port}; its log:\n{}",
                    tail(&self.driver_log)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn connect(&mut self, port: u16, chromium: &Path) -> Result<(), BrowserError> {
        let user_data_dir = self.directory.path().join("profile");
        let mut args = vec![
            "--headless=new".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            // Nothing of a test may reach the network: no updates, sync, or background fetches.
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--password-store=basic".to_owned(),
            format!("--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}"),
            format!("--user-data-dir={}", user_data_dir.display()),
        ];
        // Chromium refuses to run as root with its sandbox on; CI runs as root.
        if rustix::process::geteuid().is_root() {
            args.push("--no-sandbox".to_owned());
        }
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert("pageLoadStrategy".to_owned(), json!("normal"));
        capabilities
            .insert("goog:chromeOptions".to_owned(), json!({ "binary": chromium.to_string_lossy(), "args": args }));
        let url = format!("http://127.0.0.1:{port}");
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let connected = self.runtime.block_on(async {
            tokio::time::timeout(
                COMMAND_TIMEOUT,
                ClientBuilder::new(connector).capabilities(capabilities).connect(&url),
            )
            .await
        });
        match connected {
            Ok(Ok(client)) => {
                self.client = Some(client);
                Ok(())
            }
            Ok(Err(err)) => Err(BrowserError::new(format!(
                "chromedriver did not open a Chromium session: {err}; its log:\n{}",
                tail(&self.driver_log)
            ))),
            Err(_) => Err(BrowserError::new(format!(
                "chromedriver did not open a Chromium session within {COMMAND_TIMEOUT:?}; its log:\n{}",
                tail(&self.driver_log)
            ))),
        }
    }

    /// Runs one WebDriver exchange, bounded by [`COMMAND_TIMEOUT`]; errors name `what` and the page.
    fn run<T, F>(&self, what: &str, command: impl FnOnce(Client) -> F) -> Result<T, BrowserError>
    where
        F: Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let client = self.client()?;
        let outcome = self.runtime.block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, command(client)).await });
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(BrowserError::new(format!("{what}: {err} (on {})", self.describe_page()))),
            Err(_) => Err(BrowserError::new(format!(
                "{what}: no answer within {COMMAND_TIMEOUT:?} (on {})",
                self.describe_page()
            ))),
        }
    }

    fn client(&self) -> Result<Client, BrowserError> {
        self.client.clone().ok_or_else(|| BrowserError::new("the browser session is closed"))
    }

    /// The current URL, for error messages; never fails.
    fn describe_page(&self) -> String {
        let Some(client) = self.client.clone() else { return "no session".to_owned() };
        let url = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async move { client.current_url().await }).await
        });
        match url {
            Ok(Ok(url)) => url.to_string(),
            _ => "an unknown page".to_owned(),
        }
    }

    /// Loads `url` and waits until the page has loaded.
    pub fn open(&self, url: &str) -> Result<(), BrowserError> {
        let owned = url.to_owned();
        self.run(&format!("open {url}"), |client| async move { client.goto(&owned).await })
    }

    /// The URL the browser shows now (after any redirect).
    pub fn current_url(&self) -> Result<String, BrowserError> {
        self.run("read the current URL", |client| async move { client.current_url().await.map(String::from) })
    }

    /// The page's `<title>`.
    pub fn title(&self) -> Result<String, BrowserError> {
        self.run("read the title", |client| async move { client.title().await })
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> Result<String, BrowserError> {
        self.run("read the page source", |client| async move { client.source().await })
    }

    /// The visible text of the whole page.
    pub fn body_text(&self) -> Result<String, BrowserError> {
        self.text("body")
    }

    /// The visible text of the first element matching the CSS `selector`.
    pub fn text(&self, selector: &str) -> Result<String, BrowserError> {
        let owned = selector.to_owned();
        self.run(&format!("read the text of {selector}"), |client| async move {
            client.find(Locator::Css(&owned)).await?.text().await
        })
    }

    /// The visible texts of every element matching the CSS `selector`, in document order.
    pub fn texts(&self, selector: &str) -> Result<Vec<String>, BrowserError> {
        let owned = selector.to_owned();
        self.run(&format!("read the texts of {selector}"), |client| async move {
            let mut texts = Vec::new();
            for element in client.find_all(Locator::Css(&owned)).await? {
                texts.push(element.text().await?);
            }
            Ok(texts)
        })
    }

    /// How many elements match the CSS `selector` (0 when none do).
    pub fn count(&self, selector: &str) -> Result<usize, BrowserError> {
        let owned = selector.to_owned();
        self.run(&format!("count {selector}"), |client| async move {
            client.find_all(Locator::Css(&owned)).await.map(|elements| elements.len())
        })
    }

    /// Whether some element matches the CSS `selector`.
    pub fn exists(&self, selector: &str) -> Result<bool, BrowserError> {
        self.count(selector).map(|count| count > 0)
    }

    /// An attribute of the first element matching the CSS `selector`.
    pub fn attribute(&self, selector: &str, attribute: &str) -> Result<Option<String>, BrowserError> {
        let (owned, attribute) = (selector.to_owned(), attribute.to_owned());
        self.run(&format!("read {attribute} of {selector}"), |client| async move {
            client.find(Locator::Css(&owned)).await?.attr(&attribute).await
        })
    }

    /// Waits up to `timeout` until an element matches the CSS `selector`.
    pub fn wait_for(&self, selector: &str, timeout: Duration) -> Result<(), BrowserError> {
        let owned = selector.to_owned();
        let timeout = timeout.min(COMMAND_TIMEOUT);
        self.run(&format!("wait {timeout:?} for {selector}"), |client| async move {
            client.wait().at_most(timeout).for_element(Locator::Css(&owned)).await.map(|_| ())
        })
    }

    /// Sets the form field whose `name` or `id` is `field`: types `value`
    /// into an input or textarea (clearing it first), or picks the option
    /// whose value is `value` in a `<select>`.
    pub fn fill(&self, field: &str, value: &str) -> Result<(), BrowserError> {
        let selector = field_selector(field)?;
        let value = value.to_owned();
        self.run(&format!("fill {field}"), |client| async move {
            let element = client.find(Locator::Css(&selector)).await?;
            if element.tag_name().await?.eq_ignore_ascii_case("select") {
                element.select_by_value(&value).await
            } else {
                element.clear().await?;
                element.send_keys(&value).await
            }
        })
    }

    /// The current value of the form field whose `name` or `id` is `field`.
    pub fn value(&self, field: &str) -> Result<String, BrowserError> {
        let selector = field_selector(field)?;
        self.run(&format!("read the value of {field}"), |client| async move {
            let value = client.find(Locator::Css(&selector)).await?.prop("value").await?;
            Ok(value.unwrap_or_default())
        })
    }

    /// Ticks or clears the checkbox whose `name` or `id` is `field`.
    pub fn set_checked(&self, field: &str, checked: bool) -> Result<(), BrowserError> {
        let selector = field_selector(field)?;
        self.run(&format!("set {field} to {checked}"), |client| async move {
            let element = client.find(Locator::Css(&selector)).await?;
            if element.is_selected().await? != checked {
                element.click().await?;
            }
            Ok(())
        })
    }

    /// Clicks the first element matching the CSS `selector` (`#save`,
    /// `button[type=submit]`); a click that submits a form returns once the
    /// next page has loaded.
    pub fn click(&self, selector: &str) -> Result<(), BrowserError> {
        let owned = selector.to_owned();
        self.run(&format!("click {selector}"), |client| async move {
            client.find(Locator::Css(&owned)).await?.click().await
        })
    }

    /// Runs `script` in the page as a function body (`arguments[0]`… are
    /// `args`) and returns what it returns.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, BrowserError> {
        let owned = script.to_owned();
        self.run("run a script", |client| async move { client.execute(&owned, args).await })
    }

    /// Runs `script` in the page as an asynchronous function body: it ends
    /// by calling its last argument with the result (WebDriver's Execute
    /// Async Script).
    pub fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value, BrowserError> {
        let owned = script.to_owned();
        self.run("run an asynchronous script", |client| async move { client.execute_async(&owned, args).await })
    }

    /// The cookie called `name` for the current page, if the browser holds one.
    pub fn cookie(&self, name: &str) -> Result<Option<BrowserCookie>, BrowserError> {
        let cookies = self.run("read the cookies", |client| async move { client.get_all_cookies().await })?;
        Ok(cookies.into_iter().find(|cookie| cookie.name() == name).map(|cookie| BrowserCookie {
            name: cookie.name().to_owned(),
            value: cookie.value().to_owned(),
            http_only: cookie.http_only().unwrap_or(false),
            secure: cookie.secure().unwrap_or(false),
            same_site: cookie.same_site().map(|same_site| same_site.to_string()),
        }))
    }

    /// Forgets every cookie of the current site (a logout without the UI).
    pub fn delete_all_cookies(&self) -> Result<(), BrowserError> {
        self.run("delete the cookies", |client| async move { client.delete_all_cookies().await })
    }

    /// Saves a PNG of the visible page at `path` (its directory is created).
    pub fn screenshot(&self, path: &Path) -> Result<(), BrowserError> {
        let png = self.run("take a screenshot", |client| async move { client.screenshot().await })?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|err| BrowserError::new(format!("cannot create {}: {err}", parent.display())))?;
        }
        std::fs::write(path, png).map_err(|err| BrowserError::new(format!("cannot write {}: {err}", path.display())))
    }

    /// Saves a PNG of the visible page as `<name>.png` in [`screenshot_dir`]
    /// and returns its path.
    pub fn screenshot_named(&self, name: &str) -> Result<PathBuf, BrowserError> {
        let path = screenshot_dir().join(format!("{name}.png"));
        self.screenshot(&path)?;
        Ok(path)
    }

    /// chromedriver and every process it started (Chromium and its helpers), as /proc shows them now.
    pub fn process_ids(&self) -> BTreeSet<u32> {
        self.driver.as_ref().and_then(Guarded::pid).map(descendants_and_self).unwrap_or_default()
    }

    /// Ends the session and stops chromedriver and Chromium; dropping the
    /// browser does the same, without reporting.
    pub fn close(mut self) -> Result<(), BrowserError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), BrowserError> {
        // Recorded before anything stops: once chromedriver is gone its children have a new parent.
        let group = self.driver.as_ref().and_then(Guarded::pid);
        let recorded = self.process_ids();
        let mut problems = Vec::new();
        if let Some(client) = self.client.take() {
            let closed = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), async move { client.close().await }).await
            });
            match closed {
                Ok(Ok(())) => {}
                Ok(Err(err)) => problems.push(format!("the WebDriver session did not end cleanly: {err}")),
                Err(_) => problems.push("the WebDriver session did not end within 10 s".to_owned()),
            }
        }
        if let Some(mut driver) = self.driver.take()
            && let Err(err) = driver.stop(Duration::from_secs(10))
        {
            // chromedriver dies of the guard's SIGTERM (status 143): only a failure to stop it is a problem.
            if err.contains("did not stop") {
                problems.push(err);
            }
        }
        if let Some(group) = group {
            signal_group(group, Signal::KILL);
        }
        for pid in &recorded {
            // A recorded PID that now names some other program was reused: leave that process alone.
            if process_info(*pid).is_some_and(|process| is_browser_process(&process.command_line)) {
                signal_process(*pid, Signal::KILL);
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(BrowserError::new(problems.join("; "))) }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Err(err) = self.shut_down() {
            eprintln!("note: stopping the browser: {err}");
        }
    }
}

/// Whether a command line is chromedriver's or one of Chromium's processes.
fn is_browser_process(command_line: &str) -> bool {
    command_line.contains("chrom")
}

/// `pid` and every process below it in the process tree.
fn descendants_and_self(pid: u32) -> BTreeSet<u32> {
    let processes = all_processes();
    let mut found = BTreeSet::from([pid]);
    // The tree is shallow (chromedriver, Chromium, its zygotes and renderers): repeat until nothing is added.
    loop {
        let before = found.len();
        for process in &processes {
            if found.contains(&process.parent) {
                found.insert(process.pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// A CSS selector for the field whose `name` or `id` is `field`.
fn field_selector(field: &str) -> Result<String, BrowserError> {
    let plain = !field.is_empty()
        && field.chars().all(|character| character.is_ascii_alphanumeric() || "-_.:[]".contains(character));
    if !plain {
        return Err(BrowserError::new(format!("{field:?} is not a plain field name or id")));
    }
    Ok(format!("[name=\"{field}\"], [id=\"{field}\"]"))
}

/// A port free on 127.0.0.1 that no other test process gets meanwhile ([`crate::ports`]).
fn free_port() -> std::io::Result<u16> {
    crate::ports::reserve(1)
        .map_err(std::io::Error::other)?
        .pop()
        .ok_or_else(|| std::io::Error::other("no free port was found"))
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// One request a [`StaticSite`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// The body, as text.
    pub body: String,
}

/// A tiny HTTP/1.1 server on 127.0.0.1 for pages a test writes: `GET` of a
/// known path answers its HTML, a `POST` answers a page that shows the body
/// in `<pre id="posted">`, anything else 404. Every request is recorded.
/// It stops when dropped.
#[derive(Debug)]
pub struct StaticSite {
    address: SocketAddr,
    requests: Arc<Mutex<Vec<SiteRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StaticSite {
    /// Serves `pages` (path such as `/form.html`, HTML) on a free port.
    pub fn serve(pages: &[(&str, &str)]) -> std::io::Result<StaticSite> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let pages: Arc<BTreeMap<String, String>> =
            Arc::new(pages.iter().map(|(path, html)| ((*path).to_owned(), (*html).to_owned())).collect());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (Arc::clone(&requests), Arc::clone(&stop));
            std::thread::spawn(move || accept_loop(&listener, &pages, &requests, &stop))
        };
        Ok(StaticSite { address, requests, stop, thread: Some(thread) })
    }

    /// The URL of `path` on this site, as `http://127.0.0.1:PORT/…`.
    pub fn url(&self, path: &str) -> String {
        self.url_on_host("127.0.0.1", path)
    }

    /// The URL of `path` under another name for the loopback address, such
    /// as `localhost`: a different site from `127.0.0.1` for the browser.
    pub fn url_on_host(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.address.port())
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<SiteRequest> {
        self.requests.lock().map(|requests| requests.clone()).unwrap_or_default()
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    pages: &Arc<BTreeMap<String, String>>,
    requests: &Arc<Mutex<Vec<SiteRequest>>>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                // Browsers open speculative connections that may never send a request: one thread each,
                // ended by the read timeout, keeps them from holding up the next page.
                let (pages, requests) = (Arc::clone(pages), Arc::clone(requests));
                std::thread::spawn(move || {
                    let _ = serve_connection(stream, &pages, &requests);
                });
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve_connection(
    stream: TcpStream,
    pages: &BTreeMap<String, String>,
    requests: &Mutex<Vec<SiteRequest>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut content_length = 0_usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0_u8; content_length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if let Ok(mut requests) = requests.lock() {
        requests.push(SiteRequest { method: method.clone(), path: path.clone(), body: body.clone() });
    }
    let (status, html) = match (method.as_str(), pages.get(&path)) {
        ("GET", Some(html)) => ("200 OK", html.clone()),
        ("POST", _) => (
            "200 OK",
            format!(
                "<!doctype html><title>Posted</title><pre id=\"posted\">{}</pre>",
                body.replace('&', "&amp;").replace('<', "&lt;")
            ),
        ),
        _ => ("404 Not Found", "<!doctype html><title>Not found</title>".to_owned()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
        html.len()
    )?;
    stream.flush()
}

/// The first program called `name` in one of `PATH`'s directories.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|directory| directory.join(name)).find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM_PAGE: &str = r#"<!doctype html>
<html><head><title>Harness form</title></head>
<body>
<h1 id="heading">Hello from the harness</h1>
<form method="post" action="/echo">
  <label>Greeting <input name="greeting" id="greeting-input"></label>
  <label>Colour <select name="colour"><option value="red">Red</option><option value="blue">Blue</option></select></label>
  <label><input type="checkbox" name="agree" value="yes"> Agree</label>
  <textarea id="notes" name="notes"></textarea>
  <button id="send" type="submit">Send</button>
</form>
</body></html>"#;

    /// Whether `pid` is there and not a zombie waiting for its new parent to reap it.
    fn is_alive(pid: u32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rfind(')').is_some_and(|end| stat[end + 1..].split_whitespace().next() != Some("Z"))
    }

    fn http_get(address: SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn static_site_serves_its_pages_echoes_posts_and_records_requests() {
        let site = StaticSite::serve(&[("/form.html", FORM_PAGE)]).unwrap();
        let response = http_get(site.address, "/form.html");
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.contains("Hello from the harness"), "{response}");
        let missing = http_get(site.address, "/nothing");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

        let mut stream = TcpStream::connect(site.address).unwrap();
        write!(stream, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\na=<b>&c=d").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.contains("<pre id=\"posted\">a=&lt;b>&amp;c=d</pre>"), "{response}");

        let requests = site.requests();
        assert_eq!(requests.len(), 3, "{requests:?}");
        assert_eq!(requests[2], SiteRequest { method: "POST".into(), path: "/echo".into(), body: "a=<b>&c=d".into() });
        assert_eq!(site.url("/x"), format!("http://127.0.0.1:{}/x", site.address.port()));
        assert_eq!(site.url_on_host("localhost", "/x"), format!("http://localhost:{}/x", site.address.port()));
    }

    #[test]
    fn screenshots_go_to_the_configured_directory_else_next_to_the_target_directory() {
        let binary = Path::new("/var/tmp/target/debug/deps/e2e-0123");
        assert_eq!(screenshot_dir_for(Some("/shots".into()), binary), PathBuf::from("/shots"));
        assert_eq!(screenshot_dir_for(Some("".into()), binary), PathBuf::from("/var/tmp/target/e2e-screenshots"));
        assert_eq!(screenshot_dir_for(None, binary), PathBuf::from("/var/tmp/target/e2e-screenshots"));
        assert_eq!(
            screenshot_dir_for(None, Path::new("/usr/bin/tool")),
            std::env::temp_dir().join("couchmail-e2e-screenshots")
        );
    }

    #[test]
    fn field_selectors_match_name_or_id_and_refuse_quotes() {
        assert_eq!(field_selector("greeting").unwrap(), r#"[name="greeting"], [id="greeting"]"#);
        assert_eq!(field_selector("rule[0].value").unwrap(), r#"[name="rule[0].value"], [id="rule[0].value"]"#);
        assert!(field_selector("a\"]").is_err());
        assert!(field_selector("").is_err());
    }

    /// The harness end to end: a real Chromium fills and submits a form,
    /// reads the answer, takes a PNG screenshot, and leaves no process behind.
    #[test]
    fn browser_fills_a_form_submits_it_reads_the_answer_and_leaves_no_process() {
        let Some(browser) = Browser::start_if_available() else { return };
        let site = StaticSite::serve(&[("/form.html", FORM_PAGE)]).unwrap();
        let processes = browser.process_ids();
        assert!(processes.len() >= 2, "chromedriver and Chromium should both run: {processes:?}");

        browser.open(&site.url("/form.html")).unwrap();
        assert_eq!(browser.title().unwrap(), "Harness form");
        assert_eq!(browser.text("#heading").unwrap(), "Hello from the harness");
        assert!(browser.exists("#send").unwrap());
        assert!(!browser.exists("#absent").unwrap());
        browser.fill("greeting", "hi there").unwrap();
        browser.fill("greeting-input", "hello world").unwrap();
        assert_eq!(browser.value("greeting").unwrap(), "hello world", "fill replaces what was typed before");
        browser.fill("colour", "blue").unwrap();
        browser.set_checked("agree", true).unwrap();
        browser.fill("notes", "line one").unwrap();

        let directory = tempfile::tempdir().unwrap();
        let shot = directory.path().join("shots/form.png");
        browser.screenshot(&shot).unwrap();
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a screenshot is a PNG");

        browser.click("#send").unwrap();
        browser.wait_for("#posted", Duration::from_secs(10)).unwrap();
        assert_eq!(browser.text("#posted").unwrap(), "greeting=hello+world&colour=blue&agree=yes&notes=line+one");
        assert_eq!(browser.current_url().unwrap(), site.url("/echo"));
        let posts: Vec<SiteRequest> = site.requests().into_iter().filter(|request| request.method == "POST").collect();
        assert_eq!(posts.len(), 1, "{posts:?}");
        assert_eq!(browser.execute("return 6 * 7;", Vec::new()).unwrap(), json!(42));

        browser.close().unwrap();
        let survivors: Vec<u32> = processes.into_iter().filter(|pid| is_alive(*pid)).collect();
        assert!(survivors.is_empty(), "browser processes left behind: {survivors:?}");
    }
}
