"""python-socketio's AsyncClient against the chat app (tidewire-server's
default mode): HS256 tokens signed here with PyJWT, handshake refusals, the
chat:join / chat:message flow, one user on two connections, and the
development token flow (GET /dev/token) when no JWT_SECRET is set."""

import asyncio
import datetime
import itertools
import os
import time

import aiohttp
import jwt
import pytest
import socketio

from conftest import CHAT_SECRET, STEP, TEST_LIMIT, bounded


_ids = itertools.count()


def room_id(what):
    return f"{what}-{os.getpid()}-{next(_ids)}"


def token(secret=CHAT_SECRET, **claims):
    claims.setdefault("exp", int(time.time()) + 600)
    return jwt.encode(claims, secret, algorithm="HS256")


class Inbox:
    """Collects one client's chat:* events."""

    EVENTS = ("chat:new_message", "chat:user_joined", "chat:user_left", "presence:join", "presence:leave")

    def __init__(self, sio):
        self.seen = []
        self._changed = asyncio.Event()
        for event in self.EVENTS:
            sio.on(event, self._handler(event))

    def _handler(self, event):
        async def handler(data):
            self.seen.append((event, data))
            self._changed.set()

        return handler

    def of(self, event):
        return [d for e, d in self.seen if e == event]

    async def next(self, event, predicate=lambda d: True):
        """Waits for an `event` (seen before or after the call) matching `predicate`."""
        try:
            async with asyncio.timeout(STEP):
                while True:
                    for d in self.of(event):
                        if predicate(d):
                            return d
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pytest.fail(f"timed out waiting for {event}; seen {self.seen!r}")


class Users:
    def __init__(self, server):
        self.server = server
        self.clients = []

    async def connect(self, tok, transport="websocket"):
        sio = socketio.AsyncClient(reconnection=False)
        sio.inbox = Inbox(sio)
        self.clients.append(sio)
        await sio.connect(self.server.url, transports=[transport], auth={"token": tok}, wait_timeout=STEP)
        return sio

    async def close(self):
        for sio in self.clients:
            await sio.disconnect()


@pytest.fixture
async def users(chat_server):
    u = Users(chat_server)
    yield u
    await u.close()


@pytest.fixture
async def dev_users(dev_chat_server):
    u = Users(dev_chat_server)
    yield u
    await u.close()


async def refusal(url, auth):
    """The connect_error data for `auth`; fails if the connection is accepted."""
    sio = socketio.AsyncClient(reconnection=False)
    errors = []

    @sio.on("connect_error")
    async def on_connect_error(data):
        errors.append(data)

    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(url, transports=["websocket"], auth=auth, wait_timeout=STEP)
        assert not sio.connected
    finally:
        await sio.disconnect()
    assert len(errors) == 1, errors
    return errors[0]["message"]


async def http_get(url):
    async with aiohttp.ClientSession() as session:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=STEP)) as res:
            return res.status, await res.text()


@bounded
async def test_handshake_refusals(chat_server):
    url = chat_server.url
    assert "authentication required" in await refusal(url, None)
    assert "authentication required" in await refusal(url, {"token": 7})
    assert await refusal(url, {"token": token(sub="alice", exp=int(time.time()) - 30)}) == "token expired"
    assert (await refusal(url, {"token": token("another-secret-of-at-least-32-bytes!", sub="alice")})).startswith("invalid token")
    assert (await refusal(url, {"token": "garbage"})).startswith("invalid token")
    assert (await refusal(url, {"token": token(name="no subject")})).startswith("invalid token")


@bounded
async def test_healthz(chat_server):
    assert await http_get(chat_server.url + "/healthz") == (200, "ok")


