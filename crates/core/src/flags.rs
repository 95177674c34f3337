//! Feature flags, evaluated the OpenFeature way and served over OFREP (`api`).
//!
//! Pure: a flag's definition and its validation, and [`evaluate`], which takes the flag, the
//! evaluation context and the rollouts' current cohorts. A `fraction` hashes the targeting key
//! with the proxy's own bucket function (`vireo_types::split`), and `rollout: NAME` asks the
//! route the proxies were last sent for that rollout which version the key lands on: the user
//! who gets the canary build gets the canary variant — one implementation, one notion of "the
//! 5 %".
//!
//! Evaluation order (first that applies): disabled → `DISABLED` (default variant); a matching
//! rule → `TARGETING_MATCH`; `rollout` → `SPLIT`; `fraction` → `SPLIT`; a flag with targeting
//! that matched nothing → `DEFAULT`; a flag without targeting → `STATIC`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vireo_types::config::{ConfigError, FieldError, Route};
use vireo_types::split::{self, Split};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Flag {
    pub key: String,
    /// Variant name → value (any JSON).
    pub variants: BTreeMap<String, Value>,
    pub default_variant: String,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
    /// The canary cohort of this rollout, right now, gets [`Flag::rollout_variant`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// Default: the first variant (by name) that is not the default variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_variant: Option<String>,
    /// Returned with every evaluation (OFREP `metadata`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
}

fn enabled_by_default() -> bool {
    true
}

/// An attribute match: `equals` one value or is `in` a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub attribute: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    pub variant: String,
}

/// Variants owning consecutive bucket ranges, in listed order, over the proxy's bucket hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fraction {
    /// Default: the flag's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    #[serde(default = "hundred")]
    pub buckets: u32,
    pub variants: Vec<WeightedVariant>,
}

