// An ES module handler: it imports a helper from its own bundle.
import { greet } from "./lib/greet.js";

export default function handler(ctx) {
  const input = ctx.bodyAsJson() || {};
  const greeting = ctx.request().getHeader("x-greeting");
  console.log(`hello-js: greeting ${greeting}`);
  ctx.json({
    msg: greet(ctx.request().getParam("name")),
    greeting,
    input,
    method: ctx.request().method(),
    path: ctx.request().path(),
  });
}
