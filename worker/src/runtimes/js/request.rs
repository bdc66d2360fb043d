//! The request as the prelude sees it: its head (`function`, `method`, `path`,
//! `rawQuery`, `body`, `bodyBase64`) made into an object for every call, and its
//! maps (`query`, `headers`, `headerList`) only when the handler asks for one.
//!
//! Every object Boa makes costs property definitions now and marking later (its
//! collector walks the whole realm each time), and most handlers read none of
//! the maps: building them up front was a fifth of a trivial call (callgrind).
//!
//! The maps are handed over by a native function the prelude keeps to itself,
//! `parts(seq)`: it answers only for the invocation numbered `seq`, the one
//! running, so a `ctx` kept past its invocation (by a timer, say) can never read
//! a later request's headers. It must never hand out anything but the current
//! request's maps.

use std::cell::RefCell;
use std::rc::Rc;

use boa_engine::object::builtins::JsFunction;
use boa_engine::object::{FunctionObjectBuilder, ObjectInitializer};
use boa_engine::property::Attribute;
use boa_engine::{Context, JsArgs, JsNativeError, JsObject, JsString, JsValue, NativeFunction, js_string};
use boa_gc::{Finalize, Trace};
use polyfaas_protocol::HttpRequest;

use super::super::script::{body_text, request_parts};

/// The request's head, the object the prelude's `ctx` reads: script.rs's
/// envelope without its maps (`function`, `method`, `path`, `rawQuery`, `body`,
/// `bodyBase64`), built here property by property rather than through a JSON value.
pub fn head(function: &JsString, request: &HttpRequest, context: &mut Context) -> JsObject {
    let (body, base64) = body_text(&request.body);
    let body_base64 = base64.map_or_else(JsValue::null, |b| JsValue::from(JsString::from(b)));
    ObjectInitializer::new(context)
        .property(js_string!("function"), function.clone(), Attribute::all())
        .property(js_string!("method"), JsString::from(request.method.as_str()), Attribute::all())
        .property(js_string!("path"), JsString::from(request.path.as_str()), Attribute::all())
        .property(js_string!("rawQuery"), JsString::from(request.query.as_str()), Attribute::all())
        .property(js_string!("body"), JsString::from(body.as_ref()), Attribute::all())
        .property(js_string!("bodyBase64"), body_base64, Attribute::all())
        .build()
}

/// The running invocation's number and, while it runs, its request.
#[derive(Default)]
struct Current {
    seq: u64,
    request: Option<HttpRequest>,
}

/// The host's side of `parts(seq)`.
#[derive(Clone, Default, Trace, Finalize)]
pub struct RequestParts(
    // SAFETY (for the GC, not memory): `Current` holds only a request and a
    // number, no boa GC pointers, so the collector has nothing to trace.
    #[unsafe_ignore_trace] Rc<RefCell<Current>>,
);

impl RequestParts {
    /// Makes `request` the running invocation's; returns the number the
    /// prelude passes back to `parts(seq)`.
    pub fn begin(&self, request: HttpRequest) -> u64 {
        let mut current = self.0.borrow_mut();
        current.seq += 1;
        current.request = Some(request);
        current.seq
    }

    /// The invocation is over: `parts` answers no one until the next `begin`.
    pub fn end(&self) {
        self.0.borrow_mut().request = None;
    }

    /// The native `parts(seq)`, for the prelude's `invoke`.
    pub fn function(&self, context: &mut Context) -> JsFunction {
        let native = NativeFunction::from_copy_closure_with_captures(
            |_, args, this: &RequestParts, context| {
                let current = this.0.borrow();
                let asked = args.get_or_undefined(0).as_number();
                match &current.request {
                    Some(request) if asked == Some(current.seq as f64) => {
                        JsValue::from_json(&request_parts(request), context)
                    }
                    _ => Err(JsNativeError::typ()
                        .with_message("this ctx belongs to an invocation that has ended")
                        .into()),
                }
            },
            self.clone(),
        );
        FunctionObjectBuilder::new(context.realm(), native).name(js_string!("parts")).length(1).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boa_engine::Source;

    fn call(context: &mut Context, f: &JsFunction, seq: u64) -> Result<serde_json::Value, String> {
        f.call(&JsValue::undefined(), &[JsValue::from(seq as f64)], context)
            .and_then(|v| v.to_json(context))
            .map(|v| v.unwrap_or_default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parts_answer_only_the_running_invocation() {
        let mut context = Context::default();
        let slot = RequestParts::default();
        let parts = slot.function(&mut context);

        let request = |header: &str| HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            query: "q=1".into(),
            headers: vec![(header.into(), "v".into())],
            body: vec![],
        };
        let first = slot.begin(request("x-a"));
        assert_eq!(
            call(&mut context, &parts, first).expect("current"),
            serde_json::json!({"query": {"q": "1"}, "headers": {"x-a": "v"}, "headerList": [["x-a", "v"]]})
        );
        slot.end();
        assert!(call(&mut context, &parts, first).is_err(), "ended");

        let second = slot.begin(request("x-b"));
        assert!(call(&mut context, &parts, first).is_err(), "an old ctx cannot read the next request");
        assert!(call(&mut context, &parts, second).is_ok());
        // Not a number, or no argument at all: refused.
        context.register_global_property(js_string!("p"), parts, boa_engine::property::Attribute::all()).expect("g");
        assert!(context.eval(Source::from_bytes("p()")).is_err());
        assert!(context.eval(Source::from_bytes("p('2')")).is_err());
    }
}
