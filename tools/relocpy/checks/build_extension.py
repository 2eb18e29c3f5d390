"""Run BY THE BUILT INTERPRETER (or a venv of it): compile probe.c into an
extension module using only this interpreter's sysconfig, then import it.

Arguments: the path of probe.c and an output directory.
"""

import importlib
import os
import shlex
import subprocess
import sys
import sysconfig

source, out_dir = sys.argv[1], sys.argv[2]
var = sysconfig.get_config_var
include = sysconfig.get_path("include")
assert os.path.isfile(os.path.join(include, "Python.h")), include
obj = os.path.join(out_dir, "probe.o")
ext = os.path.join(out_dir, "relocpy_probe" + var("EXT_SUFFIX"))
compile_cmd = [
    *shlex.split(var("CC")), *shlex.split(var("CFLAGS")), *shlex.split(var("CCSHARED")),
    "-I", include, "-c", source, "-o", obj,
]
link_cmd = [*shlex.split(var("LDSHARED")), obj, "-o", ext]
for cmd in (compile_cmd, link_cmd):
    subprocess.run(cmd, check=True)
sys.path.insert(0, out_dir)
assert importlib.import_module("relocpy_probe").answer() == 42
print("extension ok:", os.path.basename(ext))
