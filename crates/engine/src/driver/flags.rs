//! The flag store on the driver: flags are written with their event in one transaction, and
//! the set OFREP reads is swapped whole.

use super::*;

impl Driver {
    pub(super) fn put_flag(&mut self, flag: Flag) -> Result<Flag, ApiError> {
        let spec = serde_json::to_string(&flag).map_err(|e| ApiError::Internal(e.to_string()))?;
        let event = self.flag_event(
            &flag.key,
            vireo_core::events::FLAG_DEFINED,
            serde_json::to_value(&flag).unwrap_or_default(),
        )?;
        self.store
            .put_flag(&flag.key, &spec, self.clock.now_ms(), event)?;
        self.swap_flag(flag.clone());
        self.publish_events();
        tracing::info!(flag = %flag.key, "flag stored");
        Ok(flag)
    }

    /// An event about a flag, with an id from a durable counter (unique across restarts).
    pub(super) fn flag_event(
        &mut self,
        key: &str,
        ty: &str,
        data: serde_json::Value,
    ) -> Result<CloudEvent, ApiError> {
        let n = self.store.next("event_id")?;
        Ok(vireo_core::events::event(
            format!("flag-{n}"),
            vireo_core::events::flag_source(&self.shared.instance, key),
            ty,
            self.clock.now_ms(),
            key,
            data,
        ))
    }

    pub(super) fn swap_flag(&self, flag: Flag) {
        let mut set = FlagSet::clone(&self.shared.flags.load());
        set.version += 1;
        set.flags.insert(flag.key.clone(), Arc::new(flag));
        self.shared.flags.store(Arc::new(set));
    }

    /// Enables or disables a flag; the toggle is an event (`dev.vireo.flag.toggled`).
    pub(super) fn toggle_flag(
        &mut self,
        key: &str,
        enabled: bool,
        actor: &str,
    ) -> Result<Flag, ApiError> {
        let Some(flag) = self.shared.flags.load().flags.get(key).cloned() else {
            return Err(ApiError::NotFound(format!("no flag {key:?}")));
        };
        let mut flag = Flag::clone(&flag);
        let was = flag.enabled;
        flag.enabled = enabled;
        let spec = serde_json::to_string(&flag).map_err(|e| ApiError::Internal(e.to_string()))?;
        let event = self.flag_event(
            key,
            vireo_core::events::FLAG_TOGGLED,
            serde_json::json!({"flag": key, "enabled": enabled, "was": was, "actor": actor}),
        )?;
        self.store
            .put_flag(key, &spec, self.clock.now_ms(), event)?;
        self.swap_flag(flag.clone());
        self.publish_events();
        tracing::info!(flag = %key, enabled, by = %actor, "flag toggled");
        Ok(flag)
    }
}
