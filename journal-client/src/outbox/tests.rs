#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use policy_proto::journal::RecordEnvelope;

use super::codec::{self, Stored};
use super::*;
use crate::config::{LocalLogConfig, OnFull};
use crate::{DecisionRecord, GENESIS_HASH, RequestSummary, Verdict, record_hash};

/// A record as the agent would build it (seq, chain fields left for the log).
pub(crate) fn sample_record(n: u64) -> DecisionRecord {
    DecisionRecord {
        decision_id: format!("0190b6c4-0000-7000-8000-{n:012}"),
        agent_id: "someone-else".into(),
        boot_epoch: 0,
        seq: 0,
        timestamp: "2026-11-23T00:00:00.000000000Z".into(),
        request_id: format!("r{n}"),
        route: "/api/v1/users".into(),
        phase: "request".into(),
        request: RequestSummary {
            method: "GET".into(),
            path: format!("/api/v1/users/{n}"),
            ..RequestSummary::default()
        },
        principal: Some("alice".into()),
        policies: vec![],
        decision: Verdict::Allow,
        http_status: None,
        reason: String::new(),
        decided_by: None,
        enforcement: "enforce".into(),
        environment: "dev".into(),
        bundle_revision: "builtin".into(),
        config_version: "1".into(),
        mode: "normal".into(),
        audit: false,
        duration_us: 12,
        builtins: vec![],
        prev_hash: String::new(),
    }
}

pub(crate) fn config(dir: &Path) -> LocalLogConfig {
    LocalLogConfig::new(dir, "agent-1")
}

pub(crate) fn append_n(log: &SledLog, n: u64) -> Vec<(u64, String)> {
    (0..n)
        .map(|i| match log.append(sample_record(i)).unwrap() {
            Appended::Logged { seq, hash } => (seq, hash),
            Appended::Dropped => panic!("dropped"),
        })
        .collect()
}

/// Checks seqs are contiguous from `first`, hashes are the JSON's, each
/// record continues the previous one, and the JSON repeats the envelope.
pub(crate) fn assert_chain(envs: &[RecordEnvelope], first: u64, prev: Option<&str>) {
    let mut prev = prev.map(str::to_owned);
    for (i, e) in envs.iter().enumerate() {
        assert_eq!(e.seq, first + i as u64, "seqs are contiguous");
        assert_eq!(e.hash, record_hash(&e.record_json), "seq {}", e.seq);
        if e.seq == 1 {
            assert_eq!(e.prev_hash, GENESIS_HASH);
        }
        if let Some(p) = &prev {
            assert_eq!(&e.prev_hash, p, "seq {} continues the chain", e.seq);
        }
        let rec = DecisionRecord::from_json(&e.record_json).unwrap();
        assert_eq!(
            (
                rec.agent_id.as_str(),
                rec.boot_epoch,
                rec.seq,
                rec.prev_hash.as_str()
            ),
            (
                e.agent_id.as_str(),
                e.boot_epoch,
                e.seq,
                e.prev_hash.as_str()
            )
        );
        prev = Some(e.hash.clone());
    }
}

fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn append_numbers_chains_and_stamps_records() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(config(dir.path())).unwrap();
    let appended = append_n(&log, 3);
    assert_eq!(appended.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3]);
    let envs = log.read_after(0, 10).unwrap();
    assert_chain(&envs, 1, Some(GENESIS_HASH));
    assert_eq!(envs[2].hash, appended[2].1);
    assert!(
        envs.iter()
            .all(|e| e.agent_id == "agent-1" && e.boot_epoch == 1)
    );
    assert_eq!(log.read_after(1, 1).unwrap()[0].seq, 2);
    assert!(log.read_after(3, 10).unwrap().is_empty());
    let s = log.stats();
    assert_eq!((s.last_seq, s.acked_seq, s.pending_records), (3, 0, 3));
    assert!(s.pending_bytes > 0);
}

#[test]
fn reopen_continues_seq_chain_and_boot_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let log = SledLog::open(config(dir.path())).unwrap();
        append_n(&log, 5)
    };
    let log = SledLog::open(config(dir.path())).unwrap();
    assert_eq!(log.stats().boot_epoch, 2);
    assert_eq!(log.stats().synced_seq, 5);
    let next = append_n(&log, 2);
    assert_eq!(next[0].0, 6);
    let envs = log.read_after(0, 100).unwrap();
    assert_chain(&envs, 1, None);
    assert_eq!(envs[5].prev_hash, first[4].1);
    assert_eq!((envs[4].boot_epoch, envs[5].boot_epoch), (1, 2));
}

