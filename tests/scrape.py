"""Reading a Prometheus text exposition in tests: one sample's value, 0 when absent."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """The samples of one /metrics answer, looked up by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = {(s.name, frozenset(s.labels.items())): s.value
                        for family in text_string_to_metric_families(text) for s in family.samples}

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples

    def delta(self, before: "Scrape", name: str, **labels: str) -> float:
        return self.value(name, **labels) - before.value(name, **labels)
