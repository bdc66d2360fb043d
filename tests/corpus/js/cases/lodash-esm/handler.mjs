// An ES module importing lodash-es: the package index imports ~640 modules.
import { chunk, groupBy, camelCase, kebabCase, sortBy, uniq, template, debounce } from "lodash-es";
import merge from "lodash-es/merge.js";

export default function handler(ctx) {
  const { words, people } = ctx.bodyAsJson();
  const greet = template("hello <%= name %>, you are <%- age %>");
  return {
    chunks: chunk(words, 2),
    camel: words.map((w) => camelCase(w)),
    kebab: words.map((w) => kebabCase(w)),
    byAge: groupBy(people, (p) => (p.age >= 30 ? "older" : "younger")),
    sorted: sortBy(people, ["age", "name"]).map((p) => p.name),
    uniq: uniq(words.map((w) => w.length)),
    merged: merge({ a: { b: 1 } }, { a: { c: 2 } }),
    greeting: greet(people[0]),
    debounced: typeof debounce(() => 1, 10),
  };
}
