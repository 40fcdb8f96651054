//! Following a Markdown walk-through as a reader would: its shell sessions run, in order, in
//! one `bash`, and what each command prints must match what the document shows.
//!
//! What the document marks, with the words after a code fence's language:
//! - ` ```console ` blocks are run: each `$ ` line is a command (a line ending in `\`
//!   continues on the next), the lines after it what the command prints. Tags after
//!   `console` pick the walk-through they belong to (`console python`, `console js rust`); a
//!   block without a tag belongs to every walk-through.
//! - `background` runs the block's one command in the background (a server a reader starts in
//!   a second terminal); the run goes on once everything the block shows was printed.
//! - `fails` expects the command to exit with a non-zero status (any other block must exit 0).
//! - ` ```<language> file=<path> [tags] ` blocks are written to `<path>` (relative to the
//!   shell's directory), as a reader pastes them into their editor; tags after the path pick
//!   the walk-throughs, as for `console` blocks.
//!
//! Shown output matches real output line by line, after trailing spaces are trimmed: `…` in a
//! line stands for any text, a line of only `…` for any number of lines, and the shown lines
//! between two `…` lines must appear together, in order.

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// One thing the document asks the reader to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run `command`; it prints `output` (as shown) and exits 0, or non-zero when `fails`.
    Run {
        command: String,
        output: Vec<String>,
        fails: bool,
        background: bool,
        /// Where the block is in the document (1-based line of the command).
        line: usize,
    },
    /// Write `contents` to `path`.
    Write { path: String, contents: String },
}

