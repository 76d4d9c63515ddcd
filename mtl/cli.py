"""The ``mtl`` command: one subcommand per pipeline step, each a thin shell over ``mtl.pipeline``.

Global options (``--data-dir``, ``--set``, ``--params``, ``--debug``) may come before or after the
subcommand. Exit status is 0 on success; on failure one paragraph goes to stderr (a traceback only
with ``--debug``) and the status is 2 for an expected failure (bad input, failed validation, ...) and
1 for an internal error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mtl import catalog
from mtl.errors import ConfigError, DataValidationError, MtlError

# from the catalog, which imports neither torch nor pandas: --help and argument checks stay instant
DATASET_CHOICES = tuple(catalog.DATASETS)
MODEL_CHOICES = tuple(catalog.MODELS)
MODEL_HELP = ", ".join(MODEL_CHOICES)
SOURCE_HELP = "; ".join(f"{name}: {', '.join(entry.sources)}" for name, entry in catalog.DATASETS.items())
log = logging.getLogger("mtl")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one paragraph (the usage block is one --help away)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS

    def d(value: Any) -> Any:
        return default if suppress else value

    parser.add_argument(
        "--data-dir", type=Path, default=d(Path("data")), help="data directory (default: data/)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        metavar="KEY=VALUE",
        default=d([]),
        help="override a params.yaml key for this invocation (repeatable), e.g. --set train.epochs=1",
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=d(None),
        help="parameters file over the defaults (packaged defaults <- ./params.yaml <- $MTL_PARAMS <- "
        "--params <- --set)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=d(False), help="log what each step does"
    )
    parser.add_argument(
        "--debug", action="store_true", default=d(False), help="show tracebacks and debug logs"
    )
    parser.add_argument("--json", action="store_true", default=d(False), help="print the result as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mtl",
        description="Multi-task recommendation pipeline: download, validate, prepare, train, evaluate, "
        "register.",
    )
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(
        name: str, help_text: str, handler: Callable[[argparse.Namespace], Any]
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _global_options(sub, suppress=True)
        sub.set_defaults(handler=handler)
        return sub

    sub = command("download", "Fetch (or generate, for --source synthetic) a dataset's raw files.", _download)
    sub.add_argument("dataset", choices=DATASET_CHOICES)
    sub.add_argument(
        "--source",
        help=f"source name (default: datasets.<dataset>.source in params.yaml). {SOURCE_HELP}",
    )
    sub.add_argument("--from", dest="location", metavar="URL_OR_PATH", help="URL, file:// URL or local path")

    sub = command(
        "validate", "Run the Great Expectations suite of a dataset's raw or prepared data.", _validate
    )
    sub.add_argument("dataset", choices=DATASET_CHOICES)
    sub.add_argument("--stage", choices=("raw", "prepared"), default="raw", help="which data to validate")

    sub = command(
        "prepare", "Parse, encode, split and validate a dataset into prepared/<dataset>/.", _prepare
    )
    sub.add_argument("dataset", choices=DATASET_CHOICES)

    sub = command("data", "download + validate + prepare one dataset (or all) in one go.", _data)
    sub.add_argument("dataset", choices=(*DATASET_CHOICES, "all"))

    sub = command(
        "train",
        "Train a model on a prepared dataset (early stopping on the validation split; resumes from "
        "its last checkpoint). train.distributed.nproc_per_node > 1 launches torchrun (DDP).",
        _train,
    )
    sub.add_argument("dataset", choices=DATASET_CHOICES)
    sub.add_argument("model", help=f"a registered model: {MODEL_HELP}")

    sub = command(
        "evaluate", "Score a trained model on one split: metrics, predictions, ROC/PR curves.", _evaluate
    )
    sub.add_argument("dataset", choices=DATASET_CHOICES)
    sub.add_argument("model", help=f"a registered model: {MODEL_HELP}")
    sub.add_argument(
        "--split",
        default=None,
        help="split to score (default: test; a campaign model such as metaheac: test_hot or test_cold)",
    )

    sub = command(
        "register",
        "Gate a trained, evaluated model and register it: a new version with alias challenger, promoted "
        "to champion only if the gate passes (a rejection is not an error).",
        _register,
    )
    sub.add_argument("dataset", choices=DATASET_CHOICES)
    sub.add_argument("model", help=f"a registered model: {MODEL_HELP}")

    registry = command("registry", "Inspect the model registry; promote or roll back by hand.", _registry)
    actions = registry.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        _global_options(sub, suppress=True)
        return sub

    action("list", "Registered models with their versions, aliases and test AUCs.")
    sub = action("show", "One version's lineage: run, params, data hash, git commit, metrics, gate decision.")
    sub.add_argument("name", help="registered model, e.g. aliccp-mmoe")
    sub.add_argument("reference", nargs="?", help="version number or @alias (default: @champion)")
    sub = action("promote", "Make a version the champion by hand (the reason is recorded as a tag).")
    sub.add_argument("name")
    sub.add_argument("version")
    sub.add_argument("--reason", required=True, help="why (recorded on the version)")
    sub = action("rollback", "Move the champion back to the previous champion (or --to VERSION).")
    sub.add_argument("name")
    sub.add_argument("--to", dest="to_version", metavar="VERSION", help="version to return to")
    sub.add_argument("--reason", required=True, help="why (recorded on both versions)")
    params = command("params", "Show the effective parameters and where each value came from.", _params_cmd)
    actions = params.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub = action("show", "Every parameter (dotted key), its value and the layer that set it.")
    sub.add_argument("prefix", nargs="?", help="only keys starting with this, e.g. train or datasets.census")

    sub = command(
        "run",
        "The main job: run every retraining DAG end to end on this machine (airflow dags test, embedded "
        "defaults: synthetic data, SQLite, local MLflow), then print a table of test AUCs, gate decisions "
        "and registry versions. --set overrides apply to every DAG run.",
        _run_main,
    )
    sub.add_argument(
        "--dataset",
        dest="datasets",
        action="append",
        choices=DATASET_CHOICES,
        help="run only this dataset's DAG (repeatable; default: all three)",
    )

    sub = command(
        "ui", "Start the Airflow UI (standalone) and the MLflow UI on 127.0.0.1 over the local state.", _ui
    )
    sub.add_argument("--airflow-port", type=int, default=8080)
    sub.add_argument("--mlflow-port", type=int, default=5000)

    sub = command(
        "airflow",
        "Run an airflow command with the project's embedded-default settings (AIRFLOW_HOME under the "
        "state folder), e.g. `mtl airflow dags list`.",
        _airflow,
    )
    sub.add_argument("airflow_args", nargs=argparse.REMAINDER, help="arguments passed to airflow")

    command(
        "deploy-init",
        "Deployment init job: migrate the Airflow and MLflow databases and create the pools (idempotent).",
        _deploy_init,
    )
    command(
        "healthcheck",
        "Container health check: the package imports, params load, state is writable.",
        _healthcheck,
    )
    return parser


# --- handlers ----------------------------------------------------------------------------------------


def _params(args: argparse.Namespace):  # -> Params
    from mtl.config import load_params

    return load_params(args.overrides, path=args.params)


def check_arguments(args: argparse.Namespace) -> None:
    """Everything about the arguments that can be known before work starts -- dataset, model, source,
    split, the paths that must exist, the parameters -- checked without torch and before any folder,
    file or MLflow run is created. Raises ConfigError naming the argument and the choices."""
    dataset = getattr(args, "dataset", None)
    model = getattr(args, "model", None)
    if model is not None:
        if args.command == "evaluate":
            catalog.model(model)
            args.split = args.split or catalog.model(model).workflow.evaluation_splits[0]
        catalog.check(dataset, model, getattr(args, "split", None))
    params = _params(args)  # a bad --params, $MTL_PARAMS or --set fails here
    if args.command == "download":
        entry = catalog.dataset(dataset)
        source = args.source or params.dataset(dataset).source
        if source not in entry.sources:
            raise ConfigError(
                f"dataset {dataset!r} has no source {source!r}; choose one of {', '.join(entry.sources)}"
            )
        location = args.location if args.location is not None else params.dataset(dataset).location
        if location is None and source in entry.needs_location:
            raise ConfigError(
                f"source {source!r} of {dataset} has no public download URL: fetch its files by hand and "
                "pass --from URL_OR_PATH (a folder or URL holding them)"
            )
        if location is not None and source != "synthetic":
            _check_local_path(location)


def _check_local_path(location: str) -> None:
    """``--from`` naming a local path (plain or file://) that does not exist; URLs are not fetched here."""
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    parts = urlsplit(location)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        return
    path = Path(url2pathname(parts.path)) if scheme == "file" else Path(location).expanduser()
    if "://" in location and scheme != "file":
        raise ConfigError(f"--from {location}: unsupported scheme; use http(s)://, file:// or a local path")
    if not path.exists():
        raise ConfigError(f"--from {location}: no such file or folder")


def _params_cmd(args: argparse.Namespace) -> Any:
    from mtl.config import effective_params, flatten, parameter_layers, parse_override

    data, origin = effective_params(args.params)
    _params(args)  # validates the whole, --set included
    values = flatten(data)
    for text in args.overrides:
        key, value = parse_override(text)
        for known in [k for k in values if k == key or k.startswith(key + ".")]:
            del values[known]
        values.update(flatten({key: value}) if isinstance(value, dict) and value else {key: value})
        for known in [k for k in values if k == key or k.startswith(key + ".")]:
            origin[known] = f"--set {text}"
    shown = {k: v for k, v in values.items() if not args.prefix or k.startswith(args.prefix)}
    if not shown:
        raise ConfigError(f"no parameter starts with {args.prefix!r}")
    _say(
        args,
        "layers (lowest precedence first): "
        + ", ".join(f"{label} {path}" for label, path in parameter_layers(args.params))
        + (", --set" if args.overrides else ""),
    )
    width = max(map(len, shown))
    for key, value in shown.items():
        _say(args, f"{key:<{width}}  {json.dumps(value)!s:<24}  {origin.get(key, 'packaged defaults')}")
    return {k: {"value": v, "from": origin.get(k, "packaged defaults")} for k, v in shown.items()}


def _download(args: argparse.Namespace) -> Any:
    from mtl import pipeline

    result = pipeline.download(
        args.dataset, data_dir=args.data_dir, params=_params(args), source=args.source, location=args.location
    )
    _say(args, f"{args.dataset}: raw files in {result.path} (raw manifest hash {result.content_hash})")
    return result.to_dict()


def _validate(args: argparse.Namespace) -> Any:
    from mtl import pipeline

    result = pipeline.validate(args.dataset, data_dir=args.data_dir, params=_params(args), stage=args.stage)
    _say(args, f"{args.dataset}: {args.stage} data valid; report {result.report}")
    return result.to_dict()


def _prepare(args: argparse.Namespace) -> Any:
    from mtl import pipeline

    result = pipeline.prepare(args.dataset, data_dir=args.data_dir, params=_params(args))
    _say(args, f"{args.dataset}: prepared data in {result.path}")
    _say(args, f"  content hash {result.content_hash} (splits and encoders; `mtl registry list` shows it)")
    for split, info in (result.details or {}).items():
        rates = ", ".join(
            f"{t}={r:.4f}" if r is not None else f"{t}=n/a" for t, r in info["label_rates"].items()
        )
        _say(args, f"  {split:<18} {info['rows']:>10,} rows   {rates}")
    return result.to_dict()


def _data(args: argparse.Namespace) -> Any:
    from mtl import pipeline

    params = _params(args)
    results = {}
    for dataset in DATASET_CHOICES if args.dataset == "all" else (args.dataset,):
        downloaded = pipeline.download(dataset, data_dir=args.data_dir, params=params)
        validated = pipeline.validate(dataset, data_dir=args.data_dir, params=params, stage="raw")
        prepared = pipeline.prepare(dataset, data_dir=args.data_dir, params=params)
        results[dataset] = {
            "raw": downloaded.path,
            "raw_report": validated.report,
            "prepared": prepared.path,
            "prepared_report": prepared.report,
            "content_hash": prepared.content_hash,
        }
        _say(args, f"{dataset}: raw {downloaded.path} -> prepared {prepared.path}")
        _say(args, f"  validation reports: {validated.report}, {prepared.report}")
    return results


def _train(args: argparse.Namespace) -> Any:
    from mtl import pipeline

    result = pipeline.train(args.dataset, args.model, data_dir=args.data_dir, params=_params(args))
    if "meta" in result["training"]:
        _say_meta_training(args, result)
    elif int(os.environ.get("RANK", "0")) == 0:
        training = result["training"]
        _say(
            args,
            f"{args.dataset}/{args.model}: {training['epochs_run']} epochs (best {training['best_epoch']}), "
            f"{training['samples_per_s']:,.0f} rows/s on {training['device']}; model: {result['model_dir']}",
        )
        _say_metrics(args, _params(args).train.validation_split, result["valid"])
    return result


def _evaluate(args: argparse.Namespace) -> Any:
    from mtl import pipeline

    result = pipeline.evaluate(
        args.dataset, args.model, data_dir=args.data_dir, params=_params(args), split=args.split
    )
    _say(args, f"{args.dataset}/{args.model} on split {args.split}: metrics in {result['metrics_file']}")
    if "variants" in result["metrics"]:
        _say_campaign_metrics(args, result["metrics"])
    else:
        _say_metrics(args, args.split, result["metrics"])
    return result


def _register(args: argparse.Namespace) -> Any:
    from mtl import pipeline

    result = pipeline.register(args.dataset, args.model, data_dir=args.data_dir, params=_params(args))
    aliases = ", ".join(result["aliases"]) or "none"
    _say(
        args,
        f"{result['registered_model']} version {result['version']}: {result['decision']} "
        f"(aliases: {aliases})",
    )
    for reason in result["reasons"]:
        _say(args, f"  {reason}")
    return result


def _registry(args: argparse.Namespace) -> Any:
    from mtl.registry import manage

    params = _params(args)
    if args.action == "list":
        rows = manage.list_versions(params)
        _say_versions(args, rows)
        return rows
    if args.action == "show":
        shown = manage.show_version(params, args.name, args.reference)
        if not args.json:
            print(json.dumps(shown, indent=2, default=str))
        return shown
    if args.action == "promote":
        done = manage.promote(params, args.name, args.version, args.reason)
    else:
        done = manage.rollback(params, args.name, args.reason, to=args.to_version)
    previous = done.get("previous_champion") or done.get("rolled_back") or "none"
    _say(args, f"{done['registered_model']}: champion is now version {done['champion']} (was {previous})")
    return done


def _run_main(args: argparse.Namespace) -> Any:
    from mtl.config import parse_override
    from mtl.orchestration import local
    from mtl.orchestration.summary import format_table

    _params(args)  # fail fast on a bad --set or params file, before Airflow starts
    overrides = dict(map(parse_override, args.overrides))
    conf = {"overrides": overrides} if overrides else None
    datasets = tuple(dict.fromkeys(args.datasets)) if args.datasets else local.DATASETS
    outcome = local.main_job(args.data_dir, datasets=datasets, conf=conf)
    _say(args, "")
    _say(args, format_table(outcome.registrations) if outcome.registrations else "no model was registered")
    _say(args, "")
    from mtl.tracking.store import redact, resolve

    _say(args, f"{len(outcome.dags)} DAG runs in {outcome.seconds:.0f} s; logs in {outcome.log_dir}")
    _say(
        args,
        f"data and models: {Path(args.data_dir).resolve()}; MLflow: {redact(resolve(_params(args)).uri)}",
    )
    _say(args, "browse the DAGs, runs and registry with `make ui` (mtl ui)")
    failed = [d.dag_id for d in outcome.dags if not d.succeeded]
    if failed:
        raise MtlError(
            f"DAG run(s) failed: {', '.join(failed)}; the table lists what did register. "
            f"Logs: {outcome.log_dir}"
        )
    return outcome.to_dict()


def _ui(args: argparse.Namespace) -> Any:
    from mtl.orchestration import local

    return local.start_uis(airflow_port=args.airflow_port, mlflow_port=args.mlflow_port)


def _airflow(args: argparse.Namespace) -> Any:
    from mtl.orchestration import local

    code = local.airflow_command(list(args.airflow_args))
    if code:
        raise MtlError(f"airflow {' '.join(args.airflow_args)} exited with status {code}")
    return None


def _deploy_init(args: argparse.Namespace) -> Any:
    from mtl.orchestration import local

    local.deploy_init()
    _say(args, "databases migrated, pools created")
    return None


def _healthcheck(args: argparse.Namespace) -> Any:
    from mtl.orchestration import local

    local.healthcheck()
    _say(args, "ok")
    return None


def _say_versions(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if not rows:
        _say(args, "no registered models")
        return
    _say(args, f"{'model':<24} {'ver':>4}  {'aliases':<22} {'decision':<13} {'data content':<14} test AUC")
    for r in rows:
        aucs = ", ".join(f"{k}={v}" for k, v in sorted(r["test_auc"].items()))
        _say(
            args,
            f"{r['name']:<24} {r['version']:>4}  {','.join(r['aliases']) or '-':<22} {r['decision']:<13} "
            f"{r['data'][:12]:<14} {aucs}",
        )


def _say_metrics(args: argparse.Namespace, split: str, metrics: dict[str, Any]) -> None:
    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    role = {"test": "held-out test split", "valid": "validation split: model selection"}.get(split, "split")
    _say(args, f"  metrics on {split} ({role})")
    _say(args, f"  {'output':<12} {'AUC':>8} {'logloss':>9} {'pos rate':>9} {'pred mean':>10} {'rows':>10}")
    for output, m in metrics["outputs"].items():
        _say(
            args,
            f"  {output:<12} {number(m['auc']):>8} {number(m['logloss']):>9} {number(m['positive_rate']):>9} "
            f"{number(m['prediction_mean']):>10} {m['rows']:>10,}",
        )


def _say_meta_training(args: argparse.Namespace, result: dict[str, Any]) -> None:
    meta, baseline = result["training"]["meta"], result["training"]["baseline"]
    _say(
        args,
        f"{args.dataset}/{args.model}: {meta['meta_steps']} meta-steps ({meta['steps_per_s']:.2f}/s on "
        f"{meta['device']}), probe query loss {meta['probe_query_loss_before']:.4f} -> "
        f"{meta['probe_query_loss_after']:.4f}; model: {result['model_dir']}",
    )
    if baseline:
        _say(args, f"  plain baseline: {baseline['epochs']} epochs, {baseline['rows_per_s']:,.0f} rows/s")


def _say_campaign_metrics(args: argparse.Namespace, metrics: dict[str, Any]) -> None:
    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    top = f"@{metrics['adaptation']['top_fraction']:.0%}"
    speed = number(metrics["adaptation"]["campaigns_per_s"])
    _say(args, f"  {metrics['campaigns']} campaigns; adaptation {speed} campaigns/s")
    _say(
        args,
        f"  {'variant':<20} {'AUC':>7} {'GAUC':>7} {'wGAUC':>7} {'P' + top:>7} {'R' + top:>7} {'skipped':>8}",
    )
    rows = dict(metrics["variants"])
    if metrics.get("oracle"):  # synthetic data: the true probabilities
        rows["oracle"] = metrics["oracle"]
    for name, m in rows.items():
        _say(
            args,
            f"  {name:<20} {number(m['auc']):>7} {number(m['gauc']):>7} {number(m['gauc_weighted']):>7} "
            f"{number(m.get('precision_at_top')):>7} {number(m.get('recall_at_top')):>7} "
            f"{m['campaigns_skipped']:>8}",
        )


# --- plumbing ----------------------------------------------------------------------------------------


def _say(args: argparse.Namespace, text: str) -> None:
    if not getattr(args, "json", False):
        print(text, flush=True)


def _configure_logging(debug: bool, verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for noisy in ("urllib3", "great_expectations", "matplotlib", "filelock", "alembic", "git", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if debug else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    # MLflow's own "Downloading artifacts" bars: dozens per training run; our commands show their own
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    args = build_parser().parse_args(argv)
    # MLflow installs its own INFO handler on import ("Creating initial MLflow database tables...")
    os.environ.setdefault(
        "MLFLOW_LOGGING_LEVEL", "DEBUG" if args.debug else "INFO" if args.verbose else "WARNING"
    )
    _configure_logging(args.debug, args.verbose)
    try:
        check_arguments(args)
        result = args.handler(args)
    except MtlError as exc:
        if args.debug:
            log.exception("failed")
        message = " ".join(str(exc).split()) if "\n" not in str(exc) else str(exc)
        print(f"mtl {args.command}: error: {message}", file=sys.stderr)
        if isinstance(exc, DataValidationError) and exc.report_path:
            print(f"mtl {args.command}: validation report: {exc.report_path}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mtl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"mtl {args.command}: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
