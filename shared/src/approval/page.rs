//! The review page and the notice pages, served by the approval function's URL.
//!
//! The review page shows what the email showed and one form: hidden link token `t` and form
//! token `f`, an optional comment, and two submit buttons named `decision`. It posts back to
//! its own URL (`action=""`), so the link's query string comes along. It needs no JavaScript
//! and loads nothing: its only style is [`PAGE_STYLE`], allowed by hash in
//! [`content_security_policy`]. Every page carries the same `<style>` element so one policy
//! fits all of them.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::{
    ApprovalView, EntryHtml, NO_CHANGE_SET, Notice, PageForm, StackHtml, Tone, decided_message,
    escape_multiline, facts, format_rfc3339, format_utc, integrator, one_line, overall_headline,
    release_phrase,
};
use crate::aws::ses::html_escape;
use crate::changes::SummaryEntry;
use crate::store::{StackChanges, Verdict};

/// The style sheet of every page, inlined in one `<style>` element and allowed by its hash.
/// It must not contain `<`: it is written into the document as is.
pub const PAGE_STYLE: &str = "\
:root{color-scheme:light}\
*{box-sizing:border-box}\
body{margin:0;background:#f3f4f6;color:#1f2328;font:15px/1.45 -apple-system,'Segoe UI',Arial,Helvetica,sans-serif}\
main{max-width:760px;margin:0 auto;padding:24px 16px 48px}\
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:18px 20px;margin:0 0 16px}\
.eyebrow{margin:0;font-size:12px;letter-spacing:.08em;text-transform:uppercase;color:#57606a}\
h1{margin:6px 0 4px;font-size:24px;line-height:1.25}\
h2{margin:0 0 10px;font-size:17px}\
h3{margin:18px 0 2px;font-size:15px}\
.stack p{margin:2px 0 6px}\
.headline{margin:0;font-weight:600}\
.muted{color:#57606a;font-size:13px;font-weight:400}\
code,.mono{font-family:Consolas,Menlo,'Courier New',monospace}\
blockquote{margin:0;padding:10px 14px;background:#f6f8fa;border-left:4px solid #d0d7de;overflow-wrap:anywhere}\
table{border-collapse:collapse;width:100%}\
.changes td{padding:6px 8px;border-bottom:1px solid #d0d7de;vertical-align:top;overflow-wrap:anywhere}\
.changes{border:1px solid #d0d7de;font-size:14px}\
.changes .label{white-space:nowrap;font-weight:700;width:1%}\
tr.danger td{background:#fdecea}\
tr.danger .label{color:#b42318}\
tr.caution td{background:#fff4e5}\
tr.caution .label{color:#9a6700}\
.tag{display:inline-block;background:#ddf4ff;color:#0550ae;font-size:11px;font-weight:700;padding:0 5px;border-radius:3px}\
.alert{margin:0 0 4px;color:#b42318}\
.stack p.alert{margin:0 0 2px}\
.facts th{text-align:left;font-weight:400;color:#57606a;padding:3px 12px 3px 0;white-space:nowrap;vertical-align:top;width:1%}\
.facts td{padding:3px 0;overflow-wrap:anywhere;vertical-align:top}\
label{display:block;font-weight:600;margin:12px 0 4px}\
textarea{width:100%;min-height:70px;font:inherit;padding:8px;border:1px solid #d0d7de;border-radius:6px}\
.buttons{display:flex;flex-wrap:wrap;gap:12px;margin-top:14px}\
button{font:inherit;font-weight:700;padding:10px 26px;border-radius:6px;border:2px solid;background:#fff;cursor:pointer}\
button.approve{border-color:#1a7f37;color:#1a7f37}\
button.reject{border-color:#b42318;color:#b42318}\
button.approve.primary{background:#1a7f37;color:#fff}\
button.reject.primary{background:#b42318;color:#fff}\
button:focus-visible{outline:3px solid #0969da;outline-offset:2px}\
.intent{margin:0 0 8px;font-weight:600}\
h2.gap{margin-top:22px}\
#notice{font-size:17px;margin:8px 0 14px}\
.approved h1{color:#1a7f37}\
.rejected h1{color:#b42318}\
";