@pytest.mark.parametrize("transport", ["websocket", "polling"])
@bounded
async def test_message_flow(users, transport):
    alice = await users.connect(token(sub="alice", name="Alice"), transport)
    bob = await users.connect(token(sub="bob", name="Bob"), transport)
    carol = await users.connect(token(sub="carol"), transport)
    room = room_id("flow")

    assert await alice.call("chat:join", room, timeout=STEP) == {"status": "ok"}
    assert await bob.call("chat:join", room, timeout=STEP) == {"status": "ok"}
    assert await alice.inbox.next("chat:user_joined") == {"userId": "bob", "name": "Bob", "roomId": room}

    # carol has not joined: refused
    res = await carol.call("chat:message", {"roomId": room, "content": "hi"}, timeout=STEP)
    assert res["status"] == "error" and isinstance(res["message"], str)
    bad = await alice.call("chat:join", "bad room", timeout=STEP)
    assert bad["status"] == "error" and isinstance(bad["message"], str)

    before = datetime.datetime.now(datetime.timezone.utc)
    res = await alice.call("chat:message", {"roomId": room, "content": "hello bob ✓"}, timeout=STEP)
    assert res["status"] == "ok"
    m = res["data"]
    assert sorted(m) == ["content", "createdAt", "id", "roomId", "senderId"]
    assert (m["roomId"], m["senderId"], m["content"]) == (room, "alice", "hello bob ✓")
    assert isinstance(m["id"], str) and m["id"]
    created = datetime.datetime.fromisoformat(m["createdAt"].replace("Z", "+00:00"))
    assert created.tzinfo is not None
    assert abs((created - before).total_seconds()) < 5
    assert await bob.inbox.next("chat:new_message") == m

    # barrier: bob's reply reaches alice after anything sent to her before
    reply = await bob.call("chat:message", {"roomId": room, "content": "hi alice"}, timeout=STEP)
    assert await alice.inbox.next("chat:new_message") == reply["data"]
    assert alice.inbox.of("chat:new_message") == [reply["data"]], "the sender does not get its own message"
    assert bob.inbox.of("chat:user_joined") == [], "the joiner is not told about itself"
    assert carol.inbox.of("chat:new_message") == []


@bounded
async def test_staff_rooms(users):
    plain = await users.connect(token(sub="pat"))
    staff = await users.connect(token(sub="sam", role="staff"))
    room = room_id("staff-ops")
    refused = await plain.call("chat:join", room, timeout=STEP)
    assert refused["status"] == "error" and isinstance(refused["message"], str)
    assert await staff.call("chat:join", room, timeout=STEP) == {"status": "ok"}


@bounded
async def test_two_connections_of_one_user(users):
    phone = await users.connect(token(sub="alice", name="Alice"))
    laptop = await users.connect(token(sub="alice", name="Alice"), "polling")
    bob = await users.connect(token(sub="bob"))
    both, phone_only = room_id("both"), room_id("phone-only")
    for s, rooms in ((bob, (both, phone_only)), (phone, (both, phone_only)), (laptop, (both,))):
        for r in rooms:
            assert await s.call("chat:join", r, timeout=STEP) == {"status": "ok"}

    sent = (await bob.call("chat:message", {"roomId": both, "content": "to both"}, timeout=STEP))["data"]
    assert await phone.inbox.next("chat:new_message") == sent
    assert await laptop.inbox.next("chat:new_message") == sent

    only = (await bob.call("chat:message", {"roomId": phone_only, "content": "phone"}, timeout=STEP))["data"]
    assert await phone.inbox.next("chat:new_message", lambda d: d["roomId"] == phone_only) == only
    refused = await laptop.call("chat:message", {"roomId": phone_only, "content": "x"}, timeout=STEP)
    assert refused["status"] == "error"

    # one connection's message reaches the user's other connection
    from_laptop = (await laptop.call("chat:message", {"roomId": both, "content": "from laptop"}, timeout=STEP))["data"]
    assert from_laptop["senderId"] == "alice"
    assert await phone.inbox.next("chat:new_message", lambda d: d["id"] == from_laptop["id"]) == from_laptop

    # barrier for the laptop: a later message to `both`
    last = (await bob.call("chat:message", {"roomId": both, "content": "last"}, timeout=STEP))["data"]
    await laptop.inbox.next("chat:new_message", lambda d: d["id"] == last["id"])
    assert [d["content"] for d in laptop.inbox.of("chat:new_message")] == ["to both", "last"]


