//! The control plane end to end: `vireo serve`, real `vireo-proxy` processes and real backends
//! on loopback; `vireo demo` as a user runs it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn weight_applied_entries(timeline: &[Value]) -> Vec<(u64, u64)> {
    timeline
        .iter()
        .filter_map(|e| {
            let w = e["input"]["WeightApplied"]["weight"].as_u64()?;
            Some((w, e["at_ms"].as_u64().unwrap()))
        })
        .collect()
}

fn share_of_v2(split: &std::collections::BTreeMap<String, usize>) -> f64 {
    let total: usize = split.values().sum();
    *split.get("v2").unwrap_or(&0) as f64 / total as f64
}

#[test]
fn weights_move_on_both_proxies_and_count_as_applied_only_when_both_report() {
    let dir = tempdir("two-proxies");
    let server = Server::start(free_addr(), &dir.join("data"));
    let control = server.url("");
    let a = Proxy::start(&dir, "proxy-a", &control);
    let mut b = Proxy::start(&dir, "proxy-b", &control);
    let (v1, v2) = (backend("v1"), backend("v2"));

    let steps = "        - setWeight: 30\n        - pause: {}\n        - setWeight: 60\n        - pause: {}\n";
    let r = server.post(
        "/api/v1/rollouts",
        &rollout("checkout", v1.addr, v2.addr, steps),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    server.wait_status("checkout", "weight 30 applied", |s| {
        s["phase"] == "Paused" && s["canaryWeight"] == 30
    });
    // Both proxies split by the rollout's salt: about 30 % of users on v2, the same users.
    let (sa, sb) = (a.split(300), b.split(300));
    assert_eq!(sa, sb, "both proxies put each user on the same version");
    let share = share_of_v2(&sa);
    assert!((0.2..0.4).contains(&share), "v2 share {share}: {sa:?}");

    // Proxy b stops answering (SIGSTOP keeps it "connected" for a few seconds): weight 60 is
    // published but must not count as applied until b reports it.
    b.signal(libc::SIGSTOP);
    let r = server.post("/api/v1/rollouts/checkout/promote", "");
    assert_eq!(r.status, 200, "{}", r.body);
    wait_for("proxy a on the new table", Duration::from_secs(10), || {
        (share_of_v2(&a.split(200)) > 0.5).then_some(())
    });
    std::thread::sleep(Duration::from_millis(1500));
    let s = server.status("checkout");
    assert_eq!(
        s["canaryWeight"], 30,
        "applied before proxy b reported: {s}"
    );
    let resumed_at = vireo_core::clock::now_ms();
    b.signal(libc::SIGCONT);
    server.wait_status("checkout", "weight 60 applied", |s| s["canaryWeight"] == 60);
    let applied = weight_applied_entries(&server.timeline("checkout"));
    assert_eq!(
        applied.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
        vec![30, 60]
    );
    assert!(
        applied[1].1 >= resumed_at,
        "60 % recorded as applied at {} before proxy b came back at {resumed_at}",
        applied[1].1
    );
    assert!(share_of_v2(&b.split(200)) > 0.5);

    // Proxy b dies; the rollout goes on without it (it stops counting after 5 s of silence)
    // and completes; b, restarted, catches up with the newest table.
    b.kill9();
    let r = server.post("/api/v1/rollouts/checkout/promote", "");
    assert_eq!(r.status, 200, "{}", r.body);
    server.wait_status("checkout", "completed", |s| s["phase"] == "Completed");
    let newest = server.get("/api/v1/proxies").json()["tableVersion"]
        .as_u64()
        .unwrap();
    b.restart();
    wait_for(
        "restarted proxy b on the newest table",
        Duration::from_secs(10),
        || (b.table_version() >= newest).then_some(()),
    );
    assert_eq!(
        b.split(100).get("v2"),
        Some(&100),
        "promoted: every user on v2"
    );
    assert_eq!(a.split(100).get("v2"), Some(&100));

    // The routes it published, rebuilt from its spec and effects: 30, 60, then promoted — and
    // the last is exactly the route the proxy applied from the published table.
    let history = server.get("/api/v1/rollouts/checkout/routes").json();
    let items = history["items"].as_array().unwrap();
    let weights: Vec<Value> = items.iter().map(|i| i["canaryWeight"].clone()).collect();
    assert_eq!(
        weights[..2],
        [Value::from(30), Value::from(60)],
        "{history}"
    );
    assert!(
        weights.last().unwrap().is_null(),
        "promoted last: {history}"
    );
    let applied = http("GET", &format!("http://{}/config", a.admin), &[], "")
        .unwrap()
        .json();
    let served = applied["config"]["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "checkout")
        .unwrap()
        .clone();
    assert_eq!(items.last().unwrap()["route"], served, "{history}");
    assert_eq!(
        server
            .get("/api/v1/rollouts/checkout/routes?generation=9")
            .status,
        404
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn proxies_keep_routing_without_the_control_plane_and_a_killed_one_resumes() {
    let dir = tempdir("kill9");
    let addr = free_addr();
    let data = dir.join("data");
    let mut server = Server::start(addr, &data);
    let control = server.url("");
    let proxy = Proxy::start(&dir, "proxy-0", &control);
    let (v1, v2) = (backend("v1"), backend("v2"));

    let steps = "        - setWeight: 20\n        - pause: { duration: 4s }\n        - setWeight: 50\n        - pause: {}\n";
    let r = server.post(
        "/api/v1/rollouts",
        &rollout("cart", v1.addr, v2.addr, steps),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    server.wait_status("cart", "weight 20 applied, timed pause running", |s| {
        s["canaryWeight"] == 20 && s["currentStepIndex"] == 1
    });
    let before = server.timeline("cart");

    // kill -9 in the middle of the timed pause.
    server.kill9();
    let killed_at = Instant::now();
    // Static stability: the proxy keeps serving its last table.
    let split = proxy.split(200);
    assert_eq!(split.values().sum::<usize>(), 200);
    assert!(!split.keys().any(|k| k.starts_with("HTTP")), "{split:?}");
    let share = share_of_v2(&split);
    assert!((0.1..0.3).contains(&share), "v2 share {share}");

    // Restart on the same data dir: the pause's deadline is absolute, the step moves on to
    // 50 % once, and the history written before the kill is intact.
    let server = Server::start(addr, &data);
    let s = server.wait_status("cart", "weight 50 applied after restart", |s| {
        s["canaryWeight"] == 50 && s["phase"] == "Paused"
    });
    assert!(killed_at.elapsed() < Duration::from_secs(30), "{s}");
    let after = server.timeline("cart");
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "history before the kill changed"
    );
    let seqs: Vec<u64> = after.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=after.len() as u64).collect::<Vec<_>>());
    let applied: Vec<u64> = weight_applied_entries(&after).iter().map(|e| e.0).collect();
    assert_eq!(applied, vec![20, 50], "a weight step applied twice?");
    let share = share_of_v2(&proxy.split(200));
    assert!((0.4..0.6).contains(&share), "v2 share {share}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_input_gets_a_clear_error_and_nothing_is_stored() {
    let dir = tempdir("bad-input");
    let server = Server::start(free_addr(), &dir.join("data"));
    let (v1, v2) = (backend("v1"), backend("v2"));
    let good = rollout(
        "shop",
        v1.addr,
        v2.addr,
        "        - setWeight: 10\n        - pause: {}\n",
    );

    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed YAML", "spec: [".into(), ""),
        (
            "unknown field",
            good.replace("route: shop", "route: shop\n  colour: blue"),
            "spec: unknown field `colour`",
        ),
        (
            "weight out of range",
            good.replace("setWeight: 10", "setWeight: 150"),
            "spec.strategy.canary.steps[0].setWeight: must be 0..=100",
        ),
        (
            "missing template",
            good.replace(
                "        - pause: {}\n",
                "        - analysis: { templates: [ { templateName: nope } ] }\n",
            ),
            "spec.strategy.canary.steps[1].analysis.templates[0].templateName: no AnalysisTemplate named \"nope\"",
        ),
    ];
    for (what, body, expect) in &cases {
        let r = server.post("/api/v1/rollouts", body);
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        let error = r.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(expect), "{what}: {error:?} lacks {expect:?}");
    }
    let r = server.post(
        "/api/v1/analysistemplates",
        &TEMPLATE.replace("    - name: success-rate\n", "    - name: a\n      successCondition: result >\n      provider: { proxy: { metric: success-rate } }\n    - name: a\n"),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    let error = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("spec.metrics[1].name: duplicate metric name \"a\""),
        "{error}"
    );
    assert!(
        error.contains("spec.metrics[0].successCondition"),
        "{error}"
    );
    assert_eq!(
        server.get("/api/v1/rollouts").json()["items"],
        Value::Array(vec![]),
        "a refused spec left something behind"
    );

    // A running rollout cannot be replaced, actions name the phase, unknown names are 404.
    // (No proxy is connected, so the first weight waits, Progressing, to be applied.)
    assert_eq!(server.post("/api/v1/rollouts", &good).status, 201);
    server.wait_status("shop", "progressing", |s| s["phase"] == "Progressing");
    let r = server.post("/api/v1/rollouts", &good);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("Progressing"), "{}", r.body);
    let r = server.post("/api/v1/rollouts/shop/resume", "");
    assert_eq!(r.status, 409);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("phase Progressing"),
        "{}",
        r.body
    );
    assert_eq!(server.post("/api/v1/rollouts/nope/abort", "").status, 404);
    // The console: its page and every file it loads, served by the binary itself (offline),
    // with a policy admitting only this origin's scripts.
    let console = server.get("/");
    assert_eq!(console.status, 200);
    assert!(console.body.contains("ui/app.js"), "{}", console.body);
    let csp = console.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
    for (path, _) in vireo_server::console::ASSETS.iter().skip(1) {
        let r = http("GET", &server.url(&format!("/ui/{path}")), &[], "").unwrap();
        assert_eq!(r.status, 200, "ui/{path}");
        let etag = r.headers["etag"].to_str().unwrap().to_string();
        let again = http(
            "GET",
            &server.url(&format!("/ui/{path}")),
            &[("if-none-match", &etag)],
            "",
        )
        .unwrap();
        assert_eq!(again.status, 304, "ui/{path} revalidates by its ETag");
    }
    assert_eq!(
        http("GET", &server.url("/ui/nope.js"), &[], "")
            .unwrap()
            .status,
        404
    );
    assert_eq!(server.post("/api/v1/rollouts/shop/explode", "").status, 404);

    // The CLI: one line naming the field, exit 1.
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, good.replace("setWeight: 10", "setWeight: -5")).unwrap();
    let out = std::process::Command::new(vireo_bin())
        .args(["rollout", "apply", "-f"])
        .arg(&bad)
        .args(["--server", &server.url("")])
        .env("VIREO_TOKEN_FILE", server.token_file())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("steps[0].setWeight: must be 0..=100"),
        "{stderr}"
    );
    // And a good action through the CLI.
    let out = std::process::Command::new(vireo_bin())
        .args(["rollout", "abort", "shop", "--server", &server.url("")])
        .env("VIREO_TOKEN_FILE", server.token_file())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Aborted"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `vireo demo --speed 60 --once` and returns the exit code and the final JSON line.
