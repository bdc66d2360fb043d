//! The web-platform globals (the WinterTC minimum common API) a handler and the
//! npm libraries it bundles expect, installed once per worker at Init.
//!
//! Owns: registering boa_runtime's extensions (`setTimeout`/`setInterval` and
//! their `clear*`, `queueMicrotask`, `TextEncoder`/`TextDecoder`, `URL`,
//! `atob`/`btoa`, `structuredClone`) and the two natives behind `web.js`
//! (`crypto`'s random bytes and digests). Must never: give user code a way out
//! of the sandbox (no fetch, no filesystem, no process).

use boa_engine::object::ObjectInitializer;
use boa_engine::object::builtins::{JsArrayBuffer, JsTypedArray, JsUint8Array};
use boa_engine::{Context, JsNativeError, JsResult, JsValue, NativeFunction, Source, js_string};
use boa_runtime::extensions::{
    Base64Extension, EncodingExtension, MicrotaskExtension, StructuredCloneExtension, TimeoutExtension, UrlExtension,
};
use sha1::Digest as _;

const WEB: &str = include_str!("web.js");

pub fn install(context: &mut Context) -> JsResult<()> {
    boa_runtime::register_extensions(
        (
            Base64Extension,
            TimeoutExtension,
            EncodingExtension,
            MicrotaskExtension,
            StructuredCloneExtension,
            UrlExtension,
        ),
        None,
        context,
    )?;
    let natives = ObjectInitializer::new(context)
        .function(NativeFunction::from_fn_ptr(random_bytes), js_string!("randomBytes"), 1)
        .function(NativeFunction::from_fn_ptr(digest), js_string!("digest"), 2)
        .build();
    let factory = context
        .eval(Source::from_bytes(WEB))?
        .as_function()
        .ok_or_else(|| JsNativeError::typ().with_message("web.js did not load"))?;
    factory.call(&JsValue::undefined(), &[natives.into()], context)?;
    Ok(())
}

/// `randomBytes(n)`: a Uint8Array of `n` bytes from the kernel (n ≤ 65536, checked by web.js too).
fn random_bytes(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let n = args.first().cloned().unwrap_or_default().to_length(context)?;
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= 65536)
        .ok_or_else(|| JsNativeError::range().with_message("too many random bytes"))?;
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| JsNativeError::error().with_message(format!("no randomness available: {e}")))?;
    Ok(JsUint8Array::from_iter(bytes, context)?.into())
}

/// `digest(NAME, uint8array)`: SHA-1/256/384/512 of the bytes, as a Uint8Array.
fn digest(_: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let name = args.first().cloned().unwrap_or_default().to_string(context)?.to_std_string_escaped();
    let array =
        args.get(1).and_then(JsValue::as_object).ok_or_else(|| JsNativeError::typ().with_message("digest: no data"))?;
    let array = JsTypedArray::from_object(array)?;
    let offset = array.byte_offset(context)?;
    let length = array.byte_length(context)?;
    let buffer =
        array.buffer(context)?.as_object().ok_or_else(|| JsNativeError::typ().with_message("digest: no buffer"))?;
    let buffer = JsArrayBuffer::from_object(buffer)?;
    let data = buffer.to_vec().ok_or_else(|| JsNativeError::typ().with_message("digest: detached buffer"))?;
    let bytes =
        data.get(offset..offset + length).ok_or_else(|| JsNativeError::range().with_message("digest: bad view"))?;
    let out: Vec<u8> = match name.as_str() {
        "SHA-1" => sha1::Sha1::digest(bytes).to_vec(),
        "SHA-256" => sha2::Sha256::digest(bytes).to_vec(),
        "SHA-384" => sha2::Sha384::digest(bytes).to_vec(),
        "SHA-512" => sha2::Sha512::digest(bytes).to_vec(),
        other => {
            return Err(JsNativeError::error()
                .with_message(format!("digest: unsupported algorithm `{other}` (NotSupportedError)"))
                .into());
        }
    };
    Ok(JsUint8Array::from_iter(out, context)?.into())
}
