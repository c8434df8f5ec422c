"""Nightly runs: the config's `schedule:` section rendered for cron, systemd or Kubernetes.

    firth schedule render CONFIG.yaml --target cron|systemd|k8s [-o DIR]

What runs: `firth submit CONFIG --address A --wait` (action submit; --wait keeps the scheduled
process alive as long as the Ray job, so the scheduler's own overlap rule covers the job), or
`firth run CONFIG --incremental` (action run-incremental, on the scheduling host itself).

Missed and overlapping runs, per target:

| target  | missed run (host down, scheduler late)                  | a run still going when the next is due |
|---------|---------------------------------------------------------|----------------------------------------|
| cron    | skipped: cron does not catch up                         | skipped: `flock -n` exits at once      |
| systemd | run once at the next boot / timer start (Persistent=)   | skipped: a oneshot service that is still active is not started again |
| k8s     | run if less than startingDeadlineSeconds late, else skipped | skipped: concurrencyPolicy Forbid  |

The run lock in the store (one run per table, across hosts) is the last guard in every case.

Cron expressions: five fields (minute hour day-of-month month day-of-week) with `*`, numbers,
names (jan, mon), lists `a,b`, ranges `a-b` and steps `*/n`, `a-b/n`, or one of @hourly @daily
@midnight @weekly @monthly @yearly @annually. Converted to systemd OnCalendar exactly, except a
restricted day-of-month together with a restricted day-of-week: cron runs when either matches,
systemd only when both do, so that form is refused with the fix.
"""
from __future__ import annotations

import shlex
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

import yaml

from firth.pipelines.cron import Cron, parse_cron

_SYSTEMD_DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
TARGETS = ("cron", "systemd", "k8s")
CONFIG_MOUNT = "/etc/firth"  # where the CronJob mounts the config's ConfigMap


def on_calendar(cron: Cron, timezone: str = "UTC") -> str:
    """systemd OnCalendar= for `cron` read in `timezone`, e.g. 'Mon..Fri *-*-* 02:30:00 Europe/Berlin'."""
    if cron.restricted[2] and cron.restricted[4]:
        raise ValueError(f"cron {cron.expression!r}: both day-of-month and day-of-week are restricted; cron runs "
                         "when either matches but systemd only when both do. Use '*' in one of them (two "
                         "schedules if you need both)")

    def listing(values, restricted, width=2):
        return ",".join(f"{v:0{width}d}" for v in values) if restricted else "*"

    weekdays = (",".join(_SYSTEMD_DAYS[d] for d in cron.day_of_week) + " ") if cron.restricted[4] else ""
    date = f"*-{listing(cron.month, cron.restricted[3])}-{listing(cron.day_of_month, cron.restricted[2])}"
    time = f"{listing(cron.hour, cron.restricted[1])}:{listing(cron.minute, cron.restricted[0])}:00"
    return f"{weekdays}{date} {time} {timezone}"


# --- rendering --------------------------------------------------------------------------------------


def firth_version() -> str:
    try:
        return package_version("firth")
    except PackageNotFoundError:  # a source checkout without `pip install -e .`
        return "0.0.0"


def default_image() -> str:
    return f"firth:{firth_version()}"


def command(config, config_path: str, firth: str | None = None) -> list[str]:
    """The scheduled command line as a list: firth submit ... --wait, or firth run ... --incremental."""
    schedule = _schedule(config)
    firth = firth or schedule.firth
    if schedule.action == "submit":
        if not schedule.address:
            raise ValueError(f"schedule.address: required for action submit (the Ray dashboard URL, e.g. "
                             f"http://HEAD:8265) in the config of table {config.table!r}")
        return [firth, "submit", config_path, "--address", schedule.address, "--wait"]
    return [firth, "run", config_path, "--incremental"]


