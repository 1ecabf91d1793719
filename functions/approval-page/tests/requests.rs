//! Every function URL request gets one of the page's own pages, never a crash: the event as
//! Lambda delivers it (AWS's function URL request sample, then changed) goes to
//! `ApprovalPage::handle_event`, and the answer is a function URL response with a status in
//! 200..=599 and the page's security headers. The page runs offline: every AWS call fails at
//! once, so what it can read without one is answered as such (400, 405, 415), and the rest as
//! "try again" (503).

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::{Value, json};
use shipgate::config::Env;
use shipgate_approval_page::{ApprovalPage, PageConfig};

fn sample() -> Value {
    serde_json::from_str(include_str!("fixtures/function-url-request.json"))
        .expect("the fixture is JSON")
}

/// The sample with `method`, `raw_query`, `headers`, `body` and its base64 flag.
fn request(
    method: &str,
    raw_query: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    base64: bool,
) -> Value {
    let mut event = sample();
    event["requestContext"]["http"]["method"] = method.into();
    event["rawQueryString"] = raw_query.into();
    event["headers"] = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    event["body"] = body.map_or(Value::Null, Value::from);
    event["isBase64Encoded"] = base64.into();
    event
}

struct Offline {
    runtime: tokio::runtime::Runtime,
    page: ApprovalPage,
}

fn offline() -> &'static Offline {
    static OFFLINE: OnceLock<Offline> = OnceLock::new();
    OFFLINE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let config = PageConfig::from_env(&Env::from_pairs([
            ("SHIPGATE_TABLE", "shipgate"),
            ("SHIPGATE_LINK_KEY_SECRET", "link-key"),
            ("SHIPGATE_APPROVERS_INT", "int-lead@example.com"),
        ]))
        .expect("the page's configuration");
        // The SDK's clients are built inside the runtime, as in Lambda.
        let page = runtime.block_on(async {
            ApprovalPage::new(config, &shipgate::testing::offline_sdk_config())
        });
        Offline { runtime, page }
    })
}

fn answer(event: Value) -> Value {
    let offline = offline();
    offline.runtime.block_on(offline.page.handle_event(event))
}

/// The answer is a page of the approval page's: a status in 200..=599 and every security
/// header; a body unless it answers a HEAD.
fn assert_a_page(answer: &Value, head: bool) -> Result<u64, TestCaseError> {
    let status = answer["statusCode"].as_u64().unwrap_or(0);
    prop_assert!((200..=599).contains(&status), "{answer}");
    let header = |name: &str| answer["headers"][name].as_str().unwrap_or_default();
    prop_assert_eq!(header("content-type"), "text/html; charset=utf-8");
    prop_assert!(
        header("content-security-policy").contains("default-src 'none'"),
        "{answer}"
    );
    prop_assert_eq!(header("x-frame-options"), "DENY");
    prop_assert_eq!(header("cache-control"), "no-store, max-age=0");
    prop_assert_eq!(header("x-content-type-options"), "nosniff");
    prop_assert_eq!(header("referrer-policy"), "same-origin");
    prop_assert_eq!(answer["isBase64Encoded"].as_bool(), Some(false));
    let body = answer["body"].as_str().unwrap_or_default();
    if !head {
        prop_assert!(body.contains("</html>"), "{answer}");
    }
    Ok(status)
}

