"""DQN on gymnasium's CartPole: the real CLI, TensorBoard scalars read back, the replay buffer in checkpoints,
resume, and clear refusals of what cannot be played."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dlrun import build
from dlrun.errors import ConfigError
from dlrun.run import run
from dlrun.tasks.replay import ReplayBuffer
from dlrun.validation import validate

from conftest import compose_config, model_for, only_run_dir, run_cli

STEPS = 200  # environment steps an epoch
# A few hundred steps of CartPole: epsilon falls over them and updates start early; short greedy evaluations.
TINY = [
    "experiment=dqn",
    f"dataset.steps_per_epoch={STEPS}",
    "dataset.eval_episodes=2",
    "dataset.test_episodes=2",
    "task.learning_starts=50",
    "task.epsilon_decay_steps=300",
    "task.target_update_every=100",
    "task.tau=1.0",
    "trainer.log_every_n_steps=20",
]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cwd")
    done = run_cli(
        *TINY, "trainer.max_epochs=2", "task.buffer_size=300", "trainer.device=cpu", "print_config=false", cwd=cwd
    )
    return done, only_run_dir(cwd / "outputs")


def test_runs_through_the_cli_and_prints_the_greedy_return(cli_run):
    done, run_dir = cli_run
    assert done.returncode == 0, done.stderr
    assert "test/return" in done.stdout and "val/return" in done.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {
        f"{split}/{name}" for split in ("val", "test") for name in ("return", "return_std", "length")
    }
    assert metrics["test/return"] == metrics["test/length"] >= 8  # CartPole: +1 a step; no episode ends sooner
    model = model_for(compose_config(*TINY, "dataset.in_shape=[4]", "dataset.num_classes=2"))
    model.load_state_dict(torch.load(run_dir / "model.pt", weights_only=True))  # model.pt: the Q-network alone


def test_scalars_in_tensorboard(cli_run):
    _, run_dir = cli_run
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    for tag in ("train/episode_return", "train/episode_length", "train/epsilon", "train/loss_epoch", "val/return"):
        assert [step for step, _ in scalars[tag]] == [STEPS, 2 * STEPS], tag
    returns, lengths = (dict(scalars[f"train/episode_{name}"]) for name in ("return", "length"))
    assert returns == lengths  # +1 for every step of an episode
    first, second = (value for _, value in scalars["train/epsilon"])
    assert 0.05 < second < first < 1  # the schedule falls over the steps: each epoch's mean
    assert [step for step, _ in scalars["train/loss"]] == list(range(60, 2 * STEPS + 1, 20))  # updates from step 50
    assert scalars["test/return"][0][1] > 0


def test_last_checkpoint_holds_the_replay_buffer_and_the_schedule(cli_run):
    _, run_dir = cli_run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    state = checkpoint["task"]
    assert state["steps"] == checkpoint["step"] == 2 * STEPS
    buffer = state["buffer"]
    assert (buffer["size"], buffer["position"]) == (300, 2 * STEPS - 300)  # 400 steps into 300 places: wrapped
    assert buffer["observations"].shape == (300, 4) and buffer["actions"].shape == (300,)
    assert set(buffer["actions"].tolist()) == {0, 1}
    target, online = state["target_model"], checkpoint["model"]
    assert all(torch.equal(target[key], online[key]) for key in online)  # tau=1: copied at step 400, the last


def test_resume_carries_the_schedule_and_the_buffer_on(tmp_path):
    straight, first, resumed = tmp_path / "straight", tmp_path / "first", tmp_path / "resumed"
    settings = [*TINY, "task.buffer_size=300"]
    run(compose_config(*settings, "trainer.max_epochs=2"), straight)
    run(compose_config(*settings, "trainer.max_epochs=1"), first)
    run(compose_config(*settings, "trainer.max_epochs=2", f"ckpt_path={first / 'checkpoints' / 'last.pt'}"), resumed)
    expected, actual = (torch.load(d / "checkpoints" / "last.pt", weights_only=True) for d in (straight, resumed))
    assert actual["step"] == expected["step"] == actual["task"]["steps"] == 2 * STEPS
    for key in ("size", "position"):
        assert actual["task"]["buffer"][key] == expected["task"]["buffer"][key]
    # The first epoch's transitions (the rows the second epoch has not yet overwritten) are the same in both runs.
    kept = slice(2 * STEPS - 300, STEPS)
    for field in ("observations", "actions", "rewards"):
        assert torch.equal(actual["task"]["buffer"][field][kept], expected["task"]["buffer"][field][kept])
    epsilons = []
    for run_dir in (straight, resumed):
        events = EventAccumulator(str(run_dir / "tensorboard"))
        events.Reload()
        epsilons.append([(e.step, e.value) for e in events.Scalars("train/epsilon")])
    assert epsilons[1] == [epsilons[0][1]]  # the resumed run logs epoch 2 only, on the same schedule


def test_double_dqn_with_polyak_target_updates_runs(run_dir):
    run(
        compose_config(
            *TINY, "trainer.max_epochs=1", "task.double_dqn=true", "task.tau=0.01", "task.target_update_every=1"
        ),
        run_dir,
    )
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    target, online = checkpoint["task"]["target_model"], checkpoint["model"]
    assert all(torch.isfinite(t).all() for t in online.values())
    assert any(not torch.equal(target[key], online[key]) for key in online)  # Polyak: the target lags behind


def constant_q_network(values: list[float]) -> torch.nn.Linear:
    """Q-values that do not depend on the observation: zero weights, the values as the bias."""
    network = torch.nn.Linear(1, len(values))
    with torch.no_grad():
        network.weight.zero_()
        network.bias.copy_(torch.tensor(values))
    return network


@pytest.mark.parametrize(
    ("double_dqn", "terminated", "expected_target"),
    [
        (False, 0.0, 1 + 0.5 * 10),  # the target network's best value
        (True, 0.0, 1 + 0.5 * 2),  # the Q-network picks action 1, the target network values it
        (False, 1.0, 1.0),  # a terminal state: no bootstrap
        (True, 1.0, 1.0),
    ],
)
def test_td_target(double_dqn, terminated, expected_target):
    from dlrun.tasks.dqn import DQNTask

    task = DQNTask(model=constant_q_network([3.0, 5.0]), criterion=torch.nn.MSELoss(), gamma=0.5, double_dqn=double_dqn)
    task.target_model = constant_q_network([10.0, 2.0])
    loss = task._td_loss(
        torch.zeros(1, 1), torch.tensor([0]), torch.tensor([1.0]), torch.zeros(1, 1), torch.tensor([terminated])
    )
    assert loss.item() == pytest.approx((3.0 - expected_target) ** 2)  # Q(s, a=0) = 3


def test_replay_buffer_is_circular():
    buffer = ReplayBuffer(3, [2], torch.device("cpu"))
    for step in range(5):
        buffer.add(torch.full((2,), float(step)), step % 2, float(step), torch.full((2,), step + 1.0), step == 4)
    assert (len(buffer), buffer.position) == (3, 2)
    assert buffer.rewards.tolist() == [3.0, 4.0, 2.0]  # steps 3 and 4 overwrote 0 and 1
    restored = ReplayBuffer(3, [2], torch.device("cpu"))
    restored.load_state_dict(buffer.state_dict())
    assert (len(restored), restored.position) == (3, 2)
    assert torch.equal(restored.next_observations, buffer.next_observations)
    assert restored.terminated.tolist() == [0.0, 1.0, 0.0]
    observations, actions, rewards, next_observations, terminated = restored.sample(16)
    assert torch.equal(observations[:, 0], rewards) and torch.equal(next_observations[:, 0], rewards + 1)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=dqn", "dataset=digits"], "task = dqn plays a gymnasium environment, not dataset digits"),
        (["experiment=dqn", "env.id=NoSuchEnv-v0"], "env.id = NoSuchEnv-v0: Environment `NoSuchEnv` doesn't exist"),
    ],
)
def test_cli_exits_2_with_a_clear_message(overrides, message, tmp_path):
    done = run_cli(*overrides, "trainer.device=cpu", "print_config=false", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split())  # the panel wraps lines


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["task=dqn"], "not dataset digits; type experiment=dqn"),
        (["env=acrobot"], "env.id = Acrobot-v1: played by task=dqn on dataset=environment; type experiment=dqn"),
        (["experiment=dqn", "task=supervised"], "dataset = environment is played by task=dqn"),
        (["dataset=environment", "task=dqn"], "env: dataset=environment needs an environment"),
        (["experiment=dqn", "env.id=Pendulum-v1"], "its actions are Box, not a finite set"),
        (["experiment=dqn", "env.id=Blackjack-v1"], "its observations are Tuple"),
        (["experiment=dqn", "env.max_episode_steps=0"], "env.max_episode_steps = 0: must be a whole number >= 1"),
        (["experiment=dqn", "dataset.steps_per_epoch=0"], "dataset.steps_per_epoch = 0: must be a whole number >= 1"),
        (["experiment=dqn", "model=cnn"], "model = dlrun.models.cnn.cnn: DQN's Q-network reads observation vectors"),
        (["experiment=dqn", "model.batch_norm=true"], "model.batch_norm = true: DQN acts on one observation"),
        (["experiment=dqn", "task.gamma=1.5", "task.batch_size=0"], "task.gamma = 1.5: must be in [0, 1]"),
    ],
)
def test_what_cannot_be_played_is_a_config_error(overrides, message, run_dir):
    with pytest.raises(ConfigError) as raised:
        cfg = compose_config(*overrides)  # each fails before its first step
        validate(cfg)
        run(cfg, run_dir)
    assert message in str(raised.value)


def test_every_playable_id_is_offered_for_an_unknown_one():
    with pytest.raises(ConfigError) as raised:
        build.data(compose_config("experiment=dqn", "env.id=cartpole"))
    assert "CartPole-v1" in str(raised.value) and "Acrobot-v1" in str(raised.value)
    assert "Pendulum-v1" not in str(raised.value)  # continuous actions are not offered
