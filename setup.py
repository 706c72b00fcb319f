"""The optional compiled build of the pure codec modules (everything else is in pyproject.toml).

By default this adds nothing: `pip install .` and `pip install -e .` give pure Python and need
no compiler and no mypy. With SMSGW_COMPILE=1 the modules in COMPILED are compiled with mypyc
into extension modules that sit beside their .py files (CPython imports an extension module
before a .py of the same name in the same folder):

    .venv/bin/pip install 'setuptools>=77' wheel mypy    # the build's tools, in the venv
    SMSGW_COMPILE=1 .venv/bin/pip install --no-build-isolation -e .   # and gcc, Python headers

The pure-Python modules stay the reference: `scripts/build-compiled` builds the same list into
build/compiled/ for the tests and benchmarks, and tests/unit/test_compiled_codec.py holds the
two byte-identical on the whole standard corpus.
"""

from __future__ import annotations

import os

from setuptools import setup

# The codec's hot path and what it calls, as paths from the repository root. Left out on
# purpose: gateway/smpp/pdu.py (the generated codec reads its fields' wire formats from the
# NamedTuple annotations, which a compiled class does not keep) and the modules with I/O or
# state machines (nothing there is per-character work).
COMPILED = (
    "gateway/sms/errors.py",
    "gateway/sms/gsm7.py",
    "gateway/sms/coding.py",
    "gateway/sms/udh.py",
    "gateway/sms/segment.py",
    "gateway/sms/tpdu.py",
    "gateway/sms/national.py",
    "gateway/smpp/constants.py",
    "gateway/smpp/errors.py",
    "gateway/smpp/tlv.py",
    "gateway/smpp/codec.py",
    "gateway/smpp/message.py",
)

# The runtime shared by the compiled modules goes inside the package (gateway/compiled__mypyc
# .so), so an editable install finds it without the repository root on sys.path.
GROUP = "gateway.compiled"


def compiled_extensions() -> list[object]:
    """mypyc's extension modules for COMPILED (paths relative to the current folder)."""
    from mypyc.build import mypycify  # noqa: PLC0415 - only when asked for

    # Without the project's [tool.mypy] (its pydantic plugin would need pydantic installed
    # before the build); mypyc needs types, not the strict checks, which CI runs anyway.
    return list(mypycify(["--config-file=", *COMPILED], opt_level="3", group_name=GROUP))


if __name__ == "__main__":
    setup(ext_modules=compiled_extensions() if os.environ.get("SMSGW_COMPILE") == "1" else [])
