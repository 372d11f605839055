"""The Tune function trainable: one call per trial, which runs that trial's fine-tuning as a
Ray Train TorchTrainer (DDP over the trial's workers) and relays every report to Tune.

Ray 2.60's Train V2 cannot be handed to Tuner directly; this wrapper is the supported pattern.
The TorchTrainer is named after the trial, so a retried or resumed trial finds its own latest
checkpoint in storage and the loop continues from it (ray.train.get_checkpoint()).
"""
from __future__ import annotations

from ray import tune
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from search.resources import TrialResources
from trainables.config import TrainConfig
from trainables.loop import train_loop_per_worker


def run_trial(config: dict, base: dict, resources: TrialResources, storage: str, max_failures: int) -> None:
    train_config = {**base, **config, "num_threads": resources.cpus_per_worker}
    TrainConfig.from_dict(train_config)  # fail here, before any worker starts, on a bad key
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=train_config,
        scaling_config=ScalingConfig(num_workers=resources.num_workers, use_gpu=resources.use_gpu,
                                     resources_per_worker=resources.worker_resources()),
        run_config=RunConfig(
            name=tune.get_context().get_trial_id(),
            storage_path=storage,
            callbacks=[TuneReportCallback()],
            checkpoint_config=CheckpointConfig(num_to_keep=1),  # the final epoch's: trials compare there
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )
    trainer.fit()


def trainable(base: dict, resources: TrialResources, storage: str, max_failures: int = 1):
    # The trial actor itself only waits on its TorchTrainer; the workers hold the CPUs/GPUs.
    return tune.with_resources(
        tune.with_parameters(run_trial, base=base, resources=resources, storage=storage,
                             max_failures=max_failures),
        {"cpu": 0, "memory": 1})
