//! A process recorded in a file by its identity, and signalled only while it is still that
//! process: how `shipgate-local down` stops the `serve` that `up` started and nothing else.
//!
//! A pid names a process only while that process lives: once it exits the kernel hands the
//! number to a later process, so a `kill` read from a stale pid file hits a stranger (and a pid
//! of 0, or a negative one, signals a whole process group). The record therefore holds the pid
//! with the process's start time (field 22 of `/proc/<pid>/stat`, clock ticks since boot) and the
//! boot it belongs to (`/proc/sys/kernel/random/boot_id`): the same pid started at the same tick
//! of the same boot is the same process. Before signalling, the process is pinned with a pidfd
//! (`pidfd_open`, Linux 5.3) and only then compared with the record, so the signal
//! (`pidfd_send_signal`) reaches the process that was checked even if it exits and its pid is
//! reused in between. Where pidfds are not available the identity is checked again right before
//! each `kill(2)`, which leaves only that short window.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";

/// A pid that signals one process: 1 to `i32::MAX`, never 0 or negative (process groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pid(i32);

impl Pid {
    pub fn new(raw: u64) -> Option<Self> {
        i32::try_from(raw).ok().filter(|p| *p >= 1).map(Self)
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which process a record names: pid, start time and boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    pid: Pid,
    /// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
    start_ticks: u64,
    boot_id: String,
}

/// Why a record's text is not a record this module wrote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("the pid {0:?} is not a decimal number from 1 to 2147483647")]
    Pid(String),
    #[error("the start time {0:?} is not a decimal number of clock ticks")]
    StartTime(String),
    #[error("the boot id {0:?} is not a boot id (8-4-4-4-12 lowercase hex digits)")]
    BootId(String),
    #[error(
        "expected exactly the three lines `pid <n>`, `start_time <ticks>` and `boot_id <id>`, found {0:?}"
    )]
    Layout(String),
}

/// Why the recorded process is certainly gone: signalling the pid would reach someone else or
/// no one, so the record is stale.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    #[error("no process has pid {pid} any more")]
    Exited { pid: Pid },
    #[error("the record of pid {pid} is from an earlier boot")]
    EarlierBoot { pid: Pid },
    #[error(
        "pid {pid} now belongs to another process (started at tick {now}, the recorded one at tick {recorded})"
    )]
    Reused { pid: Pid, recorded: u64, now: u64 },
}

/// What went wrong while looking at or signalling a process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not in the format the kernel documents")]
    Format { path: PathBuf },
    #[error("this process's pid {0} is out of the range of pids")]
    OwnPid(u32),
    #[error("pinning pid {pid} with pidfd_open: {source}")]
    Pin {
        pid: Pid,
        #[source]
        source: io::Error,
    },
    #[error("sending signal {signal} to pid {pid}: {source}")]
    Signal {
        pid: Pid,
        signal: i32,
        #[source]
        source: io::Error,
    },
}

impl ProcessIdentity {
    /// The identity of the live process `pid`, or why there is none.
    pub fn of(pid: Pid) -> Result<Result<Self, Stale>, ProcessError> {
        let boot_id = current_boot_id()?;
        Ok(start_ticks(pid)?.map(|start_ticks| Self {
            pid,
            start_ticks,
            boot_id,
        }))
    }

    /// The identity of this process (what `serve` records).
    pub fn of_self() -> Result<Self, ProcessError> {
        let own = std::process::id();
        let pid = Pid::new(u64::from(own)).ok_or(ProcessError::OwnPid(own))?;
        // A running process always has its own /proc entry.
        Self::of(pid)?.map_err(|_| ProcessError::Format {
            path: stat_path(pid),
        })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Reads a record written by [`ProcessIdentity::to_record`], and nothing else: no sign, no
    /// spaces, no other lines, no pid outside 1 to `i32::MAX`.
    pub fn parse(text: &str) -> Result<Self, RecordError> {
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines: Vec<&str> = body.split('\n').collect();
        let [pid, start, boot] = lines.as_slice() else {
            return Err(RecordError::Layout(text.to_owned()));
        };
        let field = |line: &str, key: &str| -> Result<String, RecordError> {
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(' '))
                .map(str::to_owned)
                .ok_or_else(|| RecordError::Layout(text.to_owned()))
        };
        let (pid, start, boot) = (
            field(pid, "pid")?,
            field(start, "start_time")?,
            field(boot, "boot_id")?,
        );
        Ok(Self {
            pid: canonical_number(&pid)
                .and_then(Pid::new)
                .ok_or(RecordError::Pid(pid))?,
            start_ticks: canonical_number(&start).ok_or(RecordError::StartTime(start))?,
            boot_id: is_boot_id(&boot)
                .then_some(boot.clone())
                .ok_or(RecordError::BootId(boot))?,
        })
    }

