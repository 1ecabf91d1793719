//! The browser test support drives a real headless Chromium: a page served on loopback is
//! rendered and screenshotted, its form is filled and posted by a click on one of its buttons
//! (the page has no JavaScript), and two sessions share no cookies.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, Method};
use axum::response::{AppendHeaders, Html, IntoResponse};
use axum::routing::get;
use shipgate_tests::browser::{Browser, Session};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

/// What the page server saw: one entry per request, (method, Cookie header, body).
type Seen = Arc<Mutex<Vec<(Method, Option<String>, String)>>>;

/// Serves the test page on a free loopback port; returns its URL and what it sees.
async fn serve_page() -> Result<(String, Seen)> {
    let seen = Seen::default();
    let app = Router::new()
        .route("/approve", get(page).post(decide))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}/approve", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen))
}

/// The approval form. A visitor without a cookie gets one.
async fn page(State(seen): State<Seen>, headers: HeaderMap) -> impl IntoResponse {
    let cookie = header(&headers, COOKIE);
    seen.lock()
        .unwrap()
        .push((Method::GET, cookie.clone(), String::new()));
    let (visitor, set_cookie) = match cookie {
        Some(c) => (format!("returning visitor ({c})"), None),
        None => (
            "new visitor".to_owned(),
            Some((
                SET_COOKIE,
                format!("visitor={}; Path=/; HttpOnly", uuid::Uuid::new_v4()),
            )),
        ),
    };
    let body = format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Approve release 1.2.3</title></head>
<body>
<h1>Release 1.2.3 to prod</h1>
<p id="visitor">{visitor}</p>
<form method="post">
  <label for="comment">Comment</label>
  <textarea id="comment" name="comment" rows="4" cols="60"></textarea>
  <button type="submit" name="decision" value="approve">Approve</button>
  <button type="submit" name="decision" value="reject">Reject</button>
</form>
</body></html>"#,
        visitor = escape(&visitor)
    );
    (AppendHeaders(set_cookie), Html(body))
}

/// Echoes the posted form (same URL as the form: a form without `action` posts to itself).
async fn decide(State(seen): State<Seen>, headers: HeaderMap, body: String) -> Html<String> {
    seen.lock()
        .unwrap()
        .push((Method::POST, header(&headers, COOKIE), body.clone()));
    let fields: Vec<String> = form_fields(&body)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Html(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Decision recorded</title></head>
<body><pre id="result">{}</pre></body></html>"#,
        escape(&fields.join("\n"))
    ))
}

fn header(headers: &HeaderMap, name: axum::http::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn form_fields(body: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn screenshot_path() -> PathBuf {
    std::env::temp_dir()
        .join("shipgate-browser-test")
        .join(format!("{}.png", uuid::Uuid::new_v4()))
}

/// A new session of `browser` with `url` open.
async fn opened(browser: &Browser, url: &str) -> Result<Session> {
    let session = browser.session().await?;
    session.goto(url).await?;
    Ok(session)
}

#[tokio::test]
async fn a_click_on_a_form_button_posts_the_form() -> Result<()> {
    let (url, seen) = serve_page().await?;
    let browser = Browser::start().await?;
    let session = opened(&browser, &url).await?;
    assert_eq!(session.title().await?, "Approve release 1.2.3");
    assert_eq!(session.text_of("h1").await?, "Release 1.2.3 to prod");

    let shot = screenshot_path();
    session.screenshot(&shot).await?;
    let png = std::fs::read(&shot).with_context(|| format!("reading {}", shot.display()))?;
    assert!(
        png.starts_with(PNG_MAGIC),
        "{} is not a PNG ({} bytes)",
        shot.display(),
        png.len()
    );
    std::fs::remove_file(&shot)?;

    // Opening the page posted nothing.
    assert!(seen.lock().unwrap().iter().all(|(m, ..)| m == Method::GET));

    let comment = "Looks good & ship it: 100% <green>, a+b";
    session.fill("textarea[name=comment]", comment).await?;
    session
        .click(r#"button[name=decision][value=approve]"#)
        .await?;

    assert_eq!(session.title().await?, "Decision recorded");
    assert_eq!(session.current_url().await?, url);
    let result = session.text_of("#result").await?;
    assert!(result.contains("decision=approve"), "result page: {result}");
    assert!(!result.contains("decision=reject"), "result page: {result}");
    assert!(
        result.contains(&format!("comment={comment}")),
        "result page: {result}"
    );
    assert!(session.page_source().await?.contains(r#"id="result""#));

    let posts: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(m, ..)| m == Method::POST)
        .cloned()
        .collect();
    assert_eq!(
        posts.len(),
        1,
        "exactly one POST, from the click: {posts:?}"
    );

    session.close().await?;
    Ok(())
}

#[tokio::test]
async fn sessions_share_no_cookies() -> Result<()> {
    let (url, seen) = serve_page().await?;
    let browser = Browser::start().await?;
    let first = opened(&browser, &url).await?;
    assert_eq!(first.text_of("#visitor").await?, "new visitor");
    // The cookie set on the first visit comes back on the next one, in the same session...
    first.goto(&url).await?;
    let returning = first.text_of("#visitor").await?;
    assert!(
        returning.starts_with("returning visitor (visitor="),
        "second visit of the first session: {returning}"
    );

    // ...but not in another session.
    let second = opened(&browser, &url).await?;
    assert_eq!(second.text_of("#visitor").await?, "new visitor");

    let cookies: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, c, _)| c.clone())
        .collect();
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    assert_eq!(cookies[0], None, "first visit: {cookies:?}");
    assert!(
        cookies[1].is_some(),
        "first session, second visit: {cookies:?}"
    );
    assert_eq!(
        cookies[2], None,
        "second session's first visit: {cookies:?}"
    );

    first.close().await?;
    second.close().await?;
    Ok(())
}
