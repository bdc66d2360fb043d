def greet(name):
    return "Hello from " + name
