//! The API's errors as `Status` objects, with the reasons clients switch on.

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }
    pub fn not_found(resource: &str, name: &str) -> ApiError {
        let mut e = ApiError::new(404, "NotFound", format!("{resource} \"{name}\" not found"));
        e.details = json!({"name": name, "kind": resource});
        e
    }
    pub fn already_exists(resource: &str, name: &str) -> ApiError {
        let mut e = ApiError::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        );
        e.details = json!({"name": name, "kind": resource});
        e
    }
    pub fn conflict(resource: &str, name: &str) -> ApiError {
        let mut e = ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"),
        );
        e.details = json!({"name": name, "kind": resource});
        e
    }
    pub fn invalid(kind: &str, name: &str, causes: Vec<String>) -> ApiError {
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {}", causes.join(", ")),
        );
        e.details = json!({"name": name, "kind": kind,
            "causes": causes.iter().map(|c| json!({"message": c})).collect::<Vec<_>>()});
        e
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }
    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            v["details"] = self.details.clone();
        }
        v
    }
}
