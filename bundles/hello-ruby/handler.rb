# A Ruby handler that loads a helper from its own bundle.
require_relative "lib/greet"

def handler(ctx)
  greeting = ctx.request().getHeader("x-greeting")
  puts "hello-ruby: greeting #{greeting}"
  ctx.json({
    "msg" => Greet.greet(ctx.request().getParam("name")),
    "greeting" => greeting,
    "input" => ctx.bodyAsJson() || {},
    "method" => ctx.request().method(),
    "path" => ctx.request().path(),
  })
end

method(:handler)
