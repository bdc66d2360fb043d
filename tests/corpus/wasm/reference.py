"""The reference for the WASM corpus: runs a WASI command with the wasmtime PyPI
package (pinned in requirements.txt beside this file), stdin in, stdout out.

Usage: python3 reference.py MODULE.wasm ARGV0 [ARGS...] < input > output"""
import os
import sys
import tempfile

import wasmtime

module_path, argv = sys.argv[1], sys.argv[2:]
engine = wasmtime.Engine()
linker = wasmtime.Linker(engine)
linker.define_wasi()
store = wasmtime.Store(engine)
with tempfile.TemporaryDirectory() as tmp:
    stdin, stdout = os.path.join(tmp, "stdin"), os.path.join(tmp, "stdout")
    with open(stdin, "wb") as f:
        f.write(sys.stdin.buffer.read())
    config = wasmtime.WasiConfig()
    config.argv = argv
    config.stdin_file = stdin
    config.stdout_file = stdout
    config.inherit_stderr()
    store.set_wasi(config)
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, module_path))
    try:
        instance.exports(store)["_start"](store)
    except wasmtime.ExitTrap as e:
        if e.code != 0:
            sys.exit("the module exited with %d" % e.code)
    with open(stdout, "rb") as f:
        sys.stdout.buffer.write(f.read())
