//! The `Rollout` resource: what a release engineer applies (`shared/spec/control.md`).
//!
//! Field names follow Argo Rollouts wherever Argo has the concept (`setWeight`, `pause`,
//! `analysis.templates[].templateName`), so a recipe reads the same to an Argo user. YAML and
//! JSON are both accepted; unknown fields are errors, and every error names its field path
//! (`spec.strategy.canary.steps[3].setWeight: must be 0..=100`).
//!
//! Step kinds are written as one-key maps (`- setWeight: 5`). serde_yaml_ng reads externally
//! tagged enums only from YAML tags, so each step goes through [`StepSpec`], a struct of
//! optional fields of which exactly one must be set.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use vireo_types::config::KeySource;

pub const API_VERSION: &str = "vireo.dev/v1alpha1";

/// The step index of the background analysis (`strategy.canary.analysis`), which belongs to
/// no step: what [`Rollout::analysis_at`] takes for it, and a background `StartAnalysis`'s step.
pub const BACKGROUND_STEP: usize = usize::MAX;

/// The annotation that makes a rollout wait for `approve` before its first step: `required`
/// (anyone who may approve), or `four-eyes` (someone other than whoever applied it).
pub const APPROVAL_ANNOTATION: &str = "vireo.dev/approval";

/// How a rollout wants to be approved, from [`APPROVAL_ANNOTATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    None,
    Required,
    /// Required, and not by the principal who applied the rollout.
    FourEyes,
}

impl Rollout {
    pub fn approval(&self) -> Approval {
        match self
            .metadata
            .annotations
            .get(APPROVAL_ANNOTATION)
            .map(String::as_str)
        {
            Some("required") => Approval::Required,
            Some("four-eyes") => Approval::FourEyes,
            _ => Approval::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rollout {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: RolloutSpec,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// The proxy route this rollout drives.
    pub route: String,
    /// Which requests the route takes, in the proxy's route-match format (`host`,
    /// `path_prefix`, `headers`, `destinations`); default: all. Kubernetes mode sets
    /// `destinations` to the stable Service's ClusterIP and ports, so an intercepted pod's
    /// calls to that Service are the ones split.
    #[serde(
        rename = "match",
        default,
        skip_serializing_if = "vireo_types::config::RouteMatch::is_empty"
    )]
    pub matches: vireo_types::config::RouteMatch,
    pub stable: Workload,
    pub canary: Workload,
    #[serde(default)]
    pub split: SplitSpec,
    pub strategy: Strategy,
    /// The rollback envelope's contents (signed before the canary gets 100 %).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackSpec>,
}

/// What a rollback does besides moving traffic back (`shared/spec/evidence.md`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollbackSpec {
    #[serde(default)]
    pub down_migration: DownMigration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flag: Option<FlagSpec>,
}

/// `none`, or a command (run by `sh -c` in embedded mode) pinned by the SHA-256 of its text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub enum DownMigration {
    #[default]
    None,
    Command {
        command: String,
        /// `sha256:<hex>` of the command's bytes; computed when not given, checked when given.
        digest: String,
    },
}

impl DownMigration {
    pub fn digest_of(command: &str) -> String {
        format!("sha256:{}", crate::digest::sha256_hex(command.as_bytes()))
    }
}

impl TryFrom<serde_json::Value> for DownMigration {
    type Error = String;
    fn try_from(v: serde_json::Value) -> Result<Self, String> {
        let usage = "must be \"none\" or { command: \"...\", digest: \"sha256:...\" }";
        match v {
            serde_json::Value::String(s) if s == "none" => Ok(DownMigration::None),
            serde_json::Value::Object(mut m) => {
                let command = match m.remove("command") {
                    Some(serde_json::Value::String(c)) if !c.trim().is_empty() => c,
                    _ => {
                        return Err(format!(
                            "downMigration.command is missing or empty: {usage}"
                        ))
                    }
                };
                let want = DownMigration::digest_of(&command);
                let digest = match m.remove("digest") {
                    None => want,
                    Some(serde_json::Value::String(d)) if d == want => d,
                    Some(d) => {
                        return Err(format!(
                            "downMigration.digest {d} does not match the command (its digest is {want})"
                        ))
                    }
                };
                if let Some(k) = m.keys().next() {
                    return Err(format!("downMigration has an unknown field {k:?}: {usage}"));
                }
                Ok(DownMigration::Command { command, digest })
            }
            other => Err(format!("downMigration {other} {usage}")),
        }
    }
}

