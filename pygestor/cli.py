"""The ``pygestor`` command: the operations of :mod:`pygestor.manager` from the shell.

Errors are one line on stderr and a non-zero exit (2 for bad usage or configuration, 1 for
everything else); ``PYGESTOR_DEBUG=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pygestor import __version__

Handler = Callable[[argparse.Namespace], int]


# ====================================================================== parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pygestor", description="Acquire, organize and serve datasets.",
        epilog="References: DATASET, DATASET/SUBSET or DATASET/SUBSET/PARTITION.")
    parser.add_argument("--version", action="version", version=f"pygestor {__version__}")
    parser.add_argument("--data-dir", metavar="URL",
                        help="storage root: a folder, s3://bucket/prefix, gs://bucket/prefix...")
    parser.add_argument("--config", metavar="FILE", help="TOML config file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    add = commands.add_parser("add", help="register a dataset from a URL (nothing downloaded)")
    add.add_argument("name", help="dataset name, e.g. toy or owner/name")
    add.add_argument("url", nargs="?", help="source URL, folder or glob")
    add.add_argument("--pipeline", default="auto", help="pipeline name (default: auto)")
    add.add_argument("--description", help="a short description")
    add.add_argument("--modality", help="text, image, audio, tabular...")
    add.add_argument("--revision", help="source revision to pin (Hugging Face)")
    add.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                     help="pipeline option (JSON value or string), repeatable")
    add.set_defaults(handler=cmd_add)

    lst = commands.add_parser("list", help="list datasets, or the subsets of one")
    lst.add_argument("name", nargs="?", help="a dataset: list its subsets")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(handler=cmd_list)

    info = commands.add_parser("info", help="details of a dataset, subset or partition")
    info.add_argument("ref")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=cmd_info)

    download = commands.add_parser("download", help="download a dataset, subset or partitions")
    download.add_argument("ref")
    download.add_argument("-p", "--partition", action="append", dest="partitions",
                          metavar="NAME", help="only this partition (repeatable)")
    download.add_argument("--force", action="store_true", help="fetch again even if present")
    download.add_argument("--update", action="store_true",
                          help="fetch what changed upstream (pipelines that track revisions)")
    download.add_argument("--max-workers", type=int, metavar="N", help="concurrent fetches")
    download.add_argument("--cluster", metavar="ADDRESS",
                          help="a Dask scheduler (tcp://host:8786) whose workers fetch the "
                               "partitions (default: the 'cluster' setting, else this machine)")
    download.set_defaults(handler=cmd_download)

    remove = commands.add_parser("remove", help="delete downloaded data (keeps the dataset)")
    remove.add_argument("ref")
    remove.add_argument("-p", "--partition", action="append", dest="partitions",
                        metavar="NAME", help="only this partition (repeatable)")
    remove.set_defaults(handler=cmd_remove)

    delete = commands.add_parser("delete", help="unregister a dataset and delete its data")
    delete.add_argument("name")
    delete.add_argument("--keep-data", action="store_true", help="delete the record only")
    delete.add_argument("--force", action="store_true",
                        help="cancel the dataset's running jobs first (else: refused)")
    delete.set_defaults(handler=cmd_delete)

    jobs = commands.add_parser("jobs", help="running jobs on this data_dir (any process/machine)")
    jobs.add_argument("--all", action="store_true", help="finished jobs too (history)")
    jobs.add_argument("--json", action="store_true", help="machine-readable output")
    jobs.set_defaults(handler=cmd_jobs)

    cancel = commands.add_parser("cancel", help="ask a running job to stop, wherever it runs")
    cancel.add_argument("job", help="a job id from 'pygestor jobs'")
    cancel.set_defaults(handler=cmd_cancel)

    verify = commands.add_parser("verify", help="check downloaded data against the catalog")
    verify.add_argument("ref")
    verify.add_argument("--repair", action="store_true",
                        help="fix the catalog: forget broken partitions, adopt complete files, "
                             "remove stale temporary files")
    verify.add_argument("--quick", action="store_true", help="sizes only, no checksums")
    verify.set_defaults(handler=cmd_verify)

    head = commands.add_parser("head", help="print the first rows of downloaded data")
    head.add_argument("ref")
    head.add_argument("-n", type=int, default=5, help="rows (default 5)")
    head.add_argument("--columns", help="comma-separated columns")
    head.add_argument("--union", action="store_true",
                      help="read subsets with different columns together (missing: nulls)")
    head.set_defaults(handler=cmd_head)

    schema = commands.add_parser("schema", help="print column names and types")
    schema.add_argument("ref")
    schema.add_argument("--union", action="store_true",
                        help="the union of subsets with different columns")
    schema.set_defaults(handler=cmd_schema)

    snippet = commands.add_parser("snippet", help="print code that loads a reference")
    snippet.add_argument("ref")
    snippet.add_argument("--kind", default="all",
                         choices=["all", "load", "iter_batches", "torch", "cli"])
    snippet.set_defaults(handler=cmd_snippet)

    config = commands.add_parser("config", help="print the effective settings (secrets hidden)")
    config.add_argument("--json", action="store_true", help="machine-readable output")
    config.set_defaults(handler=cmd_config)

    updates = commands.add_parser("check-updates", help="compare a dataset with its source")
    updates.add_argument("name")
    updates.set_defaults(handler=cmd_check_updates)

    ui = commands.add_parser("ui", help="serve the web UI")
    ui.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, help="port (default 8080)")
    ui.set_defaults(handler=cmd_ui)

    plan = commands.add_parser("plan", help="dry-run the data-loading plan of a subset, or of "
                                             "a weighted mix: REF=WEIGHT REF=WEIGHT ...")
    plan.add_argument("ref", nargs="+", help="a reference, or several as REF=WEIGHT (a mix)")
    plan.add_argument("--samples-per-epoch", type=int,
                      help="samples of one epoch over all ranks (a mix)")
    plan.add_argument("--stopping", choices=["repeat", "first_exhausted", "all_exhausted"],
                      help="what a source of a mix that runs out does")
    plan.add_argument("--world-size", type=int, default=1)
    plan.add_argument("--workers", type=int, default=0)
    plan.add_argument("--seed", type=int, default=0)
    plan.add_argument("--epoch", type=int, default=0)
    plan.add_argument("--no-shuffle", action="store_true")
    plan.add_argument("--drop-last", action="store_true",
                      help="drop the remainder instead of padding ranks by repeating samples "
                           "(PygestorDataset's drop_last; padding is its default)")
    plan.add_argument("--json", action="store_true", help="machine-readable output")
    plan.set_defaults(handler=cmd_plan)
    return parser


# ====================================================================== helpers
def _manager(args: argparse.Namespace) -> Any:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    return Manager(Settings.load(args.config, data_dir=args.data_dir))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    from pygestor.manager import human_size

    def cell(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        if key.endswith("bytes") or key == "size":
            return human_size(value) if value else "-"
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return str(value)

    body = [[cell(r, key) for key, _ in columns] for r in rows]
    widths = [max([len(title)] + [len(b[i]) for b in body]) for i, (_, title) in
              enumerate(columns)]
    lines = ["  ".join(title.ljust(w) for (_, title), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(line.rstrip() for line in lines)


def _parse_option(text: str) -> tuple[str, Any]:
    from pygestor.errors import ConfigError

    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"option {text!r} must look like KEY=VALUE")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


# ====================================================================== commands
def cmd_add(args: argparse.Namespace) -> int:
    options = dict(_parse_option(o) for o in args.option)
    for key in ("description", "modality", "revision"):
        if getattr(args, key):
            options[key] = getattr(args, key)
    dataset = _manager(args).add_dataset(args.name, args.url, args.pipeline, **options)
    parts = sum(len(s.partitions) for s in dataset.subsets.values())
    print(f"registered {dataset.name} ({dataset.pipeline}): {len(dataset.subsets)} subsets, "
          f"{parts} partitions; download with 'pygestor download {dataset.name}'")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.name:
        rows = manager.list_subsets(args.name)
        if args.json:
            _print_json(rows)
            return 0
        print(_table(rows, [("name", "SUBSET"), ("partitions", "PARTITIONS"),
                            ("downloaded", "DOWNLOADED"), ("rows", "ROWS"),
                            ("downloaded_bytes", "ON DISK"), ("source_bytes", "SOURCE")]))
        return 0
    rows = manager.list_datasets()
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no datasets yet; add one with 'pygestor add NAME URL'")
        return 0
    damaged = [row for row in rows if "damaged" in row]
    rows = [row for row in rows if "damaged" not in row]
    for row in damaged:
        print(f"pygestor: warning: dataset {row['name']} is damaged: {row['damaged']}",
              file=sys.stderr)
    print(_table(rows, [("name", "DATASET"), ("pipeline", "PIPELINE"), ("subsets", "SUBSETS"),
                        ("partitions", "PARTITIONS"), ("downloaded", "DOWNLOADED"),
                        ("downloaded_bytes", "ON DISK"), ("url", "SOURCE")]))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    data = _manager(args).info(args.ref)
    if args.json:
        _print_json(data)
        return 0
    nested = {k: v for k, v in data.items() if isinstance(v, list)}
    from pygestor.manager import human_size
    for key, value in data.items():
        if key in nested:
            continue
        if value in (None, "") and key not in ("downloaded",):
            continue
        if key.endswith("bytes") or key == "size":
            value = human_size(value)
        print(f"{key + ':':18} {value}")
    if "subsets" in nested:
        print()
        print(_table(nested["subsets"], [("name", "SUBSET"), ("partitions", "PARTITIONS"),
                                         ("downloaded", "DOWNLOADED"), ("rows", "ROWS"),
                                         ("downloaded_bytes", "ON DISK")]))
    if "partition_list" in nested:
        print()
        print(_table(nested["partition_list"], [("name", "PARTITION"), ("downloaded", "DOWNLOADED"),
                                                ("rows", "ROWS"), ("size", "SIZE"),
                                                ("source_bytes", "SOURCE")]))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    manager = _manager(args)
    if args.update:
        report = manager.download_updates(args.ref, max_workers=args.max_workers)
    else:
        report = manager.download(args.ref, args.partitions, force=args.force,
                                  max_workers=args.max_workers, cluster=args.cluster)
    print(f"{args.ref}: {report}")
    for key, why in report.set_aside.items():
        print(f"set aside: {key}: {why}")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    removed = _manager(args).remove(args.ref, args.partitions)
    print(f"removed {len(removed)} partition file(s) of {args.ref}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _manager(args).delete_dataset(args.name, data=not args.keep_data, force=args.force)
    print(f"deleted {args.name}" + (" (data kept)" if args.keep_data else ""))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    rows = _manager(args).list_jobs(all=args.all)
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("no running jobs" + ("" if args.all else " (--all shows finished ones)"))
        return 0
    for row in rows:
        row["progress"] = f"{row.get('done', 0)}/{row.get('total', 0)}"
        row["where"] = f"{row.get('host')}:{row.get('pid')}"
    print(_table(rows, [("id", "JOB"), ("kind", "KIND"), ("ref", "REFERENCE"),
                        ("state", "STATE"), ("progress", "DONE"), ("where", "WHERE"),
                        ("started_at", "STARTED"), ("error", "ERROR")]))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    record = _manager(args).cancel(args.job)
    if record["state"] == "running":
        print(f"asked {record['id']} ({record['kind']} of {record['ref']}) to stop; it stops "
              "within a few seconds (running partitions finish)")
    else:
        print(f"{record['id']} is {record['state']}; nothing to cancel")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    report = _manager(args).verify(args.ref, repair=args.repair, checksums=not args.quick)
    for problem in report.problems:
        print(f"problem: {problem}")
    for fix in report.repaired:
        print(f"repaired: {fix}")
    print(f"{args.ref}: {len(report.ok)} partition(s) ok, {len(report.problems)} problem(s)")
    if report.problems and not args.repair:
        print("run 'pygestor verify --repair' to fix the catalog", file=sys.stderr)
        return 1
    return 0


def cmd_head(args: argparse.Namespace) -> int:
    from pygestor.errors import ConfigError
    from pygestor.loaders import arrow

    if args.n < 0:
        raise ConfigError(f"-n must be >= 0, got {args.n}")
    manager = _manager(args)
    mode = "union" if args.union else None
    frame = arrow.sample(manager, args.ref, args.n, mode)
    if args.columns:
        columns = arrow.check_columns([c.strip() for c in args.columns.split(",")],
                                      arrow.schema(manager, args.ref, mode))
        frame = frame[columns]
    import pandas as pd

    with pd.option_context("display.max_columns", 50, "display.width", 160,
                           "display.max_colwidth", 60):
        print(frame.to_string(index=False) if len(frame) else "(no rows)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from pygestor.loaders import arrow

    schema = arrow.schema(_manager(args), args.ref, "union" if args.union else None)
    width = max((len(f.name) for f in schema), default=4)
    for field in schema:
        print(f"{field.name.ljust(width)}  {field.type}{'' if field.nullable else ' not null'}")
    return 0


def cmd_snippet(args: argparse.Namespace) -> int:
    from pygestor.snippets import snippets

    manager = _manager(args)
    ref = str(manager.resolve(args.ref))
    for kind, code in snippets(ref, manager.settings).items():
        if args.kind in ("all", kind):
            if args.kind == "all":
                print(f"# --- {kind}")
            print(code)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from pygestor.config import Settings

    settings = Settings.load(args.config, data_dir=args.data_dir)
    data = settings.redacted()
    if args.json:
        _print_json(data)
        return 0
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        print(f"{key} = {value}")
    return 0


def cmd_check_updates(args: argparse.Namespace) -> int:
    result = _manager(args).check_updates(args.name)
    _print_json(result)
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from pygestor.ui import serve

    manager = _manager(args)
    serve(manager, host=args.host, port=args.port)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from pygestor.loaders.dryrun import mix_report, plan_report

    common = {"world_size": args.world_size, "num_workers": args.workers, "seed": args.seed,
              "epoch": args.epoch, "shuffle": not args.no_shuffle, "drop_last": args.drop_last}
    mix = _weights(args.ref)
    if mix is None:
        report = plan_report(_manager(args), args.ref[0], **common)
    else:
        report = mix_report(_manager(args), mix, samples_per_epoch=args.samples_per_epoch,
                            stopping=args.stopping, **common)
    if args.json:
        _print_json(report)
        return 0
    for key, value in report.items():
        if key == "sources":
            for source in value:
                print("  " + "  ".join(f"{k} {v}" for k, v in source.items()))
        else:
            print(f"{key + ':':24} {value}")
    return 0


def _weights(refs: list[str]) -> dict[str, float] | None:
    """``REF=WEIGHT`` arguments as a mix (None for one plain reference, whose name may hold
    a '=')."""
    from pygestor.errors import ConfigError

    parsed = [_ref_weight(item) for item in refs]
    if len(refs) == 1 and parsed[0][1] is None:
        return None
    for item, (_, weight) in zip(refs, parsed, strict=True):
        if weight is None:
            raise ConfigError(f"{item!r}: give a mix as REF=WEIGHT, e.g. web/train=0.7")
    return {ref: float(weight) for ref, weight in parsed if weight is not None}


def _ref_weight(item: str) -> tuple[str, float | None]:
    ref, _, weight = item.rpartition("=")
    try:
        return (ref, float(weight)) if ref else (item, None)
    except ValueError:
        return item, None


# ====================================================================== entry point
def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    _say_warnings()
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - one line for the user, never a traceback
        return _report(exc)


def _say_warnings() -> None:
    """Pygestor's warnings (a partial read...) as one line each on stderr."""
    import warnings

    from pygestor.errors import PartialDataWarning

    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, PartialDataWarning):
            print(f"pygestor: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *args, **kwargs)
    warnings.showwarning = show


def _report(exc: BaseException) -> int:
    from pygestor.config import redact_url
    from pygestor.errors import PygestorError

    if os.environ.get("PYGESTOR_DEBUG"):
        import traceback

        traceback.print_exc()
    if isinstance(exc, PygestorError):
        print(f"pygestor: error: {redact_url(str(exc))}", file=sys.stderr)
        return exc.exit_code
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print(f"pygestor: error: {type(exc).__name__}: {redact_url(message)[:500]} "
          "(set PYGESTOR_DEBUG=1 for details)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
