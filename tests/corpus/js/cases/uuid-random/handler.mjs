// uuid: v4 draws from crypto.getRandomValues; v5 hashes (SHA-1 in JavaScript).
import { v4, v5, validate, version, parse, stringify, NIL } from "uuid";

export default function handler(ctx) {
  const { name } = ctx.bodyAsJson();
  const ids = Array.from({ length: 8 }, () => v4());
  return {
    // Random answers are compared by shape: valid, version 4, all distinct.
    v4: ids.map((id) => ({ valid: validate(id), version: version(id), length: id.length })),
    distinct: new Set(ids).size,
    v5: v5(name, v5.URL),
    roundTrip: stringify(parse("6ba7b811-9dad-11d1-80b4-00c04fd430c8")),
    nil: validate(NIL),
    randomUUID: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(crypto.randomUUID()),
  };
}
