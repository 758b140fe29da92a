//! kill -9 test: a child process (this test binary, in child mode) appends
//! in a loop and prints every seq `append` returned; the parent kills it
//! with SIGKILL, reopens the log and finds every printed record, unchanged,
//! in a chain that verifies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::tests::{assert_chain, config, sample_record};
use super::*;

const CHILD_ENV: &str = "JOURNAL_CLIENT_CRASH_CHILD";

/// Child mode; does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.split('|');
    let dir = parts.next().unwrap();
    let interval_ms: u64 = parts.next().unwrap().parse().unwrap();
    let max_batch: usize = parts.next().unwrap().parse().unwrap();
    let mut cfg = config(std::path::Path::new(dir));
    cfg.group_commit_interval = Duration::from_millis(interval_ms);
    cfg.group_commit_max_batch = max_batch;
    let log = SledLog::open(cfg).unwrap();
    // Written straight to the process's stdout, not the test harness capture.
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let Appended::Logged { seq, hash } = log.append(sample_record(i)).unwrap() else {
            panic!("dropped");
        };
        writeln!(out, "seq {seq} {hash}").unwrap();
        if seq % 97 == 0 && seq > 50 {
            log.ack(seq - 50).unwrap();
            writeln!(out, "acked {}", seq - 50).unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn records_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut known: BTreeMap<u64, String> = BTreeMap::new();
    // (group commit interval ms, max batch): mostly in the write-ahead file;
    // the default; flushing and releasing all the time.
    for (round, (interval_ms, max_batch)) in [(500u64, 100_000usize), (2, 512), (1, 8)]
        .into_iter()
        .enumerate()
    {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "outbox::crash_tests::crash_child",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!("{}|{interval_ms}|{max_batch}", dir.path().display()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let kill_after = 200 + fastrand::usize(0..2000);
        let mut printed: Vec<(u64, String)> = Vec::new();
        let mut acked_printed = 0u64;
        let mut killed = false;
        for line in lines {
            let line = line.unwrap();
            let mut words = line.split(' ');
            match words.next() {
                Some("seq") => {
                    let seq = words.next().unwrap().parse().unwrap();
                    printed.push((seq, words.next().unwrap().to_owned()));
                }
                Some("acked") => acked_printed = words.next().unwrap().parse().unwrap(),
                _ => continue,
            }
            if !killed && printed.len() >= kill_after {
                child.kill().unwrap(); // SIGKILL
                killed = true;
            }
        }
        assert!(killed, "child ended before it was killed (round {round})");
        child.wait().unwrap();

        let log = SledLog::open(config(dir.path())).unwrap();
        let s = log.stats();
        assert_eq!(s.boot_epoch, 2 * round as u64 + 2);
        let max_printed = printed.last().unwrap().0;
        assert!(s.last_seq >= max_printed, "{} < {max_printed}", s.last_seq);
        assert!(s.acked_seq <= acked_printed);
        let envs = log.read_after(s.acked_seq, usize::MAX).unwrap();
        let prev = known.get(&s.acked_seq).map(String::as_str);
        assert_chain(&envs, s.acked_seq + 1, prev);
        assert_eq!(envs.last().map_or(s.acked_seq, |e| e.seq), s.last_seq);
        let by_seq: BTreeMap<u64, &str> = envs.iter().map(|e| (e.seq, e.hash.as_str())).collect();
        for (seq, hash) in &printed {
            if *seq > s.acked_seq {
                assert_eq!(by_seq.get(seq), Some(&hash.as_str()), "seq {seq} lost");
            }
        }
        for e in &envs {
            if let Some(h) = known.insert(e.seq, e.hash.clone()) {
                assert_eq!(h, e.hash, "seq {} changed across a crash", e.seq);
            }
        }
        for (seq, hash) in printed {
            known.entry(seq).or_insert(hash);
        }
        eprintln!(
            "round {round}: printed up to {max_printed}, recovered up to {}, acked {}",
            s.last_seq, s.acked_seq
        );
    }
}
