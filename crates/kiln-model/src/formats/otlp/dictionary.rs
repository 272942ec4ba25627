//! The request's shared dictionary: checked once, then looked up by every profile.

use kiln_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use kiln_proto::opentelemetry::proto::profiles::v1development::{
    KeyValueAndUnit, ProfilesDictionary,
};

use super::OtlpError;

/// Checks every index inside the dictionary: a request in an older layout decodes into
/// indices that point nowhere, and must be refused rather than stored as garbage.
pub(super) fn check_dictionary(d: &ProfilesDictionary) -> Result<(), OtlpError> {
    if d.string_table.first().is_some_and(|s| !s.is_empty()) {
        return Err(OtlpError::StringTableStart);
    }
    let strings = d.string_table.len().max(1);
    for (entry, f) in d.function_table.iter().enumerate() {
        let check = |field, index| check_index("function_table", entry, field, index, strings);
        check("name_strindex", f.name_strindex)?;
        check("system_name_strindex", f.system_name_strindex)?;
        check("filename_strindex", f.filename_strindex)?;
    }
    for (entry, m) in d.mapping_table.iter().enumerate() {
        let check = |field, index, len| check_index("mapping_table", entry, field, index, len);
        check("filename_strindex", m.filename_strindex, strings)?;
        for &a in &m.attribute_indices {
            check("attribute_indices", a, d.attribute_table.len())?;
        }
    }
    for (entry, l) in d.location_table.iter().enumerate() {
        let check = |field, index, len| check_index("location_table", entry, field, index, len);
        check("mapping_index", l.mapping_index, d.mapping_table.len())?;
        for line in &l.lines {
            check(
                "lines.function_index",
                line.function_index,
                d.function_table.len(),
            )?;
        }
        for &a in &l.attribute_indices {
            check("attribute_indices", a, d.attribute_table.len())?;
        }
    }
    for (entry, s) in d.stack_table.iter().enumerate() {
        for &l in &s.location_indices {
            check_index(
                "stack_table",
                entry,
                "location_indices",
                l,
                d.location_table.len(),
            )?;
        }
    }
    for (entry, a) in d.attribute_table.iter().enumerate() {
        let check = |field, index| check_index("attribute_table", entry, field, index, strings);
        check("key_strindex", a.key_strindex)?;
        check("unit_strindex", a.unit_strindex)?;
        if let Some(any_value::Value::StringValueStrindex(index)) =
            a.value.as_ref().and_then(|v| v.value.as_ref())
        {
            check("value.string_value_strindex", *index)?;
        }
    }
    for (entry, link) in d.link_table.iter().enumerate().skip(1) {
        if link.trace_id.len() != 16 || link.span_id.len() != 8 {
            return Err(OtlpError::LinkIdLength {
                entry,
                trace_id: link.trace_id.len(),
                span_id: link.span_id.len(),
            });
        }
    }
    Ok(())
}

/// Checks that `index`, found in `table[entry].field`, is below `len` (or is 0: every table
/// has its zero entry, even when the sender left it out).
fn check_index(
    table: &'static str,
    entry: usize,
    field: &'static str,
    index: i32,
    len: usize,
) -> Result<(), OtlpError> {
    if index < 0 || index as usize >= len.max(1) {
        Err(OtlpError::DictionaryIndex {
            table,
            entry,
            field,
            index,
            len,
        })
    } else {
        Ok(())
    }
}

/// A checked dictionary and the lookups conversion needs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dictionary<'a> {
    /// The dictionary, its indices checked by [`check_dictionary`].
    pub(super) d: &'a ProfilesDictionary,
}

impl<'a> Dictionary<'a> {
    /// Wraps a dictionary that [`check_dictionary`] accepted.
    pub(super) fn new(d: &'a ProfilesDictionary) -> Self {
        Self { d }
    }

    /// The string at `index`; "" outside the table.
    pub(super) fn string(&self, index: i32) -> &'a str {
        self.d
            .string_table
            .get(index as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// Whether `index` is a valid `attribute_table` index (0 always is).
    pub(super) fn has_attribute(&self, index: i32) -> bool {
        index >= 0 && (index as usize) < self.d.attribute_table.len().max(1)
    }

    /// The string form of an attribute value; None for values that make no label.
    pub(super) fn value_string(&self, value: Option<&AnyValue>) -> Option<String> {
        match value?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            any_value::Value::StringValueStrindex(i) => Some(self.string(*i).to_string()),
            any_value::Value::BoolValue(b) => Some(b.to_string()),
            any_value::Value::IntValue(i) => Some(i.to_string()),
            any_value::Value::DoubleValue(d) => Some(d.to_string()),
            _ => None,
        }
    }

    /// A resource or scope attribute as a (key, value) pair; its key may be a string index.
    pub(super) fn key_value(&self, kv: &KeyValue) -> Option<(String, String)> {
        let key = if kv.key.is_empty() {
            self.string(kv.key_strindex).to_string()
        } else {
            kv.key.clone()
        };
        Some((key, self.value_string(kv.value.as_ref())?))
    }

    /// The (key, value) pair of `attribute_table[index]`; None for index 0, an index outside
    /// the table, or a value that makes no label.
    pub(super) fn attribute(&self, index: i32) -> Option<(String, String)> {
        let a: &KeyValueAndUnit = self.d.attribute_table.get(index as usize)?;
        if index == 0 {
            return None;
        }
        Some((
            self.string(a.key_strindex).to_string(),
            self.value_string(a.value.as_ref())?,
        ))
    }
}
