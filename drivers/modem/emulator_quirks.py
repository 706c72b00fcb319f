"""The emulated modem's quirks, and vendor profiles that bundle them.

Each quirk is one thing a real modem does that has cost a driver messages; the vendor profiles
switch on what one family is known for, so an end-to-end test can run "as a SIM800", "as a
Quectel", "as a Huawei stick". Sources: SIMCom SIM800 Series AT Command Manual (SMS Ready, CMS
321 for an empty index), Quectel EC2x/EG25 AT Commands Manual (AT+QURCCFG), Huawei
E3372/E173 AT manuals (^SMMEMFULL, packed USSD with DCS 15), 3GPP TS 27.005.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

__all__ = ["VENDOR_PROFILES", "Quirks", "VendorProfile", "vendor"]


@dataclass(slots=True)
class Quirks:
    """What real modems do that trips drivers up. All off by default; read when used.

    Attributes:
        echo: echo on after start and ATZ (V.250's own default; most drivers send ATE0).
        urc_mid_answer: write a ^RSSI or +CREG line inside every answer, before its final
            result code.
        slow: seconds before each command line is answered.
        cms_error_every: every Nth AT+CMGS fails with +CMS ERROR `cms_error_code` (0: never).
        cms_error_code: 500 (unknown error) or 512 (manufacturer specific) are the usual ones.
        pin: the SIM asks for this PIN (+CPIN: SIM PIN) until AT+CPIN=<pin>; three wrong ones
            lock it (SIM PUK) until AT+CPIN=<puk>,<new pin>.
        puk: the PUK for that.
        sim_busy: the first N AT+CPIN? answer +CME ERROR: 14 (SIM busy).
        registration_delay: seconds of +CREG stat 2 (searching) before stat 1.
        storage_full: storing fails (+CMS ERROR: 322) and +CMTI / +CDSI stop; the network keeps
            the messages and retries once this is switched off.
        urc_flood_ms: write a Huawei-style ^RSSI / ^MODE / ^BOOT line every this many ms
            (AT^CURC=0 stops it, as on the real ones).
        no_smsc: no SMSC address on the SIM: AT+CMGS without one in the PDU gives +CMS ERROR:
            330 until AT+CSCA sets it.
        bare_prompt: "> " with no line end before it (some modems send "\\r\\n> ").
        zero_based_index: storage indices start at 0, as on Huawei and Quectel modems.
        ussd_packed: USSD strings are GSM 7-bit packed hex both ways, as on Huawei modems.
        drop_unrouted_reports: a status report that arrives while AT+CNMI <ds> is 0 is thrown
            away, not stored (27.005 3.4.1: ds=0 "no SMS-STATUS-REPORTs are routed to the TE";
            SIMCom and others keep none either).
        sms_ready_delay: SMS commands answer ERROR for this many seconds after the SIM is
            ready, then "Call Ready" and "SMS Ready" come (SIMCom SIM800; the network holds
            messages meanwhile).
        urc_port: "" (URCs on this port) or the port a Quectel sends every URC to until
            AT+QURCCFG="urcport","usbat" (e.g. "usbmodem"): they never arrive here. Also
            makes AT+QURCCFG known (Quectel EC2x/EG25 AT manual, AT+QURCCFG).
        sms_urcs_lost: +CMTI / +CDSI / +CMT / +CDS never reach this port, whatever is set.
        cdsi_wrong_mem: +CDSI names "SM" for a report stored in "SR".
        smmemfull: Huawei's ^SMMEMFULL: "<mem>" when a memory fills.
        empty_slot_321: AT+CMGR of an empty slot answers +CMS ERROR: 321 (SIMCom, Quectel),
            not an empty OK.
        reports_in_mem3: status reports are stored in AT+CPMS <mem3> with inbound messages,
            announced by +CDSI: "<mem3>" (some Huawei and Qualcomm firmware), not in "SR".
        cmt_always: SMS-DELIVERs come as +CMT whatever AT+CNMI <mt> says, and AT+CSMS
            starts at 1 (phase 2+: each needs AT+CNMA, or the network sends it again).
        vendor: a name in `VENDOR_PROFILES`: in `parse`, "vendor=sim800" switches on that
            profile's quirks (items after it may change them), and the modem takes the
            profile's manufacturer and model unless given its own.
    """

    echo: bool = False
    urc_mid_answer: bool = False
    slow: float = 0.0
    cms_error_every: int = 0
    cms_error_code: int = 500
    pin: str | None = None
    puk: str = "12345678"
    sim_busy: int = 0
    registration_delay: float = 0.0
    storage_full: bool = False
    urc_flood_ms: float = 0.0
    no_smsc: bool = False
    bare_prompt: bool = False
    zero_based_index: bool = False
    ussd_packed: bool = False
    drop_unrouted_reports: bool = False
    sms_ready_delay: float = 0.0
    urc_port: str = ""
    sms_urcs_lost: bool = False
    cdsi_wrong_mem: bool = False
    smmemfull: bool = False
    empty_slot_321: bool = False
    cmt_always: bool = False
    reports_in_mem3: bool = False
    vendor: str = ""

    @classmethod
    def parse(cls, items: Iterable[str]) -> Quirks:
        """Quirks from ``name=value`` strings (as `smsgw emulate-modem --quirk` takes them).

        Raises:
            ValueError: an unknown name or a value of the wrong type.
        """
        kinds = {f.name: f.type for f in fields(cls)}
        quirks = cls()
        for item in items:
            name, sep, raw = item.partition("=")
            name = name.strip().replace("-", "_")
            if name not in kinds:
                raise ValueError(f"unknown quirk {name!r}; known: {', '.join(sorted(kinds))}")
            if name == "vendor":
                profile = VENDOR_PROFILES.get(raw.strip().lower())
                if profile is None:
                    known = ", ".join(sorted(VENDOR_PROFILES))
                    raise ValueError(f"quirk vendor: {raw!r} is not one of {known}")
                for key, switch in profile.quirks.items():
                    setattr(quirks, key, switch)
                quirks.vendor = raw.strip().lower()
                continue
            kind = str(kinds[name])
            value: object
            if kind == "bool":
                if not sep or raw.lower() in ("1", "true", "yes", "on"):
                    value = True
                elif raw.lower() in ("0", "false", "no", "off"):
                    value = False
                else:
                    raise ValueError(f"quirk {name}: {raw!r} is not a boolean")
            else:
                try:
                    value = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
                except ValueError:
                    raise ValueError(f"quirk {name}: {raw!r} is not a {kind}") from None
            setattr(quirks, name, value)
        return quirks


@dataclass(frozen=True, slots=True)
class VendorProfile:
    """What `ModemEmulator` is given to play one vendor's modem."""

    manufacturer: str
    model: str
    quirks: dict[str, object] = field(default_factory=dict)


VENDOR_PROFILES: dict[str, VendorProfile] = {
    # Seeed-Studio/GPRS_SIM900#39: AT+CMGF errors until "Call Ready" / "SMS Ready", which
    # come a few seconds after power-on, before the network is found.
    "sim800": VendorProfile(
        "SIMCOM_Ltd",
        "SIMCOM_SIM800L",
        {
            "sms_ready_delay": 1.0,
            "registration_delay": 2.0,
            "drop_unrouted_reports": True,
            "empty_slot_321": True,
        },
    ),
    "quectel": VendorProfile(
        "Quectel",
        "EC25",
        {
            "urc_port": "usbmodem",
            "registration_delay": 2.0,  # seconds: a replug is found well before the network
            "zero_based_index": True,
            "empty_slot_321": True,
            "drop_unrouted_reports": True,
        },
    ),
    "huawei": VendorProfile(
        "huawei",
        "E173",
        {
            "ussd_packed": True,
            "registration_delay": 2.0,
            "smmemfull": True,
            "zero_based_index": True,
            "cdsi_wrong_mem": True,
            "urc_flood_ms": 500.0,
        },
    ),
}


def vendor(name: str) -> tuple[VendorProfile, Quirks]:
    """The profile called `name` and fresh `Quirks` with its switches on.

    Raises:
        KeyError: no such profile.
    """
    profile = VENDOR_PROFILES[name]
    return profile, Quirks.parse([f"vendor={name}"])
