// The web-platform globals boa_runtime does not provide, in JavaScript:
// URLSearchParams (and URL#searchParams), crypto (getRandomValues, randomUUID,
// subtle.digest over the natives of web.rs), and a correct
// RegExp.prototype.source (boa 0.22 escapes an already escaped `/` again:
// `/a\/b/.source` is `a\\/b`, which changes the meaning of any pattern built
// from it, boa-dev/boa#5535). Evaluated once per worker, at Init.
(function (natives) {
  "use strict";
  const define = (target, name, value) =>
    Object.defineProperty(target, name, { value, writable: true, configurable: true, enumerable: false });

  // ---- RegExp.prototype.source
  const sourceGetter = Object.getOwnPropertyDescriptor(RegExp.prototype, "source").get;
  // boa's output is the original pattern with a `\` put before every `/` (and
  // line terminators escaped). Undo the slashes, then escape as the spec's
  // EscapePatternSource does in practice (V8, SpiderMonkey): a `/` only when it
  // is neither escaped already nor inside a character class.
  function escapeSource(boa) {
    const original = boa.replace(/\\\//g, "/");
    let out = "", inClass = false;
    for (let i = 0; i < original.length; i++) {
      const c = original[i];
      if (c === "\\") {
        out += c + (i + 1 < original.length ? original[++i] : "");
      } else {
        if (c === "[") inClass = true;
        else if (c === "]") inClass = false;
        out += c === "/" && !inClass ? "\\/" : c;
      }
    }
    return out;
  }
  Object.defineProperty(RegExp.prototype, "source", {
    configurable: true,
    enumerable: false,
    get() {
      const boa = sourceGetter.call(this);
      return boa.indexOf("\\/") < 0 ? boa : escapeSource(boa);
    },
  });

  // ---- URLSearchParams
  const encode = (s) => encodeURIComponent(s).replace(/%20/g, "+").replace(/[!'()~]/g,
    (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  const decode = (s) => {
    try { return decodeURIComponent(s.replace(/\+/g, " ")); } catch (e) { return s; }
  };
  class URLSearchParams {
    #list = [];
    #onChange = null;
    constructor(init) {
      if (init === undefined || init === null) return;
      if (typeof init === "object" && typeof init[Symbol.iterator] === "function") {
        for (const pair of init) {
          const [k, v] = Array.from(pair);
          this.#list.push([String(k), String(v)]);
        }
      } else if (typeof init === "object") {
        for (const k of Object.keys(init)) this.#list.push([k, String(init[k])]);
      } else {
        this.#parse(String(init));
      }
    }
    #parse(text) {
      this.#list = [];
      for (const part of (text.startsWith("?") ? text.slice(1) : text).split("&")) {
        if (part === "") continue;
        const eq = part.indexOf("=");
        this.#list.push(eq < 0 ? [decode(part), ""] : [decode(part.slice(0, eq)), decode(part.slice(eq + 1))]);
      }
    }
    #changed() { if (this.#onChange) this.#onChange(this.toString()); }
    static _bound(search, onChange) {
      const p = new URLSearchParams(search);
      p.#onChange = onChange;
      return p;
    }
    get size() { return this.#list.length; }
    append(k, v) { this.#list.push([String(k), String(v)]); this.#changed(); }
    delete(k, v) {
      k = String(k);
      this.#list = this.#list.filter(([a, b]) => a !== k || (v !== undefined && b !== String(v)));
      this.#changed();
    }
    get(k) { k = String(k); const e = this.#list.find(([a]) => a === k); return e ? e[1] : null; }
    getAll(k) { k = String(k); return this.#list.filter(([a]) => a === k).map(([, b]) => b); }
    has(k, v) { k = String(k); return this.#list.some(([a, b]) => a === k && (v === undefined || b === String(v))); }
    set(k, v) {
      k = String(k); v = String(v);
      const i = this.#list.findIndex(([a]) => a === k);
      if (i < 0) this.#list.push([k, v]);
      else { this.#list[i][1] = v; this.#list = this.#list.filter(([a], j) => a !== k || j <= i); }
      this.#changed();
    }
    sort() { this.#list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)); this.#changed(); }
    forEach(fn, thisArg) { for (const [k, v] of this.#list) fn.call(thisArg, v, k, this); }
    keys() { return this.#list.map(([k]) => k)[Symbol.iterator](); }
    values() { return this.#list.map(([, v]) => v)[Symbol.iterator](); }
    entries() { return this.#list.map(([k, v]) => [k, v])[Symbol.iterator](); }
    [Symbol.iterator]() { return this.entries(); }
    toString() { return this.#list.map(([k, v]) => encode(k) + "=" + encode(v)).join("&"); }
    get [Symbol.toStringTag]() { return "URLSearchParams"; }
  }
  const bound = URLSearchParams._bound;
  delete URLSearchParams._bound;
  define(globalThis, "URLSearchParams", URLSearchParams);
  if (typeof URL === "function") {
    Object.defineProperty(URL.prototype, "searchParams", {
      configurable: true,
      get() {
        const url = this;
        return bound(url.search, (s) => { url.search = s; });
      },
    });
  }

  // ---- crypto
  const integerArrays = [Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array,
    Uint32Array, BigInt64Array, BigUint64Array];
  const bytesOf = (data) => {
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    throw new TypeError("digest: data must be an ArrayBuffer or a view of one");
  };
  const crypto = {
    getRandomValues(array) {
      if (!integerArrays.some((T) => array instanceof T)) {
        throw new TypeError("getRandomValues: the argument must be an integer TypedArray");
      }
      if (array.byteLength > 65536) {
        throw new RangeError("getRandomValues: more than 65536 bytes requested (QuotaExceededError)");
      }
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(natives.randomBytes(array.byteLength));
      return array;
    },
    randomUUID() {
      const b = natives.randomBytes(16);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      let h = "";
      for (let i = 0; i < 16; i++) {
        h += (b[i] + 0x100).toString(16).slice(1);
        if (i === 3 || i === 5 || i === 7 || i === 9) h += "-";
      }
      return h;
    },
    subtle: {
      digest(algorithm, data) {
        try {
          const name = typeof algorithm === "string" ? algorithm : algorithm && algorithm.name;
          const out = natives.digest(String(name).toUpperCase(), bytesOf(data).slice());
          return Promise.resolve(out.buffer);
        } catch (e) {
          return Promise.reject(e);
        }
      },
    },
  };
  define(globalThis, "crypto", crypto);
})
