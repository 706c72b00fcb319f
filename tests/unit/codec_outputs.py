"""Everything the codec makes of the standard corpus, written to a file; run as a script by
test_compiled_codec.py, once on the pure-Python tree and once on the compiled one.

    python tests/unit/codec_outputs.py CORPUS OUT pure|compiled

`gateway` comes from PYTHONPATH (this script's folder is the only other entry on sys.path),
and the script checks that the tree is what it was told: all of setup.COMPILED extension
modules, or none. The output is a pickled list of bytes and str only (reprs for objects), so
the two runs compare with ==.
"""

from __future__ import annotations

import json
import pickle
import sys
from importlib import import_module
from pathlib import Path
from typing import Any

MODULES = (  # setup.COMPILED as module names; test_compiled_codec.py checks the two agree
    "gateway.sms.errors",
    "gateway.sms.gsm7",
    "gateway.sms.coding",
    "gateway.sms.udh",
    "gateway.sms.segment",
    "gateway.sms.tpdu",
    "gateway.sms.national",
    "gateway.smpp.constants",
    "gateway.smpp.errors",
    "gateway.smpp.tlv",
    "gateway.smpp.codec",
    "gateway.smpp.message",
)


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """fn's result, or the exception's type, status and text (both trees must fail alike)."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        return f"{type(exc).__name__}: {getattr(exc, 'status', '')!r} {exc}"


def outputs(messages: list[dict[str, str]]) -> list[Any]:
    from gateway.smpp.codec import decode_body, decode_pdu, encode_pdu  # noqa: PLC0415
    from gateway.smpp.message import SmBuilder, build_sm_pdus, message_content, pdu_text  # noqa: PLC0415
    from gateway.sms.segment import segment  # noqa: PLC0415
    from gateway.sms.tpdu import decode_pdu as decode_tpdu  # noqa: PLC0415
    from gateway.sms.tpdu import submit_tpdus  # noqa: PLC0415

    settings: dict[str, int] = {
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "registered_delivery": 1,
    }
    builder = SmBuilder(**settings)
    out: list[Any] = []
    seq = 1
    for i, m in enumerate(messages):
        text, src, dst, ref = m["text"], m["src"], m["dst"], i & 0xFF
        # (a) text -> submit_sm bytes, by the hot path and by segment() + build()
        pdus = builder.build_text(text, src, dst, range(seq, seq + 255), ref=ref)
        seq += len(pdus)
        out.append(pdus)
        out.append(
            _outcome(
                build_sm_pdus,
                segment(text, ref=ref),
                source_addr=src,
                destination_addr=dst,
                sequence_numbers=range(seq, seq + 255),
                **settings,
            )
        )
        # (b) bytes -> fields and text, and the generic encoder back to the same bytes
        for pdu in pdus:
            decoded = decode_pdu(pdu)
            out.append(repr(decoded))
            out.append(pdu_text(decoded))
            out.append(repr(message_content(decoded)))
            out.append(encode_pdu(decoded))
            cut = pdu[16 : 16 + i % (len(pdu) - 16)]  # the body cut short
            out.append(_outcome(decode_body, 4, 0, 1, cut))
        # (c) text -> SMS-SUBMIT TPDUs, and back
        tpdus = submit_tpdus(text, "+" + dst, ref=ref, status_report=True)
        out.append([t.hex for t in tpdus])
        out.append([repr(_outcome(decode_tpdu, t.hex, direction="mo")) for t in tpdus])
    return out


def main() -> int:
    corpus, dest, want = sys.argv[1:4]
    kinds = {name: Path(import_module(name).__file__ or "").suffix for name in MODULES}
    compiled = [name for name, suffix in kinds.items() if suffix == ".so"]
    expect = list(MODULES) if want == "compiled" else []
    if compiled != expect:
        print(f"asked for {want}, but these are compiled: {compiled}", file=sys.stderr)
        return 2
    messages = json.loads(Path(corpus).read_text(encoding="utf-8"))["messages"]
    Path(dest).write_bytes(pickle.dumps(outputs(messages)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
