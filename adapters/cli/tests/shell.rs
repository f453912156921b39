//! End-to-end tests of `vserv shell` against a real `vserv serve` (blocking and smol
//! runtimes): through a pseudo terminal (typing a command, tab completion of a command name
//! and a remote path, history kept across two runs) and through standard input (a script
//! of 35 `rput`s on one connection under a connection rate limit, a failing line making the
//! exit status non-zero), and server notices (idle, delivery) shown at the prompt.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{BIN, Server};

const PASSWORD: &str = "alice-password-1";

/// A scratch directory with a server (of `runtime`) holding admin alice; the server allows
/// only `connections` new connections per minute from one address.
struct Env {
    /// Declared first: the server is stopped before its directory is removed.
    server: Server,
    scratch: common::Env,
}

impl Env {
    fn new(runtime: &str, connections: u32) -> Env {
        Env::with_config(runtime, connections, "")
    }

    /// Like [`Env::new`], with `extra` top-level lines in the server's configuration.
    fn with_config(runtime: &str, connections: u32, extra: &str) -> Env {
        let scratch = common::Env::new();
        scratch.add_user("alice", true, PASSWORD);
        let config = scratch.path("server.toml");
        std::fs::write(
            &config,
            format!(
                "runtime = \"{runtime}\"\n{extra}[files]\nmin_free_bytes = 0\n\
                 [rate_limit]\nconnections = {connections}\nwindow_secs = 60\n"
            ),
        )
        .expect("server config");
        let server = Server::start_with(&scratch.data(), Some(&config), None);
        Env { server, scratch }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.scratch.path(name)
    }

    /// `vserv shell` as alice, connected to the server, HOME the scratch directory.
    fn shell_args(&self) -> Vec<String> {
        let mut args = self.scratch.client_args(&self.server, &["shell"]);
        args.extend(["--user".to_owned(), "alice".to_owned()]);
        args
    }

    /// Runs `vserv shell` with `script` on standard input.
    fn script(&self, script: &str) -> common::Run {
        self.script_with(script, &[])
    }

    /// Like [`Env::script`], with `env` added to the environment.
    fn script_with(&self, script: &str, env: &[(&str, &str)]) -> common::Run {
        let args = self.shell_args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut all = vec![("VSERV_PASSWORD", PASSWORD)];
        all.extend_from_slice(env);
        self.scratch
            .vserv_with_input(&args, &all, script.as_bytes())
    }

    /// `vserv shell` on a pseudo terminal, run in the scratch directory.
    fn terminal(&self) -> rexpect::session::PtySession {
        let mut cmd = Command::new(BIN);
        cmd.args(self.shell_args())
            .current_dir(self.scratch.dir())
            .env_remove("RUST_LOG")
            .env("HOME", self.scratch.dir())
            .env("TERM", "xterm")
            .env("VSERV_PASSWORD", PASSWORD);
        let mut pty = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn shell");
        pty.exp_string(&self.prompt()).expect("first prompt");
        pty
    }

    fn prompt(&self) -> String {
        format!("alice@{}> ", self.server.addr)
    }
}

fn script_runs_35_rputs_on_one_connection(runtime: &str) {
    // Two new connections a minute: 35 one-shot `vserv rput`s would be refused as busy.
    let env = Env::new(runtime, 2);
    let mut script: String = (0..35)
        .map(|i| format!("rput note n={i} --id note-{i}\n"))
        .collect();
    script.push_str("rsize note\n");
    let run = env.script(&script).ok();
    let text = run.text();
    assert_eq!(text.matches("\nrecord note-").count(), 35, "{text}");
    assert!(text.ends_with("35\n"), "{text}");
    // The shell used one connection: one more is still allowed.
    let again = env.script("rhave note-34\nwhoami\n").ok();
    assert_eq!(again.text(), "yes\nalice (admin)\n");
}

#[test]
fn script_runs_35_rputs_on_one_connection_blocking() {
    script_runs_35_rputs_on_one_connection("blocking");
}

