//! The smallest actuator: applies every decision at once. For benchmarks.

wit_bindgen::generate!({ path: "../../../plugins/wit", world: "actuator" });

struct Trivial;

impl Guest for Trivial {
    fn info() -> PluginInfo {
        PluginInfo { name: "trivial".into(), version: "0".into(), target_kinds: vec![] }
    }

    fn observe(_target: String) -> Result<Observation, ActuationError> {
        Ok(Observation { replicas: 1, ready: true })
    }

    fn apply(d: Decision) -> Result<Outcome, ActuationError> {
        Ok(Outcome { replicas: d.to, message: String::new() })
    }
}

export!(Trivial);
