"""Run under torchrun by test_distributed.py: each rank trains with dlrun's Trainer, then saves its own weights and
its view of the test metrics (evaluated on its shard and gathered)."""

import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from dlrun import build
from dlrun.distributed import World
from dlrun.run import seed_everything
from dlrun.trainer import Trainer

from conftest import compose_config

out = Path(sys.argv[1])
cfg = compose_config("trainer.max_epochs=2", "trainer.limit_batches=8", *sys.argv[2:])
seed_everything(cfg.seed + World.from_env().rank)  # different initial weights: DDP must make them equal
data = build.data(cfg)
model = build.model(cfg, data.spec)
task = build.task(cfg, model, data)
optimizers = task.configure_optimizers(build.optimizer_factory(cfg))
trainer = Trainer(**OmegaConf.to_container(cfg.trainer))
state = trainer.fit(task, data, optimizers)
rank = trainer.world.rank
torch.save(trainer.network.state_dict(), out / f"rank{rank}.pt")
seen = {"train_batches": data.num_batches("train"), "test_samples": len(list(data._order("test", 0)))}
seen |= {"steps": state.step, "skipped_batches": state.skipped_batches}
(out / f"rank{rank}.json").write_text(json.dumps(trainer.evaluate(task, data, "test") | seen))
