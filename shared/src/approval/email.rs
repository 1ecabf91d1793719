//! The approval email: one per approver, in HTML and plain text.
//!
//! The HTML is built for the lowest common denominator of mail clients (Outlook's Word engine):
//! nested `role="presentation"` tables, inline `style=` only, colours also as `bgcolor`, no
//! images, no forms, no scripts. The two "buttons" are links styled on their table cell, so they
//! look like buttons everywhere; both open the review page, which alone decides.

use std::fmt::Write as _;

use super::{
    ApprovalView, EntryHtml, NO_CHANGE_SET, StackHtml, Tone, attention_tags, escape_multiline,
    facts, format_utc, indent_multiline, integrator, one_line, overall_headline, release_phrase,
    safe_href, stack_attention, stack_headline, stack_whereabouts,
};
use crate::aws::ses::html_escape;
use crate::store::StackChanges;

/// Subjects longer than this are cut in their message part (never the app, version or env).
const MAX_SUBJECT_CHARS: usize = 120;

/// An email ready for [`crate::aws::ses::Email`]: the caller adds sender and recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub html: String,
    pub text: String,
}

const FONT: &str = "font-family:Arial,Helvetica,sans-serif";
const MONO: &str = "font-family:Consolas,Menlo,'Courier New',monospace";
const MUTED: &str = "#57606a";
const BORDER: &str = "#d0d7de";
const GREEN: &str = "#1a7f37";
const RED: &str = "#b42318";
const DANGER_BG: &str = "#fdecea";
const CAUTION_BG: &str = "#fff4e5";

/// Renders the approval email for `approver`, whose own links are `approve_url` / `reject_url`.
pub fn approval_email(
    view: &ApprovalView,
    approver: &str,
    approve_url: &str,
    reject_url: &str,
) -> RenderedEmail {
    RenderedEmail {
        subject: subject(view),
        html: html(view, approver, approve_url, reject_url),
        text: text(view, approver, approve_url, reject_url),
    }
}

/// `Approve orders 1.4.0 for int — 1 replaced, 2 modified: <first line of the message>`.
fn subject(view: &ApprovalView) -> String {
    let prefix = format!("Approve {}", release_phrase(view));
    let mut tail = format!(" — {}", overall_headline(view));
    if let Some(line) = view.message.lines().map(str::trim).find(|l| !l.is_empty()) {
        tail.push_str(": ");
        tail.push_str(&one_line(line));
    }
    let budget = MAX_SUBJECT_CHARS.saturating_sub(prefix.chars().count());
    if tail.chars().count() <= budget {
        return prefix + &tail;
    }
    // Even an absurdly long name stays whole: who and where matter more than the length.
    if budget < 8 {
        return prefix;
    }
    let cut: String = tail.chars().take(budget - 1).collect();
    format!("{prefix}{}…", cut.trim_end())
}

fn text(view: &ApprovalView, approver: &str, approve_url: &str, reject_url: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Approval requested: {}", release_phrase(view));
    let _ = writeln!(out, "Changes: {}\n", overall_headline(view));
    let _ = writeln!(out, "Review and approve:\n{approve_url}\n");
    let _ = writeln!(out, "Review and reject:\n{reject_url}\n");
    let _ = writeln!(
        out,
        "Opening the link decides nothing; you decide on the page.\n\
         This link expires {}, with the approval.\n",
        format_utc(view.approval_expires_at)
    );

    let _ = writeln!(out, "Message from {}:", integrator(view));
    out.push_str(&indent_multiline(&view.message, "    "));
    out.push('\n');

    let attention: Vec<String> = view
        .attention_entries()
        .map(|(stack, entry)| format!("  {stack}: {}", entry_line(entry)))
        .collect();
    if !attention.is_empty() {
        out.push_str("Needs your attention:\n");
        for line in attention {
            out.push_str(&one_line(&line));
            out.push('\n');
        }
        out.push('\n');
    }

    if let Some(p) = &view.promotion {
        let _ = writeln!(
            out,
            "Images to promote (by digest, from {}'s registry to {}'s):",
            one_line(&p.from),
            one_line(&view.environment)
        );
        for image in &p.images {
            let _ = writeln!(out, "  {}", image.line());
        }
        let _ = writeln!(
            out,
            "{}'s change sets are made after the copy and come to their own approval.",
            one_line(&view.environment)
        );
    } else {
        out.push_str("Changes, stack by stack:\n");
        if view.stacks.is_empty() {
            let _ = writeln!(out, "  {NO_CHANGE_SET}.");
        }
        for stack in &view.stacks {
            text_stack(&mut out, stack);
        }
    }
    out.push('\n');

    out.push_str("Release:\n");
    for (label, value) in facts(view) {
        let _ = writeln!(out, "  {:<18}{value}", format!("{label}:"));
    }
    let _ = writeln!(
        out,
        "\nSent to {}; the links are yours alone: the page records your address with the \
         decision. Do not forward this email.",
        one_line(approver)
    );
    out
}

