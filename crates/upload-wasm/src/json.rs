//! upload-core's wire types to and from the JS values of the browser's
//! `JSON.parse` / `JSON.stringify`: a serde `Deserializer` and `Serializer`
//! over `JsValue`.
//!
//! Written here rather than taken from `serde-wasm-bindgen` for size only:
//! its errors format serde's messages (`invalid type: floating point 1.5,
//! expected u64`), which links all of `core::fmt`'s float formatting into the
//! .wasm (~10 KB raw). Here a value that does not fit its type is just
//! [`Invalid`]; the caller names what it was reading.

use std::fmt;

use js_sys::{Array, Object, Reflect};
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};
use wasm_bindgen::prelude::*;

/// A JS value that does not fit the type asked for (or a value that cannot
/// be written as JSON). Carries no message on purpose, see the module docs.
#[derive(Debug)]
pub(crate) struct Invalid;

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid")
    }
}

impl std::error::Error for Invalid {}

// Every provided method is overridden: their defaults build `format_args!`
// messages whose `Display` impls would stay linked in.
impl de::Error for Invalid {
    fn custom<T: fmt::Display>(_: T) -> Invalid {
        Invalid
    }
    fn invalid_type(_: de::Unexpected<'_>, _: &dyn de::Expected) -> Invalid {
        Invalid
    }
    fn invalid_value(_: de::Unexpected<'_>, _: &dyn de::Expected) -> Invalid {
        Invalid
    }
    fn invalid_length(_: usize, _: &dyn de::Expected) -> Invalid {
        Invalid
    }
    fn unknown_variant(_: &str, _: &'static [&'static str]) -> Invalid {
        Invalid
    }
    fn unknown_field(_: &str, _: &'static [&'static str]) -> Invalid {
        Invalid
    }
    fn missing_field(_: &'static str) -> Invalid {
        Invalid
    }
    fn duplicate_field(_: &'static str) -> Invalid {
        Invalid
    }
}

impl ser::Error for Invalid {
    fn custom<T: fmt::Display>(_: T) -> Invalid {
        Invalid
    }
}

/// Reads `value` (a parsed JSON value) as a `T`.
pub(crate) fn from_value<T: de::DeserializeOwned>(value: JsValue) -> Result<T, Invalid> {
    T::deserialize(De(value))
}

/// Writes `value` as the JS value `JSON.stringify` turns into its JSON.
pub(crate) fn to_value(value: &impl Serialize) -> Result<JsValue, Invalid> {
    value.serialize(Ser)
}

/// Largest integer a JS number holds exactly (2^53 - 1).
const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

struct De(JsValue);