fn hundred() -> u32 {
    100
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedVariant {
    pub variant: String,
    pub weight: u32,
}

impl Flag {
    /// Parses YAML or JSON and validates; every error has its field path.
    pub fn parse(text: &str) -> Result<Flag, ConfigError> {
        let f: Flag = vireo_types::config::parse_document(text)?;
        f.validate()?;
        Ok(f)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        let mut err = |path: String, reason: String| errors.push(FieldError { path, reason });
        let known = |v: &str| self.variants.contains_key(v);
        let key_ok = !self.key.is_empty()
            && self.key.len() <= 128
            && self
                .key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !key_ok {
            err(
                "key".into(),
                "use 1-128 letters, digits, '-', '_' or '.'".into(),
            );
        }
        if self.variants.is_empty() {
            err("variants".into(), "needs at least one variant".into());
        }
        if !known(&self.default_variant) {
            err(
                "defaultVariant".into(),
                format!("{:?} is not one of the variants", self.default_variant),
            );
        }
        for (i, r) in self.rules.iter().enumerate() {
            if r.equals.is_some() == r.one_of.is_some() {
                err(
                    format!("rules[{i}]"),
                    "set exactly one of equals and in".into(),
                );
            }
            if !known(&r.variant) {
                err(
                    format!("rules[{i}].variant"),
                    format!("{:?} is not one of the variants", r.variant),
                );
            }
        }
        if self.fraction.is_some() && self.rollout.is_some() {
            err(
                "fraction".into(),
                "a flag follows a fraction or a rollout's cohort, not both".into(),
            );
        }
        if let Some(f) = &self.fraction {
            if f.buckets == 0 || f.buckets > split::MAX_BUCKETS {
                err(
                    "fraction.buckets".into(),
                    format!("must be 1..={}", split::MAX_BUCKETS),
                );
            }
            if f.variants.iter().map(|v| u64::from(v.weight)).sum::<u64>() == 0 {
                err(
                    "fraction.variants".into(),
                    "the weights must add up to more than 0".into(),
                );
            }
            for (i, v) in f.variants.iter().enumerate() {
                if !known(&v.variant) {
                    err(
                        format!("fraction.variants[{i}].variant"),
                        format!("{:?} is not one of the variants", v.variant),
                    );
                }
            }
        }
        if let Some(v) = &self.rollout_variant {
            if !known(v) {
                err(
                    "rolloutVariant".into(),
                    format!("{v:?} is not one of the variants"),
                );
            }
        } else if self.rollout.is_some() && self.canary_variant().is_none() {
            err(
                "variants".into(),
                "a rollout flag needs a variant besides the default one for the canary cohort"
                    .into(),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { errors })
        }
    }

    /// The variant the rollout's canary cohort gets.
    pub fn canary_variant(&self) -> Option<&str> {
        self.rollout_variant.as_deref().or_else(|| {
            self.variants
                .keys()
                .map(String::as_str)
                .find(|v| *v != self.default_variant)
        })
    }

    fn has_targeting(&self) -> bool {
        !self.rules.is_empty() || self.fraction.is_some() || self.rollout.is_some()
    }
}

/// Where a rollout's route sends a key right now.
#[derive(Debug, Clone)]
pub struct Cohort {
    salt: Vec<u8>,
    split: Split,
    /// Whether each backend, in the route's order, runs the canary's build.
    canary: Vec<bool>,
}

impl Cohort {
    /// From the route last published for a rollout, whose canary runs `canary_version`: the
    /// backend named `canary`, or, once promoted (no canary backend left), the backend running
    /// its version. `None` when the route does not split on a key: the proxy then picks at
    /// random per request, and no flag can follow that.
    pub fn from_route(route: &Route, canary_version: &str) -> Option<Cohort> {
        let s = &route.split;
        s.key.as_ref()?;
        let named = s.backends.iter().any(|b| b.name == crate::routes::CANARY);
        let canary = s
            .backends
            .iter()
            .map(|b| match named {
                true => b.name == crate::routes::CANARY,
                false => b.version == canary_version,
            })
            .collect();
        let weights: Vec<u32> = s
            .backends
            .iter()
            .map(|b| u32::try_from(b.weight.max(0)).unwrap_or(0))
            .collect();
        Some(Cohort {
            salt: s
                .salt
                .clone()
                .unwrap_or_else(|| route.name.clone())
                .into_bytes(),
            split: Split::new(s.buckets, &weights).ok()?,
            canary,
        })
    }

    /// (bucket, whether the key lands on the canary's version).
    pub fn place(&self, key: &str) -> (u32, bool) {
        let bucket = split::bucket(&self.salt, key.as_bytes(), self.split.buckets());
        let backend = self.split.backend_for_bucket(bucket);
        (bucket, self.canary.get(backend).copied().unwrap_or(false))
    }
}

/// Every rollout's cohort, by rollout name, as of a route-table version.
#[derive(Debug, Clone, Default)]
pub struct Cohorts {
    pub version: u64,
    pub by_rollout: HashMap<String, Cohort>,
}

/// Every flag, as of a version (it grows with each change).
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    pub version: u64,
    pub flags: BTreeMap<String, Arc<Flag>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    Static,
    TargetingMatch,
    Split,
    Disabled,
    Default,
}

/// A successful evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub value: Value,
    pub variant: String,
    pub reason: Reason,
    /// The targeting key's bucket, when a split decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<u32>,
}

/// OFREP error codes of a failed evaluation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error(
        "TARGETING_KEY_MISSING: this flag splits on the targeting key; set context.targetingKey"
    )]
    TargetingKeyMissing,
    #[error("INVALID_CONTEXT: {0}")]
    InvalidContext(String),
}

impl EvalError {
    pub fn code(&self) -> &'static str {
        match self {
            EvalError::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            EvalError::InvalidContext(_) => "INVALID_CONTEXT",
        }
    }
}

/// The targeting key of a context, if it has one (it must be a string).
pub fn targeting_key(ctx: &Map<String, Value>) -> Result<Option<&str>, EvalError> {
    match ctx.get("targetingKey") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(k)) => Ok(Some(k)),
        Some(_) => Err(EvalError::InvalidContext(
            "targetingKey must be a string".into(),
        )),
    }
}