/// `REPLACE TaskDefinition (AWS::ECS::TaskDefinition): recreated by ... [image]`, as the
/// summary's own text has it.
fn entry_line(entry: &crate::changes::SummaryEntry) -> String {
    let tags: String = attention_tags(entry)
        .iter()
        .map(|t| format!(" [{t}]"))
        .collect();
    format!(
        "{} {} ({}): {}{tags}",
        entry.category.label(),
        entry.logical_id,
        entry.resource_type,
        entry.reason()
    )
}

fn text_stack(out: &mut String, stack: &StackChanges) {
    let _ = writeln!(
        out,
        "\n  {} ({})",
        one_line(&stack.stack_name),
        stack_whereabouts(stack)
    );
    let _ = writeln!(out, "  {}", stack_headline(stack));
    for (label, ids) in stack_attention(stack) {
        let _ = writeln!(out, "  {label}: {ids}");
    }
    for entry in &stack.summary.entries {
        let _ = writeln!(out, "    {}", one_line(&entry_line(entry)));
    }
}

fn html(view: &ApprovalView, approver: &str, approve_url: &str, reject_url: &str) -> String {
    let phrase = html_escape(&release_phrase(view));
    let headline = html_escape(&overall_headline(view));
    let expires = html_escape(&format_utc(view.approval_expires_at));
    let mut body = String::new();

    // Heading: what, where, and the overall headline.
    let _ = write!(
        body,
        "<tr><td style=\"padding:20px 24px 4px 24px\">\
         <p style=\"margin:0;font-size:12px;line-height:16px;color:{MUTED};letter-spacing:1px\">\
         SHIPGATE &middot; APPROVAL REQUESTED</p>\
         <h1 style=\"margin:6px 0 0 0;font-size:22px;line-height:28px;{FONT}\">{phrase}</h1>\
         <p style=\"margin:6px 0 0 0;font-size:15px;line-height:20px\"><b>Changes: {headline}</b></p>\
         </td></tr>"
    );

    // The two links, side by side where there is room (align="left" tables wrap on phones).
    let _ = write!(
        body,
        "<tr><td style=\"padding:16px 24px 4px 24px\">{}{}</td></tr>\
         <tr><td style=\"padding:0 24px 8px 24px;color:{MUTED}\">\
         <p style=\"margin:0\">Opening the link decides nothing; you decide on the page. \
         This link expires <b style=\"color:#1f2328\">{expires}</b>, with the approval.</p></td></tr>",
        button(approve_url, "Review and approve", GREEN, true),
        button(reject_url, "Review and reject", RED, false),
    );

    // The integrator's message.
    let _ = write!(
        body,
        "<tr><td style=\"padding:12px 24px\">\
         <p style=\"margin:0 0 6px 0\"><b>Message from {}</b></p>\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\">\
         <tr><td bgcolor=\"#f6f8fa\" style=\"background-color:#f6f8fa;border-left:4px solid {BORDER};\
         padding:10px 12px\">{}</td></tr></table></td></tr>",
        html_escape(&integrator(view)),
        escape_multiline(&view.message),
    );

    // What needs attention, across stacks, before the per-stack detail.
    let attention_rows: String = view
        .attention_entries()
        .map(|(stack, entry)| entry_row(entry, Some(stack)))
        .collect();
    if !attention_rows.is_empty() {
        let _ = write!(
            body,
            "<tr><td style=\"padding:12px 24px 0 24px\">\
             <h2 style=\"margin:0 0 6px 0;font-size:17px;line-height:22px;{FONT}\">Needs your attention</h2>\
             {}</td></tr>",
            entry_table(&attention_rows)
        );
    }

    // An approval to promote: the images to copy.
    if let Some(p) = &view.promotion {
        let _ = write!(
            body,
            "<tr><td style=\"padding:12px 24px\">\
             <h2 style=\"margin:0 0 6px 0;font-size:17px;line-height:22px;{FONT}\">Images to promote</h2>\
             <p style=\"margin:0 0 6px 0\">By digest, from {from}'s registry to {to}'s. {to}'s change \
             sets are made after the copy and come to their own approval.</p>",
            from = html_escape(&p.from),
            to = html_escape(&view.environment),
        );
        for image in &p.images {
            let _ = write!(
                body,
                "<p style=\"margin:0 0 4px 0;font-family:Consolas,Menlo,monospace;font-size:13px;\
                 word-break:break-all\"><b>{}</b> {}:{}<br>{}</p>",
                html_escape(&image.name),
                html_escape(&image.repository),
                html_escape(&image.tag),
                html_escape(&image.digest),
            );
        }
        body.push_str("</td></tr>");
    }

    // Every stack of the gate.
    let _ = write!(
        body,
        "<tr><td style=\"padding:12px 24px\">\
         <h2 style=\"margin:0 0 6px 0;font-size:17px;line-height:22px;{FONT}\">Changes, stack by stack</h2>"
    );
    if view.promotion.is_some() {
        let _ = write!(
            body,
            "<p style=\"margin:0\">None at this gate: it copies images.</p>"
        );
    } else if view.stacks.is_empty() {
        let _ = write!(
            body,
            "<p style=\"margin:0\"><b>No change set recorded</b> for this gate: there is nothing \
             to show. Ask the team before approving.</p>"
        );
    }
    for stack in &view.stacks {
        html_stack(&mut body, stack);
    }
    body.push_str("</td></tr>");

    // The release and the gate.
    let mut rows = String::new();
    for (label, value) in facts(view) {
        let _ = write!(
            rows,
            "<tr><td style=\"padding:3px 12px 3px 0;color:{MUTED};vertical-align:top;white-space:nowrap\">{}</td>\
             <td style=\"padding:3px 0;vertical-align:top;word-break:break-word\">{}</td></tr>",
            html_escape(label),
            html_escape(&value)
        );
    }
    let _ = write!(
        body,
        "<tr><td style=\"padding:12px 24px\">\
         <h2 style=\"margin:0 0 6px 0;font-size:17px;line-height:22px;{FONT}\">Release</h2>\
         <table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" \
         style=\"font-size:14px;line-height:20px;{FONT}\">{rows}</table></td></tr>"
    );

    // Who this is for.
    let _ = write!(
        body,
        "<tr><td style=\"padding:14px 24px 20px 24px;border-top:1px solid {BORDER};color:{MUTED};\
         font-size:12px;line-height:18px\">Sent to {}; the links are yours alone: the page records \
         your address with the decision. Do not forward this email.</td></tr>",
        html_escape(&one_line(approver))
    );

    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Approve {phrase}</title></head>\
         <body style=\"margin:0;padding:0;background-color:#f3f4f6\">\
         <div style=\"display:none;max-height:0;overflow:hidden\">{headline}. Expires {expires}.</div>\
         <table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" \
         bgcolor=\"#f3f4f6\" style=\"background-color:#f3f4f6\"><tr><td align=\"center\" style=\"padding:24px 8px\">\
         <table role=\"presentation\" width=\"640\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" \
         bgcolor=\"#ffffff\" style=\"width:100%;max-width:640px;background-color:#ffffff;\
         border:1px solid {BORDER};{FONT};font-size:14px;line-height:20px;color:#1f2328\">\
         {body}</table></td></tr></table></body></html>"
    )
}

