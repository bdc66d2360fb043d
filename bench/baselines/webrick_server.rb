# Baseline: the same Ruby handler on Debian's ruby with WEBrick.
# Usage: ruby webrick_server.rb <handler.rb> <port> <function-name>
require "webrick"
require "json"

class Ctx
  attr_reader :status, :headers, :out
  def initialize(name, req)
    @name, @req, @status, @headers, @out = name, req, 200, {}, nil
  end
  def request = self
  def getParam(n) = n == "name" ? @name : @req.query[n]
  def getHeader(n) = @req[n]
  def method(*a) = a.empty? ? @req.request_method : super
  def path = @req.path
  def response = self
  def setStatusCode(n) = (@status = n; self)
  def putHeader(k, v) = (@headers[k] = v; self)
  def end(t = nil) = (@out = t.to_s; self)
  def body = @req.body.to_s
  def bodyAsJson = (JSON.parse(body) rescue nil)
  def json(v) = (@headers["content-type"] = "application/json"; @out = JSON.generate(v))
end

file, port, name = ARGV
handler = TOPLEVEL_BINDING.eval(File.read(file), file)
server = WEBrick::HTTPServer.new(BindAddress: "127.0.0.1", Port: port.to_i, Logger: WEBrick::Log.new(File::NULL), AccessLog: [])
server.mount_proc("/") do |req, res|
  ctx = Ctx.new(name, req)
  value = handler.call(ctx)
  res.status = ctx.status
  ctx.headers.each { |k, v| res[k] = v }
  res.body = ctx.out || (value.is_a?(String) ? value : JSON.generate(value))
  res["content-type"] ||= "application/json"
end
trap("TERM") { server.shutdown }
server.start
