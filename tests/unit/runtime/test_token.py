"""The projected service-account token is followed when the kubelet rotates it (kube.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import requests
import requests.adapters

from statefulwebapp.runtime.kube import ProjectedToken


class Server(requests.adapters.BaseAdapter):
    """Sets the bearer from the user entry (as pykube's adapter does); accepts only ``valid``."""

    def __init__(self, user: dict[str, str], valid: str) -> None:
        super().__init__()
        self.user = user
        self.valid = valid
        self.seen: list[str] = []

    def send(  # BaseAdapter.send's signature: requests passes the options by keyword
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        request.headers.setdefault("Authorization", f"Bearer {self.user['token']}")
        self.seen.append(request.headers["Authorization"])
        response = requests.Response()
        response.status_code = 200 if self.seen[-1] == f"Bearer {self.valid}" else 401
        response.request = request
        return response

    def close(self) -> None:
        pass


def test_a_rotated_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old\n")
    user = {"token": "old"}
    token = ProjectedToken(user, path, check_every=0)
    assert not token.refresh()
    path.write_text("new\n")
    os.utime(path, (1, 1))
    assert token.refresh()
    assert user["token"] == "new"


def test_a_401_re_reads_the_token_and_sends_once_more(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("old")
    user = {"token": "old"}
    session = requests.Session()
    server = Server(user, valid="new")
    session.mount("https://", server)
    # A long check interval: only the 401 makes it look at the file.
    ProjectedToken(user, path, check_every=3600).install(session)
    path.write_text("new")
    response = session.get("https://api/apis")
    assert response.status_code == 200
    assert server.seen == ["Bearer old", "Bearer new"]
    # A 401 with an unchanged file is not retried: the answer stands.
    server.valid = "other"
    assert session.get("https://api/apis").status_code == 401
    assert server.seen[-1] == "Bearer new"
    assert len(server.seen) == 3
