// zod's CommonJS build (classes, getters, many files), from a CommonJS entry.
const { z } = require("zod");

const User = z.object({
  name: z.string().min(2),
  age: z.number().int().nonnegative(),
  email: z.string().email().optional(),
  tags: z.array(z.enum(["a", "b", "c"])).default([]),
});

module.exports = async (ctx) => {
  const { users } = ctx.bodyAsJson();
  const results = users.map((u) => {
    const r = User.safeParse(u);
    return r.success ? { ok: r.data } : { issues: r.error.issues.map((i) => [i.path.join("."), i.code]) };
  });
  const transformed = await z.string().transform((s) => s.toUpperCase()).parseAsync("zod");
  return { results, transformed };
};
