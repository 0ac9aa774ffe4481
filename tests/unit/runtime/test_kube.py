"""kube.settle_environment: the environment's proxy settings read once, for the API server."""

from __future__ import annotations

import pytest
import requests

from statefulwebapp.runtime import kube

SERVER = "https://10.96.0.1:443"


def settled(monkeypatch: pytest.MonkeyPatch, **env: str) -> requests.Session:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = requests.Session()
    kube.settle_environment(session, SERVER)
    return session


def test_a_proxy_in_the_environment_is_kept_for_every_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = settled(monkeypatch, HTTPS_PROXY="http://proxy.internal:3128")
    assert session.proxies == {"https": "http://proxy.internal:3128"}
    # Not read again per request: a change of the environment later changes nothing.
    monkeypatch.setenv("HTTPS_PROXY", "http://elsewhere:3128")
    merged = session.merge_environment_settings(SERVER, {}, None, None, None)
    assert merged["proxies"] == {"https": "http://proxy.internal:3128"}


def test_no_proxy_covering_the_server_means_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    session = settled(monkeypatch, HTTPS_PROXY="http://proxy.internal:3128", NO_PROXY="10.96.0.1")
    assert session.proxies == {}
    assert not session.trust_env


def test_without_a_proxy_nothing_is_looked_up_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    session = settled(monkeypatch)
    looked: list[str] = []
    monkeypatch.setattr(requests.utils, "get_netrc_auth", looked.append)
    monkeypatch.setattr(requests.sessions, "get_netrc_auth", looked.append)
    session.prepare_request(requests.Request("GET", f"{SERVER}/api"))
    assert looked == []
    assert session.proxies == {}