/// Evaluates `flag` for `ctx` (the OpenFeature evaluation context).
pub fn evaluate(
    flag: &Flag,
    ctx: &Map<String, Value>,
    cohorts: &Cohorts,
) -> Result<Evaluation, EvalError> {
    let key = targeting_key(ctx)?;
    let pick = |variant: &str, reason: Reason, bucket: Option<u32>| Evaluation {
        value: flag.variants.get(variant).cloned().unwrap_or(Value::Null),
        variant: variant.to_string(),
        reason,
        bucket,
    };
    if !flag.enabled {
        return Ok(pick(&flag.default_variant, Reason::Disabled, None));
    }
    for r in &flag.rules {
        let Some(v) = ctx.get(&r.attribute) else {
            continue;
        };
        let hit = match (&r.equals, &r.one_of) {
            (Some(want), _) => v == want,
            (_, Some(list)) => list.contains(v),
            _ => false,
        };
        if hit {
            return Ok(pick(&r.variant, Reason::TargetingMatch, None));
        }
    }
    if let Some(rollout) = &flag.rollout {
        let key = key.ok_or(EvalError::TargetingKeyMissing)?;
        let Some(cohort) = cohorts.by_rollout.get(rollout) else {
            // Not (or no longer) routed by us: nobody is in its canary.
            return Ok(pick(&flag.default_variant, Reason::Default, None));
        };
        let (bucket, canary) = cohort.place(key);
        let variant = match canary {
            true => flag.canary_variant().unwrap_or(&flag.default_variant),
            false => &flag.default_variant,
        };
        return Ok(pick(variant, Reason::Split, Some(bucket)));
    }
    if let Some(f) = &flag.fraction {
        let key = key.ok_or(EvalError::TargetingKeyMissing)?;
        let salt = f.salt.as_deref().unwrap_or(&flag.key);
        let weights: Vec<u32> = f.variants.iter().map(|v| v.weight).collect();
        if let Ok(split) = Split::new(f.buckets, &weights) {
            let bucket = split::bucket(salt.as_bytes(), key.as_bytes(), f.buckets);
            let variant = &f.variants[split.backend_for_bucket(bucket)].variant;
            return Ok(pick(variant, Reason::Split, Some(bucket)));
        }
    }
    let reason = if flag.has_targeting() {
        Reason::Default
    } else {
        Reason::Static
    };
    Ok(pick(&flag.default_variant, reason, None))
}

