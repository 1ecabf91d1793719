//! `shipgate-local` as a user runs it: up, invoke, status, down, and nothing left running.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shipgate_local::recorded_process::ProcessIdentity;

const BIN: &str = env!("CARGO_BIN_EXE_shipgate-local");

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("local/ has a parent")
        .to_path_buf()
}

fn run(state: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(project_root())
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .expect("shipgate-local runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Pids of `pid` and every process below it.
fn process_tree(pid: u32) -> Vec<u32> {
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let stat =
                    std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
                // Fields after the command name: state, ppid, pgrp, session, ...
                let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
                if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
                    tree.push(child);
                }
            }
        }
        i += 1;
    }
    tree
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn up_invoke_status_down_and_nothing_left_running() {
    let state = std::env::temp_dir().join(format!("shipgate-cli-{}", std::process::id()));
    let up = run(&state, &["up"]);
    assert!(up.status.success(), "up failed: {}", text(&up));
    assert!(
        text(&up).contains("AWS_ENDPOINT_URL_CODEPIPELINE="),
        "{}",
        text(&up)
    );
    let env = std::fs::read_to_string(state.join("env")).expect("up writes the env file");
    assert!(env.contains("SHIPGATE_TABLE="));
    let record = std::fs::read_to_string(state.join("serve.pid")).expect("serve's record");
    let pid = ProcessIdentity::parse(&record)
        .expect("a record of serve's identity")
        .pid();
    let pid = u32::try_from(pid.get()).expect("a pid is positive");
    let tree = process_tree(pid);
    assert!(tree.len() >= 6, "serve, moto and four registries: {tree:?}");

    // A second `up` finds the running stack instead of starting another.
    let again = run(&state, &["up"]);
    assert!(
        again.status.success() && text(&again).contains("already up"),
        "{}",
        text(&again)
    );

    // invoke: one handler, one event, its result as JSON.
    let event = project_root().join("functions/intake/tests/fixtures/s3-put.json");
    let invoked = run(
        &state,
        &["invoke", "intake", "--event", event.to_str().unwrap()],
    );
    assert!(invoked.status.success(), "{}", text(&invoked));
    let result: serde_json::Value =
        serde_json::from_slice(&invoked.stdout).expect("invoke prints JSON");
    assert_eq!(result["records"][0]["outcome"], "ignored", "{result}");
    // A handler error exits non-zero, with the error as JSON.
    let bad = state.join("bad-event.json");
    std::fs::write(&bad, r#"{"Records": 42}"#).unwrap();
    let failed = run(
        &state,
        &["invoke", "intake", "--event", bad.to_str().unwrap()],
    );
    assert!(!failed.status.success());
    assert!(
        text(&failed).contains("MalformedEvent"),
        "{}",
        text(&failed)
    );
    let unknown = run(
        &state,
        &[
            "invoke",
            "no-such-function",
            "--event",
            bad.to_str().unwrap(),
        ],
    );
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("known: intake"),
        "{}",
        text(&unknown)
    );

    let status = run(&state, &["status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(text(&status).contains("releases (0)"), "{}", text(&status));

    let down = run(&state, &["down"]);
    assert!(down.status.success(), "{}", text(&down));
    for p in tree {
        assert!(!alive(p), "process {p} is still running after down");
    }
    assert!(!state.join("env").exists(), "down removes the env file");
    let _ = std::fs::remove_dir_all(&state);
}

/// `down` signals the `serve` that wrote the record and nothing else: a record it did not write
/// (pid 0 would signal this test's whole process group) is refused and left for the user; a
/// record whose pid is now another process (this test) is removed and nothing is signalled.
#[test]
fn down_signals_nothing_but_the_recorded_serve() {
    let state = std::env::temp_dir().join(format!("shipgate-cli-down-{}", std::process::id()));
    std::fs::create_dir_all(&state).unwrap();
    let record = state.join("serve.pid");
    let me = ProcessIdentity::of_self().unwrap().to_record();
    let boot_id = me.lines().last().unwrap();

    std::fs::write(&record, format!("pid 0\nstart_time 1\n{boot_id}\n")).unwrap();
    let refused = run(&state, &["down"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("nothing was signalled"),
        "{}",
        text(&refused)
    );
    assert!(record.exists(), "a record down did not understand is left");

    let pid = std::process::id();
    std::fs::write(&record, format!("pid {pid}\nstart_time 1\n{boot_id}\n")).unwrap();
    let stale = run(&state, &["down"]);
    assert!(stale.status.success(), "{}", text(&stale));
    assert!(
        text(&stale).contains(&format!("pid {pid} now belongs to another process"))
            && text(&stale).contains("removed"),
        "{}",
        text(&stale)
    );
    assert!(!record.exists(), "a stale record is removed");
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["up", "down", "invoke", "drop", "status", "outbox"] {
        let out = Command::new(BIN).args([sub, "--help"]).output().unwrap();
        assert!(out.status.success(), "{sub} --help");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{sub}"
        );
    }
}
