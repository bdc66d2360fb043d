# The ctx API for Ruby handlers (the README's "Scripts: the `ctx` API") and the
# loader of the bundle.
#
# The host calls `Polyfaas.invoke` with the request on stdin (four lines of
# JSON, then the body's bytes) and reads back the packed records it returns
# (runtimes/ruby/answer.rs). Every Ruby-level step costs this interpreted VM a
# few thousand instructions, so an invocation does as few as it can: a line of
# the head is parsed only when a handler reads from it, and the answer is one
# `pack`.
#
# The bundle is mounted read-only at /app (vm.rs), which becomes the working
# directory: Ruby's own `require`, `require_relative`, `autoload` and `File.read`
# work on it as on any directory. Nothing else of the host is visible. This file
# runs once per VM, before any bundle is known: it must never touch /app.
$stdout.sync = true
$stderr.sync = true
STDIN.binmode
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

  IN = STDIN
  JSON_TYPE = ["H", 12, 16, "content-type", "application/json"].pack("aL<L<a*a*").freeze
  NEWLINE = "\n".b.freeze
  @function = nil

  class << self
    attr_reader :function
  end

  # One invocation's input as the host wrote it (runtimes/ruby/input.rs: four
  # lines of JSON, then the body), each part parsed when it is first read.
  class Call
    def initialize(raw) = @raw = raw
    def scalars = @scalars ||= part(0)
    def query = @query ||= part(1)
    def headers = @headers ||= part(2)
    def header_list = @header_list ||= part(3)
    # A fresh binary String each time: a handler may change what it was given.
    def bytes = parts[4].dup
    def text
      @text ||= begin
        t = bytes.force_encoding(Encoding::UTF_8)
        t.valid_encoding? ? t : t.scrub
      end
    end

    private def parts = @parts ||= @raw.split(NEWLINE, 5)
    private def part(i) = JSON.parse(parts[i].force_encoding(Encoding::UTF_8))
  end

  class Request
    def initialize(call) = @call = call
    def getParam(name)
      name = name.to_s
      name == "name" ? Polyfaas.function : @call.query[name]
    end
    def getHeader(name) = @call.headers[name.to_s.downcase]
    def method(*args) = args.empty? ? @call.scalars[1] : super
    def path = @call.scalars[2]
    def query = @call.scalars[3]
    def headers = @call.header_list
  end

  # The response being built, and the packed answer it becomes.
  class Response
    def initialize
      @status, @out, @body, @ended = 200, "".b, nil, false
    end
    def setStatusCode(n)
      @status = Integer(n)
      self
    end
    def putHeader(k, v)
      k, v = k.to_s, v.to_s
      @out << ["H", k.bytesize, v.bytesize, k, v].pack("aL<L<a*a*")
      self
    end
    def end(text = nil)
      @body = text.nil? ? "" : text.to_s
      @ended = true
      self
    end

    # ctx.json's ending: `text` is already JSON.
    def _json(text)
      @out << JSON_TYPE
      @body, @ended = text, true
      nil
    end

    # The answer for the host: the status, the headers put, then the ending.
    def _answer(value)
      kind, text =
        if @ended then ["B", @body]
        elsif value.is_a?(String) then ["T", value]
        else ["J", JSON.generate(value)]
        end
      status = @status.to_s
      @out << ["S", status.bytesize, status, kind, text.bytesize, text].pack("aL<a*aL<a*")
    end
  end

  class Ctx
    def initialize(call, res)
      @call, @res = call, res
    end
    def request = @request ||= Request.new(@call)
    def response = @res
    def body = @call.text
    def bodyBytes = @call.bytes
    def bodyAsJson
      JSON.parse(@call.text)
    rescue StandardError
      nil
    end
    def json(value) = @res._json(JSON.generate(value))
  end

  # The function's name and its own environment (metadata.json `env`), and
  # nothing else; on stdin as {"function": …, "env": {…}}.
  def self.env
    given = JSON.parse(IN.read.force_encoding(Encoding::UTF_8))
    @function = given["function"]
    ENV.replace(given["env"])
    "ok"
  end

  # Evaluates the entrypoint, which the host has just mounted at /app; the handler
  # is the entrypoint's last value if callable (a lambda, a proc, `method(:x)`), the
  # method a trailing `def` names, or else a top-level method `handler`.
  def self.load
    entry = IN.read.force_encoding(Encoding::UTF_8)
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

  def self.invoke
    res = Response.new
    res._answer(@handler.call(Ctx.new(Call.new(IN.read), res)))
  rescue Exception => e # SystemExit, ScriptError, SystemStackError too
    message, trace = "#{e.class}: #{e.message}", e.full_message(highlight: false)
    ["E", message.bytesize, message, trace.bytesize, trace].pack("aL<a*L<a*")
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
