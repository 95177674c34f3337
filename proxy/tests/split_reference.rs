//! The split algorithm against an independent implementation and its statistical promises.

use vireo_proxy::split::{bucket, hash_key, Split};

/// `fixtures/buckets.json` was made by `fixtures/gen_buckets.py` with Python's `xxhash`
/// (`xxh3_64_intdigest(f"{salt}:{key}".encode()) % buckets`), the spec's reference.
#[test]
fn bucket_function_matches_python_xxhash_reference() {
    let text = include_str!("fixtures/buckets.json");
    let fixture: serde_json::Value = serde_json::from_str(text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 200, "fixture too small: {}", cases.len());
    let mut checked = 0;
    for case in cases {
        let salt = case["salt"].as_str().unwrap();
        let key = case["key"].as_str().unwrap();
        let want: u64 = case["hash"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            hash_key(salt.as_bytes(), key.as_bytes()),
            want,
            "{salt:?}:{key:?}"
        );
        for (buckets, want) in case["buckets"].as_object().unwrap() {
            let buckets: u32 = buckets.parse().unwrap();
            let got = bucket(salt.as_bytes(), key.as_bytes(), buckets);
            assert_eq!(
                u64::from(got),
                want.as_u64().unwrap(),
                "{salt:?}:{key:?} mod {buckets}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 1000);
}

fn canary_share(split: &Split, salt: &str, keys: usize) -> f64 {
    let hits = (0..keys)
        .filter(|i| split.backend_for_key(salt.as_bytes(), format!("user-{i}").as_bytes()) == 0)
        .count();
    hits as f64 / keys as f64
}

#[test]
fn five_percent_weight_takes_five_percent_of_users() {
    let split = Split::new(100, &[5, 95]).unwrap();
    let share = canary_share(&split, "checkout-v2", 100_000);
    assert!((share - 0.05).abs() <= 0.005, "canary share {share}");
    // Finer buckets give the same promise.
    let split = Split::new(10_000, &[5, 95]).unwrap();
    let share = canary_share(&split, "other-salt", 100_000);
    assert!((share - 0.05).abs() <= 0.005, "canary share {share}");
}

#[test]
fn weighted_random_follows_the_weights() {
    let split = Split::new(100, &[5, 25, 70]).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let mut counts = [0u32; 3];
    for _ in 0..100_000 {
        counts[split.backend_for_random(rng.u64(..))] += 1;
    }
    for (got, want) in counts.iter().zip([0.05, 0.25, 0.70]) {
        let share = f64::from(*got) / 100_000.0;
        assert!((share - want).abs() <= 0.005, "{counts:?}");
    }
}

#[test]
fn cohorts_are_monotonic_as_the_canary_grows() {
    let salt = b"checkout-v2";
    let steps = [5u32, 25, 50, 100];
    let splits: Vec<Split> = steps
        .iter()
        .map(|&w| Split::new(100, &[w, 100 - w]).unwrap())
        .collect();
    let mut admitted_at_5 = 0;
    for i in 0..100_000 {
        let key = format!("user-{i}");
        let in_canary: Vec<bool> = splits
            .iter()
            .map(|s| s.backend_for_key(salt, key.as_bytes()) == 0)
            .collect();
        // Once in, always in: no user goes back to stable as the weight rises.
        for pair in in_canary.windows(2) {
            assert!(!pair[0] || pair[1], "{key} left the canary: {in_canary:?}");
        }
        admitted_at_5 += usize::from(in_canary[0]);
    }
    assert!(
        admitted_at_5 > 4_000,
        "only {admitted_at_5} admitted at 5 %"
    );
}

#[test]
fn changing_the_salt_reshuffles_users() {
    let split = Split::new(100, &[50, 50]).unwrap();
    let moved = (0..10_000)
        .filter(|i| {
            let k = format!("user-{i}");
            split.backend_for_key(b"salt-a", k.as_bytes())
                != split.backend_for_key(b"salt-b", k.as_bytes())
        })
        .count();
    // Independent halves: about half the users change side.
    assert!((4_000..6_000).contains(&moved), "{moved} moved");
}