impl From<DownMigration> for serde_json::Value {
    fn from(d: DownMigration) -> Self {
        match d {
            DownMigration::None => "none".into(),
            DownMigration::Command { command, digest } => {
                serde_json::json!({"command": command, "digest": digest})
            }
        }
    }
}

/// The feature flag a rollback disables, and the value it sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    pub key: String,
    #[serde(default)]
    pub disable: serde_json::Value,
}

/// One version of the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    pub addrs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SplitSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<KeySource>,
    #[serde(default = "default_buckets")]
    pub buckets: u32,
    /// Defaults to `"<name>-<canary version>"`: a new canary version reshuffles cohorts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec {
            key: None,
            buckets: default_buckets(),
            salt: None,
        }
    }
}

fn default_buckets() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    pub canary: CanaryStrategy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryStrategy {
    pub steps: Vec<Step>,
    /// Analysis once the canary holds 100 %, before it becomes the stable version; failing it
    /// rolls back (phase `RolledBack`).
    #[serde(
        default,
        rename = "postDeployVerify",
        skip_serializing_if = "Option::is_none"
    )]
    pub post_deploy_verify: Option<AnalysisStep>,
    /// Background analysis (Argo): runs from `startingStep` until the steps are done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<BackgroundAnalysis>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackgroundAnalysis {
    pub templates: Vec<TemplateRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_step: Option<usize>,
}

/// One step of the recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StepSpec", into = "StepSpec")]
pub enum Step {
    /// Canary weight in percent, 0..=100.
    SetWeight(u8),
    /// A timed pause, or `None`: wait for `resume` or `promote`.
    Pause(Option<Duration>),
    Analysis(AnalysisStep),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AnalysisStep {
    pub templates: Vec<TemplateRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateRef {
    pub template_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// The wire form of [`Step`]: exactly one field set. `setWeight` is read signed so that `-5`
/// gets a range error rather than a type error.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_weight: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<PauseSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStep>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseSpec {
    /// Argo accepts `30` (seconds) or a duration string such as `"3m"`.
    #[serde(
        default,
        deserialize_with = "argo_duration",
        serialize_with = "ser_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
}

impl TryFrom<StepSpec> for Step {
    type Error = String;
    fn try_from(s: StepSpec) -> Result<Self, String> {
        match (s.set_weight, s.pause, s.analysis) {
            (Some(w), None, None) => match u8::try_from(w) {
                Ok(w) if w <= 100 => Ok(Step::SetWeight(w)),
                _ => Err(format!("setWeight: must be 0..=100, got {w}")),
            },
            (None, Some(p), None) => Ok(Step::Pause(p.duration)),
            (None, None, Some(a)) => Ok(Step::Analysis(a)),
            _ => Err("a step sets exactly one of setWeight, pause, analysis".into()),
        }
    }
}

impl From<Step> for StepSpec {
    fn from(s: Step) -> Self {
        match s {
            Step::SetWeight(w) => StepSpec {
                set_weight: Some(i64::from(w)),
                ..StepSpec::default()
            },
            Step::Pause(duration) => StepSpec {
                pause: Some(PauseSpec { duration }),
                ..StepSpec::default()
            },
            Step::Analysis(a) => StepSpec {
                analysis: Some(a),
                ..StepSpec::default()
            },
        }
    }
}

pub(crate) fn argo_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Secs(s)) => Ok(Some(Duration::from_secs(s))),
        Some(Raw::Text(t)) => humantime::parse_duration(&t).map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "{t:?} is not a duration ({e}); examples: 30s, 3m, 1h"
            ))
        }),
    }
}

pub(crate) fn ser_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

