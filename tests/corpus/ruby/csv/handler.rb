# csv (a bundled gem since Ruby 3.4): parses the body, sums, writes CSV back.
require "csv"

def handler(ctx)
  rows = CSV.parse(ctx.body, headers: true, converters: :numeric)
  out = CSV.generate do |csv|
    csv << %w[name double]
    rows.each { |r| csv << [r["name"], r["amount"] * 2] }
  end
  ctx.json({ "rows" => rows.map(&:to_h), "total" => rows.sum { |r| r["amount"] }, "csv" => out })
end
