"""The gateway's one MQTT connection (aiomqtt): events out, node-to-node notices, agents.

The store stays the source of truth; MQTT only tells others sooner. So nothing that carries
traffic ever waits on the broker: `publish` puts a message on a bounded in-memory queue and
returns at once; a full queue drops the message and counts it (`dropped`). The link connects,
and after any failure reconnects, with jittered exponential backoff; a message whose publish
did not complete is sent again after the reconnect (QoS 1 is at least once anyway).

Subscriptions are kept here and made again on every connection. With a fixed `client_id`
and `clean_session` false the broker keeps the session (and the QoS 1 messages that arrive
while the link is down) - what a remote modem-bank agent needs.

Topics are `<topic_prefix>/<node>/<what>`; `topic()` builds this node's, `topic_of()` any
node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import aiomqtt
import structlog

if TYPE_CHECKING:
    from gateway.config import MqttConfig

__all__ = ["Handler", "MqttLink", "MqttMessage", "broker_address", "link_for"]

log = structlog.get_logger(__name__)

Handler = Callable[["MqttMessage"], Awaitable[None] | None]

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 30.0
_WINDOW = 64


@dataclass(frozen=True, slots=True)
class MqttMessage:
    topic: str
    payload: bytes
    retain: bool = False

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass(frozen=True, slots=True)
class _Out:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def link_for(
    config: MqttConfig,
    node: str,
    *,
    client_id: str | None = None,
    will: tuple[str, bytes] | None = None,
) -> MqttLink:
    """The link a `mqtt:` section describes, for `node` (`client_id`: when the section gives
    none; `will`: the retained message the broker publishes if the link dies)."""
    context = None
    if config.tls is not None or broker_address(config.url)[2]:
        tls = config.tls
        context = ssl.create_default_context(cafile=tls.ca if tls and tls.ca else None)
        if tls is not None and tls.cert is not None:
            context.load_cert_chain(tls.cert, tls.key)
        if tls is not None and tls.insecure:
            context.check_hostname = False
    return MqttLink(
        config.url,
        node=node,
        prefix=config.topic_prefix,
        client_id=config.client_id or client_id,
        username=config.username,
        password=config.password,
        tls=context,
        queue=config.queue,
        keepalive=config.keepalive,
        will=will,
    )


def broker_address(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """(host, port, tls, username, password) of an `mqtt://` or `mqtts://` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"MQTT url {url!r}: the scheme must be mqtt:// or mqtts://")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise ValueError(f"MQTT url {url!r}: no host")
    port = parts.port or (8883 if tls else 1883)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port, tls, user, password


