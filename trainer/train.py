"""``train(config)``: dataset -> compiled train steps -> checkpoints, samples, history -> ONNX export."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from service import contract
from trainer import artifacts, checkpoint
from trainer.data import load_dataset, tf_dataset
from trainer.variants.base import Recipe, Spec

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


class ConfigError(Exception):
    """A flag combination that cannot train; the message is one line for the user."""


@dataclass
class TrainConfig:
    variant: str
    arch: str
    dataset: str
    steps: int
    batch_size: int
    latent_dim: int
    recipe: Recipe
    name: str
    out: Path = Path("models")
    work_dir: Path = Path("runs")
    data_dir: Path | None = None
    seed: int = 0
    checkpoint_every: int = 500
    sample_every: int = 500
    log_every: int = 50
    jit_compile: bool = False  # XLA-fused blocks; pays off for dense (the CLI turns it on there)
    export: bool = True
    progress: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.work_dir) / self.name

    def validate(self) -> None:
        for flag in ("steps", "batch_size", "latent_dim", "checkpoint_every", "sample_every", "log_every"):
            if getattr(self, flag) <= 0:
                raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {getattr(self, flag)}")
        if not contract.valid_model_name(self.name):
            raise ConfigError(f"--name {self.name!r} must match {contract.MODEL_NAME_PATTERN}")

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["out"], data["work_dir"] = str(self.out), str(self.work_dir)
        data["data_dir"] = str(self.data_dir) if self.data_dir else None
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        data["recipe"] = Recipe(**data["recipe"])
        data["out"], data["work_dir"] = Path(data["out"]), Path(data["work_dir"])
        data["data_dir"] = Path(data["data_dir"]) if data["data_dir"] else None
        return cls(**data)


@dataclass
class RunResult:
    steps: int
    wall_seconds: float
    images_per_second: float
    steps_per_second: float
    history: list[dict]
    model_dir: Path | None
    gan: object = None


def build_model(config: TrainConfig, dataset):
    from trainer import variants

    spec = Spec(config.latent_dim, dataset.num_classes, dataset.image_shape, config.arch)
    try:
        gan = variants.build(config.variant, spec, config.recipe, seed=config.seed)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    gan.compile()
    return gan


def train(config: TrainConfig, resume: bool = False) -> RunResult:
    """Train (or continue) a run; export it into ``config.out`` when ``config.export``."""
    import keras

    config.validate()
    run_dir = config.run_dir
    ckpt_dir = run_dir / "checkpoints"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "samples").mkdir(exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create run directory {run_dir}: {exc.strerror}") from None
    dataset = load_dataset(config.dataset, config.data_dir)
    keras.utils.set_random_seed(config.seed)
    gan = build_model(config, dataset)

    history: list[dict] = []
    wall_before = 0.0
    if resume:
        checkpoint.clean_partial(ckpt_dir)
        try:
            # Corrupt newer files are set aside (and said so); a checkpoint from other code is refused.
            meta = checkpoint.load_latest(ckpt_dir, gan.checkpoint_variables(), set_aside=True)
        except checkpoint.CheckpointError as exc:
            raise ConfigError(f"cannot resume {config.name}: {exc}") from None
        if meta is None:
            log.warning("no checkpoint in %s; starting from step 0", ckpt_dir)
        else:
            wall_before = meta["wall_seconds"]
            history = artifacts.read_history(run_dir / "history.csv", meta["step"])
            log.info("resumed %s at step %d", config.name, meta["step"])
    (run_dir / RUN_FILE).write_text(config.to_json())

    start_step = int(gan.step.numpy())
    if start_step >= config.steps:
        log.info("run already at step %d of %d", start_step, config.steps)
    result = _loop(gan, config, dataset, start_step, history, wall_before)
    result.gan = gan
    if config.export:
        result.model_dir = export_run(gan, config, dataset, result)
    return result


def _loop(gan, config: TrainConfig, dataset, start_step: int, history: list[dict], wall_before: float):
    import keras
    import tensorflow as tf

    from trainer.loop import blocks, make_runner

    run_dir = config.run_dir
    batches = tf_dataset(dataset.train, config.batch_size, config.seed + start_step)
    iterator = iter(blocks(batches) if config.jit_compile else batches)
    runner = make_runner(gan, config.jit_compile)
    progbar = keras.utils.Progbar(config.steps, stateful_metrics=None) if config.progress else None
    if progbar is not None and start_step:
        progbar.update(start_step)
    events = (config.log_every, config.checkpoint_every, config.sample_every)

    step, wall = start_step, wall_before
    while step < config.steps:
        chunk = min(config.steps - step, *(every - step % every for every in events))
        for tracker in gan.metrics:
            tracker.reset_state()
        began = time.perf_counter()
        logs = {k: float(v) for k, v in runner(iterator, tf.constant(chunk)).items()}
        elapsed = time.perf_counter() - began
        step += chunk
        wall += elapsed
        row = {
            "step": step,
            **logs,
            "steps_per_s": chunk / elapsed,
            "images_per_s": chunk * config.batch_size / elapsed,
        }
        if step % config.log_every == 0 or step == config.steps:
            history.append(row)
        if progbar is not None:
            progbar.update(step, [(k, v) for k, v in row.items() if k != "step"])
        if step % config.sample_every == 0 or step == config.steps:
            grid = artifacts.sample_grid(
                gan.export_generator, gan.spec.num_classes, gan.spec.latent_dim, config.seed
            )
            artifacts.write_png(run_dir / "samples" / f"step-{step:08d}.png", grid)
            artifacts.write_png(run_dir / "samples.png", grid)
        if step % config.checkpoint_every == 0 or step == config.steps:
            checkpoint.save(
                run_dir / "checkpoints",
                step,
                gan.checkpoint_variables(),
                {"step": step, "wall_seconds": wall},
            )
            artifacts.write_history(run_dir / "history.csv", history)

    artifacts.write_history(run_dir / "history.csv", history)
    artifacts.plot_curves(run_dir / "curves.png", history)
    trained = step - start_step
    run_wall = wall - wall_before
    return RunResult(
        steps=step,
        wall_seconds=wall,
        images_per_second=trained * config.batch_size / run_wall if run_wall else 0.0,
        steps_per_second=trained / run_wall if run_wall else 0.0,
        history=history,
        model_dir=None,
    )


def export_run(gan, config: TrainConfig, dataset, result: RunResult) -> Path:
    from trainer.export import ExportInfo, export

    info = ExportInfo(
        name=config.name,
        variant=config.variant,
        arch=config.arch,
        dataset=config.dataset,
        class_names=dataset.class_names,
        latent_dim=config.latent_dim,
        image_shape=dataset.image_shape,
        training=contract.Training(
            steps=result.steps,
            batch_size=config.batch_size,
            seed=config.seed,
            wall_seconds=round(result.wall_seconds, 2),
            images_per_second=round(result.images_per_second, 1),
            steps_per_second=round(result.steps_per_second, 2),
            recipe=dataclasses.asdict(config.recipe),
        ),
    )
    run_dir = config.run_dir
    extra = {name: run_dir / name for name in ("samples.png", "curves.png", "history.csv")}
    return export(gan.export_generator, info, config.out, extra)


def load_run(run_dir: Path):
    """Rebuild a run's model from ``run.json`` and its newest checkpoint (for ``export`` after the fact)."""
    config = TrainConfig.from_json((run_dir / RUN_FILE).read_text())
    dataset = load_dataset(config.dataset, config.data_dir)
    gan = build_model(config, dataset)
    try:
        meta = checkpoint.load_latest(run_dir / "checkpoints", gan.checkpoint_variables())
    except checkpoint.CheckpointError as exc:
        raise ConfigError(f"cannot load {run_dir}: {exc}") from None
    if meta is None:
        raise ConfigError(f"no readable checkpoint under {run_dir / 'checkpoints'}")
    return config, dataset, gan, meta
