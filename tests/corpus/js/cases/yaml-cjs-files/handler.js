// js-yaml through require(): its CommonJS build is ~20 files under lib/.
const yaml = require("js-yaml");

exports.handler = (ctx) => {
  const { text } = ctx.bodyAsJson();
  const doc = yaml.load(text);
  let error = null;
  try {
    yaml.load("a: [1, 2");
  } catch (e) {
    error = e.name;
  }
  return { doc, dumped: yaml.dump(doc, { sortKeys: true }), error };
};