#[test]
fn ack_deletes_but_keeps_the_chain_head() {
    let dir = tempfile::tempdir().unwrap();
    let last_hash = {
        let log = SledLog::open(config(dir.path())).unwrap();
        let appended = append_n(&log, 10);
        log.ack(4).unwrap();
        assert_eq!(log.read_after(0, 100).unwrap()[0].seq, 5);
        log.ack(2).unwrap(); // older ack: nothing happens
        assert_eq!(log.stats().acked_seq, 4);
        log.ack(1_000).unwrap(); // clamped to the last record
        let s = log.stats();
        assert_eq!(
            (s.acked_seq, s.pending_records, s.pending_bytes),
            (10, 0, 0)
        );
        assert!(log.read_after(0, 100).unwrap().is_empty());
        appended[9].1.clone()
    };
    let log = SledLog::open(config(dir.path())).unwrap();
    assert_eq!((log.stats().last_seq, log.stats().acked_seq), (10, 10));
    append_n(&log, 1);
    let envs = log.read_after(0, 100).unwrap();
    assert_eq!(envs.len(), 1);
    assert_eq!(
        (envs[0].seq, envs[0].prev_hash.as_str()),
        (11, last_hash.as_str())
    );
}

#[test]
fn a_second_open_of_the_same_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _log = SledLog::open(config(dir.path())).unwrap();
    let err = SledLog::open(config(dir.path())).err().unwrap();
    assert!(matches!(err, LogError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("already open"), "{err}");
}

#[test]
fn another_agent_cannot_take_over_a_log() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledLog::open(config(dir.path())).unwrap());
    let err = SledLog::open(LocalLogConfig::new(dir.path(), "agent-2"))
        .err()
        .unwrap();
    assert!(matches!(err, LogError::AgentMismatch { .. }), "{err}");
}

#[test]
fn wait_synced_returns_after_group_commit_and_times_out_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(config(dir.path())).unwrap();
    let appended = append_n(&log, 20);
    log.wait_synced(20, Duration::from_secs(5)).unwrap();
    assert!(log.stats().synced_seq >= 20);
    let err = log.wait_synced(21, Duration::from_millis(20)).unwrap_err();
    assert!(
        matches!(err, LogError::SyncTimeout { seq: 21, .. }),
        "{err}"
    );
    assert_eq!(err.code(), "log_sync_timeout");
    // Synced records leave the write-ahead file.
    eventually("write-ahead release", || log.wal_bytes() == 0);
    assert_eq!(appended.len(), 20);
}

#[test]
fn full_log_denies_without_consuming_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_bytes = 4096;
    let log = SledLog::open(cfg).unwrap();
    let mut logged = 0u64;
    let err = loop {
        match log.append(sample_record(logged)) {
            Ok(Appended::Logged { seq, .. }) => {
                logged += 1;
                assert_eq!(seq, logged);
            }
            Ok(Appended::Dropped) => panic!("deny mode drops"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err,
            LogError::Full {
                max_bytes: 4096,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), "log_full");
    assert!(log.append(sample_record(0)).is_err());
    let s = log.stats();
    assert_eq!(
        (s.last_seq, s.denied_full_total, s.dropped_total),
        (logged, 2, 0)
    );
    assert!(s.pending_bytes <= 4096);
    // An ack makes room; the next record continues the sequence.
    log.ack(logged).unwrap();
    assert_eq!(
        log.append(sample_record(0)).unwrap(),
        Appended::Logged {
            seq: logged + 1,
            hash: log.read_after(logged, 1).unwrap()[0].hash.clone()
        }
    );
    assert_chain(&log.read_after(0, 100).unwrap(), logged + 1, None);
}

#[test]
fn full_log_drops_with_a_counter_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_bytes = 4096;
    cfg.on_full = OnFull::DropWithCounter;
    let log = SledLog::open(cfg).unwrap();
    let mut dropped = 0;
    for i in 0..40 {
        if log.append(sample_record(i)).unwrap() == Appended::Dropped {
            dropped += 1;
        }
    }
    let s = log.stats();
    assert!(dropped > 0);
    assert_eq!(s.dropped_total, dropped);
    assert_eq!(s.denied_full_total, 0);
    assert_eq!(s.last_seq + dropped, 40, "dropped records take no seq");
    assert_chain(&log.read_after(0, 100).unwrap(), 1, Some(GENESIS_HASH));
}

