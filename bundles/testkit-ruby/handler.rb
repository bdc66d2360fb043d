# The test suite's Ruby guest: the request body picks the behaviour, the same
# actions as the JavaScript and Python testkits.
$counter = 0

def recurse(n) = recurse(n + 1) + 1

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
    loop { puts line }
  else { "unknown" => data["action"] }
  end
end
