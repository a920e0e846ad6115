//! One setting's value as a source gives it, and how it becomes a field.
//!
//! A value is a TOML string, integer, boolean or array of strings, or the
//! text of a `DEPUTY_*` variable or a flag. A typed value is used as it is (an integer is not
//! printed and parsed again); text is read as the field's type asks, so
//! `access_token_ttl = 120`, `access_token_ttl = "120"` and
//! `DEPUTY_ACCESS_TOKEN_TTL=120` mean the same, as they always have.
//!
//! The kinds below (`Seconds`, `workers`, ...) carry the ranges and the exact
//! messages; `Settings` names one per field with `deserialize_with`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::value::{SeqDeserializer, StrDeserializer};
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::proxies::TrustedProxies;

/// A value from one source: a scalar, or a list (only a TOML array gives
/// one; text is never split here, the field's kind decides what a comma means).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Value {
    Text(String),
    Integer(i64),
    Bool(bool),
    List(Vec<String>),
}

impl Value {
    /// A value from a TOML file; tables and dates are no setting's type, and
    /// a list holds strings only. The error is the message. A float goes on
    /// as text, so the setting's own check says what it takes.
    pub(super) fn from_toml(v: toml::Value) -> Result<Value, &'static str> {
        match v {
            toml::Value::String(s) => Ok(Value::Text(s)),
            toml::Value::Integer(n) => Ok(Value::Integer(n)),
            toml::Value::Boolean(b) => Ok(Value::Bool(b)),
            toml::Value::Float(f) => Ok(Value::Text(f.to_string())),
            toml::Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    toml::Value::String(s) => Ok(s),
                    _ => Err("must be a list of strings"),
                })
                .collect::<Result<_, _>>()
                .map(Value::List),
            _ => Err("must be a string, integer or boolean"),
        }
    }

    /// The value as text, for fields that are text (a path, a name, an enum);
    /// `None` for a list.
    fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Text(s) => Some(Cow::Borrowed(s)),
            Value::Integer(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Owned(b.to_string())),
            Value::List(_) => None,
        }
    }
}

/// Why a value (or a key) cannot be used: the message only; the caller knows
/// which setting it was.
#[derive(Debug)]
pub(super) struct Unusable(pub(super) String);

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unusable {}

impl de::Error for Unusable {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Unusable(msg.to_string())
    }

    /// A key that is no field (`deny_unknown_fields`).
    fn unknown_field(_field: &str, _expected: &'static [&'static str]) -> Self {
        Unusable("unknown setting".to_string())
    }

    /// A word that is none of an enum's (e.g. `log_format`): "must be `text` or `json`".
    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        let quoted: Vec<String> = expected.iter().map(|v| format!("`{v}`")).collect();
        let list = match quoted.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => quoted.concat(),
        };
        Unusable(format!("must be {list}"))
    }

    /// A list where one value belongs (or the other way round).
    fn invalid_type(unexpected: de::Unexpected<'_>, expected: &dyn de::Expected) -> Self {
        match unexpected {
            de::Unexpected::Seq => Unusable("must be one value, not a list".to_string()),
            _ => Unusable(format!("must be {expected}")),
        }
    }
}

/// Reads one `Value` as whatever type its field asks for.
pub(super) struct ValueDeserializer<'a>(pub(super) &'a Value);

