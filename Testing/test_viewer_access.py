"""Who may reach the viewer: bind policy, token checks on a real aiohttp server, CLI refusals."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from conftest import subprocess_env

from MedSegLensLib.errors import ParameterError
from MedSegLensLib.viewer.access import TOKEN_COOKIE, is_loopback, resolve_access, token_middleware

TOKEN = "correct-horse-battery-staple-42"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2", "[::1]"])
def test_loopback_hosts_get_a_fresh_random_token(host):
    assert is_loopback(host)
    first, second = resolve_access(host, False, None), resolve_access(host, False, None)
    assert first != second and len(first) >= 16
    assert resolve_access(host, False, TOKEN) == TOKEN


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org"])
def test_other_hosts_need_the_flag_and_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(ParameterError, match="--allow-remote"):
        resolve_access(host, False, TOKEN)
    with pytest.raises(ParameterError, match="needs --token"):
        resolve_access(host, True, None)
    assert resolve_access(host, True, TOKEN) == TOKEN


@pytest.mark.parametrize("token", ["short", "has space in the middle!", "tab\tinside-the-token-xx"])
def test_weak_or_malformed_tokens_are_refused(token):
    with pytest.raises(ParameterError, match="--token"):
        resolve_access("0.0.0.0", True, token)


def _run_guarded(requests):
    """Serve a page behind the middleware on a real loopback socket and run `requests(client)`."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    async def page(request):
        return web.Response(text="patient data")

    async def main():
        app = web.Application(middlewares=[token_middleware(TOKEN)])
        app.router.add_get("/index.html", page)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            return await requests(client)

    return asyncio.run(main())


def test_requests_without_the_token_are_refused():
    async def requests(client):
        plain = await client.get("/index.html")
        wrong = await client.get("/index.html", params={"secret": TOKEN[:-1] + "x"})
        cookie = await client.get("/index.html", cookies={TOKEN_COOKIE: "nope"})
        return plain.status, wrong.status, cookie.status, await plain.text()

    plain, wrong, cookie, body = _run_guarded(requests)
    assert (plain, wrong, cookie) == (403, 403, 403)
    assert "patient" not in body


def test_the_token_opens_the_page_and_sets_a_session_cookie():
    async def requests(client):
        first = await client.get("/index.html", params={"secret": TOKEN})
        text = await first.text()
        later = await client.get("/index.html")  # the client keeps the cookie
        return first.status, text, first.cookies.get(TOKEN_COOKIE), later.status

    status, text, cookie, later = _run_guarded(requests)
    assert status == 200 and text == "patient data"
    assert cookie is not None and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert later == 200


def test_cross_origin_requests_are_refused_even_with_the_token():
    async def requests(client):
        response = await client.get("/index.html", params={"secret": TOKEN}, headers={"Origin": "http://evil.example"})
        same = await client.get(
            "/index.html", params={"secret": TOKEN}, headers={"Origin": f"http://{client.host}:{client.port}"}
        )
        return response.status, same.status

    assert _run_guarded(requests) == (403, 200)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--host", "0.0.0.0"], "not a loopback address"),
        (["--host", "0.0.0.0", "--allow-remote"], "needs --token"),
        (["--host", "0.0.0.0", "--allow-remote", "--token", "abc"], "at least 16"),
        (["--port", "70000"], "not a TCP port"),
    ],
)
def test_cli_refuses_unsafe_binds_with_one_line(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", "serve", "--workspace", str(tmp_path), *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_cli_refuses_an_unknown_first_case(tmp_path):
    from viewer_support import write_fixture_workspace

    write_fixture_workspace(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", "serve", "--workspace", str(tmp_path), "--case", "../../etc"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode != 0 and "no case named" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "3", None, True, [1]])
def test_values_from_the_page_must_be_finite_numbers(value):
    from MedSegLensLib.viewer.app import number

    with pytest.raises(ParameterError, match="not a finite number"):
        number(value, "overlay opacity")
    assert number(0.25, "overlay opacity") == 0.25


def test_cli_refuses_a_missing_workspace(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "MedSegLensLib", "serve", "--workspace", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert result.returncode != 0 and "workspace folder not found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
