# The original project's JavaScript example, in Ruby: run by polyfaas and by the
# Debian Ruby baseline alike.
def handler(ctx)
  ctx.json({"msg" => "Hello from " + ctx.request().getParam("name")})
end

method(:handler)
