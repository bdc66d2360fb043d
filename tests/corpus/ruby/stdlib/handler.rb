# More of the standard library and bundled gems: set, time, digest, base64
# (a bundled gem since 3.4), erb, openssl, rexml (bundled gem), and a module from
# the bundle's lib/ by `require`.
require "set"
require "openssl"
require "rexml/document"
require "time"
require "digest"
require "base64"
require "erb"
require "shapes"

def handler(ctx)
  words = ctx.body.split
  ctx.json({
    "unique" => Set.new(words).size,
    "iso" => Time.utc(2024, 2, 29, 12, 30).iso8601,
    "sha256" => Digest::SHA256.hexdigest(ctx.body),
    "base64" => Base64.strict_encode64(ctx.body),
    "erb" => ERB.new("<%= words.first %>/<%= words.size %>").result(binding),
    "area" => Shapes.area(3, 4),
    "hmac" => OpenSSL::HMAC.hexdigest("SHA256", "key", ctx.body),
    "xml" => REXML::Document.new("<a><b n='1'>x</b><b n='2'/></a>").get_elements("//b").map { |e| e.attributes["n"] },
    "cwd" => Dir.pwd == __dir__
  })
end
