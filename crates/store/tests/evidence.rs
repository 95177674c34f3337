//! Evidence against the shared vectors, and bundles exported from a real store against
//! tampering. Here rather than in `vireo-evidence` because most cases need the store that
//! seals (the evidence crate has no database).

use std::path::PathBuf;

use serde_json::Value;

use vireo_core::analysis::{AnalysisTemplate, MeasurementPhase, RunPhase, Value as Measured};
use vireo_core::analysis::{Measurement, MetricView, RunView};
use vireo_core::rollout::{Action, Input, Millis};
use vireo_core::testdata::answer;
use vireo_evidence::bundle::{self, Files, Trust};
use vireo_evidence::dsse::{self, Envelope};
use vireo_evidence::keys::{hex, unhex, PublicKey, SigningKey};
use vireo_evidence::note::{Checkpoint, NoteError, Receipt};
use vireo_evidence::replay::{self, AnalysisRecord};
use vireo_evidence::*;
use vireo_store::Store;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../evidence/tests/vectors")
}

/// Every case of secure-systems-lab/dsse's vectors: the PAE bytes, and accept or reject.
#[test]
fn dsse_vectors_pass() {
    let text = std::fs::read_to_string(vectors_dir().join("dsse/vectors.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let key = |id: &str| {
        let k = &v["keys"][id];
        let seed: [u8; 32] = unhex(k["seed"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::from_seed(&seed).unwrap();
        assert_eq!(hex(key.public().raw()), k["public"].as_str().unwrap());
        *key.public()
    };
    let cases = v["vectors"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let env: Envelope = serde_json::from_value(case["envelope"].clone()).unwrap();
        let body = dsse::decode_b64(&env.payload).unwrap();
        let pae = dsse::pae(&env.payload_type, &body);
        // The vector's PAE is over the type the signer used; for the swapped case that is
        // not the envelope's claim, and the PAE must differ.
        if case["expect"] == "accept" {
            assert_eq!(hex(&pae), case["pae"].as_str().unwrap(), "{id}: PAE");
        }
        let trusted: Vec<PublicKey> = case["trustedKeys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| key(k.as_str().unwrap()))
            .collect();
        let types: Vec<&str> = case["supportedPayloadTypes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let threshold = case["threshold"].as_u64().unwrap() as usize;
        let got = dsse::verify(&env, &trusted, threshold, &types);
        match case["expect"].as_str().unwrap() {
            "accept" => assert_eq!(got, Ok(body), "{id}"),
            _ => assert!(got.is_err(), "{id}: accepted"),
        }
    }
}

#[test]
fn signed_checkpoints_and_receipts_round_trip_and_reject_other_keys_or_roots() {
    let log = SigningKey::generate().unwrap();
    let leaves: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3]).collect();
    let hashes: Vec<_> = leaves.iter().map(|l| crate::merkle::leaf_hash(l)).collect();
    let cp = Checkpoint {
        origin: "vireo/test".into(),
        size: 5,
        root: crate::merkle::root(&hashes),
    };
    let note = cp.sign(&log);
    assert!(note.starts_with("vireo/test\n5\n"));
    assert!(note.contains("\n\n\u{2014} vireo/test "));
    assert_eq!(
        Checkpoint::open(&note, "vireo/test", log.public()),
        Ok(cp.clone())
    );

    let other = SigningKey::generate().unwrap();
    assert!(matches!(
        Checkpoint::open(&note, "vireo/test", other.public()),
        Err(NoteError::Unsigned(_))
    ));
    let altered = note.replacen(&dsse::b64(&cp.root), &dsse::b64(&[7u8; 32]), 1);
    assert!(matches!(
        Checkpoint::open(&altered, "vireo/test", log.public()),
        Err(NoteError::BadSignature(_))
    ));
    assert!(Checkpoint::open(&note, "vireo/other", log.public()).is_err());

    let receipt = Receipt {
        index: 3,
        proof: crate::merkle::inclusion_proof(&hashes, 3).unwrap(),
        checkpoint: note.clone(),
    };
    let text = receipt.to_text();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nindex 3\n"));
    let parsed = Receipt::parse(&text).unwrap();
    assert_eq!(parsed, receipt);
    assert_eq!(
        parsed.verify(&leaves[3], "vireo/test", log.public()),
        Ok(cp)
    );
    assert!(parsed
        .verify(&leaves[2], "vireo/test", log.public())
        .is_err());
    let mut bad = parsed.clone();
    bad.proof[0][0] ^= 1;
    assert!(bad.verify(&leaves[3], "vireo/test", log.public()).is_err());
}

const TEMPLATE: &str = r#"
apiVersion: vireo.dev/v1alpha1
kind: AnalysisTemplate
metadata: { name: canary-slo }
spec:
  metrics:
    - name: success-rate
      interval: 10s
      count: 3
      successCondition: result >= 0.99
      provider: { proxy: { metric: success-rate, window: 1m } }
"#;

fn planned() -> Vec<PlannedMetric> {
    let t = AnalysisTemplate::parse(TEMPLATE).unwrap();
    vec![PlannedMetric {
        template: "canary-slo".into(),
        dry_run: false,
        metric: t.spec.metrics[0].clone(),
    }]
}

fn run_view(run: u64, values: &[f64]) -> RunView {
    let metric = &planned()[0].metric;
    let measurements: Vec<Measurement> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Measurement {
            at_ms: 1_000 + i as u64,
            phase: metric.assess(Ok(&Measured::Scalar(*v))).0,
            value: Some(Measured::Scalar(*v)),
            message: None,
        })
        .collect();
    let phases: Vec<MeasurementPhase> = measurements.iter().map(|m| m.phase).collect();
    let phase = metric.phase(&phases);
    RunView {
        run,
        step: 2,
        phase,
        started_ms: 1_000,
        finished_ms: Some(2_000),
        message: String::new(),
        metrics: vec![MetricView {
            name: "success-rate".into(),
            phase,
            dry_run: false,
            measurements,
        }],
    }
}

/// A store that has sealed a whole rollout: gate, checkpoints, one analysis verdict.
fn sealed_store(tag: &str) -> Store {
    let dir = std::env::temp_dir().join(format!("vireo-evidence-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let signer = Signer::open(&dir, None).unwrap();
    let mut store = Store::open(&dir)
        .unwrap()
        .with_signer(std::sync::Arc::new(signer));
    let spec = vireo_core::spec::Rollout::parse(vireo_core::testdata::ROLLOUT).unwrap();
    let mut now: Millis = 1_000;
    let mut pending: std::collections::VecDeque<Input> = store
        .create_rollout(&spec, now)
        .unwrap()
        .iter()
        .filter_map(answer)
        .collect();
    let mut promoted = false;
    for _ in 0..100 {
        let Some(input) = pending.pop_front().or_else(|| {
            // Settled in the one-hour pause: skip it (once), as `vireo rollout promote` would.
            (!std::mem::replace(&mut promoted, true)).then_some(Input::Action(Action::Promote))
        }) else {
            break;
        };
        now += 10;
        let fx = match &input {
            Input::AnalysisCompleted { run, .. } => {
                let view = run_view(*run, &[1.0, 0.995, 1.0]);
                let seal = vireo_store::AnalysisSeal {
                    planned: &planned(),
                    view: &view,
                };
                store.apply_sealed("checkout", now, input, None, Some(seal))
            }
            _ => store.apply("checkout", now, input),
        }
        .unwrap()
        .unwrap();
        pending.extend(fx.iter().filter_map(answer));
    }
    assert_eq!(
        store.rollout("checkout").unwrap().unwrap().state.phase,
        vireo_core::rollout::Phase::Completed
    );
    store
}

fn exported(store: &Store) -> (Files, Trust) {
    let (files, generation, origin, rollout) = store.evidence_files("checkout").unwrap();
    let mut out = Vec::new();
    bundle::write(files, &rollout, generation, &origin, &mut out).unwrap();
    let signer = store.signer().unwrap();
    let trust = Trust {
        signing: Some(*signer.signing.public()),
        log: Some(*signer.log.public()),
    };
    (bundle::read(out.as_slice()).unwrap(), trust)
}

/// Rewrites the manifest to the files as they are, so that only the deeper checks can object.
fn remanifest(files: &mut Files) {
    let m: bundle::Manifest = serde_json::from_slice(&files[bundle::MANIFEST]).unwrap();
    files.remove(bundle::MANIFEST);
    let mut out = Vec::new();
    bundle::write(files.clone(), &m.rollout, m.generation, &m.origin, &mut out).unwrap();
    *files = bundle::read(out.as_slice()).unwrap();
}

fn failure(report: &bundle::Report) -> String {
    let f = report.first_failure().expect("verification failed");
    format!("{}: {}", f.check, f.detail)
}

#[test]
fn an_exported_bundle_verifies_and_every_flipped_byte_fails_naming_the_file() {
    let store = sealed_store("tamper");
    let (files, trust) = exported(&store);
    let report = bundle::verify(&files, &trust);
    assert!(report.ok(), "{report:?}");
    // The bundle's own keys work too (when the verifier has none pinned).
    assert!(bundle::verify(&files, &Trust::default()).ok());
    for kind in [
        "manifest.json",
        "timeline.json",
        "checkpoint",
        "keys/signing.pub",
        "keys/log.pub",
        "envelopes/",
        "receipts/",
        "inputs/",
    ] {
        let path = files.keys().find(|p| p.starts_with(kind)).unwrap().clone();
        for at in [0, files[&path].len() / 2, files[&path].len() - 2] {
            let mut bad = files.clone();
            bad.get_mut(&path).unwrap()[at] ^= 0x01;
            let report = bundle::verify(&bad, &trust);
            assert!(!report.ok(), "{path} byte {at} flipped still verifies");
            assert!(
                failure(&report).contains(&path),
                "{path}: {}",
                failure(&report)
            );
        }
    }
}

#[test]
fn reordered_dropped_or_duplicated_checkpoints_break_the_chain() {
    let store = sealed_store("chain");
    let (files, trust) = exported(&store);
    let checkpoints: Vec<String> = files
        .keys()
        .filter(|p| p.starts_with("envelopes/") && !p.contains("analysis") && !p.contains("vsa"))
        .cloned()
        .collect();
    assert!(checkpoints.len() >= 5, "{checkpoints:?}");
    let receipt = |p: &str| {
        p.replace("envelopes/", "receipts/")
            .replace(".dsse.json", ".tlog-proof")
    };
    let (a, b) = (&checkpoints[1], &checkpoints[2]);

    let mut swapped = files.clone();
    for (x, y) in [(a.clone(), b.clone()), (receipt(a), receipt(b))] {
        let (vx, vy) = (swapped[&x].clone(), swapped[&y].clone());
        swapped.insert(x, vy);
        swapped.insert(y, vx);
    }
    remanifest(&mut swapped);
    let r = bundle::verify(&swapped, &trust);
    assert!(
        failure(&r).starts_with("checkpoint chain"),
        "{}",
        failure(&r)
    );

    let mut dropped = files.clone();
    dropped.remove(a);
    dropped.remove(&receipt(a));
    remanifest(&mut dropped);
    let r = bundle::verify(&dropped, &trust);
    assert!(
        failure(&r).starts_with("checkpoint chain"),
        "{}",
        failure(&r)
    );

    let mut duplicated = files.clone();
    let last = checkpoints.last().unwrap();
    let copy = last.replace("envelopes/", "envelopes/999-");
    duplicated.insert(copy.clone(), files[a].clone());
    duplicated.insert(receipt(&copy), files[&receipt(a)].clone());
    remanifest(&mut duplicated);
    let r = bundle::verify(&duplicated, &trust);
    assert!(
        failure(&r).starts_with("checkpoint chain"),
        "{}",
        failure(&r)
    );
}

#[test]
fn recorded_verdicts_replay_to_match_and_an_altered_input_is_named() {
    let store = sealed_store("replay");
    let decisions = store.decisions().unwrap();
    assert!(decisions.iter().any(|(id, _)| id == "checkout.g1.gate"));
    assert!(decisions
        .iter()
        .any(|(id, _)| id == "checkout.g1.analysis-1"));
    for (id, statement) in &decisions {
        let o = replay::replay_statement(statement).unwrap();
        assert!(o.matched(), "{id}: {o:?}");
    }
    let (_, analysis) = decisions
        .iter()
        .find(|(id, _)| id.contains("analysis"))
        .unwrap();
    let mut record: AnalysisRecord = serde_json::from_value(analysis["predicate"].clone()).unwrap();
    assert_eq!(record.phase, RunPhase::Successful);
    record.metrics[0].measurements[1].value = Some(Measured::Scalar(0.5));
    let o = replay::replay_analysis(&record);
    assert_eq!(o.result, "mismatch");
    assert!(
        o.differences[0].starts_with("metrics[0].measurements[1].phase: recorded Successful"),
        "{o:?}"
    );
}

#[test]
fn the_log_serves_consistency_between_checkpoints() {
    let store = sealed_store("consistency");
    let size = Checkpoint::parse(&store.log_checkpoint().unwrap())
        .unwrap()
        .size;
    assert!(size >= 8, "{size}");
    let (root1, root2, proof) = store.log_consistency(3, size).unwrap().unwrap();
    crate::merkle::verify_consistency(3, size, &proof, &root1, &root2).unwrap();
    assert!(store.log_consistency(0, 3).unwrap().is_none());
    assert!(store.log_consistency(5, size + 1).unwrap().is_none());
    let (entry, receipt) = store.log_entry(2).unwrap().unwrap();
    let signer = store.signer().unwrap();
    receipt
        .verify(&entry.entry, &signer.origin, signer.log.public())
        .unwrap();
}

#[test]
fn the_rollback_envelope_is_sealed_before_100_percent_and_checked_before_replay() {
    let store = sealed_store("rollback");
    let entry = store.rollback_envelope("checkout", 1).unwrap().unwrap();
    let key = *store.signer().unwrap().signing.public();
    let plan = rollback::open(&entry, &key, "checkout", 1).unwrap();
    assert_eq!(plan.migration, vireo_core::spec::DownMigration::None);
    // Sealed in the transaction that armed it, before the 100 % it guards.
    let history = store.history("checkout").unwrap();
    let armed = history
        .iter()
        .position(|h| h.input == Input::RollbackArmed)
        .unwrap();
    let hundred = history
        .iter()
        .position(|h| h.input == Input::WeightApplied { weight: 100 })
        .unwrap();
    assert!(armed < hundred);

    let other = SigningKey::generate().unwrap();
    let err = rollback::open(&entry, other.public(), "checkout", 1).unwrap_err();
    assert!(err.starts_with("signature:"), "{err}");
    assert!(rollback::open(&entry, &key, "checkout", 2)
        .unwrap_err()
        .contains("generation 2"));
    let mut env: Envelope = serde_json::from_slice(&entry).unwrap();
    let mut st: Value = serde_json::from_slice(&dsse::decode_b64(&env.payload).unwrap()).unwrap();
    st["predicate"]["downMigration"] = serde_json::json!({"command": "rm -rf /", "digest": "x"});
    env.payload = dsse::b64(&serde_json::to_vec(&st).unwrap());
    let altered = serde_json::to_vec(&env).unwrap();
    assert!(rollback::open(&altered, &key, "checkout", 1).is_err());
}

#[test]
fn the_gate_vsa_names_the_provenance_it_accepted_and_replays() {
    use provenance::{Attestation, BuildFacts, ProvenanceFacts};
    let dir = std::env::temp_dir().join(format!("vireo-evidence-vsa-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir)
        .unwrap()
        .with_signer(std::sync::Arc::new(Signer::open(&dir, None).unwrap()));
    let digest = "b".repeat(64);
    let text = vireo_core::testdata::ROLLOUT.replace(
        "canary: { version: v2,",
        &format!("canary: {{ version: v2, image: \"reg/checkout@sha256:{digest}\","),
    );
    let spec = vireo_core::spec::Rollout::parse(&text).unwrap();
    let builder = SigningKey::generate().unwrap();
    let st = provenance::statement_for(&BuildFacts {
        image_name: "reg/checkout",
        image_digest: &digest,
        git_commit: &"a".repeat(40),
        repository: "https://example.com/r",
        builder_id: "https://ci.example/b",
        lockfile: ("Cargo.lock", "version = 4\n"),
        started_ms: 1,
        finished_ms: 2,
    })
    .unwrap();
    let env = dsse::sign(dsse::IN_TOTO, &canonical(&st).unwrap(), &builder);
    let filed = store.put_attestation(&env, 5).unwrap().unwrap();
    let index = filed.log_index;
    assert_eq!((filed.subjects, filed.new), (vec![digest.clone()], true));
    // The same envelope again is found, not logged twice; another digest finds nothing.
    let again = store.put_attestation(&env, 6).unwrap().unwrap();
    assert_eq!((again.log_index, again.new), (index, false));
    assert!(store.attestations_for(&"c".repeat(64)).unwrap().is_empty());
    let facts = ProvenanceFacts {
        image: spec.spec.canary.image.clone(),
        trusted_keys: vec![builder.public().to_pem()],
        builders: vec!["https://ci.example/b".into()],
        attestations: store.attestations_for(&digest).unwrap(),
    };
    assert_eq!(
        facts.attestations,
        vec![Attestation {
            log_index: index,
            envelope: env.clone()
        }]
    );
    store.create_rollout(&spec, 10).unwrap();
    store
        .apply("checkout", 11, Input::InputsMaterialized)
        .unwrap()
        .unwrap();
    store
        .apply(
            "checkout",
            12,
            Input::GateEvaluated {
                passed: true,
                needs_approval: false,
                reason: "provenance verified".into(),
                provenance: Some(Box::new(facts)),
            },
        )
        .unwrap()
        .unwrap();
    let id = gate_decision_id("checkout", 1, 0);
    let vsa = store.decision(&id).unwrap().unwrap();
    let p = &vsa["predicate"];
    assert_eq!(p["verificationResult"], "PASSED");
    assert_eq!(
        p["inputAttestations"][0]["uri"],
        format!("log/entries/{index}")
    );
    assert!(replay::replay_statement(&vsa).unwrap().matched());
    // The same facts with the builder off the allow-list would have failed the gate.
    let mut altered = vsa.clone();
    altered["predicate"]["inputs"]["provenance"]["builders"] = serde_json::json!(["other"]);
    let o = replay::replay_statement(&altered).unwrap();
    assert!(!o.matched());
    assert!(
        o.differences
            .iter()
            .any(|d| d.contains("verificationResult")),
        "{:?}",
        o.differences
    );
}

/// Every Sigstore bundle fixture: folders ending in `_fail` must fail, all others verify; a
/// failure names a check. Without a trusted root nothing verifies.
#[test]
fn sigstore_bundles_verify_with_a_managed_key_and_every_broken_one_fails() {
    let dir = vectors_dir().join("sigstore");
    let mut seen = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let case = entry.unwrap().path();
        if !case.is_dir() {
            continue;
        }
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let read = |f: &str| std::fs::read(case.join(f)).unwrap();
        let report = sigstore_bundle::verify(
            &read("bundle.sigstore.json"),
            &read("key.pub"),
            Some(&read("trusted_root.json")),
            &read("a.txt"),
        );
        if name.ends_with("_fail") {
            seen.1 += 1;
            let f = report
                .first_failure()
                .unwrap_or_else(|| panic!("{name} verified"));
            // The check that must catch it, by what the fixture breaks.
            let want = [
                ("wrong-key", "signature"),
                ("artifact-mismatch", "signature"),
                ("bad-signature", "signature"),
                ("bad-dsse-sig", "signature"),
                ("unknown-type", "signature"),
                ("hash-mismatch", "log entry"),
                ("untrusted-log", "trusted log"),
                ("bad-inclusion-proof", "inclusion proof"),
                ("bad-root-hash", "inclusion proof"),
                ("checkpoint", "checkpoint"),
            ]
            .iter()
            .find(|(part, _)| name.contains(part))
            .map(|(_, check)| *check)
            .unwrap_or_else(|| panic!("{name}: no expectation"));
            assert_eq!(f.check, want, "{name}: {}", f.detail);
        } else {
            seen.0 += 1;
            assert!(report.ok(), "{name}: {}", failure(&report));
            let offline = sigstore_bundle::verify(
                &read("bundle.sigstore.json"),
                &read("key.pub"),
                None,
                &read("a.txt"),
            );
            assert!(failure(&offline).contains("--trusted-root"), "{name}");
            // Any other artifact fails.
            assert!(!sigstore_bundle::verify(
                &read("bundle.sigstore.json"),
                &read("key.pub"),
                Some(&read("trusted_root.json")),
                b"something else",
            )
            .ok());
        }
    }
    assert!(seen.0 >= 4 && seen.1 >= 20, "{seen:?}");
    // Garbage is a clear error, not a panic.
    let r = sigstore_bundle::verify(b"{", b"", None, b"");
    assert!(
        failure(&r).starts_with("bundle: not a Sigstore bundle"),
        "{}",
        failure(&r)
    );
}

#[test]
fn a_retried_rollout_seals_a_gate_decision_per_attempt() {
    let dir = std::env::temp_dir().join(format!("vireo-evidence-retry-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::open(&dir)
        .unwrap()
        .with_signer(std::sync::Arc::new(Signer::open(&dir, None).unwrap()));
    let spec = vireo_core::spec::Rollout::parse(vireo_core::testdata::ROLLOUT).unwrap();
    store.create_rollout(&spec, 1).unwrap();
    let gate = |passed| Input::GateEvaluated {
        passed,
        needs_approval: false,
        reason: "r".into(),
        provenance: None,
    };
    for (at, input) in [
        (2, Input::InputsMaterialized),
        (3, gate(false)),
        (4, Input::Action(Action::Retry)),
        (5, Input::InputsMaterialized),
        (6, gate(true)),
    ] {
        store.apply("checkout", at, input).unwrap().unwrap();
    }
    let first = store
        .decision(&gate_decision_id("checkout", 1, 0))
        .unwrap()
        .unwrap();
    let second = store
        .decision(&gate_decision_id("checkout", 1, 1))
        .unwrap()
        .unwrap();
    assert_eq!(first["predicate"]["verificationResult"], "FAILED");
    assert_eq!(second["predicate"]["verificationResult"], "PASSED");
}

/// Golden bundles for the console's in-browser verifier (`crates/server/console/lib/verify.js`):
/// an exported bundle and one per kind of tampering (manifest, envelope, signature, receipt,
/// checkpoint, chain, replay input, and more), each with what `vireo verify`'s checks say of
/// it. Node then verifies every one with the console's code and must reach the same verdict on
/// every check, naming the same file (`crates/server/console/test/golden.mjs`). Without Node
/// it says so and passes, except in CI.
#[test]
fn the_console_verifier_agrees_with_vireo_verify_on_golden_bundles() {
    let store = sealed_store("golden");
    let (files, pinned) = exported(&store);
    let dir = std::env::temp_dir().join(format!("vireo-golden-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pem = |k: &Option<PublicKey>| k.map(|k| k.to_pem());
    let mut cases = Vec::new();
    let mut add = |name: &str, files: &Files, trust: &Trust| {
        let mut out = Vec::new();
        bundle::write_files(files, &mut out).unwrap();
        let file = format!("{name}.tar.gz");
        std::fs::write(dir.join(&file), &out).unwrap();
        let report = bundle::verify(&bundle::read(out.as_slice()).unwrap(), trust);
        cases.push(serde_json::json!({
            "name": name, "file": file,
            "trust": {"signing": pem(&trust.signing), "log": pem(&trust.log)},
            "report": report,
        }));
    };
    let own = Trust::default();
    let first = |prefix: &str| {
        files
            .keys()
            .find(|p| p.starts_with(prefix))
            .unwrap()
            .clone()
    };
    let envelope = first("envelopes/");
    let receipt = envelope
        .replace("envelopes/", "receipts/")
        .replace(".dsse.json", ".tlog-proof");

    add("valid", &files, &own);
    add("valid-pinned", &files, &pinned);
    let other = Trust {
        signing: Some(*SigningKey::generate().unwrap().public()),
        ..pinned
    };
    add("signed-by-another-key", &files, &other);

    let mut bad = files.clone();
    bad.get_mut("timeline.json").unwrap()[1] ^= 0x01;
    add("manifest-file-altered", &bad, &own);

    let mut bad = files.clone();
    let m: Value = serde_json::from_slice(&files[bundle::MANIFEST]).unwrap();
    bad.insert(
        bundle::MANIFEST.into(),
        serde_json::to_vec_pretty(&m).unwrap(),
    );
    add("manifest-edited", &bad, &own);

    let mut bad = files.clone();
    bad.insert("notes.txt".into(), b"hello".to_vec());
    add("file-not-listed", &bad, &own);

    let edit_envelope = |f: &mut dyn FnMut(&mut Envelope)| {
        let mut bad = files.clone();
        let mut env: Envelope = serde_json::from_slice(&files[&envelope]).unwrap();
        f(&mut env);
        bad.insert(envelope.clone(), canonical(&env).unwrap());
        remanifest(&mut bad);
        bad
    };
    let bad = edit_envelope(&mut |env| {
        let mut payload = dsse::decode_b64(&env.payload).unwrap();
        let at = payload.len() / 2;
        payload[at] ^= 0x01;
        env.payload = dsse::b64(&payload);
    });
    add("envelope-payload-altered", &bad, &own);
    let bad = edit_envelope(&mut |env| {
        let mut sig = dsse::decode_b64(&env.signatures[0].sig).unwrap();
        sig[0] ^= 0x01;
        env.signatures[0].sig = dsse::b64(&sig);
    });
    add("signature-altered", &bad, &own);

    let mut bad = files.clone();
    let mut r = Receipt::parse(std::str::from_utf8(&files[&receipt]).unwrap()).unwrap();
    r.proof[0][0] ^= 0x01;
    bad.insert(receipt.clone(), r.to_text().into_bytes());
    remanifest(&mut bad);
    add("receipt-proof-altered", &bad, &own);

    let mut bad = files.clone();
    let note = String::from_utf8(files["checkpoint"].clone()).unwrap();
    let mut lines: Vec<String> = note.split('\n').map(String::from).collect();
    lines[1] = (lines[1].parse::<u64>().unwrap() + 1).to_string();
    bad.insert("checkpoint".into(), lines.join("\n").into_bytes());
    remanifest(&mut bad);
    add("checkpoint-altered", &bad, &own);

    let chain: Vec<String> = files
        .keys()
        .filter(|p| p.starts_with("envelopes/") && !p.contains("analysis") && !p.contains("vsa"))
        .cloned()
        .collect();
    let mut bad = files.clone();
    let swap = |p: &str| {
        p.replace("envelopes/", "receipts/")
            .replace(".dsse.json", ".tlog-proof")
    };
    for (x, y) in [
        (chain[1].clone(), chain[2].clone()),
        (swap(&chain[1]), swap(&chain[2])),
    ] {
        let (vx, vy) = (bad[&x].clone(), bad[&y].clone());
        bad.insert(x, vy);
        bad.insert(y, vx);
    }
    remanifest(&mut bad);
    add("checkpoints-reordered", &bad, &own);

    let mut bad = files.clone();
    let input = first("inputs/");
    let mut recorded: Value = serde_json::from_slice(&files[&input]).unwrap();
    recorded["tampered"] = Value::Bool(true);
    bad.insert(input, serde_json::to_vec(&recorded).unwrap());
    remanifest(&mut bad);
    add("replay-input-altered", &bad, &own);

    let mut bad = files.clone();
    bad.remove("keys/log.pub");
    remanifest(&mut bad);
    add("log-key-missing", &bad, &own);

    // Where a lenient reader would accept what `vireo verify` refuses (or the reverse): the
    // review of the console's verifier listed these.
    let mut bad = files.clone();
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend_from_slice(&files[bundle::MANIFEST]);
    bad.insert(bundle::MANIFEST.into(), bom);
    add("manifest-with-a-bom", &bad, &own);

    let mut bad = files.clone();
    bad.insert("constructor".into(), b"{}".to_vec());
    add("file-named-like-a-js-property", &bad, &own);

    let receipt_text = String::from_utf8(files[&receipt].clone()).unwrap();
    let (head, signed) = receipt_text.split_once("\n\n").unwrap();
    let mut bad = files.clone();
    let crlf = format!(
        "{}\r\n\n{signed}",
        head.replace('\n', "\r\n").replace("index ", "index +")
    );
    bad.insert(receipt.clone(), crlf.into_bytes());
    remanifest(&mut bad);
    add("receipt-with-crlf-and-a-plus", &bad, &own);

    let mut bad = files.clone();
    let r = Receipt::parse(&receipt_text).unwrap();
    // The same hash with its last base64 digit's unused bits set: atob reads the same bytes,
    // the base64 crate refuses the text.
    let hash = dsse::b64(&r.proof[0]);
    let last = hash.chars().nth(hash.len() - 2).unwrap();
    let stray = "AEIMQUYcgkosw048".find(last).map(|_| {
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let i = alphabet.find(last).unwrap();
        alphabet.chars().nth(i + 1).unwrap()
    });
    if let Some(stray) = stray {
        let bent = format!("{}{stray}=", &hash[..hash.len() - 2]);
        let text = receipt_text.replacen(&hash, &bent, 1);
        bad.insert(receipt.clone(), text.into_bytes());
        remanifest(&mut bad);
        add("receipt-hash-with-stray-bits", &bad, &own);
    }

    let mut bad = files.clone();
    let input = first("inputs/");
    let text = String::from_utf8(files[&input].clone()).unwrap();
    // The first integer value (a digit run after `:`, `[` or `,` and before `,`, `}`, `]` or
    // a newline, spaces allowed) written as a float.
    let bytes = text.as_bytes();
    let (at, end) = (0..bytes.len())
        .filter(|&i| bytes[i].is_ascii_digit() && (i == 0 || !bytes[i - 1].is_ascii_digit()))
        .filter_map(|i| {
            let end = i + text[i..].find(|c: char| !c.is_ascii_digit())?;
            let before = text[..i].trim_end_matches(' ').chars().last()?;
            let after = text[end..].trim_start_matches(' ').chars().next()?;
            (":[,".contains(before) && ",}]\n".contains(after)).then_some((i, end))
        })
        .next()
        .expect("an input with an integer");
    let changed = format!("{}.0{}", &text[..end], &text[end..]);
    assert!(at < end);
    bad.insert(input.clone(), changed.into_bytes());
    remanifest(&mut bad);
    add("replay-input-integer-as-float", &bad, &own);

    let mut bad = files.clone();
    let pem = String::from_utf8(files["keys/signing.pub"].clone()).unwrap();
    bad.insert("keys/signing.pub".into(), pem.replace('=', "").into_bytes());
    remanifest(&mut bad);
    add("signing-key-pem-unpadded", &bad, &own);

    // Every case but the valid ones fails, and for a reason of its own kind.
    let verdicts: Vec<(String, bool)> = cases
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["report"]["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|x| x["ok"] == true),
            )
        })
        .collect();
    for (name, ok) in &verdicts {
        assert_eq!(*ok, name.starts_with("valid"), "{name}");
    }
    std::fs::write(
        dir.join("cases.json"),
        serde_json::to_vec_pretty(&cases).unwrap(),
    )
    .unwrap();

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../server/console/test/golden.mjs");
    let out = match std::process::Command::new("node")
        .arg(&script)
        .arg(&dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "node is needed for the console's verifier (scripts/ensure-deps.sh test): {e}"
            );
            eprintln!("skipped the console's side: no node ({e})");
            return;
        }
    };
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("{} bundles agree", cases.len())),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