/// A link that looks like a button in every client: the colour is on the cell (Outlook ignores
/// padding on links), the padding on the link where clients honour it (a larger target).
fn button(url: &str, label: &str, colour: &str, filled: bool) -> String {
    let (bg, fg) = if filled {
        (colour, "#ffffff")
    } else {
        ("#ffffff", colour)
    };
    format!(
        "<table role=\"presentation\" align=\"left\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\">\
         <tr><td style=\"padding:0 12px 10px 0\">\
         <table role=\"presentation\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\"><tr>\
         <td bgcolor=\"{bg}\" style=\"background-color:{bg};border:2px solid {colour};border-radius:6px\">\
         <a href=\"{href}\" style=\"display:block;padding:11px 22px;{FONT};font-size:16px;line-height:20px;\
         font-weight:bold;color:{fg};text-decoration:none\">{label}</a>\
         </td></tr></table></td></tr></table>",
        href = html_escape(safe_href(url)),
        label = html_escape(label),
    )
}

fn entry_table(rows: &str) -> String {
    format!(
        "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" \
         style=\"border:1px solid {BORDER};border-collapse:collapse;font-size:13px;line-height:18px;{FONT}\">\
         {rows}</table>"
    )
}

/// One resource: the label on the left, id, type, why and tags on the right (two columns fit a
/// phone; four do not). Replacements and removals are red, other attention amber.
fn entry_row(entry: &crate::changes::SummaryEntry, stack: Option<&str>) -> String {
    let entry = EntryHtml::of(entry, stack);
    let (bg, label_colour) = match entry.tone {
        Tone::Danger => (DANGER_BG, RED),
        Tone::Caution => (CAUTION_BG, "#9a6700"),
        Tone::Plain => ("#ffffff", "#1f2328"),
    };
    let tags: String = entry
        .tags
        .iter()
        .map(|t| {
            format!(
                " <span style=\"background-color:#ddf4ff;color:#0550ae;font-size:11px;font-weight:bold;\
                 padding:1px 5px;border-radius:3px\">{t}</span>"
            )
        })
        .collect();
    let in_stack = entry
        .stack
        .map(|s| format!(" <span style=\"color:{MUTED}\">in stack {s}</span>"))
        .unwrap_or_default();
    format!(
        "<tr><td bgcolor=\"{bg}\" style=\"background-color:{bg};padding:6px 8px;border-bottom:1px solid {BORDER};\
         vertical-align:top;white-space:nowrap;font-weight:bold;color:{label_colour}\">{label}</td>\
         <td bgcolor=\"{bg}\" style=\"background-color:{bg};padding:6px 8px;border-bottom:1px solid {BORDER};\
         vertical-align:top;word-break:break-word\"><span style=\"{MONO};font-weight:bold\">{id}</span> \
         <span style=\"{MONO};font-size:12px;color:{MUTED}\">{kind}</span>{in_stack}<br>{reason}{tags}</td></tr>",
        label = entry.label,
        id = entry.id,
        kind = entry.kind,
        reason = entry.reason,
    )
}

fn html_stack(body: &mut String, stack: &StackChanges) {
    let heading = StackHtml::of(stack);
    let _ = write!(
        body,
        "<p style=\"margin:14px 0 2px 0;font-size:15px;line-height:20px\"><b style=\"{MONO}\">{name}</b> \
         <span style=\"font-size:12px;color:{MUTED}\">{whereabouts}</span></p>\
         <p style=\"margin:0 0 6px 0\">{headline}</p>",
        name = heading.name,
        whereabouts = heading.whereabouts,
        headline = heading.headline,
    );
    for (label, ids) in &heading.attention {
        let _ = write!(
            body,
            "<p style=\"margin:0 0 4px 0;color:{RED}\"><b>{label}:</b> <span style=\"{MONO}\">{ids}</span></p>"
        );
    }
    if !stack.summary.entries.is_empty() {
        let rows: String = stack
            .summary
            .entries
            .iter()
            .map(|e| entry_row(e, None))
            .collect();
        body.push_str(&entry_table(&rows));
    }
}
