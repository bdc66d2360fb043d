// The ctx API for JavaScript handlers (the README's "Scripts: the `ctx` API"), built
// over the envelopes of runtimes/script.rs (as objects). Evaluated before any user code;
// the function it ends with is kept by the host, never exposed as a global.
(function () {
  "use strict";
  const parse = JSON.parse, stringify = JSON.stringify;
  // Captured now: a handler that replaces a global must not break ctx.
  const encoder = new TextEncoder(), fromBase64 = atob;
  function bytesOf(req) {
    if (req.bodyBase64 === null || req.bodyBase64 === undefined) return encoder.encode(req.body);
    const raw = fromBase64(req.bodyBase64);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  // The answer's envelope, for the host, which reads it as it is (no JSON text
  // in between: Boa's JSON.stringify was a third of a trivial call). A returned
  // value that is not a string becomes its JSON text here, by JSON.stringify's
  // rules (toJSON, functions dropped), as the body of a plain-style answer.
  function finish(res, value) {
    const isString = typeof value === "string";
    return {
      ended: res.ended, status: res.status, headers: res.headers, body: res.body,
      valueText: isString ? value : (value === undefined ? "null" : (stringify(value) ?? "null")), isString,
    };
  }
  // The request's maps (query, headers, headerList) come from the host on first
  // use: `parts(seq)` answers only while invocation `seq` runs.
  function requestOf(req, parts, seq) {
    let maps = null;
    const map = (name) => (maps === null ? (maps = parts(seq)) : maps)[name];
    return {
      getParam(name) {
        if (name === "name") return req.function;
        const v = map("query")[name];
        return v === undefined ? null : v;
      },
      getHeader(name) {
        const v = map("headers")[String(name).toLowerCase()];
        return v === undefined ? null : v;
      },
      query() { return req.rawQuery; },
      headers() { return map("headerList"); },
      method() { return req.method; },
      path() { return req.path; },
    };
  }
  function responseOf(res) {
    const response = {
      setStatusCode(n) { res.status = Number(n); return response; },
      putHeader(k, v) { res.headers.push([String(k), String(v)]); return response; },
      end(text) {
        res.body = text === undefined || text === null ? "" : String(text);
        res.ended = true;
        return response;
      },
    };
    return response;
  }
  // `req` is the request envelope's head, already an object: the host builds it
  // natively (Boa's JSON.parse runs its full JavaScript parser). The request
  // and response objects are made on first use: each of their methods is a
  // closure, and a handler that answers with `ctx.json` never needs the second.
  function invoke(handler, req, parts, seq) {
    const res = { ended: false, status: 200, headers: [], body: null };
    let request = null, response = null;
    const ctx = {
      request() { return request === null ? (request = requestOf(req, parts, seq)) : request; },
      response() { return response === null ? (response = responseOf(res)) : response; },
      body() { return req.body; },
      bodyBytes() { return bytesOf(req); },
      bodyAsJson() { try { return parse(req.body); } catch (e) { return null; } },
      json(value) {
        res.headers.push(["content-type", "application/json"]);
        res.body = value === undefined ? "null" : stringify(value);
        res.ended = true;
      },
    };
    const value = handler(ctx);
    if (value !== null && typeof value === "object" && typeof value.then === "function") {
      return value.then((settled) => finish(res, settled));
    }
    return finish(res, value);
  }
  return invoke;
})()
