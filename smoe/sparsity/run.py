"""A trained run directory as a `decode.Net`: its saved config and the params of its latest checkpoint."""

from __future__ import annotations

from pathlib import Path

from flax import nnx

from smoe.checkpoint import Checkpoints, DamagedCheckpoint
from smoe.config import RunConfig
from smoe.data import load_corpus
from smoe.errors import UserError
from smoe.models import decode
from smoe.models.lm import make_model
from smoe.run_log import CONFIG_NAME, saved_config
from smoe.steps import make_optimizer

PROMPT_FRACTION = 0.5  # selections are predicted at the end of a window's first half: the prompt


def load_config(run_dir: Path) -> RunConfig:
    cfg = saved_config(Path(run_dir), "RUN_DIR")
    if cfg is None:
        raise UserError(f"RUN_DIR: {run_dir} holds no run ({CONFIG_NAME} missing); pass a `smoe train --out` dir")
    return cfg


def load_net(run_dir: Path) -> tuple[RunConfig, decode.Net, decode.Spec]:
    """The latest checkpoint's params on one device; refuses models sparsity cannot run before restoring."""
    cfg = load_config(run_dir)
    model = make_model(cfg.model, cfg.train.seed)
    decode.net_from_model(model)
    directory = Path(run_dir) / "checkpoints"
    steps = Checkpoints.saved_steps(directory)
    if not steps:
        raise UserError(f"RUN_DIR: {run_dir} has no checkpoint yet; train it first")
    graphdef, state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    checkpoints = Checkpoints(directory, cfg.train.keep_checkpoints)
    try:
        restored = checkpoints.restore(steps[-1], {"params": params, "opt_state": make_optimizer(cfg.train).init(params)})
    except DamagedCheckpoint as err:
        raise UserError(f"RUN_DIR: checkpoint step {steps[-1]} in {run_dir} is damaged ({err}); continue the run "
                        "from an earlier step with `smoe train ... --resume-from STEP` first") from None
    finally:
        checkpoints.close()
    nnx.replace_by_pure_dict(state, restored["params"])
    net, spec = decode.net_from_model(nnx.merge(graphdef, state))
    return cfg, net, spec


def load_text(cfg: RunConfig):
    corpus = load_corpus(cfg.data.corpus, cfg.data.val_fraction, cfg.data.cache_dir or None)
    corpus.check_seq_len(cfg.model.seq_len)
    return corpus


def prompt_position(cfg: RunConfig) -> int:
    """The last prompt position, where predictors read their input."""
    return max(1, int(cfg.model.seq_len * PROMPT_FRACTION)) - 1