@bounded
async def test_dev_token_flow(dev_chat_server, dev_users):
    url = dev_chat_server.url
    status, alice_token = await http_get(url + "/dev/token?sub=alice&name=Alice")
    assert status == 200
    claims = jwt.decode(alice_token, options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["name"] == "Alice"
    assert abs(claims["exp"] - (time.time() + 3600)) < 120
    assert (await http_get(url + "/dev/token"))[0] == 400
    status, bob_token = await http_get(url + "/dev/token?sub=bob&name=Bob")
    assert status == 200

    alice = await dev_users.connect(alice_token)
    bob = await dev_users.connect(bob_token)
    room = room_id("dev")
    assert await alice.call("chat:join", room, timeout=STEP) == {"status": "ok"}
    assert await bob.call("chat:join", room, timeout=STEP) == {"status": "ok"}
    assert await alice.inbox.next("chat:user_joined") == {"userId": "bob", "name": "Bob", "roomId": room}
    res = await alice.call("chat:message", {"roomId": room, "content": "hi bob"}, timeout=STEP)
    assert res["status"] == "ok" and res["data"]["senderId"] == "alice"
    assert await bob.inbox.next("chat:new_message") == res["data"]

    # a token signed with another secret is not accepted by the dev server
    assert (await refusal(url, {"token": token(sub="eve")})).startswith("invalid token")
    assert "authentication required" in await refusal(url, {})


@bounded
async def test_presence_two_tabs_one_user(users):
    """Two python-socketio connections of one user: one presence:join, and a
    presence:leave only after both are gone."""
    room = room_id("presence")
    watcher = await users.connect(token(sub="wes", name="Wes"))
    assert await watcher.call("chat:join", room, timeout=STEP) == {"status": "ok"}
    tab1 = await users.connect(token(sub="pia", name="Pia"))
    tab2 = await users.connect(token(sub="pia", name="Pia"))
    for tab in (tab1, tab2):
        assert await tab.call("chat:join", room, timeout=STEP) == {"status": "ok"}
    await watcher.inbox.next("presence:join", lambda d: d["userId"] == "pia")
    listed = await watcher.call("presence:list", room, timeout=STEP)
    assert listed["users"] == [
        {"userId": "wes", "connections": 1, "name": "Wes"},
        {"userId": "pia", "connections": 2, "name": "Pia"},
    ]
    await tab1.disconnect()
    while True:
        users_now = (await watcher.call("presence:list", room, timeout=STEP))["users"]
        pia = [u for u in users_now if u["userId"] == "pia"]
        assert pia, "pia stays present while a tab is open"
        if pia[0]["connections"] == 1:
            break
        await asyncio.sleep(0.02)
    await tab2.disconnect()
    left = await watcher.inbox.next("presence:leave")
    assert left == {"roomId": room, "userId": "pia"}
    joins = [d["userId"] for d in watcher.inbox.of("presence:join")]
    assert joins == ["wes", "pia"]
    assert watcher.inbox.of("presence:leave") == [left]


@bounded
async def test_invalid_and_limited_messages_are_refused(users):
    """The core's refusals reach python-socketio acks with their codes; the
    connection stays usable."""
    room = room_id("limits")
    sio = await users.connect(token(sub="quinn"))
    assert await sio.call("chat:join", room, timeout=STEP) == {"status": "ok"}
    bad = await sio.call("chat:message", {"roomId": room, "content": ""}, timeout=STEP)
    assert bad["status"] == "error" and bad["code"] == "invalid_payload"
    answers = [await sio.call("chat:message", {"roomId": room, "content": f"m{i}"}, timeout=STEP) for i in range(35)]
    limited = [a for a in answers if a.get("code") == "rate_limited"]
    assert limited, answers
    assert all(a["retryAfterMs"] > 0 for a in limited)
    assert sio.connected