    pub fn to_record(&self) -> String {
        format!(
            "pid {}\nstart_time {}\nboot_id {}\n",
            self.pid, self.start_ticks, self.boot_id
        )
    }

    /// `Ok(())` if the recorded process is running now, else why the record is stale.
    pub fn check(&self) -> Result<Result<(), Stale>, ProcessError> {
        if current_boot_id()? != self.boot_id {
            return Ok(Err(Stale::EarlierBoot { pid: self.pid }));
        }
        Ok(start_ticks(self.pid)?.and_then(|now| {
            if now == self.start_ticks {
                Ok(())
            } else {
                Err(Stale::Reused {
                    pid: self.pid,
                    recorded: self.start_ticks,
                    now,
                })
            }
        }))
    }

    /// Holds on to the recorded process so that signals reach it and nothing else, or says why
    /// it is gone.
    pub fn pin(&self) -> Result<Result<PinnedProcess, Stale>, ProcessError> {
        let pidfd = match pidfd_open(self.pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Ok(Err(Stale::Exited { pid: self.pid }));
            }
            // Before Linux 5.3, or in a sandbox that forbids it: check before each kill instead.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => None,
            Err(source) => {
                return Err(ProcessError::Pin {
                    pid: self.pid,
                    source,
                });
            }
        };
        // Checked after pinning: a process that took the pid after the record was read started
        // later than the recorded one, so it cannot match, and the pidfd holds the one that did.
        Ok(self.check()?.map(|()| PinnedProcess {
            identity: self.clone(),
            pidfd,
        }))
    }
}

/// The recorded process, checked against its record and held (by a pidfd where the kernel has
/// them).
#[derive(Debug)]
pub struct PinnedProcess {
    identity: ProcessIdentity,
    pidfd: Option<OwnedFd>,
}

impl PinnedProcess {
    /// Sends `signal`; `Ok(false)` if the process has exited meanwhile (nothing was signalled).
    pub fn signal(&self, signal: i32) -> Result<bool, ProcessError> {
        let pid = self.identity.pid;
        let sent = match &self.pidfd {
            Some(fd) => pidfd_send_signal(fd, signal),
            None => {
                if self.identity.check()?.is_err() {
                    return Ok(false);
                }
                // SAFETY: kill(2) of a pid that is >= 1 (one process, never a group), checked
                // just above to still be the recorded process.
                match unsafe { libc::kill(pid.get(), signal) } {
                    0 => Ok(()),
                    _ => Err(io::Error::last_os_error()),
                }
            }
        };
        match sent {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(source) => Err(ProcessError::Signal {
                pid,
                signal,
                source,
            }),
        }
    }

    /// Waits up to `timeout` for the process to exit; whether it did.
    pub fn wait_for_exit(&self, timeout: Duration) -> Result<bool, ProcessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = match &self.pidfd {
                // A pidfd becomes readable when its process exits.
                Some(fd) => pidfd_readable(fd, Duration::from_millis(50)),
                None => {
                    std::thread::sleep(Duration::from_millis(50));
                    self.identity.check()?.is_err()
                }
            };
            if exited {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }
}

/// How [`stop`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// It exited on SIGTERM within the grace period (or had exited just before).
    Terminated,
    /// It ignored SIGTERM for the grace period and got SIGKILL.
    Killed,
}