impl<'de> Deserializer<'de> for ValueDeserializer<'_> {
    type Error = Unusable;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        match self.0 {
            Value::Text(s) => visitor.visit_str(s),
            Value::Integer(n) => visitor.visit_i64(*n),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::List(items) => {
                let mut seq = SeqDeserializer::new(items.iter().map(String::as_str));
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
        }
    }

    /// Text says yes or no as `true`/`1`/`yes` or `false`/`0`/`no`.
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        if let Value::Bool(b) = self.0 {
            return visitor.visit_bool(*b);
        }
        let Some(text) = self.0.text() else {
            return self.deserialize_any(visitor);
        };
        match text.as_ref() {
            "true" | "1" | "yes" => visitor.visit_bool(true),
            "false" | "0" | "no" => visitor.visit_bool(false),
            _ => Err(Unusable("must be true or false".to_string())),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        match self.0.text() {
            Some(text) => visitor.visit_str(&text),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        self.deserialize_str(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Unusable> {
        match self.0.text() {
            Some(text) => visitor.visit_enum(StrDeserializer::<Unusable>::new(&text)),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Unusable> {
        visitor.visit_newtype_struct(self)
    }

    // A field with a plain integer type and no kind still reads from text.
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        match self.0 {
            Value::Text(s) => match s.trim().parse::<i64>() {
                Ok(n) => visitor.visit_i64(n),
                Err(_) => visitor.visit_str(s),
            },
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        self.deserialize_i64(visitor)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Unusable> {
        self.deserialize_i64(visitor)
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any f32 f64 i128 u128
    }
}

/// The most seconds any duration setting takes: ten years.
pub(super) const MAX_SECONDS: i64 = 10 * 365 * 24 * 3600;

/// A duration in whole seconds from `MIN` to `MAX_SECONDS`:
/// `#[serde(deserialize_with = "Seconds::<1>::field")]`.
pub(super) type Seconds<const MIN: i64> = SecondsIn<MIN, MAX_SECONDS>;

/// A duration in whole seconds from `MIN` to `MAX`, for settings with a
/// range of their own: `#[serde(deserialize_with = "SecondsIn::<10, 1800>::field")]`.
pub(super) struct SecondsIn<const MIN: i64, const MAX: i64>;

impl<const MIN: i64, const MAX: i64> SecondsIn<MIN, MAX> {
    pub(super) fn field<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let n = whole::<i64, D>(d)?
            .map_err(|v| de::Error::custom(format!("`{v}` is not a whole number of seconds")))?;
        if !(MIN..=MAX).contains(&n) {
            return Err(de::Error::custom(format!(
                "must be between {MIN} and {MAX} seconds"
            )));
        }
        Ok(n)
    }
}

/// HTTP worker threads, 0 to 256.
pub(super) fn workers<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    whole::<usize, D>(d)?
        .ok()
        .filter(|n| *n <= 256)
        .ok_or_else(|| de::Error::custom("must be a number from 0 to 256"))
}

/// A rate in requests per second (0 = no limit).
pub(super) fn per_second<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    whole::<u32, D>(d)?.map_err(|_out_of_range| {
        de::Error::custom("must be a whole number of requests per second (0 = no limit)")
    })
}

/// A number of failures (0 = no limit).
pub(super) fn failures<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    whole::<u32, D>(d)?.map_err(|_out_of_range| {
        de::Error::custom("must be a whole number of failures (0 = no limit)")
    })
}

/// Addresses and CIDR blocks (`trusted_proxies`): a TOML array of strings,
/// one entry each, or text with the entries separated by commas.
pub(super) fn proxies<'de, D: Deserializer<'de>>(d: D) -> Result<TrustedProxies, D::Error> {
    struct Entries;

    impl<'de> Visitor<'de> for Entries {
        type Value = TrustedProxies;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("IP addresses or CIDR blocks, separated by commas")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<TrustedProxies, E> {
            TrustedProxies::parse(s.split(',')).map_err(de::Error::custom)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TrustedProxies, A::Error> {
            let mut entries: Vec<String> = Vec::new();
            while let Some(entry) = seq.next_element::<String>()? {
                // In a list each string is one entry.
                if entry.contains(',') {
                    return Err(de::Error::custom(format!(
                        "`{entry}` holds a comma: give each entry a string of its own"
                    )));
                }
                entries.push(entry);
            }
            TrustedProxies::parse(entries.iter().map(String::as_str)).map_err(de::Error::custom)
        }
    }

    d.deserialize_any(Entries)
}

/// URL prefixes or host names (`client_metadata_allow`): a TOML array of
/// strings, or text with the entries separated by commas. Each is an https
/// URL prefix or a bare host name.
pub(super) fn url_prefixes<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<crate::config::AllowList, D::Error> {
    struct Entries;

    fn check(entries: Vec<String>) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        for e in entries {
            let e = e.trim().to_string();
            if e.is_empty() {
                continue;
            }
            if e.contains("://") {
                // Compared as the URL parser writes URLs (lower-case host, no
                // default port), and ending in `/` so that a prefix stops at
                // a boundary: `https://tools.example/` cannot admit
                // `https://tools.example.evil/`, nor `/agents/` `/agents-x/`.
                let canonical = url::Url::parse(&e)
                    .ok()
                    .filter(|u| {
                        u.scheme() == "https" && u.query().is_none() && u.fragment().is_none()
                    })
                    .map(|u| u.to_string())
                    .ok_or_else(|| format!("`{e}` is not an https URL prefix"))?;
                if !canonical.ends_with('/') {
                    return Err(format!("URL prefix `{e}` must end with `/`"));
                }
                out.push(canonical);
            } else {
                let ok = e
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
                if !ok {
                    return Err(format!(
                        "`{e}` is neither an https URL prefix nor a host name"
                    ));
                }
                out.push(e.to_ascii_lowercase());
            }
        }
        Ok(out)
    }

    impl<'de> Visitor<'de> for Entries {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("URL prefixes or host names, separated by commas")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<String>, E> {
            check(s.split(',').map(str::to_string).collect()).map_err(de::Error::custom)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut entries: Vec<String> = Vec::new();
            while let Some(entry) = seq.next_element::<String>()? {
                entries.push(entry);
            }
            check(entries).map_err(de::Error::custom)
        }
    }

    d.deserialize_any(Entries).map(crate::config::AllowList)
}

/// A whole number of type `T`: an integer as it is, text trimmed and parsed
/// as `T`. The inner `Err` is the value as written, for the caller's message.
fn whole<'de, T, D>(d: D) -> Result<Result<T, String>, D::Error>
where
    T: FromStr + TryFrom<i64>,
    D: Deserializer<'de>,
{
    struct Whole<T>(PhantomData<T>);

    impl<T: FromStr + TryFrom<i64>> Visitor<'_> for Whole<T> {
        type Value = Result<T, String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a whole number")
        }

        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(T::try_from(n).map_err(|_out_of_range| n.to_string()))
        }

        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(i64::try_from(n)
                .ok()
                .and_then(|n| T::try_from(n).ok())
                .ok_or_else(|| n.to_string()))
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(s.trim().parse().map_err(|_out_of_range| s.to_string()))
        }

        fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
            Ok(Err(b.to_string()))
        }
    }

    d.deserialize_any(Whole(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::with;

    #[test]
    fn text_values_keep_their_messages() {
        for (key, value, message) in [
            (
                "code_ttl",
                "soon",
                "`soon` is not a whole number of seconds",
            ),
            (
                "code_ttl",
                " 1.5",
                "` 1.5` is not a whole number of seconds",
            ),
            ("code_ttl", "0", "must be between 1 and 315360000 seconds"),
            (
                "refresh_grace",
                "-1",
                "must be between 0 and 315360000 seconds",
            ),
            (
                "clock_skew",
                "315360001",
                "must be between 0 and 315360000 seconds",
            ),
            (
                "ciba_default_expiry",
                "5",
                "must be between 10 and 1800 seconds",
            ),
            (
                "ciba_default_expiry",
                "1801",
                "must be between 10 and 1800 seconds",
            ),
            ("ciba_interval", "0", "must be between 1 and 300 seconds"),
            ("ciba_interval", "301", "must be between 1 and 300 seconds"),
            ("workers", "257", "must be a number from 0 to 256"),
            ("workers", "-1", "must be a number from 0 to 256"),
            (
                "rate_limit_login",
                "fast",
                "must be a whole number of requests per second (0 = no limit)",
            ),
            (
                "rate_limit_client",
                "4294967296",
                "must be a whole number of requests per second (0 = no limit)",
            ),
            (
                "auth_failure_limit",
                "-1",
                "must be a whole number of failures (0 = no limit)",
            ),
            ("log_format", "xml", "must be `text` or `json`"),
            ("log_format", "JSON", "must be `text` or `json`"),
            ("allow_loopback_jwks_uri", "maybe", "must be true or false"),
            ("allow_loopback_jwks_uri", "TRUE", "must be true or false"),
        ] {
            let e = with(&[(key, value)]).unwrap_err();
            assert_eq!(e.setting, key);
            assert_eq!(e.message, message, "{key} = {value:?}");
        }
    }

    #[test]
    fn text_values_that_are_accepted() {
        let s = with(&[
            ("code_ttl", " 60 "),
            ("refresh_grace", "+0"),
            ("clock_skew", "315360000"),
            ("workers", "256"),
            ("rate_limit_client", "4294967295"),
            ("log_format", "json"),
            ("allow_loopback_jwks_uri", "yes"),
        ])
        .unwrap();
        assert_eq!(
            (s.code_ttl, s.refresh_grace, s.clock_skew),
            (60, 0, MAX_SECONDS)
        );
        assert_eq!((s.workers, s.rate_limit_client), (256, u32::MAX));
        assert!(s.allow_loopback_fetch);
        for (word, yes) in [
            ("1", true),
            ("true", true),
            ("0", false),
            ("no", false),
            ("false", false),
        ] {
            let s = with(&[("allow_loopback_jwks_uri", word)]).unwrap();
            assert_eq!(s.allow_loopback_fetch, yes, "{word}");
        }
    }

    #[test]
    fn enum_words_are_listed() {
        let e = <Unusable as de::Error>::unknown_variant("x", &["a", "b", "c"]);
        assert_eq!(e.0, "must be `a`, `b` or `c`");
        let e = <Unusable as de::Error>::unknown_variant("x", &["a"]);
        assert_eq!(e.0, "must be `a`");
    }
}
