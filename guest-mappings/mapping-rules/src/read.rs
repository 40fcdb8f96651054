//! Reading JSON documents into typed views that borrow from the text.
//!
//! Building a `serde_json::Value` tree allocates every key and string of a document (a 3.6 KB
//! referral is ~100 allocations) only for the mapping to read a few fields. A view declares the
//! members it reads; everything else is skipped by the parser without being built, and strings
//! without escapes are borrowed from the input.
//!
//! The views read exactly what `json::get` on a `Value` read, so the mapping's decisions and
//! error messages do not change: `null` counts as absent, a parent that is not an object reads
//! as absent (all its fields absent), a repeated member keeps its last value, and a member of
//! the wrong type is kept (as a [`Leaf::Other`]) so the mapping can reject it naming the field.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Number, Value};

use crate::MappingError;
use crate::json::{self, Doc};

/// A JSON object's members that a view keeps; the others are skipped unparsed.
pub trait Record<'de>: Default {
    /// Reads the value of member `key` from `map` if the view keeps it; returns `false` to have
    /// the caller skip the value.
    fn member<A: MapAccess<'de>>(&mut self, key: Text<'de>, map: &mut A) -> Result<bool, A::Error>;
}

/// Declares a view of a JSON object: a struct of public fields, each read from the member
/// named by its string literal. Every field type must implement `Deserialize` and `Default`
/// (its value when the member is absent).
macro_rules! record {
    ($(#[$meta:meta])* $name:ident<$lt:lifetime> {
        $($(#[$fmeta:meta])* $field:ident: $ty:ty = $key:literal,)*
    }) => {
        $(#[$meta])*
        #[derive(Default)]
        pub struct $name<$lt> {
            $($(#[$fmeta])* pub $field: $ty,)*
        }

        impl<$lt> $crate::read::Record<$lt> for $name<$lt> {
            fn member<A: serde::de::MapAccess<$lt>>(
                &mut self,
                key: $crate::read::Text<$lt>,
                map: &mut A,
            ) -> Result<bool, A::Error> {
                match &*key.0 {
                    $($key => self.$field = map.next_value()?,)*
                    _ => return Ok(false),
                }
                Ok(true)
            }
        }
    };
}
pub(crate) use record;

/// Parses a document that must be a JSON object into the view `T`; malformed JSON is a
/// `Reject` carrying serde's message, another JSON value a `Reject` saying it must be an object.
pub fn parse<'de, T: Record<'de>>(text: &'de str, what: &str) -> Result<T, MappingError> {
    match serde_json::from_str::<Top<T>>(text) {
        Ok(Top(Some(view))) => Ok(view),
        Ok(Top(None)) => Err(json::not_an_object(what)),
        Err(e) => Err(json::not_json(what, &e)),
    }
}

/// Reads the members of an object into a view, the last of repeated members winning.
fn read_record<'de, T: Record<'de>, A: MapAccess<'de>>(mut map: A) -> Result<T, A::Error> {
    let mut view = T::default();
    while let Some(key) = map.next_key::<Text<'de>>()? {
        if !view.member(key, &mut map)? {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(view)
}

/// A whole document: `Some` view when it is an object.
struct Top<T>(Option<T>);

impl<'de, T: Record<'de>> Deserialize<'de> for Top<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectOrSkip::<T>(std::marker::PhantomData))
            .map(Top)
    }
}

/// A member holding an object read into the view `T`; any other value (or none) reads as
/// `T::default()`, i.e. every field absent, as `json::get` treats a path through a non-object.
#[derive(Default)]
pub struct Lenient<T>(pub T);

impl<T> Deref for Lenient<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Record<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let view = d.deserialize_any(ObjectOrSkip::<T>(std::marker::PhantomData))?;
        Ok(Lenient(view.unwrap_or_default()))
    }
}

/// Visits any value: an object becomes `Some(T)`, anything else is skipped as `None`.
struct ObjectOrSkip<T>(std::marker::PhantomData<T>);

impl<'de, T: Record<'de>> Visitor<'de> for ObjectOrSkip<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_record(map).map(Some)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A member holding an array of objects, each read into the view `T`; elements that are not
/// objects are left out, and a member that is not an array reads as empty.
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<T> Deref for List<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<'de, T: Record<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items<T>(std::marker::PhantomData<T>);
        impl<'de, T: Record<'de>> Visitor<'de> for Items<T> {
            type Value = List<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<List<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element_seed(ObjectSeed::<T>::default())? {
                    items.extend(item);
                }
                Ok(List(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<List<T>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(List::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<List<T>, E> {
                Ok(List::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<List<T>, E> {
                Ok(List::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<List<T>, E> {
                Ok(List::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<List<T>, E> {
                Ok(List::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<List<T>, E> {
                Ok(List::default())
            }
            fn visit_unit<E>(self) -> Result<List<T>, E> {
                Ok(List::default())
            }
        }
        d.deserialize_any(Items(std::marker::PhantomData))
    }
}

/// Reads one array element: `Some(T)` for an object, `None` for anything else.
struct ObjectSeed<T>(std::marker::PhantomData<T>);

impl<T> Default for ObjectSeed<T> {
    fn default() -> Self {
        ObjectSeed(std::marker::PhantomData)
    }
}

impl<'de, T: Record<'de>> de::DeserializeSeed<'de> for ObjectSeed<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(ObjectOrSkip::<T>(std::marker::PhantomData))
    }
}

/// A string as written in the document: borrowed unless it holds escapes.
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Chars;
        impl<'de> Visitor<'de> for Chars {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(Chars)
    }
}

/// A member the mapping reads as a scalar: absent (or `null`), a string (borrowed when it can
/// be), or any other value, kept so that a wrong type can be rejected naming the field.
#[derive(Default)]
pub enum Leaf<'a> {
    /// Not in the document, or `null`.
    #[default]
    Absent,
    /// A string, as written (not trimmed).
    Str(Cow<'a, str>),
    /// A number, boolean, array or object.
    Other(Value),
}

impl<'a> Leaf<'a> {
    /// The string, untrimmed, if the member is one (`Value::as_str`).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Leaf::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The member as a `Value`, `None` when absent (for the few readers that take any type).
    pub fn to_value(&self) -> Option<Value> {
        match self {
            Leaf::Absent => None,
            Leaf::Str(s) => Some(Value::String(s.as_ref().to_owned())),
            Leaf::Other(v) => Some(v.clone()),
        }
    }

    /// The trimmed, non-empty string (see `json::string`); another type is a `Reject` naming
    /// `path` of `doc`.
    pub fn string(&self, doc: Doc, path: &[&str]) -> Result<Option<&str>, MappingError> {
        match self {
            Leaf::Absent => Ok(None),
            Leaf::Str(s) => Ok(json::trimmed(s)),
            Leaf::Other(v) => Err(json::not_a_string(doc, path, v)),
        }
    }

    /// Like [`Leaf::string`] but absent is a `Reject` naming the field.
    pub fn required(&self, doc: Doc, path: &[&str]) -> Result<&str, MappingError> {
        self.string(doc, path)?
            .ok_or_else(|| json::missing(doc, path))
    }
}

impl<'de> Deserialize<'de> for Leaf<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Any;
        impl<'de> Visitor<'de> for Any {
            type Value = Leaf<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Str(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Str(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Str(Cow::Owned(s)))
            }
            fn visit_unit<E>(self) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Absent)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Other(Value::Bool(b)))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Other(Value::Number(n.into())))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Leaf<'de>, E> {
                Ok(Leaf::Other(Value::Number(n.into())))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Leaf<'de>, E> {
                // As `Value` does: a float JSON cannot hold reads as null.
                Ok(Number::from_f64(n).map_or(Leaf::Absent, |n| Leaf::Other(Value::Number(n))))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Leaf<'de>, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Leaf::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Leaf<'de>, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Leaf::Other)
            }
        }
        d.deserialize_any(Any)
    }
}

