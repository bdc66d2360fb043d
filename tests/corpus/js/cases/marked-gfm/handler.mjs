// marked with GFM: its autolink rules are composed from other patterns' `.source`.
import { marked } from "marked";

export default function handler(ctx) {
  const { markdown } = ctx.bodyAsJson();
  return {
    html: marked.parse(markdown, { gfm: true }),
    inline: marked.parseInline("see www.example.com/a/b and https://example.org/x/y?z=1"),
    source: /a\/b[/]c/.source,
  };
}
