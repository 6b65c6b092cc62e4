"""``cgan-train`` / ``python -m trainer``: flags -> one :class:`~trainer.config.TrainConfig` -> library calls
that the tests call too. Errors are one line, exit 2.

Every module imported here is TF-free at import time (TensorFlow and Keras load inside the functions that
train, export or evaluate), so ``cgan-train --help`` answers in a fraction of a second; a test keeps it so.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from trainer import variants
from trainer.config import ARCHS, ConfigError, TrainConfig, override_recipe
from trainer.data import LOADERS, DataError, load_dataset
from trainer.evaluation import EvalOptions, evaluate, export_judge_only
from trainer.export import ExportError
from trainer.int8 import QualityGate, publish_int8
from trainer.train import RUN_FILE, RunResult, export_run, load_run, train


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


class _DeprecatedAlias(argparse.Action):
    """An old flag name: it still works, and says once on stderr which name to use."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _numbers(text: str) -> tuple[float, ...]:
    """A comma-separated list of numbers (``1,2,5,10``)."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cgan-train",
        description="Train conditional GANs on 28x28 labelled images and export the generator to ONNX.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="train a model and export it into --out",
        description="Train a conditional GAN. Flags left out take the dataset's default recipe "
        "(the best we measured within about 15 minutes on 2 CPU cores; see QUALITY.md).",
    )
    train.add_argument(
        "--variant", choices=list(variants.VARIANTS), help="GAN variant (default: the dataset's recipe)"
    )
    train.add_argument(
        "--model",
        dest="variant",
        choices=list(variants.VARIANTS),
        action=_DeprecatedAlias,
        new="--variant",
        help="deprecated: the old name of --variant",
    )
    train.add_argument("--arch", choices=ARCHS, help="dense = the article's MLPs; conv = DCGAN-style")
    train.add_argument("--dataset", default="mnist-5k", choices=sorted(LOADERS), help="training data")
    train.add_argument(
        "--data-dir", type=Path, help="directory of MNIST-format IDX files (gz or not) or an .npz"
    )
    length = train.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_positive, help="training steps (one step = one D and one G update)")
    length.add_argument("--epochs", type=_positive, help="passes over the training split, instead of --steps")
    train.add_argument("--batch-size", type=_positive, help="images per step")
    train.add_argument("--latent-dim", type=_positive, help="size of the noise vector z")
    train.add_argument("--seed", type=_non_negative, help="seed for weights, data order and samples (0)")
    train.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("MODELS_DIR", "models")),
        help="models directory to export into (default $MODELS_DIR or ./models)",
    )
    train.add_argument(
        "--recipe",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="change one knob of the recipe (trainer.config.Recipe), e.g. lecam_weight=0.3; repeatable",
    )
    train.add_argument("--name", help="model name (default <dataset>-<variant>-<arch>)")
    train.add_argument(
        "--work-dir", type=Path, help="where checkpoints, sample grids and history go (default ./runs/<name>)"
    )
    # Left out, these take TrainConfig's defaults (500, 500, 50): written down once, there.
    train.add_argument("--checkpoint-every", type=_positive, help="steps between checkpoints")
    train.add_argument("--sample-every", type=_positive, help="steps between sample grids")
    train.add_argument("--log-every", type=_positive, help="steps between history rows")
    train.add_argument("--resume", action="store_true", help="continue the run in --work-dir/<name>")
    train.add_argument(
        "--no-jit", action="store_true", help="do not XLA-compile the train steps (only dense uses XLA)"
    )
    train.add_argument("--no-export", action="store_true", help="train only; export later with 'export'")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _int8_flags(train)

    export = commands.add_parser("export", help="export a run's newest checkpoint into --out")
    export.add_argument("run_dir", type=Path, help="the run directory (e.g. runs/mnist-5k-cgan-conv)")
    export.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("MODELS_DIR", "models")),
        help="models directory (default $MODELS_DIR or ./models)",
    )
    _int8_flags(export)

    evaluate = commands.add_parser("evaluate", help="measure an exported model's quality; fills its card")
    evaluate.add_argument("model_dir", type=Path, help="a version directory: MODELS_DIR/<name>/<version>")
    evaluate.add_argument(
        "--quiet", action="store_true", help="no progress bar (it is shown on a terminal only)"
    )
    defaults = EvalOptions()
    evaluate.add_argument(
        "--samples-per-class",
        type=_positive,
        default=defaults.samples_per_class,
        help="generated images per class",
    )
    evaluate.add_argument("--data-dir", type=Path, help="data directory, for datasets that need one")
    evaluate.add_argument(
        "--seed", type=_non_negative, default=defaults.seed, help="first seed of the generated images"
    )
    evaluate.add_argument(
        "--probe-runs",
        type=_positive,
        default=defaults.probe_runs,
        help="GAN-train and real-train are each the mean of this many probe trainings",
    )
    evaluate.add_argument(
        "--code-sweeps",
        type=_positive,
        default=defaults.code_sweeps,
        help="models with style codes: sweeps ((seed, label) pairs) per code",
    )
    evaluate.add_argument(
        "--code-steps",
        type=_positive,
        default=defaults.code_steps,
        help="models with style codes: steps per sweep over a code's range (at least 3)",
    )
    evaluate.add_argument(
        "--no-augmentation",
        action="store_true",
        help="skip the augmentation value (real alone vs real + 1x/2x generated): "
        "it trains 3 probes per --probe-runs seed, on up to 3x the real training split",
    )
    evaluate.add_argument(
        "--augmentation-real-per-class",
        type=_positive,
        metavar="N",
        help="the augmentation value's real arm: N real images per class instead of the whole training "
        "split (fashion-mnist's 60,000 make it about an hour on 2 cores; 1000 takes minutes)",
    )
    evaluate.add_argument(
        "--bootstrap",
        type=_non_negative,
        default=defaults.bootstrap_resamples,
        metavar="B",
        help="resamples of the 95%% bootstrap intervals of FID and KID (0: none)",
    )
    evaluate.add_argument(
        "--worth",
        action="store_true",
        help="also measure the generated images' worth in real images: GAN-train at --worth-multiples of "
        "the real training split against a real learning curve at --worth-fractions of it, --probe-runs "
        "seeds each (42 probe trainings at the defaults)",
    )
    evaluate.add_argument(
        "--worth-multiples",
        type=_numbers,
        default=defaults.worth_multiples,
        metavar="M,M,...",
        help="generated set sizes as multiples of the real training split (default 1,2,5,10)",
    )
    evaluate.add_argument(
        "--worth-fractions",
        type=_numbers,
        default=defaults.worth_fractions,
        metavar="F,F,...",
        help="points of the real learning curve, fractions of the real training split (default 0.1,...,1)",
    )
    evaluate.add_argument(
        "--worth-real-per-class",
        type=_positive,
        metavar="N",
        help="the worth measurement's real split: N real images per class instead of the whole split",
    )
    evaluate.add_argument(
        "--no-write", action="store_true", help="print the report without updating the card"
    )

    judge = commands.add_parser(
        "export-judge",
        help="put the evaluation judge beside an exported model (judge.onnx), as evaluate does",
        description="Export the judge classifier evaluate scores with into the version directory and "
        "declare it on the card (the service's min_confidence needs it); evaluate does this too.",
    )
    judge.add_argument("model_dir", type=Path, help="a version directory: MODELS_DIR/<name>/<version>")
    judge.add_argument("--data-dir", type=Path, help="data directory, for datasets that need one")
    return parser


def _int8_flags(command: argparse.ArgumentParser) -> None:
    gate = QualityGate()
    command.add_argument(
        "--int8",
        action="store_true",
        help="also publish an INT8 (static QDQ) twin as the next version, if it passes the quality gate "
        "against the FP32 export measured by 'evaluate': label accuracy "
        f"-{100 * gate.label_accuracy_drop:g} point, FID ratio +{100 * gate.fid_ratio_increase:g}%%, "
        f"GAN-train -{100 * gate.gan_train_drop:g} point at most; else exit 2 with the figures "
        "(the FP32 version stays published)",
    )
    command.add_argument(
        "--gate-samples-per-class",
        type=_positive,
        default=EvalOptions().samples_per_class,
        help="images per class of the two gate evaluations (default: evaluate's)",
    )


def _publish_int8(model_dir: Path, args, data_dir: Path | None) -> None:
    result = publish_int8(model_dir, samples_per_class=args.gate_samples_per_class, data_dir=data_dir)
    f, q = result.fp32, result.int8
    print(
        f"exported int8 {result.version_dir}: label accuracy {100 * q.label_accuracy:.1f}% "
        f"(fp32 {100 * f.label_accuracy:.1f}%), FID ratio {q.fid_ratio:.2f} ({f.fid_ratio:.2f}), "
        f"GAN-train {100 * q.gan_train_accuracy:.1f}% ({100 * f.gan_train_accuracy:.1f}%)"
    )


def make_config(args) -> TrainConfig:
    config = TrainConfig.for_dataset(
        args.dataset,
        jit=not args.no_jit,
        variant=args.variant,
        arch=args.arch,
        data_dir=args.data_dir,
        steps=args.steps,
        batch_size=args.batch_size,
        latent_dim=args.latent_dim,
        name=args.name,
        out=args.out,
        work_dir=args.work_dir,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        sample_every=args.sample_every,
        log_every=args.log_every,
        export=not args.no_export,
        progress=not args.quiet,
    )
    if args.recipe:
        config = dataclasses.replace(config, recipe=override_recipe(config.recipe, args.recipe))
    if args.epochs:
        train_images = len(load_dataset(args.dataset, args.data_dir).train)
        config = dataclasses.replace(config, steps=max(1, args.epochs * train_images // config.batch_size))
    return config


def cmd_train(args) -> int:
    config = make_config(args)
    saved = config.run_dir / RUN_FILE
    if args.resume and saved.is_file():
        # The saved run decides the model; only the schedule and outputs may change on resume.
        previous = TrainConfig.from_json(saved.read_text())
        config = dataclasses.replace(
            previous,
            steps=args.steps or previous.steps,
            out=config.out,
            export=config.export,
            progress=config.progress,
        )
    result = train(config, resume=args.resume)
    print(
        f"trained {config.name}: {result.steps} steps, {result.images_per_second:.0f} images/s, "
        f"{result.wall_seconds:.1f} s"
    )
    if result.model_dir:
        print(f"exported {result.model_dir}")
        if args.int8:
            _publish_int8(result.model_dir, args, config.data_dir)
    return 0


def cmd_export(args) -> int:
    config, dataset, gan, meta = load_run(args.run_dir)
    config = dataclasses.replace(config, out=args.out)
    steps = int(meta["step"])
    wall = float(meta["wall_seconds"])
    result = RunResult(
        steps=steps,
        wall_seconds=wall,
        images_per_second=steps * config.batch_size / wall if wall else 0.0,
        steps_per_second=steps / wall if wall else 0.0,
        history=[],
    )
    model_dir = export_run(gan, config, dataset, result)
    print(f"exported {model_dir}")
    if args.int8:
        _publish_int8(model_dir, args, config.data_dir)
    return 0


def cmd_evaluate(args) -> int:
    _, report = evaluate(
        args.model_dir,
        samples_per_class=args.samples_per_class,
        data_dir=args.data_dir,
        seed=args.seed,
        write=not args.no_write,
        probe_runs=args.probe_runs,
        code_sweeps=args.code_sweeps,
        code_steps=args.code_steps,
        augmentation=not args.no_augmentation,
        augmentation_real_per_class=args.augmentation_real_per_class,
        bootstrap_resamples=args.bootstrap,
        worth=args.worth,
        worth_multiples=args.worth_multiples,
        worth_fractions=args.worth_fractions,
        worth_real_per_class=args.worth_real_per_class,
        progress=not args.quiet,
    )
    print(report)
    return 0


def cmd_export_judge(args) -> int:
    print(f"exported {export_judge_only(args.model_dir, data_dir=args.data_dir)}")
    return 0


#: Failures that are the user's to fix: one line on stderr and exit 2, no traceback.
USER_ERRORS = (ConfigError, DataError, ExportError, FileNotFoundError, PermissionError)
#: What only the train extra installs: without them (a service-only install) a command says so in one line.
TRAIN_EXTRA_MODULES = frozenset(
    {"tensorflow", "keras", "tf2onnx", "onnx", "mlxtend", "matplotlib", "tf_keras"}
)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    command = {
        "train": cmd_train,
        "export": cmd_export,
        "evaluate": cmd_evaluate,
        "export-judge": cmd_export_judge,
    }[args.command]
    try:
        return command(args)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in TRAIN_EXTRA_MODULES:
            raise
        print(
            f"cgan-train {args.command}: error: needs the train extra ({exc.name} is not installed): "
            "pip install --require-hashes -r requirements/train.txt",
            file=sys.stderr,
        )
        return 2
    except USER_ERRORS as exc:
        print(f"cgan-train {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cgan-train {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
