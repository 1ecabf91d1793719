//! `shipgate failed`: the asynchronous events that failed three times.
//!
//! intake (S3 drops), the mailer (approval notifications from SNS) and rollback (alarm state
//! changes) are invoked asynchronously; after Lambda's two retries an event that still fails
//! goes to the stack's failed-invocation queue, and its alarm tells the operators. `list` shows
//! each event without consuming it; `replay` invokes its function again the way the event first
//! came (`InvocationType=Event`: same retries, same queue if it fails again) and deletes the
//! message only once Lambda has accepted the invocation.

pub mod event;

use std::io::Write;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::aws::{lambda, sqs};
use crate::error::report;
use crate::stack::{self, StackResources};
use crate::{Clients, OperatorError};
use event::{FailedEvent, FunctionRole, ReplayPlan, Selection};

/// How long `list` hides the messages it reads: enough to page through the queue; they are
/// made visible again right after.
const LIST_HIDE_FOR: Duration = Duration::from_secs(30);
/// How long `replay` holds the messages it reads: enough to invoke and delete each, so no other
/// reader replays one at the same time.
const REPLAY_HIDE_FOR: Duration = Duration::from_secs(120);

#[derive(Debug, Args)]
pub struct FailedArgs {
    #[command(flatten)]
    pub resources: FailedResources,
    #[command(subcommand)]
    pub command: FailedCommand,
}

/// Where the queue and the functions are, when not looked up in the stack (`--stack`).
#[derive(Debug, Clone, Default, Args)]
pub struct FailedResources {
    /// The failed-invocation queue's URL [default: the stack's FailedInvocationQueue].
    #[arg(long, global = true, env = "SHIPGATE_FAILED_QUEUE_URL")]
    pub queue_url: Option<String>,
    /// The intake function's name or ARN [default: the stack's IntakeFunction].
    #[arg(long, global = true, env = "SHIPGATE_INTAKE_FUNCTION")]
    pub intake_function: Option<String>,
    /// The mailer function's name or ARN [default: the stack's MailerFunction].
    #[arg(long, global = true, env = "SHIPGATE_MAILER_FUNCTION")]
    pub mailer_function: Option<String>,
    /// The rollback function's name or ARN [default: the stack's RollbackFunction].
    #[arg(long, global = true, env = "SHIPGATE_ROLLBACK_FUNCTION")]
    pub rollback_function: Option<String>,
}