/// Stops the recorded process: SIGTERM, then SIGKILL if it is still there after `grace`. A
/// stale record signals nothing.
pub fn stop(
    identity: &ProcessIdentity,
    grace: Duration,
) -> Result<Result<Stopped, Stale>, ProcessError> {
    let process = match identity.pin()? {
        Ok(process) => process,
        Err(stale) => return Ok(Err(stale)),
    };
    if !process.signal(libc::SIGTERM)? || process.wait_for_exit(grace)? {
        return Ok(Ok(Stopped::Terminated));
    }
    if !process.signal(libc::SIGKILL)? {
        return Ok(Ok(Stopped::Terminated));
    }
    // SIGKILL cannot be ignored; the wait only lets the kernel finish.
    process.wait_for_exit(Duration::from_secs(5))?;
    Ok(Ok(Stopped::Killed))
}

/// A decimal number as `to_string` writes it: digits only, no sign, no leading zero.
fn canonical_number(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

fn is_boot_id(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn current_boot_id() -> Result<String, ProcessError> {
    let text = std::fs::read_to_string(BOOT_ID).map_err(|source| ProcessError::Read {
        path: BOOT_ID.into(),
        source,
    })?;
    let id = text.trim_end_matches('\n');
    if !is_boot_id(id) {
        return Err(ProcessError::Format {
            path: BOOT_ID.into(),
        });
    }
    Ok(id.to_owned())
}

fn stat_path(pid: Pid) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/stat"))
}

/// The start time of the live process `pid`; `Exited` if there is none (or only its zombie).
fn start_ticks(pid: Pid) -> Result<Result<u64, Stale>, ProcessError> {
    let path = stat_path(pid);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // ESRCH: it exited between opening and reading the file.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => {
            return Ok(Err(Stale::Exited { pid }));
        }
        Err(source) => return Err(ProcessError::Read { path, source }),
    };
    let (state, start) = parse_stat(&text).ok_or(ProcessError::Format { path })?;
    // A zombie (Z) or dead (X) process has exited: only its exit status is left to collect.
    if matches!(state, 'Z' | 'X') {
        return Ok(Err(Stale::Exited { pid }));
    }
    Ok(Ok(start))
}

/// The state (field 3) and start time (field 22) of a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(text: &str) -> Option<(char, u64)> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // Fields 4 to 21 come between the state and the start time.
    let start = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, start))
}

fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1; it touches no
    // memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.get(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel has just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pidfd_send_signal(fd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal(2) with a valid pidfd, no siginfo (null: as kill(2) sends it)
    // and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the pidfd's process has exited, waiting up to `timeout` for it.
