# kramdown (Debian's ruby-kramdown, vendored under vendor/kramdown by the test):
# its converters are `autoload`ed through $LOAD_PATH, and its `document.html`
# template is read from the vendored gem's data directory with File.read.
require "kramdown"
require_relative "lib/page"

PAGE = File.read("templates/page.html")

def handler(ctx)
  doc = Kramdown::Document.new(ctx.body, auto_ids: true)
  full = Kramdown::Document.new("# Standalone", template: "document").to_html
  ctx.response.putHeader("content-type", "text/html; charset=utf-8")
     .end(Page.render(PAGE, doc.to_html, doc.to_toc.children.size) + full)
end
