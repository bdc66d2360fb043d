# cgi (standard library), with the raw query, the header list and the body bytes.
require "cgi"

def handler(ctx)
  params = CGI.parse(ctx.request.query)
  html = "<ul>" + params.sort.map { |k, vs| "<li>#{CGI.escapeHTML(k)}=#{vs.map { |v| CGI.escapeHTML(v) }.join(",")}</li>" }.join + "</ul>"
  # Sorted: the order two distinct headers arrive in is not kept end to end.
  agent = ctx.request.headers.select { |name, _| name.start_with?("x-corpus") }.sort
  ctx.response
     .setStatusCode(201)
     .putHeader("content-type", "text/html; charset=utf-8")
     .end("#{html}\n#{CGI.unescape("a%20b+c")}\n#{agent.inspect}\n#{ctx.bodyBytes.bytesize} #{ctx.bodyBytes.encoding}")
end
