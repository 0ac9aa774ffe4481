"""Scrapes of a live operator's ``/metrics``, parsed with prometheus_client's own text parser."""

from __future__ import annotations

import urllib.error
import urllib.request

import pykube
from prometheus_client.parser import text_string_to_metric_families

Labels = frozenset[tuple[str, str]]


class Scrape(dict[tuple[str, Labels], float]):
    """Every sample of one scrape, by (sample name, labels)."""

    text: str = ""
    """The exposition as served."""

    def value(self, name: str, **labels: str) -> float | None:
        """The sample with exactly these labels, or None."""
        return self.get((name, frozenset(labels.items())))

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` that carry at least these labels."""
        wanted = set(labels.items())
        return sum(v for (n, have), v in self.items() if n == name and wanted <= have)


def scrape(host: str, port: int, timeout: float = 5) -> Scrape:
    """``GET http://host:port/metrics``, parsed; fails if it is not the Prometheus text format."""
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=timeout) as response:
        return parse(response.headers["Content-Type"], response.read().decode())


def scrape_through_api(api: pykube.HTTPClient, namespace: str, target: str) -> Scrape:
    """``/metrics`` of ``target`` (``pods/NAME:PORT`` or ``services/NAME:PORT``) through the API
    server's proxy: from a machine that cannot reach the cluster's pod or Service network
    (kind's), as a Prometheus outside the cluster would."""
    url = f"{api.url}/api/v1/namespaces/{namespace}/{target}/proxy/metrics"
    response = api.session.get(url, timeout=10)
    response.raise_for_status()
    return parse(response.headers["Content-Type"], response.text)


def parse(content_type: str, text: str) -> Scrape:
    """One exposition, parsed; fails if it is not the Prometheus text format."""
    assert content_type.startswith("text/plain; version="), content_type
    result = Scrape()
    result.text = text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[sample.name, frozenset(sample.labels.items())] = sample.value
    return result


def health(host: str, port: int, timeout: float = 5) -> tuple[int, str]:
    """The status and body of ``/healthz``."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
