"""Layers of raw settings -> one validated RunConfig, with the experiment's own rules applied.

Settings come in layers, later ones winning:
    the field defaults < the experiment's defaults < a TOML file < `--set key=value` < flags.
This is the step that needs the registries (experiments, optimizers, schedules), which is why
it lives here and not in `optlab.config`: config stays a leaf that every layer may import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from optlab import config, parsers
from optlab.config import FIELDS, Layer, RunConfig, applicable
from optlab.errors import ConfigError


def resolve(layers: Iterable[Layer]) -> RunConfig:
    """Merge layers over the defaults, parse every value, and check names and applicability.

    The plug-ins a layer names (a TOML's `plugins = [...]`) are loaded first. A key that is not one of
    optlab's settings is one of the chosen optimizer's own (its factory's keywords), or an error that
    lists those keywords.
    """
    from optlab import plugins
    from optlab.core.optimizers import OPTIMIZERS
    from optlab.core.schedules import SCHEDULES
    from optlab.experiments import EXPERIMENTS

    layers = list(layers)
    plugins.load_automatic()  # $OPTLAB_PLUGINS and installed packages' (once; the CLI loads them before help too)
    for layer in layers:
        plugins.load_files(layer.plugins, f"plugins in {layer.source}:")
    given: dict[str, tuple[Any, Layer]] = {}
    own: dict[str, tuple[Any, Layer]] = {}  # not optlab's settings: the optimizer's own, checked once it is known
    for layer in layers:
        for key, raw in layer.values.items():
            (given if key in FIELDS else own)[key] = (raw, layer)
    if own and "experiment" not in given:  # without an experiment there is no optimizer whose keyword it could be
        key, (_, layer) = next(iter(own.items()))
        raise ConfigError(f"{layer.label(key)}: unknown setting {config.suggest(key, FIELDS)}")
    if "experiment" not in given:
        raise ConfigError("no experiment given: name one (optlab list shows them), "
                          "or give a FILE.toml that sets experiment = \"NAME\"")
    experiment_name = _parse("experiment", *given["experiment"], parsers.name)
    experiment = EXPERIMENTS[experiment_name]
    settings = applicable(experiment)
    if own and "optimizer" not in settings:
        key, (_, layer) = next(iter(own.items()))
        raise ConfigError(f"{layer.label(key)}: unknown setting {config.suggest(key, FIELDS)}")
    for key, (_, layer) in given.items():
        if key not in settings:
            raise ConfigError(
                f"{layer.label(key)} does not apply to experiment {experiment_name!r} "
                f"(its own settings: {', '.join(experiment.fields)})"
            )
    values = {key: _parse(key, raw, layer, experiment.parsers.get(key)) for key, (raw, layer) in given.items()}
    merged = {**experiment.defaults, **values}
    OPTIMIZERS.entry(merged.get("optimizer", RunConfig.optimizer))
    SCHEDULES.entry(merged.get("lr_schedule", RunConfig.lr_schedule))
    if "optimizer" in settings:
        merged["optimizer_settings"] = _own_settings(merged, own)
    experiment.check(merged)
    if merged.get("lr") is None:
        optimizer = merged.get("optimizer", RunConfig.optimizer)
        merged["lr"] = experiment.default_lrs.get(optimizer, OPTIMIZERS[optimizer].default_lr)
    return RunConfig(**merged)


def _own_settings(merged: dict, own: dict[str, tuple[Any, Layer]]) -> tuple[tuple[str, Any], ...]:
    """The optimizer's own settings: a recorded table (optimizer_settings, from metrics.json) under the
    keys given one by one (--set b1=0.95, b1 = 0.95 in a TOML file), each checked against its factory."""
    from optlab.core import optimizers

    name = merged.get("optimizer", RunConfig.optimizer)
    recorded = {k: (v, "optimizer_settings") for k, v in merged.get("optimizer_settings", ())}
    given = recorded | {key: (raw, layer.label(key)) for key, (raw, layer) in own.items()}
    if not optimizers.OPTIMIZERS[name].settings and own:
        key, (_, layer) = next(iter(own.items()))
        keywords = optimizers.OPTIMIZERS[name].keywords()
        takes = f"optimizer {name!r} takes {', '.join(keywords)}" if keywords else \
            f"optimizer {name!r} has no keywords besides learning_rate"
        raise ConfigError(f"{layer.label(key)}: unknown setting {config.suggest(key, FIELDS)}; {takes}")
    return optimizers.own_settings(name, given)


def _parse(key: str, raw: Any, layer: Layer, parser: Callable[[Any], Any] | None = None) -> Any:
    """The field's declared parser (or the experiment's own, given), its ValueError made a one-line ConfigError."""
    try:
        return (parser or config.SETTINGS[key].parse)(raw)
    except ValueError as e:
        shown = raw if isinstance(raw, str) else repr(raw)
        raise ConfigError(f"{layer.label(key)} {e}, got {shown!r}") from None


def relevant(cfg: RunConfig) -> dict[str, Any]:
    """The settings that apply to this run's experiment: what metrics.json records."""
    from optlab.experiments import EXPERIMENTS

    return cfg.to_dict(applicable(EXPERIMENTS[cfg.experiment]))
