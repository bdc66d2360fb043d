// The CommonJS runtime: Node's `require`, `module`, `exports` over the natives
// of loader.rs (resolve, read, compile, requireModule). One cache per worker,
// keyed by the real bundle-relative path; a module is cached before it runs, so
// a cycle sees the partial `module.exports`, as in Node. Evaluated once, before
// any user code; the object it returns is kept by the host, never a global.
(function (natives) {
  "use strict";
  const cache = Object.create(null);
  const dirOf = (p) => {
    const i = p.lastIndexOf("/");
    return i < 0 ? "." : p.slice(0, i);
  };

  function makeRequire(from) {
    const require = function require(spec) {
      if (typeof spec !== "string") {
        throw new TypeError("require() expects a string, got " + typeof spec);
      }
      const [path, format] = natives.resolve(spec, from);
      return load(path, format);
    };
    require.resolve = (spec) => natives.resolve(String(spec), from)[0];
    require.cache = cache;
    return require;
  }

  function load(path, format) {
    const hit = cache[path];
    if (hit !== undefined) return hit.exports;
    if (format === "module") return natives.requireModule(path);
    const module = {
      id: path, filename: path, path: dirOf(path), exports: {}, loaded: false,
      children: [], paths: [], require: makeRequire(path),
    };
    cache[path] = module;
    try {
      if (format === "json") {
        module.exports = JSON.parse(natives.read(path));
      } else {
        const fn = natives.compile(path);
        fn.call(module.exports, module.exports, module.require, module, path, dirOf(path));
      }
    } catch (e) {
      delete cache[path];
      throw e;
    }
    module.loaded = true;
    return module.exports;
  }

  // What `import` of a CommonJS module sees: module.exports, and its own
  // enumerable keys as named exports.
  function esmView(path) {
    const exports = load(path, "commonjs");
    const names = [];
    if (exports !== null && (typeof exports === "object" || typeof exports === "function")) {
      for (const k of Object.keys(exports)) {
        if (k !== "default") names.push(k);
      }
    }
    return [exports, names];
  }

  return { load, esmView, makeRequire };
})
