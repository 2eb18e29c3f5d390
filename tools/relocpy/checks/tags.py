"""Run BY THE BUILT INTERPRETER: print its ABI and the wheel tags it accepts,
best first, as packaging.tags computes them (pip's vendored copy: the
interpreter has pip, and nothing else is installed)."""

import json
import sys
import sysconfig

from pip._vendor.packaging import tags

abiflags = getattr(sys, "abiflags", "")
python_tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
print(
    json.dumps(
        {
            "abiflags": abiflags,
            "python_tag": python_tag,
            "abi_tag": python_tag + abiflags,
            "wheel_tags": [str(t) for t in tags.sys_tags()],
            "ext_suffix": sysconfig.get_config_var("EXT_SUFFIX"),
        }
    )
)
