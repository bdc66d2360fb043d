module Greet
  def self.greet(name) = "Hello from #{name}"
end
