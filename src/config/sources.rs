//! Where settings come from: the TOML file, `DEPUTY_*` variables and flags,
//! each overlaid on the ones before, then deserialized into `Settings` once.
//! The keys are `Settings`' serde field names; nothing here lists them again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, value::StrDeserializer, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::values::{Unusable, Value, ValueDeserializer};
use super::{bad, ConfigError, Settings};

/// The values given so far, by key; a later source replaces an earlier one.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    values: BTreeMap<String, Value>,
}

impl Sources {
    /// A TOML file whose top-level keys are setting names.
    pub fn file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("config", format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            bad(
                "config",
                format!("{} is not valid TOML: {}", path.display(), e.message()),
            )
        })?;
        for (key, value) in table {
            let value = Value::from_toml(value)
                .ok_or_else(|| bad(&key, "must be a string, integer or boolean"))?;
            self.put(&key, value)?;
        }
        Ok(())
    }

    /// `DEPUTY_<KEY>` variables from the given environment; an unknown one is
    /// named as the variable. `DEPUTY_CONFIG` is the CLI's (it finds the file).
    pub fn env<I: IntoIterator<Item = (String, String)>>(
        &mut self,
        vars: I,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("DEPUTY_") else {
                continue;
            };
            let key = rest.to_ascii_lowercase();
            if key == "config" {
                continue;
            }
            if !keys().contains(&key.as_str()) {
                return Err(bad(&name, "unknown setting"));
            }
            self.put(&key, Value::Text(value))?;
        }
        Ok(())
    }

    /// One setting from its text, as a flag gives it.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        self.put(key, Value::Text(value.to_string()))
    }

    /// Defaults overridden by every value given; `validate` is the caller's.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        deserialize(self.values.iter().map(|(k, v)| (k.as_str(), v)))
    }

    /// Each value is checked when its source is read, alone, so a bad value
    /// stops start-up even when a later source overrides it, and the first
    /// error in reading order is the one reported.
    fn put(&mut self, key: &str, value: Value) -> Result<(), ConfigError> {
        deserialize(std::iter::once((key, &value)))?;
        self.values.insert(key.to_string(), value);
        Ok(())
    }
}

/// Every setting's key, in the order of `Settings`' fields: the field names
/// serde's derive hands to `deserialize_struct`.
pub(super) fn keys() -> &'static [&'static str] {
    struct FieldNames<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for FieldNames<'_> {
        type Error = Unusable;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Unusable> {
            Err(Unusable("not a struct".to_string()))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Unusable> {
            *self.0 = fields;
            Err(Unusable("field names taken".to_string()))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    let mut names: &'static [&'static str] = &[];
    let _ = Settings::deserialize(FieldNames(&mut names));
    names
}

/// `Settings` from (key, value) entries, defaults for the rest; an error
/// names the entry's key.
fn deserialize<'a>(
    entries: impl Iterator<Item = (&'a str, &'a Value)>,
) -> Result<Settings, ConfigError> {
    Settings::deserialize(Entries {
        entries,
        value: None,
    })
    .map_err(|e| e.0)
}

/// An error located at a setting (the map level of the deserialization).
#[derive(Debug)]
struct Located(ConfigError);

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Located {}

impl de::Error for Located {
    // Only for what no single entry causes (e.g. the derive's own checks).
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Located(bad("config", msg.to_string()))
    }
}

fn at(key: &str, e: Unusable) -> Located {
    Located(bad(key, e.0))
}

/// The entries as a map, the shape `Settings` deserializes from.
struct Entries<'a, I> {
    entries: I,
    value: Option<(&'a str, &'a Value)>,
}

impl<'de, 'a, I: Iterator<Item = (&'a str, &'a Value)>> Deserializer<'de> for Entries<'a, I> {
    type Error = Located;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Located> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de, 'a, I: Iterator<Item = (&'a str, &'a Value)>> MapAccess<'de> for Entries<'a, I> {
    type Error = Located;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Located> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((key, value));
        seed.deserialize(StrDeserializer::<Unusable>::new(key))
            .map(Some)
            .map_err(|e| at(key, e))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Located> {
        let (key, value) = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without a key"))?;
        seed.deserialize(ValueDeserializer(value))
            .map_err(|e| at(key, e))
    }
}
