# mustache (Debian's ruby-mustache, vendored under vendor/mustache by the test):
# a view class whose template file is read from the bundle.
require "mustache"

class Invoice < Mustache
  self.template_path = File.join(__dir__, "templates")

  def initialize(data) = @data = data
  def customer = @data["customer"]
  def items = @data["items"]
  def total = format("%.2f", @data["items"].sum { |i| i["price"] })
end

def handler(ctx)
  Invoice.new(ctx.bodyAsJson).render
end
