# The reference for tests/tests/corpus_ruby.rs: runs one corpus handler on CRuby
# (Debian's ruby) with a ctx of its own, as polyfaas's README describes it.
#
#   ruby reference.rb BUNDLE_DIR ENTRY < request.json
#
# request.json: {"function", "method", "rawQuery", "headerList": [[k, v]], "body"}.
# Prints {"status", "contentType", "body"}: what polyfaas should answer.
require "json"
require "uri"

dir, entry = ARGV
r = JSON.parse($stdin.read)
Dir.chdir(dir)
vendored = %w[lib vendor vendor/*/lib vendor/bundle/ruby/*/gems/*/lib]
           .flat_map { |g| Dir.glob(File.join(Dir.pwd, g)).select { |d| File.directory?(d) }.sort }
$LOAD_PATH.unshift(*vendored)

query = {}
URI.decode_www_form(r["rawQuery"]).each { |k, v| query[k] ||= v }
headers = {}
r["headerList"].each { |k, v| headers[k] ||= v }
res = { "ended" => false, "status" => 200, "headers" => [], "body" => nil }

Request = Struct.new(:r, :query_map, :header_map) do
  def getParam(name) = name.to_s == "name" ? r["function"] : query_map[name.to_s]
  def getHeader(name) = header_map[name.to_s.downcase]
  def method(*args) = args.empty? ? r["method"] : super
  def path = "/"
  def query = r["rawQuery"]
  def headers = r["headerList"]
end

Response = Struct.new(:res) do
  def setStatusCode(n) = tap { res["status"] = Integer(n) }
  def putHeader(k, v) = tap { res["headers"] << [k.to_s.downcase, v.to_s] }
  def end(text = nil) = tap { res["body"] = text.to_s; res["ended"] = true }
end

Ctx = Struct.new(:r, :res, :request, :response) do
  def body = r["body"]
  def bodyBytes = r["body"].dup.force_encoding(Encoding::BINARY)
  def bodyAsJson = (JSON.parse(r["body"]) rescue nil)
  def json(value) = (res["headers"] << ["content-type", "application/json"]; res["body"] = JSON.generate(value); res["ended"] = true; nil)
end

path = File.join(Dir.pwd, entry)
value = TOPLEVEL_BINDING.eval(File.read(path), path, 1)
main = TOPLEVEL_BINDING.receiver
handler =
  if value.respond_to?(:call) then value
  elsif value.is_a?(Symbol) && main.respond_to?(value, true) then main.method(value)
  else main.method(:handler)
  end
value = handler.call(Ctx.new(r, res, Request.new(r, query, headers), Response.new(res)))
type = res["headers"].reverse.find { |k, _| k == "content-type" }&.last
body =
  if res["ended"] then res["body"]
  elsif value.is_a?(String) then value
  else JSON.generate(value)
  end
type ||= res["ended"] || value.is_a?(String) ? "text/plain; charset=utf-8" : "application/json"
puts JSON.generate({ "status" => res["status"], "contentType" => type, "body" => body })
