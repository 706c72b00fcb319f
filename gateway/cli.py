"""The `smsgw` command:

    smsgw serve -c config/gateway.yaml   run the gateway (stops cleanly on SIGTERM)
    smsgw send --to NUMBER [--dlr] TEXT  send a message through a gateway, as an application
    smsgw send --to-file people.csv 'Hi {name}'   one to each row, with a progress bar
    smsgw emulate-modem [--count N]      emulated GSM modems on pseudo-terminals (no hardware)
    smsgw modem list                     the running gateway's modems: state, signal, counters
    smsgw modem ussd BANK/MODEM CODE     a USSD request through one modem, e.g. '*100#'
    smsgw query ID                       a message's state, parts, history and receipts
    smsgw status                         binds, upstreams, modems and queues
    smsgw reload                         apply the edited configuration, keeping binds

and the codec tools an admin reaches for when a message looks wrong:

    smsgw segment "text"          how a text is encoded and cut into parts, with the PDUs
    smsgw decode HEX              an SMPP PDU or a GSM 03.40 TPDU (as AT+CMGR prints it)
    smsgw check-config FILE       validate a configuration (errors name the YAML path and line)
    smsgw version

`smsgw send` exits 0 when every part (of every message) was accepted (and, with --dlr,
delivered), 1 when one was refused or its receipt says it failed, 2 on usage, connection or
bind errors, 3 when --timeout passed first. `smsgw modem|query|status|reload` talk to the
running gateway over its control socket (`control_socket` in the configuration) and exit 2
when they cannot reach it, 1 when it answers with an error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from gateway import __version__, recipients
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


def _load(path: str, *, complete: bool = False) -> GatewayConfig | None:
    """The configuration at `path`, or None after printing what is wrong with it;
    `complete`: refused as `check-config` refuses it (what `serve` would trip on)."""
    from gateway.config import ConfigError, load_config  # noqa: PLC0415 - pydantic only here

    try:
        return load_config(path, complete=complete)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _cmd_serve(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - the codec tools start without the event loop

    from gateway.app import run  # noqa: PLC0415
    from gateway.telemetry import logging as telemetry  # noqa: PLC0415

    config = _load(args.config, complete=True)
    if config is None:
        return 2
    node = config.node_id if "node_id" in config.model_fields_set else None
    telemetry.configure(config.logging, node=telemetry.node_name(node))
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


def _cmd_agent(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 - the codec tools start without the event loop

    from gateway.agent import run_agent  # noqa: PLC0415
    from gateway.config import ConfigError, load_agent_config  # noqa: PLC0415
    from gateway.telemetry import logging as telemetry  # noqa: PLC0415

    try:
        config = load_agent_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    telemetry.configure(config.logging, node=f"agent-{config.name}")
    try:
        asyncio.run(run_agent(config))
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
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
    if not port and path is None:
        return "no config/gateway.yaml here: give -c FILE, or --port and --system-id"
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


def _reason(exc: Exception) -> str:
    """'Connection refused', not "[Errno 111] Connect call failed ('127.0.0.1', 1)"."""
    import ssl  # noqa: PLC0415

    # An SSL error's errno is the library's, not the system's: its text says what failed.
    if isinstance(exc, OSError) and exc.errno is not None and not isinstance(exc, ssl.SSLError):
        return os.strerror(exc.errno)
    return str(exc)


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
        print(f"error: {host}:{port}: {_reason(exc)}", file=sys.stderr)
        return _EXIT_USAGE
    except SmsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    finally:
        await client.close()
    return _EXIT_FAILED if failed else 0


async def _send_many(
    args: argparse.Namespace,
    target: tuple[str, int, str, str, ssl.SSLContext | None],
    messages: list[tuple[str, str]],
) -> int:
    """Send every message over one bind, at most `--rate` a second, with a progress bar on
    stderr and a summary on stdout. --timeout bounds each response and, with --dlr, the wait
    for the receipts after the last submit (a bulk send may rightly take longer in all)."""
    import asyncio  # noqa: PLC0415
    import time  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415 - only a bulk send draws a bar
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn  # noqa: PLC0415

    from gateway.client import BindRefused, ConnectionLost, SmppClient  # noqa: PLC0415
    from gateway.smpp.receipt import ReceiptState, ids_match  # noqa: PLC0415

    host, port, system_id, password, context = target
    client = SmppClient(host, port, ssl_context=context, response_timeout=args.timeout)
    counts = {"accepted": 0, "failed": 0, "delivered": 0, "receipts": 0}
    # part id -> (message index, destination), waiting for the part's final receipt
    pending: dict[str, tuple[int, str]] = {}
    undelivered: set[int] = set()  # messages a part of which failed
    progress = Progress(
        TextColumn("{task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("accepted {task.fields[accepted]}  receipts {task.fields[receipts]}"),
        TextColumn("failed {task.fields[failed]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True, highlight=False),
        transient=True,
    )
    bar = progress.add_task("send", total=len(messages), accepted=0, receipts=0, failed=0)

    def show() -> None:
        progress.update(
            bar, accepted=counts["accepted"], receipts=counts["receipts"], failed=counts["failed"]
        )

    async def receipts() -> None:
        while True:
            receipt = await client.receipt()
            ours = next((i for i in pending if ids_match(i, receipt.message_id)), None)
            if ours is None or not receipt.final:
                continue
            index, number = pending.pop(ours)
            counts["receipts"] += 1
            if receipt.stat is not ReceiptState.DELIVRD and index not in undelivered:
                undelivered.add(index)
                counts["failed"] += 1
                progress.console.print(
                    f"{number}: {receipt.stat} err={receipt.err or '-'}", markup=False
                )
            elif index not in undelivered and all(i != index for i, _ in pending.values()):
                counts["delivered"] += 1  # its last part
            show()

    gap = 1.0 / args.rate if args.rate else 0.0
    code, error = 0, ""
    listener: asyncio.Task[None] | None = None
    progress.start()
    try:
        async with asyncio.timeout(args.timeout):
            await client.connect()
            await client.bind_transceiver(system_id, password)
        if args.dlr:
            listener = asyncio.create_task(receipts())
        started = time.monotonic()
        for n, (number, text) in enumerate(messages):
            delay = started + n * gap - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                parts = await client.submit_text(
                    number, text, source=args.source or "", registered_delivery=int(args.dlr)
                )
            except SmsError as exc:
                parts = []
                progress.console.print(f"{number}: {exc}", markup=False)
            refused = [p for p in parts if p.status != 0]
            if parts and not refused:
                counts["accepted"] += 1
                pending.update((p.message_id, (n, number)) for p in parts)
            else:
                counts["failed"] += 1
                for p in refused[:1]:
                    progress.console.print(f"{number}: refused {p.status_name}", markup=False)
            progress.advance(bar)
            show()
        if listener is not None:
            async with asyncio.timeout(args.timeout):
                while pending and not listener.done():
                    await asyncio.sleep(0.05)
        await client.unbind()
    except TimeoutError:
        code, error = _EXIT_TIMEOUT, f"timed out after {args.timeout:g}s"
    except BindRefused as exc:
        code, error = _EXIT_USAGE, str(exc)
    except (ConnectionLost, OSError) as exc:
        code, error = _EXIT_USAGE, f"{host}:{port}: {_reason(exc)}"
    finally:
        progress.stop()
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        await client.close()
    tried = int(progress.tasks[0].completed)
    if tried:  # what happened so far, also when the link broke half-way
        waiting = len({index for index, _ in pending.values()})
        summary = f"{len(messages)} messages: {counts['accepted']} accepted"
        summary += f", {counts['failed']} failed"
        if args.dlr:
            summary += f", {counts['delivered']} delivered, {waiting} without a final receipt"
        if tried < len(messages):
            summary += f", {len(messages) - tried} not sent"
        print(summary, flush=True)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return code
    return _EXIT_FAILED if counts["failed"] else 0


_NUMBER = re.compile(r"\+?[0-9]{1,20}")


class _InputError(Exception):
    """Wrong input for `smsgw send`: one line for the user, exit status 2."""


def _number(raw: str, where: str) -> str:
    number = recipients.clean_number(raw)
    if number is None:
        raise _InputError(f"{where}: {raw!r} is not a phone number (+49... or digits)")
    return number


def _read_to_file(path: str) -> tuple[list[str], list[dict[str, str]]]:
    """The numbers in `path`, and per row its columns when the file has a CSV header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as exc:
        raise _InputError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _InputError(f"{path}: not a text or CSV file ({exc})") from None
    try:
        rows = recipients.read_csv(text, path)
    except recipients.RecipientError as exc:
        raise _InputError(str(exc)) from None
    numbers = [_number(row.number, f"{path}:{row.line}") for row in rows]
    return numbers, [row.fields for row in rows if row.fields]


