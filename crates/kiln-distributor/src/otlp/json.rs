//! OTLP/JSON: the protobuf JSON mapping, except that trace, span and profile ids are hex
//! strings instead of base64. Ids are rewritten to base64 before the generic JSON decoder runs;
//! their lengths tell the two encodings apart unambiguously.

use base64::Engine;
use serde_json::Value;

/// Byte length of each id field.
fn id_length(key: &str) -> Option<usize> {
    match key {
        "traceId" | "trace_id" | "profileId" | "profile_id" => Some(16),
        "spanId" | "span_id" => Some(8),
        _ => None,
    }
}

/// Rewrites hex ids in place to the base64 the protobuf JSON mapping expects.
pub(crate) fn hex_ids_to_base64(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if let (Some(bytes), Value::String(text)) = (id_length(key), &*child)
                    && text.len() == bytes * 2
                    && let Some(decoded) = decode_hex(text)
                {
                    *child =
                        Value::String(base64::engine::general_purpose::STANDARD.encode(decoded));
                    continue;
                }
                hex_ids_to_base64(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(hex_ids_to_base64),
        _ => {}
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_hex_ids_only() {
        let mut json = serde_json::json!({
            "dictionary": {"linkTable": [{}, {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708"}]},
            "other": {"traceId": "AQIDBAUGBwgJCgsMDQ4PEA=="}
        });
        hex_ids_to_base64(&mut json);
        assert_eq!(
            json["dictionary"]["linkTable"][1]["traceId"],
            "AQIDBAUGBwgJCgsMDQ4PEA=="
        );
        assert_eq!(json["dictionary"]["linkTable"][1]["spanId"], "AQIDBAUGBwg=");
        assert_eq!(json["other"]["traceId"], "AQIDBAUGBwgJCgsMDQ4PEA==");
    }
}