/// The write-ahead file of a closed log (its only segment).
fn wal_file(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("wal-"))
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.pop().unwrap()
}

#[test]
fn open_replays_write_ahead_records_and_ignores_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let head = {
        let log = SledLog::open(config(dir.path())).unwrap();
        append_n(&log, 3).pop().unwrap()
    };
    // Records 4 and 5 as `append` would have written them before a crash,
    // then half of record 6.
    let mut file = Vec::new();
    let mut prev = codec::parse_hash(&head.1).unwrap();
    for seq in 4..=6 {
        let mut rec = sample_record(seq);
        rec.agent_id = "agent-1".into();
        rec.boot_epoch = 1;
        rec.seq = seq;
        rec.prev_hash = hex::encode(prev);
        let json = rec.to_json().unwrap();
        let stored = Stored {
            boot_epoch: 1,
            seq,
            prev_hash: prev,
            hash: codec::parse_hash(&record_hash(&json)).unwrap(),
            json,
        };
        prev = stored.hash;
        let mut payload = Vec::new();
        stored.encode_into(&mut payload);
        let mut frame = Vec::new();
        codec::frame_into(&payload, &mut frame);
        if seq == 6 {
            frame.truncate(frame.len() / 2);
        }
        file.extend_from_slice(&frame);
    }
    std::fs::write(wal_file(dir.path()), &file).unwrap();

    let log = SledLog::open(config(dir.path())).unwrap();
    let envs = log.read_after(0, 100).unwrap();
    assert_eq!(envs.len(), 5);
    assert_chain(&envs, 1, Some(GENESIS_HASH));
    let next = append_n(&log, 1);
    assert_eq!(next[0].0, 6, "the torn record's seq is reused");
    assert_chain(&log.read_after(0, 100).unwrap(), 1, Some(GENESIS_HASH));
}

#[test]
fn write_ahead_records_that_break_the_chain_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    drop(SledLog::open(config(dir.path())).unwrap());
    let json = sample_record(1).to_json().unwrap();
    let stored = Stored {
        boot_epoch: 1,
        seq: 2, // seq 1 is missing
        prev_hash: [0; 32],
        hash: codec::parse_hash(&record_hash(&json)).unwrap(),
        json,
    };
    let mut payload = Vec::new();
    stored.encode_into(&mut payload);
    let mut frame = Vec::new();
    codec::frame_into(&payload, &mut frame);
    std::fs::write(wal_file(dir.path()), &frame).unwrap();
    let log = SledLog::open(config(dir.path())).unwrap();
    assert!(log.read_after(0, 10).unwrap().is_empty());
    assert_eq!(append_n(&log, 1)[0].0, 1);
}

#[test]
fn concurrent_appends_get_unique_contiguous_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(SledLog::open(config(dir.path())).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || append_n(&log, 250))
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .map(|a| a.0)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=1000).collect::<Vec<_>>());
    log.wait_synced(1000, Duration::from_secs(10)).unwrap();
    assert_chain(&log.read_after(0, 2000).unwrap(), 1, Some(GENESIS_HASH));
}