#[test]
fn script_runs_35_rputs_on_one_connection_smol() {
    script_runs_35_rputs_on_one_connection("smol");
}

fn failing_line_fails_the_script(runtime: &str) {
    let env = Env::new(runtime, 30);
    let run = env.script(
        "whoami\nstat no-such-file\nbogus-command\nmkdir docs\ncd docs\npwd\nrput note @-\n",
    );
    assert_eq!(run.code, Some(1), "{} / {}", run.text(), run.stderr);
    // Every line ran, the failing ones reported with their line numbers.
    let text = run.text();
    assert!(text.starts_with("alice (admin)\n"), "{text}");
    assert!(text.contains("ok\n"), "{text}");
    assert!(text.trim_end().ends_with("docs"), "{text}");
    assert!(run.stderr.contains("vserv: line 2: "), "{}", run.stderr);
    assert!(run.stderr.contains("vserv: line 3: "), "{}", run.stderr);
    // `@-` would read the script itself.
    assert!(
        run.stderr.contains("vserv: line 7: rput @- would read"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("3 command(s) failed"), "{}", run.stderr);
    // All lines fine: success. `user` commands run on the connection too.
    let run = env
        .script_with(
            "# a comment\n\nwhoami\nuser add bob\nuser list\nhelp\nexit\nbogus-after-exit\n",
            &[("VSERV_NEW_PASSWORD", "bob-password-1")],
        )
        .ok();
    let text = run.text();
    assert!(text.contains("\nbob "), "{text}");
    assert!(text.contains("user  enabled"), "{text}");
    // `help`: the server's catalogue, then what the shell adds (and how it handles idling).
    assert!(text.contains("\nrput "), "{text}");
    assert!(text.contains("exit, quit"), "{text}");
    assert!(text.contains("logs in again on the next command"), "{text}");
}

#[test]
fn failing_line_fails_the_script_blocking() {
    failing_line_fails_the_script("blocking");
}

#[test]
fn failing_line_fails_the_script_smol() {
    failing_line_fails_the_script("smol");
}

fn idle_session_is_reopened(runtime: &str) {
    let env = Env::with_config(
        runtime,
        30,
        "idle_timeout_secs = 2\nidle_timeout_min_secs = 1\n",
    );
    let args = env.shell_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = env
        .scratch
        .command(&args, &[("VSERV_PASSWORD", PASSWORD)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vserv shell");
    let mut input = child.stdin.take().expect("piped stdin");
    input
        .write_all(b"mkdir docs\ncd docs\ntout\n")
        .expect("first lines");
    input.flush().expect("flush");
    // Longer than the server's idle timeout: the server closes the session meanwhile.
    std::thread::sleep(Duration::from_secs(4));
    input.write_all(b"pwd\nwhoami\n").expect("later lines");
    drop(input);
    let run = common::Run::from_output(child.wait_with_output().expect("wait for shell"));
    let run = run.ok();
    let text = run.text();
    // Logged in again, back in the directory set before.
    assert!(text.ends_with("docs\nalice (admin)\n"), "{text}");
    assert!(text.contains("idle timeout: 2s"), "{text}");
    assert!(run.stderr.contains("reconnecting"), "{}", run.stderr);

    // On a terminal the server's notices appear above the prompt (that the session is
    // about to idle out, then that it was closed), and the next command reconnects.
    let mut pty = env.terminal();
    // The server's IdleSoon notice, as Notice::describe words it.
    pty.exp_string("the session idles out in")
        .expect("about-to-idle notice");
    pty.exp_string("unless used").expect("about-to-idle notice");
    pty.exp_string("has closed this session")
        .expect("idled-out notice");
    pty.send_line("whoami").expect("type");
    pty.exp_string("reconnecting").expect("reconnects");
    pty.exp_string("alice (admin)").expect("whoami output");
    pty.send_line("exit").expect("type");
    pty.exp_eof().expect("shell ends");
}

#[test]
fn idle_session_is_reopened_blocking() {
    idle_session_is_reopened("blocking");
}

#[test]
fn idle_session_is_reopened_smol() {
    idle_session_is_reopened("smol");
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("history file")
        .permissions()
        .mode()
        & 0o777
}

fn terminal_typing_completion_and_history(runtime: &str) {
    let env = Env::new(runtime, 30);
    std::fs::write(env.path("report-2026.txt"), b"quarterly numbers\n").expect("local file");

    let mut pty = env.terminal();
    // A command typed and its output.
    pty.send_line("whoami").expect("type");
    pty.exp_string("alice (admin)").expect("whoami output");
    pty.exp_string(&env.prompt()).expect("prompt");
    // A local path completed for put.
    pty.send("put report-2\t").expect("type");
    pty.flush().expect("flush");
    pty.exp_string("026.txt").expect("completed local path");
    pty.send_line("").expect("enter");
    pty.exp_string("put report-2026.txt -> report-2026.txt")
        .expect("put output");
    pty.exp_string(&env.prompt()).expect("prompt");
    // A command name completed: `whoa<TAB>` runs whoami.
    pty.send("whoa\t").expect("type");
    pty.flush().expect("flush");
    pty.exp_string("mi").expect("completed command name");
    pty.send_line("").expect("enter");
    pty.exp_string("alice (admin)").expect("whoami output");
    pty.exp_string(&env.prompt()).expect("prompt");
    // A remote path completed for stat.
    pty.send("stat rep\t").expect("type");
    pty.flush().expect("flush");
    pty.exp_string("ort-2026.txt")
        .expect("completed remote path");
    pty.send_line("").expect("enter");
    pty.exp_string("kind f").expect("stat output");
    pty.exp_string("size 18").expect("stat output");
    pty.exp_string(&env.prompt()).expect("prompt");
    // `CMD --help` shows the CLI form, without the connection options.
    pty.send_line("rput --help").expect("type");
    pty.exp_string("FIELD=VALUE").expect("rput help");
    pty.exp_string(&env.prompt()).expect("prompt");
    pty.send_line("exit").expect("type");
    pty.exp_eof().expect("shell ends");

    let history = env.path(".vserv/history");
    assert_eq!(mode(&history), 0o600);
    let saved = std::fs::read_to_string(&history).expect("history");
    assert!(saved.contains("stat report-2026.txt"), "{saved}");

    // A second run recalls the first run's lines: the last three were `stat ...`,
    // `rput --help` and `exit`, so Up three times brings back the `stat`.
    let mut pty = env.terminal();
    pty.send("\x1b[A\x1b[A\x1b[A").expect("up");
    pty.flush().expect("flush");
    pty.send_line("").expect("enter");
    pty.exp_string("kind f").expect("recalled stat output");
    pty.exp_string(&env.prompt()).expect("prompt");
    pty.send_control('d').expect("ctrl-d");
    pty.exp_eof().expect("shell ends on end of input");
}

#[test]
fn terminal_typing_completion_and_history_blocking() {
    terminal_typing_completion_and_history("blocking");
}

#[test]
fn terminal_typing_completion_and_history_smol() {
    terminal_typing_completion_and_history("smol");
}

fn delivery_notice_appears_at_the_prompt(runtime: &str) {
    const BOB_PW: &str = "bob-password-1";
    let env = Env::new(runtime, 30);
    env.scratch
        .client(
            &env.server,
            &["user", "add", "bob", "--user", "alice"],
            &[("VSERV_PASSWORD", PASSWORD), ("VSERV_NEW_PASSWORD", BOB_PW)],
        )
        .ok();
    std::fs::write(env.path("folder.toml"), "allow = [\"bob\"]\n").expect("folder.toml");
    std::fs::write(env.path("report.txt"), b"for alice\n").expect("local file");

    // Alice sets up her inbox in the shell and waits at the prompt.
    let mut pty = env.terminal();
    for line in [
        "mkdir inbox",
        "mkdir inbox/default",
        "put folder.toml inbox/default/folder.toml",
    ] {
        pty.send_line(line).expect("type");
        pty.exp_string(&env.prompt()).expect("prompt");
    }
    // Bob delivers a file: the notice appears above alice's prompt, unasked.
    let report = env.path("report.txt");
    env.scratch
        .client(
            &env.server,
            &[
                "send",
                "alice",
                report.to_str().expect("utf-8 path"),
                "--user",
                "bob",
            ],
            &[("VSERV_PASSWORD", BOB_PW)],
        )
        .ok();
    pty.exp_string("from bob in inbox folder 'default'")
        .expect("delivery notice");
    pty.send_line("exit").expect("type");
    pty.exp_eof().expect("shell ends");
}

#[test]
fn delivery_notice_appears_at_the_prompt_blocking() {
    delivery_notice_appears_at_the_prompt("blocking");
}

#[test]
fn delivery_notice_appears_at_the_prompt_smol() {
    delivery_notice_appears_at_the_prompt("smol");
}

#[test]
fn whoami_tout_and_rhave_have_one_shot_forms() {
    let env = Env::new("blocking", 30);
    let as_alice = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--user", "alice"]);
        env.scratch
            .client(&env.server, &all, &[("VSERV_PASSWORD", PASSWORD)])
            .ok()
            .text()
    };
    assert_eq!(
        env.scratch
            .client(&env.server, &["whoami"], &[])
            .ok()
            .text(),
        "not logged in\n"
    );
    assert_eq!(as_alice(&["whoami"]), "alice (admin)\n");
    assert_eq!(as_alice(&["tout"]), "idle timeout: 300s\n");
    assert_eq!(as_alice(&["rhave", "nothing-here"]), "no\n");
    // Commands that need a login say so before connecting.
    let line = env
        .scratch
        .client(&env.server, &["rhave", "x"], &[])
        .fails();
    assert!(line.contains("`vserv rhave` needs a login"), "{line}");
}

#[test]
fn tree_version_and_inbox_commands_run_on_the_shells_connection() {
    // Two new connections a minute: the shell's one, then the check below.
    let env = Env::new("blocking", 2);
    let src = env.path("src");
    std::fs::create_dir_all(src.join("sub")).expect("mkdir");
    std::fs::create_dir_all(src.join("empty")).expect("mkdir");
    std::fs::write(src.join("sub/a.txt"), "tree file").expect("write");
    std::fs::write(env.path("one.txt"), "first content").expect("write");
    std::fs::write(env.path("two.txt"), "second content").expect("write");
    let p = |name: &str| env.path(name).display().to_string();
    let script = format!(
        "mkdir -p a/b/c\nput -r '{src}' up\nget -r up '{back}'\nput '{one}' f.txt\n\
         put '{two}' f.txt\nversions f.txt --json\nrestore f.txt 1\nget f.txt '{restored}'\n\
         inbox setup --allow alice --dry-run\ninbox setup --allow alice\nstat a/b/c\n",
        src = p("src"),
        back = p("back"),
        one = p("one.txt"),
        two = p("two.txt"),
        restored = p("restored.txt"),
    );
    let run = env.script(&script).ok();
    let text = run.text();
    assert!(text.contains("\"number\":1"), "{text}");
    assert!(text.contains("restored version 1 of f.txt"), "{text}");
    assert!(text.contains("allow = [\"alice\"]"), "{text}");
    assert!(text.contains("inbox folder 'default' set up"), "{text}");
    assert_eq!(
        std::fs::read_to_string(env.path("back/sub/a.txt")).expect("tree copy"),
        "tree file"
    );
    assert!(env.path("back/empty").is_dir());
    assert_eq!(
        std::fs::read_to_string(env.path("restored.txt")).expect("restored"),
        "first content"
    );
    // Everything ran on one connection: one more is still allowed.
    assert_eq!(env.script("whoami\n").ok().text(), "alice (admin)\n");
}