impl FailedResources {
    fn function(&self, role: FunctionRole) -> Option<&str> {
        match role {
            FunctionRole::Intake => self.intake_function.as_deref(),
            FunctionRole::Mailer => self.mailer_function.as_deref(),
            FunctionRole::Rollback => self.rollback_function.as_deref(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum FailedCommand {
    /// Each failed event: its id, function, when it failed, the error, and what it was.
    List {
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        max: usize,
        /// One JSON object per event (JSON Lines).
        #[arg(long)]
        json: bool,
    },
    /// Invoke each selected event's function again (asynchronously, as it first came); delete
    /// its message once Lambda accepted the invocation, never otherwise.
    Replay {
        /// The message id of an event to replay (as `list` shows it); repeatable.
        #[arg(
            long = "id",
            value_name = "ID",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        ids: Vec<String>,
        /// Every event in the queue.
        #[arg(long)]
        all: bool,
        /// Say what would be invoked; invoke and delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --all: at most this many events.
        #[arg(long, default_value_t = 1000)]
        max: usize,
    },
}

pub async fn run(
    args: FailedArgs,
    clients: &Clients,
    stack: &StackResources,
    out: &mut dyn Write,
) -> Result<(), OperatorError> {
    let queue = stack
        .resolve(stack::FAILED_QUEUE, args.resources.queue_url.as_deref())
        .await?;
    match args.command {
        FailedCommand::List { max, json } => list(clients, &queue, max, json, out).await,
        FailedCommand::Replay {
            ids,
            all,
            dry_run,
            max,
        } => {
            let selection = if all {
                Selection::All
            } else {
                Selection::Ids(ids)
            };
            let replay = Replay {
                clients,
                stack,
                resources: &args.resources,
                queue: &queue,
                dry_run,
            };
            replay.run(&selection, max, out).await
        }
    }
}

/// Reads up to `max` events, each hidden for `hide_for` until shown again or deleted.
async fn read(
    clients: &Clients,
    queue: &str,
    max: usize,
    hide_for: Duration,
) -> Result<Vec<FailedEvent>, OperatorError> {
    let messages = sqs::receive(&clients.sqs, queue, max, hide_for)
        .await
        .map_err(|e| OperatorError::ReceiveMessages {
            queue: queue.to_owned(),
            source: Box::new(e),
        })?;
    Ok(messages.into_iter().map(event::read_message).collect())
}

/// Makes `events` visible again. A failure only delays them (their visibility timeout ends
/// anyway), so it is a note on stderr, not an error, and never mixed into the report.
async fn show_again(clients: &Clients, queue: &str, events: &[FailedEvent]) {
    let handles: Vec<&str> = events.iter().map(|e| e.receipt_handle.as_str()).collect();
    if let Err(why) = sqs::show_again(&clients.sqs, queue, &handles).await {
        eprintln!("note: some messages stay hidden until their visibility timeout ends: {why}");
    }
}

async fn list(
    clients: &Clients,
    queue: &str,
    max: usize,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), OperatorError> {
    let mut events = read(clients, queue, max, LIST_HIDE_FOR).await?;
    show_again(clients, queue, &events).await;
    events.sort_by_key(|e| e.failed_at);
    if json {
        for event in &events {
            serde_json::to_writer(&mut *out, event).map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    match events.len() {
        0 => writeln!(out, "no failed events in {queue}")?,
        n => writeln!(
            out,
            "{n} failed event{} in {queue}:",
            if n == 1 { "" } else { "s" }
        )?,
    }
    for event in &events {
        write!(out, "{}", render(event))?;
    }
    Ok(())
}

/// An event as `list` shows it: id, when, function, error; then what it was.
pub fn render(event: &FailedEvent) -> String {
    let when = event
        .failed_at
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "unknown time".to_owned());
    let error = match (&event.error_code, &event.error_message) {
        (None, None) => "no error recorded".to_owned(),
        (code, message) => format!(
            "error {}: {}",
            code.as_deref().unwrap_or("?"),
            message.as_deref().unwrap_or("").replace(['\n', '\r'], " ")
        ),
    };
    let request = event
        .request_id
        .as_deref()
        .map(|r| format!(", request {r}"))
        .unwrap_or_default();
    format!(
        "{}  {when}  {}  {error}\n    {}{request}\n",
        event.id, event.function, event.summary
    )
}

struct Replay<'a> {
    clients: &'a Clients,
    stack: &'a StackResources,
    resources: &'a FailedResources,
    queue: &'a str,
    dry_run: bool,
}

impl Replay<'_> {
    async fn run(
        &self,
        selection: &Selection,
        max: usize,
        out: &mut dyn Write,
    ) -> Result<(), OperatorError> {
        let events = read(self.clients, self.queue, max, REPLAY_HIDE_FOR).await?;
        let selected = match event::select(events, selection) {
            Ok(split) => {
                show_again(self.clients, self.queue, &split.rest).await;
                split.selected
            }
            Err(missing) => {
                show_again(self.clients, self.queue, &missing.events).await;
                return Err(OperatorError::NotInQueue(missing.id));
            }
        };
        // Every function named before anything is invoked: a stack that cannot be read stops
        // the replay with nothing half done.
        let targets = match self.targets(&selected).await {
            Ok(targets) => targets,
            Err(e) => {
                show_again(self.clients, self.queue, &selected).await;
                return Err(e);
            }
        };
        let mut failed = 0;
        for (event, target) in selected.iter().zip(targets) {
            let outcome = match target {
                Ok(function) => self.replay(event, &function, out).await?,
                Err(why) => Err(why),
            };
            if let Err(why) = outcome {
                failed += 1;
                writeln!(
                    out,
                    "not replayed  {}  {}\n    {why}",
                    event.id, event.summary
                )?;
                show_again(self.clients, self.queue, std::slice::from_ref(event)).await;
            }
        }
        match (failed, selected.len()) {
            (0, 0) => writeln!(out, "no failed events in {}", self.queue)?,
            (0, _) => {}
            (failed, selected) => return Err(OperatorError::ReplayIncomplete { failed, selected }),
        }
        Ok(())
    }

    /// The function each event goes to, or why it is not replayed.
    async fn targets(
        &self,
        events: &[FailedEvent],
    ) -> Result<Vec<Result<String, String>>, OperatorError> {
        let mut targets = Vec::with_capacity(events.len());
        for event in events {
            targets.push(match event::plan(event) {
                ReplayPlan::Skip(why) => Err(why),
                ReplayPlan::Function(function) => Ok(function),
                ReplayPlan::Role(role) => Ok(self
                    .stack
                    .resolve(
                        stack::function_resource(role),
                        self.resources.function(role),
                    )
                    .await?),
            });
        }
        Ok(targets)
    }

    /// One event to `function`: `Ok(Err(why))` when it stays in the queue.
    async fn replay(
        &self,
        event: &FailedEvent,
        function: &str,
        out: &mut dyn Write,
    ) -> Result<Result<(), String>, OperatorError> {
        if self.dry_run {
            writeln!(
                out,
                "would replay  {}  to {function}  {}",
                event.id, event.summary
            )?;
            show_again(self.clients, self.queue, std::slice::from_ref(event)).await;
            return Ok(Ok(()));
        }
        let request_id =
            match lambda::invoke_event(&self.clients.lambda, function, &event.payload).await {
                Ok(request_id) => request_id,
                Err(e) => return Ok(Err(report(&e))),
            };
        let request = request_id
            .map(|r| format!(" (request {r})"))
            .unwrap_or_default();
        match sqs::delete(&self.clients.sqs, self.queue, &event.receipt_handle).await {
            Ok(()) => writeln!(
                out,
                "replayed  {}  to {function}{request}  {}",
                event.id, event.summary
            )?,
            // Accepted, so not "not replayed": but it will be listed again, and replaying it
            // twice is harmless (every function claims its event before acting).
            Err(e) => writeln!(
                out,
                "replayed  {}  to {function}{request}, but the message could not be deleted and \
                 will show again: {}",
                event.id,
                report(&e)
            )?,
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;
    use crate::Cli;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Each resource's flag reads the environment variable its error message names.
    #[test]
    fn every_resource_flag_reads_the_variable_it_names() {
        let command = Cli::command();
        let failed = command.find_subcommand("failed").expect("failed");
        for resource in [
            stack::FAILED_QUEUE,
            stack::INTAKE_FUNCTION,
            stack::MAILER_FUNCTION,
            stack::ROLLBACK_FUNCTION,
        ] {
            let long = resource.flag.trim_start_matches("--");
            let arg = failed
                .get_arguments()
                .find(|a| a.get_long() == Some(long))
                .unwrap_or_else(|| panic!("{long}"));
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(resource.env));
        }
    }

    #[test]
    fn replay_needs_ids_or_all_not_both() {
        assert!(Cli::try_parse_from(["shipgate", "failed", "replay"]).is_err());
        assert!(
            Cli::try_parse_from(["shipgate", "failed", "replay", "--id", "a", "--all"]).is_err()
        );
        let cli = Cli::try_parse_from([
            "shipgate",
            "failed",
            "replay",
            "--id",
            "a",
            "--id",
            "b",
            "--dry-run",
            "--queue-url",
            "q",
        ])
        .unwrap();
        let crate::Command::Failed(args) = cli.command else {
            panic!("not failed: {:?}", cli.command);
        };
        assert_eq!(args.resources.queue_url.as_deref(), Some("q"));
        assert!(matches!(
            args.command,
            FailedCommand::Replay { ids, all: false, dry_run: true, .. } if ids == ["a", "b"]
        ));
    }

    #[test]
    fn a_listed_event_fits_two_lines() {
        let mut event = event::read_message(event::QueueMessage {
            message_id: "m-1".into(),
            body: include_str!("../../fixtures/s3-put.json").into(),
            sent_timestamp_ms: Some(1_764_151_200_000),
            attributes: [
                ("RequestID".to_owned(), "req-1".to_owned()),
                ("ErrorCode".to_owned(), "200".to_owned()),
                (
                    "ErrorMessage".to_owned(),
                    "lease held\nretry later".to_owned(),
                ),
            ]
            .into(),
            ..Default::default()
        });
        let text = render(&event);
        assert!(text.starts_with("m-1  2025-11-26T10:00:00Z  intake  error 200: lease held retry later\n    S3 ObjectCreated:Put s3://"), "{text}");
        assert!(text.ends_with(", request req-1\n"), "{text}");
        assert_eq!(text.lines().count(), 2);
        event.error_code = None;
        event.error_message = None;
        assert!(render(&event).contains("no error recorded"));
    }
}
