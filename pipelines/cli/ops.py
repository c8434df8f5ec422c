"""The `firth` commands that operate runs: submit, jobs, runs, report, schedule (wired by pipelines/cli/main.py).

    firth submit CONFIG.yaml --address http://HEAD:8265 [--wait] [--store URI] [--no-ship-code] [--json]
    firth jobs status|logs|stop JOB_ID --address http://HEAD:8265 [--json]
    firth runs list [--table NAME] [--json]        firth runs show RUN_ID [--json]
    firth report RUN_ID [-o report.html] [--probe WORD ...]
    firth schedule render CONFIG.yaml --target cron|systemd|k8s [-o DIR]

--address defaults to $RAY_API_SERVER_ADDRESS, then (submit) the config's schedule.address.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from firth.pipelines.cli.common import json_line, open_store


def add_commands(commands) -> None:
    """Add the operations commands to the `firth` sub-parsers."""
    submit = commands.add_parser("submit", help="run a config's pipeline as a Ray job on a cluster")
    submit.add_argument("config")
    submit.add_argument("--address", help="Ray dashboard URL, e.g. http://HEAD:8265")
    submit.add_argument("--store", help="table store URI (absolute path or s3://) the job writes to")
    submit.add_argument("--wait", action="store_true", help="wait for the job; exit 0 only if it succeeded")
    submit.add_argument("--no-ship-code", dest="ship_code", action="store_false",
                        help="use the firth installed on the cluster (an image) instead of shipping this code")
    submit.add_argument("--exclude", action="append", default=[], help="more working_dir excludes (gitignore syntax)")
    submit.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                        help="environment variable for the job (value taken from here when left out)")
    submit.add_argument("--python", help="interpreter on the head node (default: this one for a loopback "
                                         "address, else `python`)")
    submit.add_argument("--json", action="store_true",
                        help="print {job_id, address} (with --wait: and the final status) as one JSON object")
    submit.set_defaults(command=_submit)

    jobs = commands.add_parser("jobs", help="status, logs or stop of a submitted job").add_subparsers(
        required=True, metavar="ACTION")
    for action, help_text in [("status", "status of a job"), ("logs", "the job's output"), ("stop", "stop a job")]:
        sub = jobs.add_parser(action, help=help_text)
        sub.add_argument("job_id")
        sub.add_argument("--address", help="Ray dashboard URL (default: $RAY_API_SERVER_ADDRESS)")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(command=_jobs, action=action)

    runs = commands.add_parser("runs", help="records of past runs in the store").add_subparsers(
        required=True, metavar="ACTION")
    runs_list = runs.add_parser("list", help="every run, oldest first")
    runs_list.add_argument("--table", help="only this table's runs")
    runs_list.set_defaults(command=_runs_list)
    runs_show = runs.add_parser("show", help="one run's record")
    runs_show.add_argument("run_id")
    runs_show.set_defaults(command=_runs_show)

    report = commands.add_parser("report", help="a self-contained HTML report of a run")
    report.add_argument("run_id")
    report.add_argument("-o", "--output", help="HTML file to write (default: report-RUN_ID.html)")
    report.add_argument("--probe", action="append", default=[], help="probe word for the neighbour tables")

    for sub in (runs_list, runs_show, report):
        sub.add_argument("--store", help="table store URI (default: $FIRTH_STORE or ./firth-store)")
        sub.add_argument("--config", help="take the store from this config file")
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(command=_report)

    schedule = commands.add_parser("schedule", help="nightly schedules from the config's schedule: section")
    render = schedule.add_subparsers(required=True, metavar="ACTION").add_parser(
        "render", help="write a crontab line, systemd units or a Kubernetes CronJob")
    render.add_argument("config")
    render.add_argument("--target", required=True, choices=["cron", "systemd", "k8s"])
    render.add_argument("-o", "--output", help="folder to write the files to (default: print them)")
    render.set_defaults(command=_schedule_render)


def _address(args, config=None) -> str:
    address = args.address or os.environ.get("RAY_API_SERVER_ADDRESS")
    if not address and config is not None and config.schedule is not None:
        address = config.schedule.address
    if not address:
        raise ValueError("no Ray address: pass --address http://HEAD:8265 or set $RAY_API_SERVER_ADDRESS")
    return address


def _submit(args) -> int:
    from firth.pipelines.config import load_config
    from firth.pipelines.ops import submit

    address = _address(args, load_config(args.config) if not args.address else None)
    env = {}
    for item in args.env:
        name, equals, value = item.partition("=")
        if not equals and name not in os.environ:
            raise ValueError(f"--env {name}: not set here; pass --env {name}=VALUE")
        env[name] = value if equals else os.environ[name]
    submission = submit.build_submission(args.config, store=args.store, ship_code=args.ship_code,
                                         excludes=args.exclude, env=env,
                                         python=args.python or submit.default_python(address))
    job_id = submit.submit(submission, address)
    if not args.json:
        print(job_id, flush=True)  # a script reads the id while --wait waits
    firth = "firth"
    print(f"submitted {job_id} to {address}\n  status: {firth} jobs status {job_id} --address {address}\n"
          f"  logs:   {firth} jobs logs {job_id} --address {address}", file=sys.stderr)
    final = submit.wait(address, job_id) if args.wait else None
    if args.json:
        print(json_line({"job_id": job_id, "address": address, **({"status": final} if final else {})}))
    if final is None:
        return 0
    print(f"job {job_id}: {final}", file=sys.stderr)
    return 0 if final == "SUCCEEDED" else 1


def _jobs(args) -> int:
    from firth.pipelines.ops import submit

    address = _address(args)
    if args.action == "status":
        info = submit.status(address, args.job_id)
        print(json.dumps(info) if args.json else f"{info['job_id']}  {info['status']}  {info['message'] or ''}")
    elif args.action == "logs":
        text = submit.logs(address, args.job_id)
        print(json.dumps({"job_id": args.job_id, "logs": text}) if args.json else text, end="" if not args.json else "\n")
    else:
        stopped = submit.stop(address, args.job_id)
        print(json.dumps({"job_id": args.job_id, "stopped": stopped}) if args.json
              else f"{args.job_id}: {'stop requested' if stopped else 'already ended'}")
    return 0


def _run_log(args):
    from firth.pipelines.ops.run_records import RunLog

    store = open_store(args)
    return RunLog(store.uri, store.storage_options)


def _runs_list(args) -> int:
    records = _run_log(args).list(args.table)
    if args.json:
        print(json_line([r.to_json() for r in records]))
        return 0
    if not records:
        print("no runs recorded")
    for r in records:
        total = sum(r.timings.values())
        where = f"@{r.version}" if r.version is not None else ""
        failed = {"abandoned": "died", "cancelled": "cancelled"}.get(r.outcome, "failed")
        failure = f"  {failed} in {r.failed_stage}: {r.error['type']}: {r.error['message'][:80]}" if r.error else ""
        print(f"{r.run_id}  {r.table}{where}  {r.outcome:<9} {total:7.1f} s  {len(r.shards)} shards{failure}")
    return 0


def _runs_show(args) -> int:
    record = _run_log(args).get(args.run_id)
    if args.json:
        print(json_line(record.to_json()))
        return 0
    data = record.to_json()
    traceback_text = (data.get("error") or {}).pop("traceback", "") if data.get("error") else ""
    print(json.dumps(data, indent=2, default=str))
    if traceback_text:
        print(traceback_text, end="")
    return 0


def _report(args) -> int:
    from firth.pipelines.ops.report import write_report

    store = open_store(args)
    output = Path(args.output or f"report-{args.run_id}.html")
    write_report(store, args.run_id, output, probes=args.probe)
    print(json.dumps({"report": str(output)}) if args.json else f"wrote {output}")
    return 0


def _schedule_render(args) -> int:
    from firth.pipelines.config import load_config
    from firth.pipelines.ops.schedule import render

    config = load_config(args.config)
    files = render(config, args.config, args.target)
    if args.output:
        folder = Path(args.output)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (folder / name).write_text(text)
            print(f"wrote {folder / name}")
    else:
        for name, text in files.items():
            if len(files) > 1:
                print(f"# ---- {name}")
            print(text, end="")
    return 0
