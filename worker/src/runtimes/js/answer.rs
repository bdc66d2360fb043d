//! The prelude's answer (`finish` in prelude.js: `{ended, status, headers, body,
//! valueText, isString}`), read off its object field by field into the
//! envelope the three script runtimes share.
//!
//! Turning the whole object into a `serde_json::Value` and deserializing that
//! was a tenth of a trivial call (callgrind). The object is the prelude's own,
//! but what is in it came from the handler (its header names and values, its
//! status, its body): every field is checked for its type here, exactly as the
//! JSON path checks them, and a wrong one is an error, never a guess.

use boa_engine::object::builtins::JsArray;
use boa_engine::{Context, JsNativeError, JsObject, JsResult, JsValue, js_string};

use super::super::script::{ResponseEnvelope, status_of};

/// Reads the answer object `finish` returned.
pub fn read(answer: &JsObject, context: &mut Context) -> JsResult<ResponseEnvelope> {
    let ended = boolean(&answer.get(js_string!("ended"), context)?, "ended")?;
    let status = match answer.get(js_string!("status"), context)? {
        v if v.is_null_or_undefined() => None,
        // NaN (`Number("x")`) is JSON's null, the default status, as before.
        v => match v.as_number() {
            Some(n) if n.is_nan() => None,
            Some(n) => Some(status_of(n).map_err(malformed)?),
            None => return Err(malformed("status is not a number")),
        },
    };
    let headers = headers(&answer.get(js_string!("headers"), context)?, context)?;
    let body = optional_text(&answer.get(js_string!("body"), context)?, "body")?;
    let value_text = optional_text(&answer.get(js_string!("valueText"), context)?, "valueText")?;
    let is_string = boolean(&answer.get(js_string!("isString"), context)?, "isString")?;
    Ok(ResponseEnvelope { ended, status, headers, body, value_text, is_string })
}

/// `[[name, value], …]`, each a pair of strings.
fn headers(value: &JsValue, context: &mut Context) -> JsResult<Vec<(String, String)>> {
    let Some(list) = value.as_object() else {
        return if value.is_undefined() { Ok(Vec::new()) } else { Err(malformed("headers is not a list")) };
    };
    let list = JsArray::from_object(list).map_err(|_| malformed("headers is not a list"))?;
    let len = list.length(context)?;
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1024));
    for i in 0..len {
        let pair = list.get(i, context)?;
        let Some(pair) = pair.as_object() else { return Err(malformed("a header is not a [name, value] pair")) };
        let name = text(&pair.get(0_u32, context)?, "a header's name")?;
        let value = text(&pair.get(1_u32, context)?, "a header's value")?;
        out.push((name, value));
    }
    Ok(out)
}

fn boolean(value: &JsValue, what: &str) -> JsResult<bool> {
    value.as_boolean().ok_or_else(|| malformed(format!("{what} is not a boolean")))
}

fn text(value: &JsValue, what: &str) -> JsResult<String> {
    value.as_string().map(|s| s.to_std_string_escaped()).ok_or_else(|| malformed(format!("{what} is not a string")))
}

fn optional_text(value: &JsValue, what: &str) -> JsResult<Option<String>> {
    if value.is_null_or_undefined() { Ok(None) } else { text(value, what).map(Some) }
}

fn malformed(why: impl AsRef<str>) -> boa_engine::JsError {
    JsNativeError::typ().with_message(format!("malformed response envelope: {}", why.as_ref())).into()
}