def _messages(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(destination, text) for every recipient the options name.

    Raises:
        _InputError: a bad number, sender, file or placeholder.
    """
    text: str = args.text
    if text == "-":
        text = sys.stdin.read().rstrip("\n")
    if not text:
        raise _InputError("empty text")
    source = args.source or ""
    if source and not _NUMBER.fullmatch(source.replace(" ", "")):
        if len(source) > 11:
            raise _InputError(f"sender {source!r} is {len(source)} characters: at most 11")
    elif len(source.replace(" ", "").lstrip("+")) > 20:
        raise _InputError(f"sender {source!r} is longer than 20 digits")
    numbers = [_number(n, "--to") for given in args.to or () for n in given.split(",") if n.strip()]
    out = [(n, text) for n in numbers]
    if args.to_file:
        file_numbers, fields = _read_to_file(args.to_file)
        if not fields:
            out += [(n, text) for n in file_numbers]
        for n, row in zip(file_numbers if fields else (), fields, strict=False):
            try:
                out.append((n, recipients.render(text, row)))
            except KeyError as exc:
                raise _InputError(
                    f"the text uses {{{exc.args[0]}}} but {args.to_file} has no such column"
                    f" (it has {', '.join(row)})"
                ) from None
            except recipients.RecipientError as exc:
                raise _InputError(str(exc)) from None
    if not out:
        raise _InputError("no recipient: give --to NUMBER or --to-file FILE")
    if args.rate is not None and not args.rate > 0:
        raise _InputError(f"--rate {args.rate:g}: give messages a second, more than 0")
    return out


def _cmd_send(args: argparse.Namespace) -> int:
    try:
        messages = _messages(args)
    except _InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_USAGE
    target = _send_target(args)
    if isinstance(target, str):
        if target:
            print(f"error: {target}", file=sys.stderr)
        return _EXIT_USAGE
    import asyncio  # noqa: PLC0415

    if len(messages) == 1 and args.rate is None:
        args.to, args.text = messages[0]
        return asyncio.run(_send(args, target))
    return asyncio.run(_send_many(args, target, messages))


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _cmd_check_config(args: argparse.Namespace) -> int:
    from gateway.config import (  # noqa: PLC0415 - pydantic only here
        ConfigError,
        is_agent_config,
        load_agent_config,
        load_config,
    )

    if is_agent_config(args.file):
        try:
            agent = load_agent_config(args.file)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        modems = sum(len(bank.modem_list()) for bank in agent.modem_banks.values())
        banks = _count(len(agent.modem_banks), "modem bank")
        print(f"{args.file}: ok (agent {agent.name}, {banks} with {_count(modems, 'modem')})")
        return 0
    try:
        # complete: also what validates but `serve` would trip on (no routes, bad host, ...)
        config = load_config(args.file, complete=True)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    modems = sum(len(bank.modem_list()) for bank in config.modem_banks.values())
    banks = _count(len(config.modem_banks), "modem bank")
    if config.modem_banks:
        banks += f" with {_count(modems, 'modem')}"
    counts = [
        _count(len(config.accounts), "account"),
        _count(len(config.upstreams), "upstream"),
        _count(len(config.simulated_carriers), "simulated carrier"),
        banks,
        _count(len(config.routes), "route"),
        _count(len(config.mo_routes), "MO route"),
    ]
    print(f"{args.file}: ok ({', '.join(counts)})")
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
        return _SYSTEMD_SOCKET if os.path.exists(_SYSTEMD_SOCKET) else "var/smsgw.sock"
    config = _load(path)
    if config is None:
        return None
    found = config.control_path()
    if found is None:
        print(f"error: {path} has no control_socket", file=sys.stderr)
        return None
    if config.control_socket is None and not found.exists() and os.path.exists(_SYSTEMD_SOCKET):
        return _SYSTEMD_SOCKET  # the service's (RuntimeDirectory=smsgw), seen from a shell
    return str(found)


_SYSTEMD_SOCKET = "/run/smsgw/smsgw.sock"


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
    if args.modem_command == "list":
        code, rows = _ask(args, "modem.list")
        if code:
            return code
        if args.json:
            print(json.dumps(rows, indent=2))
        elif not rows or not isinstance(rows, list):
            print("no modem banks configured")
        else:
            print("\n".join(_modem_table(rows)))
        return 0
    code, answer = _ask(args, "modem.ussd", modem=args.modem, code=args.code, wait=args.timeout)
    if code:
        return code
    print(answer)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("smsgw")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return __version__


def _ask(args: argparse.Namespace, command: str, **params: object) -> tuple[int, object]:
    """(0, result) of a control command, or (exit status, None) after one line on stderr:
    2 when the gateway cannot be reached, 1 when it answered with an error.

    Through the HTTP API when the configuration serves one and the running gateway's local
    token can be read (the one control path), else through the control socket."""
    from gateway.control import ControlError, Unreachable, request  # noqa: PLC0415

    target = _http_target(args)
    if target is not None:
        return _ask_http(target, args.timeout, command, params)
    path = _control_path(args)
    if path is None:
        return _EXIT_USAGE, None
    try:
        return 0, request(path, command, timeout=args.timeout, **params)
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_USAGE, None
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_FAILED, None


_SYSTEMD_TOKEN = "/run/smsgw/smsgw.token"


def _http_target(args: argparse.Namespace) -> tuple[str, str] | None:
    """(base URL, local token) of the running gateway's HTTP API, as it wrote them at start,
    or None to use the control socket (one named with --socket, no `http:` section, no
    token file readable)."""
    if args.socket:
        return None
    path = args.config
    if path is None and os.path.exists("config/gateway.yaml"):
        path = "config/gateway.yaml"
    if path is None:
        return None
    from gateway.config import ConfigError, load_config  # noqa: PLC0415 - pydantic only here

    try:
        config = load_config(path)
    except ConfigError:
        return None  # _control_path reports it
    if config.http is None:
        return None
    found = config.token_path()
    for candidate in (str(found) if found else None, _SYSTEMD_TOKEN):
        if candidate is None:
            continue
        try:
            with open(candidate, encoding="utf-8") as f:
                written = json.load(f)
            return str(written["url"]), str(written["token"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


_HTTP_CALLS = {
    "modem.list": ("GET", "/api/v1/modems"),
    "modem.ussd": ("POST", "/api/v1/modems/{bank}/{modem}/ussd"),
    "message.query": ("GET", "/api/v1/messages/{id}"),
    "status": ("GET", "/api/v1/status"),
    "stats": ("GET", "/api/v1/stats"),
    "reload": ("POST", "/api/v1/reload"),
}


def _ask_http(
    target: tuple[str, str], timeout: float, command: str, params: dict[str, object]
) -> tuple[int, object]:
    import httpx  # noqa: PLC0415 - only the control commands need it

    base, token = target
    method, route = _HTTP_CALLS[command]
    body: dict[str, object] | None = None
    if command == "modem.ussd":
        bank, _, modem = str(params.get("modem", "")).partition("/")
        if not modem:
            print(f"error: no modem {params.get('modem')!r}: give <bank>/<modem>", file=sys.stderr)
            return _EXIT_FAILED, None
        route = route.format(bank=bank, modem=modem)
        body = {"code": params.get("code"), "wait": params.get("wait", 30.0)}
    elif command == "message.query":
        route = route.format(id=params.get("id", ""))
    elif command == "stats":
        from urllib.parse import urlencode  # noqa: PLC0415

        route += "?" + urlencode({k: v for k, v in params.items() if v is not None})
    elif command == "reload" and params.get("path"):
        print("error: over HTTP the gateway reloads its own file; use --socket", file=sys.stderr)
        return _EXIT_USAGE, None
    try:
        # verify=False: our own node on loopback, whose certificate names its public host.
        with httpx.Client(base_url=base, timeout=timeout + 5, verify=False) as client:
            answer = client.request(
                method, route, json=body, headers={"Authorization": f"Bearer {token}"}
            )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the gateway at {base} ({exc}): is it running?", file=sys.stderr)
        return _EXIT_USAGE, None
    try:
        data = answer.json()
    except ValueError:
        data = None
    if answer.status_code >= 400:
        error = data.get("error") if isinstance(data, dict) else None
        message = error.get("message") if isinstance(error, dict) else answer.text.strip()
        print(f"error: {message}", file=sys.stderr)
        return _EXIT_FAILED, None
    if command == "modem.ussd" and isinstance(data, dict):
        return 0, data.get("answer")
    return 0, data


def _when(at: object) -> str:
    import time  # noqa: PLC0415

    if not isinstance(at, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"


def _cmd_query(args: argparse.Namespace) -> int:

    code, found = _ask(args, "message.query", id=args.id)
    if code or not isinstance(found, dict):
        return code or _EXIT_FAILED
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    error = found.get("error")
    print(f"id:          {found['id']}")
    print(f"state:       {found['state']}" + (f" (error 0x{error:08X})" if error else ""))
    print(f"account:     {found['account']}  route: {_cell(found.get('route'))}")
    print(f"from/to:     {_cell(found.get('source'))} -> {found['destination']}")
    print(f"parts:       {_cell(found.get('parts'))}  attempts: {found.get('attempts')}")
    print(f"accepted:    {_when(found.get('accepted_at'))}")
    print("history:")
    for at, state in found.get("history") or []:
        print(f"  {_when(at)}  {state}")
    receipts = found.get("receipts") or []
    print("receipts:" + ("" if receipts else " none"))
    for r in receipts:
        print(
            f"  part {r['part']} {_when(r['received_at'])} from {r['upstream']}"
            f" id={r['upstream_id']} state={r['message_state']} err={r['error']}"
        )
        if r.get("raw"):
            print(f"    {r['raw']}")
    return 0


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    table = [head, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table]


def _rate(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, float) else "-"


def _seconds(value: object) -> str:
    return f"{value:.1f}s" if isinstance(value, int | float) else "-"


_STATS_COLUMNS = (
    "SENT",
    "DELIVERED",
    "FAILED",
    "EXPIRED",
    "REJECTED",
    "PENDING",
    "RATE",
    "P50",
    "P95",
)


def _cmd_stats(args: argparse.Namespace) -> int:
    target = _http_target(args)
    if target is None:
        print("error: smsgw stats needs the gateway's HTTP API (an http: section)", file=sys.stderr)
        return _EXIT_USAGE
    params = {"group": args.group, "since": args.since, "until": args.until}
    params |= {"campaign": args.campaign, "class": args.msg_class}
    code, found = _ask_http(target, args.timeout, "stats", params)
    if code or not isinstance(found, dict):
        return code or _EXIT_FAILED
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    group = [str(g) for g in found.get("group") or []]
    rows = [
        (
            *(_cell(row.get(g)) if g != "hour" else _when(row.get(g))[:16] for g in group),
            *(str(row.get(k, 0)) for k in ("sent", "delivered", "failed", "expired", "rejected")),
            str(row.get("pending", 0)),
            _rate(row.get("delivery_rate")),
            _seconds(row.get("latency_p50")),
            _seconds(row.get("latency_p95")),
        )
        for row in found.get("rows") or []
    ]
    if not rows:
        print("no messages in that time")
        return 0
    print("\n".join(_table((*(g.upper() for g in group), *_STATS_COLUMNS), rows)))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:

    code, status = _ask(args, "status")
    if code or not isinstance(status, dict):
        return code or _EXIT_FAILED
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"gateway: node {status.get('node')}, SMPP port {_cell(status.get('port'))}")
    binds = status.get("binds") or {}
    print("\nbinds:" + ("" if binds else " none"))
    if binds:
        rows: list[tuple[str, ...]] = [
            (account, kind.removeprefix("bound_"), str(count))
            for account, kinds in sorted(binds.items())
            for kind, count in sorted(kinds.items())
        ]
        print("\n".join("  " + line for line in _table(("ACCOUNT", "TYPE", "BINDS"), rows)))
    upstreams = status.get("upstreams") or {}
    print("\nupstreams:" + ("" if upstreams else " none"))
    if upstreams:
        rows = [
            (
                name,
                "up" if up.get("usable") else "down",
                " ".join(
                    f"{link['link']}:{'bound' if link['bound'] else 'down'}" for link in up["links"]
                ),
                str(sum(link["in_flight"] for link in up["links"])),
            )
            for name, up in sorted(upstreams.items())
        ]
        print(
            "\n".join(
                "  " + line for line in _table(("UPSTREAM", "STATE", "LINKS", "IN FLIGHT"), rows)
            )
        )
    modems = status.get("modems") or []
    print("\nmodems:" + ("" if modems else " none"))
    if modems:
        print("\n".join("  " + line for line in _modem_table(modems)))
    queues = status.get("queues")
    print("\nqueues:" + (" not counted by this store" if queues is None else ""))
    if isinstance(queues, dict):
        print(f"  messages waiting: {queues.get('messages_waiting')}{_age(queues, 'message')}")
        deliveries = queues.get("deliveries_waiting") or {}
        listed = ", ".join(f"{a} {n}" for a, n in sorted(deliveries.items())) or "none"
        print(f"  deliveries waiting: {listed}{_age(queues, 'delivery')}")
    return 0


def _age(queues: dict[str, object], what: str) -> str:
    age = queues.get(f"oldest_{what}_age")
    return f" (oldest {age:.0f}s)" if isinstance(age, int | float) else ""


def _cmd_reload(args: argparse.Namespace) -> int:
    code, result = _ask(args, "reload")
    if code:
        return code
    applied = result.get("applied") if isinstance(result, dict) else None
    print("reloaded: " + (", ".join(map(str, applied)) if applied else "nothing changed"))
    return 0


def _cmd_suppress(args: argparse.Namespace) -> int:
    """The suppression list, through the running gateway's HTTP API (local token)."""
    import httpx  # noqa: PLC0415 - only the control commands need it

    target = _http_target(args)
    if target is None:
        print(
            "error: smsgw suppress talks to the gateway's HTTP API: configure http: and run it "
            "(its local token is read from beside the control socket)",
            file=sys.stderr,
        )
        return _EXIT_USAGE
    base, token = target
    headers = {"Authorization": f"Bearer {token}"}
    action = args.suppress_command
    try:
        with httpx.Client(
            base_url=base, timeout=args.timeout, verify=False, headers=headers
        ) as client:
            if action == "export":
                return _export(client, args.file)
            answer = _suppress_call(client, args)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach the gateway at {base} ({exc}): is it running?", file=sys.stderr)
        return _EXIT_USAGE
    except OSError as exc:  # the file to import, or to export to
        print(f"error: {exc}", file=sys.stderr)
        return _EXIT_FAILED
    if answer.status_code >= 400:
        print(f"error: {_error_message(answer)}", file=sys.stderr)
        return _EXIT_FAILED
    data = answer.json()
    if action == "import":
        print(f"suppressed {data['suppressed']}, invalid {data['invalid']}")
        for row in data.get("invalid_rows") or []:
            print(f"  line {row['line']}: {row['value']!r} is not a phone number")
    elif action == "remove":
        print(f"{data['number']}: removed ({data['removed']})")
    else:
        print(_suppression_text(data))
    return 0


def _suppress_call(client: Any, args: argparse.Namespace) -> Any:
    from urllib.parse import quote  # noqa: PLC0415

    if args.suppress_command == "import":
        with open(args.file, "rb") as f:  # streamed: a file of millions is never read whole
            return client.post(
                "/api/v1/suppressions/import", content=f, headers={"content-type": "text/csv"}
            )
    route = f"/api/v1/suppressions/{quote(args.number, safe='')}"
    if args.suppress_command == "add":
        return client.put(route, json={"scope": args.scope})
    if args.suppress_command == "remove":
        return client.delete(route, params={} if args.scope is None else {"scope": args.scope})
    return client.get(route)


def _export(client: Any, path: str | None) -> int:
    with client.stream("GET", "/api/v1/suppressions/export") as answer:
        if answer.status_code >= 400:
            answer.read()
            print(f"error: {_error_message(answer)}", file=sys.stderr)
            return _EXIT_FAILED
        out = open(path, "wb") if path else sys.stdout.buffer  # noqa: SIM115 - closed below
        try:
            for chunk in answer.iter_bytes():
                out.write(chunk)
        finally:
            if path:
                out.close()
            else:
                out.flush()
    return 0


def _error_message(answer: Any) -> str:
    try:
        error = answer.json().get("error")
        return str(error["message"])
    except (ValueError, AttributeError, KeyError, TypeError):
        return f"HTTP {answer.status_code}: {answer.text.strip()[:200]}"


def _suppression_text(data: dict[str, Any]) -> str:
    rows = data.get("suppressions") or []
    if not rows:
        return f"{data['number']}: not suppressed"
    lines = [f"{data['number']}: suppressed"]
    for row in rows:
        scope = row["scope"] or "every sender"
        lines.append(f"  {scope}: since {row['created_at']} ({row['source']})")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smsgw", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"smsgw {_version()}")
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

    p = sub.add_parser("agent", help="drive this host's modems for gateways, over MQTT")
    p.add_argument("-c", "--config", default="config/agent.yaml")
    p.set_defaults(func=_cmd_agent)

    p = sub.add_parser("send", help="send a message through a gateway, as an application would")
    p.add_argument("text", help="the text, '-' to read it from stdin; {column} placeholders")
    p.add_argument(
        "--to",
        action="append",
        metavar="NUMBER[,NUMBER...]",
        help="destination (+49... or digits); repeat it or give a comma list",
    )
    p.add_argument(
        "--to-file", help="one number a line, or CSV with a header whose columns fill {name}"
    )
    p.add_argument("--rate", type=float, help="at most this many messages a second")
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

    for name, text, func in (
        ("query", "a message's state, parts, history and receipts", _cmd_query),
        ("status", "binds, upstreams, modems and queues on one screen", _cmd_status),
        ("reload", "apply the changed configuration without a restart", _cmd_reload),
    ):
        p = sub.add_parser(name, help=text)
        if name == "query":
            p.add_argument("id", help="the message id the gateway answered with")
        if name != "reload":
            p.add_argument("--json", action="store_true", help="print JSON")
        p.add_argument("--timeout", type=float, default=30.0, help="seconds for the answer")
        p.add_argument("-c", "--config", help="default: config/gateway.yaml when it exists")
        p.add_argument("--socket", help="the control socket (default: the config's)")
        p.set_defaults(func=func)

    p = sub.add_parser("suppress", help="the opt-out list: add, remove, show, import, export")
    suppress_sub = p.add_subparsers(dest="suppress_command", required=True)
    for name, text in (
        ("add", "suppress a number (for every sender, or --scope SENDER)"),
        ("remove", "remove a number's suppression (every scope, or --scope SENDER)"),
        ("show", "whether a number is suppressed, and since when"),
        ("import", "suppress every number of a CSV file: number[,scope] per line"),
        ("export", "write the whole list as CSV (to FILE, else stdout)"),
    ):
        q = suppress_sub.add_parser(name, help=text)
        if name in ("add", "remove", "show"):
            q.add_argument("number")
        if name == "add":
            q.add_argument("--scope", default="", help="a sender id (source_addr); default: all")
        if name == "remove":
            q.add_argument("--scope", help="only this sender id's suppression")
        if name == "import":
            q.add_argument("file")
        if name == "export":
            q.add_argument("file", nargs="?")
        q.add_argument("--timeout", type=float, default=600.0, help="seconds for the answer")
        q.add_argument("-c", "--config", help="default: config/gateway.yaml when it exists")
        q.set_defaults(func=_cmd_suppress, socket=None)

    p = sub.add_parser("stats", help="delivery statistics per route, target, campaign...")
    p.add_argument(
        "--group",
        default="route,target",
        help="comma-separated: hour, account, route, target, class, campaign, country, "
        "operator, prefix (default: route,target)",
    )
    p.add_argument("--since", default="24h", help="ISO 8601 or a duration back (default 24h)")
    p.add_argument("--until", help="ISO 8601 or a duration back (default: now)")
    p.add_argument("--campaign", help="only this campaign tag")
    p.add_argument("--class", dest="msg_class", help="only this message class")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for the answer")
    p.add_argument("-c", "--config", help="default: config/gateway.yaml when it exists")
    p.add_argument("--socket", help="unused: stats come through the HTTP API")
    p.set_defaults(func=_cmd_stats)

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func=lambda _args: print(__version__) or 0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:  # Ctrl-C in a bulk send: a line, not a traceback
        print("error: interrupted", file=sys.stderr)
        return 130
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