/// The steps of `markdown` that belong to the walk-through `tag`, in document order.
pub fn steps(markdown: &str, tag: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut lines = markdown.lines().enumerate().peekable();
    while let Some((_, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let words: Vec<&str> = info.split_whitespace().collect();
        let mut body = Vec::new();
        for (number, line) in lines.by_ref() {
            if line.trim_start().starts_with("```") {
                break;
            }
            body.push((number + 1, line));
        }
        if let Some(path) = words.iter().find_map(|w| w.strip_prefix("file=")) {
            // Words after the language other than `file=` are the walk-throughs it belongs to.
            let tags: Vec<&&str> = words
                .iter()
                .skip(1)
                .filter(|w| !w.starts_with("file="))
                .collect();
            if !tags.is_empty() && !tags.iter().any(|t| **t == tag) {
                continue;
            }
            let contents: String = body.iter().map(|(_, l)| format!("{l}\n")).collect();
            steps.push(Step::Write {
                path: path.to_owned(),
                contents,
            });
            continue;
        }
        if words.first() != Some(&"console") {
            continue;
        }
        let flags = ["background", "fails"];
        let tags: Vec<&&str> = words[1..].iter().filter(|w| !flags.contains(w)).collect();
        if !tags.is_empty() && !tags.iter().any(|t| **t == tag) {
            continue;
        }
        let (background, fails) = (words.contains(&"background"), words.contains(&"fails"));
        steps.extend(commands(&body, background, fails));
    }
    steps
}

/// The commands of one `console` block and what each prints.
fn commands(body: &[(usize, &str)], background: bool, fails: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut body = body.iter().peekable();
    while let Some((number, line)) = body.next() {
        let Some(first) = line.strip_prefix("$ ") else {
            continue;
        };
        let mut command = first.to_owned();
        // Kept as written: bash joins a line ending in `\` with the next.
        while command.ends_with('\\') {
            let Some((_, next)) = body.next() else { break };
            command.push('\n');
            command.push_str(next);
        }
        let mut output = Vec::new();
        while let Some((_, next)) = body.peek() {
            if next.starts_with("$ ") {
                break;
            }
            output.push(next.trim_end().to_owned());
            body.next();
        }
        while output.last().is_some_and(String::is_empty) {
            output.pop();
        }
        steps.push(Step::Run {
            command,
            output,
            fails,
            background,
            line: *number,
        });
    }
    steps
}

/// Whether `actual` (a command's output) shows what `shown` says it does.
pub fn matches(shown: &[String], actual: &str) -> bool {
    let actual: Vec<&str> = actual.lines().map(str::trim_end).collect();
    let mut from = 0;
    for segment in shown.split(|line| line == "…") {
        if segment.is_empty() {
            continue;
        }
        let found = (from..=actual.len().saturating_sub(segment.len())).find(|&start| {
            segment
                .iter()
                .zip(&actual[start..])
                .all(|(want, got)| line_matches(want, got))
                && actual.len() >= start + segment.len()
        });
        match found {
            Some(start) => from = start + segment.len(),
            None => return false,
        }
    }
    true
}

/// One shown line against one real line: `…` stands for any text.
fn line_matches(shown: &str, actual: &str) -> bool {
    let mut parts = shown.split('…');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (index, part) in parts.iter().enumerate() {
        let last = index + 1 == parts.len();
        if last {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// One `bash` that the steps run in, so `cd` and `export` carry over as in a terminal.
pub struct Shell {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    dir: PathBuf,
    background: Vec<PathBuf>,
}

/// The line a command's end is announced with, followed by its exit status.
const DONE: &str = "@@walkthrough-done@@";

impl Shell {
    /// A shell in `dir` with `path_first` at the front of `PATH` and `env` set.
    pub fn start(dir: &Path, path_first: &Path, env: &[(&str, &str)]) -> Self {
        let path = format!(
            "{}:{}",
            path_first.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut child = Command::new("bash")
            .arg("--noprofile")
            .arg("--norc")
            .current_dir(dir)
            .env("PATH", path)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting bash");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let mut shell = Self {
            child,
            stdin,
            lines,
            dir: dir.to_owned(),
            background: Vec::new(),
        };
        shell.send("exec 2>&1");
        shell
    }

    fn send(&mut self, text: &str) {
        writeln!(self.stdin, "{text}").expect("writing to bash");
        self.stdin.flush().unwrap();
    }

    /// Runs `command`; answers its exit status and everything it printed.
    pub fn run(&mut self, command: &str, limit: Duration) -> (i32, String) {
        // The newline ends a last line printed without one; an empty line it adds is dropped.
        self.send(&format!("{command}\nprintf '\\n{DONE} %s\\n' \"$?\""));
        let started = Instant::now();
        let mut output = Vec::new();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => match line.strip_prefix(DONE) {
                    Some(status) => {
                        if output.last().is_some_and(|l: &String| l.is_empty()) {
                            output.pop();
                        }
                        return (status.trim().parse().unwrap_or(-1), output.join("\n"));
                    }
                    None => output.push(line),
                },
                Err(RecvTimeoutError::Timeout) => panic!(
                    "`{command}` did not finish within {limit:?}; it printed:\n{}",
                    output.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!("bash exited during `{command}`"),
            }
        }
    }

    /// Starts `command` in the background, its output to a file; answers the file.
    pub fn run_in_background(&mut self, command: &str) -> PathBuf {
        let log = self
            .dir
            .join(format!("background-{}.log", self.background.len() + 1));
        self.send(&format!("( {command} ) >{} 2>&1 &", log.display()));
        self.background.push(log.clone());
        log
    }

    /// Follows every step, panicking at the first one whose output or status differs from the
    /// document's. `limit` bounds each command.
    pub fn follow(&mut self, steps: &[Step], limit: Duration) {
        for step in steps {
            match step {
                Step::Write { path, contents } => {
                    let (status, cwd) = self.run("pwd", Duration::from_secs(10));
                    assert_eq!(status, 0);
                    let target = Path::new(cwd.trim()).join(path);
                    std::fs::write(&target, contents)
                        .unwrap_or_else(|e| panic!("writing {}: {e}", target.display()));
                }
                Step::Run {
                    command,
                    output,
                    background: true,
                    line,
                    ..
                } => {
                    let log = self.run_in_background(command);
                    let started = Instant::now();
                    loop {
                        let printed = std::fs::read_to_string(&log).unwrap_or_default();
                        if matches(output, &printed) {
                            break;
                        }
                        assert!(
                            started.elapsed() < limit,
                            "line {line}: `{command}` did not print what the document shows \
                             within {limit:?}:\n--- shown\n{}\n--- printed\n{printed}",
                            output.join("\n")
                        );
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
                Step::Run {
                    command,
                    output,
                    fails,
                    line,
                    ..
                } => {
                    eprintln!("$ {command}");
                    let (status, printed) = self.run(command, limit);
                    eprintln!("{printed}");
                    assert_eq!(
                        status != 0,
                        *fails,
                        "line {line}: `{command}` exited {status}; the document expects {}",
                        if *fails { "a failure" } else { "success" }
                    );
                    assert!(
                        matches(output, &printed),
                        "line {line}: `{command}` printed something else than the document \
                         shows:\n--- shown\n{}\n--- printed\n{printed}",
                        output.join("\n")
                    );
                }
            }
        }
    }
}

impl Drop for Shell {
    /// Stops the shell and everything it started (it leads its own process group), Ctrl-C
    /// first so servers shut down cleanly.
    fn drop(&mut self) {
        // Ctrl-C to everything the shell started, then wait (bounded) until the background
        // servers have exited: a sandbox stops its children with a grace period, and one killed
        // mid-way would keep the fixed ports from the next walk-through.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-INT", "--", &group]).status();
        let _ = writeln!(self.stdin, "wait; exit");
        let _ = self.stdin.flush();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(40) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}
