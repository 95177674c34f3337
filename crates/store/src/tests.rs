use std::time::{Duration, Instant};

use super::*;
use vireo_core::rollout::{replay, Action};

use vireo_core::testdata::{answer, ROLLOUT};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vireo-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Answers effects the way a driver would until nothing is left, committing every input.
fn drive(store: &mut Store, now: &mut Millis, effects: Vec<Effect>) {
    let mut pending: std::collections::VecDeque<Input> =
        effects.iter().filter_map(answer).collect();
    for _ in 0..100 {
        let Some(input) = pending.pop_front() else {
            return;
        };
        *now += 10;
        let fx = store.apply("checkout", *now, input).unwrap().unwrap();
        pending.extend(fx.iter().filter_map(answer));
    }
    panic!("did not settle");
}

#[test]
fn transitions_survive_reopening_and_replay_to_the_stored_state() {
    let dir = temp_dir("reopen");
    let spec = Rollout::parse(ROLLOUT).unwrap();
    let mut now = 1_000;
    {
        let mut store = Store::open(&dir).unwrap();
        let fx = store.create_rollout(&spec, now).unwrap();
        drive(&mut store, &mut now, fx); // into the 1 h pause
        assert_eq!(
            store
                .rollout("checkout")
                .unwrap()
                .unwrap()
                .state
                .canary_weight,
            5
        );
    }
    // A new process: open again and carry on from the stored state.
    let mut store = Store::open(&dir).unwrap();
    let stored = store.rollout("checkout").unwrap().unwrap();
    assert_eq!(stored.state.phase, Phase::Progressing);
    now += 3_600_000;
    let fx = store.apply("checkout", now, Input::Tick).unwrap().unwrap();
    drive(&mut store, &mut now, fx);
    let done = store.rollout("checkout").unwrap().unwrap();
    assert_eq!(done.state.phase, Phase::Completed);
    let inputs = store.inputs("checkout").unwrap();
    assert_eq!(inputs.len() as u64, done.seq);
    assert_eq!(replay(&Recipe::of(&spec), inputs).unwrap(), done.state);
    let phases: Vec<String> = store
        .timeline("checkout")
        .unwrap()
        .into_iter()
        .map(|c| c.to)
        .collect();
    assert_eq!(
        phases,
        [
            "InputsMaterialized",
            "GateEval",
            "Progressing",
            "PostDeployVerify",
            "Sealed",
            "Completed"
        ]
    );
    assert!(store.integrity_ok().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rejected_actions_write_nothing_and_live_rollouts_are_not_replaced() {
    let dir = temp_dir("reject");
    let spec = Rollout::parse(ROLLOUT).unwrap();
    let mut store = Store::open(&dir).unwrap();
    let mut now = 1;
    let fx = store.create_rollout(&spec, now).unwrap();
    drive(&mut store, &mut now, fx);
    let before = store.rollout("checkout").unwrap().unwrap();
    let rejected = store
        .apply("checkout", now, Input::Action(Action::Approve))
        .unwrap();
    assert!(rejected.is_err());
    assert_eq!(store.rollout("checkout").unwrap().unwrap(), before);
    assert_eq!(store.inputs("checkout").unwrap().len() as u64, before.seq);
    assert!(matches!(
        store.create_rollout(&spec, now),
        Err(StoreError::Busy {
            phase: Phase::Progressing,
            ..
        })
    ));
    assert!(matches!(
        store.apply("nope", now, Input::Tick),
        Err(StoreError::NotFound(_))
    ));
    // While its abort is still draining it cannot be replaced: the canary has to be stopped.
    store
        .apply("checkout", now, Input::Action(Action::Abort))
        .unwrap()
        .unwrap();
    assert!(matches!(
        store.create_rollout(&spec, now),
        Err(StoreError::Busy {
            phase: Phase::Aborted,
            ..
        })
    ));
    drive(&mut store, &mut now, vec![Effect::SetCanaryWeight(0)]);
    assert_eq!(
        store.rollout("checkout").unwrap().unwrap().state.phase,
        Phase::Aborted
    );
    // Once it has ended it can be applied again: a new generation starting clean, the earlier
    // one's history kept.
    store.create_rollout(&spec, now).unwrap();
    let again = store.rollout("checkout").unwrap().unwrap();
    assert_eq!((again.generation, again.seq), (2, 0));
    assert!(store.timeline("checkout").unwrap().is_empty());
    assert!(store.inputs("checkout").unwrap().is_empty());
    let kept: i64 = store
        .conn
        .query_row(
            "SELECT COUNT(*) FROM inputs WHERE rollout = 'checkout' AND generation = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(kept > 0, "the first generation's history is kept");
    // ... and readable by generation, with the spec and final state it ended in.
    let gens = store.generations("checkout").unwrap();
    assert_eq!(
        gens.iter().map(|g| g.generation).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(gens[1].state.phase, Phase::Aborted);
    assert!(gens[1].seq > before.seq, "it ended after the abort");
    assert_eq!(
        store.history_of("checkout", Some(1)).unwrap().len() as u64,
        gens[1].seq
    );
    assert!(store.history_of("checkout", None).unwrap().is_empty());
    assert!(store.generations("nope").unwrap().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn templates_round_trip() {
    let dir = temp_dir("templates");
    let mut store = Store::open(&dir).unwrap();
    let t = AnalysisTemplate::parse(
        "apiVersion: argoproj.io/v1alpha1\nkind: AnalysisTemplate\nmetadata: { name: t }\nspec:\n  metrics:\n    - name: m\n      successCondition: result > 0\n      provider: { prometheus: { address: http://127.0.0.1:9090, query: up } }\n",
    )
    .unwrap();
    store.put_template(&t, 1).unwrap();
    assert_eq!(store.template("t").unwrap(), Some(t));
    assert_eq!(store.template("u").unwrap(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

const WRITER_ENV: &str = "VIREO_STORE_WRITER_DIR";

/// The child half of the kill -9 test: commit pause/resume pairs as fast as possible until
/// killed (bounded, in case nobody kills it).
fn writer(dir: &Path) {
    let mut store = Store::open(dir).unwrap();
    let mut now = 10_000_000;
    for i in 0..200_000u64 {
        now += 1;
        let action = if i % 2 == 0 {
            Action::Pause
        } else {
            Action::Resume
        };
        store
            .apply("checkout", now, Input::Action(action))
            .unwrap()
            .unwrap();
    }
}

#[test]
fn a_writer_killed_mid_stream_leaves_a_consistent_replayable_store() {
    if let Some(dir) = std::env::var_os(WRITER_ENV) {
        return writer(Path::new(&dir));
    }
    let dir = temp_dir("kill9");
    let spec = Rollout::parse(ROLLOUT).unwrap();
    let setup = {
        let mut store = Store::open(&dir).unwrap();
        let mut now = 1;
        let fx = store.create_rollout(&spec, now).unwrap();
        drive(&mut store, &mut now, fx); // progressing, in the 1 h pause
        store.rollout("checkout").unwrap().unwrap().seq
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tests::a_writer_killed_mid_stream_leaves_a_consistent_replayable_store",
            "--test-threads=1",
        ])
        .env(WRITER_ENV, &dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let it commit a good number of transitions, then kill it mid-stream.
    let watcher = Store::open(&dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while watcher.rollout("checkout").unwrap().unwrap().seq < setup + 200 {
        assert!(Instant::now() < deadline, "writer made no progress");
        assert!(child.try_wait().unwrap().is_none(), "writer exited early");
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    drop(watcher);

    let store = Store::open(&dir).unwrap();
    assert!(store.integrity_ok().unwrap());
    let stored = store.rollout("checkout").unwrap().unwrap();
    let inputs = store.inputs("checkout").unwrap();
    assert!(stored.seq >= setup + 200);
    assert_eq!(
        inputs.len() as u64,
        stored.seq,
        "an input without its state, or the reverse"
    );
    assert_eq!(replay(&Recipe::of(&spec), inputs).unwrap(), stored.state);
    let timeline = store.timeline("checkout").unwrap();
    assert!(timeline.iter().all(|c| c.seq <= stored.seq));
    // Every pause/resume input left exactly one checkpoint.
    let actions = timeline
        .iter()
        .filter(|c| c.reason == "paused by user" || c.reason == "resumed")
        .count();
    assert_eq!(actions as u64, stored.seq - setup);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_version_1_database_is_migrated_in_place() {
    let dir = temp_dir("migrate");
    {
        // The schema as version 1 had it: no actor column, no schedules.
        let v1 = super::SCHEMA
            .replace(
                "    actor      TEXT,              -- who sent it, for actions (the API caller)\n",
                "",
            )
            .replace(
                "-- Schedules by rollout name (schedule.rs): consulted at the rollout's gate.
CREATE TABLE schedules (
    rollout    TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
",
                "",
            );
        assert!(!v1.contains("actor") && !v1.contains("schedules"));
        std::fs::create_dir_all(&dir).unwrap();
        let conn = rusqlite::Connection::open(dir.join("vireo.db")).unwrap();
        conn.execute_batch(&format!("BEGIN; {v1} PRAGMA user_version = 1; COMMIT;"))
            .unwrap();
    }
    let mut store = Store::open(&dir).unwrap();
    let spec = Rollout::parse(vireo_core::testdata::ROLLOUT).unwrap();
    let fx = store.create_rollout(&spec, 1).unwrap();
    let mut now = 1;
    drive(&mut store, &mut now, fx);
    assert!(store.history("checkout").unwrap().len() > 1);
    assert_eq!(store.schedule("checkout").unwrap(), None);
    assert!(store.integrity_ok().unwrap());
}

#[test]
fn only_database_failures_are_retried() {
    use rusqlite::ffi;
    let sql = |code| StoreError::Sql(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None));
    assert!(sql(ffi::SQLITE_BUSY).is_transient());
    assert!(sql(ffi::SQLITE_FULL).is_transient());
    assert!(sql(ffi::SQLITE_IOERR).is_transient());
    // A constraint broken is about the data: it would fail again.
    assert!(!sql(ffi::SQLITE_CONSTRAINT).is_transient());
    assert!(!StoreError::NotFound("x".into()).is_transient());
}

#[test]
fn a_reader_sees_what_is_committed_and_cannot_write() {
    let dir = temp_dir("reader");
    let spec = Rollout::parse(ROLLOUT).unwrap();
    let mut store = Store::open(&dir).unwrap();
    let mut now = 1;
    let fx = store.create_rollout(&spec, now).unwrap();
    drive(&mut store, &mut now, fx);
    let reader = Store::open_reader(store.path(), None).unwrap();
    assert_eq!(reader.instance(), store.instance());
    let seen = reader.snapshot(|r| r.rollout("checkout")).unwrap().unwrap();
    assert_eq!(seen.seq, store.rollout("checkout").unwrap().unwrap().seq);
    // A commit on the writer is visible to the next read.
    store
        .apply("checkout", now + 1, Input::Action(Action::Pause))
        .unwrap()
        .unwrap();
    assert_eq!(
        reader.rollout("checkout").unwrap().unwrap().seq,
        seen.seq + 1
    );
    // Read-only: a write is refused, and nothing changes.
    let mut reader = reader;
    let refused = reader.apply("checkout", now + 2, Input::Action(Action::Resume));
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        store.rollout("checkout").unwrap().unwrap().seq,
        seen.seq + 1
    );
    // A database this build does not know is not read.
    let other = temp_dir("reader-none");
    std::fs::create_dir_all(&other).unwrap();
    rusqlite::Connection::open(other.join("vireo.db"))
        .unwrap()
        .execute_batch("PRAGMA user_version = 99; CREATE TABLE t (x);")
        .unwrap();
    assert!(matches!(
        Store::open_reader(&other.join("vireo.db"), None),
        Err(StoreError::Schema(99))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}