/// The evaluation context of an OFREP request body (`{"context": {...}}`; an empty body is an
/// empty context), or the OFREP error code and why. (Pure, so it is fuzzed: `fuzz/`.)
pub fn ofrep_context(
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, (&'static str, String)> {
    use serde_json::{Map, Value};
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ("PARSE_ERROR", format!("the body is not JSON: {e}")))?;
    match v.get("context") {
        None | Some(Value::Null) if v.is_object() => Ok(Map::new()),
        Some(Value::Object(c)) => Ok(c.clone()),
        Some(_) => Err(("INVALID_CONTEXT", "context must be a JSON object".into())),
        None => Err((
            "INVALID_CONTEXT",
            "the body must be {\"context\": {...}}".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const FLAG: &str = r#"
key: new-checkout
variants: { on: true, off: false }
defaultVariant: off
rules: [ { attribute: tenant, in: [ acme ], variant: on } ]
fraction: { salt: s, buckets: 100, variants: [ { variant: on, weight: 5 }, { variant: off, weight: 95 } ] }
"#;

    #[test]
    fn rules_then_fraction_by_the_proxys_buckets_then_default() {
        let f = Flag::parse(FLAG).unwrap();
        let none = Cohorts::default();
        let e = evaluate(
            &f,
            &ctx(json!({"targetingKey": "u", "tenant": "acme"})),
            &none,
        )
        .unwrap();
        assert_eq!(
            (e.variant.as_str(), e.reason),
            ("on", Reason::TargetingMatch)
        );
        for i in 0..500 {
            let user = format!("u-{i}");
            let e = evaluate(&f, &ctx(json!({ "targetingKey": user })), &none).unwrap();
            let bucket = split::bucket(b"s", user.as_bytes(), 100);
            assert_eq!(e.bucket, Some(bucket));
            assert_eq!(e.variant == "on", bucket < 5, "{user}");
            assert_eq!(e.value, json!(bucket < 5));
            assert_eq!(e.reason, Reason::Split);
        }
        assert_eq!(
            evaluate(&f, &ctx(json!({})), &none),
            Err(EvalError::TargetingKeyMissing)
        );
        assert!(matches!(
            evaluate(&f, &ctx(json!({"targetingKey": 7})), &none),
            Err(EvalError::InvalidContext(_))
        ));
        let mut off = f.clone();
        off.enabled = false;
        let e = evaluate(&off, &ctx(json!({"targetingKey": "u"})), &none).unwrap();
        assert_eq!((e.variant.as_str(), e.reason), ("off", Reason::Disabled));
        let plain = Flag::parse("key: k\nvariants: { a: 1 }\ndefaultVariant: a\n").unwrap();
        let e = evaluate(&plain, &ctx(json!({})), &none).unwrap();
        assert_eq!((e.value, e.reason), (json!(1), Reason::Static));
    }

    #[test]
    fn a_rollout_flag_admits_exactly_the_routes_canary_cohort() {
        let r = crate::spec::Rollout::parse(crate::testdata::ROLLOUT).unwrap();
        let f = Flag::parse(
            "key: f\nvariants: { on: true, off: false }\ndefaultVariant: off\nrollout: checkout\n",
        )
        .unwrap();
        for w in [0u8, 5, 25, 50, 100] {
            let route = crate::routes::route(&r, w);
            let mut cohorts = Cohorts::default();
            cohorts
                .by_rollout
                .insert("checkout".into(), Cohort::from_route(&route, "v2").unwrap());
            let mut admitted = 0;
            for i in 0..2_000 {
                let user = format!("u-{i}");
                let e = evaluate(&f, &ctx(json!({ "targetingKey": user })), &cohorts).unwrap();
                let canary = split::bucket(b"checkout-v2", user.as_bytes(), 100) < u32::from(w);
                assert_eq!(e.variant == "on", canary, "{user} at {w} %");
                admitted += usize::from(canary);
            }
            assert!(w == 0 || admitted > 0);
        }
        // Promoted: everyone runs v2, so everyone gets the canary variant.
        let mut cohorts = Cohorts::default();
        cohorts.by_rollout.insert(
            "checkout".into(),
            Cohort::from_route(&crate::routes::promoted_route(&r), "v2").unwrap(),
        );
        let e = evaluate(&f, &ctx(json!({"targetingKey": "x"})), &cohorts).unwrap();
        assert_eq!(e.variant, "on");
    }

    #[test]
    fn bad_definitions_name_their_fields() {
        let err = Flag::parse(
            "key: 'a b'\nvariants: { on: true }\ndefaultVariant: off\nrules: [ { attribute: x, variant: nope } ]\n\
             fraction: { buckets: 0, variants: [ { variant: on, weight: 0 } ] }\nrollout: r\n",
        )
        .unwrap_err();
        let paths: Vec<&str> = err.errors.iter().map(|e| e.path.as_str()).collect();
        for p in [
            "key",
            "defaultVariant",
            "rules[0]",
            "rules[0].variant",
            "fraction",
            "fraction.buckets",
            "fraction.variants",
        ] {
            assert!(paths.contains(&p), "{p} missing in {paths:?}");
        }
        assert!(Flag::parse("key: k\nvariants: {}\ndefaultVariant: a\nbogus: 1\n").is_err());
    }
}
