# The test suite's Ruby guest: the request body picks the behaviour, the same
# actions as the JavaScript and Python testkits.
$counter = 0

def recurse(n) = recurse(n + 1) + 1

# Hostile actions for tests/tests/hostile.rs: each tries something the sandbox must refuse.
ATTACKS = {
  "readFile" => ->(d) { File.read(d["path"]).size },
  "writeFile" => ->(d) { File.write(d["path"], "pwned") },
  "connect" => ->(d) { require "socket"; TCPSocket.new("127.0.0.1", d["port"]).close; "connected" },
  "fork" => ->(_) { pid = fork { exit!(0) }; pid },
  # A process that really ran prints; WASI Ruby's process calls are stubs.
  "spawn" => ->(_) { out = `echo pwned`; out == "pwned\n" ? "spawned" : raise("no process ran (#{out.inspect})") },
  "killParent" => ->(_) { Process.kill(:KILL, Process.ppid); "signalled" },
  "env" => ->(_) { ENV.to_h },
}.freeze

def handler(ctx)
  data = ctx.bodyAsJson() || {}
  case data["action"]
  when "plain" then { "plain" => true, "n" => data["n"] }
  when "text" then "just text"
  when "status"
    ctx.response().setStatusCode(201).putHeader("X-Custom", "yes").end("created")
    nil
  when "echo"
    ctx.json(data)
    nil
  when "throw" then raise ArgumentError, "testkit threw #{data["message"]}"
  when "log"
    puts data["text"]
    { "logged" => true }
  when "setGlobal"
    $shared_value = data["value"]
    { "set" => true }
  when "getGlobal" then { "value" => $shared_value }
  when "count"
    $counter += 1
    { "counter" => $counter }
  when "params"
    r = ctx.request()
    { "name" => r.getParam("name"), "q" => r.getParam("q"), "header" => r.getHeader("X-Test"),
      "method" => r.method(), "path" => r.path() }
  when "bodyLength" then { "length" => ctx.body().length }
  when "spin" then loop {}
  when "recurse" then recurse(0)
  when "alloc"
    keep = []
    loop { keep << ("x" * (1 << 20)) }
  when "flood"
    line = "x" * (1 << 16)
    (data.fetch("bytes", 100 << 20) / line.size).times { puts line }
    { "flooded" => true }
  when *ATTACKS.keys
    begin
      { "ok" => true, "result" => ATTACKS[data["action"]].call(data) }
    rescue Exception => e # a refused attack is an exception of some kind
      { "ok" => false, "error" => "#{e.class}: #{e.message}" }
    end
  else { "unknown" => data["action"] }
  end
end
