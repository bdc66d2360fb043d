# uri (standard library): parses the URL in the body, joins and encodes.
require "uri"

def handler(ctx)
  u = URI.parse(ctx.body.strip)
  pairs = URI.decode_www_form(u.query || "")
  ctx.json({
    "scheme" => u.scheme, "host" => u.host, "port" => u.port, "path" => u.path,
    "query" => pairs,
    "joined" => URI.join(u.to_s, "../other?x=1").to_s,
    "form" => URI.encode_www_form(pairs + [["k", "a b&c"]]),
    "component" => URI.encode_www_form_component("é ü/?"),
    "http" => u.is_a?(URI::HTTP)
  })
end