/// Every problem found in a resource, each with its field path (the proxy config's error type:
/// one format for every document Vireo reads).
pub use vireo_types::config::{ConfigError as SpecError, FieldError};

impl Rollout {
    /// Parses YAML or JSON (a text starting with `{` is JSON) and validates.
    pub fn parse(text: &str) -> Result<Rollout, SpecError> {
        let r: Rollout = vireo_types::config::parse_document(text)?;
        r.validate()?;
        Ok(r)
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The cohort salt in effect.
    pub fn salt(&self) -> String {
        self.spec
            .split
            .salt
            .clone()
            .unwrap_or_else(|| format!("{}-{}", self.metadata.name, self.spec.canary.version))
    }

    pub fn steps(&self) -> &[Step] {
        &self.spec.strategy.canary.steps
    }

    /// The analysis of step `step`; `steps().len()` is the post-deploy verification,
    /// [`BACKGROUND_STEP`] the background analysis.
    pub fn analysis_at(&self, step: usize) -> Option<AnalysisStep> {
        let c = &self.spec.strategy.canary;
        match self.steps().get(step) {
            Some(Step::Analysis(a)) => Some(a.clone()),
            Some(_) => None,
            None if step == self.steps().len() => c.post_deploy_verify.clone(),
            None if step == BACKGROUND_STEP => c.analysis.as_ref().map(|b| AnalysisStep {
                templates: b.templates.clone(),
                args: b.args.clone(),
            }),
            None => None,
        }
    }

    /// Every template reference of the recipe, with its field path.
    pub fn template_refs(&self) -> Vec<(String, &TemplateRef)> {
        let c = &self.spec.strategy.canary;
        let mut lists: Vec<(String, &[TemplateRef])> = Vec::new();
        for (i, s) in self.steps().iter().enumerate() {
            if let Step::Analysis(a) = s {
                lists.push((
                    format!("spec.strategy.canary.steps[{i}].analysis"),
                    &a.templates,
                ));
            }
        }
        if let Some(v) = &c.post_deploy_verify {
            lists.push(("spec.strategy.canary.postDeployVerify".into(), &v.templates));
        }
        if let Some(b) = &c.analysis {
            lists.push(("spec.strategy.canary.analysis".into(), &b.templates));
        }
        lists
            .into_iter()
            .flat_map(|(path, templates)| {
                templates
                    .iter()
                    .enumerate()
                    .map(move |(j, t)| (format!("{path}.templates[{j}]"), t))
            })
            .collect()
    }

    /// Checks what serde cannot; collects every error.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut errors = Vec::new();
        let mut err = |path: &str, reason: String| {
            errors.push(FieldError {
                path: path.to_string(),
                reason,
            })
        };
        if self.api_version != API_VERSION {
            err("apiVersion", format!("must be {API_VERSION:?}"));
        }
        if let Some(from) = self
            .spec
            .strategy
            .canary
            .analysis
            .as_ref()
            .and_then(|b| b.starting_step)
        {
            let n = self.spec.strategy.canary.steps.len();
            if from >= n {
                err(
                    "spec.strategy.canary.analysis.startingStep",
                    format!("must be below the number of steps ({n})"),
                );
            }
        }
        if self.kind != "Rollout" {
            err("kind", "must be \"Rollout\"".into());
        }
        if let Some(v) = self.metadata.annotations.get(APPROVAL_ANNOTATION) {
            if v != "required" && v != "four-eyes" {
                err(
                    &format!("metadata.annotations.{APPROVAL_ANNOTATION}"),
                    format!("{v:?}: use \"required\" or \"four-eyes\" (approved by someone other than who applied it)"),
                );
            }
        }
        if let Err(reason) = check_name(&self.metadata.name) {
            err("metadata.name", reason);
        }
        let s = &self.spec;
        if s.route.is_empty() {
            err("spec.route", "must name the proxy route to drive".into());
        }
        if !s.matches.is_empty() {
            // The proxies' own validation, so a match the engine accepts is one every proxy
            // compiles (a table a proxy refuses would never be applied).
            let probe = serde_json::json!({
                "listen": "127.0.0.1:1", "admin": "127.0.0.1:2",
                "routes": [{"name": "r", "match": s.matches, "split": {"backends": [
                    {"name": "b", "addrs": ["127.0.0.1:3"], "weight": 1}]}}],
            });
            if let Err(e) = vireo_types::config::Config::parse(&probe.to_string()) {
                for f in e.errors {
                    let path = f.path.replacen("routes[0].match", "spec.match", 1);
                    err(&path, f.reason);
                }
            }
        }
        for (field, w) in [("spec.stable", &s.stable), ("spec.canary", &s.canary)] {
            if w.version.is_empty() {
                err(&format!("{field}.version"), "must not be empty".into());
            }
            if w.addrs.is_empty() {
                err(
                    &format!("{field}.addrs"),
                    "needs at least one host:port".into(),
                );
            }
            for (i, a) in w.addrs.iter().enumerate() {
                if let Err(reason) = check_host_port(a) {
                    err(&format!("{field}.addrs[{i}]"), reason);
                }
            }
        }
        if !s.canary.version.is_empty() && s.canary.version == s.stable.version {
            err(
                "spec.canary.version",
                format!(
                    "must differ from spec.stable.version ({:?})",
                    s.stable.version
                ),
            );
        }
        if s.split.buckets == 0 || s.split.buckets > vireo_types::split::MAX_BUCKETS {
            err(
                "spec.split.buckets",
                format!("must be 1..={}", vireo_types::split::MAX_BUCKETS),
            );
        }
        let steps = &s.strategy.canary.steps;
        if steps.is_empty() {
            err(
                "spec.strategy.canary.steps",
                "needs at least one step".into(),
            );
        }
        for (i, step) in steps.iter().enumerate() {
            if let Step::Analysis(a) = step {
                let p = format!("spec.strategy.canary.steps[{i}].analysis.templates");
                if a.templates.is_empty() {
                    err(&p, "needs at least one templateName".into());
                }
                for (t, r) in a.templates.iter().enumerate() {
                    if r.template_name.is_empty() {
                        err(
                            &format!("{p}[{t}].templateName"),
                            "must not be empty".into(),
                        );
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SpecError { errors })
        }
    }
}

/// Kubernetes object names (RFC 1123 label): lower-case alphanumerics and `-`, 1–63 chars,
/// starting and ending alphanumeric. They appear in URLs, event sources and file names.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit"
        ))
    }
}

