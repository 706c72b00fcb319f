"""Who may bind: accounts from the config, checked for password, bind type, address and count.

Passwords are compared in constant time. A stored hash is ``pbkdf2_sha256$ITERATIONS$SALT$HASH``
(salt and hash in hex), made by `hash_password`; a plain password in the config works too.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections import Counter
from collections.abc import Iterable

from gateway.config import AccountConfig
from gateway.smpp.constants import CommandStatus

__all__ = ["Authenticator", "hash_password", "verify_password"]

_BIND_TYPES = {
    "bind_transmitter": "transmitter",
    "bind_receiver": "receiver",
    "bind_transceiver": "transceiver",
}


def hash_password(password: str, *, iterations: int = 200_000) -> str:
    """A hash for the config's password_hash."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` hash; False for a malformed hash."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


class Authenticator:
    """Decides binds and counts the live ones per account."""

    def __init__(self, accounts: Iterable[AccountConfig]) -> None:
        self.accounts = {a.system_id: a for a in accounts}
        self.networks = {
            a.system_id: tuple(ipaddress.ip_network(c, strict=False) for c in a.allow_cidrs)
            for a in self.accounts.values()
        }
        self.bound: Counter[str] = Counter()

    def check(
        self, command: str, system_id: str, password: str, peer_ip: str
    ) -> CommandStatus | AccountConfig:
        """The account, or the status to refuse the bind with (SMPP v3.4 5.1.3)."""
        account = self.verify(system_id, password, peer_ip)
        if not isinstance(account, AccountConfig):
            return account
        if _BIND_TYPES.get(command) not in account.bind_types:
            return CommandStatus.ESME_RBINDFAIL
        if self.bound[system_id] >= account.max_binds:
            return CommandStatus.ESME_RBINDFAIL
        return account

    def verify(self, system_id: str, password: str, peer_ip: str) -> CommandStatus | AccountConfig:
        """The account when the password is right and `peer_ip` is in its CIDRs (a bind and
        an HTTP request alike), else ESME_RINVSYSID, ESME_RINVPASWD or ESME_RBINDFAIL."""
        account = self.accounts.get(system_id)
        if account is None:
            return CommandStatus.ESME_RINVSYSID
        if account.password_hash is not None:
            ok = verify_password(password, account.password_hash)
        else:
            ok = hmac.compare_digest(password.encode(), (account.password or "").encode())
        if not ok:
            return CommandStatus.ESME_RINVPASWD
        return account if self.allowed(account, peer_ip) else CommandStatus.ESME_RBINDFAIL

    def by_token(self, token: str) -> AccountConfig | None:
        """The account holding API token `token` (compared in constant time), or None."""
        found = None
        for account in self.accounts.values():
            for known in account.api_tokens:
                if hmac.compare_digest(token.encode(), known.encode()):
                    found = account
        return found

    def allowed(self, account: AccountConfig, peer_ip: str) -> bool:
        """Whether `peer_ip` is in the account's allow_cidrs."""
        try:
            address = ipaddress.ip_address(peer_ip)
        except ValueError:
            return False
        return any(address in net for net in self.networks[account.system_id])

    def bind(self, system_id: str) -> None:
        self.bound[system_id] += 1

    def unbind(self, system_id: str) -> None:
        self.bound[system_id] -= 1
