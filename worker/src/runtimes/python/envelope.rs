//! The Python prelude's envelopes as Python objects: the request dict that
//! `invoke` wraps in `Ctx`, built here, and the outcome dict it returns, read
//! here field by field. No JSON text passes between the host and the prelude:
//! encoding the request to parse it again with `json.loads`, and the answer to
//! parse it again with serde, was work a call did twice for nothing.
//!
//! The request dict has script.rs's envelope shape. The outcome came through
//! user code (a handler can reach `ctx._res`): every field is checked for its
//! type as the JSON path checks it, and a wrong one is an error, never a guess.

use polyfaas_protocol::HttpRequest;
use rustpython_vm::builtins::{PyDict, PyDictRef, PyInt, PyList, PyStr, PyTuple};
use rustpython_vm::{AsObject, Py, PyObject, PyObjectRef, PyResult, VirtualMachine};

use super::super::script::{ResponseEnvelope, ScriptOutcome};

/// The request as the prelude's `Ctx` reads it: `{function, method, path,
/// rawQuery, body, bodyBase64, query, headers, headerList}` (see script.rs).
pub fn request(vm: &VirtualMachine, function: &str, request: &HttpRequest) -> PyResult<PyDictRef> {
    let text = |s: &str| -> PyObjectRef { vm.ctx.new_str(s).into() };
    let r = vm.ctx.new_dict();
    r.set_item("function", text(function), vm)?;
    r.set_item("method", text(&request.method), vm)?;
    r.set_item("path", text(&request.path), vm)?;
    r.set_item("rawQuery", text(&request.query), vm)?;
    let (body, base64) = super::super::script::body_text(&request.body);
    r.set_item("body", text(&body), vm)?;
    r.set_item("bodyBase64", base64.as_deref().map_or_else(|| vm.ctx.none(), text), vm)?;
    let query = vm.ctx.new_dict();
    for (k, v) in form_urlencoded::parse(request.query.as_bytes()) {
        // The first value of a repeated parameter wins.
        if query.get_item_opt(k.as_ref(), vm)?.is_none() {
            query.set_item(k.as_ref(), text(&v), vm)?;
        }
    }
    r.set_item("query", query.into(), vm)?;
    let headers = vm.ctx.new_dict();
    let mut list = Vec::with_capacity(request.headers.len());
    for (k, v) in &request.headers {
        let (name, value) = (text(&k.to_ascii_lowercase()), text(v));
        if headers.get_item_opt(&*name, vm)?.is_none() {
            headers.set_item(&*name, value.clone(), vm)?;
        }
        list.push(vm.ctx.new_list(vec![name, value]).into());
    }
    r.set_item("headers", headers.into(), vm)?;
    r.set_item("headerList", vm.ctx.new_list(list).into(), vm)?;
    Ok(r)
}

/// Reads what `invoke` returned: `{response, error, trace, logs, logsOverflow}`,
/// `response` being `{ended, status, headers, body, valueText, isString}`.
///
/// # Errors
/// What is wrong with it, when it is not what the prelude makes.
pub fn outcome(vm: &VirtualMachine, out: &PyObject) -> Result<ScriptOutcome, String> {
    let out = out.downcast_ref::<PyDict>().ok_or("the prelude's answer is not a dict")?;
    let response = match field(vm, out, "response")? {
        Some(res) => Some(response(vm, res.downcast_ref::<PyDict>().ok_or("response is not a dict")?)?),
        None => None,
    };
    Ok(ScriptOutcome {
        response,
        error: optional_text(vm, out, "error")?,
        trace: optional_text(vm, out, "trace")?,
        logs: optional_text(vm, out, "logs")?,
        logs_overflow: boolean(vm, out, "logsOverflow")?,
    })
}

fn response(vm: &VirtualMachine, res: &Py<PyDict>) -> Result<ResponseEnvelope, String> {
    let status = match field(vm, res, "status")? {
        None => None,
        Some(n) => {
            let n = n.downcast_ref::<PyInt>().ok_or("status is not an int")?;
            let n =
                u16::try_from(n.as_bigint()).map_err(|_| format!("status {} is not from 0 to 65535", n.as_bigint()))?;
            Some(n)
        }
    };
    let mut headers = Vec::new();
    if let Some(list) = field(vm, res, "headers")? {
        let list = list.downcast_ref::<PyList>().ok_or("headers is not a list")?;
        for pair in list.borrow_vec().iter() {
            let pair = pair_of(pair).ok_or("a header is not a [name, value] pair")?;
            headers.push((
                as_text(&pair[0]).ok_or("a header's name is not a str")?,
                as_text(&pair[1]).ok_or("a header's value is not a str")?,
            ));
        }
    }
    Ok(ResponseEnvelope {
        ended: boolean(vm, res, "ended")?,
        status,
        headers,
        body: optional_text(vm, res, "body")?,
        value_text: optional_text(vm, res, "valueText")?,
        is_string: boolean(vm, res, "isString")?,
    })
}

/// A key's value; `None` when it is missing or Python's `None`.
fn field(vm: &VirtualMachine, dict: &Py<PyDict>, key: &str) -> Result<Option<PyObjectRef>, String> {
    let value = dict.get_item_opt(key, vm).map_err(|_| format!("{key} cannot be read"))?;
    Ok(value.filter(|v| !vm.is_none(v)))
}

fn optional_text(vm: &VirtualMachine, dict: &Py<PyDict>, key: &str) -> Result<Option<String>, String> {
    match field(vm, dict, key)? {
        None => Ok(None),
        Some(v) => as_text(&v).map(Some).ok_or_else(|| format!("{key} is not a str")),
    }
}

fn boolean(vm: &VirtualMachine, dict: &Py<PyDict>, key: &str) -> Result<bool, String> {
    match field(vm, dict, key)? {
        None => Ok(false),
        Some(v) if v.is(&vm.ctx.true_value) => Ok(true),
        Some(v) if v.is(&vm.ctx.false_value) => Ok(false),
        Some(_) => Err(format!("{key} is not a bool")),
    }
}

/// A str's text; a lone surrogate (which UTF-8 cannot hold) becomes U+FFFD.
fn as_text(value: &PyObject) -> Option<String> {
    value.downcast_ref::<PyStr>().map(|s| s.to_string_lossy().into_owned())
}

/// The two items of a `[name, value]` list or tuple.
fn pair_of(value: &PyObject) -> Option<[PyObjectRef; 2]> {
    if let Some(list) = value.downcast_ref::<PyList>() {
        let items = list.borrow_vec();
        return <[PyObjectRef; 2]>::try_from(items.to_vec()).ok();
    }
    let tuple = value.downcast_ref::<PyTuple>()?;
    <[PyObjectRef; 2]>::try_from(tuple.as_slice().to_vec()).ok()
}
