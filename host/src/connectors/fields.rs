//! The field types of the connectors' typed configs, as the engine sends them
//! in a destination's config (see [`super::typed`]): every field optional (an
//! unset field is absent), strings trimmed with a blank one counting as unset,
//! credentials in a [`Secret`], lists as JSON lists or comma-separated strings,
//! maps of location to KMS key. Use them as
//! `#[serde(default, deserialize_with = "fields::text")]`.
//!
//! Error messages never contain the value (they say what was expected); the
//! config parser adds the field's name.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

/// A credential from a destination's config: zeroized on drop, `Debug` masked.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"*****\"")
    }
}

/// A string field: trimmed; absent, null or blank is `None`.
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()))
}

/// A credential: trimmed; absent, null or blank is `None`. The text read is
/// zeroized.
pub fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let raw = Option::<String>::deserialize(d)?.map(Zeroizing::new);
    Ok(raw.and_then(|s| {
        let trimmed = s.trim();
        (!trimmed.is_empty()).then(|| Secret::new(trimmed))
    }))
}

/// A credential taken as it is (not trimmed); absent, null or blank is `None`.
pub fn secret_as_is<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    let raw = Option::<String>::deserialize(d)?.map(Secret::new);
    Ok(raw.filter(|s| !s.as_str().trim().is_empty()))
}

/// A value whose type the engine's schema fixes but which the connector does
/// not use: accepted whatever it is.
pub type Ignored = de::IgnoredAny;

/// A field whose `null` means its default.
pub fn or_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Runs `visitor` on a value (`deserialize_any`); `null` is `None`.
pub fn nullable<'de, D, V>(d: D, visitor: V) -> Result<Option<V::Value>, D::Error>
where
    D: Deserializer<'de>,
    V: Visitor<'de>,
{
    struct Nullable<V>(V);
    impl<'de, V: Visitor<'de>> Visitor<'de> for Nullable<V> {
        type Value = Option<V::Value>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.expecting(f)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self.0).map(Some)
        }
    }
    d.deserialize_option(Nullable(visitor))
}

/// A positive integer: a number or a string of digits; absent, null or blank
/// is `None`.
pub fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Positive;
    impl<'de> Visitor<'de> for Positive {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a positive integer")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            if n == 0 {
                return Err(E::custom("expected a positive integer"));
            }
            Ok(Some(n))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            match u64::try_from(n) {
                Ok(n) => self.visit_u64(n),
                Err(_) => Err(E::custom("expected a positive integer")),
            }
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            match s.trim() {
                "" => Ok(None),
                digits => digits
                    .parse::<u64>()
                    .map_err(|_| E::custom("expected a positive integer"))
                    .and_then(|n| self.visit_u64(n)),
            }
        }
    }
    Ok(nullable(d, Positive)?.flatten())
}

/// A list of strings: a JSON list, or one comma-separated string. Items are
/// trimmed, blank ones dropped; absent or null is empty.
pub fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct List;
    impl<'de> Visitor<'de> for List {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of strings")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(clean(s.split(',')))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            Ok(clean(items.iter().map(String::as_str)))
        }
    }
    Ok(nullable(d, List)?.unwrap_or_default())
}

fn clean<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    items
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A map of location (or region) to KMS key: keys and keys' values trimmed,
/// blank locations dropped, a null key read as `""` (the provider's own key);
/// absent or null is empty.
pub fn kms_keys<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct KmsKeys;
    impl<'de> Visitor<'de> for KmsKeys {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of location to KMS key (a string)")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((location, key)) = map.next_entry::<String, Option<String>>()? {
                let location = location.trim();
                if !location.is_empty() {
                    let key = key.as_deref().map(str::trim).unwrap_or_default();
                    out.insert(location.to_string(), key.to_string());
                }
            }
            Ok(out)
        }
    }
    Ok(nullable(d, KmsKeys)?.unwrap_or_default())
}
