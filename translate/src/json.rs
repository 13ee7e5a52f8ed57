//! Reading config text as JSON the way MXC's parser does: one object, no trailing data, no
//! duplicate keys at any depth (serde_json's own `Value` silently keeps the last duplicate).

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A JSON syntax or duplicate-key failure: the JSON path where it happened and what is wrong.
#[derive(Debug)]
pub(crate) struct JsonError {
    pub path: String,
    pub reason: String,
}

pub(crate) fn read(text: &str) -> Result<Value, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let mut duplicate: Option<(String, String)> = None;
    let seed = Node {
        path: String::new(),
        duplicate: &mut duplicate,
    };
    let result = seed.deserialize(&mut deserializer);
    if let Some((path, key)) = duplicate {
        return Err(JsonError {
            path,
            reason: format!("duplicate field `{key}`"),
        });
    }
    let value = result.map_err(|error| JsonError {
        path: String::new(),
        reason: format!("invalid JSON syntax: {error}"),
    })?;
    deserializer.end().map_err(|error| JsonError {
        path: String::new(),
        reason: format!("invalid JSON syntax: {error}"),
    })?;
    Ok(value)
}

struct Node<'a> {
    path: String,
    duplicate: &'a mut Option<(String, String)>,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let seed = Node {
                path: format!("{}[{}]", self.path, items.len()),
                duplicate: &mut *self.duplicate,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => break,
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = crate::error::join(&self.path, &key);
            if members.contains_key(&key) {
                *self.duplicate = Some((path, key.clone()));
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
            let value = map.next_value_seed(Node {
                path,
                duplicate: &mut *self.duplicate,
            })?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicate_keys_at_depth_with_their_path() {
        let error = read(r#"{"network": {"egress": {"default": "deny", "default": "allow"}}}"#)
            .unwrap_err();
        assert_eq!(error.path, "network.egress.default");
        assert_eq!(error.reason, "duplicate field `default`");
    }

    #[test]
    fn rejects_duplicates_inside_arrays_and_open_objects() {
        let error = read(r#"{"experimental": {"x": [{"a": 1, "a": 2}]}}"#).unwrap_err();
        assert_eq!(error.path, "experimental.x[0].a");
    }

    #[test]
    fn rejects_trailing_data() {
        let error = read(r#"{"version": "0.8.0"} {}"#).unwrap_err();
        assert!(
            error.reason.contains("trailing characters"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn keeps_values() {
        let value = read(r#"{"a": [1, -2, 1.5, true, null, "s"]}"#).unwrap();
        assert_eq!(value["a"][1], Value::from(-2));
        assert_eq!(value["a"][4], Value::Null);
    }
}
