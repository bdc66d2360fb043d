# logger (standard library) into a StringIO, with its own formatter.
require "logger"
require "stringio"

def handler(ctx)
  io = StringIO.new
  log = Logger.new(io, progname: "corpus")
  log.formatter = proc { |severity, _time, progname, msg| "#{severity} #{progname}: #{msg}\n" }
  log.level = Logger::INFO
  log.debug("hidden")
  log.info("hello #{ctx.request.getParam("who")}")
  log.warn { "block form" }
  log.error(ArgumentError.new("boom"))
  io.string
end
