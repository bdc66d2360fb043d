# The ctx API for Ruby handlers (the README's "Scripts: the `ctx` API"), built over the
# JSON envelopes of runtimes/script.rs, and the loader of the bundle.
#
# The bundle is mounted read-only at /app (vm.rs), which becomes the working
# directory: Ruby's own `require`, `require_relative`, `autoload` and `File.read`
# work on it as on any directory. Nothing else of the host is visible. This file
# runs once per VM, before any bundle is known: it must never touch /app.
$stdout.sync = true
$stderr.sync = true
require "json"
require "rbconfig"

# Ruby 3.4's bundled gems (csv, base64, rexml, …) are in the module's own file
# system, but RubyGems is off (vm.rs), so nothing activates them: their lib
# directories go on the load path after the standard library, once, here.
Dir.glob(File.join(RbConfig::CONFIG["rubylibprefix"], "gems", RbConfig::CONFIG["ruby_version"], "gems", "*", "lib"))
   .sort.each { |dir| $LOAD_PATH << dir }

module Polyfaas
  ROOT = "/app"
  # Where a bundle keeps its dependencies (README: "Packaging gems"); these go before
  # the standard library, as Bundler puts a Gemfile's gems.
  VENDOR_GLOBS = ["lib", "vendor", "vendor/*/lib", "vendor/bundle/ruby/*/gems/*/lib"].freeze
  @handler = nil

  class Request
    def initialize(r) = @r = r
    def getParam(name) = name.to_s == "name" ? @r["function"] : @r["query"][name.to_s]
    def getHeader(name) = @r["headers"][name.to_s.downcase]
    def method(*args) = args.empty? ? @r["method"] : super
    def path = @r["path"]
    def query = @r["rawQuery"]
    def headers = @r["headerList"]
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
    def bodyBytes
      b64 = @r["bodyBase64"]
      (b64 ? b64.unpack1("m0") : @r["body"].dup).force_encoding(Encoding::BINARY)
    end
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

  # Evaluates the entrypoint, which the host has just mounted at /app; the handler
  # is the entrypoint's last value if callable (a lambda, a proc, `method(:x)`), the
  # method a trailing `def` names, or else a top-level method `handler`.
  def self.load(entry)
    Dir.chdir(ROOT)
    vendored = VENDOR_GLOBS.flat_map { |g| Dir.glob("#{ROOT}/#{g}").select { |d| File.directory?(d) }.sort }
    $LOAD_PATH.unshift(*vendored)
    path = "#{ROOT}/#{entry}"
    # Evaluated, not `load`ed, for its last value; the file name makes
    # `require_relative` and error traces resolve against the bundle.
    value = TOPLEVEL_BINDING.eval(File.read(path), path, 1)
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

# Pay for the first exception's full_message now, not on a handler's first error.
begin
  raise "warm-up"
rescue => e
  e.full_message
end
"ok"
