//! The protobuf JSON mapping for every message of this crate, driven by the descriptors that
//! the build compiled, so that Connect's `application/json` needs no per-message code.

use std::sync::LazyLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, SerializeOptions};

static DESCRIPTORS: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(&include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"))[..])
        .expect("the build wrote a valid descriptor set")
});

/// A JSON payload that does not fit the message.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The message name is not among the compiled protos (a programming error).
    #[error("unknown message type {0}")]
    UnknownMessage(String),
    /// The JSON is malformed or does not match the message's fields.
    #[error("invalid JSON for {message}: {reason}")]
    Invalid { message: String, reason: String },
}

/// Parses `json` as the message called `full_name` (e.g. `push.v1.PushRequest`).
/// Unknown fields are ignored, as the JSON mapping recommends for forward compatibility.
pub fn from_json<M: Message + Default>(full_name: &str, json: &[u8]) -> Result<M, JsonError> {
    let descriptor = DESCRIPTORS
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_string()))?;
    let invalid = |reason: String| JsonError::Invalid {
        message: full_name.to_string(),
        reason,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let dynamic = DynamicMessage::deserialize_with_options(descriptor, &mut deserializer, &options)
        .map_err(|e| invalid(e.to_string()))?;
    deserializer.end().map_err(|e| invalid(e.to_string()))?;
    M::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| invalid(e.to_string()))
}

/// Writes `message` (of type `full_name`) as JSON: lowerCamelCase names, 64-bit integers as
/// strings, enums by name, default values omitted.
pub fn to_json<M: Message>(full_name: &str, message: &M) -> Result<Vec<u8>, JsonError> {
    let descriptor = DESCRIPTORS
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_string()))?;
    let invalid = |reason: String| JsonError::Invalid {
        message: full_name.to_string(),
        reason,
    };
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| invalid(e.to_string()))?;
    let mut serializer = serde_json::Serializer::new(Vec::new());
    dynamic
        .serialize_with_options(&mut serializer, &SerializeOptions::new())
        .map_err(|e| invalid(e.to_string()))?;
    Ok(serializer.into_inner())
}