/// An object whose members are kept as unparsed JSON text, each parsed only when read: for a
/// document the mapping compares its output against column by column (the current
/// opportunity), whose other members it never looks at.
#[derive(Default)]
pub struct RawObject<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> RawObject<'a> {
    /// The member `key` as a `Value` (`null` included), if present.
    pub fn value(&self, key: &str) -> Option<Value> {
        let (_, raw) = self.0.iter().rev().find(|(k, _)| k == key)?;
        // The parser already validated this text; it cannot fail to parse again.
        serde_json::from_str(raw.get()).ok()
    }

    /// The member `key` as a `Value`, `null` counting as absent (`json::get`).
    pub fn get(&self, key: &str) -> Option<Value> {
        self.value(key).filter(|v| !v.is_null())
    }

    /// Whether member `key` is present and not `null`.
    pub fn has(&self, key: &str) -> bool {
        let found = self.0.iter().rev().find(|(k, _)| k == key);
        found.is_some_and(|(_, raw)| raw.get() != "null")
    }

    /// The member `key` when it is a string (`Value::as_str`, untrimmed).
    pub fn string(&self, key: &str) -> Option<String> {
        match self.value(key)? {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Record<'de> for RawObject<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: Text<'de>, map: &mut A) -> Result<bool, A::Error> {
        let raw: &'de RawValue = map.next_value()?;
        self.0.push((key.0, raw));
        Ok(true)
    }
}
