"""The chat widget in a real browser: headless Chromium driven over the DevTools protocol (a small CDP client on
`websockets`), against a real server. A visitor fills the pre-chat form, sends a message with Enter, sees an
agent's reply pushed through the sync API and the agent typing, and finds the chat again after a reload."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import select
from websockets.asyncio.client import ClientConnection, connect

from agentdesk.server.db import session
from agentdesk.server.models import Conversation, Interaction

CHROMIUM = "/usr/bin/chromium"


class Cdp:
    """Just enough of the Chrome DevTools Protocol: call a method on one page and wait for its answer."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.last_id = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.last_id += 1
        call_id = self.last_id
        await self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # events of enabled domains may come first; nothing here enables any
            answer = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if answer.get("id") == call_id:
                assert "error" not in answer, f"{method}: {answer['error']}"
                return answer["result"]

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float = 5.0) -> Any:
        """Poll a page expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while not (value := await self.js(expression)):
            if time.monotonic() > deadline:
                state = await self.js("document.querySelector('main') && document.querySelector('main').innerText")
                raise AssertionError(f"not true within {timeout} s: {expression}\npage shows:\n{state}")
            await asyncio.sleep(0.05)
        return value

    async def type_text(self, selector: str, text: str) -> None:
        await self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        await self.call("Input.insertText", text=text)

    async def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            await self.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                            **({"text": "\r"} if kind == "keyDown" else {}))


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Cdp]:
    """A headless Chromium on a free DevTools port; a CDP session on its first page."""
    args = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    log_path = profile.parent / "chromium.log"
    with log_path.open("wb") as log:
        browser = await asyncio.create_subprocess_exec(*args, stdout=log, stderr=subprocess.STDOUT)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            assert browser.returncode is None, f"chromium exited: {log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with httpx.AsyncClient() as http:
            targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
        page = next(t for t in targets if t["type"] == "page")
        async with connect(page["webSocketDebuggerUrl"], max_size=None) as ws:
            yield Cdp(ws)
    finally:
        browser.terminate()
        try:
            await asyncio.wait_for(browser.wait(), 10)
        except TimeoutError:
            browser.kill()
            await browser.wait()


def _visible(selector: str) -> str:
    return f"(() => {{ const e = document.querySelector({json.dumps(selector)}); return !!e && !e.hidden && e.offsetParent !== null; }})()"


MESSAGES = "Array.from(document.querySelectorAll('#messages li')).map(li => [li.className, li.querySelector('.text').textContent])"


async def test_a_visitor_chats_with_an_agent_in_headless_chromium(live_server, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium is not installed: {CHROMIUM} is missing (apt-get install chromium; .ci/run does it)")
    profile = tmp_path / "profile"
    profile.mkdir()
    reply_text = "Found it: <b>not bold</b> & on its way"
    async with chromium(profile) as page, httpx.AsyncClient(
        base_url=live_server.url, headers={"Authorization": f"Bearer {live_server.world.tokens['alice@example.com']}"}
    ) as alice:
        await page.call("Page.navigate", url=f"{live_server.url}/chat")
        await page.until(_visible("#prechat"))
        assert await page.js("document.title") == "Chat with us"

        # The form wants an email or a phone; the server's answer to a bad one is shown.
        await page.type_text("#prechat-name", "Dana Scully")
        await page.type_text("#prechat-email", "dana@@visitor")
        await page.js("document.getElementById('prechat-submit').click()")
        error = await page.until("document.getElementById('prechat-error').textContent")
        assert "not a valid email address" in error
        await page.js("document.getElementById('prechat-email').value = ''")
        await page.type_text("#prechat-email", "dana@visitor.test")
        await page.js("document.getElementById('prechat-submit').click()")
        await page.until(_visible("#conversation"))

        await page.type_text("#text", "Where is my parcel?")
        await page.press_enter()
        await page.until(f"(() => {{ const m = {MESSAGES}; return m.length === 1 && !m[0][0].includes('pending'); }})()")
        assert await page.js("document.getElementById('text').value") == ""
        with session(live_server.engine) as db:
            [row] = db.exec(select(Interaction).where(Interaction.text == "Where is my parcel?")).all()
            conversation = db.get(Conversation, row.conversation_id)
        assert row.channel == "chat" and row.meta["prechat"]["email"] == "dana@visitor.test"
        session_id = await page.js("JSON.parse(localStorage.getItem('agentdesk.chat.session'))")
        assert len(session_id) == 32 and conversation.thread_key != session_id  # only its digest is stored

        answer = await alice.post("/api/v1/typing", json={"conversation_id": conversation.id})
        assert answer.status_code == 204
        assert await page.until(f"{_visible('#typing')} && document.getElementById('typing').textContent") == "Alice is typing…"

        mutation = {"id": uuid.uuid4().hex, "kind": "reply", "args": {
            "conversation_id": conversation.id, "interaction_id": uuid.uuid4().hex, "channel": "chat", "text": reply_text}}
        assert (await alice.post("/api/v1/sync/push", json={"mutations": [mutation]})).json()["results"][0]["status"] == "applied"
        await page.until(f"{MESSAGES}.length === 2", timeout=2.0)
        assert await page.js(MESSAGES) == [["message visitor", "Where is my parcel?"], ["message agent", reply_text]]
        assert await page.js("document.querySelectorAll('#messages b').length") == 0  # text, never markup
        assert await page.js("document.querySelector('#messages li.agent .meta').textContent.startsWith('Alice')")
        assert await page.js("document.getElementById('typing').hidden")  # the reply ends the typing notice

        # A reload resumes the same session: no pre-chat, the whole chat in order.
        await page.call("Page.reload")
        await page.until(f"{_visible('#conversation')} && {MESSAGES}.length === 2")
        assert await page.js(_visible("#prechat")) is False
        assert [text for _, text in await page.js(MESSAGES)] == ["Where is my parcel?", reply_text]
        await page.type_text("#text", "Thanks!")
        await page.press_enter()
        await page.until(f"(() => {{ const m = {MESSAGES}; return m.length === 3 && !m[2][0].includes('pending'); }})()")
    with session(live_server.engine) as db:
        texts = [r.text for r in db.exec(
            select(Interaction).where(Interaction.conversation_id == conversation.id).order_by(Interaction.occurred_at))]
        delivered = db.get(Interaction, mutation["args"]["interaction_id"]).delivery_status
    assert texts == ["Where is my parcel?", reply_text, "Thanks!"]
    assert delivered == "delivered"

