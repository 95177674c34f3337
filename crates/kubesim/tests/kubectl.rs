//! The real kubectl (1.36, unpacked into target/tools/bin by scripts/ensure-deps.sh test)
//! against the simulator: the CRDs and the examples apply, `get` prints the Rollout's columns,
//! strict validation names a misspelt field, the status and scale subresources work.

use vireo_kubesim::kubectl::Kubectl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_crds_and_examples_and_prints_rollouts() {
    let sim = vireo_kubesim::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let k = Kubectl {
        kubeconfig: dir.path().join("kubeconfig"),
        cache: dir.path().join("cache"),
    };
    sim.write_kubeconfig(&k.kubeconfig).unwrap();
    let k = std::sync::Arc::new(k);
    let kc = k.clone();
    tokio::task::spawn_blocking(move || {
        let k = kc;
        let out = k.ok(&["apply", "-k", "crds/"]);
        assert!(
            out.contains(
                "customresourcedefinition.apiextensions.k8s.io/rollouts.vireo.dev created"
            ),
            "{out}"
        );
        let out = k.ok(&["api-resources", "--api-group=vireo.dev"]);
        for line in [
            "rollouts                   vro",
            "analysisruns               var",
        ] {
            assert!(out.contains(line), "{out}");
        }
        // The whole install (kustomize, with crds/ included) applies as well.
        let out = k.ok(&["apply", "-k", "deploy/kubernetes"]);
        for created in [
            "namespace/vireo-system created",
            "statefulset.apps/vireo created",
            "clusterrole.rbac.authorization.k8s.io/vireo-controller created",
            "poddisruptionbudget.policy/vireo created",
            "networkpolicy.networking.k8s.io/vireo-control-plane created",
        ] {
            assert!(out.contains(created), "{created}: {out}");
        }
        k.ok(&["apply", "-f", "deploy/kubernetes/examples/namespace.yaml"]);
        let out = k.ok(&["apply", "-f", "deploy/kubernetes/examples/"]);
        assert!(out.contains("rollout.vireo.dev/checkout created"), "{out}");
        let out = k.ok(&["apply", "-f", "deploy/kubernetes/examples/"]);
        assert!(
            out.contains("rollout.vireo.dev/checkout unchanged"),
            "re-apply is a no-op: {out}"
        );

        // Strict field validation, as kubectl asks for by default, names the misspelt field.
        let typo = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/kubernetes/examples/rollout.yaml"
        ))
        .unwrap()
        .replace("scaleDownDelaySeconds: 30", "scaleDownDelaySecnds: 30");
        let (ok, _, err) = k.run(&["apply", "-f", "-"], Some(&typo));
        assert!(!ok);
        assert!(
            err.contains("unknown field \"spec.strategy.canary.scaleDownDelaySecnds\""),
            "{err}"
        );

        // The controller writes status through the subresource; kubectl shows its columns.
        k.ok(&[
            "-n",
            "shop",
            "patch",
            "rollout",
            "checkout",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Progressing","currentStepIndex":2,"canaryWeight":25}}"#,
        ]);
        let out = k.ok(&["-n", "shop", "get", "rollouts"]);
        let mut lines = out.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["NAME", "PHASE", "STEP", "WEIGHT", "AGE"], "{out}");
        let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(&row[..4], ["checkout", "Progressing", "2", "25"], "{out}");
        let out = k.ok(&["-n", "shop", "get", "vro", "-o", "wide"]);
        assert!(out.lines().next().unwrap().contains("DESIRED"), "{out}");

        k.ok(&["-n", "shop", "scale", "rollout", "checkout", "--replicas=6"]);
        let out = k.ok(&[
            "-n",
            "shop",
            "get",
            "rollout",
            "checkout",
            "-o",
            "jsonpath={.spec.replicas}",
        ]);
        assert_eq!(out, "6");
        let out = k.ok(&["explain", "rollout.spec.strategy.canary.trafficRouting"]);
        assert!(out.contains("gatewayAPI"), "{out}");

        let out = k.ok(&[
            "-n",
            "shop",
            "get",
            "svc",
            "checkout-stable",
            "-o",
            "jsonpath={.spec.type} {.spec.clusterIP}",
        ]);
        assert!(out.starts_with("ClusterIP 10.96."), "{out}");
        k.ok(&["-n", "shop", "delete", "rollout", "checkout"]);
        let (ok, _, err) = k.run(&["-n", "shop", "get", "rollout", "checkout"], None);
        assert!(
            !ok && err.contains("NotFound") || err.contains("not found"),
            "{err}"
        );
    })
    .await
    .unwrap();
}