/// `cargo test -p journal-client --release --lib -- --ignored --nocapture append_cost`
#[test]
#[ignore = "measurement, not a check"]
fn append_cost() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(SledLog::open(config(dir.path())).unwrap());
    let n = 50_000u64;
    let start = Instant::now();
    let mut calls: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            log.append(sample_record(i)).unwrap();
            t.elapsed()
        })
        .collect();
    let per = start.elapsed() / n as u32;
    log.wait_synced(n, Duration::from_secs(30)).unwrap();
    let bytes = log.stats().pending_bytes / n;
    calls.sort_unstable();
    eprintln!(
        "append, 1 thread: {per:?} per record ({bytes} bytes stored per record); \
         per call p50 {:?}, p99 {:?}",
        calls[calls.len() / 2],
        calls[calls.len() * 99 / 100]
    );

    let threads = 4u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let log = std::sync::Arc::clone(&log);
            std::thread::spawn(move || append_n(&log, n / threads))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    eprintln!(
        "append, {threads} threads: {:?} per record",
        start.elapsed() / n as u32
    );
    log.ack(u64::MAX).unwrap();

    let mut lat: Vec<Duration> = (0..300)
        .map(|i| {
            let start = Instant::now();
            let Appended::Logged { seq, .. } = log.append(sample_record(i)).unwrap() else {
                panic!("dropped");
            };
            log.wait_synced(seq, Duration::from_secs(5)).unwrap();
            start.elapsed()
        })
        .collect();
    lat.sort_unstable();
    eprintln!(
        "append + wait_synced, one at a time: p50 {:?}, p90 {:?}, p99 {:?}",
        lat[150], lat[270], lat[297]
    );
}

#[test]
#[ignore = "measurement, not a check"]
fn append_cost_parts() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let n = 50_000u64;
    let json = sample_record(1).to_json().unwrap();
    let start = Instant::now();
    for i in 0..n {
        let mut r = sample_record(i);
        r.seq = i;
        let j = r.to_json().unwrap();
        std::hint::black_box(record_hash(&j));
    }
    eprintln!("serialize+hash: {:?}", start.elapsed() / n as u32);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("w"))
        .unwrap();
    let start = Instant::now();
    for _ in 0..n {
        f.write_all(&json).unwrap();
    }
    eprintln!("write_all: {:?}", start.elapsed() / n as u32);
    let db = sled::Config::new()
        .path(dir.path().join("db"))
        .flush_every_ms(None)
        .open()
        .unwrap();
    let start = Instant::now();
    for i in 0..n {
        db.insert(codec::record_key(i), json.as_slice()).unwrap();
    }
    eprintln!("sled insert: {:?}", start.elapsed() / n as u32);
    let start = Instant::now();
    for i in n..2 * n {
        db.insert(codec::record_key(i), json.as_slice()).unwrap();
        if i % 100 == 0 {
            db.flush().unwrap();
        }
    }
    eprintln!("sled insert + flush/100: {:?}", start.elapsed() / n as u32);
}

#[test]
fn read_after_stays_contiguous_while_records_move_to_sled_and_are_acked() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.group_commit_max_batch = 16;
    let log = std::sync::Arc::new(SledLog::open(cfg).unwrap());
    let writer = {
        let log = std::sync::Arc::clone(&log);
        std::thread::spawn(move || append_n(&log, 3000))
    };
    let mut reads = 0;
    while !writer.is_finished() || log.stats().acked_seq < 3000 {
        let acked = log.stats().acked_seq;
        let page = log.read_after(acked, 100).unwrap();
        if let Some(first) = page.first() {
            assert!(first.seq > acked);
            assert_chain(&page, first.seq, None);
            // Ack part of what was read, as the client would.
            log.ack(page[page.len() / 2].seq).unwrap();
        } else if writer.is_finished() {
            log.ack(u64::MAX).unwrap();
        }
        reads += 1;
    }
    writer.join().unwrap();
    assert!(reads > 1);
    let s = log.stats();
    assert_eq!(
        (s.acked_seq, s.pending_records, s.pending_bytes),
        (3000, 0, 0)
    );
}

#[test]
#[ignore = "measurement, not a check"]
fn drain_cost() {
    let dir = tempfile::tempdir().unwrap();
    let log = SledLog::open(config(dir.path())).unwrap();
    let n = 50_000u64;
    append_n(&log, n);
    log.wait_synced(n, Duration::from_secs(30)).unwrap();
    let (mut read, mut ack) = (Duration::ZERO, Duration::ZERO);
    let mut after = 0;
    while after < n {
        let t = Instant::now();
        let page = log.read_after(after, 256).unwrap();
        read += t.elapsed();
        after = page.last().unwrap().seq;
        let t = Instant::now();
        log.ack(after).unwrap();
        ack += t.elapsed();
    }
    eprintln!(
        "per record: read_after {:?}, ack {:?}",
        read / n as u32,
        ack / n as u32
    );
}
