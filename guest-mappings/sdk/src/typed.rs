//! [`Field`]: a document field that is absent, explicitly `null`, or set — three states, so a
//! document parsed and serialised again is the same JSON (Dataverse and Partner Center both
//! send explicit `null`s, and "clear this column" is a `null`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A field of a typed document. Declare it with
/// `#[serde(default, skip_serializing_if = "Field::is_absent")]` (the typed documents of this
/// crate do), so an absent field stays absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Field<T> {
    /// The document does not have the field.
    #[default]
    Absent,
    /// The field is there with the value `null`.
    Null,
    /// The field has a value.
    Value(T),
}

impl<T> Field<T> {
    /// The value, if the field has one (not absent, not `null`).
    pub fn value(&self) -> Option<&T> {
        match self {
            Field::Value(value) => Some(value),
            Field::Absent | Field::Null => None,
        }
    }
    /// The value, mutably, if the field has one.
    pub fn value_mut(&mut self) -> Option<&mut T> {
        match self {
            Field::Value(value) => Some(value),
            Field::Absent | Field::Null => None,
        }
    }
    /// The value, taken out (`None` when absent or `null`).
    pub fn into_value(self) -> Option<T> {
        match self {
            Field::Value(value) => Some(value),
            Field::Absent | Field::Null => None,
        }
    }
    /// Sets the value.
    pub fn set(&mut self, value: impl Into<T>) {
        *self = Field::Value(value.into());
    }
    /// The value, set to `T::default()` first if there is none (handy for nested objects:
    /// `referral.details.get_or_insert_default().notes.set("...")`).
    pub fn get_or_insert_default(&mut self) -> &mut T
    where
        T: Default,
    {
        if !matches!(self, Field::Value(_)) {
            *self = Field::Value(T::default());
        }
        match self {
            Field::Value(value) => value,
            Field::Absent | Field::Null => unreachable!("just set"),
        }
    }
    /// Whether the document lacks the field (used by `skip_serializing_if`).
    pub fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }
    /// Whether the field is there with the value `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }
}

impl Field<String> {
    /// The text, if the field has one.
    pub fn as_str(&self) -> Option<&str> {
        self.value().map(String::as_str)
    }
}

impl<T> From<T> for Field<T> {
    fn from(value: T) -> Self {
        Field::Value(value)
    }
}

impl<T> From<Option<T>> for Field<T> {
    /// `None` is a `null`.
    fn from(value: Option<T>) -> Self {
        value.map_or(Field::Null, Field::Value)
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Value(value) => value.serialize(serializer),
            // An absent field is skipped by `skip_serializing_if`; outside a struct it is `null`.
            Field::Absent | Field::Null => serializer.serialize_none(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.into())
    }
}