fn pidfd_readable(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let millis = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: one pollfd that lives across the call. An interrupted poll (EINTR) returns -1 and
    // counts as "not yet": the caller polls again.
    let ready = unsafe { libc::poll(&mut poll, 1, millis) };
    ready > 0 && poll.revents & libc::POLLIN != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    const BOOT: &str = "e91deade-0017-408a-9487-654d548f960c";

    fn record(pid: &str) -> String {
        format!("pid {pid}\nstart_time 4242\nboot_id {BOOT}\n")
    }

    #[test]
    fn a_record_round_trips() {
        let identity = ProcessIdentity::parse(&record("2147483647")).unwrap();
        assert_eq!(identity.pid().get(), i32::MAX);
        assert_eq!(identity.to_record(), record("2147483647"));
        // The trailing newline is optional, nothing else is.
        assert_eq!(
            ProcessIdentity::parse(record("1").trim_end())
                .unwrap()
                .pid(),
            Pid(1)
        );
    }

    #[test]
    fn pids_that_would_signal_a_group_or_nothing_are_refused() {
        for pid in [
            "0",
            "-1",
            "-12",
            "+12",
            "2147483648",
            "4294967297",
            "99999999999999999999999",
            "12abc",
            "012",
            "1 2",
            " 12",
            "12 ",
            "",
            "１２",
        ] {
            assert_eq!(
                ProcessIdentity::parse(&record(pid)),
                Err(RecordError::Pid(pid.to_owned())),
                "{pid:?}"
            );
        }
    }

    #[test]
    fn anything_but_the_three_lines_is_refused() {
        let layouts = [
            // What shipgate-local wrote before records carried an identity.
            "12345\n".to_owned(),
            String::new(),
            format!("{}extra 1\n", record("12")),
            format!("start_time 4242\npid 12\nboot_id {BOOT}\n"),
            format!("pid=12\nstart_time 4242\nboot_id {BOOT}\n"),
            format!("pid 12\r\nstart_time 4242\r\nboot_id {BOOT}\r\n"),
            format!("{}\n", record("12")),
        ];
        for text in layouts {
            assert!(ProcessIdentity::parse(&text).is_err(), "{text:?}");
        }
        assert_eq!(
            ProcessIdentity::parse("12345\n"),
            Err(RecordError::Layout("12345\n".to_owned()))
        );
        assert!(matches!(
            ProcessIdentity::parse(&format!("pid 12\nstart_time -3\nboot_id {BOOT}\n")),
            Err(RecordError::StartTime(_))
        ));
        assert!(matches!(
            ProcessIdentity::parse(
                "pid 12\nstart_time 3\nboot_id E91DEADE-0017-408A-9487-654D548F960C\n"
            ),
            Err(RecordError::BootId(_))
        ));
    }

    #[test]
    fn the_stat_line_is_read_from_the_last_parenthesis() {
        // A command name holding ") " must not shift the fields.
        let mut fields = vec!["S"];
        fields.extend(std::iter::repeat_n("0", 18));
        fields.push("777");
        let line = format!("12 (evil) S 1 1) {} 0 0\n", fields.join(" "));
        assert_eq!(parse_stat(&line), Some(('S', 777)));
        assert_eq!(parse_stat("12 (short) S 1"), None);
    }

    #[test]
    fn this_process_matches_its_own_identity_and_no_other() {
        let me = ProcessIdentity::of_self().unwrap();
        assert_eq!(me.check().unwrap(), Ok(()));
        let younger = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert_eq!(
            younger.check().unwrap(),
            Err(Stale::Reused {
                pid: me.pid,
                recorded: me.start_ticks + 1,
                now: me.start_ticks
            })
        );
        let earlier_boot = ProcessIdentity {
            boot_id: "00000000-0000-0000-0000-000000000000".to_owned(),
            ..me.clone()
        };
        assert_eq!(
            earlier_boot.check().unwrap(),
            Err(Stale::EarlierBoot { pid: me.pid })
        );
        // Neither is signalled: refused before any signal, and this test is still here.
        assert!(matches!(
            stop(&younger, Duration::from_millis(10)).unwrap(),
            Err(Stale::Reused { .. })
        ));
        assert!(matches!(
            stop(&earlier_boot, Duration::from_millis(10)).unwrap(),
            Err(Stale::EarlierBoot { .. })
        ));
    }

    fn spawn(script: &str) -> (std::process::Child, ProcessIdentity) {
        let child = Command::new("/bin/sh")
            .args(["-c", script])
            .spawn()
            .unwrap();
        let pid = Pid::new(u64::from(child.id())).unwrap();
        let identity = ProcessIdentity::of(pid).unwrap().unwrap();
        (child, identity)
    }

    #[test]
    fn a_recorded_child_is_stopped_and_a_mismatching_record_of_it_is_refused() {
        use std::os::unix::process::ExitStatusExt;
        let (mut child, identity) = spawn("exec sleep 30");
        let forged = ProcessIdentity {
            start_ticks: identity.start_ticks.wrapping_sub(1),
            ..identity.clone()
        };
        assert!(matches!(
            stop(&forged, Duration::from_secs(1)).unwrap(),
            Err(Stale::Reused { .. })
        ));
        assert_eq!(child.try_wait().unwrap(), None, "the forged record hit it");

        assert_eq!(
            stop(&identity, Duration::from_secs(5)).unwrap(),
            Ok(Stopped::Terminated)
        );
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
        // Once it has gone, its record is stale.
        assert_eq!(
            stop(&identity, Duration::from_secs(1)).unwrap(),
            Err(Stale::Exited { pid: identity.pid })
        );
    }

    #[test]
    fn a_child_that_ignores_sigterm_is_killed_after_the_grace_period() {
        use std::os::unix::process::ExitStatusExt;
        // The ignored disposition survives exec, so sleep itself ignores SIGTERM.
        let (mut child, identity) = spawn("trap '' TERM; exec sleep 30");
        // Until the shell has run `trap`, SIGTERM would still end it: wait for the exec.
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{}/comm", identity.pid))
            .is_ok_and(|c| c.trim() != "sleep")
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            stop(&identity, Duration::from_millis(300)).unwrap(),
            Ok(Stopped::Killed)
        );
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
}