/// The `Content-Security-Policy` of every page: nothing loads, nothing runs, the one style
/// sheet is allowed by hash, forms post only to this origin, no framing (clickjacking).
pub fn content_security_policy() -> String {
    let hash = STANDARD.encode(Sha256::digest(PAGE_STYLE.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'none'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The review page for the approver `form.approver`.
pub fn approval_page(view: &ApprovalView, form: &PageForm) -> String {
    let phrase = html_escape(&release_phrase(view));
    let mut main = String::new();

    let _ = write!(
        main,
        "<header class=\"card\"><p class=\"eyebrow\">shipgate &middot; approval</p>\
         <h1>{phrase}</h1><p class=\"headline\">Changes: {}</p></header>",
        html_escape(&overall_headline(view))
    );
    let _ = write!(
        main,
        "<section class=\"card\"><h2>Message from {}</h2><blockquote>{}</blockquote></section>",
        html_escape(&integrator(view)),
        escape_multiline(&view.message)
    );
    main.push_str(&summary_section(view));
    main.push_str(&facts_section(view));
    main.push_str(&decision_form(view, form));

    document(&format!("Approve {phrase}"), "", &main)
}

/// A page for every outcome that decides nothing (or was decided before).
pub fn notice_page(notice: &Notice) -> String {
    notice_document(notice, "")
}

/// The confirmation once a decision took effect.
pub fn decided_page(
    view: &ApprovalView,
    verdict: Verdict,
    approver: &str,
    comment: Option<&str>,
    decided_at: &str,
) -> String {
    let (title, message) = decided_message(view, verdict);
    let mut details = vec![
        ("Decision".to_owned(), title.clone()),
        ("Decided by".to_owned(), one_line(approver)),
        ("Decided at".to_owned(), format_rfc3339(decided_at)),
    ];
    if let Some(comment) = comment.filter(|c| !c.trim().is_empty()) {
        details.push(("Comment".to_owned(), comment.to_owned()));
    }
    details.extend(
        facts(view)
            .into_iter()
            .filter(|(label, _)| *label != "Approval expires")
            .map(|(label, value)| (label.to_owned(), value)),
    );
    let class = match verdict {
        Verdict::Approve => "approved",
        Verdict::Reject => "rejected",
    };
    notice_document(
        &Notice {
            title,
            message,
            details,
        },
        class,
    )
}

fn notice_document(notice: &Notice, class: &str) -> String {
    let mut rows = String::new();
    for (label, value) in &notice.details {
        let _ = write!(
            rows,
            "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
            html_escape(&one_line(label)),
            escape_multiline(value)
        );
    }
    let table = if rows.is_empty() {
        String::new()
    } else {
        format!("<table class=\"facts\">{rows}</table>")
    };
    let title = html_escape(&one_line(&notice.title));
    let main = format!(
        "<section class=\"card\"><p class=\"eyebrow\">shipgate &middot; approval</p>\
         <h1>{title}</h1><p id=\"notice\">{}</p>{table}\
         <p class=\"muted\">You can close this page.</p></section>",
        escape_multiline(&notice.message)
    );
    document(&title, class, &main)
}

/// The HTML document around `main`; `title` is already escaped.
fn document(title: &str, body_class: &str, main: &str) -> String {
    let class = if body_class.is_empty() {
        String::new()
    } else {
        format!(" class=\"{}\"", html_escape(body_class))
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">\
         <meta name=\"robots\" content=\"noindex, nofollow\">\
         <title>{title} &middot; shipgate</title><style>{PAGE_STYLE}</style></head>\
         <body{class}><main>{main}</main></body></html>\n"
    )
}

/// `id="summary"`: what needs attention across stacks, then every stack.
fn summary_section(view: &ApprovalView) -> String {
    let mut out = String::from("<section class=\"card\" id=\"summary\">");
    if let Some(p) = &view.promotion {
        let _ = write!(
            out,
            "<h2>Images to promote</h2><p>By digest, from {from}'s registry to {to}'s. \
             {to}'s change sets are made after the copy and come to their own approval.</p>\
             <table class=\"changes\">",
            from = html_escape(&p.from),
            to = html_escape(&view.environment),
        );
        for image in &p.images {
            let _ = write!(
                out,
                "<tr><td><strong>{}</strong></td><td class=\"mono\">{}:{}</td>\
                 <td class=\"mono\">{}</td></tr>",
                html_escape(&image.name),
                html_escape(&image.repository),
                html_escape(&image.tag),
                html_escape(&image.digest),
            );
        }
        out.push_str("</table></section>");
        return out;
    }

    let attention: String = view
        .attention_entries()
        .map(|(stack, entry)| entry_row(entry, Some(stack)))
        .collect();
    if !attention.is_empty() {
        let _ = write!(
            out,
            "<h2>Needs your attention</h2><table class=\"changes\">{attention}</table>\
             <h2 class=\"gap\">Changes, stack by stack</h2>"
        );
    } else {
        out.push_str("<h2>Changes, stack by stack</h2>");
    }

    if view.stacks.is_empty() {
        let _ = write!(
            out,
            "<p><strong>No change set recorded</strong> for this gate ({NO_CHANGE_SET}): \
             there is nothing to show. Ask the team before approving.</p>"
        );
    }
    for stack in &view.stacks {
        out.push_str(&stack_block(stack));
    }
    out.push_str("</section>");
    out
}

fn stack_block(stack: &StackChanges) -> String {
    let heading = StackHtml::of(stack);
    let mut out = format!(
        "<div class=\"stack\"><h3><span class=\"mono\">{name}</span> <span class=\"muted\">\
         {whereabouts}</span></h3><p>{headline}</p>",
        name = heading.name,
        whereabouts = heading.whereabouts,
        headline = heading.headline,
    );
    for (label, ids) in &heading.attention {
        let _ = write!(
            out,
            "<p class=\"alert\"><strong>{label}:</strong> <span class=\"mono\">{ids}</span></p>"
        );
    }
    if !stack.summary.entries.is_empty() {
        out.push_str("<table class=\"changes\">");
        for entry in &stack.summary.entries {
            out.push_str(&entry_row(entry, None));
        }
        out.push_str("</table>");
    }
    out.push_str("</div>");
    out
}

fn entry_row(entry: &SummaryEntry, stack: Option<&str>) -> String {
    let entry = EntryHtml::of(entry, stack);
    let class = match entry.tone {
        Tone::Danger => "danger",
        Tone::Caution => "caution",
        Tone::Plain => "plain",
    };
    let tags: String = entry
        .tags
        .iter()
        .map(|t| format!(" <span class=\"tag\">{t}</span>"))
        .collect();
    let in_stack = entry
        .stack
        .map(|s| format!(" <span class=\"muted\">in stack {s}</span>"))
        .unwrap_or_default();
    format!(
        "<tr class=\"{class}\"><td class=\"label\">{label}</td><td><strong class=\"mono\">{id}\
         </strong> <span class=\"mono muted\">{kind}</span>{in_stack}<br>{reason}{tags}</td></tr>",
        label = entry.label,
        id = entry.id,
        kind = entry.kind,
        reason = entry.reason,
    )
}

fn facts_section(view: &ApprovalView) -> String {
    let rows: String = facts(view)
        .into_iter()
        .map(|(label, value)| {
            format!(
                "<tr><th scope=\"row\">{}</th><td>{}</td></tr>",
                html_escape(label),
                html_escape(&value)
            )
        })
        .collect();
    format!(
        "<section class=\"card\"><h2>Release</h2><table class=\"facts\">{rows}</table></section>"
    )
}

fn decision_form(view: &ApprovalView, form: &PageForm) -> String {
    let intent = match form.intent {
        Some(Verdict::Approve) => {
            "<p class=\"intent\">You followed the approve link. Nothing is decided yet: \
             read the changes, then press Approve.</p>"
        }
        Some(Verdict::Reject) => {
            "<p class=\"intent\">You followed the reject link. Nothing is decided yet: \
             press Reject to stop this release.</p>"
        }
        None => "",
    };
    let primary = |verdict: Verdict| {
        if form.intent == Some(verdict) {
            " primary"
        } else {
            ""
        }
    };
    format!(
        "<form class=\"card\" id=\"decision-form\" method=\"post\" action=\"\">\
         <h2>Your decision</h2>{intent}\
         <p>For <strong>{approver}</strong>: this link is yours alone, and your address is \
         recorded with the decision. It expires <strong>{expires}</strong>, with the approval.</p>\
         <input type=\"hidden\" name=\"t\" value=\"{t}\">\
         <input type=\"hidden\" name=\"f\" value=\"{f}\">\
         <label for=\"comment\">Comment (optional, recorded with the decision)</label>\
         <textarea id=\"comment\" name=\"comment\" maxlength=\"1000\" rows=\"3\"></textarea>\
         <div class=\"buttons\">\
         <button type=\"submit\" id=\"approve\" name=\"decision\" value=\"approve\" class=\"approve{pa}\">Approve</button>\
         <button type=\"submit\" id=\"reject\" name=\"decision\" value=\"reject\" class=\"reject{pr}\">Reject</button>\
         </div></form>",
        approver = html_escape(&one_line(&form.approver)),
        expires = html_escape(&format_utc(view.approval_expires_at)),
        t = html_escape(&form.link_token),
        f = html_escape(&form.form_token),
        pa = primary(Verdict::Approve),
        pr = primary(Verdict::Reject),
    )
}
