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
# RELOCPY_CC: an interpreter run under emulation names the build machine's
# `cc` (its own architecture): validation gives a compiler for the target,
# which replaces the compiler of CC and LDSHARED alike.
cc, ldshared = shlex.split(var("CC")), shlex.split(var("LDSHARED"))
if os.environ.get("RELOCPY_CC"):
    cc = shlex.split(os.environ["RELOCPY_CC"])
    ldshared = [*cc, *ldshared[1:]]
compile_cmd = [*cc, *shlex.split(var("CFLAGS")), *shlex.split(var("CCSHARED")), "-I", include, "-c", source, "-o", obj]
link_cmd = [*ldshared, obj, "-o", ext]
for cmd in (compile_cmd, link_cmd):
    subprocess.run(cmd, check=True)
sys.path.insert(0, out_dir)
assert importlib.import_module("relocpy_probe").answer() == 42
print("extension ok:", os.path.basename(ext))