/// `host:port` without resolving: the control plane may not see the workloads' network.
fn check_host_port(addr: &str) -> Result<(), String> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!("{addr:?} is not host:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's example recipe (shared/spec/control.md).
    pub const EXAMPLE: &str = r#"
apiVersion: vireo.dev/v1alpha1
kind: Rollout
metadata: { name: checkout }
spec:
  route: checkout
  stable: { version: v1, image: "reg.example/checkout@sha256:aaa", addrs: ["127.0.0.1:9001"] }
  canary: { version: v2, image: "reg.example/checkout@sha256:bbb", addrs: ["127.0.0.1:9002"] }
  split: { key: { header: x-user-id }, buckets: 100 }
  strategy:
    canary:
      steps:
        - setWeight: 5
        - pause: { duration: 3m }
        - analysis: { templates: [ { templateName: canary-slo } ] }
        - setWeight: 25
        - pause: { duration: 3m }
        - analysis: { templates: [ { templateName: canary-slo } ] }
        - setWeight: 50
        - pause: { duration: 3m }
        - analysis: { templates: [ { templateName: canary-slo } ] }
        - setWeight: 100
        - pause: { duration: 3m }
  rollback:
    downMigration: none
    flag: { key: checkout-v2, disable: { value: false } }
"#;

    fn errors(text: &str) -> Vec<String> {
        Rollout::parse(text)
            .unwrap_err()
            .errors
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn parses_the_spec_example() {
        let r = Rollout::parse(EXAMPLE).unwrap();
        assert_eq!(r.name(), "checkout");
        assert_eq!(r.salt(), "checkout-v2");
        assert_eq!(r.steps().len(), 11);
        assert_eq!(r.steps()[0], Step::SetWeight(5));
        assert_eq!(r.steps()[1], Step::Pause(Some(Duration::from_secs(180))));
        assert!(
            matches!(&r.steps()[2], Step::Analysis(a) if a.templates[0].template_name == "canary-slo")
        );
        // JSON round trip
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(Rollout::parse(&json).unwrap(), r);
    }

    #[test]
    fn a_route_match_is_checked_as_the_proxies_check_it_and_reaches_the_route() {
        let t = EXAMPLE.replace(
            "route: checkout",
            "route: checkout\n  match: { destinations: [\"10.96.0.10:80\"] }",
        );
        let r = Rollout::parse(&t).unwrap();
        assert_eq!(r.spec.matches.destinations, ["10.96.0.10:80"]);
        let t = EXAMPLE.replace(
            "route: checkout",
            "route: checkout\n  match: { destinations: [checkout:80], path_prefix: api }",
        );
        let e = errors(&t);
        assert!(
            e.iter()
                .any(|e| e.starts_with("spec.match.destinations[0]: ")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|e| e.starts_with("spec.match.path_prefix: ")),
            "{e:?}"
        );
    }

    #[test]
    fn pauses_take_argo_forms() {
        let t = EXAMPLE.replace("pause: { duration: 3m }", "pause: { duration: 30 }");
        assert_eq!(
            Rollout::parse(&t).unwrap().steps()[1],
            Step::Pause(Some(Duration::from_secs(30)))
        );
        let t = EXAMPLE.replace("pause: { duration: 3m }", "pause: {}");
        assert_eq!(Rollout::parse(&t).unwrap().steps()[1], Step::Pause(None));
        let t = EXAMPLE.replace("pause: { duration: 3m }", "pause: { duration: soon }");
        assert!(
            errors(&t)[0].contains("\"soon\" is not a duration"),
            "{:?}",
            errors(&t)
        );
    }

    #[test]
    fn weights_out_of_range_name_the_step() {
        let t = EXAMPLE.replace("setWeight: 25", "setWeight: 101");
        let e = errors(&t);
        assert!(
            e[0].starts_with("spec.strategy.canary.steps[3]") && e[0].contains("must be 0..=100"),
            "{e:?}"
        );
        let t = EXAMPLE.replace("setWeight: 25", "setWeight: -1");
        assert!(errors(&t)[0].contains("must be 0..=100"));
    }

    #[test]
    fn unknown_fields_and_bad_steps_are_rejected() {
        let t = EXAMPLE.replace("route: checkout", "route: checkout\n  routes: x");
        assert!(errors(&t)[0].contains("routes"), "{:?}", errors(&t));
        let t = EXAMPLE.replace("- setWeight: 5", "- { setWeight: 5, pause: {} }");
        assert!(errors(&t)[0].contains("exactly one"), "{:?}", errors(&t));
    }

    #[test]
    fn semantic_errors_are_collected_with_paths() {
        let t = EXAMPLE
            .replace(
                "metadata: { name: checkout }",
                "metadata: { name: Checkout_1 }",
            )
            .replace("canary: { version: v2", "canary: { version: v1")
            .replace("[\"127.0.0.1:9002\"]", "[\"nowhere\"]")
            .replace(
                "templateName: canary-slo } ] }\n        - setWeight: 25",
                "templateName: \"\" } ] }\n        - setWeight: 25",
            );
        assert_eq!(
            errors(&t),
            vec![
                "metadata.name: \"Checkout_1\" is not a valid name: use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit",
                "spec.canary.addrs[0]: \"nowhere\" is not host:port",
                "spec.canary.version: must differ from spec.stable.version (\"v1\")",
                "spec.strategy.canary.steps[2].analysis.templates[0].templateName: must not be empty",
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for t in ["", "{", "[", "kind: Rollout", "spec: 5", "\u{0}"] {
            assert!(Rollout::parse(t).is_err(), "{t:?}");
        }
    }
}
