"""deploy/alerts.yml and deploy/prometheus.yml stay true to app/metrics.py and the settings.

(Their PromQL is not parsed here: no promtool in the test image. What is checked is what a
rename would silently break: metric names, label values, ports and the compose wiring.)
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from app import metrics
from app.config import Settings
from app.domain.join_state import JoinStatus

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = ("_bucket", "_count", "_sum", "_total")
# The closed set each label's values come from (app/metrics.py).
LABEL_VALUES = {
    "result": metrics.REPLY_RESULTS | metrics.WEBHOOK_RESULTS | {"ok", "error"},
    "outcome": metrics.INVITE_OUTCOMES,
    "status": {str(s) for s in JoinStatus},
    "state": {"due", "deferred"},
    "source": {"postgresql", "redis", *metrics.INBOUND_SOURCES},
}


def _rules() -> list[dict]:
    groups = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _exported() -> set[str]:
    return {family.name for family in REGISTRY.collect()}


def test_every_alert_uses_metrics_that_exist_with_values_they_can_take():
    exported = _exported()
    rules = _rules()
    assert len(rules) >= 10
    for rule in rules:
        assert rule["alert"].startswith("Pal") and rule["expr"] and rule["annotations"]["summary"]
        names = set(re.findall(r"\bpal_[a-z_]+", rule["expr"]))
        assert names or rule["expr"].startswith("up{"), rule["alert"]  # `up` is Prometheus's own
        for name in names:
            base = next((name[: -len(s)] for s in SUFFIXES if name.endswith(s) and name[: -len(s)] in exported), name)
            assert base in exported, f"{rule['alert']}: {name} is not a metric of app/metrics.py"
        for label, values in re.findall(r'\b(result|outcome|status|state|source)=~?"([^"]+)"', rule["expr"]):
            if label == "status" and values.startswith("5"):
                continue  # an HTTP status
            for value in values.split("|"):
                assert value in LABEL_VALUES[label], f"{rule['alert']}: {label}={value!r} never happens"


def test_prometheus_scrapes_each_process_where_it_serves_metrics():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert "/etc/prometheus/alerts.yml" in config["rule_files"]
    ports = {job["job_name"]: job["dns_sd_configs"][0]["port"] for job in config["scrape_configs"]}
    defaults = Settings()
    assert ports == {"pal-api": defaults.api_port, "pal-worker": defaults.worker_metrics_port,
                     "pal-smtp": defaults.smtp_metrics_port}


def test_compose_runs_prometheus_with_this_config():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prometheus = compose["services"]["prometheus"]
    mounts = " ".join(prometheus["volumes"])
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml" in mounts
    assert "./deploy/alerts.yml:/etc/prometheus/alerts.yml" in mounts
    # The worker and SMTP metrics listen beyond the container's loopback.
    assert compose["x-app"]["environment"]["METRICS_HOST"] == "0.0.0.0"
