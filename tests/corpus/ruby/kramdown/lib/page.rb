# The bundle's own helper, loaded with require_relative.
module Page
  def self.render(template, body, headings) = template.sub("{{body}}", body).sub("{{headings}}", headings.to_s)
end