impl<'de> de::Deserializer<'de> for De {
    type Error = Invalid;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        let v = self.0;
        if let Some(s) = v.as_string() {
            visitor.visit_string(s)
        } else if let Some(n) = v.as_f64() {
            if n.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&n) {
                visitor.visit_u64(n as u64)
            } else if n.fract() == 0.0 && (-MAX_SAFE..0.0).contains(&n) {
                visitor.visit_i64(n as i64)
            } else {
                visitor.visit_f64(n)
            }
        } else if let Some(b) = v.as_bool() {
            visitor.visit_bool(b)
        } else if v.is_null() || v.is_undefined() {
            visitor.visit_unit()
        } else if Array::is_array(&v) {
            visitor.visit_seq(Seq { items: v.unchecked_into(), next: 0 })
        } else if v.is_object() {
            visitor.visit_map(Map { entries: Object::entries(v.unchecked_ref()), next: 0, value: None })
        } else {
            Err(Invalid)
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        if self.0.is_null() || self.0.is_undefined() { visitor.visit_none() } else { visitor.visit_some(self) }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, Invalid> {
        visitor.visit_newtype_struct(self)
    }

    /// Unit variants only (`"pending"`): the contract has no other enums
    /// outside internally tagged ones, which serde reads through `any`.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Invalid> {
        let name = self.0.as_string().ok_or(Invalid)?;
        visitor.visit_enum(IntoDeserializer::<Invalid>::into_deserializer(name))
    }

    // Each type asks for exactly what it reads, so that serde's derived
    // visitors keep only the paths taken (a struct from an array, a field
    // name as bytes... are left out of the .wasm).
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        visitor.visit_bool(self.0.as_bool().ok_or(Invalid)?)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        let n = self.0.as_f64().filter(|n| n.fract() == 0.0 && (0.0..=MAX_SAFE).contains(n)).ok_or(Invalid)?;
        visitor.visit_u64(n as u64)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        visitor.visit_string(self.0.as_string().ok_or(Invalid)?)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        self.deserialize_string(visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        visitor.visit_str(&self.0.as_string().ok_or(Invalid)?)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        if !Array::is_array(&self.0) {
            return Err(Invalid);
        }
        visitor.visit_seq(Seq { items: self.0.unchecked_into(), next: 0 })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        if !self.0.is_object() || Array::is_array(&self.0) {
            return Err(Invalid);
        }
        visitor.visit_map(Map { entries: Object::entries(self.0.unchecked_ref()), next: 0, value: None })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Invalid> {
        self.deserialize_map(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Invalid> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u128 f32 f64 char
        bytes byte_buf unit unit_struct tuple tuple_struct
    }
}

struct Seq {
    items: Array,
    next: u32,
}

impl<'de> de::SeqAccess<'de> for Seq {
    type Error = Invalid;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Invalid> {
        if self.next >= self.items.length() {
            return Ok(None);
        }
        self.next += 1;
        seed.deserialize(De(self.items.get(self.next - 1))).map(Some)
    }
}

struct Map {
    entries: Array,
    next: u32,
    value: Option<JsValue>,
}

impl<'de> de::MapAccess<'de> for Map {
    type Error = Invalid;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Invalid> {
        if self.next >= self.entries.length() {
            return Ok(None);
        }
        let entry: Array = self.entries.get(self.next).unchecked_into();
        self.next += 1;
        self.value = Some(entry.get(1));
        seed.deserialize(De(entry.get(0))).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Invalid> {
        seed.deserialize(De(self.value.take().ok_or(Invalid)?))
    }
}

struct Ser;

/// A JS array or object being filled.
struct Fill {
    target: JsValue,
    key: JsValue,
}

impl Fill {
    fn array() -> Fill {
        Fill { target: Array::new().into(), key: JsValue::UNDEFINED }
    }
    fn object() -> Fill {
        Fill { target: Object::new().into(), key: JsValue::UNDEFINED }
    }
    fn set(&self, key: &JsValue, value: &(impl Serialize + ?Sized)) -> Result<(), Invalid> {
        let value = value.serialize(Ser)?;
        // `None` fields are left out, as JSON would have them absent.
        if !value.is_undefined() {
            Reflect::set(&self.target, key, &value).map_err(|_| Invalid)?;
        }
        Ok(())
    }
    fn push(&self, value: &(impl Serialize + ?Sized)) -> Result<(), Invalid> {
        self.target.unchecked_ref::<Array>().push(&value.serialize(Ser)?);
        Ok(())
    }
}

impl ser::Serializer for Ser {
    type Ok = JsValue;
    type Error = Invalid;
    type SerializeSeq = Fill;
    type SerializeTuple = Fill;
    type SerializeTupleStruct = Fill;
    type SerializeTupleVariant = ser::Impossible<JsValue, Invalid>;
    type SerializeMap = Fill;
    type SerializeStruct = Fill;
    type SerializeStructVariant = ser::Impossible<JsValue, Invalid>;

    fn serialize_bool(self, v: bool) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_i8(self, v: i8) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<JsValue, Invalid> {
        Ok((v as f64).into())
    }
    fn serialize_u8(self, v: u8) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<JsValue, Invalid> {
        Ok((v as f64).into())
    }
    fn serialize_f32(self, v: f32) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_char(self, v: char) -> Result<JsValue, Invalid> {
        Ok(String::from(v).into())
    }
    fn serialize_str(self, v: &str) -> Result<JsValue, Invalid> {
        Ok(v.into())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<JsValue, Invalid> {
        Err(Invalid)
    }
    fn serialize_none(self) -> Result<JsValue, Invalid> {
        Ok(JsValue::UNDEFINED)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<JsValue, Invalid> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<JsValue, Invalid> {
        Ok(JsValue::NULL)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<JsValue, Invalid> {
        Ok(JsValue::NULL)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<JsValue, Invalid> {
        Ok(variant.into())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<JsValue, Invalid> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<JsValue, Invalid> {
        let fill = Fill::object();
        fill.set(&variant.into(), v)?;
        Ok(fill.target)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Fill, Invalid> {
        Ok(Fill::array())
    }
    fn serialize_tuple(self, _: usize) -> Result<Fill, Invalid> {
        Ok(Fill::array())
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Fill, Invalid> {
        Ok(Fill::array())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Invalid> {
        Err(Invalid)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Fill, Invalid> {
        Ok(Fill::object())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Fill, Invalid> {
        Ok(Fill::object())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Invalid> {
        Err(Invalid)
    }
}

impl ser::SerializeSeq for Fill {
    type Ok = JsValue;
    type Error = Invalid;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Invalid> {
        self.push(v)
    }
    fn end(self) -> Result<JsValue, Invalid> {
        Ok(self.target)
    }
}

impl ser::SerializeTuple for Fill {
    type Ok = JsValue;
    type Error = Invalid;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Invalid> {
        self.push(v)
    }
    fn end(self) -> Result<JsValue, Invalid> {
        Ok(self.target)
    }
}

impl ser::SerializeTupleStruct for Fill {
    type Ok = JsValue;
    type Error = Invalid;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Invalid> {
        self.push(v)
    }
    fn end(self) -> Result<JsValue, Invalid> {
        Ok(self.target)
    }
}

impl ser::SerializeMap for Fill {
    type Ok = JsValue;
    type Error = Invalid;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Invalid> {
        // A number key (a part number) is a property name like any other:
        // JS writes it as its decimal.
        self.key = key.serialize(Ser)?;
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Invalid> {
        let key = std::mem::replace(&mut self.key, JsValue::UNDEFINED);
        self.set(&key, v)
    }
    fn end(self) -> Result<JsValue, Invalid> {
        Ok(self.target)
    }
}

impl ser::SerializeStruct for Fill {
    type Ok = JsValue;
    type Error = Invalid;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> Result<(), Invalid> {
        self.set(&key.into(), v)
    }
    fn end(self) -> Result<JsValue, Invalid> {
        Ok(self.target)
    }
}

#[cfg(all(test, target_arch = "wasm32"))]
mod tests {
    use std::collections::BTreeMap;

    use upload_core::wire::{CreatedUpload, SignParts, UploadPlan, UploadState, UploadStatus};
    use wasm_bindgen_test::wasm_bindgen_test;

    use super::*;

    fn parse(json: &str) -> JsValue {
        js_sys::JSON::parse(json).unwrap()
    }

    #[wasm_bindgen_test]
    fn answers_read_into_the_wire_types() {
        let created: CreatedUpload = from_value(parse(
            r#"{"id":"u1","key":"k","expires_at":"t","complete_url":"/c",
                "upload":{"uploader":"S3Multipart","upload_id":"m","part_size":100,"part_count":11}}"#,
        ))
        .unwrap();
        assert_eq!(
            created.upload,
            UploadPlan::S3Multipart { upload_id: "m".into(), part_size: 100, part_count: 11, part_checksums: false }
        );
        let status: UploadStatus = from_value(parse(
            r#"{"id":"u1","state":"pending","name":"a","size":5,"type":"","key":"k","expires_at":"t",
                "upload":{"uploader":"S3","method":"POST","url":"http://s","fields":{"key":"k"}},
                "parts":[{"part_number":1,"etag":"e1","size":5}]}"#,
        ))
        .unwrap();
        assert_eq!(status.state, UploadState::Pending);
        assert_eq!(status.parts[0].etag, "e1");
        assert_eq!(status.parts[0].sha256, None);
    }

    #[wasm_bindgen_test]
    fn values_that_do_not_fit_are_refused() {
        let bad = [
            r#"{"id":"u1"}"#,
            r#"{"id":"u1","key":"k","expires_at":"t","complete_url":"/c","upload":{"uploader":"Nope"}}"#,
            r#"{"id":"u1","key":"k","expires_at":"t","complete_url":"/c",
                "upload":{"uploader":"S3Multipart","upload_id":"m","part_size":1.5,"part_count":1}}"#,
            r#"{"id":"u1","key":"k","expires_at":"t","complete_url":"/c",
                "upload":{"uploader":"S3Multipart","upload_id":"m","part_size":-1,"part_count":1}}"#,
            "null",
            "[]",
        ];
        for json in bad {
            assert!(from_value::<CreatedUpload>(parse(json)).is_err(), "{json}");
        }
    }

    #[wasm_bindgen_test]
    fn requests_write_as_the_contract_json() {
        let body = SignParts { part_numbers: vec![2, 3], sha256: BTreeMap::from([(2, "x".to_owned())]) };
        let json = js_sys::JSON::stringify(&to_value(&body).unwrap()).unwrap();
        assert_eq!(String::from(json), r#"{"part_numbers":[2,3],"sha256":{"2":"x"}}"#);
    }
}
