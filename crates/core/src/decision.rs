//! Decision ids: how a gate decision or an analysis verdict is named in events, the
//! transparency log and `vireo replay`. One spelling, here, for every side that names them.

/// The decision id of an analysis verdict: `NAME.gN.analysis-RUN`.
pub fn analysis_decision(rollout: &str, generation: u64, run: u64) -> String {
    format!("{rollout}.g{generation}.analysis-{run}")
}

/// The gate's decision id: `NAME.gN.gate`, and `NAME.gN.gate-rK` for the K-th retry of the
/// generation (each attempt passes the gate again).
pub fn gate_decision_id(rollout: &str, generation: u64, attempt: u32) -> String {
    match attempt {
        0 => format!("{rollout}.g{generation}.gate"),
        k => format!("{rollout}.g{generation}.gate-r{k}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(
            analysis_decision("checkout", 2, 7),
            "checkout.g2.analysis-7"
        );
        assert_eq!(gate_decision_id("checkout", 1, 0), "checkout.g1.gate");
        assert_eq!(gate_decision_id("checkout", 1, 2), "checkout.g1.gate-r2");
    }
}
