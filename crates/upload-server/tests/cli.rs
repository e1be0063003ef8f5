//! The binary's command line: `--help` lists every variable with its
//! default, and `check` says in words what works and what does not.

use std::process::{Command, Output};

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_upload-server")).args(args).env_clear().envs(env.iter().copied()).output().unwrap()
}

#[test]
fn help_lists_every_variable_with_its_default() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for v in upload_server::ENV_VARIABLES {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(v.name))
            .unwrap_or_else(|| panic!("{} missing:\n{help}", v.name));
        assert!(line.contains(&format!("[default: {}]", v.default)), "{line}");
    }
}

#[test]
fn check_passes_on_a_working_local_setup() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = run(&["check"], &[("UPLOAD_DATA_DIR", data)]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("ok: database") && text.contains("ok: object store: local disk"), "{text}");
    assert!(!text.contains("problem:"), "{text}");
}

#[test]
fn check_says_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the data directory should be, and a store that does not answer.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let out = run(
        &["check"],
        &[
            ("UPLOAD_DATA_DIR", blocker.to_str().unwrap()),
            ("UPLOAD_DATABASE_URL", &format!("sqlite://{}/db.sqlite", blocker.display())),
            ("UPLOAD_S3_BUCKET", "nowhere"),
            ("UPLOAD_S3_ENDPOINT", "http://127.0.0.1:1"),
            ("UPLOAD_S3_FORCE_PATH_STYLE", "true"),
            ("AWS_ACCESS_KEY_ID", "GKexample"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("problem: the data directory"), "{text}");
    assert!(text.contains("problem: the database"), "{text}");
    assert!(text.contains("problem: bucket nowhere cannot be read"), "{text}");
    // A bad value is named before anything is tried.
    let out = run(&["check"], &[("UPLOAD_SNIFF", "strict")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("UPLOAD_SNIFF"));
}
