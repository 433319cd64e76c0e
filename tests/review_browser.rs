//! `review.html` in a real browser: headless Chromium (Debian's `chromium` package) opens
//! the report of the seed plan, the test fails on any console error or uncaught exception,
//! checks through the DOM that every diagram is there and drawn, and saves a screenshot to
//! `target/review-screenshot.png` for a person to look at.

use headless_chrome::protocol::cdp::Page;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Chromium: `$CHROMIUM`, or `chromium` (Debian), `chromium-browser` or `google-chrome` on
/// the PATH. Missing, the test fails: a browser test that skips proves nothing.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(dir) = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .find(|d| d.join(name).is_file())
        {
            return dir.join(name);
        }
    }
    panic!(
        "Chromium is missing: this test renders review.html in headless Chromium. Install it with `sudo apt-get install -y chromium` (.ci/run does this), or set CHROMIUM to a Chromium or Chrome binary."
    );
}

/// Console errors, warnings about blocked resources and uncaught exceptions, as text.
type Collected = Arc<Mutex<Vec<String>>>;

fn collect(tab: &headless_chrome::Tab) -> Collected {
    let seen: Collected = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let problem = match event {
            Event::LogEntryAdded(e) => {
                let level = format!("{:?}", e.params.entry.level);
                (level == "Error").then(|| format!("log {level}: {}", e.params.entry.text))
            }
            Event::RuntimeExceptionThrown(e) => Some(format!(
                "exception: {} {:?}",
                e.params.exception_details.text,
                e.params
                    .exception_details
                    .exception
                    .as_ref()
                    .and_then(|x| x.description.clone())
            )),
            Event::RuntimeConsoleAPICalled(e) => {
                let kind = format!("{:?}", e.params.Type);
                matches!(kind.as_str(), "Error" | "Assert").then(|| {
                    format!(
                        "console.{kind}: {:?}",
                        e.params
                            .args
                            .iter()
                            .map(|a| a.value.clone())
                            .collect::<Vec<_>>()
                    )
                })
            }
            _ => None,
        };
        if let Some(p) = problem {
            sink.lock().expect("not poisoned").push(p);
        }
    }))
    .expect("listens");
    tab.enable_log().expect("Log domain");
    tab.enable_runtime().expect("Runtime domain");
    seen
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.canonicalize().expect("exists").display())
}

#[test]
fn the_html_report_renders_in_chromium_without_console_errors() {
    let chromium = chromium();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("review-browser");
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .args(["review", "--cases", "25", "--depth", "4", "--out"])
        .arg(&out)
        .status()
        .expect("the binary runs");
    assert_eq!(status.code(), Some(0), "the seed plan is safe");

    let browser = Browser::new(LaunchOptions {
        headless: true,
        sandbox: false,
        path: Some(chromium),
        window_size: Some((1280, 1000)),
        ..LaunchOptions::default()
    })
    .expect("Chromium starts");
    let tab = browser.new_tab().expect("a tab");
    let problems = collect(&tab);

    // The detector itself: a page with a console error and an exception must be caught.
    tab.navigate_to("data:text/html,<script>console.error('planted');undefinedFunction()</script>")
        .expect("navigates")
        .wait_until_navigated()
        .expect("loads");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let planted = std::mem::take(&mut *problems.lock().expect("not poisoned"));
    assert!(
        planted.iter().any(|p| p.contains("planted"))
            && planted.iter().any(|p| p.contains("undefinedFunction")),
        "the console detector missed a planted error: {planted:?}"
    );

    tab.navigate_to(&file_url(&out.join("review.html")))
        .expect("navigates")
        .wait_until_navigated()
        .expect("loads");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let dom = tab
        .evaluate(
            r#"JSON.stringify({
                title: document.title,
                kinds: [...document.querySelectorAll('svg.state-diagram')].map(s => s.dataset.kind),
                drawn: [...document.querySelectorAll('svg')].every(s => {
                    const r = s.getBoundingClientRect(); return r.width > 100 && r.height > 100; }),
                phases: document.querySelectorAll('svg.state-diagram g.phase').length,
                sequences: document.querySelectorAll('svg.sequence-diagram').length,
                failures: document.querySelectorAll('svg.sequence-diagram g.failure').length,
                failing: document.querySelectorAll('svg.sequence-diagram .failing').length,
                whatIf: document.querySelectorAll('table.what-if tbody tr').length,
                caught: document.querySelectorAll('table.what-if .badge.yes').length,
                verdict: document.querySelector('#verdict').className,
                resources: performance.getEntriesByType('resource').length,
                height: document.documentElement.scrollHeight,
            })"#,
            false,
        )
        .expect("evaluates")
        .value
        .expect("a value");
    let dom: serde_json::Value =
        serde_json::from_str(dom.as_str().expect("a string")).expect("JSON");
    let problems = problems.lock().expect("not poisoned").clone();
    assert!(problems.is_empty(), "console errors: {problems:?}");
    assert_eq!(dom["title"], "Design review: plan \"seed\"");
    assert_eq!(
        dom["kinds"],
        serde_json::json!(["events", "transactions", "tickets"])
    );
    assert_eq!(dom["drawn"], true, "every diagram has a size: {dom}");
    assert_eq!(dom["phases"], 15);
    // With 25 cases most variants are caught (all twelve need more cases, see
    // tests/catalogue.rs); each caught one has its sequence diagram with its failure drawn.
    let caught = dom["caught"].as_u64().expect("a count");
    assert!(caught >= 10, "{dom}");
    assert_eq!(dom["whatIf"], 12);
    assert_eq!(dom["sequences"], caught, "one per caught variant: {dom}");
    assert_eq!(dom["failures"], caught);
    assert!(dom["failing"].as_u64() >= Some(caught), "{dom}");
    assert_eq!(dom["verdict"], "verdict safe");
    assert_eq!(dom["resources"], 0, "the page loads nothing");

    // The whole page, for a person to look at.
    let height = dom["height"].as_f64().expect("a height");
    let png = tab
        .call_method(Page::CaptureScreenshot {
            format: Some(Page::CaptureScreenshotFormatOption::Png),
            quality: None,
            clip: Some(Page::Viewport {
                x: 0.0,
                y: 0.0,
                width: 1280.0,
                height,
                scale: 1.0,
            }),
            from_surface: Some(true),
            capture_beyond_viewport: Some(true),
            optimize_for_speed: None,
        })
        .expect("a screenshot")
        .data;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(png)
        .expect("base64");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    let shot = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/review-screenshot.png");
    std::fs::write(&shot, bytes).expect("writes the screenshot");
    println!("screenshot: {}", shot.display());
    eprintln!("screenshot: {}", shot.display());
}