class MqttLink:
    """One broker connection, kept up in the background by `start()` until `stop()`."""

    def __init__(
        self,
        url: str,
        *,
        node: str,
        prefix: str = "smsgw",
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
        clean_session: bool | None = None,
        queue: int = 10_000,
        keepalive: int = 30,
        will: tuple[str, bytes] | None = None,
    ) -> None:
        host, port, url_tls, url_user, url_password = broker_address(url)
        self.host, self.port = host, port
        self.node = node
        self.prefix = prefix.strip("/")
        self.client_id = client_id
        self._username = username if username is not None else url_user
        self._password = password if password is not None else url_password
        if tls is None and url_tls:
            tls = ssl.create_default_context()
        self._tls = tls
        # A fixed client id means "keep my session": its subscriptions and queued messages.
        self._clean = clean_session if clean_session is not None else client_id is None
        self._keepalive = keepalive
        self._will = will
        self._queue: deque[_Out] = deque()
        self._inflight: list[_Out] = []
        self._limit = queue
        self._wake = asyncio.Event()
        self._subscriptions: dict[str, tuple[int, list[Handler]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: aiomqtt.Client | None = None
        self._stopping = False
        self.connected = asyncio.Event()
        self.dropped = 0  # messages the full queue refused
        self.published = 0
        self.received = 0
        self.connects = 0
        self.last_error: str | None = None
        self.on_connect: Callable[[], Awaitable[None] | None] | None = None

    # -- topics

    def topic(self, *parts: str) -> str:
        return self.topic_of(self.node, *parts)

    def topic_of(self, node: str, *parts: str) -> str:
        return "/".join((self.prefix, node, *parts))

    # -- out

    def publish(
        self, topic: str, payload: bytes | str | Any, *, qos: int = 1, retain: bool = False
    ) -> bool:
        """Queue a message (bytes, str, or anything JSON takes); False if the queue was full
        and it was dropped. Never waits."""
        # Full: dropped before it is serialised - under a flood of events (the broker away,
        # or slower than the traffic) a dropped one should cost next to nothing.
        if len(self._queue) >= self._limit:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("mqtt_queue_full", dropped=self.dropped, limit=self._limit)
            return False
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        else:
            data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        self._queue.append(_Out(topic, data, qos, retain))
        self._wake.set()
        return True

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- in

    async def subscribe(self, topic_filter: str, handler: Handler, *, qos: int = 1) -> None:
        """Call `handler` for every message on `topic_filter`, on this and every later
        connection. Handlers run one at a time, in arrival order: they should be quick.
        Several handlers of one filter (two remote banks of one agent) each get it."""
        handlers = self._subscriptions.get(topic_filter, (qos, []))[1]
        self._subscriptions[topic_filter] = (qos, [*handlers, handler])
        client = self._client
        if client is not None and self.connected.is_set():
            with contextlib.suppress(aiomqtt.MqttError):  # else the next connection does
                await client.subscribe(topic_filter, qos=qos)

    # -- life

    def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="mqtt")

    async def stop(self, flush: float = 2.0) -> None:
        """Send what is queued (for at most `flush` seconds), then disconnect."""
        if self._task is None:
            return
        if self._queue and self.connected.is_set():
            try:
                async with asyncio.timeout(flush):
                    while self._queue and self.connected.is_set():
                        self._wake.set()
                        await asyncio.sleep(0.01)
            except TimeoutError:
                pass
        self._stopping = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self.connected.clear()

    async def wait_connected(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.connected.wait()
        except TimeoutError:
            return False
        return True

    def status(self) -> dict[str, Any]:
        return {
            "broker": f"{self.host}:{self.port}",
            "connected": self.connected.is_set(),
            "queued": len(self._queue),
            "dropped": self.dropped,
            "published": self.published,
            "received": self.received,
            "connects": self.connects,
            "last_error": self.last_error,
        }

    def _make_client(self) -> aiomqtt.Client:
        will = None
        if self._will is not None:
            will = aiomqtt.Will(self._will[0], self._will[1], qos=1, retain=True)
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            username=self._username,
            password=self._password,
            tls_context=self._tls,
            clean_session=self._clean,
            keepalive=self._keepalive,
            will=will,
            timeout=10,
        )
        client.pending_calls_threshold = _WINDOW + 16  # ours are bounded by _WINDOW
        return client

    async def _run(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._stopping:
            client = self._make_client()
            try:
                async with client:
                    self._client = client
                    # Until none is left: a filter registered while these awaits ran is
                    # not yet `connected`'s to subscribe (it would be missed until the next
                    # connection); after the last check nothing awaits before `set`.
                    made: set[str] = set()
                    while todo := [f for f in self._subscriptions if f not in made]:
                        for topic_filter in todo:
                            await client.subscribe(
                                topic_filter, qos=self._subscriptions[topic_filter][0]
                            )
                            made.add(topic_filter)
                    self.connects += 1
                    self.connected.set()
                    backoff = _BACKOFF_FIRST
                    log.info("mqtt_connected", broker=f"{self.host}:{self.port}")
                    if self.on_connect is not None:
                        result = self.on_connect()
                        if result is not None:
                            await result
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._send(client))
                        group.create_task(self._receive(client))
            except* aiomqtt.MqttError as failure:
                self.last_error = str(failure.exceptions[0])
            except* OSError as failure:
                self.last_error = str(failure.exceptions[0])
            finally:
                self._client = None
                if self._inflight:  # the connection ended mid-publish: they go again
                    self._queue.extendleft(reversed(self._inflight))
                    self._inflight = []
                was = self.connected.is_set()
                self.connected.clear()
            if self._stopping:
                return
            log.warning(
                "mqtt_disconnected" if was else "mqtt_connect_failed",
                broker=f"{self.host}:{self.port}",
                error=self.last_error,
                retry_in=round(backoff, 2),
            )
            await asyncio.sleep(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _send(self, client: aiomqtt.Client) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            # Up to _WINDOW publishes in flight (one PUBACK round trip each would cap the
            # rate at a few thousand a second); they stay queued until the broker has them,
            # so a connection lost mid-publish sends them again on the next one.
            batch = [queue.popleft() for _ in range(min(_WINDOW, len(queue)))]
            self._inflight = batch  # put back by _run if this task is cancelled mid-publish
            results = await asyncio.gather(
                *(client.publish(o.topic, o.payload, qos=o.qos, retain=o.retain) for o in batch),
                return_exceptions=True,
            )
            failed = [
                o for o, r in zip(batch, results, strict=True) if isinstance(r, BaseException)
            ]
            self._inflight = []
            self.published += len(batch) - len(failed)
            if failed:
                queue.extendleft(reversed(failed))
                error = next(r for r in results if isinstance(r, BaseException))
                if isinstance(error, aiomqtt.MqttError | OSError):
                    raise error
                raise aiomqtt.MqttError(str(error))

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.received += 1
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload or "").encode()
            incoming = MqttMessage(str(message.topic), data, bool(message.retain))
            for topic_filter, (_, handlers) in list(self._subscriptions.items()):
                if not message.topic.matches(topic_filter):
                    continue
                for handler in handlers:
                    try:
                        result = handler(incoming)
                        if result is not None:
                            await result
                    except Exception:  # a bad message or handler must not drop the link
                        log.exception("mqtt_handler_failed", topic=incoming.topic)
