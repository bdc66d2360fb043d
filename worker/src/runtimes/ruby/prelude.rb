# The ctx API for Ruby handlers (the README's "Scripts: the `ctx` API"), built over the
# JSON envelopes of runtimes/script.rs, and the loader for the bundle's files.
#
# The Ruby VM sees no host filesystem at all: the host passes the bundle's .rb
# files at Init, and `require_relative` between them is served from that map.
$stdout.sync = true
$stderr.sync = true
require "json"

module Polyfaas
  ROOT = "/app"
  @files = {}
  @loaded = {}
  @handler = nil

  class Request
    def initialize(r) = @r = r
    def getParam(name) = name.to_s == "name" ? @r["function"] : @r["query"][name.to_s]
    def getHeader(name) = @r["headers"][name.to_s.downcase]
    def method(*args) = args.empty? ? @r["method"] : super
    def path = @r["path"]
  end

  class Response
    def initialize(res) = @res = res
    def setStatusCode(n)
      @res["status"] = Integer(n)
      self
    end
    def putHeader(k, v)
      @res["headers"] << [k.to_s, v.to_s]
      self
    end
    def end(text = nil)
      @res["body"] = text.nil? ? "" : text.to_s
      @res["ended"] = true
      self
    end
  end

  class Ctx
    def initialize(r, res)
      @r, @res = r, res
      @request, @response = Request.new(r), Response.new(res)
    end
    def request = @request
    def response = @response
    def body = @r["body"]
    def bodyAsJson
      JSON.parse(@r["body"])
    rescue StandardError
      nil
    end
    def json(value)
      @res["headers"] << ["content-type", "application/json"]
      @res["body"] = JSON.generate(value)
      @res["ended"] = true
      nil
    end
  end

  def self.decode(b64) = JSON.parse(b64.unpack1("m0").force_encoding(Encoding::UTF_8))

  # The function's own environment (metadata.json `env`), and nothing else.
  def self.env(b64)
    ENV.replace(decode(b64))
    "ok"
  end

  # Loads the bundle (path => source) and evaluates its entrypoint; the handler is
  # the entrypoint's last value if callable (a lambda, a proc, `method(:x)`), the
  # method a trailing `def` names, or else a top-level method `handler`.
  def self.load(b64, entry)
    @files = decode(b64)
    @loaded = {}
    value = require_file("#{ROOT}/#{entry}")
    main = TOPLEVEL_BINDING.receiver
    @handler =
      if value.respond_to?(:call) then value
      elsif value.is_a?(Symbol) && main.respond_to?(value, true) then main.method(value)
      elsif main.respond_to?(:handler, true) then main.method(:handler)
      end
    raise ScriptError, "#{entry}: the last expression is not callable and there is no method `handler`" unless @handler
    "ok"
  rescue Exception => e
    JSON.generate({ "error" => "#{e.class}: #{e.message}", "trace" => e.full_message(highlight: false) })
  end

  def self.require_file(path)
    path = "#{path}.rb" unless path.end_with?(".rb")
    source = @files[path] or raise LoadError, "cannot load such file -- #{path.delete_prefix(ROOT + '/')} (not in the bundle)"
    return false if @loaded[path]
    @loaded[path] = true
    TOPLEVEL_BINDING.eval(source, path, 1)
  end

  def self.invoke(b64)
    r = decode(b64)
    res = { "ended" => false, "status" => 200, "headers" => [], "body" => nil }
    value = @handler.call(Ctx.new(r, res))
    res["value"] = value
    res["isString"] = value.is_a?(String)
    JSON.generate({ "response" => res })
  rescue Exception => e # SystemExit, ScriptError, SystemStackError too
    JSON.generate({ "error" => "#{e.class}: #{e.message}", "trace" => e.full_message(highlight: false) })
  ensure
    $stdout.flush
    $stderr.flush
  end
end

module Kernel
  # Resolved against the calling file, inside the bundle only.
  def require_relative(path)
    base = caller_locations(1, 1).first.path
    full = File.expand_path(path, File.dirname(base))
    Polyfaas.require_file(full)
  end
  private :require_relative
end

# Pay for the first exception's full_message now, not on a handler's first error.
begin
  raise "warm-up"
rescue => e
  e.full_message
end
"ok"