def render(config, config_path: str | Path, target: str) -> dict[str, str]:
    """{file name: text} for `target`; `config_path` is the config file (its text goes into the k8s ConfigMap)."""
    if target not in TARGETS:
        raise ValueError(f"--target {target!r}: choose one of {', '.join(TARGETS)}")
    schedule = _schedule(config)
    cron = parse_cron(schedule.cron)
    host_path = schedule.config_path or str(Path(config_path).resolve())
    name = f"firth-{config.table}"
    if target == "cron":
        line = " ".join(shlex.quote(p) for p in ["flock", "-n", f"/tmp/{name}.lock",
                                                  *command(config, host_path)])
        text = (f"# {name}: nightly run of table {config.table} (firth schedule render; see pipelines/ops/schedule.py)\n"
                f"# cron reads the expression in CRON_TZ (cronie, busybox); Debian's cron ignores CRON_TZ and uses\n"
                f"# the system time zone. Missed runs are skipped; flock -n skips a run while the last one holds the lock.\n"
                f"CRON_TZ={schedule.timezone}\n"
                f"{' '.join(schedule.cron.split())} {line}\n")
        return {f"{name}.crontab": text}
    if target == "systemd":
        exec_start = " ".join(shlex.quote(p) for p in command(config, host_path))
        service = (f"[Unit]\nDescription=firth nightly run of table {config.table}\n"
                   f"Wants=network-online.target\nAfter=network-online.target\n\n"
                   f"[Service]\n# oneshot: while a run is active the timer does not start another\n"
                   f"Type=oneshot\nExecStart={exec_start}\n")
        timer = (f"[Unit]\nDescription=firth nightly run of table {config.table} ({schedule.cron} {schedule.timezone})\n\n"
                 f"[Timer]\nOnCalendar={on_calendar(cron, schedule.timezone)}\n"
                 f"# Persistent: a run missed while the machine was off starts once at the next boot\n"
                 f"Persistent=true\nUnit={name}.service\n\n[Install]\nWantedBy=timers.target\n")
        return {f"{name}.service": service, f"{name}.timer": timer}
    return {f"{name}-cronjob.yaml": _kubernetes(config, Path(config_path), schedule, name)}


def _kubernetes(config, config_path: Path, schedule, name: str) -> str:
    config_file = config_path.name
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": f"{name}-config", "namespace": schedule.namespace},
                  "data": {config_file: config_path.read_text()}}
    container = {
        "name": "firth", "image": schedule.image or default_image(),
        "command": command(config, f"{CONFIG_MOUNT}/{config_file}", firth="firth"),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
        "env": [{"name": "RAY_USAGE_STATS_ENABLED", "value": "0"}],
    }
    cron_job = {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": schedule.namespace, "labels": {"app.kubernetes.io/name": "firth"}},
        "spec": {
            "schedule": schedule.cron, "timeZone": schedule.timezone,
            "concurrencyPolicy": "Forbid",  # a run still going when the next is due: the next is skipped
            "startingDeadlineSeconds": schedule.starting_deadline_s,  # later than this: the missed run is skipped
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {
                "backoffLimit": 0,  # a failed run is recorded in the store; the next night tries again
                "template": {"spec": {
                    "restartPolicy": "Never", "containers": [container],
                    "volumes": [{"name": "config", "configMap": {"name": f"{name}-config"}}]}}}},
        },
    }
    header = (f"# {name}: nightly run of table {config.table} (firth schedule render --target k8s).\n"
              f"# Shards and store must be s3:// (or volumes mounted here): the pod has only its image.\n")
    return header + yaml.dump_all([config_map, cron_job], Dumper=_LiteralDumper, sort_keys=False)


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (the config in the ConfigMap) as readable `|` blocks."""


_LiteralDumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def _schedule(config):
    if config.schedule is None:
        raise ValueError(f"config of table {config.table!r} has no schedule: section; add e.g.\n"
                         "schedule:\n  cron: '30 2 * * *'\n  timezone: UTC\n  action: submit\n"
                         "  address: http://HEAD:8265")
    return config.schedule