fn demo(extra: &[&str], scenario: &str, dir: &std::path::Path) -> (Option<i32>, Value, String) {
    let out = std::process::Command::new(vireo_bin())
        .args(["demo", "--speed", "60", "--once", "--scenario", scenario])
        .args(extra)
        .arg("--data-dir")
        .arg(dir.join(format!("{scenario}{}", extra.join(""))))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let last = stdout.lines().last().unwrap_or_default();
    let summary = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {stdout}\n{stderr}"));
    (out.status.code(), summary, stderr)
}

/// Every demo run in one test: they use the demo's default ports, so they must not overlap.
#[test]
fn demo_completes_when_healthy_and_aborts_to_zero_when_faulty() {
    let dir = tempdir("demo");
    let (code, s, log) = demo(&[], "healthy", &dir);
    assert_eq!(code, Some(0), "{s}\n{log}");
    assert_eq!(s["phase"], "Completed", "{s}");
    assert_eq!(s["steps"], serde_json::json!([5, 25, 50, 100]), "{s}");
    assert!(s["served"]["v2"].as_u64().unwrap() > 0, "{s}");
    // The console URL that logs in: the admin token in the fragment.
    let data = std::path::PathBuf::from(s["data_dir"].as_str().unwrap());
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    assert!(
        log.contains(&format!("/#token={}", admin.trim())),
        "the demo prints a console URL that logs in:\n{log}"
    );

    let (code, s, log) = demo(&[], "faulty", &dir);
    assert_eq!(code, Some(2), "{s}\n{log}");
    assert_eq!(s["phase"], "Aborted", "{s}");
    assert_eq!(
        s["steps"].as_array().unwrap().last(),
        Some(&serde_json::json!(0))
    );
    assert_eq!(s["canary_requests_after_abort"], 0, "{s}");
    assert!(
        s["abort_to_zero_ms"].is_u64() && s["drain_ms"].is_u64(),
        "{s}"
    );

    // A regression at 100 %: post-deploy verification fails, the rollback envelope replays.
    let (code, s, log) = demo(&[], "regress", &dir);
    assert_eq!(code, Some(2), "{s}\n{log}");
    assert_eq!(s["phase"], "RolledBack", "{s}");
    assert_eq!(s["steps"], serde_json::json!([5, 25, 50, 100, 0]), "{s}");
    assert_eq!(s["rollback_verified"], true, "{s}");
    assert_eq!(s["rollback_migration_ok"], true, "{s}");
    assert!(
        s["rollback_rto_ms"].is_u64() && s["rollback_round_trip_ms"].is_u64(),
        "{s}"
    );
    assert_eq!(s["verified"], true, "{s}");
    assert_eq!(s["decisions_matched"], s["decisions_replayed"], "{s}");
    // An auditor's check of the same bundle with the CLI, keys pinned from the data dir; a
    // changed bundle fails.
    let bundle = std::path::PathBuf::from(s["bundle"].as_str().unwrap());
    let keys = std::path::PathBuf::from(s["data_dir"].as_str().unwrap()).join("keys");
    let verify = |file: &std::path::Path| verify_pinned(file, &keys);
    let (code, stdout, stderr) = verify(&bundle);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("VERIFIED"), "{stdout}");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let altered = bundle.with_extension("altered.tar.gz");
    std::fs::write(&altered, &bytes).unwrap();
    let (code, stdout, stderr) = verify(&altered);
    assert_eq!(code, Some(1), "{stdout}{stderr}");

    // The same with a real Prometheus and the PromQL of deploy/prometheus/.
    let (code, s, log) = demo(&["--prometheus"], "healthy", &dir);
    assert_eq!(code, Some(0), "{s}\n{log}");
    assert_eq!(s["steps"], serde_json::json!([5, 25, 50, 100]), "{s}");
    assert!(log.contains("success-rate Successful"), "{log}");
    let (code, s, log) = demo(&["--prometheus"], "faulty", &dir);
    assert_eq!(code, Some(2), "{s}\n{log}");
    assert_eq!(s["canary_requests_after_abort"], 0, "{s}");
    assert!(log.contains("aborted: analysis Failed"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Analysis against a real Prometheus scraping a real proxy: it measures while Prometheus is
/// up; killed mid-analysis, the measurements become Errors and the run ends Error — never
/// Successful — and the rollout aborts.
#[test]
fn prometheus_killed_mid_analysis_is_an_error_never_a_success() {
    let dir = tempdir("prometheus-killed");
    let server = Server::start(free_addr(), &dir.join("data"));
    let proxy = Proxy::start(&dir, "proxy-0", &server.url(""));
    let (v1, v2) = (backend("v1"), backend("v2"));
    let mut prometheus = Prometheus::start(&dir.join("prometheus"), proxy.admin);
    let template = format!(
        "apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{ name: prom }}
spec:
  args: [ {{ name: route }} ]
  metrics:
    - name: success-rate
      interval: 500ms
      count: 60
      consecutiveErrorLimit: 2
      successCondition: result[0] >= 0.99
      provider:
        prometheus:
          address: {}
          query: route_backend:vireo_requests:success_ratio_rate1m{{route=\"{{{{args.route}}}}\",backend=\"canary\"}}
",
        prometheus.url
    );
    let r = server.post("/api/v1/analysistemplates", &template);
    assert_eq!(r.status, 201, "{}", r.body);
    let steps = "        - setWeight: 50\n        - pause: {}\n        - analysis: { templates: [ { templateName: prom } ] }\n";
    let stop = traffic(proxy.listen);
    let r = server.post(
        "/api/v1/rollouts",
        &rollout("orders", v1.addr, v2.addr, steps),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // Once Prometheus has the canary's ratio (scrapes and rules take a few seconds), go on to
    // the analysis.
    server.wait_status("orders", "50 % applied", |s| s["phase"] == "Paused");
    let query = format!(
        "{}/api/v1/query?query=route_backend:vireo_requests:success_ratio_rate1m",
        prometheus.url
    );
    wait_for(
        "the canary's ratio in Prometheus",
        Duration::from_secs(30),
        || {
            let r = http("GET", &query, &[], "").ok()?;
            r.body.contains("\"backend\":\"canary\"").then_some(())
        },
    );
    assert_eq!(
        server.post("/api/v1/rollouts/orders/promote", "").status,
        200
    );
    let successful = |s: &Value| {
        s["analysisRuns"][0]["metrics"][0]["measurements"]
            .as_array()
            .map_or(0, |m| {
                m.iter().filter(|m| m["phase"] == "Successful").count()
            })
    };
    server.wait_status(
        "orders",
        "two successful measurements from Prometheus",
        |s| successful(s) >= 2,
    );
    let h = server.get("/api/v1/rollouts/orders/health").json();
    assert_eq!(
        h["prometheus"][0]["address"],
        prometheus.url.as_str(),
        "{h}"
    );
    assert_eq!(h["prometheus"][0]["ready"], true, "{h}");
    prometheus.kill();
    // The banner says so too, once its ten-second-old answer is stale.
    let h = wait_for("Prometheus down in health", Duration::from_secs(20), || {
        let h = server.get("/api/v1/rollouts/orders/health").json();
        (h["prometheus"][0]["ready"] == false).then_some(h)
    });
    assert!(
        h["prometheus"][0]["error"]
            .as_str()
            .unwrap()
            .contains("is not reachable"),
        "{h}"
    );
    let s = server.wait_status("orders", "aborted after Prometheus went away", |s| {
        s["phase"] == "Aborted"
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let run = &s["analysisRuns"][0];
    assert_eq!(run["phase"], "Error", "{run}");
    let last = run["metrics"][0]["measurements"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["phase"], "Error");
    assert!(
        last["message"].as_str().unwrap().contains("unreachable"),
        "{last}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Approval names its approver on the timeline; a failed post-deploy verification (the new
/// version at 100 % judged bad) rolls back to the stable version.
#[test]
fn approval_is_recorded_and_a_failed_verification_rolls_back() {
    let dir = tempdir("verify");
    let server = Server::start(free_addr(), &dir.join("data"));
    let proxy = Proxy::start(&dir, "proxy-0", &server.url(""));
    let (v1, v2) = (backend("v1"), backend("v2"));
    let template = "apiVersion: vireo.dev/v1alpha1
kind: AnalysisTemplate
metadata: { name: impossible }
spec:
  metrics:
    - name: success-rate
      successCondition: result > 1.5
      provider: { proxy: { metric: success-rate, window: 10s } }
";
    assert_eq!(
        server.post("/api/v1/analysistemplates", template).status,
        201
    );
    let spec = rollout("billing", v1.addr, v2.addr, "        - setWeight: 50\n")
        .replace(
            "metadata: { name: billing }",
            "metadata: { name: billing, annotations: { vireo.dev/approval: four-eyes } }",
        )
        .replace(
            "      steps:\n",
            "      postDeployVerify: { templates: [ { templateName: impossible } ] }\n      steps:\n",
        );
    let r = server.post("/api/v1/rollouts", &spec);
    assert_eq!(r.status, 201, "{}", r.body);
    server.wait_status("billing", "awaiting approval", |s| {
        s["phase"] == "AwaitingApproval"
    });
    // Four eyes: the admin applied it, so the admin may not approve it...
    let (code, _, err) = server.vireo(&["rollout", "approve", "billing"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("forbidden") && err.contains("someone else must approve"),
        "{err}"
    );
    // ...an approver may, with a reason.
    let alice = dir.join("alice.token");
    std::fs::write(&alice, server.create_token("alice", "approver")).unwrap();
    let stop = traffic(proxy.listen);
    let out = std::process::Command::new(vireo_bin())
        .args(["rollout", "approve", "billing", "--server", &server.url("")])
        .args(["--reason", "CAB-1234 signed off"])
        .env("VIREO_TOKEN_FILE", &alice)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = server.wait_status("billing", "rolled back and drained", |s| {
        s["phase"] == "RolledBack" && s["drainMs"].is_u64()
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("post-deploy verification Failed"),
        "{s}"
    );
    let weights: Vec<u64> = s["appliedWeights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, vec![50, 100, 0]);
    assert_eq!(
        proxy.split(100).get("v1"),
        Some(&100),
        "back on the stable version"
    );
    let timeline = server.timeline("billing");
    let approval = timeline
        .iter()
        .find(|e| e["input"]["Action"] == "approve")
        .expect("the approval is on the timeline");
    assert_eq!(approval["by"], "token:alice");
    assert_eq!(approval["reason"], "CAB-1234 signed off");
    assert!(timeline.iter().any(|e| e["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["Checkpoint"]["to"] == "RolledBack")));
    let _ = std::fs::remove_dir_all(&dir);
}

fn rfc3339_in(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now() + Duration::from_millis(ms))
        .to_string()
}

/// Schedules hold a rollout at its gate until the window opens and the preconditions hold;
/// a window that closes first, or a cancelled schedule, ends it before any traffic moved.
#[test]
fn schedules_wait_for_their_window_and_preconditions() {
    let dir = tempdir("schedule");
    let server = Server::start(free_addr(), &dir.join("data"));
    let proxy = Proxy::start(&dir, "proxy-0", &server.url(""));
    let prometheus = Prometheus::start(&dir.join("prometheus"), proxy.admin);
    let (v1, v2) = (backend("v1"), backend("v2"));
    let steps = "        - setWeight: 10\n        - pause: {}\n";
    let schedule = |name: &str, at_ms: u64, window: &str, prometheus_url: &str| {
        let body = format!(
            "{{\"at\":\"{}\",\"window\":\"{window}\",\"preconditions\":[{{\"prometheusReachable\":\"{prometheus_url}\"}}]}}",
            rfc3339_in(at_ms)
        );
        let r = server.post(&format!("/api/v1/rollouts/{name}/schedule"), &body);
        assert_eq!(r.status, 201, "{}", r.body);
    };

    // Opens in 2 s with Prometheus up: waits, then starts. The clock is read before the
    // schedule's `at` is computed, so `at` is never earlier than `before + 2 s`.
    let before = vireo_core::clock::now_ms();
    schedule("later", 2_000, "1m", &prometheus.url);
    let r = server.post(
        "/api/v1/rollouts",
        &rollout("later", v1.addr, v2.addr, steps),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let s = server.status("later");
    assert_eq!(s["phase"], "GateEval", "{s}");
    assert!(
        s["schedule"]["state"]
            .as_str()
            .unwrap_or("")
            .contains("waiting"),
        "{s}"
    );
    let s = server.wait_status("later", "started after the window opened", |s| {
        s["phase"] == "Paused"
    });
    let applied = s["appliedWeights"][0]["appliedMs"].as_u64().unwrap();
    assert!(
        applied >= before + 2_000,
        "applied at {applied}, window opened at {before} + 2000"
    );
    // The gate's checks: the one that passed, with each precondition's result; the schedule
    // itself is used up.
    let checks = |name: &str| {
        let r = server.get(&format!("/api/v1/rollouts/{name}/schedule"));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let c = checks("later");
    assert_eq!(c["schedule"], serde_json::Value::Null, "{c}");
    let last = &c["checks"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["outcome"], "passed", "{c}");
    assert_eq!(
        last["results"],
        serde_json::json!([{"precondition": {"prometheusReachable": prometheus.url}, "passed": true}]),
        "{c}"
    );

    // A precondition that never holds (nothing listens there): the window closes, the gate
    // fails, no weight was ever published.
    let nowhere = format!("http://{}", free_addr());
    schedule("never", 0, "2s", &nowhere);
    let r = server.post(
        "/api/v1/rollouts",
        &rollout("never", v1.addr, v2.addr, steps),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let s = server.wait_status("never", "the window closed", |s| s["phase"] == "Aborted");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("schedule window closed"),
        "{s}"
    );
    assert_eq!(s["appliedWeights"], serde_json::json!([]));
    // Checked once (unmet, with the reason), then the window closed.
    let c = checks("never");
    let outcomes: Vec<&str> = c["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes.first(), Some(&"unmet"), "{c}");
    assert_eq!(outcomes.last(), Some(&"missed"), "{c}");
    let first = &c["checks"][0]["results"][0];
    assert_eq!(first["passed"], false, "{c}");
    assert!(
        first["reason"].as_str().unwrap().contains(&nowhere),
        "the reason names the unreachable Prometheus: {c}"
    );

    // Cancelled while waiting: the rollout does not start.
    schedule("cancelled", 3_600_000, "1h", &prometheus.url);
    let r = server.post(
        "/api/v1/rollouts",
        &rollout("cancelled", v1.addr, v2.addr, steps),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(
        "DELETE",
        &server.url("/api/v1/rollouts/cancelled/schedule"),
        &[("authorization", server.admin.as_str())],
        "",
    )
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    let s = server.wait_status("cancelled", "gate failed", |s| s["phase"] == "Aborted");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("schedule cancelled"),
        "{s}"
    );
    let c = checks("cancelled");
    assert_eq!(c["checks"][0]["outcome"], "cancelled", "{c}");
    assert_eq!(c["schedule"], serde_json::Value::Null, "{c}");
    let r = server.get("/api/v1/rollouts/unknown/schedule");
    assert_eq!(r.status, 404, "{}", r.body);

    // Bad schedules name the field; a started rollout cannot be scheduled.
    let r = server.post(
        "/api/v1/rollouts/x/schedule",
        "{\"at\":\"soon\",\"window\":\"1h\"}",
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().starts_with("at: "),
        "{}",
        r.body
    );
    let r = server.post(
        "/api/v1/rollouts/later/schedule",
        &format!("{{\"at\":\"{}\",\"window\":\"1h\"}}", rfc3339_in(0)),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The provenance gate with a real `vireo serve` and the real CLI: only provenance for the
/// canary's digest, signed by a trusted key, from an allowed builder, lets a rollout start.
#[test]
fn the_provenance_gate_admits_only_trusted_provenance_for_the_image() {
    let dir = tempdir("provenance");
    let lockfile = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock");
    let builder = "https://ci.example/builder";
    let digest = |c: char| c.to_string().repeat(64);
    let attest = |d: &str, key: &str, builder_id: &str| {
        let out = dir.join(format!("{d}-{}.dsse.json", &key[..3]));
        let (code, stdout, stderr) = vireo(&[
            "attest",
            "provenance",
            "--image-digest",
            &format!("sha256:{d}"),
            "--image-name",
            "reg.example/checkout",
            "--git-commit",
            &"0".repeat(40),
            "--builder-id",
            builder_id,
            "--lockfile",
            lockfile,
            "--key",
            dir.join(key).to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        out
    };
    // The trusted builder's key is made by the first attestation.
    let good = attest(&digest('b'), "builder.pem", builder);
    let stranger = attest(&digest('f'), "stranger.pem", builder);
    let rogue = attest(&digest('a'), "builder.pem", "https://rogue.example/builder");
    let other = attest(&digest('d'), "builder.pem", builder);
    let config = dir.join("control.yaml");
    std::fs::write(
        &config,
        format!(
            "provenance:\n  trustedKeys: [{}]\n  builders: [{builder}]\n",
            dir.join("builder.pub").display()
        ),
    )
    .unwrap();
    let server = Server::start_with(
        free_addr(),
        &dir.join("data"),
        &["--config", config.to_str().unwrap()],
    );
    for file in [&good, &stranger, &rogue, &other] {
        let (code, stdout, stderr) = server.vireo(&["attest", "upload", file.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(stdout.contains("log entry"), "{stdout}");
    }
    // Not provenance: refused at upload, naming why.
    let r = server.post(
        "/api/v1/attestations",
        r#"{"payload":"e30","payloadType":"text/plain","signatures":[{"sig":"AA"}]}"#,
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("payloadType"), "{}", r.body);

    let (v1, v2) = (backend("v1"), backend("v2"));
    let cases = [
        (
            "no-provenance",
            digest('c'),
            "no SLSA provenance attests sha256:cccc",
        ),
        // Provenance exists, for sha256:dddd…; the image is sha256:eeee….
        (
            "other-digest",
            digest('e'),
            "no SLSA provenance attests sha256:eeee",
        ),
        ("untrusted-key", digest('f'), "not signed by a trusted key"),
        ("rogue-builder", digest('a'), "is not in the allow-list"),
    ];
    for (name, d, reason) in &cases {
        let spec = rollout(name, v1.addr, v2.addr, "        - setWeight: 5\n").replace(
            &vireo_demo::image("v2"),
            &format!("reg.example/checkout@sha256:{d}"),
        );
        let r = server.post("/api/v1/rollouts", &spec);
        assert_eq!(r.status, 201, "{}", r.body);
        let s = server.wait_status(name, "the gate's verdict", |s| s["phase"] == "Aborted");
        let message = s["message"].as_str().unwrap();
        assert!(message.starts_with("gate failed"), "{name}: {message}");
        assert!(message.contains(reason), "{name}: {message}");
        assert_eq!(
            s["appliedWeights"],
            serde_json::json!([]),
            "{name}: no traffic"
        );
    }
    // A canary image given by tag is refused with the fix.
    let spec = rollout("by-tag", v1.addr, v2.addr, "        - setWeight: 5\n")
        .replace(&vireo_demo::image("v2"), "reg.example/checkout:v2");
    assert_eq!(server.post("/api/v1/rollouts", &spec).status, 201);
    let s = server.wait_status("by-tag", "the gate's verdict", |s| s["phase"] == "Aborted");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("not referenced by digest"),
        "{s}"
    );

    // The attested image passes, and the gate's VSA names the attestation it relied on.
    let spec = rollout("attested", v1.addr, v2.addr, "        - setWeight: 5\n").replace(
        &vireo_demo::image("v2"),
        &format!("reg.example/checkout@sha256:{}", digest('b')),
    );
    assert_eq!(server.post("/api/v1/rollouts", &spec).status, 201);
    server.wait_status("attested", "past the gate", |s| s["phase"] == "Progressing");
    let r = server.post("/api/v1/replays", r#"{"decisionId":"attested.g1.gate"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["result"], "match", "{}", r.body);
    // Replays by rollout: this one's, not another's.
    let mine = server.get("/api/v1/replays?rollout=attested").json();
    assert_eq!(mine["total"], 1, "{mine}");
    assert_eq!(mine["items"][0]["decision"], "attested.g1.gate", "{mine}");
    assert_eq!(mine["items"][0]["matched"], true, "{mine}");
    let other = server.get("/api/v1/replays?rollout=nope").json();
    assert_eq!(other["total"], 0, "{other}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rollback envelope end to end: armed before 100 %, replayed by `vireo rollout rollback`
/// (traffic back on v1 on the proxy, the down-migration run once, RTO and round trip
/// recorded); then a down-migration that kills the control plane mid-run is not run again
/// after the restart.
#[test]
fn rollback_replays_the_envelope_and_never_runs_the_migration_twice() {
    let dir = tempdir("rollback");
    let addr = free_addr();
    let mut server = Server::start(addr, &dir.join("data"));
    let proxy = Proxy::start(&dir, "proxy-0", &server.url(""));
    let (v1, v2) = (backend("v1"), backend("v2"));
    let ran = dir.join("migrations.log");
    let spec = |command: &str| {
        format!(
            "{}  rollback:\n    downMigration: {{ command: '{command}' }}\n    flag: {{ key: orders-v2, disable: {{ value: false }} }}\n",
            rollout("orders", v1.addr, v2.addr, "        - setWeight: 50\n")
        )
    };
    let record = format!(
        "echo \"$VIREO_ROLLOUT g$VIREO_GENERATION\" >> {}",
        ran.display()
    );
    let r = server.post("/api/v1/rollouts", &spec(&record));
    assert_eq!(r.status, 201, "{}", r.body);
    server.wait_status("orders", "completed", |s| s["phase"] == "Completed");
    let timeline = server.timeline("orders");
    let armed = timeline.iter().position(|e| e["input"] == "RollbackArmed");
    let hundred = timeline
        .iter()
        .position(|e| e["input"]["WeightApplied"]["weight"] == 100);
    assert!(armed.unwrap() < hundred.unwrap(), "armed before 100 %");
    assert_eq!(proxy.split(20).get("v2"), Some(&20));

    // What the console shows before the user rolls back: the phase allows only a rollback,
    // and the preview is the armed envelope's, which the evidence index lists as sealed.
    let s = server.status("orders");
    assert_eq!(s["allowedActions"], serde_json::json!(["rollback"]), "{s}");
    assert!(s["appliedBy"].is_string(), "{s}");
    let preview = server.get("/api/v1/rollouts/orders/rollback").json();
    assert_eq!(preview["armed"], true, "{preview}");
    assert_eq!(
        preview["verified"],
        serde_json::json!({"Ok": null}),
        "{preview}"
    );
    assert_eq!(preview["previousVersion"], "v1", "{preview}");
    assert_eq!(preview["flag"]["key"], "orders-v2", "{preview}");
    assert_eq!(preview["downMigration"]["command"], record, "{preview}");
    assert_eq!(
        preview["proxies"],
        serde_json::json!(["proxy-0"]),
        "{preview}"
    );
    let index = server.get("/api/v1/rollouts/orders/evidence/index").json();
    let items = index["items"].as_array().unwrap();
    let logged = items
        .iter()
        .find(|i| i["kind"] == "rollback")
        .unwrap_or_else(|| panic!("{index}"));
    assert_eq!(logged["logIndex"], preview["logIndex"], "{index}");
    assert_eq!(logged["digest"], preview["envelopeDigest"], "{index}");
    assert!(items.iter().all(|i| i["sealed"] == true), "{index}");
    assert!(
        index["checkpoint"].as_str().unwrap().contains("\n\n"),
        "{index}"
    );

    let (code, stdout, stderr) = server.vireo(&["rollout", "rollback", "orders"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let s = server.wait_status("orders", "the envelope replayed", |s| {
        s["rollback"]["roundTripMs"].is_u64()
    });
    assert_eq!(s["phase"], "RolledBack", "{s}");
    assert_eq!(
        s["rollback"]["verified"],
        serde_json::json!({"Ok": null}),
        "{s}"
    );
    assert_eq!(s["rollback"]["migration"]["Finished"]["ok"], true, "{s}");
    let (rto, round_trip) = (
        s["rollback"]["rtoMs"].as_u64().unwrap(),
        s["rollback"]["roundTripMs"].as_u64().unwrap(),
    );
    assert!(rto <= round_trip, "{s}");
    assert!(
        s["rollback"]["flag"]
            .as_str()
            .unwrap()
            .contains("orders-v2"),
        "{s}"
    );
    assert_eq!(
        proxy.split(20).get("v1"),
        Some(&20),
        "back on the previous version"
    );
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "orders g1\n");

    // Generation 2: the migration kills `vireo serve` (its parent) while it runs.
    let crash = format!("{record}; kill -9 $PPID; sleep 1");
    let r = server.post("/api/v1/rollouts", &spec(&crash));
    assert_eq!(r.status, 201, "{}", r.body);
    server.wait_status("orders", "completed", |s| {
        s["phase"] == "Completed" && s["generation"] == 2
    });
    let _ = http(
        "POST",
        &server.url("/api/v1/rollouts/orders/rollback"),
        &[("authorization", server.admin.as_str())],
        "",
    );
    let exited = wait_for(
        "vireo serve killed by the migration",
        Duration::from_secs(20),
        || server.child.try_wait().unwrap(),
    );
    assert!(!exited.success());
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        "orders g1\norders g2\n"
    );
    server = Server::start(addr, &dir.join("data"));
    let s = server.wait_status("orders", "the replay finished after the restart", |s| {
        s["rollback"]["roundTripMs"].is_u64()
    });
    // Both generations are kept, newest first, each with its own timeline.
    let gens = server.get("/api/v1/rollouts/orders/generations").json();
    let phases: Vec<_> = gens["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["status"]["generation"].clone(),
                g["status"]["phase"].clone(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        [
            (serde_json::json!(2), serde_json::json!("RolledBack")),
            (serde_json::json!(1), serde_json::json!("RolledBack"))
        ],
        "{gens}"
    );
    assert_eq!(
        gens["items"][1]["status"]["allowedActions"],
        serde_json::json!([]),
        "an earlier generation accepts no action: {gens}"
    );
    let first = server
        .get("/api/v1/rollouts/orders/timeline?generation=1")
        .json();
    assert_eq!(first["generation"], 1, "{first}");
    assert!(
        first["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["input"]["Action"] == "rollback" && e["by"].is_string()),
        "{first}"
    );
    let missing = server.get("/api/v1/rollouts/orders/timeline?generation=9");
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert!(missing.body.contains("generations"), "{}", missing.body);
    let bad = server.get("/api/v1/rollouts/orders/evidence/index?generation=x");
    assert_eq!(bad.status, 400, "{}", bad.body);
    // An earlier generation's bundle: exported by the CLI, and it verifies offline with the
    // keys pinned, as the current one does.
    let keys = dir.join("data").join("keys");
    for g in ["1", "2"] {
        let file = dir.join(format!("orders.g{g}.tar.gz"));
        let (code, out, err) = server.vireo(&[
            "evidence",
            "export",
            "orders",
            "-o",
            file.to_str().unwrap(),
            "--generation",
            g,
        ]);
        assert_eq!(code, Some(0), "{out}{err}");
        let (code, out, err) = verify_pinned(&file, &keys);
        assert_eq!(code, Some(0), "generation {g}: {out}{err}");
    }
    assert_ne!(
        std::fs::read(dir.join("orders.g1.tar.gz")).unwrap(),
        std::fs::read(dir.join("orders.g2.tar.gz")).unwrap()
    );
    let (code, out, err) = server.vireo(&[
        "evidence",
        "export",
        "orders",
        "-o",
        dir.join("none.tar.gz").to_str().unwrap(),
        "--generation",
        "9",
    ]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(err.contains("has no generation 9"), "{err}");
    let detail = s["rollback"]["migration"]["Finished"]["detail"]
        .as_str()
        .unwrap();
    assert!(detail.contains("not run again"), "{s}");
    assert_eq!(s["rollback"]["migration"]["Finished"]["ok"], false, "{s}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        "orders g1\norders g2\n",
        "the down-migration ran once"
    );
    wait_for("the proxy back on v1", Duration::from_secs(10), || {
        (proxy.split(20).get("v1") == Some(&20)).then_some(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// One cohort: a flag tied to a rollout returns the canary variant exactly for the users the
/// proxy sends to the canary, at 5, 25 and 50 %; OFREP's shapes and codes; a real OpenFeature
/// SDK (Python, OFREP provider) evaluating against `vireo serve`.
#[test]
fn a_rollout_flag_admits_exactly_the_proxys_canary_cohort_over_ofrep() {
    use vireo_core::flags::{self, Cohort, Flag};
    use vireo_proxy::route::{RouteTable, Selection};
    let dir = tempdir("cohort");
    let server = Server::start(free_addr(), &dir.join("data"));
    let proxy = Proxy::start(&dir, "proxy-0", &server.url(""));
    let (v1, v2) = (backend("v1"), backend("v2"));
    let flag_yaml = "key: cohort-flag\nvariants: { on: true, off: false }\ndefaultVariant: off\nrollout: shop\n";
    assert_eq!(server.post("/api/v1/flags", flag_yaml).status, 201);
    let steps = "        - setWeight: 5\n        - pause: {}\n        - setWeight: 25\n        - pause: {}\n        - setWeight: 50\n        - pause: {}\n";
    let r = server.post(
        "/api/v1/rollouts",
        &rollout("shop", v1.addr, v2.addr, steps),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let flag = Flag::parse(flag_yaml).unwrap();
    let ofrep = |user: &str| {
        server.post(
            "/ofrep/v1/evaluate/flags/cohort-flag",
            &format!(r#"{{"context":{{"targetingKey":"{user}"}}}}"#),
        )
    };
    for w in [5u64, 25, 50] {
        server.wait_status("shop", &format!("{w} % applied"), |s| {
            s["canaryWeight"] == w && s["phase"] == "Paused"
        });
        // The control plane's cohort, from the table it publishes…
        let published = server
            .get("/api/v1/proxy/config?proxy=probe&since=0")
            .json();
        let route = published["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "shop")
            .unwrap()
            .clone();
        let cohort = Cohort::from_route(&serde_json::from_value(route).unwrap(), "v2").unwrap();
        let mut cohorts = flags::Cohorts::default();
        cohorts.by_rollout.insert("shop".into(), cohort);
        // …against the table the running proxy applied, routed by the proxy's own code.
        let applied = http("GET", &format!("http://{}/config", proxy.admin), &[], "")
            .unwrap()
            .json();
        let config: vireo_types::config::Config =
            serde_json::from_value(applied["config"].clone()).unwrap();
        let table =
            RouteTable::compile(config, 1, &vireo_proxy::metrics::Metrics::new(&[1.0])).unwrap();
        let uri: http::Uri = "/".parse().unwrap();
        let mut canary = 0;
        for i in 0..100_000 {
            let user = format!("user-{i}");
            let mut headers = http::HeaderMap::new();
            headers.insert("x-user-id", user.parse().unwrap());
            let Selection::Backend { backend, .. } = table.select(&uri, &headers, None, || 0)
            else {
                panic!("the proxy does not route /");
            };
            let mut ctx = serde_json::Map::new();
            ctx.insert("targetingKey".into(), user.clone().into());
            let e = flags::evaluate(&flag, &ctx, &cohorts).unwrap();
            let in_canary = backend.version() == "v2";
            assert_eq!(e.variant == "on", in_canary, "{user} at {w} %");
            canary += usize::from(in_canary);
        }
        let share = canary as f64 / 1000.0;
        assert!(
            (share - w as f64).abs() < 1.5,
            "{share} % in the canary at {w} %"
        );
        // And end to end on a sample: OFREP over HTTP against requests through the proxy.
        for i in 0..150 {
            let user = format!("u-{i}");
            let r = ofrep(&user);
            assert_eq!(r.status, 200, "{}", r.body);
            let served = http(
                "GET",
                &format!("http://{}/", proxy.listen),
                &[("x-user-id", &user)],
                "",
            )
            .unwrap();
            assert_eq!(
                r.json()["value"] == true,
                served.version() == Some("v2"),
                "{user} at {w} %"
            );
        }
        if w < 50 {
            assert_eq!(server.post("/api/v1/rollouts/shop/promote", "").status, 200);
        }
    }

    // OFREP shapes and error codes.
    let ok = ofrep("u-1").json();
    for k in ["key", "value", "reason", "variant", "metadata"] {
        assert!(ok.get(k).is_some(), "{k} missing: {ok}");
    }
    assert_eq!(ok["reason"], "SPLIT");
    let missing = server.post(
        "/ofrep/v1/evaluate/flags/nope",
        r#"{"context":{"targetingKey":"u"}}"#,
    );
    assert_eq!(
        (missing.status, missing.json()["errorCode"].clone()),
        (404, "FLAG_NOT_FOUND".into())
    );
    assert_eq!(missing.json()["key"], "nope");
    for (body, code) in [
        ("{", "PARSE_ERROR"),
        (r#"{"context": 5}"#, "INVALID_CONTEXT"),
        (r#"{"context":{"targetingKey": 7}}"#, "INVALID_CONTEXT"),
        (r#"{"context":{}}"#, "TARGETING_KEY_MISSING"),
    ] {
        let r = server.post("/ofrep/v1/evaluate/flags/cohort-flag", body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["errorCode"], code, "{body}");
        assert!(r.json()["errorDetails"].is_string());
    }
    // Bulk with ETag / If-None-Match.
    let ctx = r#"{"context":{"targetingKey":"u-3"}}"#;
    let bulk = server.post("/ofrep/v1/evaluate/flags", ctx);
    assert_eq!(bulk.status, 200);
    assert_eq!(bulk.json()["flags"][0]["key"], "cohort-flag");
    let etag = bulk.headers["etag"].to_str().unwrap().to_string();
    let again = http(
        "POST",
        &server.url("/ofrep/v1/evaluate/flags"),
        &[
            ("authorization", server.admin.as_str()),
            ("if-none-match", &etag),
        ],
        ctx,
    )
    .unwrap();
    assert_eq!(again.status, 304);
    assert_eq!(
        server.post("/api/v1/flags/cohort-flag/disable", "").status,
        200
    );
    let changed = http(
        "POST",
        &server.url("/ofrep/v1/evaluate/flags"),
        &[
            ("authorization", server.admin.as_str()),
            ("if-none-match", &etag),
        ],
        ctx,
    )
    .unwrap();
    assert_eq!(changed.status, 200, "a toggle changes the answer");
    assert_eq!(changed.json()["flags"][0]["reason"], "DISABLED");
    assert_eq!(
        server.post("/api/v1/flags/cohort-flag/enable", "").status,
        200
    );

    // A real OpenFeature SDK with its OFREP provider, unchanged.
    let users: Vec<String> = (0..60).map(|i| format!("u-{i}")).collect();
    let out = std::process::Command::new(python())
        .arg(python_script("ofrep_sdk.py"))
        .arg(server.url(""))
        .env("VIREO_TOKEN", server.admin.trim_start_matches("Bearer "))
        .arg("cohort-flag")
        .args(&users)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sdk: Value = serde_json::from_slice(&out.stdout).unwrap();
    for user in &users {
        let served = http(
            "GET",
            &format!("http://{}/", proxy.listen),
            &[("x-user-id", user)],
            "",
        )
        .unwrap();
        let d = &sdk["users"][user];
        assert_eq!(
            d["value"] == true,
            served.version() == Some("v2"),
            "{user}: {d}"
        );
        assert_eq!(d["reason"], "SPLIT", "{d}");
        assert!(d["error"].is_null(), "{d}");
    }
    assert_eq!(sdk["missing_flag"]["error"], "FLAG_NOT_FOUND", "{sdk}");
    assert_eq!(
        sdk["missing_flag"]["value"], true,
        "the SDK falls back to the code default"
    );
    assert_eq!(
        sdk["no_targeting_key"]["error"], "TARGETING_KEY_MISSING",
        "{sdk}"
    );

    // Every evaluation above is an event (batched; give the writer a moment).
    let evaluated = wait_for("evaluation events written", Duration::from_secs(10), || {
        let v = server.get("/api/v1/flags").json();
        let s = &v["evaluationEvents"];
        (s["written"] == s["queued"] && s["written"].as_u64() >= Some(500)).then(|| s.clone())
    });
    assert_eq!(evaluated["backpressure"], 0, "{evaluated}");
    let page = server
        .get("/api/v1/events?type=dev.vireo.flag.evaluated.0.1.0&limit=1")
        .json();
    let e = &page["events"][0];
    assert_eq!(e["data"]["flag"], "cohort-flag", "{e}");
    assert!(e["data"]["bucket"].is_u64(), "{e}");
    // The console's share chart: every one of them counted, per variant, in hour buckets.
    let shares = server
        .get("/api/v1/flags/cohort-flag/evaluations?bucketS=3600")
        .json();
    let mut per_variant = std::collections::BTreeMap::<String, u64>::new();
    for b in shares["buckets"].as_array().unwrap() {
        for (v, n) in b["variants"].as_object().unwrap() {
            *per_variant.entry(v.clone()).or_default() += n.as_u64().unwrap();
        }
    }
    assert_eq!(
        per_variant.values().sum::<u64>(),
        evaluated["written"].as_u64().unwrap(),
        "{shares}"
    );
    assert!(per_variant["on"] > 0 && per_variant["off"] > 0, "{shares}");
    let r = server.get("/api/v1/flags/cohort-flag/evaluations?bucketS=5");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("bucketS: 5"), "{}", r.body);
    let r = server.get("/api/v1/flags/cohort-flag/evaluations?since=yesterday");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("not an RFC 3339 time"), "{}", r.body);
    assert_eq!(server.get("/api/v1/flags/nope/evaluations").status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Events: every stored event validates against the CloudEvents 1.0 JSON schema; ingest takes
/// structured, batched and binary events and names the bad attribute; SSE streams them; the
/// sink gets every event at least once across its own restart; DORA answers with receipts.
#[test]
fn events_validate_stream_and_reach_a_restarted_sink_at_least_once() {
    let dir = tempdir("events");
    let sink_addr = free_addr();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let mut sink = Some(Sink::start(sink_addr, seen.clone()));
    let sink_url = format!("http://{sink_addr}/events");
    let server = Server::start_with(free_addr(), &dir.join("data"), &["--event-sink", &sink_url]);
    let proxy = Proxy::start(&dir, "proxy-0", &server.url(""));
    let (v1, v2) = (backend("v1"), backend("v2"));
    let r = server.post(
        "/api/v1/rollouts",
        &rollout("pay", v1.addr, v2.addr, "        - setWeight: 50\n"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    server.wait_status("pay", "completed", |s| s["phase"] == "Completed");

    let merged = |id: &str| {
        format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"/ci/scm","type":"dev.cdevents.change.merged.0.2.0","time":"2026-11-20T10:00:00Z","data":{{"subject":{{"id":"pr-1","content":{{"commit":"abc"}}}}}}}}"#
        )
    };
    let structured = http(
        "POST",
        &server.url("/api/v1/events"),
        &[
            ("authorization", server.admin.as_str()),
            ("content-type", "application/cloudevents+json"),
        ],
        &merged("m-1"),
    )
    .unwrap();
    assert_eq!(structured.status, 201, "{}", structured.body);
    let duplicate = http(
        "POST",
        &server.url("/api/v1/events"),
        &[
            ("authorization", server.admin.as_str()),
            ("content-type", "application/cloudevents+json"),
        ],
        &merged("m-1"),
    )
    .unwrap();
    assert_eq!(
        (duplicate.status, duplicate.json()["duplicates"].clone()),
        (200, 1.into())
    );
    let batch = format!("[{},{}]", merged("m-2"), merged("m-3"));
    let r = http(
        "POST",
        &server.url("/api/v1/events"),
        &[
            ("authorization", server.admin.as_str()),
            ("content-type", "application/cloudevents-batch+json"),
        ],
        &batch,
    )
    .unwrap();
    assert_eq!(r.json()["accepted"], 2, "{}", r.body);
    // One event by `source` + `id`, as a DORA receipt names it.
    let one = server.get("/api/v1/events?source=/ci/scm&id=m-2").json();
    let ids: Vec<_> = one["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, [serde_json::json!("m-2")], "{one}");
    let binary = http(
        "POST",
        &server.url("/api/v1/events"),
        &[
            ("authorization", server.admin.as_str()),
            ("ce-specversion", "1.0"),
            ("ce-id", "inc-1"),
            ("ce-source", "/pager"),
            ("ce-type", "dev.cdevents.incident.detected.0.3.0"),
            ("ce-time", "2026-11-20T11:00:00Z"),
            ("content-type", "application/json"),
        ],
        r#"{"subject":{"id":"INC-1"}}"#,
    )
    .unwrap();
    assert_eq!(binary.status, 201, "{}", binary.body);
    let own = server.get("/api/v1/events?limit=1").json()["events"][0]["source"]
        .as_str()
        .unwrap()
        .to_string();
    for (bad, attribute) in [
        (merged("x").replace(r#""source":"/ci/scm","#, ""), "source"),
        (merged("x").replace("/ci/scm", &own), "source"),
        (
            merged("x").replace("2026-11-20T10:00:00Z", "yesterday"),
            "time",
        ),
        (
            merged("x").replace(r#""specversion":"1.0""#, r#""specversion":"0.3""#),
            "specversion",
        ),
        (
            merged("x").replace(r#""id":"x""#, r#""id":"x","Bad":1"#),
            "Bad",
        ),
    ] {
        let r = http(
            "POST",
            &server.url("/api/v1/events"),
            &[
                ("authorization", server.admin.as_str()),
                ("content-type", "application/cloudevents+json"),
            ],
            &bad,
        )
        .unwrap();
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["attribute"], attribute, "{}", r.body);
    }

    // SSE: the backlog from the start, then live.
    let sse = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s.write_all(format!("GET /api/v1/events/stream?after=0 HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nauthorization: {}\r\n\r\n", server.admin).as_bytes()).unwrap();
        let mut text = String::new();
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        while start.elapsed() < Duration::from_secs(5)
            && !text.contains("dev.cdevents.incident.detected")
        {
            if let Ok(n) = s.read(&mut buf) {
                text.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        text
    };
    assert!(
        sse.contains("event: dev.cdevents.service.upgraded.0.3.0"),
        "{sse}"
    );
    assert!(
        sse.contains("event: dev.cdevents.incident.detected.0.3.0"),
        "{sse}"
    );
    assert!(sse.contains("\nid: "), "{sse}");

    // The sink stops; events keep coming; it restarts and gets them all.
    drop(sink.take());
    for i in 4..9 {
        let r = http(
            "POST",
            &server.url("/api/v1/events"),
            &[
                ("authorization", server.admin.as_str()),
                ("content-type", "application/cloudevents+json"),
            ],
            &merged(&format!("m-{i}")),
        )
        .unwrap();
        assert_eq!(r.status, 201);
    }
    std::thread::sleep(Duration::from_millis(800));
    // The health banner sees the sink failing and behind, with its last error.
    let h = wait_for(
        "the sink's failure in health",
        Duration::from_secs(10),
        || {
            let h = server.get("/api/v1/rollouts/pay/health").json();
            h["eventSink"]["error"].is_string().then_some(h)
        },
    );
    let sink_health = &h["eventSink"];
    // Shown without its path (a webhook's secret lives there), in the error too.
    assert_eq!(sink_health["url"], format!("http://{sink_addr}/…"), "{h}");
    assert!(
        !sink_health["error"].as_str().unwrap().contains("/events"),
        "{h}"
    );
    assert!(
        sink_health["latestSeq"].as_u64() > sink_health["deliveredSeq"].as_u64(),
        "{h}"
    );
    assert!(sink_health["lagMs"].is_u64(), "{h}");
    assert_eq!(
        (
            h["proxies"]["connected"].clone(),
            h["proxies"]["expected"].clone()
        ),
        (1.into(), 1.into()),
        "{h}"
    );
    let _sink = Sink::start(sink_addr, seen.clone());
    let export = dir.join("events.jsonl");
    let all: std::collections::BTreeSet<(String, String)> = wait_for(
        "the sink to have every event",
        Duration::from_secs(40),
        || {
            let (code, out, err) =
                server.vireo(&["events", "export", "-o", export.to_str().unwrap()]);
            assert_eq!(code, Some(0), "{out}{err}");
            let logged: std::collections::BTreeSet<(String, String)> =
                std::fs::read_to_string(&export)
                    .unwrap()
                    .lines()
                    .map(|l| {
                        let e: Value = serde_json::from_str(l).unwrap();
                        (
                            e["source"].as_str().unwrap().to_string(),
                            e["id"].as_str().unwrap().to_string(),
                        )
                    })
                    .collect();
            let got = seen.lock().unwrap().clone();
            logged.is_subset(&got).then_some(logged)
        },
    );
    assert!(all.len() >= 15, "{}", all.len());

    // Every event in the log is valid CloudEvents 1.0 (the spec's JSON schema, formats on).
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/vectors/cloudevents/cloudevents.json"
    );
    let out = std::process::Command::new(python())
        .arg(python_script("validate_events.py"))
        .arg(schema)
        .arg(&export)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        all.len().to_string()
    );

    // DORA over it: one release, no failure; every figure with a receipt.
    let (code, out, err) = server.vireo(&["dora", "-o", "json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["deployFrequency"]["releases"], 1, "{d}");
    assert_eq!(d["changeFailureRate"]["rate"], 0.0, "{d}");
    assert!(
        d["deployFrequency"]["query"]
            .as_str()
            .unwrap()
            .starts_with("jq -s"),
        "{d}"
    );
    assert_eq!(
        d["deployFrequency"]["events"].as_array().unwrap().len(),
        1,
        "{d}"
    );

    // Caught up: nothing undelivered, no error.
    let h = wait_for(
        "the sink caught up in health",
        Duration::from_secs(10),
        || {
            let h = server.get("/api/v1/rollouts/pay/health").json();
            let s = &h["eventSink"];
            (s["deliveredSeq"] == s["latestSeq"] && s["error"].is_null()).then_some(h)
        },
    );
    assert!(h["eventSink"]["lagMs"].is_null(), "{h}");
    assert!(h["eventSink"]["deliveredAtMs"].is_u64(), "{h}");

    // The dashboard's one read: its period is exactly what /api/v1/dora says for the same
    // window, the release falls in the last of the weeks, and the period before is empty.
    let until = std::time::SystemTime::now() + Duration::from_secs(3600);
    let since = until - Duration::from_secs(30 * 86_400);
    let window = format!(
        "since={}&until={}",
        humantime::format_rfc3339_millis(since),
        humantime::format_rfc3339_millis(until)
    );
    let one = server.get(&format!("/api/v1/dora?{window}")).json();
    let s = server.get(&format!("/api/v1/dora/summary?{window}&weeks=3"));
    assert_eq!(s.status, 200, "{}", s.body);
    let s = s.json();
    assert_eq!(s["period"], one, "{s}");
    assert_eq!(s["previous"]["deployFrequency"]["releases"], 0, "{s}");
    let weeks = s["weeks"].as_array().unwrap();
    assert_eq!(weeks.len(), 3, "{s}");
    assert_eq!(weeks[2]["window"]["until"], one["window"]["until"], "{s}");
    assert_eq!(weeks[2]["deployFrequency"]["releases"], 1, "{s}");
    assert_eq!(weeks[0]["deployFrequency"]["releases"], 0, "{s}");
    let r = server.get(&format!("/api/v1/dora/summary?{window}&weeks=54"));
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("weeks: 54"), "{}", r.body);
    // A proxy that goes away is lost, and still expected: "0 of 1 connected".
    drop(proxy);
    let h = wait_for("the proxy lost in health", Duration::from_secs(20), || {
        let h = server.get("/api/v1/rollouts/pay/health").json();
        (h["proxies"]["connected"] == 0).then_some(h)
    });
    assert_eq!(h["proxies"]["expected"], 1, "{h}");
    assert_eq!(h["proxies"]["lost"][0]["proxy"], "proxy-0", "{h}");
    assert_eq!(server.get("/api/v1/rollouts/nope/health").status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads one `\n`-terminated line of a watch stream (an empty one is a keep-alive).
fn read_line(stream: &mut std::io::BufReader<std::net::TcpStream>) -> String {
    use std::io::BufRead;
    let mut line = String::new();
    stream
        .read_line(&mut line)
        .expect("a line within the read timeout");
    line
}

#[test]
fn the_watch_stream_pushes_each_table_and_a_closed_stream_is_not_waited_for() {
    use std::io::Write;
    let dir = tempdir("watch-stream");
    let server = Server::start(free_addr(), &dir.join("data"));
    let proxies = || {
        let r = http(
            "GET",
            &server.url("/api/v1/proxies"),
            &[("authorization", server.admin.as_str())],
            "",
        )
        .unwrap();
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["proxy"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let report = |proxy: &str, version: u64| {
        let body = serde_json::json!({"proxy": proxy, "applied_version": version, "in_flight": {},
            "slo": {"window_s": 60, "routes": {}}});
        http(
            "POST",
            &server.url("/api/v1/proxy/status"),
            &[("authorization", server.admin.as_str())],
            &body.to_string(),
        )
        .unwrap()
    };

    // A stream opened before anything is published carries nothing yet (version 0 is never
    // sent), only the head.
    let tcp = std::net::TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut writer = tcp.try_clone().unwrap();
    write!(
        writer,
        "GET /api/v1/proxy/watch?proxy=w-1&since=0 HTTP/1.1\r\nhost: vireo\r\nauthorization: {}\r\n\r\n",
        server.admin
    )
    .unwrap();
    let mut stream = std::io::BufReader::new(tcp);
    let mut head = Vec::new();
    loop {
        let line = read_line(&mut stream);
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    assert!(head[0].starts_with("HTTP/1.1 200"), "{head:?}");
    assert!(
        head.iter()
            .any(|h| h.eq_ignore_ascii_case("content-type: application/x-ndjson\r\n")),
        "{head:?}"
    );
    // Chunked: each chunk's size line, then the table's JSON line.
    let mut next_table = || loop {
        let size = read_line(&mut stream);
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        let mut chunk = vec![0u8; size + 2];
        std::io::Read::read_exact(&mut stream, &mut chunk).unwrap();
        let text = String::from_utf8_lossy(&chunk[..size]).to_string();
        if !text.trim().is_empty() {
            return serde_json::from_str::<Value>(text.trim()).unwrap();
        }
    };

    // Each published table arrives on the open stream, without asking again.
    let (v1, v2) = (backend("v1"), backend("v2"));
    let steps = "        - setWeight: 30\n        - pause: {}\n        - setWeight: 60\n        - pause: {}\n";
    let r = server.post(
        "/api/v1/rollouts",
        &rollout("streamed", v1.addr, v2.addr, steps),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let first = next_table();
    let weight = |t: &Value| t["routes"][0]["split"]["backends"][0]["weight"].as_i64();
    assert_eq!(weight(&first), Some(30), "{first}");
    let answer = report("w-1", first["version"].as_u64().unwrap());
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json()["report_every_ms"],
        1000,
        "a small fleet reports every second"
    );
    server.wait_status("streamed", "weight 30 applied", |s| {
        s["phase"] == "Paused" && s["canaryWeight"] == 30
    });
    let r = server.post("/api/v1/rollouts/streamed/promote", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let second = next_table();
    assert_eq!(weight(&second), Some(60), "{second}");
    assert!(second["version"].as_u64() > first["version"].as_u64());
    assert_eq!(proxies(), ["w-1"]);

    // The stream closes: the proxy is waited for five seconds more at most (it may only have
    // lost its connection), not the three keep-alive intervals a streaming proxy gets.
    drop(writer);
    drop(stream);
    let closed = Instant::now();
    wait_for("w-1 disconnected", Duration::from_secs(8), || {
        proxies().is_empty().then_some(())
    });
    assert!(closed.elapsed() < Duration::from_secs(7));
    // With nobody connected, nothing is known to be applied: the weight waits.
    std::thread::sleep(Duration::from_millis(300));
    let s = server.status("streamed");
    assert_eq!(
        s["appliedWeights"].as_array().unwrap().len(),
        1,
        "60 % is not applied by a proxy that left: {s}"
    );
}
