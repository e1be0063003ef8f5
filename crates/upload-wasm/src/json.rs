//! upload-core's wire types from and to the JS values of the browser's
//! `JSON.parse` / `JSON.stringify`: answers are read by upload-core's
//! readers ([`upload_core::read`]) over [`Js`], request bodies written by a
//! serde `Serializer` into JS values.
//!
//! Neither serde-wasm-bindgen nor serde's derived readers: the first formats
//! serde's messages (`invalid type: floating point 1.5, expected u64`),
//! which links `core::fmt`'s float formatting (~10 KB raw); the second
//! carried a visitor and a field matcher per type (the .wasm was 3.8 KB
//! gzip larger with them). A value that does not fit is just [`Invalid`];
//! the caller names what it was reading.

use std::fmt;

use js_sys::{Array, Object, Reflect};
use serde::ser::{self, Serialize};
use upload_core::read::{FromJson, Json};
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

// Its provided methods build no message, so nothing links `core::fmt` here.
impl ser::Error for Invalid {
    fn custom<T: fmt::Display>(_: T) -> Invalid {
        Invalid
    }
}

/// Reads `value` (a parsed JSON value) as a `T`.
pub(crate) fn from_value<T: FromJson>(value: JsValue) -> Result<T, Invalid> {
    T::from_json(&Js(value)).ok_or(Invalid)
}

/// Writes `value` as the JS value `JSON.stringify` turns into its JSON.
pub(crate) fn to_value(value: &impl Serialize) -> Result<JsValue, Invalid> {
    value.serialize(Ser)
}

/// A parsed JSON value (or any JS value: `undefined` reads as absent).
pub(crate) struct Js(pub(crate) JsValue);

impl Json for Js {
    fn member(&self, key: &str) -> Option<Js> {
        // Reflect.get throws on a primitive: absent.
        let value = Reflect::get(&self.0, &JsValue::from_str(key)).ok()?;
        (!value.is_undefined()).then_some(Js(value))
    }
    fn entries(&self) -> Option<Vec<(String, Js)>> {
        if !self.0.is_object() || Array::is_array(&self.0) {
            return None;
        }
        let entries = Object::entries(self.0.unchecked_ref());
        let mut out = Vec::with_capacity(entries.length() as usize);
        for entry in entries.iter() {
            let entry: Array = entry.unchecked_into();
            out.push((entry.get(0).as_string()?, Js(entry.get(1))));
        }
        Some(out)
    }
    fn items(&self) -> Option<Vec<Js>> {
        Array::is_array(&self.0).then(|| self.0.unchecked_ref::<Array>().iter().map(Js).collect())
    }
    fn string(&self) -> Option<String> {
        self.0.as_string()
    }
    fn number(&self) -> Option<f64> {
        self.0.as_f64()
    }
    fn boolean(&self) -> Option<bool> {
        self.0.as_bool()
    }
    fn is_null(&self) -> bool {
        self.0.is_null()
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
