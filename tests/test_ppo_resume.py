"""PPO checkpoints and resumes: a run stopped after N rollout batches and resumed ends where an unbroken run of the
same length ends (policy, value model, optimizer, weight average, data position and random generators all restored)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("trl")

from builders.errors import InputError  # noqa: E402
from trainers import ppo  # noqa: E402
from tests.test_ppo_correctness import PROMPTS, _args, _e_reward, _load  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from trainers.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny_resume"), seed=6)


def _state(out):
    return torch.load(ppo.latest_checkpoint(out), map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_a_run_stopped_and_resumed_ends_where_an_unbroken_run_ends(tiny, tmp_path):
    ptx = [f"Plain text number {i} about the {w}." for i, w in enumerate("sun tree river stone cloud".split() * 10)]
    # 4 rollout batches of 8 over 16 prompts (two epochs of shuffled prompts), a checkpoint every 2; ptx on so its
    # sampler's position matters too
    kw = dict(total_episodes=32, save_steps=2, learning_rate=1e-3, ptx_coef=1.0, ptx_batch_size=4)
    whole = ppo.train(_args(tiny, tmp_path / "whole", **kw), reward_fn=_e_reward, prompts=PROMPTS, ptx_texts=ptx)

    calls = []

    def crashes_in_batch_3(convs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the machine went away")
        return _e_reward(convs)

    out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="went away"):
        ppo.train(_args(tiny, out, **kw), reward_fn=crashes_in_batch_3, prompts=PROMPTS, ptx_texts=ptx)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    resumed = ppo.train(_args(tiny, out, resume=True, **kw), reward_fn=_e_reward, prompts=PROMPTS, ptx_texts=ptx)

    assert [h["rollout"] for h in resumed["history"]] == [0, 1, 2, 3]
    for a, b in zip(whole["history"], resumed["history"]):
        assert a == pytest.approx(b, abs=1e-6)  # same prompts, scores, KL and losses batch by batch
    for a, b in zip(_load(tmp_path / "whole").parameters(), _load(out).parameters()):
        assert torch.allclose(a, b, atol=1e-6)  # the saved (averaged) policy
    ca, cb = _state(tmp_path / "whole"), _state(out)
    assert ca["next_rollout"] == cb["next_rollout"] == 4
    for key in ("value", "policy"):
        assert all(torch.allclose(ca[key][k], cb[key][k], atol=1e-6) for k in ca[key])
    assert all(torch.allclose(x["exp_avg_sq"], y["exp_avg_sq"], atol=1e-9)
               for x, y in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()))


def test_resume_without_a_checkpoint_is_an_error_naming_the_flag(tiny, tmp_path):
    with pytest.raises(InputError, match="no checkpoint-N/state.pt"):
        ppo.train(_args(tiny, tmp_path, resume=True), reward_fn=_e_reward, prompts=PROMPTS)
