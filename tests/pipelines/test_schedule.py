"""Schedules: cron parsing, the systemd OnCalendar conversion, and rendered files that parse."""
import configparser
import shlex
import shutil
import subprocess

import pytest
import yaml

from firth.pipelines.cli.main import main
from firth.pipelines.config import ConfigError, load_config
from firth.pipelines.cron import parse_cron
from firth.pipelines.ops.schedule import on_calendar, render


@pytest.mark.slow
@pytest.mark.parametrize("expression, expected", [
    ("30 2 * * *", "*-*-* 02:30:00 Europe/Berlin"),
    ("*/15 * * * 1-5", "Mon,Tue,Wed,Thu,Fri *-*-* *:00,15,30,45:00 Europe/Berlin"),
    ("0 3 1,15 * *", "*-*-01,15 03:00:00 Europe/Berlin"),
    ("0 4 * jan-mar sun", "Sun *-01,02,03-* 04:00:00 Europe/Berlin"),
    ("5 0 * * 7", "Sun *-*-* 00:05:00 Europe/Berlin"),  # 7 is Sunday too
    ("0 22 * * mon,wed-fri", "Mon,Wed,Thu,Fri *-*-* 22:00:00 Europe/Berlin"),
    ("10-40/15 1 * * *", "*-*-* 01:10,25,40:00 Europe/Berlin"),
    ("@weekly", "Sun *-*-* 00:00:00 Europe/Berlin"),
    ("@daily", "*-*-* 00:00:00 Europe/Berlin"),
])
def test_cron_to_on_calendar(expression, expected):
    assert on_calendar(parse_cron(expression), "Europe/Berlin") == expected
    if shutil.which("systemd-analyze"):  # where systemd is at hand, it must accept the result as written
        out = subprocess.run(["systemd-analyze", "calendar", expected], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr


def test_parse_cron_expands_every_field():
    cron = parse_cron("0,30 */6 1-3 2 sat")
    assert cron.fields == ((0, 30), (0, 6, 12, 18), (1, 2, 3), (2,), (6,))
    assert cron.restricted == (True, True, True, True, True)


@pytest.mark.parametrize("expression, message", [
    ("30 2 * *", "expected five fields"),
    ("61 2 * * *", "minute value '61' is out of range"),
    ("0 2 L * *", "day-of-month item 'l' is not supported"),
    ("0 2 * * 5-1", "runs backwards"),
    ("@reboot", "unsupported macro"),
])
def test_bad_cron_expressions_are_refused_naming_the_field(expression, message):
    with pytest.raises(ValueError, match=message):
        parse_cron(expression)


def test_day_of_month_and_day_of_week_together_are_refused_for_systemd():
    with pytest.raises(ValueError, match="cron runs when either matches"):
        on_calendar(parse_cron("0 2 1 * mon"))


def _config(tmp_path, **schedule):
    path = tmp_path / "nightly.yaml"
    path.write_text(yaml.safe_dump({
        "table": "wiki", "corpus": {"shards": ["s3://corpus/wiki/*.jsonl.gz"]}, "store": {"uri": "s3://tables/store"},
        "schedule": {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "address": "http://ray-head:8265",
                     **schedule}}))
    return path


def test_config_rejects_a_bad_schedule_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"schedule.cron: Value error, cron '30 2 \* \*': expected five"):
        load_config(_config(tmp_path, cron="30 2 * *"))
    with pytest.raises(ConfigError, match="schedule.timezone: .*unknown time zone"):
        load_config(_config(tmp_path, timezone="Mars/Olympus"))
    with pytest.raises(ConfigError, match="schedule.cronn: unknown key; allowed here: cron, timezone, action"):
        load_config(_config(tmp_path, cronn="1 * * * *"))
    config = load_config(_config(tmp_path, action="submit", address=None))
    with pytest.raises(ValueError, match="schedule.address: required for action submit"):
        render(config, _config(tmp_path, address=None), "cron")


def test_crontab_line_has_five_time_fields_a_zone_and_a_flock_guarded_submit(tmp_path, capsys):
    path = _config(tmp_path)
    assert main(["schedule", "render", str(path), "--target", "cron"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "CRON_TZ=Europe/Berlin"
    fields = shlex.split(lines[1])
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    assert fields[5:8] == ["flock", "-n", "/tmp/firth-wiki.lock"]
    assert fields[8:] == ["firth", "submit", str(path.resolve()), "--address", "http://ray-head:8265", "--wait"]


def test_systemd_units_parse_and_the_timer_is_persistent(tmp_path):
    path = _config(tmp_path, action="run-incremental", firth="/opt/firth/bin/firth", config_path="/etc/firth/n.yaml")
    out = tmp_path / "units"
    assert main(["schedule", "render", str(path), "--target", "systemd", "-o", str(out)]) == 0
    service, timer = configparser.ConfigParser(), configparser.ConfigParser()
    service.read(out / "firth-wiki.service")
    timer.read(out / "firth-wiki.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert shlex.split(service["Service"]["ExecStart"]) == ["/opt/firth/bin/firth", "run", "/etc/firth/n.yaml",
                                                            "--incremental"]
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00 Europe/Berlin"
    assert timer["Timer"]["Persistent"] == "true" and timer["Timer"]["Unit"] == "firth-wiki.service"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_kubernetes_cronjob_forbids_overlap_bounds_missed_runs_and_mounts_the_config(tmp_path, capsys):
    path = _config(tmp_path, image="registry.example/firth:0.1.0", starting_deadline_s=1800)
    assert main(["schedule", "render", str(path), "--target", "k8s"]) == 0
    config_map, cron_job = yaml.safe_load_all(capsys.readouterr().out)
    assert config_map["kind"] == "ConfigMap" and config_map["data"]["nightly.yaml"] == path.read_text()
    assert (cron_job["apiVersion"], cron_job["kind"]) == ("batch/v1", "CronJob")
    spec = cron_job["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"], spec["startingDeadlineSeconds"]) == (
        "30 2 * * *", "Europe/Berlin", "Forbid", 1800)
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["image"] == "registry.example/firth:0.1.0"
    assert container["command"] == ["firth", "submit", "/etc/firth/nightly.yaml", "--address",
                                    "http://ray-head:8265", "--wait"]
    assert container["volumeMounts"][0]["mountPath"] == "/etc/firth"
    assert pod["volumes"][0]["configMap"]["name"] == config_map["metadata"]["name"]


def test_render_without_a_schedule_section_says_how_to_add_one(tmp_path, capsys):
    path = tmp_path / "plain.yaml"
    path.write_text("table: t\ncorpus: {shards: [x]}\n")
    assert main(["schedule", "render", str(path), "--target", "cron"]) == 2
    assert "has no schedule: section" in capsys.readouterr().err
