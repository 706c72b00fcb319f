"""The `smsgw` command:

    smsgw serve -c config/gateway.yaml   run the gateway (stops cleanly on SIGTERM)
    smsgw send --to NUMBER [--dlr] TEXT  send a message through a gateway, as an application
    smsgw emulate-modem [--count N]      emulated GSM modems on pseudo-terminals (no hardware)
    smsgw modem list                     the running gateway's modems: state, signal, counters
    smsgw modem ussd BANK/MODEM CODE     a USSD request through one modem, e.g. '*100#'

and the codec tools an admin reaches for when a message looks wrong:

    smsgw segment "text"          how a text is encoded and cut into parts, with the PDUs
    smsgw decode HEX              an SMPP PDU or a GSM 03.40 TPDU (as AT+CMGR prints it)
    smsgw check-config FILE       validate a configuration (errors name the YAML path and line)
    smsgw version

`smsgw send` exits 0 when every part was accepted (and, with --dlr, delivered), 1 when one
was refused or its receipt says it failed, 2 on usage, connection or bind errors, 3 when
--timeout passed first. `smsgw modem ...` talks to the running gateway over its control
socket (`control_socket` in the configuration) and exits 2 when it cannot reach it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.smpp import (
    RemoteSmppError,
    build_sm_pdus,
    decode_pdu,
    message_content,
)
from gateway.sms import ConcatMethod, Encoding, SmsError, segment

if TYPE_CHECKING:
    import ssl

    from gateway.config import GatewayConfig

__all__ = ["main"]


def _cmd_segment(args: argparse.Namespace) -> int:
    encoding = Encoding[args.encoding.upper()] if args.encoding else None
    try:
        segs = segment(
            args.text,
            ref=args.ref,
            encoding=encoding,
            method=ConcatMethod(args.method),
            max_parts=args.max_parts,
        )
    except (SmsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    unit = "septets" if segs.encoding is Encoding.GSM7 else "octets"
    print(f"encoding: {segs.encoding.name} (data_coding {int(segs.encoding)})")
    print(f"parts: {segs.total} ({args.method})")
    for i, body in enumerate(segs.bodies):
        udh = segs.udhs[i].hex() or "-"
        print(f"  part {i + 1}: {len(body)} {unit}, udh {udh}")
    if args.pdus:
        pdus = build_sm_pdus(
            segs,
            source_addr=args.source,
            destination_addr=args.destination,
            sequence_numbers=range(1, segs.total + 1),
        )
        for pdu in pdus:
            print(pdu.hex())
    return 0


def _cmd_decode(args: argparse.Namespace) -> int:
    raw = "".join(args.hex).replace(" ", "")
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        print("error: not hexadecimal", file=sys.stderr)
        return 2
    if len(data) >= 16 and int.from_bytes(data[:4], "big") == len(data):
        try:
            pdu = decode_pdu(data)
        except RemoteSmppError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(pdu)
        if hasattr(pdu, "short_message") or hasattr(pdu, "data_coding"):
            try:
                content = message_content(pdu)  # type: ignore[arg-type]
                print(f"text: {content.text('replace')!r}")
                if content.concat:
                    print(f"concat: {content.concat}")
            except (RemoteSmppError, SmsError) as exc:
                print(f"text: undecodable ({exc})")
        return 0
    try:
        from gateway.sms import tpdu  # noqa: PLC0415 - only this command needs it
    except ImportError:  # pragma: no cover
        print("error: not an SMPP PDU", file=sys.stderr)
        return 2
    try:
        print(tpdu.decode_pdu(data, has_smsc=not args.no_smsc))
    except SmsError as exc:
        print(f"error: neither an SMPP PDU nor a TPDU: {exc}", file=sys.stderr)
        return 2
    return 0


def _load(path: str) -> GatewayConfig | None:
    """The configuration at `path`, or None after printing what is wrong with it."""
    from gateway.config import ConfigError, load_config  # noqa: PLC0415 - pydantic only here

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - the codec tools start without the event loop

    from gateway.app import run  # noqa: PLC0415

    config = _load(args.config)
    if config is None:
        return 2
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = asyncio.new_event_loop
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(run(config, path=args.config))
    except NotImplementedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


_EXIT_FAILED, _EXIT_USAGE, _EXIT_TIMEOUT = 1, 2, 3
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def _send_target(
    args: argparse.Namespace,
) -> tuple[str, int, str, str, ssl.SSLContext | None] | str:
    """(host, port, system_id, password, TLS context) from the options and the
    configuration, or what is missing."""
    import ssl  # noqa: PLC0415 - only `send --tls` needs it

    config: GatewayConfig | None = None
    path = args.config
    if path is None and os.path.exists("config/gateway.yaml"):
        path = "config/gateway.yaml"
    if path is not None:
        config = _load(path)
        if config is None:
            return ""  # _load said what is wrong
    listen = config.listen if config is not None else None
    host = args.host
    if not host:
        host = _WILDCARDS.get(listen.host, listen.host) if listen else "127.0.0.1"
    port = args.port
    if port is None and listen is not None:
        port = listen.tls_port if args.tls else listen.port
    if not port:
        return "no port: give --port (the configuration has none we can connect to)"
    accounts = config.accounts if config is not None else ()
    system_id = args.system_id or (accounts[0].system_id if accounts else None)
    if not system_id:
        return "no account: give --system-id (the configuration has none)"
    password = args.password or os.environ.get("SMSGW_PASSWORD")
    if password is None:
        account = next((a for a in accounts if a.system_id == system_id), None)
        password = account.password if account is not None else None
    if password is None:
        return f"no password for {system_id}: give --password or set SMSGW_PASSWORD"
    context = None
    if args.tls:
        context = ssl.create_default_context(cafile=args.cafile)
    return host, int(port), system_id, password, context


async def _send(
    args: argparse.Namespace,
    target: tuple[str, int, str, str, ssl.SSLContext | None],
) -> int:
    import asyncio  # noqa: PLC0415 - the codec tools start without the event loop

    from gateway.client import BindRefused, ConnectionLost, SmppClient  # noqa: PLC0415
    from gateway.smpp.receipt import ReceiptState, ids_match  # noqa: PLC0415

    host, port, system_id, password, context = target
    client = SmppClient(host, port, ssl_context=context, response_timeout=args.timeout)
    try:
        async with asyncio.timeout(args.timeout):
            await client.connect()
            await client.bind_transceiver(system_id, password)
            parts = await client.submit_text(
                args.to, args.text, source=args.source or "", registered_delivery=int(args.dlr)
            )
            for part in parts:
                if part.status == 0:
                    print(f"part {part.part}/{part.total}: id={part.message_id}", flush=True)
                else:
                    print(
                        f"part {part.part}/{part.total}: refused {part.status_name}",
                        file=sys.stderr,
                        flush=True,
                    )
            pending = [p.message_id for p in parts if p.status == 0]
            failed = len(pending) < len(parts)
            if args.dlr and not failed:
                while pending:
                    receipt = await client.receipt()
                    ours = next((i for i in pending if ids_match(i, receipt.message_id)), None)
                    if ours is None or not receipt.final:
                        continue  # someone else's, or not the last word yet
                    pending.remove(ours)
                    print(
                        f"receipt: id={ours} stat={receipt.stat} err={receipt.err or '-'}",
                        flush=True,
                    )
                    failed = failed or receipt.stat is not ReceiptState.DELIVRD
            await client.unbind()
    except TimeoutError:
        print(f"error: timed out after {args.timeout:g}s", file=sys.stderr)
        return _EXIT_TIMEOUT
    except BindRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except (ConnectionLost, OSError) as exc:
        print(f"error: {host}:{port}: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    except SmsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    finally:
        await client.close()
    return _EXIT_FAILED if failed else 0


def _cmd_send(args: argparse.Namespace) -> int:
    target = _send_target(args)
    if isinstance(target, str):
        if target:
            print(f"error: {target}", file=sys.stderr)
        return _EXIT_USAGE
    import asyncio  # noqa: PLC0415

    return asyncio.run(_send(args, target))


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.file)
    if config is None:
        return 2
    print(
        f"{args.file}: ok ({len(config.accounts)} accounts, {len(config.upstreams)} upstreams, "
        f"{len(config.simulated_carriers)} simulated carriers, {len(config.routes)} routes)"
    )
    return 0


def _cmd_emulate_modem(args: argparse.Namespace) -> int:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from drivers.modem.emulator import Quirks, serve_emulators  # noqa: PLC0415

    try:
        Quirks.parse(args.quirk)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    serve_emulators(
        args.count,
        link_dir=args.link_dir,
        report_delay=args.report_delay,
        quirks=args.quirk,
        stop=stop,
        out=lambda line: print(line, flush=True),
    )
    return 0


def _control_path(args: argparse.Namespace) -> str | None:
    if args.socket:
        return str(args.socket)
    path = args.config
    if path is None and os.path.exists("config/gateway.yaml"):
        path = "config/gateway.yaml"
    if path is None:
        return "var/smsgw.sock"
    config = _load(path)
    if config is None:
        return None
    if config.control_path() is None:
        print(f"error: {path} has no control_socket", file=sys.stderr)
        return None
    return str(config.control_path())


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _modem_table(rows: list[dict[str, object]]) -> list[str]:
    head = (
        "MODEM",
        "STATE",
        "PORT",
        "SIGNAL",
        "REG",
        "OPERATOR",
        "SENT",
        "FAILED",
        "RECV",
        "QUEUE",
        "USED m/d/M",
        "LIMIT m/d/M",
        "LAST ERROR",
    )
    table = [head]
    for row in rows:
        used = row.get("used") or {}
        limits = row.get("limits") or {}
        assert isinstance(used, dict) and isinstance(limits, dict)
        signal = row.get("signal_dbm")
        table.append(
            (
                f"{row.get('bank')}/{row.get('name')}",
                _cell(row.get("state")),
                _cell(row.get("port")),
                "-" if signal is None else f"{signal} dBm",
                _cell(row.get("registration")),
                _cell(row.get("operator")),
                _cell(row.get("sent")),
                _cell(row.get("failed")),
                _cell(row.get("received")),
                _cell(row.get("queue")),
                "/".join(_cell(used.get(k)) for k in ("minute", "day", "month")),
                "/".join(_cell(limits.get(k)) for k in ("minute", "day", "month")),
                _cell(row.get("last_error")),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


def _cmd_modem(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from gateway.control import ControlError, request  # noqa: PLC0415

    path = _control_path(args)
    if path is None:
        return 2
    try:
        if args.modem_command == "list":
            rows = request(path, "modem.list", timeout=args.timeout)
            if args.json:
                print(json.dumps(rows, indent=2))
            elif not rows:
                print("no modem banks configured")
            else:
                print("\n".join(_modem_table(rows)))
            return 0
        answer = request(
            path,
            "modem.ussd",
            timeout=args.timeout + 5,
            modem=args.modem,
            code=args.code,
            wait=args.timeout,
        )
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if args.modem_command == "list" else 1
    print(answer)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("segment", help="show how a text is encoded and split")
    p.add_argument("text")
    p.add_argument("--encoding", choices=[e.name.lower() for e in Encoding])
    p.add_argument("--method", choices=[m.value for m in ConcatMethod], default="udh8")
    p.add_argument("--ref", type=int, default=0)
    p.add_argument("--max-parts", type=int, default=255)
    p.add_argument("--pdus", action="store_true", help="print the submit_sm PDUs in hex")
    p.add_argument("--source", default="smsgw")
    p.add_argument("--destination", default="0")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("decode", help="decode an SMPP PDU or a GSM 03.40 TPDU given in hex")
    p.add_argument("hex", nargs="+")
    p.add_argument("--no-smsc", action="store_true", help="the TPDU has no SMSC address prefix")
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("-c", "--config", default="config/gateway.yaml")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("send", help="send a message through a gateway, as an application would")
    p.add_argument("text")
    p.add_argument("--to", required=True, help="destination number (+49... or digits)")
    p.add_argument("--from", dest="source", help="sender: a number or up to 11 characters")
    p.add_argument("--dlr", action="store_true", help="ask for receipts and wait for them")
    p.add_argument("--host", help="default: the configuration's listen.host")
    p.add_argument("--port", type=int, help="default: listen.port (listen.tls_port with --tls)")
    p.add_argument("--system-id", help="default: the configuration's first account")
    p.add_argument("--password", help="default: $SMSGW_PASSWORD, else the account's password")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--cafile", help="trust this CA (or self-signed certificate) for --tls")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for everything")
    p.add_argument("-c", "--config", help="default: config/gateway.yaml when it exists")
    p.set_defaults(func=_cmd_send)

    p = sub.add_parser("check-config", help="validate a configuration file without starting")
    p.add_argument("file")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("emulate-modem", help="run emulated GSM modems on pseudo-terminals")
    p.add_argument("--count", type=int, default=1, help="modems on the one simulated network")
    p.add_argument("--link-dir", help="keep a symlink DIR/modemN to each modem's pty")
    p.add_argument("--report-delay", type=float, default=0.5, help="seconds to a status report")
    p.add_argument(
        "--quirk", action="append", default=[], metavar="NAME=VALUE", help="e.g. echo=1, slow=0.2"
    )
    p.set_defaults(func=_cmd_emulate_modem)

    p = sub.add_parser("modem", help="the running gateway's modems: list, ussd")
    modem_sub = p.add_subparsers(dest="modem_command", required=True)
    for name, text in (("list", "show every bank's modems"), ("ussd", "send a USSD code")):
        q = modem_sub.add_parser(name, help=text)
        if name == "ussd":
            q.add_argument("modem", help="BANK/MODEM, as smsgw modem list names it")
            q.add_argument("code", help="e.g. '*100#'")
            q.add_argument("--timeout", type=float, default=30.0, help="seconds for the answer")
        else:
            q.add_argument("--json", action="store_true", help="print JSON instead of a table")
            q.add_argument("--timeout", type=float, default=10.0, help="seconds for the answer")
        q.add_argument("-c", "--config", help="default: config/gateway.yaml when it exists")
        q.add_argument("--socket", help="the control socket (default: the config's)")
        q.set_defaults(func=_cmd_modem)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=lambda _args: print(__version__) or 0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
