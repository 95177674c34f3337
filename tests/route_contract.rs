//! The route the control plane publishes, compiled by the proxy's own route table: the
//! split the rollout means is the split the proxy makes, user by user.

use vireo_core::routes::{promoted_route, route, CANARY, STABLE};
use vireo_core::spec::Rollout;
use vireo_proxy::metrics::Metrics;
use vireo_proxy::route::{RouteTable, Selection};
use vireo_types::config::Config;
use vireo_types::config::Route;

use vireo_core::testdata::ROLLOUT;

/// Compiles routes as a proxy would, and asks it where a user goes.
fn proxy_pick(route: Route, user: &str) -> (String, String) {
    let mut config = Config::parse("listen: 127.0.0.1:1\nadmin: 127.0.0.1:2\n").unwrap();
    config.routes = vec![route];
    let table = RouteTable::compile(config, 1, &Metrics::new(&[1.0])).unwrap();
    let mut h = http::HeaderMap::new();
    h.insert("x-user-id", user.parse().unwrap());
    match table.select(&"/".parse().unwrap(), &h, None, || 0) {
        Selection::Backend { backend, .. } => (backend.name().into(), backend.version().into()),
        Selection::Unmatched(_) => panic!("unmatched"),
    }
}

#[test]
fn the_published_route_is_valid_for_the_proxy_and_splits_by_the_rollout_salt() {
    let r = Rollout::parse(ROLLOUT).unwrap();
    let route5 = route(&r, 5);
    assert_eq!(route5.split.salt.as_deref(), Some("checkout-v2"));
    assert_eq!(route5.split.backends[0].name, CANARY);
    assert_eq!(
        (
            route5.split.backends[0].weight,
            route5.split.backends[1].weight
        ),
        (5, 95)
    );
    for i in 0..200 {
        let user = format!("u-{i}");
        let in_canary = vireo_types::split::bucket(b"checkout-v2", user.as_bytes(), 100) < 5;
        let (name, version) = proxy_pick(route5.clone(), &user);
        assert_eq!(name == CANARY, in_canary, "{user}");
        assert_eq!(version, if in_canary { "v2" } else { "v1" });
    }
}

#[test]
fn weight_zero_keeps_the_canary_listed_and_promotion_leaves_only_the_new_version() {
    let r = Rollout::parse(ROLLOUT).unwrap();
    let zero = route(&r, 0);
    assert_eq!(
        zero.split.backends.len(),
        2,
        "listed, so its in-flight requests stay visible"
    );
    assert_eq!(proxy_pick(zero, "anyone").0, STABLE);
    let promoted = promoted_route(&r);
    assert_eq!(promoted.split.backends.len(), 1);
    assert_eq!(
        proxy_pick(promoted, "anyone"),
        (STABLE.to_string(), "v2".to_string())
    );
}
