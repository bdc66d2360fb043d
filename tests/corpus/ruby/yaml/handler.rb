# yaml (psych, standard library): loads YAML from the body, dumps it back.
require "yaml"

def handler(ctx)
  data = YAML.safe_load(ctx.body)
  ctx.json({ "data" => data, "dumped" => YAML.dump({ "list" => data["list"], "n" => 3 }) })
end