fn page_of(answer: &Value) -> u64 {
    assert_a_page(answer, false).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn raw_quotes_and_angle_brackets_in_the_query_get_a_400_page() {
    for (query, title) in [
        ("t=\"abc\".def&i=approve", "Link damaged"),
        ("t=<script>alert(1)</script>&i=reject", "Link damaged"),
        ("t=abc.def\"><img src=x onerror=alert(1)>", "Link damaged"),
        ("t=%ZZ%&i=%", "Link damaged"),
        // No `t` at all.
        ("\"<>\"", "Link incomplete"),
    ] {
        let answer = answer(request("GET", query, &[], None, false));
        assert_eq!(page_of(&answer), 400, "{query}: {answer}");
        let body = answer["body"].as_str().unwrap_or_default();
        assert!(body.contains(title), "{query}: {body}");
        assert!(!body.contains("<script>alert"), "{query}: {body}");
        assert!(!body.contains("<img"), "{query}: {body}");
    }
}

#[test]
fn a_body_marked_base64_that_is_not_gets_a_400_page() {
    let form = [("content-type", "application/x-www-form-urlencoded")];
    for body in ["decision=approve&t=a.b", "%%%", "ab=c", "é"] {
        let answer = answer(request("POST", "", &form, Some(body), true));
        assert_eq!(page_of(&answer), 400, "{body}: {answer}");
        let html = answer["body"].as_str().unwrap_or_default();
        assert!(html.contains("Request not readable"), "{html}");
    }
    // Base64 that is base64 is read: a form without a decision is refused as such.
    let encoded = STANDARD.encode("t=abc.def");
    let answer = answer(request("POST", "", &form, Some(&encoded), true));
    assert_eq!(page_of(&answer), 400, "{answer}");
    let html = answer["body"].as_str().unwrap_or_default();
    assert!(html.contains("No decision"), "{html}");
}

#[test]
fn events_that_are_no_request_get_a_400_page() {
    let mut no_method = sample();
    no_method["requestContext"]["http"]
        .as_object_mut()
        .map(|http| http.remove("method"));
    let mut bad_header = sample();
    bad_header["headers"] = json!({"x-bad": "line\nbreak"});
    for event in [
        json!("GET /?t=a.b"),
        json!({}),
        json!(null),
        request("GE T", "", &[], None, false),
        no_method,
        bad_header,
    ] {
        let answer = answer(event.clone());
        assert_eq!(page_of(&answer), 400, "{event}: {answer}");
    }
}

#[test]
fn a_readable_request_still_gets_its_own_answer() {
    // A link token with a link's shape is checked with the key, which is out of reach here.
    let got = answer(request("GET", "t=abc.def&i=approve", &[], None, false));
    assert_eq!(page_of(&got), 503, "{got}");
    let got = answer(request("PUT", "", &[], None, false));
    assert_eq!(page_of(&got), 405, "{got}");
    assert_eq!(got["headers"]["allow"], "GET, HEAD, POST");
    let got = answer(request("POST", "", &[], Some("t=a.b"), false));
    assert_eq!(page_of(&got), 415, "{got}");
    let got = answer(request("HEAD", "", &[], None, false));
    let status = assert_a_page(&got, true).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 400, "{got}");
    assert_eq!(got["body"], "");
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

/// Query strings as browsers, scanners and attackers send them.
fn raw_query() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[-a-zA-Z0-9_.=&%+\"<>'`{}|\\\\^ #;/?]{0,80}",
        "[a-zA-Z0-9_-]{1,40}\\.[a-zA-Z0-9_-]{1,40}".prop_map(|t| format!("t={t}&i=approve")),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "content-type",
            "origin",
            "sec-fetch-site",
            "host",
            "cookie"
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "application/x-www-form-urlencoded",
            "same-origin",
            "cross-site",
            "https://evil.example",
            "null",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    prop::collection::vec((name, value), 0..5)
}

fn body() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        any::<String>(),
        "(t=[a-z.]{0,10}&)?(f=[a-z]{0,10}&)?decision=(approve|reject|x)(&comment=[^&]{0,20})?",
        any::<Vec<u8>>().prop_map(|b| STANDARD.encode(b)),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_function_url_request_gets_a_page(
        method in method(),
        raw_query in raw_query(),
        raw_path in any::<String>(),
        headers in headers(),
        body in body(),
        base64 in any::<bool>(),
        cookies in prop::option::of(prop::collection::vec(any::<String>(), 0..3)),
    ) {
        let mut event = request(&method, &raw_query, &[], body.as_deref(), base64);
        event["rawPath"] = raw_path.into();
        event["headers"] = headers
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        event["cookies"] = cookies.map_or(Value::Null, Value::from);
        let answer = answer(event);
        assert_a_page(&answer, method == "HEAD")?;
    }
}
