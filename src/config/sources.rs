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
            let value = Value::from_toml(value).map_err(|message| bad(&key, message))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;

    fn file(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("deputy-src-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f
    }

    fn from_file(name: &str, text: &str) -> Result<Settings, ConfigError> {
        let mut sources = Sources::default();
        sources.file(&file(name, text))?;
        sources.settings()
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn typed_toml_values_are_used_as_they_are() {
        let s = from_file(
            "typed.toml",
            "access_token_ttl = 120\nallow_loopback_jwks_uri = true\nworkers = 8\n\
             log_format = \"json\"\ndatabase = \"/var/lib/deputy/d.db\"\nrate_limit_login = 0\n",
        )
        .unwrap();
        assert_eq!(s.access_token_ttl, 120);
        assert!(s.allow_loopback_fetch);
        assert_eq!(s.workers, 8);
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.database, Path::new("/var/lib/deputy/d.db"));
        assert_eq!(s.rate_limit_login, 0);
    }

    #[test]
    fn toml_strings_and_numbers_mean_what_they_always_did() {
        // Quoted numbers and words for booleans are read like env text.
        let s = from_file(
            "quoted.toml",
            "access_token_ttl = \"120\"\ncode_ttl = \" 90 \"\nallow_loopback_jwks_uri = \"yes\"\n\
             workers = \"4\"\n",
        )
        .unwrap();
        assert_eq!((s.access_token_ttl, s.code_ttl, s.workers), (120, 90, 4));
        assert!(s.allow_loopback_fetch);
        // Integers for text and booleans, as their text.
        let s = from_file(
            "numbers.toml",
            "allow_loopback_jwks_uri = 1\nlog_level = 3\n",
        )
        .unwrap();
        assert!(s.allow_loopback_fetch);
        assert_eq!(s.log_level, "3");
        for (text, message) in [
            (
                "access_token_ttl = 1.5",
                "setting `access_token_ttl`: `1.5` is not a whole number of seconds",
            ),
            (
                "workers = 1.5",
                "setting `workers`: must be a number from 0 to 256",
            ),
            (
                "access_token_ttl = 2026-12-03",
                "setting `access_token_ttl`: must be a string, integer or boolean",
            ),
            (
                "colour = [1]",
                "setting `colour`: must be a list of strings",
            ),
            (
                "access_token_ttl = [\"60\"]",
                "setting `access_token_ttl`: must be one value, not a list",
            ),
            (
                "issuer = [\"http://a.example\"]",
                "setting `issuer`: must be one value, not a list",
            ),
            (
                "allow_loopback_jwks_uri = [\"yes\"]",
                "setting `allow_loopback_jwks_uri`: must be one value, not a list",
            ),
            (
                "log_format = [\"json\"]",
                "setting `log_format`: must be one value, not a list",
            ),
            (
                "trusted_proxies = [\"10.0.0.0/8\", 1]",
                "setting `trusted_proxies`: must be a list of strings",
            ),
            (
                "trusted_proxies = 1",
                "setting `trusted_proxies`: must be IP addresses or CIDR blocks, separated by commas",
            ),
            (
                "trusted_proxies = [\"10.0.0.0/8, 127.0.0.1\"]",
                "setting `trusted_proxies`: `10.0.0.0/8, 127.0.0.1` holds a comma: \
                 give each entry a string of its own",
            ),
            (
                "access_token_ttl = true",
                "setting `access_token_ttl`: `true` is not a whole number of seconds",
            ),
            (
                "access_token_ttl = -5",
                "setting `access_token_ttl`: must be between 1 and 315360000 seconds",
            ),
            (
                "workers = 257",
                "setting `workers`: must be a number from 0 to 256",
            ),
            (
                "allow_loopback_jwks_uri = 2",
                "setting `allow_loopback_jwks_uri`: must be true or false",
            ),
            (
                "log_format = 1",
                "setting `log_format`: must be `text` or `json`",
            ),
            ("nope = 1", "setting `nope`: unknown setting"),
        ] {
            let e = from_file("bad.toml", text).unwrap_err();
            assert_eq!(e.to_string(), message, "{text}");
        }
    }

    #[test]
    fn env_overrides_file_and_flag_overrides_env() {
        let f = file(
            "layers.toml",
            "issuer = \"http://file.example\"\nclock_skew = 1\nsession_ttl = 2\n",
        );
        let mut sources = Sources::default();
        sources.file(&f).unwrap();
        sources
            .env(vars(&[
                ("DEPUTY_CLOCK_SKEW", "10"),
                ("DEPUTY_ISSUER", "http://env.example"),
            ]))
            .unwrap();
        sources.set("issuer", "http://flag.example").unwrap();
        let s = sources.settings().unwrap();
        assert_eq!(s.issuer, "http://flag.example");
        assert_eq!((s.clock_skew, s.session_ttl), (10, 2));
    }

    #[test]
    fn a_bad_value_stops_start_up_even_when_overridden() {
        let f = file("overridden.toml", "code_ttl = \"soon\"\n");
        let e = Settings::load(Some(&f), vars(&[("DEPUTY_CODE_TTL", "60")]), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "setting `code_ttl`: `soon` is not a whole number of seconds"
        );
        let e = Settings::load(
            None,
            vars(&[("DEPUTY_WORKERS", "many")]),
            &[("workers", "2")],
        );
        assert_eq!(e.unwrap_err().setting, "workers");
    }

    /// The field names and default values as `Debug` prints them: the struct
    /// itself, independently of serde.
    fn debug_fields() -> Vec<(String, String)> {
        format!("{:#?}", Settings::default())
            .lines()
            .filter_map(|l| l.strip_prefix("    "))
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| {
                let v = v.trim_end_matches(',');
                let v = match v.strip_prefix('"') {
                    Some(quoted) => quoted.trim_end_matches('"').to_string(),
                    None => v.to_lowercase(), // `Text` is written `text`
                };
                (k.to_string(), v)
            })
            .collect()
    }

    #[test]
    fn the_keys_are_the_struct_fields() {
        let fields: Vec<String> = debug_fields().into_iter().map(|(k, _)| k).collect();
        let names: Vec<&str> = keys()
            .iter()
            .copied()
            .filter(|k| !crate::config::ALIASES.contains(k))
            .collect();
        assert_eq!(
            fields, names,
            "a field that is no setting, or a key that is no field"
        );
        // An old name is still a key (in the file and as a variable).
        assert!(keys().contains(&"allow_loopback_jwks_uri"));
        assert!(keys().contains(&"auth_failure_window"));
    }

    #[test]
    fn every_setting_is_settable_from_text() {
        // Each default, given back as a variable's text, reads as itself.
        let fields = debug_fields();
        let env: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (format!("DEPUTY_{}", k.to_uppercase()), v.clone()))
            .collect();
        let mut sources = Sources::default();
        sources.env(env).unwrap();
        let s = sources.settings().unwrap();
        assert_eq!(format!("{s:?}"), format!("{:?}", Settings::default()));
        assert_eq!(sources.values.len(), fields.len());
    }

    #[test]
    fn the_readme_documents_every_key() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## ")
            .find(|s| s.starts_with("Configuration"))
            .unwrap();
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let names: Vec<&str> = keys()
            .iter()
            .copied()
            .filter(|k| !crate::config::ALIASES.contains(k))
            .collect();
        assert_eq!(documented, names);
    }
}
