"""Instructions per message for each step and library of bench/codec.py, counted by callgrind.

Wall and CPU time on a shared 2-core VM move by a factor of two from one run to the next;
instruction counts do not (the same binary, input and environment give the same count). This
runs each adapter of `bench/codec.py` under `valgrind --tool=callgrind` twice, once with the
measured loop over a stratified sample of the corpus and once without it (same imports, corpus
load and input preparation), and divides the difference by the sample size.

    .venv/bin/python bench/instructions.py --sample 400

Instructions are not time - a Rust call and a Python bytecode differ in instructions per cycle -
so read this table beside bench/codec.py's, not instead of it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent


def _codec_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_codec", HERE / "codec.py")
    if spec is None or spec.loader is None:
        raise RuntimeError("cannot load bench/codec.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_codec"] = module
    spec.loader.exec_module(module)
    return module


def _sample(messages: Sequence[Any], size: int) -> list[Any]:
    step = max(1, len(messages) // size)
    return list(messages[::step][:size])


def child(step: str, lib_key: str, size: int, measure: bool) -> None:
    """Prepare everything for (step, lib) on the sample, then run the loop if `measure`."""
    codec = _codec_module()
    messages, _md5 = codec.load_corpus(codec.REPO_ROOT / codec.DEFAULT_CORPUS)
    sample = _sample(messages, size)
    _title, _base, libs = codec.STEPS[step]
    lib = next(lib for lib in libs if lib_key in lib.keys)
    fn: Callable[..., Any] = lib.factory(messages)
    if step == "a":
        args = [(m.text, m.src, m.dst, m.ref, 1) for m in sample]
    elif step == "b":
        (pdus, _counts), _note = codec._b_input(sample)
        args = [(p,) for p in pdus]
    else:
        args = [(m.text, "+" + m.dst, m.ref) for m in sample]
    if not measure:
        return
    for a in args:
        try:
            fn(*a)
        except Exception:
            continue


def _instructions(argv: list[str], env: dict[str, str] | None = None) -> int:
    # A fixed hash seed: with a random one, string hashing changes dict and set layouts (the
    # imports' above all) from run to run, and the two runs' difference moved by +-5% a message.
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ if env is None else env, PYTHONHASHSEED="0"),
    ).stderr
    for line in out.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1])
    raise RuntimeError(f"no instruction count in valgrind's output:\n{out[-2000:]}")


ROWS = {
    "a": ["smsgw", "smsgw-compiled", "smpplib", "aiosmpplib", "rusmppyc", "floor"],
    "b": ["smsgw", "smsgw-compiled", "smpplib", "aiosmpplib", "smpp34"],
    "c": ["smsgw", "smsgw-compiled", "gsmmodem"],
}
# smsgw-compiled: the smsgw adapter in a child whose path starts with the compiled build.
COMPILED = "smsgw-compiled"
BASELINE = {"a": "smpplib", "b": "smpplib", "c": "gsmmodem"}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sample", type=int, default=400, help="messages measured (default 400)")
    ap.add_argument("--only", default="a,b,c")
    ap.add_argument("--libs", default="", help="comma-separated rows (default all)")
    ap.add_argument(
        "--compiled",
        type=Path,
        default=HERE.parent / "build" / "compiled",
        help="the compiled build for the smsgw-compiled rows (built when missing or stale)",
    )
    ap.add_argument("--child", nargs=3, metavar=("STEP", "LIB", "MEASURE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        step, lib, measure = args.child
        child(step, lib, args.sample, measure == "1")
        return 0
    if shutil.which("valgrind") is None:
        ap.error("valgrind is not installed (apt-get install valgrind)")
    me = [sys.executable, str(Path(__file__).resolve()), "--sample", str(args.sample)]
    wanted = {x for x in args.libs.split(",") if x} or None
    compiled_env: dict[str, str] | None = None
    if wanted is None or COMPILED in wanted:
        try:
            _codec_module()._build_compiled(args.compiled.resolve())
            compiled_env = dict(os.environ, PYTHONPATH=str(args.compiled.resolve()))
        except Exception as exc:
            print(f"- no compiled build ({type(exc).__name__}: {exc})")
    print(f"## Instructions per message (callgrind, sample of {args.sample} corpus messages)")
    print()
    print(f"- Python {sys.version.split()[0]} at {sys.executable}")
    for step in [s for s in args.only.split(",") if s]:
        print()
        print(f"| step ({step}) library | instructions / message | × {BASELINE[step]} |")
        print("|---|---:|---:|")
        counts: dict[str, float] = {}
        for lib in ROWS[step]:
            if wanted is not None and lib not in wanted and lib != BASELINE[step]:
                continue
            env = None
            key = lib
            if lib == COMPILED:
                if compiled_env is None:
                    continue
                env, key = compiled_env, "smsgw"
            try:
                base = _instructions([*me, "--child", step, key, "0"], env)
                full = _instructions([*me, "--child", step, key, "1"], env)
            except (subprocess.CalledProcessError, RuntimeError) as exc:
                print(f"| {lib} | error: {type(exc).__name__} | |")
                continue
            counts[lib] = (full - base) / args.sample
        ref = counts.get(BASELINE[step])
        for lib, n in counts.items():
            ratio = f"{ref / n:.1f}" if ref else "-"
            print(f"| {lib} | {n:,.0f} | {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
